//! `HYPERVISOR_sched_op`: yield, shutdown_code accepted, bad pointers, unknown commands.
//! (Shutdown reasons have their own guests: the harness checks how the domain ended.)
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::hypercall::{ptr, sched_op};
use rxen_guest::xen::sched;
use rxen_guest::{check_eq, err, StartInfo};

rxen_guest::entry!(main);

/// An address no page table maps.
const UNMAPPED: u64 = 0x10_0000_0000;

fn op(cmd: u64, arg: u64) -> i64 {
    // SAFETY: Xen validates the pointers; the tests pass real buffers or unmapped ones.
    unsafe { sched_op(cmd, arg) }
}

fn main(_si: &StartInfo) {
    for _ in 0..100 {
        if !check_eq!(op(sched::YIELD, 0), 0, "SCHEDOP_yield") {
            break;
        }
    }
    check_eq!(
        op(sched::SHUTDOWN, UNMAPPED),
        err::EFAULT,
        "shutdown, bad pointer"
    );
    check_eq!(
        op(sched::SHUTDOWN_CODE, UNMAPPED),
        err::EFAULT,
        "shutdown_code, bad pointer"
    );
    // Setting the code does not shut down; the later poweroff is then reported with it,
    // so set it to poweroff (what the runtime's report uses anyway).
    let code = sched::SHUTDOWN_POWEROFF;
    check_eq!(
        op(sched::SHUTDOWN_CODE, ptr(&code)),
        0,
        "SCHEDOP_shutdown_code"
    );
    for cmd in [8u64, 9, 100, u64::MAX] {
        check_eq!(op(cmd, 0), err::ENOSYS, "unknown command {cmd:#x}");
    }
}
