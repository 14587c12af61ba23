//! Bringing up every CPU of the MADT and checking the timer interrupt.

use core::sync::atomic::Ordering;

use rxen_core::cmdline::Options;
use rxen_x86::bootinfo::BootInfo;
use rxen_x86::{apic, cpu, printk, smp, svm, traps};

use crate::memory;

/// Stack of each application processor (128 KiB: building a domain from an
/// xz-compressed bzImage puts the ~30 KiB xz decoder state on it).
const AP_STACK_FRAMES: usize = 32;

static OPTIONS: spin::Once<Options> = spin::Once::new();

/// Runs the APIC timer at 1 kHz until it has fired ten times and reports
/// how long that took on the TSC (10 ms: the check that the timer
/// interrupt works, not a calibration).
pub fn check_timer_interrupts() {
    let start_ticks = traps::TIMER_TICKS.load(Ordering::Relaxed);
    let start = apic::rdtsc();
    let limit = start + apic::tsc_per_ms().max(1000) * 2000;
    apic::start_periodic_timer(1000);
    x86_64::instructions::interrupts::enable();
    while traps::TIMER_TICKS.load(Ordering::Relaxed) < start_ticks + 10 && apic::rdtsc() < limit {
        core::hint::spin_loop();
    }
    x86_64::instructions::interrupts::disable();
    apic::stop_timer();
    let ticks = traps::TIMER_TICKS.load(Ordering::Relaxed) - start_ticks;
    let elapsed_ms = (apic::rdtsc() - start) / apic::tsc_per_ms().max(1);
    printk!("APIC timer: {ticks} interrupts at 1000 Hz in {elapsed_ms} ms");
}

/// Starts every enabled CPU of the MADT other than this one.
pub fn bring_up_aps(boot: &BootInfo, options: &Options, pml4: u64) {
    OPTIONS.call_once(|| options.clone());
    let bsp_apic = apic::id() as u32;
    printk!("CPU0: online (APIC ID {bsp_apic}), boot CPU");
    cpu::mark_online();
    let cpus = match rxen_x86::acpi::madt_cpus(boot.acpi) {
        Ok(cpus) => cpus,
        Err(error) => {
            printk!(
                "ACPI: no usable MADT ({:?}): running on the boot CPU only",
                error.0
            );
            return;
        }
    };
    printk!("ACPI: {} CPUs in the MADT", cpus.len());
    if let Some(bsp) = cpus.iter().find(|c| c.apic_id == bsp_apic) {
        cpu::set_acpi_id(0, bsp.processor_uid);
    }
    let max = options
        .maxcpus
        .map(|m| m as usize)
        .unwrap_or(cpu::MAX_CPUS)
        .clamp(1, cpu::MAX_CPUS);
    smp::install_trampoline();
    let mut next_index = 1;
    for entry in cpus.iter().filter(|c| c.apic_id != bsp_apic) {
        if next_index >= max {
            printk!("maxcpus={max}: not starting APIC ID {}", entry.apic_id);
            continue;
        }
        let Ok(apic_id) = u8::try_from(entry.apic_id) else {
            printk!(
                "CPU with x2APIC ID {} cannot be started in xAPIC mode: skipped",
                entry.apic_id
            );
            continue;
        };
        let Some(stack) = memory::alloc_frames(AP_STACK_FRAMES) else {
            printk!("No memory for the stack of APIC ID {apic_id}: skipped");
            continue;
        };
        let stack_top = stack + (AP_STACK_FRAMES as u64) * 4096;
        cpu::register(next_index, apic_id, stack, stack_top);
        cpu::set_acpi_id(next_index, entry.processor_uid);
        if smp::start_ap(apic_id, next_index, pml4, stack_top, ap_entry) {
            next_index += 1;
        } else {
            printk!("CPU with APIC ID {apic_id} did not respond to INIT-SIPI-SIPI");
        }
    }
    // Wait (bounded) until the started CPUs have finished their set-up.
    let deadline = apic::rdtsc() + apic::tsc_per_ms().max(1000) * 2000;
    while (cpu::online_count() as usize) < next_index && apic::rdtsc() < deadline {
        core::hint::spin_loop();
    }
}

/// 64-bit entry of an application processor, on its own stack.
extern "C" fn ap_entry(cpu_index: u64) -> ! {
    smp::report_started();
    cpu::init_tables();
    apic::init_this_cpu();
    svm::enable_this_cpu_full();
    rxen_x86::xsave::enable_this_cpu();
    rxen_x86::spec_ctrl::init_this_cpu();
    let apic_id = apic::id();
    cpu::mark_online();
    printk!("CPU{cpu_index}: online (APIC ID {apic_id})");
    if let Some(options) = OPTIONS.get() {
        crate::start::run_crash_test(options, cpu_index as usize);
    }
    // Idle until the boot domains exist, then schedule vCPUs.
    while !crate::schedule::started() {
        x86_64::instructions::interrupts::enable_and_hlt();
    }
    crate::schedule::run_cpu(cpu_index as usize)
}
