//! The local APIC (xAPIC, MMIO): enabling it, EOI, IPIs, and its timer,
//! calibrated together with the TSC against PIT channel 2.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use x86_64::instructions::port::Port;
use x86_64::registers::model_specific::Msr;

use crate::msr::{APICBASE_ADDR_MASK, APICBASE_ENABLE, MSR_IA32_APICBASE};

/// Vector of the local APIC timer.
pub const TIMER_VECTOR: u8 = 0xF0;
/// Vector of the IPI that makes another CPU reschedule (a "kick").
pub const KICK_VECTOR: u8 = 0xF1;
/// Vector of the local APIC spurious interrupt.
pub const SPURIOUS_VECTOR: u8 = 0xFF;

const REG_ID: usize = 0x20;
const REG_EOI: usize = 0xB0;
const REG_SVR: usize = 0xF0;
const REG_ICR_LOW: usize = 0x300;
const REG_ICR_HIGH: usize = 0x310;
const REG_LVT_TIMER: usize = 0x320;
const REG_TIMER_INITIAL: usize = 0x380;
const REG_TIMER_CURRENT: usize = 0x390;
const REG_TIMER_DIVIDE: usize = 0x3E0;
const LVT_MASKED: u32 = 1 << 16;
const LVT_PERIODIC: u32 = 1 << 17;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;

/// PIT input clock in Hz.
const PIT_HZ: u64 = 1_193_182;
/// Calibration window.
const CALIBRATION_MS: u64 = 10;

static APIC_BASE: AtomicU64 = AtomicU64::new(0xFEE0_0000);
/// TSC ticks per millisecond (0 until calibrated).
static TSC_PER_MS: AtomicU64 = AtomicU64::new(0);
/// APIC timer ticks (divide by 16) per millisecond.
static APIC_TICKS_PER_MS: AtomicU64 = AtomicU64::new(0);
/// Per CPU: the timer LVT value [`arm_oneshot_ns`] last programmed there
/// (with the divide configuration), tagged with [`TIMER_SETUP_KNOWN`]; 0 when
/// unknown. Re-arming then writes only the initial count: each local APIC
/// register access is an exit to the machine's emulator when rxen itself
/// runs virtualized (three per scheduling pass were ~40 us of it under
/// QEMU TCG).
static TIMER_SETUP: [AtomicU32; crate::cpu::MAX_CPUS] =
    [const { AtomicU32::new(0) }; crate::cpu::MAX_CPUS];
/// Per CPU: the TSC value at which the one-shot timer [`arm_oneshot_ns`]
/// armed there fires, while it has not fired; 0 when none is known to be
/// armed (cleared by the timer interrupt, [`timer_fired`], and whenever the
/// timer is set up otherwise).
static ONESHOT_DUE: [AtomicU64; crate::cpu::MAX_CPUS] =
    [const { AtomicU64::new(0) }; crate::cpu::MAX_CPUS];
/// Tag of a known [`TIMER_SETUP`] (bit 31 is reserved in the LVT).
const TIMER_SETUP_KNOWN: u32 = 1 << 31;

fn read(reg: usize) -> u32 {
    let address = APIC_BASE.load(Ordering::Relaxed) as usize + reg;
    // SAFETY: the APIC page is identity-mapped uncached and `reg` is one of
    // the architectural 32-bit register offsets above.
    unsafe { core::ptr::read_volatile(address as *const u32) }
}

fn write(reg: usize, value: u32) {
    let address = APIC_BASE.load(Ordering::Relaxed) as usize + reg;
    // SAFETY: as in `read`.
    unsafe { core::ptr::write_volatile(address as *mut u32, value) }
}

/// Physical address of the local APIC MMIO page.
pub fn base() -> u64 {
    APIC_BASE.load(Ordering::Relaxed)
}

/// Enables this CPU's local APIC in xAPIC mode with the spurious vector.
pub fn init_this_cpu() {
    let mut msr = Msr::new(MSR_IA32_APICBASE);
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU; setting the
    // global enable bit keeps the APIC at its current base.
    let base = unsafe {
        let value = msr.read();
        msr.write(value | APICBASE_ENABLE);
        value & APICBASE_ADDR_MASK
    };
    APIC_BASE.store(base, Ordering::Relaxed);
    write(REG_SVR, 0x100 | SPURIOUS_VECTOR as u32);
    forget_timer_setup();
    write(REG_LVT_TIMER, LVT_MASKED | TIMER_VECTOR as u32);
}

/// The running CPU's APIC ID as the APIC reports it.
pub fn id() -> u8 {
    (read(REG_ID) >> 24) as u8
}

/// Signals end of interrupt.
pub fn eoi() {
    write(REG_EOI, 0);
}

fn wait_icr_idle() {
    for _ in 0..1_000_000 {
        if read(REG_ICR_LOW) & ICR_DELIVERY_PENDING == 0 {
            return;
        }
        core::hint::spin_loop();
    }
}

/// Sends an IPI with the raw ICR low word `icr_low` to `apic_id`, once the one
/// before it was delivered (as Xen and Linux do: each send waits for the ICR to
/// be idle first, not after; a read of the ICR costs ~1.3 µs under QEMU).
/// INIT and STARTUP, whose delays count from their delivery, use
/// [`send_ipi_and_wait`].
pub fn send_ipi(apic_id: u8, icr_low: u32) {
    wait_icr_idle();
    write(REG_ICR_HIGH, (apic_id as u32) << 24);
    write(REG_ICR_LOW, icr_low);
}

/// [`send_ipi`], then waits until the APIC has delivered it.
pub fn send_ipi_and_wait(apic_id: u8, icr_low: u32) {
    send_ipi(apic_id, icr_low);
    wait_icr_idle();
}

/// ICR low word of a kick: fixed delivery of [`KICK_VECTOR`], level assert.
pub const ICR_KICK: u32 = KICK_VECTOR as u32 | (1 << 14);

/// ICR low word of an NMI (delivery mode NMI, level assert).
pub const ICR_NMI: u32 = (0b100 << 8) | (1 << 14);

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects; CR4.TSD is clear in ring 0 anyway.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// TSC ticks per millisecond (after [`calibrate`]).
pub fn tsc_per_ms() -> u64 {
    TSC_PER_MS.load(Ordering::Relaxed)
}

/// Busy-waits `us` microseconds on the calibrated TSC.
pub fn delay_us(us: u64) {
    let per_ms = tsc_per_ms().max(1000);
    let end = rdtsc() + us * per_ms / 1000;
    while rdtsc() < end {
        core::hint::spin_loop();
    }
}

/// Result of the timer calibration.
#[derive(Clone, Copy, Debug)]
pub struct Calibration {
    /// TSC frequency in kHz.
    pub tsc_khz: u64,
    /// APIC timer input (bus) frequency in kHz.
    pub apic_bus_khz: u64,
}

/// Measures the TSC and the APIC timer against a 10 ms PIT channel 2
/// one-shot. Returns `None` if the PIT never signals (bounded wait).
pub fn calibrate() -> Option<Calibration> {
    let mut port61 = Port::<u8>::new(0x61);
    let mut pit_cmd = Port::<u8>::new(0x43);
    let mut pit_ch2 = Port::<u8>::new(0x42);
    let count = (PIT_HZ * CALIBRATION_MS / 1000) as u16;
    // SAFETY: ports 0x42/0x43/0x61 are the PC's PIT and its gate register;
    // programming channel 2 only affects the speaker line, kept off here.
    let (tsc_elapsed, apic_elapsed) = unsafe {
        let gate = (port61.read() & !0x02) | 0x01;
        port61.write(gate & !0x01);
        pit_cmd.write(0xB0); // channel 2, lo/hi byte, mode 0, binary
        pit_ch2.write(count as u8);
        pit_ch2.write((count >> 8) as u8);
        forget_timer_setup();
        write(REG_TIMER_DIVIDE, 0x3); // divide by 16
        write(REG_LVT_TIMER, LVT_MASKED | TIMER_VECTOR as u32);
        port61.write(gate); // gate high: counting starts
        write(REG_TIMER_INITIAL, u32::MAX);
        let tsc_start = rdtsc();
        let mut finished = false;
        for _ in 0..50_000_000u64 {
            if port61.read() & 0x20 != 0 {
                finished = true;
                break;
            }
        }
        let tsc_end = rdtsc();
        let apic_now = read(REG_TIMER_CURRENT);
        write(REG_TIMER_INITIAL, 0);
        if !finished {
            return None;
        }
        (tsc_end - tsc_start, (u32::MAX - apic_now) as u64)
    };
    let tsc_per_ms = tsc_elapsed / CALIBRATION_MS;
    let apic_per_ms = apic_elapsed / CALIBRATION_MS;
    if tsc_per_ms == 0 || apic_per_ms == 0 {
        return None;
    }
    TSC_PER_MS.store(tsc_per_ms, Ordering::Relaxed);
    APIC_TICKS_PER_MS.store(apic_per_ms, Ordering::Relaxed);
    Some(Calibration {
        tsc_khz: tsc_per_ms,
        apic_bus_khz: apic_per_ms * 16,
    })
}

/// Uses `tsc_khz` when the PIT could not be used.
pub fn assume_tsc_khz(tsc_khz: u64) {
    TSC_PER_MS.store(tsc_khz, Ordering::Relaxed);
    APIC_TICKS_PER_MS.store(1_000_000 / 16, Ordering::Relaxed);
}

/// Starts the APIC timer in periodic mode at `hz` interrupts per second.
pub fn start_periodic_timer(hz: u64) {
    let per_ms = APIC_TICKS_PER_MS.load(Ordering::Relaxed).max(1);
    let initial = (per_ms * 1000 / hz.max(1)).clamp(1, u32::MAX as u64) as u32;
    forget_timer_setup();
    write(REG_TIMER_DIVIDE, 0x3);
    write(REG_LVT_TIMER, LVT_PERIODIC | TIMER_VECTOR as u32);
    write(REG_TIMER_INITIAL, initial);
}

/// Arms the APIC timer of CPU `cpu_index` (this one) to fire once within
/// `ns` nanoseconds. A timer armed there already that fires no later is
/// kept, as Xen's timer code reprograms only a changed deadline: under QEMU
/// a write of the initial count costs ~10 µs (it reschedules QEMU's own
/// timer and wakes its main loop), and most scheduling passes would only
/// push the deadline a little further. Writing the initial count starts a
/// one-shot count (SDM 11.5.4); the divide and LVT registers are written
/// only when this CPU's timer was last set up otherwise ([`TIMER_SETUP`]).
pub fn arm_oneshot_ns(cpu_index: usize, ns: u64) {
    let now = rdtsc();
    let due = now.saturating_add(ns.saturating_mul(tsc_per_ms()) / 1_000_000);
    let armed = ONESHOT_DUE.get(cpu_index);
    let armed_due = armed.map_or(0, |a| a.load(Ordering::Relaxed));
    if keeps_armed_timer(armed_due, now, due) {
        return;
    }
    let per_ms = APIC_TICKS_PER_MS.load(Ordering::Relaxed).max(1);
    let ticks = (ns.saturating_mul(per_ms) / 1_000_000).clamp(1, u32::MAX as u64) as u32;
    let lvt = TIMER_VECTOR as u32;
    let setup = TIMER_SETUP.get(cpu_index);
    let last = setup.map_or(0, |s| s.load(Ordering::Relaxed));
    if needs_timer_setup(last, lvt) {
        write(REG_TIMER_DIVIDE, 0x3);
        write(REG_LVT_TIMER, lvt);
        if let Some(setup) = setup {
            setup.store(lvt | TIMER_SETUP_KNOWN, Ordering::Relaxed);
        }
    }
    write(REG_TIMER_INITIAL, ticks);
    if let Some(armed) = armed {
        armed.store(due.max(1), Ordering::Relaxed);
    }
}

/// Whether a one-shot timer armed to fire at TSC `armed_due` (0: none
/// armed) still serves a deadline at `due`, the TSC being `now`: it has not
/// fired, and fires no later (earlier only costs a scheduling pass).
fn keeps_armed_timer(armed_due: u64, now: u64, due: u64) -> bool {
    armed_due != 0 && armed_due > now && armed_due <= due
}

/// The timer interrupt came on this CPU: its one-shot timer is no longer
/// armed (it may fire before the TSC reaches what [`arm_oneshot_ns`]
/// computed, the two clocks being calibrated against each other).
pub fn timer_fired() {
    if let Some(armed) = ONESHOT_DUE.get(crate::cpu::current_index()) {
        armed.store(0, Ordering::Relaxed);
    }
}

/// Whether CPU `cpu_index`'s one-shot timer is armed and has not fired (a
/// CPU whose timer fired, maybe early, while it served an exit must not go
/// back into its guest without a scheduling pass that arms it again).
pub fn oneshot_armed(cpu_index: usize) -> bool {
    ONESHOT_DUE
        .get(cpu_index)
        .is_some_and(|armed| armed.load(Ordering::Relaxed) != 0)
}

/// Whether the divide and LVT registers must be written before arming
/// with `lvt`, `last` being what [`TIMER_SETUP`] says of this CPU.
fn needs_timer_setup(last: u32, lvt: u32) -> bool {
    last != lvt | TIMER_SETUP_KNOWN
}

/// Forgets what every CPU's timer was set up as (a CPU that wrote its
/// timer LVT otherwise): the next [`arm_oneshot_ns`] writes it in full.
/// Clearing the other CPUs' too only costs them one full write.
fn forget_timer_setup() {
    for setup in &TIMER_SETUP {
        setup.store(0, Ordering::Relaxed);
    }
    for armed in &ONESHOT_DUE {
        armed.store(0, Ordering::Relaxed);
    }
}

/// Stops the APIC timer.
pub fn stop_timer() {
    forget_timer_setup();
    write(REG_LVT_TIMER, LVT_MASKED | TIMER_VECTOR as u32);
    write(REG_TIMER_INITIAL, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timer_is_set_up_only_when_this_cpu_did_not_set_it_up_so() {
        let oneshot = TIMER_VECTOR as u32;
        // Unknown (boot, or forgotten after a stop, periodic mode, init).
        assert!(needs_timer_setup(0, oneshot));
        // Set up for one-shot: only the initial count is written.
        assert!(!needs_timer_setup(oneshot | TIMER_SETUP_KNOWN, oneshot));
        // Set up otherwise (masked, periodic): written in full.
        let masked = LVT_MASKED | oneshot;
        assert!(needs_timer_setup(masked | TIMER_SETUP_KNOWN, oneshot));
        assert!(needs_timer_setup(
            LVT_PERIODIC | oneshot | TIMER_SETUP_KNOWN,
            oneshot
        ));
        // The tag matters: an untagged value equal to the LVT is unknown.
        assert!(needs_timer_setup(oneshot, oneshot));
    }

    #[test]
    fn an_armed_timer_is_kept_only_while_it_fires_in_time() {
        // None armed: write.
        assert!(!keeps_armed_timer(0, 100, 500));
        // Armed for 400, now 100: serves a deadline at 500 or at 400.
        assert!(keeps_armed_timer(400, 100, 500));
        assert!(keeps_armed_timer(400, 100, 400));
        // A deadline before it: write (it would fire late).
        assert!(!keeps_armed_timer(400, 100, 399));
        // Its time has come: it fired or is about to; write.
        assert!(!keeps_armed_timer(400, 400, 500));
        assert!(!keeps_armed_timer(400, 401, 900));
    }
}
