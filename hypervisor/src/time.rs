//! The hypervisor's clock: system time in nanoseconds since boot from the
//! calibrated TSC, and the wall clock read from the CMOS RTC at boot.

use core::sync::atomic::{AtomicU64, Ordering};

use rxen_core::time::{unix_seconds, TimeScale};
use rxen_x86::apic;
use spin::Once;

static BOOT_TSC: AtomicU64 = AtomicU64::new(0);
static SCALE: Once<TimeScale> = Once::new();
static WALLCLOCK_AT_BOOT: AtomicU64 = AtomicU64::new(0);

/// Starts the clock (after TSC calibration) and reads the RTC.
pub fn init() {
    BOOT_TSC.store(apic::rdtsc(), Ordering::Relaxed);
    SCALE.call_once(|| TimeScale::from_hz(apic::tsc_per_ms().max(1) * 1000));
    let rtc = rxen_x86::rtc::read();
    let seconds = unix_seconds(
        rtc.year, rtc.month, rtc.day, rtc.hour, rtc.minute, rtc.second,
    );
    WALLCLOCK_AT_BOOT.store(seconds, Ordering::Relaxed);
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

/// Unix time (seconds) at system time 0.
pub fn wallclock_at_boot() -> u64 {
    WALLCLOCK_AT_BOOT.load(Ordering::Relaxed)
}
