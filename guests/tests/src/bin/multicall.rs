//! `HYPERVISOR_multicall`: a batch with failing entries gets per-entry results; bad
//! pointers and unknown ops in a batch.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::hypercall::{hypercall, ptr};
use rxen_guest::xen::{hypercall as nr, memory, xenver, MulticallEntry};
use rxen_guest::{check_eq, err, println, StartInfo};

rxen_guest::entry!(main);

fn entry(op: u64, args: [u64; 6]) -> MulticallEntry {
    MulticallEntry {
        op,
        result: 0x5555,
        args,
    }
}

fn multicall(calls: &mut [MulticallEntry]) -> i64 {
    // SAFETY: `calls` is a valid array of multicall entries.
    unsafe {
        hypercall(
            nr::MULTICALL,
            calls.as_mut_ptr() as u64,
            calls.len() as u64,
            0,
            0,
            0,
        )
    }
}

fn main(_si: &StartInfo) {
    let me = memory::DOMID_SELF;
    let msg = b"multicall: console write from a batch\n";
    let mut calls = [
        entry(nr::XEN_VERSION, [xenver::VERSION, 0, 0, 0, 0, 0]),
        entry(nr::XEN_VERSION, [999, 0, 0, 0, 0, 0]),
        entry(
            nr::CONSOLE_IO,
            [0, msg.len() as u64, msg.as_ptr() as u64, 0, 0, 0],
        ),
        entry(
            nr::MEMORY_OP,
            [memory::CURRENT_RESERVATION, ptr(&me), 0, 0, 0, 0],
        ),
        entry(
            nr::XEN_VERSION,
            [xenver::EXTRAVERSION, 0x10_0000_0000, 0, 0, 0, 0],
        ),
        entry(60, [0; 6]),
        entry(nr::XEN_VERSION, [xenver::PAGESIZE, 0, 0, 0, 0, 0]),
    ];
    let rc = multicall(&mut calls);
    for (i, c) in calls.iter().enumerate() {
        println!("entry {i}: op {} result {}", c.op, c.result);
    }
    check_eq!(rc, 0, "multicall");
    check_eq!(calls[0].result, 0x0004_0011, "xen_version");
    check_eq!(calls[1].result, err::ENOSYS, "unknown xen_version sub-op");
    check_eq!(calls[2].result, 0, "console_io");
    check_eq!(calls[4].result, err::EFAULT, "bad pointer in a batch entry");
    check_eq!(calls[5].result, err::ENOSYS, "unknown hypercall in a batch");
    check_eq!(calls[6].result, 4096, "entries after failures still run");
    // SAFETY: the direct call needs only `me`.
    let direct = unsafe { rxen_guest::hypercall::memory_op(memory::CURRENT_RESERVATION, ptr(&me)) };
    check_eq!(calls[3].result, direct, "memory_op result as a direct call");

    check_eq!(multicall(&mut []), 0, "empty batch");
    // SAFETY: Xen validates the list pointer.
    let rc = unsafe { hypercall(nr::MULTICALL, 0x10_0000_0000, 4, 0, 0, 0) };
    check_eq!(rc, err::EFAULT, "unmapped list");
    // A multicall inside a multicall is refused per entry.
    let mut inner = [entry(nr::XEN_VERSION, [xenver::VERSION, 0, 0, 0, 0, 0])];
    let mut nested = [entry(
        nr::MULTICALL,
        [inner.as_mut_ptr() as u64, 1, 0, 0, 0, 0],
    )];
    let rc = multicall(&mut nested);
    println!(
        "nested multicall: rc {rc} entry result {}",
        nested[0].result
    );
    check_eq!(rc, 0);
    check_eq!(nested[0].result, err::EINVAL, "nested multicall entry");
}
