//! The hypervisor's clock: system time in nanoseconds since boot from the
//! calibrated TSC, and the wall clock read from the CMOS RTC at boot (which
//! the control domain may set).

use core::sync::atomic::{AtomicU64, Ordering};

use rxen_core::time::{unix_seconds, TimeScale};
use rxen_x86::apic;
use spin::Once;

static BOOT_TSC: AtomicU64 = AtomicU64::new(0);
static SCALE: Once<TimeScale> = Once::new();
/// Unix time at system time 0, in nanoseconds (fits until the year 2554):
/// read from the RTC at boot, set by the control domain (XENPF_settime).
static WALLCLOCK_BASE_NS: AtomicU64 = AtomicU64::new(0);

/// Starts the clock (after TSC calibration) and reads the RTC.
pub fn init() {
    BOOT_TSC.store(apic::rdtsc(), Ordering::Relaxed);
    SCALE.call_once(|| TimeScale::from_hz(apic::tsc_per_ms().max(1) * 1000));
    let rtc = rxen_x86::rtc::read();
    let seconds = unix_seconds(
        rtc.year, rtc.month, rtc.day, rtc.hour, rtc.minute, rtc.second,
    );
    set_wallclock_base(seconds, 0);
}

/// The TSC-to-ns scale.
pub fn scale() -> TimeScale {
    *SCALE.get().unwrap_or(&TimeScale {
        mul_frac: u32::MAX,
        shift: 0,
    })
}

/// System time for TSC value `tsc`.
pub fn system_time_at(tsc: u64) -> u64 {
    scale().scale(tsc.saturating_sub(BOOT_TSC.load(Ordering::Relaxed)))
}

/// Nanoseconds since boot.
pub fn now_ns() -> u64 {
    system_time_at(apic::rdtsc())
}

/// Unix time (seconds, nanoseconds) at system time 0.
pub fn wallclock_base() -> (u64, u32) {
    let ns = WALLCLOCK_BASE_NS.load(Ordering::Relaxed);
    // The remainder is below 10^9.
    (ns / 1_000_000_000, (ns % 1_000_000_000) as u32)
}

/// Sets the Unix time at system time 0; a time beyond what 64 bits of
/// nanoseconds hold (the year 2554) is kept at that limit.
pub fn set_wallclock_base(sec: u64, nsec: u32) {
    let ns = sec
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(nsec));
    WALLCLOCK_BASE_NS.store(ns, Ordering::Relaxed);
}
