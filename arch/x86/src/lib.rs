//! The x86_64 platform layer of rxen: boot entries, CPU tables, serial
//! console, local APIC, SMP bring-up, SVM detection, and the machine stop.
//! All `unsafe` hardware access of the hypervisor lives here.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod acpi;
pub mod apic;
#[cfg(target_os = "none")]
pub mod boot;
pub mod bootinfo;
pub mod console;
pub mod cpu;
pub mod cpuid_policy;
pub mod ctrlreg;
pub mod exit;
pub mod frame;
pub mod ioapic;
pub mod irq;
pub mod msr;
pub mod msr_policy;
pub mod paging;
pub mod pci;
pub mod pic;
pub mod port_io;
pub mod rtc;
pub mod serial;
#[cfg(target_os = "none")]
pub mod smp;
pub mod spec_ctrl;
pub mod stop;
pub mod svm;
#[cfg(target_os = "none")]
pub mod traps;
pub mod xsave;
