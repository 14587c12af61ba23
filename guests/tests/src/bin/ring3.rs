//! A hypercall from ring 3 fails with `-EPERM`, both raw `VMMCALL` and through the
//! hypercall page; the same calls from ring 0 work.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::boot::{user_page_call, user_vmmcall};
use rxen_guest::xen::{hypercall as nr, xenver};
use rxen_guest::{check_eq, err, println, StartInfo};

rxen_guest::entry!(main);

fn main(_si: &StartInfo) {
    let rc = user_vmmcall(nr::XEN_VERSION, xenver::VERSION, 0);
    println!("ring 3 vmmcall xen_version: {rc}");
    check_eq!(rc, err::EPERM, "raw VMMCALL from ring 3");
    let rc = user_page_call(nr::XEN_VERSION, xenver::VERSION, 0);
    println!("ring 3 page call xen_version: {rc:?}");
    check_eq!(rc, Some(err::EPERM), "hypercall page from ring 3");
    // A shutdown from ring 3 must not shut us down.
    let rc = user_vmmcall(nr::SCHED_OP, 2, 0x10_0000);
    check_eq!(rc, err::EPERM, "sched_op from ring 3");
    // Ring 0 still works afterwards.
    check_eq!(
        // SAFETY: no pointer.
        unsafe { rxen_guest::hypercall::xen_version(xenver::VERSION, 0) },
        0x0004_0011
    );
}
