//! Nested page tables: a domain's guest-physical to host-physical map.
//! Same format as long-mode page tables; every level has the U bit (nested
//! walks are user accesses). 2 MiB leaves where possible, split to 4 KiB
//! on demand.

use alloc::vec::Vec;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const HUGE: u64 = 1 << 7;
/// Software bit (AVL, ignored by the walk) marking a grant mapping of
/// another page at this gfn.
const FOREIGN: u64 = 1 << 9;
const ADDRESS_MASK: u64 = 0x000F_FFFF_FFFF_F000;
const PAGE_2M: u64 = 2 << 20;

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
    /// No frame for a page table.
    OutOfMemory,
    /// Address not aligned to the page size.
    Unaligned,
    /// Beyond the 48-bit guest-physical space.
    OutOfRange,
}

/// A domain's nested page table.
pub struct NestedPageTable {
    root: u64,
    /// Every table frame, to give back on destruction.
    tables: Vec<u64>,
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

fn flags(access: Access) -> u64 {
    match access {
        Access::ReadOnly => PRESENT | USER,
        Access::ReadWrite => PRESENT | USER | WRITABLE,
    }
}

impl NestedPageTable {
    /// An empty table (nothing mapped).
    pub fn new(alloc_frame: &mut dyn FnMut() -> Option<u64>) -> Result<Self, NptError> {
        let mut npt = Self {
            root: 0,
            tables: Vec::new(),
        };
        npt.root = npt.new_table(alloc_frame)?;
        Ok(npt)
    }

    /// Physical address of the PML4 (for the VMCB's N_CR3).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// The table frames, for freeing when the domain dies.
    pub fn table_frames(&self) -> &[u64] {
        &self.tables
    }

    fn new_table(&mut self, alloc_frame: &mut dyn FnMut() -> Option<u64>) -> Result<u64, NptError> {
        let frame = alloc_frame().ok_or(NptError::OutOfMemory)?;
        // SAFETY: a fresh frame from the allocator, identity-mapped, ours.
        unsafe { core::ptr::write_bytes(frame as *mut u8, 0, 4096) };
        self.tables.push(frame);
        Ok(frame)
    }

    /// Walks to the table at `level` (3 = PDPT, 2 = PD, 1 = PT) for `gpa`,
    /// creating (or splitting) tables on the way when `alloc_frame` is given.
    fn table_for(
        &mut self,
        gpa: u64,
        level: u32,
        alloc_frame: &mut dyn FnMut() -> Option<u64>,
    ) -> Result<u64, NptError> {
        let mut table = self.root;
        for current in (level + 1..=4).rev() {
            let index = (gpa >> (12 + 9 * (current - 1))) & 511;
            let entry = read_entry(table, index);
            table = if entry & PRESENT == 0 {
                let next = self.new_table(alloc_frame)?;
                write_entry(table, index, next | PRESENT | WRITABLE | USER);
                next
            } else if entry & HUGE != 0 {
                // Split a 2 MiB leaf (current == 2) into 512 small pages.
                let next = self.new_table(alloc_frame)?;
                let base = entry & ADDRESS_MASK & !(PAGE_2M - 1);
                let leaf_flags = entry & (PRESENT | WRITABLE | USER);
                for small in 0..512 {
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

    /// Maps the 2 MiB guest page at `gpa` to host memory at `hpa`.
    pub fn map_2m(
        &mut self,
        gpa: u64,
        hpa: u64,
        access: Access,
        alloc_frame: &mut dyn FnMut() -> Option<u64>,
    ) -> Result<(), NptError> {
        if !gpa.is_multiple_of(PAGE_2M) || !hpa.is_multiple_of(PAGE_2M) {
            return Err(NptError::Unaligned);
        }
        if gpa >= 1 << 48 {
            return Err(NptError::OutOfRange);
        }
        let pd = self.table_for(gpa, 2, alloc_frame)?;
        write_entry(pd, (gpa >> 21) & 511, hpa | flags(access) | HUGE);
        Ok(())
    }

    /// Maps the 4 KiB guest page at `gpa` to `hpa` (splitting a 2 MiB leaf).
    pub fn map_4k(
        &mut self,
        gpa: u64,
        hpa: u64,
        access: Access,
        alloc_frame: &mut dyn FnMut() -> Option<u64>,
    ) -> Result<(), NptError> {
        if !gpa.is_multiple_of(4096) || !hpa.is_multiple_of(4096) {
            return Err(NptError::Unaligned);
        }
        if gpa >= 1 << 48 {
            return Err(NptError::OutOfRange);
        }
        let pt = self.table_for(gpa, 1, alloc_frame)?;
        write_entry(pt, (gpa >> 12) & 511, hpa | flags(access));
        Ok(())
    }

    /// Maps the 4 KiB guest page at `gpa` to `hpa` as a foreign (grant)
    /// mapping: as [`NestedPageTable::map_4k`], marked so that
    /// [`NestedPageTable::is_foreign`] tells it apart.
    pub fn map_4k_foreign(
        &mut self,
        gpa: u64,
        hpa: u64,
        access: Access,
        alloc_frame: &mut dyn FnMut() -> Option<u64>,
    ) -> Result<(), NptError> {
        self.map_4k(gpa, hpa, access, alloc_frame)?;
        let pt = self.table_for(gpa, 1, alloc_frame)?;
        let index = (gpa >> 12) & 511;
        write_entry(pt, index, read_entry(pt, index) | FOREIGN);
        Ok(())
    }

    /// Whether `gpa` is mapped by [`NestedPageTable::map_4k_foreign`] (and
    /// not replaced since).
    pub fn is_foreign(&self, gpa: u64) -> bool {
        if gpa >= 1 << 48 {
            return false;
        }
        let mut table = self.root;
        for level in (2..=4u32).rev() {
            let entry = read_entry(table, (gpa >> (12 + 9 * (level - 1))) & 511);
            if entry & PRESENT == 0 || entry & HUGE != 0 {
                return false;
            }
            table = entry & ADDRESS_MASK;
        }
        let entry = read_entry(table, (gpa >> 12) & 511);
        entry & PRESENT != 0 && entry & FOREIGN != 0
    }

    /// Removes the 4 KiB mapping of `gpa` (splitting a 2 MiB leaf first, so
    /// its other pages stay mapped).
    pub fn unmap_4k(
        &mut self,
        gpa: u64,
        alloc_frame: &mut dyn FnMut() -> Option<u64>,
    ) -> Result<(), NptError> {
        if !gpa.is_multiple_of(4096) {
            return Err(NptError::Unaligned);
        }
        if gpa >= 1 << 48 {
            return Err(NptError::OutOfRange);
        }
        let pt = self.table_for(gpa, 1, alloc_frame)?;
        write_entry(pt, (gpa >> 12) & 511, 0);
        Ok(())
    }

    /// The host address and access for `gpa`, if mapped.
    pub fn translate(&self, gpa: u64) -> Option<(u64, Access)> {
        if gpa >= 1 << 48 {
            return None;
        }
        let mut table = self.root;
        for level in (1..=4u32).rev() {
            let shift = 12 + 9 * (level - 1);
            let entry = read_entry(table, (gpa >> shift) & 511);
            if entry & PRESENT == 0 {
                return None;
            }
            let access = if entry & WRITABLE != 0 {
                Access::ReadWrite
            } else {
                Access::ReadOnly
            };
            if level == 1 || (level == 2 && entry & HUGE != 0) {
                let offset = gpa & ((1 << shift) - 1);
                return Some((
                    (entry & ADDRESS_MASK & !((1 << shift) - 1)) + offset,
                    access,
                ));
            }
            table = entry & ADDRESS_MASK;
        }
        None
    }
}
