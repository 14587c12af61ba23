//! Grant tables (v1) from the guest side: `HYPERVISOR_grant_table_op` with the ABI
//! crate's structures, the entries of a grant frame the guest has placed in its physmap
//! (`XENMEM_add_to_physmap`, `XENMAPSPACE_grant_table`), and free guest frames above RAM
//! to put such pages at.

use core::sync::atomic::{AtomicU16, Ordering};

use rxen_abi::grant_table as gt;
use rxen_abi::xen::DomId;

use crate::hypercall::{hypercall, memory_op, mut_ptr, ptr};
use crate::xen::{hypercall as nr, memory, AddToPhysmap, HvmMemmapEntry, E820_RAM};

/// Bytes in a page.
pub const PAGE_SIZE: u64 = 4096;

/// `HYPERVISOR_grant_table_op(cmd, uop, count)`.
///
/// # Safety
/// `uop` must point to `count` structures of the kind `cmd` takes (or be a deliberately
/// bad pointer the test expects Xen to reject).
pub unsafe fn grant_table_op(cmd: u32, uop: u64, count: u32) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe {
        hypercall(
            nr::GRANT_TABLE_OP,
            u64::from(cmd),
            uop,
            u64::from(count),
            0,
            0,
        )
    }
}

/// `GNTTABOP_map_grant_ref` of `dom`'s `gref` at our guest frame `gfn` with `flags`
/// (`GNTMAP_*`): the hypercall's return value and the element (status, handle).
pub fn map(dom: DomId, gref: gt::GrantRef, gfn: u64, flags: u32) -> (i64, gt::GnttabMapGrantRef) {
    let mut op = gt::GnttabMapGrantRef {
        host_addr: gfn * PAGE_SIZE,
        flags,
        ref_: gref,
        dom,
        ..Default::default()
    };
    // SAFETY: one `gnttab_map_grant_ref`.
    let rc = unsafe { grant_table_op(gt::GNTTABOP_MAP_GRANT_REF, mut_ptr(&mut op), 1) };
    (rc, op)
}

/// `GNTTABOP_unmap_grant_ref` of `handle` mapped at `host_addr`: the hypercall's return
/// value and the element's status.
pub fn unmap(host_addr: u64, handle: gt::GrantHandle) -> (i64, i16) {
    let mut op = gt::GnttabUnmapGrantRef {
        host_addr,
        handle,
        ..Default::default()
    };
    // SAFETY: one `gnttab_unmap_grant_ref`.
    let rc = unsafe { grant_table_op(gt::GNTTABOP_UNMAP_GRANT_REF, mut_ptr(&mut op), 1) };
    (rc, op.status)
}

/// `GNTTABOP_copy` of the elements of `ops` in one hypercall (their statuses are
/// written back into them): the hypercall's return value.
pub fn copy(ops: &mut [gt::GnttabCopy]) -> i64 {
    // SAFETY: `ops.len()` consecutive `gnttab_copy` structures.
    unsafe { grant_table_op(gt::GNTTABOP_COPY, ops.as_mut_ptr() as u64, ops.len() as u32) }
}

/// A side of a copy that names `dom`'s grant `gref` at `offset`.
pub fn copy_gref(dom: DomId, gref: gt::GrantRef, offset: u16) -> gt::GnttabCopyPtr {
    gt::GnttabCopyPtr {
        u: u64::from(gref),
        domid: dom,
        offset,
        ..Default::default()
    }
}

/// A side of a copy that names our own frame `gfn` (`DOMID_SELF`) at `offset`.
pub fn copy_frame(gfn: u64, offset: u16) -> gt::GnttabCopyPtr {
    gt::GnttabCopyPtr {
        u: gfn,
        domid: memory::DOMID_SELF,
        offset,
        ..Default::default()
    }
}

/// `XENMEM_add_to_physmap` of our grant-table frame `idx` at `gfn`: 0 or the errno.
pub fn place_frame(idx: u64, gfn: u64) -> i64 {
    let xatp = AddToPhysmap {
        domid: memory::DOMID_SELF,
        size: 0,
        space: memory::MAPSPACE_GRANT_TABLE,
        idx,
        gpfn: gfn,
    };
    // SAFETY: `xatp` is a valid `xen_add_to_physmap`, only read by Xen.
    unsafe { memory_op(memory::ADD_TO_PHYSMAP, ptr(&xatp)) }
}

/// The `n`-th guest frame (from 0) above every RAM entry of `map` that no entry of the
/// map covers: frames a guest may put grant frames or grant mappings at.
pub fn free_gfn_above_ram(map: &[HvmMemmapEntry], n: u64) -> u64 {
    let top = map
        .iter()
        .filter(|e| e.type_ == E820_RAM)
        .map(|e| e.addr + e.size)
        .max()
        .unwrap_or(0);
    let mut gfn = top.div_ceil(PAGE_SIZE);
    let mut left = n;
    loop {
        let addr = gfn * PAGE_SIZE;
        if crate::start_info::entry_at(map, addr).is_none() {
            if left == 0 {
                return gfn;
            }
            left -= 1;
        }
        gfn += 1;
    }
}

/// The v1 grant table whose first frame the guest mapped at a guest frame.
#[derive(Clone, Copy)]
pub struct Table {
    base: *mut gt::GrantEntryV1,
}

impl Table {
    /// The table whose frame 0 is at guest frame `gfn` (identity-mapped).
    ///
    /// # Safety
    /// Frame 0 of our grant table must be mapped at `gfn` and stay there while the
    /// result is used.
    pub unsafe fn at(gfn: u64) -> Table {
        Table {
            base: (gfn * PAGE_SIZE) as *mut gt::GrantEntryV1,
        }
    }

    fn entry(&self, gref: gt::GrantRef) -> *mut gt::GrantEntryV1 {
        assert!(u64::from(gref) < PAGE_SIZE / 8, "gref beyond frame 0");
        // SAFETY: inside frame 0 (checked above).
        unsafe { self.base.add(gref as usize) }
    }

    fn flags_atomic(&self, gref: gt::GrantRef) -> &AtomicU16 {
        // SAFETY: `flags` is the first, 2-byte aligned field of a mapped entry; Xen
        // updates the entry with atomic operations too.
        unsafe { AtomicU16::from_ptr(core::ptr::addr_of_mut!((*self.entry(gref)).flags)) }
    }

    /// Grants `domid` access to our frame `frame` as `gref`, the way Linux does: domid
    /// and frame first, then (after a release fence) the flags.
    pub fn grant(&self, gref: gt::GrantRef, domid: DomId, frame: u32, readonly: bool) {
        let e = self.entry(gref);
        // SAFETY: a mapped entry; volatile as Xen reads it concurrently.
        unsafe {
            core::ptr::write_volatile(core::ptr::addr_of_mut!((*e).domid), domid);
            core::ptr::write_volatile(core::ptr::addr_of_mut!((*e).frame), frame);
        }
        let flags = gt::GTF_PERMIT_ACCESS | if readonly { gt::GTF_READONLY } else { 0 };
        self.flags_atomic(gref).store(flags, Ordering::Release);
    }

    /// Clears an entry unconditionally (flags first).
    pub fn clear(&self, gref: gt::GrantRef) {
        self.flags_atomic(gref).store(0, Ordering::Release);
        let e = self.entry(gref);
        // SAFETY: a mapped entry.
        unsafe {
            core::ptr::write_volatile(core::ptr::addr_of_mut!((*e).domid), 0);
            core::ptr::write_volatile(core::ptr::addr_of_mut!((*e).frame), 0);
        }
    }

    /// The entry's flags now.
    pub fn flags(&self, gref: gt::GrantRef) -> u16 {
        self.flags_atomic(gref).load(Ordering::Acquire)
    }

    /// A compare-and-exchange of the entry's flags: `Ok(expected)` if it held
    /// `expected` and now holds `new`, else `Err(what it held)`.
    pub fn cmpxchg_flags(&self, gref: gt::GrantRef, expected: u16, new: u16) -> Result<u16, u16> {
        self.flags_atomic(gref)
            .compare_exchange(expected, new, Ordering::AcqRel, Ordering::Acquire)
    }

    /// Ends foreign access the Linux way: fails (returns false) while Xen shows the
    /// grant in use (`GTF_reading`/`GTF_writing`), else clears the flags by
    /// compare-and-exchange (retrying if they change meanwhile).
    pub fn end_access(&self, gref: gt::GrantRef) -> bool {
        let mut flags = self.flags(gref);
        loop {
            if flags & (gt::GTF_READING | gt::GTF_WRITING) != 0 {
                return false;
            }
            match self.cmpxchg_flags(gref, flags, 0) {
                Ok(_) => return true,
                Err(seen) => flags = seen,
            }
        }
    }
}

/// A page-aligned page, for pages a guest grants or copies into.
#[repr(C, align(4096))]
pub struct Page(pub [u64; 512]);

impl Page {
    /// A zeroed page.
    pub const fn new() -> Page {
        Page([0; 512])
    }
}

impl Default for Page {
    fn default() -> Self {
        Page::new()
    }
}

/// The word at index `i` of the test pattern `seed`.
pub fn pattern_word(seed: u64, i: usize) -> u64 {
    seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Fills the page at physical address `addr` with the pattern `seed` (volatile writes).
///
/// # Safety
/// `addr` must be a writable, identity-mapped page.
pub unsafe fn fill(addr: u64, seed: u64) {
    let p = addr as *mut u64;
    for i in 0..512 {
        // SAFETY: inside the page, per the caller's contract.
        unsafe { core::ptr::write_volatile(p.add(i), pattern_word(seed, i)) };
    }
}

/// How many words of the page at `addr` differ from the pattern `seed` (volatile reads).
///
/// # Safety
/// `addr` must be a readable, identity-mapped page.
pub unsafe fn mismatches(addr: u64, seed: u64) -> usize {
    let p = addr as *const u64;
    (0..512)
        // SAFETY: inside the page, per the caller's contract.
        .filter(|&i| unsafe { core::ptr::read_volatile(p.add(i)) } != pattern_word(seed, i))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(addr: u64, size: u64, kind: u32) -> HvmMemmapEntry {
        HvmMemmapEntry {
            addr,
            size,
            type_: kind,
            reserved: 0,
        }
    }

    #[test]
    fn free_frames_skip_the_map() {
        let map = [
            entry(0, 0x9f000, E820_RAM),
            entry(0x100000, 0xf00000, E820_RAM),
            entry(0x1000000, 0x2000, 2),
        ];
        assert_eq!(free_gfn_above_ram(&map, 0), 0x1002);
        assert_eq!(free_gfn_above_ram(&map, 2), 0x1004);
        assert_eq!(free_gfn_above_ram(&map[..2], 0), 0x1000);
        assert_eq!(free_gfn_above_ram(&[], 0), 0);
    }

    #[test]
    fn patterns() {
        let mut page = Page::new();
        let addr = page.0.as_mut_ptr() as u64;
        // SAFETY: a page of our own.
        unsafe {
            fill(addr, 7);
            assert_eq!(mismatches(addr, 7), 0);
            assert_eq!(mismatches(addr, 8), 512);
        }
        // SAFETY: as above.
        unsafe {
            core::ptr::write_volatile((addr as *mut u64).add(3), 0);
            assert_eq!(mismatches(addr, 7), 1);
        }
        assert_ne!(pattern_word(1, 0), pattern_word(2, 0));
    }

    #[test]
    fn copy_sides() {
        let g = copy_gref(2, 10, 96);
        assert_eq!((g.gref(), g.domid, g.offset), (10, 2, 96));
        let f = copy_frame(0x113, 0);
        assert_eq!((f.gmfn(), f.domid), (0x113, memory::DOMID_SELF));
    }
}
