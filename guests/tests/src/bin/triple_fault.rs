//! Triple-faults on purpose (an empty IDT, then `ud2`): the hypervisor must report that
//! the domain crashed and keep running (the harness checks its log).
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::{println, StartInfo};

rxen_guest::entry!(main);

fn main(_si: &StartInfo) {
    println!("triple_fault: loading an empty IDT and executing ud2");
    rxen_guest::boot::load_empty_idt();
    // SAFETY: deliberately faults; with no IDT the #UD becomes a triple fault.
    unsafe { core::arch::asm!("ud2", options(noreturn)) };
}
