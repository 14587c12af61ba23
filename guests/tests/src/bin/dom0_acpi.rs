//! Dom0's ACPI tables: a PVH dom0 finds the RSDP through `hvm_start_info.rsdp_paddr`,
//! pointing at a structure that starts "RSD PTR " (Xen 4.17 puts its copy right after
//! other data, so it is not 16-byte aligned).
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::{check, check_eq, println, StartInfo};

rxen_guest::entry!(main);

fn main(si: &StartInfo) {
    println!("rsdp at {:#x}", si.rsdp());
    check!(si.rsdp() != 0, "dom0 gets the RSDP address");
    if si.rsdp() != 0 {
        // SAFETY: the RSDP is in dom0's memory (identity-mapped below 4 GiB).
        let sig = unsafe { core::slice::from_raw_parts(si.rsdp() as *const u8, 8) };
        check_eq!(sig, b"RSD PTR ", "RSDP signature");
    }
}
