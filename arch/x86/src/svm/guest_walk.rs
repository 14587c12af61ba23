//! Walking a guest's own page tables to turn a guest linear address into a
//! guest-physical one, as hypercall argument copies and instruction fetch
//! need. Supports paging off, 2-level 32-bit (with 4 MiB pages), PAE and
//! 4-level long mode.

/// The guest's paging registers.
#[derive(Clone, Copy, Debug)]
pub struct PagingRegs {
    /// CR0.
    pub cr0: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER.
    pub efer: u64,
}

/// Why a translation failed (the guest would take a page fault).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// A level was not present.
    NotPresent,
    /// A write to a read-only page (with CR0.WP, as in ring 0).
    ReadOnly,
    /// A table lies outside the guest's memory.
    BadTable,
    /// Non-canonical address in long mode.
    NonCanonical,
}

use crate::ctrlreg::cr0::{PG as CR0_PG, WP as CR0_WP};
use crate::ctrlreg::cr4::{PAE as CR4_PAE, PSE as CR4_PSE};
use crate::ctrlreg::efer::LMA as EFER_LMA;
const PRESENT: u64 = 1;
const WRITABLE: u64 = 2;
const HUGE: u64 = 1 << 7;
const ADDR: u64 = 0x000F_FFFF_FFFF_F000;

/// Translates `linear` for a supervisor access (`write` for a store),
/// reading guest-physical memory through `read_u64` (None: not RAM).
pub fn translate(
    regs: &PagingRegs,
    linear: u64,
    write: bool,
    read_u64: &dyn Fn(u64) -> Option<u64>,
) -> Result<u64, WalkError> {
    if regs.cr0 & CR0_PG == 0 {
        return Ok(if regs.efer & EFER_LMA != 0 {
            linear
        } else {
            linear & 0xFFFF_FFFF
        });
    }
    let check_write = write && regs.cr0 & CR0_WP != 0;
    let mut writable = true;
    if regs.efer & EFER_LMA != 0 {
        let sign = (linear as i64) >> 47;
        if sign != 0 && sign != -1 {
            return Err(WalkError::NonCanonical);
        }
        let mut table = regs.cr3 & ADDR;
        for level in (1..=4u32).rev() {
            let shift = 12 + 9 * (level - 1);
            let entry =
                read_u64(table + ((linear >> shift) & 511) * 8).ok_or(WalkError::BadTable)?;
            if entry & PRESENT == 0 {
                return Err(WalkError::NotPresent);
            }
            writable &= entry & WRITABLE != 0;
            if level == 1 || (level <= 3 && entry & HUGE != 0) {
                if check_write && !writable {
                    return Err(WalkError::ReadOnly);
                }
                let page_mask = (1u64 << shift) - 1;
                return Ok((entry & ADDR & !page_mask) | (linear & page_mask));
            }
            table = entry & ADDR;
        }
        Err(WalkError::NotPresent)
    } else if regs.cr4 & CR4_PAE != 0 {
        let linear = linear & 0xFFFF_FFFF;
        let pdpte =
            read_u64((regs.cr3 & 0xFFFF_FFE0) + (linear >> 30) * 8).ok_or(WalkError::BadTable)?;
        if pdpte & PRESENT == 0 {
            return Err(WalkError::NotPresent);
        }
        let mut table = pdpte & ADDR;
        for level in (1..=2u32).rev() {
            let shift = 12 + 9 * (level - 1);
            let entry =
                read_u64(table + ((linear >> shift) & 511) * 8).ok_or(WalkError::BadTable)?;
            if entry & PRESENT == 0 {
                return Err(WalkError::NotPresent);
            }
            writable &= entry & WRITABLE != 0;
            if level == 1 || entry & HUGE != 0 {
                if check_write && !writable {
                    return Err(WalkError::ReadOnly);
                }
                let page_mask = (1u64 << shift) - 1;
                return Ok((entry & ADDR & !page_mask) | (linear & page_mask));
            }
            table = entry & ADDR;
        }
        Err(WalkError::NotPresent)
    } else {
        let linear = linear & 0xFFFF_FFFF;
        let read_u32 = |address: u64| read_u64(address).map(|v| v & 0xFFFF_FFFF);
        let pde =
            read_u32((regs.cr3 & 0xFFFF_F000) + (linear >> 22) * 4).ok_or(WalkError::BadTable)?;
        if pde & PRESENT == 0 {
            return Err(WalkError::NotPresent);
        }
        writable &= pde & WRITABLE != 0;
        if pde & HUGE != 0 && regs.cr4 & CR4_PSE != 0 {
            if check_write && !writable {
                return Err(WalkError::ReadOnly);
            }
            return Ok((pde & 0xFFC0_0000) | (linear & 0x3F_FFFF));
        }
        let pte = read_u32((pde & 0xFFFF_F000) + ((linear >> 12) & 1023) * 4)
            .ok_or(WalkError::BadTable)?;
        if pte & PRESENT == 0 {
            return Err(WalkError::NotPresent);
        }
        writable &= pte & WRITABLE != 0;
        if check_write && !writable {
            return Err(WalkError::ReadOnly);
        }
        Ok((pte & 0xFFFF_F000) | (linear & 0xFFF))
    }
}

/// The entries a 4-level long-mode walk of `linear` reads, from the PML4
/// entry down, for a crash report (Xen's `show_page_walk`): it stops after a
/// non-present or huge entry or a table outside the guest's memory. Empty
/// when the guest is not in long mode with paging.
pub fn long_mode_entries(
    regs: &PagingRegs,
    linear: u64,
    read_u64: &dyn Fn(u64) -> Option<u64>,
) -> ([u64; 4], usize) {
    let mut entries = [0u64; 4];
    if regs.cr0 & CR0_PG == 0 || regs.efer & EFER_LMA == 0 {
        return (entries, 0);
    }
    let mut table = regs.cr3 & ADDR;
    for (n, level) in (1..=4u32).rev().enumerate() {
        let shift = 12 + 9 * (level - 1);
        let Some(entry) = read_u64(table + ((linear >> shift) & 511) * 8) else {
            return (entries, n);
        };
        entries[n] = entry;
        if entry & PRESENT == 0 || level == 1 || (level <= 3 && entry & HUGE != 0) {
            return (entries, n + 1);
        }
        table = entry & ADDR;
    }
    (entries, 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn long_mode() -> PagingRegs {
        PagingRegs {
            cr0: CR0_PG | CR0_WP | 1,
            cr3: 0x1000,
            cr4: CR4_PAE,
            efer: EFER_LMA | crate::ctrlreg::efer::LME,
        }
    }

    #[test]
    fn long_mode_4k_and_2m_pages() {
        let mut mem = HashMap::new();
        mem.insert(0x1000u64, 0x2000 | PRESENT | WRITABLE); // PML4[0]
        mem.insert(0x2000, 0x3000 | PRESENT | WRITABLE); // PDPT[0]
        mem.insert(0x3000, 0x4000 | PRESENT | WRITABLE); // PD[0] -> PT
        mem.insert(0x3008, 0x0060_0000 | PRESENT | HUGE); // PD[1]: 2 MiB, read-only
        mem.insert(0x4000 + 5 * 8, 0x9000 | PRESENT | WRITABLE); // PT[5]
        let read = |a: u64| Some(*mem.get(&a).unwrap_or(&0));
        let regs = long_mode();
        assert_eq!(translate(&regs, 0x5123, true, &read), Ok(0x9123));
        assert_eq!(translate(&regs, 0x20_1234, false, &read), Ok(0x60_1234));
        assert_eq!(
            translate(&regs, 0x20_1234, true, &read),
            Err(WalkError::ReadOnly)
        );
        assert_eq!(
            translate(&regs, 0x6000, false, &read),
            Err(WalkError::NotPresent)
        );
        assert_eq!(
            translate(&regs, 0x0000_8000_0000_0000, false, &read),
            Err(WalkError::NonCanonical)
        );
    }

    #[test]
    fn crash_report_lists_the_entries_walked() {
        let mut mem = HashMap::new();
        mem.insert(0x1000u64, 0x2000 | PRESENT | WRITABLE); // PML4[0]
        mem.insert(0x2000, 0x3000 | PRESENT | WRITABLE); // PDPT[0]
        mem.insert(0x3000, 0x4000 | PRESENT | WRITABLE); // PD[0] -> PT
        mem.insert(0x3008, 0x0060_0000 | PRESENT | HUGE); // PD[1]: 2 MiB
        mem.insert(0x4000 + 5 * 8, 0x9000 | PRESENT); // PT[5]
        mem.insert(0x1008, 0xFFFD_0000_2000 | PRESENT); // PML4[1]: reserved bits
        let read = |a: u64| Some(*mem.get(&a).unwrap_or(&0));
        let regs = long_mode();
        let walk = |linear| {
            let (entries, n) = long_mode_entries(&regs, linear, &read);
            entries[..n].to_vec()
        };
        assert_eq!(walk(0x5000), [0x2003, 0x3003, 0x4003, 0x9001]);
        assert_eq!(walk(0x20_0000), [0x2003, 0x3003, 0x60_0081]);
        assert_eq!(walk(0x6000), [0x2003, 0x3003, 0x4003, 0]);
        // A reserved bit is shown, not interpreted: the walk goes on from the address.
        assert_eq!(walk(0x80_0000_0000)[0], 0xFFFD_0000_2001);
        // Not RAM at CR3: nothing; paging off: nothing.
        assert!(long_mode_entries(&regs, 0, &|_| None).1 == 0);
        let off = PagingRegs { cr0: 1, ..regs };
        assert!(long_mode_entries(&off, 0x5000, &read).1 == 0);
    }

    #[test]
    fn paging_off_is_identity_and_bad_tables_fail() {
        let off = PagingRegs {
            cr0: 1,
            cr3: 0,
            cr4: 0,
            efer: 0,
        };
        assert_eq!(
            translate(&off, 0x1_2345_6789, false, &|_| None),
            Ok(0x2345_6789)
        );
        assert_eq!(
            translate(&long_mode(), 0x1000, false, &|_| None),
            Err(WalkError::BadTable)
        );
    }

    #[test]
    fn two_level_32_bit_with_large_pages() {
        let mut mem = HashMap::new();
        mem.insert(0x1000u64 + 4, 0x0080_0000 | PRESENT | HUGE | WRITABLE); // PDE[1]: 4 MiB
        let read = |a: u64| Some(*mem.get(&a).unwrap_or(&0));
        let regs = PagingRegs {
            cr0: CR0_PG | 1,
            cr3: 0x1000,
            cr4: CR4_PSE,
            efer: 0,
        };
        assert_eq!(translate(&regs, 0x0040_1234, false, &read), Ok(0x0080_1234));
    }
}
