//! Stopping the machine: a normal stop, or a crash after a fatal trap or a
//! panic. Other CPUs are parked with an NMI; then the machine leaves QEMU
//! through isa-debug-exit (when `isa_debug_exit` is given), stays halted
//! (`noreboot`), or reboots after five seconds as Xen does.

use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};

use x86_64::instructions::port::Port;

use crate::apic;

/// Value written to isa-debug-exit on a normal stop (QEMU exits with 33).
pub const DEBUG_EXIT_NORMAL: u8 = 0x10;
/// Value written to isa-debug-exit after a fault or panic (QEMU exits with 35).
pub const DEBUG_EXIT_CRASH: u8 = 0x11;
/// Value written when the last domain ended other than by poweroff (crash,
/// watchdog, failed build...; QEMU exits with 37).
pub const DEBUG_EXIT_DOMAIN_CRASHED: u8 = 0x12;

static STOPPING: AtomicBool = AtomicBool::new(false);
/// Index of the CPU that owns the machine stop (`u32::MAX`: nobody yet).
static STOP_OWNER: AtomicU32 = AtomicU32::new(u32::MAX);
static DEBUG_EXIT_PORT: AtomicU16 = AtomicU16::new(0);
static NOREBOOT: AtomicBool = AtomicBool::new(false);
static APIC_READY: AtomicBool = AtomicBool::new(false);

/// Applies the stop-related options: the isa-debug-exit port and `noreboot`.
pub fn configure(debug_exit_port: Option<u16>, noreboot: bool) {
    DEBUG_EXIT_PORT.store(debug_exit_port.unwrap_or(0), Ordering::Relaxed);
    NOREBOOT.store(noreboot, Ordering::Relaxed);
}

/// Tells the stop path that the local APIC can send NMIs.
pub fn set_apic_ready() {
    APIC_READY.store(true, Ordering::Release);
}

/// Whether a machine stop is under way (NMIs then park CPUs).
pub fn stopping() -> bool {
    STOPPING.load(Ordering::Acquire)
}

/// Claims the machine stop for this CPU. Only one stop (normal or crash)
/// runs: a CPU that comes second, or that faults inside its own report,
/// parks at once and leaves the report to the owner.
pub fn claim_stop() {
    let me = crate::cpu::current_index() as u32;
    if STOP_OWNER
        .compare_exchange(u32::MAX, me, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        park_this_cpu();
    }
}

/// Marks the start of a crash report (see [`claim_stop`]).
pub fn begin_crash() {
    claim_stop();
}

/// Halts this CPU for good.
pub fn park_this_cpu() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Parks every other CPU that rxen started, with an NMI each. (CPUs that
/// were never started are left alone: an NMI would wake them.)
fn stop_other_cpus() {
    STOPPING.store(true, Ordering::Release);
    if APIC_READY.load(Ordering::Acquire) {
        let me = crate::cpu::current_index();
        for (index, apic_id) in crate::cpu::online_apic_ids() {
            if index != me {
                apic::send_ipi(apic_id, apic::ICR_NMI);
            }
        }
    }
}

fn debug_exit(code: u8) {
    // Everything queued for the serial line goes out before QEMU ends.
    crate::console::flush();
    let port = DEBUG_EXIT_PORT.load(Ordering::Relaxed);
    if port != 0 {
        // SAFETY: the operator named this port as QEMU's isa-debug-exit
        // device; writing it ends the emulator.
        unsafe { Port::<u32>::new(port).write(code as u32) };
    }
}

/// Stops the machine after a normal end of work.
pub fn machine_stop() -> ! {
    machine_stop_with(DEBUG_EXIT_NORMAL)
}

/// Stops the machine cleanly, telling a test harness `code` through
/// isa-debug-exit.
pub fn machine_stop_with(code: u8) -> ! {
    x86_64::instructions::interrupts::disable();
    claim_stop();
    stop_other_cpus();
    crate::printk!("System halted.");
    debug_exit(code);
    park_this_cpu()
}

/// Stops the machine after a fatal trap or a panic (already reported).
pub fn machine_crash() -> ! {
    x86_64::instructions::interrupts::disable();
    stop_other_cpus();
    debug_exit(DEBUG_EXIT_CRASH);
    if NOREBOOT.load(Ordering::Relaxed) {
        crate::console::print_emergency(format_args!(
            "Manual reset required ('noreboot' specified)"
        ));
        park_this_cpu();
    }
    crate::console::print_emergency(format_args!("Reboot in five seconds..."));
    apic::delay_us(5_000_000);
    reboot()
}

/// Resets the machine: the PCI reset register, the keyboard controller,
/// then a triple fault.
pub fn reboot() -> ! {
    // SAFETY: 0xCF9 and 0x64 are the chipset reset controls of a PC; the
    // machine is being reset on purpose.
    unsafe {
        Port::<u8>::new(0xCF9).write(0x06);
        apic::delay_us(50_000);
        Port::<u8>::new(0x64).write(0xFE);
        apic::delay_us(50_000);
        let empty = x86_64::structures::DescriptorTablePointer {
            limit: 0,
            base: x86_64::VirtAddr::zero(),
        };
        x86_64::instructions::tables::lidt(&empty);
        core::arch::asm!("int3");
    }
    park_this_cpu()
}
