//! Bad pointers to event-channel operations: Xen reads the argument first and answers
//! -EFAULT (not -ENOSYS) for every sub-op it knows.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::hypercall::hypercall;
use rxen_guest::xen::hypercall as nr;
use rxen_guest::{check_eq, err, StartInfo};

rxen_guest::entry!(main);

/// An address no page table maps.
const UNMAPPED: u64 = 0x10_0000_0000;

fn main(_si: &StartInfo) {
    for bad in [UNMAPPED, 0xffff_8000_0000_0000] {
        // EVTCHNOP_bind_interdomain (0), bind_virq (1), close (3), send (4), status (5).
        for cmd in [0u64, 1, 3, 4, 5] {
            // SAFETY: the pointer is bad on purpose; the hypervisor must reject it.
            let rc = unsafe { hypercall(nr::EVENT_CHANNEL_OP, cmd, bad, 0, 0, 0) };
            check_eq!(rc, err::EFAULT, "event_channel_op {cmd} {bad:#x}");
        }
    }
}
