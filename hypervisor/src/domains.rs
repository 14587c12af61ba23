//! The boot domains and their life cycle: dom0 is built from the first
//! module (its initrd from the second), runs, and when it ends it is torn
//! down (every frame back to the allocator), rebuilt on reboot, or reported
//! on crash. With no domain left the machine stops; in test mode the exit
//! status says how the last domain ended.

use alloc::string::String;
use alloc::vec::Vec;

use rxen_core::cmdline::{MemAmount, Options};
use rxen_core::domain::ShutdownReason;
use rxen_x86::bootinfo::BootModule;
use rxen_x86::{printk, stop};

use crate::hvm::{self, build::BootSpec, DomainEnd};

/// Most reboots in a row before rxen gives up on a domain.
const MAX_REBOOTS: u32 = 16;

/// Dom0's memory: `dom0_mem=` or, as Xen, all but 1/16 (at most 128 MiB).
fn dom0_memory(options: &Options, host_bytes: u64) -> u64 {
    let free = crate::memory::free_frame_count() * 4096;
    let requested = options.dom0_mem.target.map(|amount| match amount {
        MemAmount::Bytes(bytes) => bytes,
        MemAmount::Percent(p) => host_bytes / 100 * p as u64,
    });
    let default = free - (free / 16).min(128 << 20);
    let wanted = requested.unwrap_or(default);
    // Leave room for page tables and control structures.
    let cap = free.saturating_sub(8 << 20);
    if wanted > cap {
        printk!(
            "dom0_mem: {} MiB requested, {} MiB available: using {} MiB",
            wanted >> 20,
            cap >> 20,
            cap >> 20
        );
    }
    (wanted.min(cap) & !0x1F_FFFF).max(2 << 20)
}

/// Builds and runs dom0 until no domain is left, then stops the machine.
pub fn run_boot_domains(
    options: &Options,
    modules: &[BootModule],
    loader: &str,
    host_bytes: u64,
) -> ! {
    let Some(kernel) = modules.first() else {
        stop::machine_stop()
    };
    let spec = BootSpec {
        kernel: (kernel.start, kernel.end),
        // The kernel's command line without the file name (as Xen cooks it);
        // the other modules' strings stay raw, file name included, as on Xen.
        cmdline: String::from(rxen_core::cmdline::cook(&kernel.cmdline, loader)),
        modules: modules
            .iter()
            .skip(1)
            .map(|m| ((m.start, m.end), m.cmdline.clone()))
            .collect::<Vec<_>>(),
        memory_bytes: dom0_memory(options, host_bytes),
        flags: rxen_abi::start_info::SIF_PRIVILEGED | rxen_abi::start_info::SIF_INITDOMAIN,
        // dom0_max_vcpus=<min>-<max>: as many as allowed, at most one per CPU.
        vcpus: options
            .dom0_max_vcpus
            .map(|(_, max)| max.min(rxen_x86::cpu::online_count()).max(1))
            .unwrap_or(1),
    };
    if !crate::hvm::vcpu::init_permission_maps() {
        printk!("No memory for the SVM permission maps");
        stop::machine_stop_with(stop::DEBUG_EXIT_DOMAIN_CRASHED)
    }
    let free_before = crate::memory::free_frame_count();
    let mut reboots = 0;
    loop {
        let mut domain = match hvm::create(0, &spec) {
            Ok(domain) => domain,
            Err(why) => {
                printk!("d0: cannot build dom0: {why}");
                stop::machine_stop_with(stop::DEBUG_EXIT_DOMAIN_CRASHED)
            }
        };
        let DomainEnd::Shutdown(reason) = hvm::run(&mut domain);
        let frames = domain.memory.frames_in_use();
        drop(domain);
        let leaked = free_before.saturating_sub(crate::memory::free_frame_count());
        printk!(
            "d0: shut down ({}); {frames} frames returned, {leaked} frames not returned",
            reason_text(reason)
        );
        match reason {
            ShutdownReason::Reboot if reboots < MAX_REBOOTS => {
                reboots += 1;
                printk!("d0: rebooting (reboot {reboots})");
            }
            ShutdownReason::Reboot => {
                printk!("d0: rebooted {MAX_REBOOTS} times in a row: giving up");
                stop::machine_stop_with(stop::DEBUG_EXIT_DOMAIN_CRASHED)
            }
            ShutdownReason::Poweroff => {
                printk!("No domain left: halting");
                stop::machine_stop()
            }
            _ => {
                printk!("No domain left: halting");
                stop::machine_stop_with(stop::DEBUG_EXIT_DOMAIN_CRASHED)
            }
        }
    }
}

fn reason_text(reason: ShutdownReason) -> String {
    match reason {
        ShutdownReason::Other(code) => alloc::format!("unknown reason {code}"),
        other => String::from(other.name()),
    }
}
