//! The rxen hypervisor image: glues the arch-neutral core and the x86
//! platform together. It parses the command line, reports the machine the
//! way Xen does at boot, sets up memory and every CPU, builds the boot
//! domains and runs them on every CPU through the scheduler.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod acpi;
#[cfg(target_os = "none")]
mod console_input;
#[cfg(target_os = "none")]
mod cpus;
#[cfg(target_os = "none")]
mod domains;
#[cfg(target_os = "none")]
mod gsi;
#[cfg(target_os = "none")]
mod heap;
#[cfg(target_os = "none")]
mod hvm;
#[cfg(target_os = "none")]
mod ioports;
#[cfg(target_os = "none")]
mod memory;
#[cfg(target_os = "none")]
mod pci;
#[cfg(target_os = "none")]
mod schedule;
#[cfg(target_os = "none")]
mod start;
#[cfg(target_os = "none")]
mod time;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("rxen is a bare-metal image: build it with `cargo xtask build`");
}
