//! A domain's memory: the host frames backing its RAM, its nested page
//! table and the paging pool the table is built from, its grant-table
//! frames, the foreign (granted) pages mapped into it, and copies to and
//! from guest-physical and guest-linear addresses (through the guest's own
//! page tables).
//!
//! A foreign page is marked in the nested page table itself (no heap per
//! mapping); what its gfn held before is kept by the grant table's maptrack
//! as the `restore` value [`GuestMemory::map_foreign`] returns. Shared info
//! and grant frames move on `XENMEM_add_to_physmap`, as in Xen: the place
//! they leave gets back what is underneath (the special page the guest put
//! there, else its own RAM, else nothing). Page tables are paid from the domain's paging pool (Xen's
//! HAP pool): when it is empty the guest gets `-ENOMEM`, and tables that no
//! longer map anything go back to it.

use alloc::vec::Vec;

use rxen_abi::errno::{self, Errno};
use rxen_core::domain::DomId;
use rxen_core::frame_alloc::PagingPool;
use rxen_core::mm::{Gfn, Gpa, Hpa};
use rxen_core::shared_page::SharedPage;
use rxen_x86::frame::{FrameRef, OutOfRange, PAGE_SIZE};
use rxen_x86::printk;
use rxen_x86::svm::guest_walk::{self, PagingRegs};
use rxen_x86::svm::npt::{Access, NestedPageTable, NptError};

use crate::memory::{alloc_frame, free_frames};

const PAGE_2M: u64 = 2 << 20;

/// A domain's guest-physical memory.
pub struct GuestMemory {
    /// Nested page table.
    pub npt: NestedPageTable,
    /// The frames the nested page table is built from.
    pool: PagingPool,
    /// The domain (for log lines).
    domid: DomId,
    /// Bytes of RAM from guest-physical 0.
    pub ram_bytes: u64,
    /// Host frames backing RAM, in guest-physical order: (guest-physical
    /// start, host address, number of 4 KiB frames).
    backing: Vec<(u64, u64, usize)>,
    /// Extra frames the domain owns (shared info page...).
    extra: Vec<u64>,
    /// Host frame of the shared-info page.
    shared_info: u64,
    /// Guest frame the shared-info page is mapped at, if any.
    shared_info_gfn: Option<Gfn>,
    /// Host frames of the grant table, in table order.
    grant_frames: Vec<u64>,
    /// Guest frame each grant-table frame is mapped at, if any.
    grant_frame_gfns: Vec<Option<Gfn>>,
    /// RAM frames taken from the domain, freed after a TLB flush.
    released: Vec<u64>,
    /// Host frame and guest frame of the PV console ring page, for a domU
    /// whose console the hypervisor serves.
    console: Option<(u64, Option<Gfn>)>,
    /// The RAM is host RAM mapped 1:1 (a dom0), not the frame allocator's:
    /// it is not given back when the domain goes.
    direct: bool,
}

/// `restore` bits: something was mapped (else the gfn was empty), and it
/// was writable; the rest is its host address.
const RESTORE_PRESENT: u64 = 1;
const RESTORE_WRITABLE: u64 = 2;

/// Why memory could not be set up.
#[derive(Debug)]
pub enum MemoryError {
    /// The frame allocator (or the heap) ran out.
    OutOfMemory,
    /// The paging pool is too small to map the domain's RAM.
    PoolTooSmall,
}

/// Xen's errno for a nested-page-table failure.
fn npt_errno(error: NptError) -> Errno {
    match error {
        NptError::OutOfMemory => errno::ENOMEM,
        NptError::Unaligned | NptError::OutOfRange => errno::EINVAL,
    }
}

/// The nested page table's input address of `gfn` (`-EINVAL` beyond the
/// 48 bits it translates).
fn gpa_of(gfn: Gfn) -> Result<Gpa, Errno> {
    gfn.gpa().filter(|gpa| gpa.0 < 1 << 48).ok_or(errno::EINVAL)
}

impl GuestMemory {
    /// The `len` bytes of host memory at `hpa`, for as long as `self` is
    /// borrowed. Every host address this type works on comes from it: the
    /// frames backing the domain's RAM, its extra and grant-table frames
    /// (also one just allocated for it and not yet recorded), and what its
    /// nested page table maps (a foreign frame stays allocated while it is
    /// mapped: the grant table pins it until the unmap).
    fn host(&self, hpa: u64, len: usize) -> FrameRef<'_> {
        // SAFETY: as above, `hpa..hpa+len` is RAM of this domain's (or a
        // page granted to it), identity-mapped in the hypervisor; frames are
        // freed only in `drop` or after an unmap, both of which need
        // `&mut self`, so not while this borrow lives. The guest shares the
        // memory, and the view gives only copies and atomics.
        unsafe { FrameRef::new(hpa, len) }
    }

    /// A domain memory without RAM yet: its paging pool of `pool_pages`
    /// frames (taken now), an empty nested page table and the shared-info
    /// page. Dropping it gives everything back.
    fn empty(domid: DomId, ram_bytes: u64, pool_pages: u64) -> Result<Self, MemoryError> {
        let pool_pages = usize::try_from(pool_pages).map_err(|_| MemoryError::OutOfMemory)?;
        let mut pool = PagingPool::new(pool_pages).map_err(|_| MemoryError::OutOfMemory)?;
        for _ in 0..pool_pages {
            let Some(frame) = alloc_frame() else {
                pool.release(&mut |frame| free_frames(frame, 1));
                return Err(MemoryError::OutOfMemory);
            };
            // Cannot be full: sized for `pool_pages`.
            let _ = pool.add(frame);
        }
        let Ok(npt) = NestedPageTable::new(&mut pool) else {
            pool.release(&mut |frame| free_frames(frame, 1));
            return Err(MemoryError::PoolTooSmall);
        };
        let mut memory = Self {
            npt,
            pool,
            domid,
            ram_bytes,
            backing: Vec::new(),
            extra: Vec::new(),
            shared_info: 0,
            shared_info_gfn: None,
            grant_frames: Vec::new(),
            grant_frame_gfns: Vec::new(),
            released: Vec::new(),
            console: None,
            direct: false,
        };
        // From here on, dropping `memory` gives everything back.
        // The shared-info page exists from the start (events are recorded in
        // it); the guest maps it where it likes with XENMEM_add_to_physmap.
        memory
            .extra
            .try_reserve(2)
            .map_err(|_| MemoryError::OutOfMemory)?;
        let shared_info = alloc_frame().ok_or(MemoryError::OutOfMemory)?;
        memory.host(shared_info, PAGE_SIZE).fill(0);
        memory.extra.push(shared_info);
        memory.shared_info = shared_info;
        Ok(memory)
    }

    /// Allocates and maps `ram_bytes` (a multiple of 4 KiB) of zeroed RAM
    /// at guest-physical 0, with 2 MiB pages where the allocator can, from
    /// a paging pool of `pool_pages` frames taken now.
    pub fn new(domid: DomId, ram_bytes: u64, pool_pages: u64) -> Result<Self, MemoryError> {
        let mut memory = Self::empty(domid, ram_bytes, pool_pages)?;
        let mut gpa = 0;
        while gpa < ram_bytes {
            if ram_bytes - gpa >= PAGE_2M && gpa % PAGE_2M == 0 {
                if let Some(hpa) = crate::memory::alloc_frames_aligned(512, 512) {
                    memory.add_backing(gpa, hpa, 512)?;
                    memory.host(hpa, PAGE_2M as usize).fill(0);
                    memory
                        .npt
                        .map_2m(Gpa(gpa), Hpa(hpa), Access::ReadWrite, &mut memory.pool)
                        .map_err(|_| MemoryError::PoolTooSmall)?;
                    gpa += PAGE_2M;
                    continue;
                }
            }
            let hpa = alloc_frame().ok_or(MemoryError::OutOfMemory)?;
            memory.add_backing(gpa, hpa, 1)?;
            memory.host(hpa, PAGE_SIZE).fill(0);
            memory
                .npt
                .map_4k(Gpa(gpa), Hpa(hpa), Access::ReadWrite, &mut memory.pool)
                .map_err(|_| MemoryError::PoolTooSmall)?;
            gpa += 4096;
        }
        Ok(memory)
    }

    /// Maps the host RAM `ram` (page-aligned ranges, sorted, kept out of the
    /// frame allocator for this domain) at the same guest-physical
    /// addresses: a 1:1 dom0 ([`rxen_core::dom0_memory`]). Nothing is
    /// zeroed, as Xen populates a PVH dom0 with `MEMF_no_scrub`: the RAM is
    /// the privileged domain's own, rxen has put nothing of its own there
    /// (its heap and frames lie outside), and the low RAM keeps what the
    /// firmware left (the BIOS data area Linux reads). The builder writes
    /// or zeroes everything it hands over ([`GuestMemory::zero_phys`] for
    /// the kernel's BSS).
    pub fn new_direct(
        domid: DomId,
        ram: &[core::ops::Range<u64>],
        pool_pages: u64,
    ) -> Result<Self, MemoryError> {
        let end = ram.last().map_or(0, |r| r.end);
        let mut memory = Self::empty(domid, end, pool_pages)?;
        memory.direct = true;
        for range in ram {
            let count = ((range.end - range.start) / 4096) as usize;
            if count == 0 {
                continue;
            }
            memory.add_backing(range.start, range.start, count)?;
            let mut at = range.start;
            while at < range.end {
                let result = if at % PAGE_2M == 0 && range.end - at >= PAGE_2M {
                    let r =
                        memory
                            .npt
                            .map_2m(Gpa(at), Hpa(at), Access::ReadWrite, &mut memory.pool);
                    at += PAGE_2M;
                    r
                } else {
                    let r =
                        memory
                            .npt
                            .map_4k(Gpa(at), Hpa(at), Access::ReadWrite, &mut memory.pool);
                    at += 4096;
                    r
                };
                result.map_err(|_| MemoryError::PoolTooSmall)?;
            }
        }
        Ok(memory)
    }

    /// Whether the RAM is host RAM mapped 1:1 (a dom0).
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Maps the page at `gpa` to the same host page (device memory of a 1:1
    /// dom0, mapped on first touch as Xen maps its hardware domain's MMIO).
    /// The caller checked that the host page is device memory.
    pub fn map_identity(&mut self, gpa: Gpa) -> Result<(), Errno> {
        let page = Gpa(gpa.0 & !0xFFF);
        if !self.direct || self.npt.translate(page).is_some() {
            return Err(errno::EINVAL);
        }
        self.npt
            .map_4k(page, Hpa(page.0), Access::ReadWrite, &mut self.pool)
            .map_err(|e| self.npt_failed(e))
    }

    /// Maps the host page at `gpa` read-only at the same guest address, for
    /// a dom0 whose RAM is not 1:1: the pages of the host's ACPI tables its
    /// own tables lead to (Xen identity-maps the ACPI regions into a PVH
    /// dom0). Only a page that is not host RAM and not mapped in the domain
    /// yet (none of its RAM); false otherwise.
    pub fn map_host_readonly(&mut self, gpa: Gpa) -> bool {
        let page = Gpa(gpa.0 & !0xFFF);
        if self.direct
            || !crate::memory::is_device_memory(page.0)
            || self.npt.translate(page).is_some()
        {
            return false;
        }
        match self
            .npt
            .map_4k(page, Hpa(page.0), Access::ReadOnly, &mut self.pool)
        {
            Ok(()) => true,
            Err(e) => {
                self.npt_failed(e);
                false
            }
        }
    }

    /// Unmaps the page at `gpa` if it is one [`GuestMemory::map_identity`]
    /// mapped (a 1:1 dom0's device memory, never its RAM): the page of an
    /// MSI-X table that dom0 moved there, whose accesses must trap again.
    /// True if a mapping went (the caller flushes the domain's TLBs).
    pub fn unmap_identity(&mut self, gpa: Gpa) -> bool {
        let page = Gpa(gpa.0 & !0xFFF);
        if !self.direct || self.ram_frame(Gfn(page.0 >> 12)).is_some() {
            return false;
        }
        if self.npt.translate(page).map(|(hpa, _)| hpa.0) != Some(page.0) {
            return false;
        }
        match self.npt.unmap_4k(page, &mut self.pool) {
            Ok(()) => true,
            Err(e) => {
                self.npt_failed(e);
                false
            }
        }
    }

    /// Records RAM frames at `gpa` (above every recorded run only; see
    /// [`GuestMemory::insert_backing`]), extending the last run when they
    /// follow it.
    fn add_backing(&mut self, gpa: u64, hpa: u64, count: usize) -> Result<(), MemoryError> {
        if let Some(last) = self.backing.last_mut() {
            let frames = last.2 as u64 * 4096;
            if last.0 + frames == gpa && last.1 + frames == hpa {
                last.2 += count;
                return Ok(());
            }
        }
        if self.backing.try_reserve(1).is_err() {
            if !self.direct {
                free_frames(hpa, count);
            }
            return Err(MemoryError::OutOfMemory);
        }
        self.backing.push((gpa, hpa, count));
        Ok(())
    }

    /// Records RAM frames at `gpa` anywhere in the guest-physical space
    /// (no run covers it: the caller checked), merging with the runs
    /// before and after when they are contiguous on both sides. Needs one
    /// free slot in `backing` (reserved by the caller).
    fn insert_backing(&mut self, gpa: u64, hpa: u64, count: usize) {
        let at = self.backing.partition_point(|&(start, _, _)| start < gpa);
        let bytes = count as u64 * 4096;
        if let Some(before) = at.checked_sub(1).and_then(|i| self.backing.get_mut(i)) {
            let frames = before.2 as u64 * 4096;
            if before.0 + frames == gpa && before.1 + frames == hpa {
                before.2 += count;
                // The run after may now follow on.
                if let Some(&(next_gpa, next_hpa, next_count)) = self.backing.get(at) {
                    let before = &mut self.backing[at - 1];
                    let frames = before.2 as u64 * 4096;
                    if before.0 + frames == next_gpa && before.1 + frames == next_hpa {
                        before.2 += next_count;
                        self.backing.remove(at);
                    }
                }
                return;
            }
        }
        if let Some(after) = self.backing.get_mut(at) {
            if gpa + bytes == after.0 && hpa + bytes == after.1 {
                *after = (gpa, hpa, after.2 + count);
                return;
            }
        }
        self.backing.insert(at, (gpa, hpa, count));
    }

    /// Gives the domain `pages` zeroed frames of RAM from guest frame `gfn`
    /// (`XENMEM_populate_physmap`): 2 MiB pages where `gfn` and the
    /// allocator allow, else 4 KiB ones. Every page of the range must be
    /// unmapped (`-EBUSY`); a 1:1 domain's RAM is the host's and cannot
    /// grow (`-EPERM`). On failure (`-ENOMEM` from the allocator, the heap
    /// or the paging pool) nothing of the range is left.
    pub fn populate(&mut self, gfn: Gfn, pages: u64) -> Result<(), Errno> {
        if self.direct {
            return Err(errno::EPERM);
        }
        let start = gpa_of(gfn)?.0;
        let end = pages
            .checked_mul(4096)
            .and_then(|bytes| start.checked_add(bytes))
            .filter(|&end| end <= 1 << 48)
            .ok_or(errno::EINVAL)?;
        let mut at = start;
        while at < end {
            if self.npt.translate(Gpa(at)).is_some() {
                return Err(errno::EBUSY);
            }
            at += 4096;
        }
        // At most one new run per page: reserved now, so that recording
        // cannot fail half-way.
        let runs = usize::try_from(pages).map_err(|_| errno::ENOMEM)?;
        self.backing.try_reserve(runs).map_err(|_| errno::ENOMEM)?;
        let mut at = start;
        let result = loop {
            if at == end {
                break Ok(());
            }
            if at % PAGE_2M == 0 && end - at >= PAGE_2M {
                if let Some(hpa) = crate::memory::alloc_frames_aligned(512, 512) {
                    self.host(hpa, PAGE_2M as usize).fill(0);
                    if let Err(e) =
                        self.npt
                            .map_2m(Gpa(at), Hpa(hpa), Access::ReadWrite, &mut self.pool)
                    {
                        free_frames(hpa, 512);
                        break Err(self.npt_failed(e));
                    }
                    self.insert_backing(at, hpa, 512);
                    at += PAGE_2M;
                    continue;
                }
            }
            let Some(hpa) = alloc_frame() else {
                break Err(errno::ENOMEM);
            };
            self.host(hpa, PAGE_SIZE).fill(0);
            if let Err(e) = self
                .npt
                .map_4k(Gpa(at), Hpa(hpa), Access::ReadWrite, &mut self.pool)
            {
                free_frames(hpa, 1);
                break Err(self.npt_failed(e));
            }
            self.insert_backing(at, hpa, 1);
            at += 4096;
        };
        if result.is_err() {
            // Take back what this call gave (freed after the flush that
            // follows a failed populate: a CPU may have walked the tables).
            let mut undo = start;
            while undo < at {
                let _ = self.take_ram(Gpa(undo).gfn());
                undo += 4096;
            }
        }
        result
    }

    /// Takes RAM frame `gfn` back from the domain: unmapped, out of the
    /// runs, kept among the released frames until [`GuestMemory::free_released`]
    /// (after the domain's TLBs are flushed). The caller knows no other
    /// domain maps the frame (grants and foreign maps). `-ENOENT` if `gfn`
    /// is not the domain's own RAM, `-ENOMEM`, `-EPERM` for a 1:1 dom0.
    pub fn take_ram(&mut self, gfn: Gfn) -> Result<(), Errno> {
        if self.direct {
            return Err(errno::EPERM);
        }
        let hpa = self.ram_frame(gfn).ok_or(errno::ENOENT)?.0;
        self.released.try_reserve(1).map_err(|_| errno::ENOMEM)?;
        let gpa = gpa_of(gfn)?.0;
        let run = self
            .backing
            .partition_point(|&(start, _, _)| start <= gpa)
            .checked_sub(1)
            .ok_or(errno::ENOENT)?;
        let (start, run_hpa, count) = self.backing[run];
        let index = ((gpa - start) / 4096) as usize;
        if index + 1 < count && index > 0 {
            // A frame inside the run: split it in two.
            self.backing.try_reserve(1).map_err(|_| errno::ENOMEM)?;
        }
        self.npt
            .unmap_4k(Gpa(gpa), &mut self.pool)
            .map_err(|e| self.npt_failed(e))?;
        match (index, count - index - 1) {
            (0, 0) => {
                self.backing.remove(run);
            }
            (0, _) => self.backing[run] = (start + 4096, run_hpa + 4096, count - 1),
            (_, 0) => self.backing[run].2 = count - 1,
            (_, after) => {
                self.backing[run].2 = index;
                self.backing
                    .insert(run + 1, (gpa + 4096, hpa + 4096, after));
            }
        }
        self.released.push(hpa);
        Ok(())
    }

    /// Frees the frames [`GuestMemory::take_ram`] took, once no vCPU of
    /// the domain can reach them through its TLB any more.
    pub fn free_released(&mut self) {
        for hpa in self.released.drain(..) {
            free_frames(hpa, 1);
        }
    }

    /// Maps another domain's RAM frame `hpa` at `gfn`, writable, for the
    /// control domain's `XENMAPSPACE_gmfn_foreign` (privcmd's foreign
    /// maps): `-ENXIO` over another foreign page (Xen 4.17's answer);
    /// anything else comes back when the foreign page is removed. The
    /// owner's frame is freed only after [`GuestMemory::revoke_foreign_gmfn`]
    /// took it out.
    pub fn map_foreign_gmfn(&mut self, gfn: Gfn, hpa: Hpa) -> Result<(), Errno> {
        let gpa = gfn
            .gpa()
            .filter(|gpa| gpa.0 < 1 << 46)
            .ok_or(errno::EINVAL)?;
        if self.npt.is_foreign(gpa) {
            return Err(errno::ENXIO);
        }
        self.npt
            .map_4k_foreign_gmfn(gpa, hpa, &mut self.pool)
            .map_err(|e| self.npt_failed(e))
    }

    /// Removes the page [`GuestMemory::map_foreign_gmfn`] mapped at `gfn`
    /// (`XENMEM_remove_from_physmap`), putting back what is underneath;
    /// `-ENOENT` where nothing is mapped, `-EINVAL` for anything else (a
    /// grant mapping goes with its grant unmap).
    pub fn unmap_foreign_gmfn(&mut self, gfn: Gfn) -> Result<(), Errno> {
        let gpa = gpa_of(gfn)?;
        if self.npt.translate(gpa).is_none() {
            return Err(errno::ENOENT);
        }
        if !self.npt.is_foreign_gmfn(gpa) {
            return Err(errno::EINVAL);
        }
        self.restore(gfn)
    }

    /// The host runs (host address, bytes) of the domain's frames another
    /// domain may map by number (its RAM and grant-table frames), sorted
    /// by host address, to find whether a host frame is the domain's.
    pub fn host_runs(&self) -> Result<Vec<(u64, u64)>, Errno> {
        let mut runs = Vec::new();
        runs.try_reserve(self.backing.len() + self.grant_frames.len())
            .map_err(|_| errno::ENOMEM)?;
        runs.extend(
            self.backing
                .iter()
                .map(|&(_, hpa, count)| (hpa, count as u64 * 4096)),
        );
        runs.extend(self.grant_frames.iter().map(|&hpa| (hpa, PAGE_SIZE as u64)));
        runs.sort_unstable();
        Ok(runs)
    }

    /// Removes every page mapped by [`GuestMemory::map_foreign_gmfn`] whose
    /// frame lies in `runs` (another domain's RAM, from
    /// [`GuestMemory::host_runs`], which is going away), putting back what
    /// is underneath. Returns how many went (`Err` if one could not be
    /// removed: the owner's frames must then never be freed); the caller
    /// flushes this domain's TLBs before the frames are freed.
    pub fn revoke_foreign_gmfn(&mut self, runs: &[(u64, u64)]) -> Result<usize, usize> {
        let mut revoked = 0;
        // Rounds of at most `ROUND` pages (no allocation); each round
        // removes what it found, so the next walk finds the rest.
        const ROUND: usize = 256;
        loop {
            let mut found = [Gfn(0); ROUND];
            let mut n = 0;
            self.npt.for_each_foreign_gmfn(&mut |gpa, hpa| {
                let run = runs.partition_point(|&(start, _)| start <= hpa.0);
                let owned = run
                    .checked_sub(1)
                    .and_then(|r| runs.get(r))
                    .is_some_and(|&(start, bytes)| hpa.0 - start < bytes);
                if owned && n < ROUND {
                    found[n] = gpa.gfn();
                    n += 1;
                }
            });
            for &gfn in &found[..n] {
                if self.restore(gfn).is_err() {
                    // No table to put back the page underneath: leave the
                    // gfn empty, never the foreign frame.
                    let gone =
                        gpa_of(gfn).is_ok_and(|gpa| self.npt.unmap_4k(gpa, &mut self.pool).is_ok());
                    if !gone {
                        // Cannot happen (a 4 KiB leaf's tables exist), and
                        // would loop: the caller keeps the owner's frames.
                        return Err(revoked);
                    }
                }
                revoked += 1;
            }
            if n < ROUND {
                return Ok(revoked);
            }
        }
    }

    /// The host frame backing RAM frame `gfn`, if `gfn` is RAM (whatever is
    /// mapped there now).
    fn backing_frame(&self, gfn: Gfn) -> Option<u64> {
        let gpa = gfn.gpa()?.0;
        let run = self.backing.partition_point(|&(start, _, _)| start <= gpa);
        let &(start, hpa, count) = self.backing.get(run.checked_sub(1)?)?;
        (gpa - start < count as u64 * 4096).then(|| hpa + (gpa - start))
    }

    /// What guest frame `gfn` holds under any foreign mapping: a special
    /// page placed there, else the domain's own RAM, else nothing.
    fn underlying(&self, gfn: Gfn) -> Option<(u64, Access)> {
        if self.shared_info_gfn == Some(gfn) {
            return Some((self.shared_info, Access::ReadWrite));
        }
        if let Some(index) = self.grant_frame_gfns.iter().position(|&g| g == Some(gfn)) {
            return Some((*self.grant_frames.get(index)?, Access::ReadWrite));
        }
        if let Some((hpa, Some(console_gfn))) = self.console {
            if console_gfn == gfn {
                return Some((hpa, Access::ReadWrite));
            }
        }
        self.backing_frame(gfn).map(|hpa| (hpa, Access::ReadWrite))
    }

    /// Puts back at `gfn` what [`GuestMemory::underlying`] says is there.
    fn restore(&mut self, gfn: Gfn) -> Result<(), Errno> {
        let gpa = gpa_of(gfn)?;
        let result = match self.underlying(gfn) {
            Some((hpa, access)) => self.npt.map_4k(gpa, Hpa(hpa), access, &mut self.pool),
            None => self.npt.unmap_4k(gpa, &mut self.pool),
        };
        result.map_err(|e| self.npt_failed(e))
    }

    /// The guest's errno for `error`; logs the first time the pool runs dry
    /// (as Xen's "failed to allocate from HAP pool").
    fn npt_failed(&self, error: NptError) -> Errno {
        if error == NptError::OutOfMemory && self.pool.failures() == 1 {
            printk!(
                "d{}: paging pool exhausted ({} pages): -ENOMEM",
                self.domid,
                self.pool.size()
            );
        }
        npt_errno(error)
    }

    /// Places host frame `hpa` (a special page of the domain) at `gfn` for
    /// XENMEM_add_to_physmap: refused over a foreign mapping; a special page
    /// that was at `gfn` is no longer there.
    fn place_special(&mut self, gfn: Gfn, hpa: u64) -> Result<(), Errno> {
        let gpa = gpa_of(gfn)?;
        if self.npt.is_foreign(gpa) {
            return Err(errno::EBUSY);
        }
        self.npt
            .map_4k(gpa, Hpa(hpa), Access::ReadWrite, &mut self.pool)
            .map_err(|e| self.npt_failed(e))?;
        if self.shared_info_gfn == Some(gfn) && hpa != self.shared_info {
            self.shared_info_gfn = None;
        }
        for (slot, &frame) in self.grant_frame_gfns.iter_mut().zip(&self.grant_frames) {
            if *slot == Some(gfn) && frame != hpa {
                *slot = None;
            }
        }
        if let Some((console, at)) = &mut self.console {
            if *at == Some(gfn) && *console != hpa {
                *at = None;
            }
        }
        Ok(())
    }

    /// After special page `hpa` moved from `old` to elsewhere, puts back at
    /// `old` what is underneath, unless something else is mapped there now.
    fn vacate(&mut self, old: Gfn, hpa: u64) {
        let Ok(gpa) = gpa_of(old) else { return };
        if self.npt.is_foreign(gpa) || self.npt.translate(gpa).map(|(at, _)| at) != Some(Hpa(hpa)) {
            return;
        }
        // Needs no new table: the path to `old` exists.
        let _ = self.restore(old);
    }

    /// Frames of the frame allocator used for the domain: RAM (unless it is
    /// the host's 1:1, kept out of the allocator), its paging pool, grant
    /// frames and extras.
    pub fn frames_in_use(&self) -> usize {
        let ram = if self.direct {
            0
        } else {
            self.backing.iter().map(|&(_, _, n)| n).sum::<usize>()
        };
        ram + self.released.len() + self.overhead_frames()
    }

    /// Frames used for control structures (the paging pool, grant frames,
    /// extras).
    pub fn overhead_frames(&self) -> usize {
        self.pool.total() + self.extra.len() + self.grant_frames.len()
    }

    /// The paging pool: (frames, frames in use as page tables).
    pub fn paging_pool(&self) -> (usize, usize) {
        (self.pool.total(), self.pool.in_use())
    }

    /// Whether `gfn` is one of the domain's own RAM frames (not a foreign,
    /// grant-table or shared-info page mapped over it), so it can be
    /// granted.
    pub fn is_own_ram(&self, gfn: Gfn) -> bool {
        self.ram_frame(gfn).is_some()
    }

    /// The host address of the domain's own RAM page at `gfn` (see
    /// [`GuestMemory::is_own_ram`]). The frame stays the domain's until the
    /// domain is destroyed.
    pub fn ram_frame(&self, gfn: Gfn) -> Option<Hpa> {
        let frame = self.backing_frame(gfn)?;
        let gpa = gpa_of(gfn).ok()?;
        (!self.npt.is_foreign(gpa)
            && self.npt.translate(gpa) == Some((Hpa(frame), Access::ReadWrite)))
        .then_some(Hpa(frame))
    }

    /// Gives the domain `pages` frames it cannot reach, kept with its extras
    /// until it is destroyed (`XENMEM_increase_reservation` of a translated
    /// domain, as Xen: no frame number is given back). All or none.
    pub fn allocate_unmapped(&mut self, pages: u64) -> Result<(), Errno> {
        // A 1:1 dom0 too: the frames are nowhere in its physical map.
        let count = usize::try_from(pages).map_err(|_| errno::ENOMEM)?;
        self.extra.try_reserve(count).map_err(|_| errno::ENOMEM)?;
        let kept = self.extra.len();
        for _ in 0..count {
            match alloc_frame() {
                Some(hpa) => self.extra.push(hpa),
                None => {
                    for hpa in self.extra.drain(kept..) {
                        free_frames(hpa, 1);
                    }
                    return Err(errno::ENOMEM);
                }
            }
        }
        Ok(())
    }

    /// Gives the domain a zeroed PV console ring page at guest frame `gfn`
    /// (outside its RAM).
    pub fn add_console_page(&mut self, gfn: Gfn) -> Result<(), Errno> {
        self.extra.try_reserve(1).map_err(|_| errno::ENOMEM)?;
        let hpa = alloc_frame().ok_or(errno::ENOMEM)?;
        self.host(hpa, PAGE_SIZE).fill(0);
        self.extra.push(hpa);
        self.console = Some((hpa, None));
        self.place_special(gfn, hpa)?;
        self.console = Some((hpa, Some(gfn)));
        Ok(())
    }

    /// The PV console ring page, if the domain has one, as the atomic words
    /// the core's [`SharedPage`] works on (the guest writes it concurrently).
    pub fn console_page(&self) -> Option<SharedPage<'_>> {
        let (hpa, _) = self.console?;
        self.host(hpa, PAGE_SIZE)
            .atomic_page()
            .ok()
            .map(SharedPage::new)
    }

    /// Whether a foreign (granted) page is mapped at `gfn`.
    pub fn is_foreign(&self, gfn: Gfn) -> bool {
        gpa_of(gfn).is_ok_and(|gpa| self.npt.is_foreign(gpa))
    }

    /// Adds zeroed grant-table frames until there are `nr`.
    pub fn grow_grant_frames(&mut self, nr: u32) -> Result<(), Errno> {
        let more = (nr as usize).saturating_sub(self.grant_frames.len());
        self.grant_frames
            .try_reserve(more)
            .map_err(|_| errno::ENOMEM)?;
        self.grant_frame_gfns
            .try_reserve(more)
            .map_err(|_| errno::ENOMEM)?;
        while self.grant_frames.len() < nr as usize {
            let frame = alloc_frame().ok_or(errno::ENOMEM)?;
            self.host(frame, PAGE_SIZE).fill(0);
            self.grant_frames.push(frame);
            self.grant_frame_gfns.push(None);
        }
        Ok(())
    }

    /// Grant-table frame `index`, which the guest writes concurrently.
    pub fn grant_frame(&self, index: u32) -> Option<SharedPage<'_>> {
        let hpa = *self.grant_frames.get(index as usize)?;
        self.host(hpa, PAGE_SIZE)
            .atomic_page()
            .ok()
            .map(SharedPage::new)
    }

    /// The host address of grant-table frame `index`, if the table has it.
    pub fn grant_frame_address(&self, index: u32) -> Option<Hpa> {
        self.grant_frames.get(index as usize).map(|&hpa| Hpa(hpa))
    }

    /// Maps grant-table frame `index` at guest frame `gfn`, moving it from
    /// where it was (XENMEM_add_to_physmap).
    pub fn map_grant_frame(&mut self, index: u32, gfn: Gfn) -> Result<(), Errno> {
        let hpa = *self.grant_frames.get(index as usize).ok_or(errno::EINVAL)?;
        self.place_special(gfn, hpa)?;
        let slot = self
            .grant_frame_gfns
            .get_mut(index as usize)
            .ok_or(errno::EINVAL)?;
        let old = slot.replace(gfn);
        if let Some(old) = old.filter(|&old| old != gfn) {
            self.vacate(old, hpa);
        }
        Ok(())
    }

    /// Maps host frame `hpa` (a granted page) at `gfn`, read-only or
    /// writable; `-EBUSY` if a foreign page is mapped there already,
    /// `-ENOMEM` when the paging pool has no table for it. Returns what
    /// [`GuestMemory::unmap_foreign`] puts back.
    pub fn map_foreign(&mut self, gfn: Gfn, hpa: Hpa, readonly: bool) -> Result<u64, Errno> {
        let gpa = gfn
            .gpa()
            .filter(|gpa| gpa.0 < 1 << 46)
            .ok_or(errno::EINVAL)?;
        if self.npt.is_foreign(gpa) {
            return Err(errno::EBUSY);
        }
        let restore = match self.npt.translate(gpa) {
            None => 0,
            Some((previous, Access::ReadOnly)) => previous.0 | RESTORE_PRESENT,
            Some((previous, Access::ReadWrite)) => previous.0 | RESTORE_PRESENT | RESTORE_WRITABLE,
        };
        let access = if readonly {
            Access::ReadOnly
        } else {
            Access::ReadWrite
        };
        self.npt
            .map_4k_foreign(gpa, hpa, access, &mut self.pool)
            .map_err(|e| self.npt_failed(e))?;
        Ok(restore)
    }

    /// Removes the foreign page at `gfn` and puts back `restore` (from
    /// [`GuestMemory::map_foreign`]); a table left mapping nothing goes back
    /// to the pool. If something else was mapped over the foreign page
    /// meanwhile, that stays.
    pub fn unmap_foreign(&mut self, gfn: Gfn, restore: u64) -> Result<(), Errno> {
        let gpa = gpa_of(gfn)?;
        if !self.npt.is_foreign(gpa) {
            return Ok(());
        }
        let hpa = Hpa(restore & !0xFFF);
        let result = match (restore & RESTORE_PRESENT, restore & RESTORE_WRITABLE) {
            (0, _) => self.npt.unmap_4k(gpa, &mut self.pool),
            (_, 0) => self.npt.map_4k(gpa, hpa, Access::ReadOnly, &mut self.pool),
            _ => self.npt.map_4k(gpa, hpa, Access::ReadWrite, &mut self.pool),
        };
        result.map_err(|e| self.npt_failed(e))
    }

    /// Maps the domain's shared-info page at guest frame `gfn`, moving it
    /// from where it was (XENMEM_add_to_physmap). The page keeps its
    /// contents when moved.
    pub fn map_shared_info(&mut self, gfn: Gfn) -> Result<Hpa, Errno> {
        let hpa = self.shared_info;
        self.place_special(gfn, hpa)?;
        let old = self.shared_info_gfn.replace(gfn);
        if let Some(old) = old.filter(|&old| old != gfn) {
            self.vacate(old, hpa);
        }
        Ok(Hpa(hpa))
    }

    /// The shared-info page, whether or not the guest mapped it, as the
    /// atomic words the core's [`SharedPage`] works on (the guest writes it
    /// concurrently: never a `&mut [u8]`).
    pub fn shared_info_page(&self) -> SharedPage<'_> {
        let page = self.host(self.shared_info, PAGE_SIZE).atomic_page();
        SharedPage::new(page.expect("the shared-info frame is one page-aligned frame"))
    }

    /// Guest frame `gfn` of the domain's own RAM (not a foreign, grant or
    /// shared-info frame mapped over it) as a [`SharedPage`], for memory
    /// the guest shares with the hypervisor by address (a registered
    /// `vcpu_info`, FIFO event words and control blocks).
    pub fn own_page(&self, gfn: Gfn) -> Option<SharedPage<'_>> {
        if !self.is_own_ram(gfn) {
            return None;
        }
        let hpa = self.host_address(gfn.gpa()?, true)?;
        self.host(hpa.0, PAGE_SIZE)
            .atomic_page()
            .ok()
            .map(SharedPage::new)
    }

    /// Host address of guest-physical `gpa`, if mapped (and writable when
    /// `write`).
    pub fn host_address(&self, gpa: Gpa, write: bool) -> Option<Hpa> {
        let (hpa, access) = self.npt.translate(gpa)?;
        (!write || access == Access::ReadWrite).then_some(hpa)
    }

    /// Copies guest-physical memory into `buf`, page by page.
    pub fn read_phys(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), Errno> {
        self.for_each_page(gpa, buf.len(), false, |hpa, offset, len| {
            self.host(hpa, len).read(0, &mut buf[offset..offset + len])
        })
    }

    /// Copies `buf` into guest-physical memory, page by page.
    pub fn write_phys(&mut self, gpa: Gpa, buf: &[u8]) -> Result<(), Errno> {
        self.for_each_page(gpa, buf.len(), true, |hpa, offset, len| {
            self.host(hpa, len).write(0, &buf[offset..offset + len])
        })
    }

    /// Zeroes `len` bytes of guest-physical memory from `gpa`, page by page.
    pub fn zero_phys(&mut self, gpa: Gpa, len: usize) -> Result<(), Errno> {
        self.for_each_page(gpa, len, true, |hpa, _, len| {
            self.host(hpa, len).fill(0);
            Ok(())
        })
    }

    fn for_each_page(
        &self,
        gpa: Gpa,
        len: usize,
        write: bool,
        mut step: impl FnMut(u64, usize, usize) -> Result<(), OutOfRange>,
    ) -> Result<(), Errno> {
        gpa.checked_add(len as u64).ok_or(errno::EFAULT)?;
        let mut done = 0;
        while done < len {
            let at = Gpa(gpa.0 + done as u64);
            let chunk = ((4096 - at.page_offset()) as usize).min(len - done);
            let hpa = self.host_address(at, write).ok_or(errno::EFAULT)?;
            step(hpa.0, done, chunk).map_err(|_| errno::EFAULT)?;
            done += chunk;
        }
        Ok(())
    }

    /// Reads a u64 of guest-physical memory (for page walks).
    pub fn read_u64(&self, gpa: Gpa) -> Option<u64> {
        let mut word = [0u8; 8];
        self.read_phys(gpa, &mut word).ok()?;
        Some(u64::from_le_bytes(word))
    }

    /// Translates a guest linear address with the guest's paging registers.
    pub fn linear_to_phys(
        &self,
        regs: &PagingRegs,
        linear: u64,
        write: bool,
    ) -> Result<Gpa, Errno> {
        guest_walk::translate(regs, linear, write, &|gpa| self.read_u64(Gpa(gpa)))
            .map(Gpa)
            .map_err(|_| errno::EFAULT)
    }

    /// Copies from guest linear memory.
    pub fn read_linear(&self, regs: &PagingRegs, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let mut done = 0;
        while done < buf.len() {
            let at = addr.checked_add(done as u64).ok_or(errno::EFAULT)?;
            let chunk = ((4096 - at % 4096) as usize).min(buf.len() - done);
            let gpa = self.linear_to_phys(regs, at, false)?;
            self.read_phys(gpa, &mut buf[done..done + chunk])?;
            done += chunk;
        }
        Ok(())
    }

    /// Copies to guest linear memory.
    pub fn write_linear(&mut self, regs: &PagingRegs, addr: u64, buf: &[u8]) -> Result<(), Errno> {
        let mut done = 0;
        while done < buf.len() {
            let at = addr.checked_add(done as u64).ok_or(errno::EFAULT)?;
            let chunk = ((4096 - at % 4096) as usize).min(buf.len() - done);
            let gpa = self.linear_to_phys(regs, at, true)?;
            self.write_phys(gpa, &buf[done..done + chunk])?;
            done += chunk;
        }
        Ok(())
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        printk!(
            "d{}: paging pool: at most {} of {} pages used, {} requests refused",
            self.domid,
            self.pool.peak(),
            self.pool.total(),
            self.pool.failures()
        );
        self.npt.destroy(&mut self.pool);
        let lost = self.pool.release(&mut |frame| free_frames(frame, 1));
        if lost > 0 {
            printk!(
                "d{}: {lost} page-table frames not back in the paging pool",
                self.domid
            );
        }
        if !self.direct {
            for &(_, hpa, count) in &self.backing {
                free_frames(hpa, count);
            }
        }
        for &frame in self.extra.iter().chain(&self.grant_frames) {
            free_frames(frame, 1);
        }
        self.free_released();
    }
}
