//! The arch-neutral core of rxen: everything that can be decided without touching
//! hardware, so that it builds and is unit-tested on the host.
//!
//! It owns the parsing of the hypervisor command line, the sanitizing of the
//! firmware memory map, the physical frame allocator, log-level filtering,
//! the ELF/PVH loader, domains and vCPUs as bookkeeping, time, hypercall
//! dispatch and validation, event channels (2-level and FIFO), grant tables, exit
//! accounting (`exit_stats`) and the schedulers
//! (`sched`: the scheduler interface, credit and RTDS).
#![cfg_attr(not(test), no_std)]
// The core touches no hardware: no unsafe code outside its tests (whose
// fake platforms build shared pages from raw pointers).
#![cfg_attr(not(test), forbid(unsafe_code))]

extern crate alloc;

pub mod acpi_tables;
pub mod bzimage;
pub mod cmdline;
pub mod conring;
pub mod console;
pub mod console_ring;
pub mod console_switch;
pub mod dom0_acpi;
pub mod dom0_build;
pub mod dom0_memory;
pub mod domain;
pub mod elf;
pub mod event_channel;
pub mod exit_stats;
pub mod frame_alloc;
#[cfg(test)]
mod fuzz_tests;
pub mod grant_table;
pub mod guest_handle;
pub mod hvm_save;
pub mod hypercall;
pub mod i8254;
pub mod ioport_policy;
pub mod lock_profile;
pub mod log;
pub mod memmap;
pub mod mm;
pub mod pci;
pub mod platform;
pub mod sched;
pub mod shared_page;
#[cfg(test)]
mod test_alloc;
#[cfg(test)]
mod test_support;
pub mod time;
pub mod unxz;
pub mod vioapic;
pub mod vlapic;
pub mod vpci;
