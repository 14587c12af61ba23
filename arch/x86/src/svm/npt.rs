//! Nested page tables: a domain's guest-physical to host-physical map.
//! Same format as long-mode page tables; every level has the U bit (nested
//! walks are user accesses). 2 MiB leaves where possible, split to 4 KiB
//! on demand.
//!
//! Table frames come from the domain's paging pool ([`TableFrames`], Xen's
//! HAP pool); a table that maps nothing any more after an unmap goes back to
//! it, and [`NestedPageTable::destroy`] gives back every table. The table
//! keeps no list of its frames: the tree itself is the list.

use rxen_core::frame_alloc::PagingPool;
use rxen_core::mm::{Gpa, Hpa};

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const HUGE: u64 = 1 << 7;
/// A software bit (AVL, ignored by the walk): the leaf maps another
/// domain's page (a grant mapping).
const FOREIGN: u64 = 1 << 9;
/// A software bit, with [`FOREIGN`]: the foreign page was mapped by the
/// control domain by its owner's frame number (`XENMAPSPACE_gmfn_foreign`),
/// not through a grant.
const FOREIGN_GMFN: u64 = 1 << 10;
const ADDRESS_MASK: u64 = 0x000F_FFFF_FFFF_F000;
const PAGE_2M: u64 = 2 << 20;
const ENTRIES: u64 = 512;

/// Access a guest has to a mapped page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read and execute.
    ReadOnly,
    /// Read, write and execute.
    ReadWrite,
}

/// Why a mapping could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NptError {
    /// No frame for a page table (the paging pool is empty).
    OutOfMemory,
    /// Address not aligned to the page size.
    Unaligned,
    /// Beyond the 48-bit guest-physical space.
    OutOfRange,
}

/// Where a nested page table gets its table frames and gives them back:
/// zeroing is the table's business.
pub trait TableFrames {
    /// A frame for a new table, or `None` when there is none left.
    fn alloc_table(&mut self) -> Option<u64>;
    /// Gives back a table frame that no longer holds a table.
    fn free_table(&mut self, frame: u64);
}

impl TableFrames for PagingPool {
    fn alloc_table(&mut self) -> Option<u64> {
        self.alloc()
    }

    fn free_table(&mut self, frame: u64) {
        // A frame the pool did not hand out is refused: it then shows as a
        // frame not returned when the domain ends, never as a double use.
        let _ = self.free(frame);
    }
}

/// A domain's nested page table.
pub struct NestedPageTable {
    root: u64,
    /// Table frames in use, the root included.
    tables: usize,
}

fn entry_ptr(table: u64, index: u64) -> *mut u64 {
    (table + index * 8) as *mut u64
}

fn read_entry(table: u64, index: u64) -> u64 {
    // SAFETY: `table` is a page-table frame owned by this NPT (identity
    // mapped) and index < 512.
    unsafe { core::ptr::read_volatile(entry_ptr(table, index)) }
}

fn write_entry(table: u64, index: u64, value: u64) {
    // SAFETY: as in `read_entry`.
    unsafe { core::ptr::write_volatile(entry_ptr(table, index), value) }
}

fn is_empty(table: u64) -> bool {
    (0..ENTRIES).all(|index| read_entry(table, index) & PRESENT == 0)
}

fn flags(access: Access) -> u64 {
    match access {
        Access::ReadOnly => PRESENT | USER,
        Access::ReadWrite => PRESENT | USER | WRITABLE,
    }
}

/// Index of `gpa` in its table at `level` (4 = PML4 ... 1 = PT).
fn index_at(gpa: u64, level: u32) -> u64 {
    (gpa >> (12 + 9 * (level - 1))) & (ENTRIES - 1)
}

fn check_4k(gpa: u64) -> Result<(), NptError> {
    if !gpa.is_multiple_of(4096) {
        return Err(NptError::Unaligned);
    }
    if gpa >= 1 << 48 {
        return Err(NptError::OutOfRange);
    }
    Ok(())
}

impl NestedPageTable {
    /// An empty table (nothing mapped).
    pub fn new(frames: &mut dyn TableFrames) -> Result<Self, NptError> {
        let mut npt = Self { root: 0, tables: 0 };
        npt.root = npt.new_table(frames)?;
        Ok(npt)
    }

    /// Physical address of the PML4 (for the VMCB's N_CR3).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Table frames in use (the root included).
    pub fn table_count(&self) -> usize {
        self.tables
    }

    fn new_table(&mut self, frames: &mut dyn TableFrames) -> Result<u64, NptError> {
        let frame = frames.alloc_table().ok_or(NptError::OutOfMemory)?;
        // SAFETY: a frame just handed to this table (identity-mapped, 4 KiB,
        // used by nothing else).
        unsafe { core::ptr::write_bytes(frame as *mut u8, 0, 4096) };
        self.tables += 1;
        Ok(frame)
    }

    fn free_table(&mut self, frame: u64, frames: &mut dyn TableFrames) {
        self.tables = self.tables.saturating_sub(1);
        frames.free_table(frame);
    }

    /// Walks to the table at `level` (3 = PDPT, 2 = PD, 1 = PT) for `gpa`,
    /// creating (or splitting) tables on the way. On failure the tables
    /// made on the way are given back.
    fn table_for(
        &mut self,
        gpa: u64,
        level: u32,
        frames: &mut dyn TableFrames,
    ) -> Result<u64, NptError> {
        let mut table = self.root;
        for current in (level + 1..=4).rev() {
            let index = index_at(gpa, current);
            let entry = read_entry(table, index);
            table = if entry & PRESENT == 0 {
                match self.new_table(frames) {
                    Ok(next) => {
                        write_entry(table, index, next | PRESENT | WRITABLE | USER);
                        next
                    }
                    Err(error) => {
                        self.prune(gpa, frames);
                        return Err(error);
                    }
                }
            } else if entry & HUGE != 0 {
                // Split a 2 MiB leaf (current == 2) into 512 small pages.
                let next = self.new_table(frames)?;
                let base = entry & ADDRESS_MASK & !(PAGE_2M - 1);
                let leaf_flags = entry & (PRESENT | WRITABLE | USER);
                for small in 0..ENTRIES {
                    write_entry(next, small, (base + small * 4096) | leaf_flags);
                }
                write_entry(table, index, next | PRESENT | WRITABLE | USER);
                next
            } else {
                entry & ADDRESS_MASK
            };
        }
        Ok(table)
    }

    /// The tables on the way to `gpa` that exist, root first (at most
    /// PML4, PDPT, PD, PT), and how many there are.
    fn path(&self, gpa: u64) -> ([u64; 4], usize) {
        let mut path = [self.root, 0, 0, 0];
        let mut depth = 1;
        for level in (2..=4u32).rev() {
            let entry = read_entry(path[depth - 1], index_at(gpa, level));
            if entry & PRESENT == 0 || entry & HUGE != 0 {
                break;
            }
            path[depth] = entry & ADDRESS_MASK;
            depth += 1;
        }
        (path, depth)
    }

    /// Gives back the tables on the way to `gpa` that map nothing, from
    /// the bottom up (never the root).
    fn prune(&mut self, gpa: u64, frames: &mut dyn TableFrames) {
        let (path, depth) = self.path(gpa);
        for at in (1..depth).rev() {
            if !is_empty(path[at]) {
                return;
            }
            // The table at path[at] is level 4 - at; its entry in the parent
            // is at the parent's level, 5 - at.
            write_entry(path[at - 1], index_at(gpa, 5 - at as u32), 0);
            self.free_table(path[at], frames);
        }
    }

    /// Maps the 2 MiB guest page at `gpa` to host memory at `hpa` (a page
    /// table that was there goes back to the pool).
    pub fn map_2m(
        &mut self,
        gpa: Gpa,
        hpa: Hpa,
        access: Access,
        frames: &mut dyn TableFrames,
    ) -> Result<(), NptError> {
        let (gpa, hpa) = (gpa.0, hpa.0);
        if !gpa.is_multiple_of(PAGE_2M) || !hpa.is_multiple_of(PAGE_2M) {
            return Err(NptError::Unaligned);
        }
        if gpa >= 1 << 48 {
            return Err(NptError::OutOfRange);
        }
        let pd = self.table_for(gpa, 2, frames)?;
        let index = index_at(gpa, 2);
        let old = read_entry(pd, index);
        write_entry(pd, index, hpa | flags(access) | HUGE);
        if old & PRESENT != 0 && old & HUGE == 0 {
            self.free_table(old & ADDRESS_MASK, frames);
        }
        Ok(())
    }

    fn map_leaf(
        &mut self,
        gpa: u64,
        leaf: u64,
        frames: &mut dyn TableFrames,
    ) -> Result<(), NptError> {
        check_4k(gpa)?;
        let pt = self.table_for(gpa, 1, frames)?;
        write_entry(pt, index_at(gpa, 1), leaf);
        Ok(())
    }

    /// Maps the 4 KiB guest page at `gpa` to `hpa` (splitting a 2 MiB leaf).
    pub fn map_4k(
        &mut self,
        gpa: Gpa,
        hpa: Hpa,
        access: Access,
        frames: &mut dyn TableFrames,
    ) -> Result<(), NptError> {
        let (gpa, hpa) = (gpa.0, hpa.0);
        if !hpa.is_multiple_of(4096) {
            return Err(NptError::Unaligned);
        }
        self.map_leaf(gpa, hpa | flags(access), frames)
    }

    /// Maps another domain's page `hpa` at `gpa`, marked foreign (see
    /// [`NestedPageTable::is_foreign`]).
    pub fn map_4k_foreign(
        &mut self,
        gpa: Gpa,
        hpa: Hpa,
        access: Access,
        frames: &mut dyn TableFrames,
    ) -> Result<(), NptError> {
        let (gpa, hpa) = (gpa.0, hpa.0);
        if !hpa.is_multiple_of(4096) {
            return Err(NptError::Unaligned);
        }
        self.map_leaf(gpa, hpa | flags(access) | FOREIGN, frames)
    }

    /// Maps another domain's page `hpa` at `gpa` for the control domain's
    /// `XENMAPSPACE_gmfn_foreign` (see [`NestedPageTable::is_foreign_gmfn`]),
    /// writable.
    pub fn map_4k_foreign_gmfn(
        &mut self,
        gpa: Gpa,
        hpa: Hpa,
        frames: &mut dyn TableFrames,
    ) -> Result<(), NptError> {
        let (gpa, hpa) = (gpa.0, hpa.0);
        if !hpa.is_multiple_of(4096) {
            return Err(NptError::Unaligned);
        }
        let flags = flags(Access::ReadWrite) | FOREIGN | FOREIGN_GMFN;
        self.map_leaf(gpa, hpa | flags, frames)
    }

    /// Removes the 4 KiB mapping of `gpa` (splitting a 2 MiB leaf first, so
    /// its other pages stay mapped); tables left mapping nothing go back to
    /// the pool. Nothing mapped there: nothing to do.
    pub fn unmap_4k(&mut self, gpa: Gpa, frames: &mut dyn TableFrames) -> Result<(), NptError> {
        let gpa = gpa.0;
        check_4k(gpa)?;
        let (path, depth) = self.path(gpa);
        if depth < 3 {
            // No PD (or a PDPT entry absent): nothing mapped.
            return Ok(());
        }
        if depth == 3 {
            // The PD's entry is absent or a 2 MiB leaf, which is split.
            if read_entry(path[2], index_at(gpa, 2)) & PRESENT == 0 {
                return Ok(());
            }
        }
        let pt = self.table_for(gpa, 1, frames)?;
        write_entry(pt, index_at(gpa, 1), 0);
        self.prune(gpa, frames);
        Ok(())
    }

    /// The leaf entry for `gpa` and the size of the page it maps (as a
    /// shift), if mapped.
    fn leaf(&self, gpa: u64) -> Option<(u64, u32)> {
        if gpa >= 1 << 48 {
            return None;
        }
        let mut table = self.root;
        for level in (1..=4u32).rev() {
            let entry = read_entry(table, index_at(gpa, level));
            if entry & PRESENT == 0 {
                return None;
            }
            if level == 1 || (level == 2 && entry & HUGE != 0) {
                return Some((entry, 12 + 9 * (level - 1)));
            }
            table = entry & ADDRESS_MASK;
        }
        None
    }

    /// The host address and access for `gpa`, if mapped.
    pub fn translate(&self, gpa: Gpa) -> Option<(Hpa, Access)> {
        let gpa = gpa.0;
        let (entry, shift) = self.leaf(gpa)?;
        let access = if entry & WRITABLE != 0 {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        };
        let offset = gpa & ((1 << shift) - 1);
        Some((
            Hpa((entry & ADDRESS_MASK & !((1 << shift) - 1)) + offset),
            access,
        ))
    }

    /// Whether another domain's page is mapped at `gpa`.
    pub fn is_foreign(&self, gpa: Gpa) -> bool {
        self.leaf(gpa.0)
            .is_some_and(|(entry, _)| entry & FOREIGN != 0)
    }

    /// Whether a page mapped by [`NestedPageTable::map_4k_foreign_gmfn`] is
    /// at `gpa` (not a grant mapping).
    pub fn is_foreign_gmfn(&self, gpa: Gpa) -> bool {
        self.leaf(gpa.0)
            .is_some_and(|(entry, _)| entry & FOREIGN_GMFN != 0)
    }

    /// Calls `f` with the guest-physical and host address of every page
    /// mapped by [`NestedPageTable::map_4k_foreign_gmfn`]. The walk visits
    /// every table once (bounded by the paging pool).
    pub fn for_each_foreign_gmfn(&self, f: &mut dyn FnMut(Gpa, Hpa)) {
        let root = self.root;
        for i4 in 0..ENTRIES {
            let e4 = read_entry(root, i4);
            if e4 & PRESENT == 0 {
                continue;
            }
            for i3 in 0..ENTRIES {
                let e3 = read_entry(e4 & ADDRESS_MASK, i3);
                if e3 & PRESENT == 0 || e3 & HUGE != 0 {
                    continue;
                }
                for i2 in 0..ENTRIES {
                    let e2 = read_entry(e3 & ADDRESS_MASK, i2);
                    if e2 & PRESENT == 0 || e2 & HUGE != 0 {
                        continue;
                    }
                    for i1 in 0..ENTRIES {
                        let e1 = read_entry(e2 & ADDRESS_MASK, i1);
                        if e1 & PRESENT != 0 && e1 & FOREIGN_GMFN != 0 {
                            let gpa = (i4 << 39) | (i3 << 30) | (i2 << 21) | (i1 << 12);
                            f(Gpa(gpa), Hpa(e1 & ADDRESS_MASK));
                        }
                    }
                }
            }
        }
    }

    /// Gives back every table frame, the root last. The table is unusable
    /// afterwards (the domain is gone).
    pub fn destroy(&mut self, frames: &mut dyn TableFrames) {
        let root = self.root;
        for i4 in 0..ENTRIES {
            let e4 = read_entry(root, i4);
            if e4 & PRESENT == 0 {
                continue;
            }
            let pdpt = e4 & ADDRESS_MASK;
            for i3 in 0..ENTRIES {
                let e3 = read_entry(pdpt, i3);
                if e3 & PRESENT == 0 || e3 & HUGE != 0 {
                    continue;
                }
                let pd = e3 & ADDRESS_MASK;
                for i2 in 0..ENTRIES {
                    let e2 = read_entry(pd, i2);
                    if e2 & PRESENT != 0 && e2 & HUGE == 0 {
                        self.free_table(e2 & ADDRESS_MASK, frames);
                    }
                }
                self.free_table(pd, frames);
            }
            self.free_table(pdpt, frames);
        }
        self.free_table(root, frames);
        self.root = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{alloc_zeroed, dealloc, Layout};

    /// Page-aligned host pages standing in for frames (their addresses
    /// are "identity mapped" on the host), at most `limit` in use.
    struct HostFrames {
        limit: usize,
        out: std::collections::BTreeSet<u64>,
        ever: usize,
    }

    const LAYOUT: Layout = match Layout::from_size_align(4096, 4096) {
        Ok(layout) => layout,
        Err(_) => panic!(),
    };

    impl HostFrames {
        fn new(limit: usize) -> Self {
            Self {
                limit,
                out: Default::default(),
                ever: 0,
            }
        }
    }

    impl TableFrames for HostFrames {
        fn alloc_table(&mut self) -> Option<u64> {
            if self.out.len() >= self.limit {
                return None;
            }
            // SAFETY: a non-zero-sized layout.
            let page = unsafe { alloc_zeroed(LAYOUT) } as u64;
            assert_ne!(page, 0);
            // Dirty it: the table must zero what it gets.
            // SAFETY: the page was just allocated.
            unsafe { core::ptr::write_bytes(page as *mut u8, 0xAB, 4096) };
            self.out.insert(page);
            self.ever += 1;
            Some(page)
        }

        fn free_table(&mut self, frame: u64) {
            assert!(self.out.remove(&frame), "freed a frame not handed out");
            // SAFETY: allocated above with LAYOUT and handed back once.
            unsafe { dealloc(frame as *mut u8, LAYOUT) };
        }
    }

    const RAM: u64 = 0x4000_0000_0000; // an "hpa" never dereferenced

    #[test]
    fn tables_are_counted_and_all_given_back() {
        let mut frames = HostFrames::new(64);
        let mut npt = NestedPageTable::new(&mut frames).unwrap();
        npt.map_2m(Gpa(0), Hpa(RAM), Access::ReadWrite, &mut frames)
            .unwrap();
        npt.map_4k(
            Gpa(0x20_0000),
            Hpa(RAM + 0x20_0000),
            Access::ReadWrite,
            &mut frames,
        )
        .unwrap();
        npt.map_4k(Gpa(1 << 40), Hpa(RAM), Access::ReadOnly, &mut frames)
            .unwrap();
        assert_eq!(npt.table_count(), frames.out.len());
        assert_eq!(
            npt.translate(Gpa(0x1234)),
            Some((Hpa(RAM + 0x1234), Access::ReadWrite))
        );
        assert_eq!(
            npt.translate(Gpa((1 << 40) + 8)),
            Some((Hpa(RAM + 8), Access::ReadOnly))
        );
        npt.destroy(&mut frames);
        assert!(frames.out.is_empty(), "every table back");
        assert_eq!(npt.table_count(), 0);
    }

    #[test]
    fn unmapping_the_last_page_gives_its_tables_back() {
        let mut frames = HostFrames::new(64);
        let mut npt = NestedPageTable::new(&mut frames).unwrap();
        npt.map_4k(Gpa(0x1000), Hpa(RAM), Access::ReadWrite, &mut frames)
            .unwrap();
        let base = frames.out.len();
        // Far away: a PDPT, a PD and a PT of its own.
        let far = 3 * 0x80_0000_0000 + 0x5000;
        npt.map_4k(Gpa(far), Hpa(RAM), Access::ReadWrite, &mut frames)
            .unwrap();
        npt.map_4k(Gpa(far + 0x1000), Hpa(RAM), Access::ReadWrite, &mut frames)
            .unwrap();
        assert_eq!(frames.out.len(), base + 3);
        npt.unmap_4k(Gpa(far), &mut frames).unwrap();
        assert_eq!(frames.out.len(), base + 3, "the PT still maps a page");
        npt.unmap_4k(Gpa(far + 0x1000), &mut frames).unwrap();
        assert_eq!(frames.out.len(), base, "PT, PD and PDPT back");
        assert_eq!(npt.translate(Gpa(far + 0x1000)), None);
        assert_eq!(
            npt.translate(Gpa(0x1000)),
            Some((Hpa(RAM), Access::ReadWrite))
        );
        // Unmapping what is not mapped takes nothing.
        npt.unmap_4k(Gpa(1 << 45), &mut frames).unwrap();
        assert_eq!(frames.out.len(), base);
        npt.destroy(&mut frames);
        assert!(frames.out.is_empty());
    }

    #[test]
    fn out_of_frames_is_an_error_and_leaves_nothing_half_made() {
        let mut frames = HostFrames::new(3);
        let mut npt = NestedPageTable::new(&mut frames).unwrap();
        // Root + PDPT + PD fit; the PT does not.
        assert_eq!(
            npt.map_4k(Gpa(0x1000), Hpa(RAM), Access::ReadWrite, &mut frames),
            Err(NptError::OutOfMemory)
        );
        assert_eq!(
            frames.out.len(),
            1,
            "the PDPT and PD made on the way are back"
        );
        assert_eq!(npt.table_count(), 1);
        assert_eq!(npt.translate(Gpa(0x1000)), None);
        npt.destroy(&mut frames);
        assert!(frames.out.is_empty());
    }

    #[test]
    fn unmapping_in_a_2m_page_splits_it() {
        let mut frames = HostFrames::new(8);
        let mut npt = NestedPageTable::new(&mut frames).unwrap();
        npt.map_2m(Gpa(0x20_0000), Hpa(RAM), Access::ReadWrite, &mut frames)
            .unwrap();
        npt.unmap_4k(Gpa(0x20_1000), &mut frames).unwrap();
        assert_eq!(npt.translate(Gpa(0x20_1000)), None);
        assert_eq!(
            npt.translate(Gpa(0x20_2000)),
            Some((Hpa(RAM + 0x2000), Access::ReadWrite))
        );
        // Mapping a 2 MiB page over the split one gives its PT back.
        let before = frames.out.len();
        npt.map_2m(Gpa(0x20_0000), Hpa(RAM), Access::ReadOnly, &mut frames)
            .unwrap();
        assert_eq!(frames.out.len(), before - 1);
        npt.destroy(&mut frames);
        assert!(frames.out.is_empty());
    }

    #[test]
    fn foreign_leaves_are_marked() {
        let mut frames = HostFrames::new(8);
        let mut npt = NestedPageTable::new(&mut frames).unwrap();
        npt.map_4k(Gpa(0x1000), Hpa(RAM), Access::ReadWrite, &mut frames)
            .unwrap();
        npt.map_4k_foreign(
            Gpa(0x2000),
            Hpa(RAM + 0x5000),
            Access::ReadOnly,
            &mut frames,
        )
        .unwrap();
        assert!(!npt.is_foreign(Gpa(0x1000)));
        assert!(npt.is_foreign(Gpa(0x2000)));
        assert!(!npt.is_foreign(Gpa(0x3000)));
        assert_eq!(
            npt.translate(Gpa(0x2000)),
            Some((Hpa(RAM + 0x5000), Access::ReadOnly))
        );
        npt.map_4k(Gpa(0x2000), Hpa(RAM), Access::ReadWrite, &mut frames)
            .unwrap();
        assert!(!npt.is_foreign(Gpa(0x2000)));
        npt.destroy(&mut frames);
        assert!(frames.out.is_empty());
    }

    #[test]
    fn gmfn_foreign_leaves_are_found_apart_from_grant_mappings() {
        let mut frames = HostFrames::new(16);
        let mut npt = NestedPageTable::new(&mut frames).unwrap();
        npt.map_2m(Gpa(0), Hpa(0x4000_0000), Access::ReadWrite, &mut frames)
            .unwrap();
        npt.map_4k_foreign(Gpa(0x40_0000), Hpa(RAM), Access::ReadWrite, &mut frames)
            .unwrap();
        let far = Gpa((3 << 39) | (5 << 30) | (7 << 21) | (9 << 12));
        for (gpa, hpa) in [(Gpa(0x40_1000), RAM + 0x1000), (far, RAM + 0x2000)] {
            npt.map_4k_foreign_gmfn(gpa, Hpa(hpa), &mut frames).unwrap();
        }
        assert!(npt.is_foreign(far) && npt.is_foreign_gmfn(far));
        assert!(npt.is_foreign(Gpa(0x40_0000)) && !npt.is_foreign_gmfn(Gpa(0x40_0000)));
        assert!(!npt.is_foreign_gmfn(Gpa(0x1000)));
        assert_eq!(
            npt.translate(far),
            Some((Hpa(RAM + 0x2000), Access::ReadWrite))
        );
        let mut seen = Vec::new();
        npt.for_each_foreign_gmfn(&mut |gpa, hpa| seen.push((gpa, hpa)));
        assert_eq!(
            seen,
            [
                (Gpa(0x40_1000), Hpa(RAM + 0x1000)),
                (far, Hpa(RAM + 0x2000))
            ]
        );
        npt.unmap_4k(far, &mut frames).unwrap();
        seen.clear();
        npt.for_each_foreign_gmfn(&mut |gpa, hpa| seen.push((gpa, hpa)));
        assert_eq!(seen, [(Gpa(0x40_1000), Hpa(RAM + 0x1000))]);
        npt.destroy(&mut frames);
        assert!(frames.out.is_empty());
    }
}
