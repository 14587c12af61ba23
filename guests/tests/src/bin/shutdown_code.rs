//! `SCHEDOP_shutdown_code` sets the reason a later shutdown reports: Xen's
//! `domain_shutdown` uses the code set first. The guest sets `SHUTDOWN_reboot`, then
//! shuts down with `SHUTDOWN_poweroff`; the harness checks the domain ended as **reboot**.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::hypercall::{ptr, sched_op};
use rxen_guest::xen::sched;
use rxen_guest::{check_eq, println, StartInfo};

rxen_guest::entry!(main);

fn main(_si: &StartInfo) {
    let code = sched::SHUTDOWN_REBOOT;
    // SAFETY: `struct sched_shutdown` is one u32.
    check_eq!(unsafe { sched_op(sched::SHUTDOWN_CODE, ptr(&code)) }, 0);
    println!("Test result: {}", rxen_guest::report::current().word());
    rxen_guest::report::exit(sched::SHUTDOWN_POWEROFF);
}
