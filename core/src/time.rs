//! Guest time: the pvclock scale (TSC ticks to nanoseconds, as Xen's
//! `set_time_scale` computes it), system time, and per-vCPU runstate
//! accounting (the per-domain virtual time of the seed documents: a vCPU's
//! running time grows only while it runs).

/// Nanoseconds per second.
pub const NSEC_PER_SEC: u64 = 1_000_000_000;

/// `tsc_to_system_mul` and `tsc_shift` of `vcpu_time_info`: nanoseconds =
/// ((ticks shifted by `shift`) * `mul_frac`) >> 32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeScale {
    /// 32.32 fixed-point multiplier.
    pub mul_frac: u32,
    /// Shift applied to the tick delta first (left if positive).
    pub shift: i8,
}

impl TimeScale {
    /// The scale for a counter running at `ticks_per_sec` (must be > 0),
    /// computed like Xen's `set_time_scale`.
    pub fn from_hz(ticks_per_sec: u64) -> Self {
        let mut tps64 = ticks_per_sec.max(1);
        let mut shift: i8 = 0;
        while tps64 > NSEC_PER_SEC * 2 {
            tps64 >>= 1;
            shift -= 1;
        }
        let mut tps32 = tps64 as u32;
        while tps32 as u64 <= NSEC_PER_SEC {
            tps32 <<= 1;
            shift += 1;
        }
        let mul_frac = ((NSEC_PER_SEC << 32) / tps32 as u64) as u32;
        Self { mul_frac, shift }
    }

    /// Converts a tick delta to nanoseconds, as a guest does.
    pub fn scale(&self, ticks: u64) -> u64 {
        let shifted = if self.shift >= 0 {
            ticks << self.shift
        } else {
            ticks >> (-self.shift)
        };
        ((shifted as u128 * self.mul_frac as u128) >> 32) as u64
    }
}

/// The four runstates of `vcpu.h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum RunstateKind {
    /// Running on a physical CPU.
    Running = 0,
    /// Ready but not running.
    Runnable = 1,
    /// Waiting for an event or a timer.
    Blocked = 2,
    /// Not up, or down.
    Offline = 3,
}

/// A vCPU's runstate and the time spent in each state (ns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Runstate {
    /// Current state.
    pub state: RunstateKind,
    /// System time when the current state began.
    pub entry_time: u64,
    /// Time spent in each state, up to `entry_time`.
    pub time: [u64; 4],
}

impl Runstate {
    /// A vCPU entering `state` at system time `now`.
    pub fn new(state: RunstateKind, now: u64) -> Self {
        Self {
            state,
            entry_time: now,
            time: [0; 4],
        }
    }

    /// Moves to `state` at `now`, charging the time since the last change
    /// to the old state. Time never runs backwards here.
    pub fn change(&mut self, state: RunstateKind, now: u64) {
        let now = now.max(self.entry_time);
        self.time[self.state as usize] += now - self.entry_time;
        self.state = state;
        self.entry_time = now;
    }

    /// The times including the current state's share up to `now`.
    pub fn times_at(&self, now: u64) -> [u64; 4] {
        let mut times = self.time;
        times[self.state as usize] += now.saturating_sub(self.entry_time);
        times
    }
}

/// Converts a broken-down UTC date to seconds since the Unix epoch.
pub fn unix_seconds(year: u32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> u64 {
    // Days from 1970-01-01 to the civil date (proleptic Gregorian).
    let (y, m) = if month <= 2 {
        (year as i64 - 1, month as i64 + 9)
    } else {
        (year as i64, month as i64 - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days.max(0) as u64) * 86_400 + hour as u64 * 3600 + minute as u64 * 60 + second as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_matches_frequency() {
        for hz in [
            1_000_000u64,
            999_999_999,
            1_000_000_000,
            2_460_488_000,
            3_000_000_000,
            5_000_000_000,
        ] {
            let scale = TimeScale::from_hz(hz);
            let ns = scale.scale(hz); // one second of ticks
            assert!(
                ns.abs_diff(NSEC_PER_SEC) <= 2,
                "{hz} Hz: one second scaled to {ns} ns"
            );
            assert!((-32..32).contains(&scale.shift));
        }
    }

    #[test]
    fn scale_of_a_2ghz_clock_halves() {
        let scale = TimeScale::from_hz(2_000_000_000);
        assert_eq!(scale.scale(2_000), 1_000);
    }

    #[test]
    fn runstate_times_add_up() {
        let mut rs = Runstate::new(RunstateKind::Offline, 100);
        rs.change(RunstateKind::Running, 150);
        rs.change(RunstateKind::Blocked, 400);
        rs.change(RunstateKind::Running, 1_000);
        let times = rs.times_at(1_500);
        assert_eq!(times, [250 + 500, 0, 600, 50]);
        assert_eq!(times.iter().sum::<u64>(), 1_500 - 100);
        // A clock going backwards is ignored, not wrapped.
        rs.change(RunstateKind::Blocked, 10);
        assert_eq!(rs.times_at(1_000).iter().sum::<u64>(), 900);
    }

    #[test]
    fn unix_time_of_known_dates() {
        assert_eq!(unix_seconds(1970, 1, 1, 0, 0, 0), 0);
        assert_eq!(unix_seconds(2000, 3, 1, 0, 0, 0), 951_868_800);
        assert_eq!(unix_seconds(2026, 11, 25, 4, 30, 0), 1_795_581_000);
    }
}
