//! Dom0's ACPI tables: a PVH dom0 finds the RSDP through `hvm_start_info.rsdp_paddr`,
//! pointing at a structure that starts "RSD PTR " (Xen 4.17 puts its copy right after
//! other data, so it is not 16-byte aligned). From it, the XSDT (revision 2 RSDP) or
//! the RSDT lists a MADT with at least one enabled local APIC and the host's FADT,
//! each readable at its address with a valid checksum (the host's own tables are
//! mapped into dom0 at their addresses, as Xen identity-maps the ACPI regions).
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::acpi::{bytes, sum, u32_at, u64_at};
use rxen_guest::{check, check_eq, println, StartInfo};

rxen_guest::entry!(main);

/// The table at `addr` (header length, at most 64 KiB), if its checksum is valid.
fn table(addr: u64) -> Option<&'static [u8]> {
    let len = u32_at(bytes(addr, 8), 4) as usize;
    if !(36..=65536).contains(&len) {
        return None;
    }
    let t = bytes(addr, len);
    (sum(t) == 0).then_some(t)
}

fn main(si: &StartInfo) {
    println!("rsdp at {:#x}", si.rsdp());
    check!(si.rsdp() != 0, "dom0 gets the RSDP address");
    if si.rsdp() == 0 {
        return;
    }
    let rsdp = bytes(si.rsdp(), 36);
    check_eq!(&rsdp[..8], b"RSD PTR ", "RSDP signature");
    // Revision 2 and up: the XSDT (64-bit entries); else the RSDT (32-bit).
    let (root_at, entry_size) = if rsdp[15] >= 2 && u64_at(rsdp, 24) != 0 {
        (u64_at(rsdp, 24), 8)
    } else {
        (u64::from(u32_at(rsdp, 16)), 4)
    };
    let Some(root) = table(root_at) else {
        check!(false, "the root table at {root_at:#x} checks out");
        return;
    };
    let (mut madt_cpus, mut fadt) = (None, false);
    for entry in root[36..].chunks_exact(entry_size) {
        let at = if entry_size == 8 {
            u64_at(entry, 0)
        } else {
            u64::from(u32_at(entry, 0))
        };
        let Some(t) = table(at) else {
            check!(false, "the table at {at:#x} checks out");
            continue;
        };
        println!(
            "table {} at {at:#x}, {} bytes",
            core::str::from_utf8(&t[..4]).unwrap_or("????"),
            t.len()
        );
        match &t[..4] {
            b"APIC" => {
                // Enabled local APICs (type 0, flags bit 0) and x2APICs (type 9).
                let mut cpus = 0;
                let mut at = 44;
                while at + 2 <= t.len() && t[at + 1] >= 2 {
                    let (kind, len) = (t[at], usize::from(t[at + 1]));
                    if at + len > t.len() {
                        break;
                    }
                    let enabled = match kind {
                        0 if len >= 8 => u32_at(t, at + 4) & 1 != 0,
                        9 if len >= 16 => u32_at(t, at + 8) & 1 != 0,
                        _ => false,
                    };
                    cpus += u32::from(enabled);
                    at += len;
                }
                madt_cpus = Some(cpus);
            }
            b"FACP" => fadt = true,
            _ => {}
        }
    }
    println!("madt cpus {madt_cpus:?}, fadt {fadt}");
    check!(
        madt_cpus.is_some_and(|n| n >= 1),
        "a MADT with an enabled local APIC"
    );
    check!(fadt, "the host's FADT is listed and readable");
}
