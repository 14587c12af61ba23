//! The PVH start info of dom0: magic, flags (SIF_PRIVILEGED | SIF_INITDOMAIN), the
//! command line and modules the loader was given, and (version 1) a memory map
//! that matches `XENMEM_memory_map`.
//!
//! The harness boots it with the command line `rxen-test cmdline=ok` and a second module
//! (the "initrd") whose first 16 bytes are `RXEN-TEST-MODULE` and whose command line is
//! `initrd-arg`.
//!
//! Xen 4.17 surprise: a PVH dom0 gets start info **version 0** (no memory map in it; dom0
//! reads its map with `XENMEM_memory_map`). Only domains built by the toolstack get
//! version 1. So version 0 and 1 are both accepted here, and a version-1 map must match.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::start_info::c_string;
use rxen_guest::xen::{HvmMemmapEntry, SIF_INITDOMAIN, SIF_PRIVILEGED};
use rxen_guest::{check, check_eq, println, StartInfo};

rxen_guest::entry!(main);

fn main(si: &StartInfo) {
    let raw = si.raw();
    println!(
        "start info: version {} flags {:#x} nr_modules {} rsdp {:#x} memmap {:#x}/{} cmdline '{}'",
        raw.version,
        raw.flags,
        raw.nr_modules,
        raw.rsdp_paddr,
        raw.memmap_paddr,
        raw.memmap_entries,
        si.cmdline()
    );
    check!(si.version() <= 1, "version {}", si.version());
    check_eq!(
        si.flags() & (SIF_PRIVILEGED | SIF_INITDOMAIN),
        SIF_PRIVILEGED | SIF_INITDOMAIN
    );
    check_eq!(si.cmdline(), "rxen-test cmdline=ok");
    // The RSDP (ACPI tables for dom0) is checked by the `dom0_acpi` guest.

    let mods = si.modules();
    if check_eq!(mods.len(), 1, "one module after the kernel") {
        let m = &mods[0];
        println!(
            "module 0: {:#x} size {} cmdline {:#x}",
            m.paddr, m.size, m.cmdline_paddr
        );
        check!(
            m.paddr.is_multiple_of(4096),
            "module at {:#x} is page aligned",
            m.paddr
        );
        check_eq!(m.size, 4096 + 123, "module size");
        // SAFETY: the module is in dom0's RAM, identity-mapped.
        let head = unsafe { core::slice::from_raw_parts(m.paddr as *const u8, 16) };
        check_eq!(head, b"RXEN-TEST-MODULE", "module contents");
        // Xen passes the loader's module string as is: the file name, then the
        // arguments (only the kernel's command line loses its first word).
        // SAFETY: the loader's NUL-terminated string.
        let cmd = unsafe { c_string(m.cmdline_paddr) };
        println!("module 0 cmdline '{cmd}'");
        let words: [Option<&str>; 3] = {
            let mut w = cmd.split(' ');
            [w.next(), w.next(), w.next()]
        };
        check!(
            words[0].is_some_and(|f| f.ends_with("initrd") || f.contains('/'))
                && words[1] == Some("initrd-arg")
                && words[2].is_none(),
            "module cmdline '{cmd}' is '<file name> initrd-arg'"
        );
    }

    // XENMEM_memory_map: the domain's e820.
    let mut map = [HvmMemmapEntry::default(); 64];
    let n = rxen_guest::hypercall::memory_map(&mut map).unwrap_or(0);
    check!(n > 0, "XENMEM_memory_map");
    for e in &map[..n] {
        println!(
            "e820 {:#012x}-{:#012x} type {}",
            e.addr,
            e.addr + e.size,
            e.type_
        );
    }
    let ram = rxen_guest::start_info::ram_bytes(&map[..n]);
    println!("e820 RAM {} KiB", ram / 1024);
    // dom0_mem=64M: the RAM in the map is about 64 MiB (Xen keeps a little for the
    // paging structures and the low 1 MiB holes).
    check!(
        (56 << 20..=64 << 20).contains(&ram),
        "RAM in e820 is {ram:#x}, expected about 64 MiB"
    );
    let image = 0x10_0000u64;
    check!(
        rxen_guest::start_info::entry_at(&map[..n], image).is_some_and(|e| e.type_ == 1),
        "our image at 1 MiB is in e820 RAM"
    );
    if si.version() >= 1 {
        check_eq!(
            si.memmap(),
            &map[..n],
            "start info memmap == XENMEM_memory_map"
        );
    }
}
