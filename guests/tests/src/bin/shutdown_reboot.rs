//! Prints `Test result: SUCCESS` and shuts down with `SHUTDOWN_reboot`; the harness checks
//! that the hypervisor reports the domain's end as reboot (rxen: `d0: shut down (reboot)`).
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::xen::sched;
use rxen_guest::{println, StartInfo};

rxen_guest::entry!(main);

fn main(_si: &StartInfo) {
    println!("Test result: SUCCESS");
    rxen_guest::report::exit(sched::SHUTDOWN_REBOOT);
}
