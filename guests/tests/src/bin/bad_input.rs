//! Bad input: unknown hypercall numbers, PV-only hypercalls, bad pointers in every
//! family, absurd counts and sizes. Each must fail with Xen's errno and nothing else.
//! (Event-channel operations have their own guest, `event_channel_bad_input`.)
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::hypercall::{hypercall, vmmcall};
use rxen_guest::xen::{consoleio, hypercall as nr, memory, xenver, MulticallEntry};
use rxen_guest::{check, check_eq, err, println, StartInfo};

rxen_guest::entry!(main);

/// An address no page table maps.
const UNMAPPED: u64 = 0x10_0000_0000;

fn call(op: u64, a: [u64; 5]) -> i64 {
    // SAFETY: the arguments are bad on purpose; Xen must validate them.
    unsafe { hypercall(op, a[0], a[1], a[2], a[3], a[4]) }
}

fn main(_si: &StartInfo) {
    // Unknown hypercall numbers, through the page and raw (the page has 128 stubs).
    // (42 is hypfs_op, 48-55 are the arch hypercalls.)
    for op in [43u64, 47, 56, 60, 63, 127] {
        check_eq!(call(op, [0; 5]), err::ENOSYS, "hypercall {op}");
    }
    for op in [128u64, 1000, 0xffff_ffff, u64::MAX] {
        // SAFETY: no pointers.
        let rc = unsafe { vmmcall(op, [0; 5]) };
        check_eq!(rc, err::ENOSYS, "raw hypercall {op:#x}");
    }
    // PV-only hypercalls are not available to an HVM/PVH guest (raw VMMCALL: the page's
    // stub for iret, 23, is ud2).
    for op in [nr::MMU_UPDATE, 2, 3, 4, 5, 6, 8, 14, 23] {
        // SAFETY: no pointers.
        let rc = unsafe { vmmcall(op, [0; 5]) };
        println!("PV-only hypercall {op}: {rc}");
        check_eq!(rc, err::ENOSYS, "PV-only hypercall {op}");
    }

    // Bad pointers: unmapped in the guest's page tables. (Not non-canonical ones: Xen
    // 4.17 walks only bits 47:0 of a guest pointer, so 0x8000_0000_0000_0000 aliases
    // linear address 0 and "works"; rxen may refuse it, so it is not tested either way.)
    for bad in [UNMAPPED, 0xffff_8000_0000_0000] {
        check_eq!(
            call(nr::XEN_VERSION, [xenver::EXTRAVERSION, bad, 0, 0, 0]),
            err::EFAULT,
            "xen_version {bad:#x}"
        );
        check_eq!(
            call(nr::CONSOLE_IO, [consoleio::WRITE, 8, bad, 0, 0]),
            err::EFAULT,
            "console_io {bad:#x}"
        );
        check_eq!(
            call(nr::MEMORY_OP, [memory::MEMORY_MAP, bad, 0, 0, 0]),
            err::EFAULT,
            "memory_op {bad:#x}"
        );
        check_eq!(
            call(nr::MULTICALL, [bad, 1, 0, 0, 0]),
            err::EFAULT,
            "multicall {bad:#x}"
        );
        check_eq!(
            call(nr::SCHED_OP, [2, bad, 0, 0, 0]),
            err::EFAULT,
            "sched_op {bad:#x}"
        );
        check_eq!(
            call(nr::HVM_OP, [1, bad, 0, 0, 0]),
            err::EFAULT,
            "hvm_op {bad:#x}"
        );
        check_eq!(
            call(nr::VCPU_OP, [4, 0, bad, 0, 0]),
            err::EFAULT,
            "vcpu_op {bad:#x}"
        );
    }
    // A buffer that starts mapped and runs into unmapped memory (the end of the
    // identity map at 4 GiB).
    let edge = 0x1_0000_0000u64 - 8;
    check_eq!(
        call(nr::CONSOLE_IO, [consoleio::WRITE, 64, edge, 0, 0]),
        err::EFAULT,
        "console_io across the map's end"
    );

    // Absurd sizes and counts.
    let rc = call(nr::CONSOLE_IO, [consoleio::WRITE, u64::MAX, UNMAPPED, 0, 0]);
    println!("console_io len u64::MAX: {rc}");
    check!(rc < 0, "console_io len u64::MAX fails");
    let rc = call(nr::MULTICALL, [UNMAPPED, u64::MAX, 0, 0, 0]);
    println!("multicall nr u64::MAX: {rc}");
    check!(rc < 0, "multicall of u64::MAX entries fails");
    let mut one = [MulticallEntry {
        op: nr::XEN_VERSION,
        ..Default::default()
    }];
    let rc = call(
        nr::MULTICALL,
        [one.as_mut_ptr() as u64, 1 << 32 | 1, 0, 0, 0],
    );
    println!(
        "multicall nr 2^32+1 (1 valid entry): {rc} / entry {}",
        one[0].result
    );
    // nr_calls is an `unsigned int`: Xen truncates 2^32+1 to 1.
    check_eq!(
        (rc, one[0].result),
        (0, 0x0004_0011),
        "multicall count truncated to 32 bits"
    );
    let mut mm = rxen_guest::xen::MemoryMap {
        nr_entries: u32::MAX,
        _pad0: [0; 4],
        buffer: UNMAPPED,
    };
    let rc = call(
        nr::MEMORY_OP,
        [memory::MEMORY_MAP, &mut mm as *mut _ as u64, 0, 0, 0],
    );
    check_eq!(
        rc,
        err::EFAULT,
        "memory_map of u32::MAX entries into an unmapped buffer"
    );
    // Unknown sub-ops in the families not covered elsewhere.
    let rc = call(nr::EVENT_CHANNEL_OP, [1000, 0, 0, 0, 0]);
    println!("event_channel_op(1000): {rc}");
    check_eq!(rc, err::ENOSYS, "unknown event_channel_op");
    let rc = call(nr::GRANT_TABLE_OP, [1000, 0, 0, 0, 0]);
    println!("grant_table_op(1000): {rc}");
    check_eq!(rc, err::ENOSYS, "unknown grant_table_op");
    let rc = call(nr::PHYSDEV_OP, [1000, 0, 0, 0, 0]);
    println!("physdev_op(1000): {rc}");
    check_eq!(rc, err::ENOSYS, "unknown physdev_op");
    let rc = call(nr::VM_ASSIST, [1000, 1000, 0, 0, 0]);
    println!("vm_assist(1000, 1000): {rc}");
    check_eq!(rc, err::EINVAL, "vm_assist bad command");
    // Still alive and answering.
    check_eq!(call(nr::XEN_VERSION, [0; 5]), 0x0004_0011);
}
