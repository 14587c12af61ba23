//! A PVH domU's ACPI tables, as Xen's toolstack gives them: `hvm_start_info.rsdp_paddr`
//! points at a revision 2 RSDP in memory the e820 map does not call RAM; its XSDT lists
//! a hardware-reduced FADT (with a DSDT) and a MADT with one enabled local APIC per
//! vCPU, whose APIC ID is what that vCPU's CPUID leaf 1 EBX[31:24] says.
//!
//! The harness passes `vcpus=<n>` on the command line, as many as `domu=...,vcpus=<n>`.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::acpi::{bytes, sum, u32_at, u64_at};
use rxen_guest::{check, check_eq, println, StartInfo};

rxen_guest::entry!(main);

/// The table at `addr` if it has `signature` and a right checksum.
fn table(addr: u64, signature: &[u8; 4]) -> Option<&'static [u8]> {
    let name = core::str::from_utf8(signature).unwrap_or("?");
    if !check!(addr != 0 && addr < 1 << 30, "{name} at {addr:#x}") {
        return None;
    }
    let head = bytes(addr, 36);
    if !check_eq!(&head[..4], signature, "{name} signature") {
        return None;
    }
    let len = u32_at(head, 4) as usize;
    if !check!((36..1 << 16).contains(&len), "{name} length {len}") {
        return None;
    }
    let t = bytes(addr, len);
    check_eq!(sum(t), 0, "{name} checksum");
    println!(
        "{name} at {addr:#x}: {len} bytes, revision {}, OEM '{}' '{}'",
        t[8],
        core::str::from_utf8(&t[10..16]).unwrap_or("?"),
        core::str::from_utf8(&t[16..24]).unwrap_or("?")
    );
    Some(t)
}

fn main(si: &StartInfo) {
    let vcpus = si.arg_u64("vcpus").unwrap_or(1);
    let rsdp = si.rsdp();
    println!("rsdp at {rsdp:#x}, expecting {vcpus} vCPU(s)");
    if !check!(rsdp != 0, "a domU gets the RSDP address") {
        return;
    }
    // The tables are in the memory map, not as RAM.
    let map = si.memmap();
    for e in map {
        println!(
            "e820 {:#012x}-{:#012x} type {}",
            e.addr,
            e.addr + e.size,
            e.type_
        );
    }
    let kind = rxen_guest::start_info::entry_at(map, rsdp).map(|e| e.type_);
    check!(
        kind == Some(3) || kind == Some(2),
        "RSDP in an ACPI or reserved e820 entry (type {kind:?})"
    );

    let r = bytes(rsdp, 36);
    check_eq!(&r[..8], b"RSD PTR ", "RSDP signature");
    check_eq!(sum(&r[..20]), 0, "RSDP checksum");
    check_eq!(r[15], 2, "RSDP revision");
    check_eq!(u32_at(r, 20), 36, "RSDP length");
    check_eq!(sum(r), 0, "RSDP extended checksum");

    let Some(xsdt) = table(u64_at(r, 24), b"XSDT") else {
        return;
    };
    let (mut fadt, mut madt) = (None, None);
    for at in (36..xsdt.len()).step_by(8) {
        let addr = u64_at(xsdt, at);
        match &bytes(addr, 4)[..4] {
            b"FACP" => fadt = table(addr, b"FACP"),
            b"APIC" => madt = table(addr, b"APIC"),
            other => println!("XSDT: other table {other:?} at {addr:#x}"),
        }
    }
    if check!(fadt.is_some(), "XSDT lists the FADT") {
        let fadt = fadt.unwrap_or_default();
        check!(fadt.len() >= 276, "FADT length {}", fadt.len());
        check!(
            u32_at(fadt, 112) & 1 << 20 != 0,
            "FADT flags {:#x}: HW_REDUCED_ACPI",
            u32_at(fadt, 112)
        );
        let dsdt = if fadt.len() >= 148 && u64_at(fadt, 140) != 0 {
            u64_at(fadt, 140)
        } else {
            u64::from(u32_at(fadt, 40))
        };
        table(dsdt, b"DSDT");
    }
    if check!(madt.is_some(), "XSDT lists the MADT") {
        let madt = madt.unwrap_or_default();
        check_eq!(u32_at(madt, 36), 0xFEE0_0000, "local APIC address");
        let mut at = 44;
        let mut cpus = 0u64;
        while at + 2 <= madt.len() && madt[at + 1] >= 2 {
            let (kind, len) = (madt[at], madt[at + 1] as usize);
            if kind == 0 && len == 8 {
                let (uid, apic_id, flags) = (madt[at + 2], madt[at + 3], u32_at(madt, at + 4));
                println!("local APIC: processor {uid} APIC ID {apic_id} flags {flags:#x}");
                check_eq!(u64::from(uid), cpus, "processor UID");
                // Every vCPU's CPUID leaf 1 EBX[31:24] is its vCPU number.
                check_eq!(u64::from(apic_id), cpus, "APIC ID of vCPU {cpus}");
                check_eq!(flags & 1, 1, "vCPU {cpus} enabled");
                cpus += 1;
            } else {
                println!("MADT entry type {kind} length {len}");
            }
            at += len;
        }
        check_eq!(at, madt.len(), "MADT entries fill the table");
        check_eq!(cpus, vcpus, "one local APIC per vCPU");
        let own = rxen_guest::cpu::cpuid(1, 0).ebx >> 24;
        check_eq!(own, 0, "vCPU 0's APIC ID (CPUID leaf 1 EBX[31:24])");
    }
}
