//! The machine lock's profile (Xen's lock profiling, `CONFIG_DEBUG_LOCK_PROFILE`
//! and its `l` / `L` debug keys): how often the lock was taken, how often a
//! CPU had to wait and for how long, and how many exits were served beside
//! the other CPUs instead (with the machine held shared). The platform keeps
//! one [`LockCounters`] per CPU; [`LockProfile`] sums and prints them.

use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering};

/// One CPU's counts, or their sum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockProfile {
    /// Times the machine was taken exclusively.
    pub holds: u64,
    /// Of those, times it was busy and the CPU waited.
    pub waits: u64,
    /// Time spent waiting (ns).
    pub waited_ns: u64,
    /// The longest wait (ns).
    pub longest_ns: u64,
    /// Time the machine was held exclusively (ns).
    pub held_ns: u64,
    /// Exits served with the machine held shared (local exits).
    pub shared: u64,
    /// Of those, times the domain's exit lock was busy (another vCPU of the
    /// domain was served) and the CPU waited.
    pub domain_waits: u64,
    /// Time spent waiting for domains' exit locks (ns).
    pub domain_waited_ns: u64,
    /// Of the exits served shared, event sends that reached another domain
    /// (under its exit lock; the platform counts them beside [`LockCounters`],
    /// whose counters stay one cache line).
    pub peer_sends: u64,
    /// Event sends that found their peer's exit lock taken and were served
    /// with the machine held exclusively instead.
    pub peer_busy: u64,
}

impl LockProfile {
    /// The sum of `self` and `other` (saturating).
    pub fn plus(self, other: LockProfile) -> LockProfile {
        LockProfile {
            holds: self.holds.saturating_add(other.holds),
            waits: self.waits.saturating_add(other.waits),
            waited_ns: self.waited_ns.saturating_add(other.waited_ns),
            longest_ns: self.longest_ns.max(other.longest_ns),
            held_ns: self.held_ns.saturating_add(other.held_ns),
            shared: self.shared.saturating_add(other.shared),
            domain_waits: self.domain_waits.saturating_add(other.domain_waits),
            domain_waited_ns: self.domain_waited_ns.saturating_add(other.domain_waited_ns),
            peer_sends: self.peer_sends.saturating_add(other.peer_sends),
            peer_busy: self.peer_busy.saturating_add(other.peer_busy),
        }
    }

    /// The lines the `l` key prints: the machine lock's holds, time held,
    /// waits and mean wait, and the exits served beside other CPUs.
    pub fn lines(&self) -> [String; 2] {
        let mean = |ns: u64, n: u64| ns.checked_div(n).unwrap_or(0);
        [
            format!(
                "machine lock: {} exclusive holds ({} ns each), {} waited ({:.1} %), {} us in all, {} ns per wait, longest {} us",
                self.holds,
                mean(self.held_ns, self.holds),
                self.waits,
                percent(self.waits, self.holds),
                self.waited_ns / 1000,
                mean(self.waited_ns, self.waits),
                self.longest_ns / 1000
            ),
            format!(
                "machine lock: {} exits served shared ({} of them event sends to another domain), {} waited for their domain's exit lock, {} us in all; {} sends found the peer taken and were served exclusively",
                self.shared,
                self.peer_sends,
                self.domain_waits,
                self.domain_waited_ns / 1000,
                self.peer_busy
            ),
        ]
    }
}

/// One CPU's counts as it takes the locks (relaxed atomics: they are only
/// read for the profile).
#[derive(Debug, Default)]
pub struct LockCounters {
    holds: AtomicU64,
    waits: AtomicU64,
    waited_ns: AtomicU64,
    longest_ns: AtomicU64,
    held_ns: AtomicU64,
    shared: AtomicU64,
    domain_waits: AtomicU64,
    domain_waited_ns: AtomicU64,
}

impl LockCounters {
    /// All zero.
    pub const fn new() -> Self {
        Self {
            holds: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            waited_ns: AtomicU64::new(0),
            longest_ns: AtomicU64::new(0),
            held_ns: AtomicU64::new(0),
            shared: AtomicU64::new(0),
            domain_waits: AtomicU64::new(0),
            domain_waited_ns: AtomicU64::new(0),
        }
    }

    /// The machine was taken exclusively, after waiting `waited` ns if it
    /// was busy.
    pub fn held(&self, waited: Option<u64>) {
        self.holds.fetch_add(1, Ordering::Relaxed);
        if let Some(ns) = waited {
            self.waits.fetch_add(1, Ordering::Relaxed);
            self.waited_ns.fetch_add(ns, Ordering::Relaxed);
            self.longest_ns.fetch_max(ns, Ordering::Relaxed);
        }
    }

    /// The machine, taken exclusively, was let go after `ns` ns.
    pub fn released(&self, ns: u64) {
        self.held_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// An exit was served with the machine shared, after waiting `waited` ns
    /// for its domain's exit lock if another CPU held it.
    pub fn served_shared(&self, waited: Option<u64>) {
        self.shared.fetch_add(1, Ordering::Relaxed);
        if let Some(ns) = waited {
            self.domain_waits.fetch_add(1, Ordering::Relaxed);
            self.domain_waited_ns.fetch_add(ns, Ordering::Relaxed);
        }
    }

    /// The counts so far, zeroing them with `reset`.
    pub fn take(&self, reset: bool) -> LockProfile {
        let read = |c: &AtomicU64| {
            if reset {
                c.swap(0, Ordering::Relaxed)
            } else {
                c.load(Ordering::Relaxed)
            }
        };
        LockProfile {
            holds: read(&self.holds),
            waits: read(&self.waits),
            waited_ns: read(&self.waited_ns),
            longest_ns: read(&self.longest_ns),
            held_ns: read(&self.held_ns),
            shared: read(&self.shared),
            domain_waits: read(&self.domain_waits),
            domain_waited_ns: read(&self.domain_waited_ns),
            peer_sends: 0,
            peer_busy: 0,
        }
    }
}

/// `part` of `whole` in percent (0 for an empty whole).
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_count_holds_waits_and_reset() {
        let c = LockCounters::new();
        c.held(None);
        c.held(Some(300));
        c.held(Some(100));
        c.released(700);
        c.released(200);
        c.served_shared(None);
        c.served_shared(Some(50));
        let p = c.take(false);
        assert_eq!(
            (p.holds, p.waits, p.waited_ns, p.longest_ns),
            (3, 2, 400, 300)
        );
        assert_eq!(p.held_ns, 900);
        assert_eq!((p.shared, p.domain_waits, p.domain_waited_ns), (2, 1, 50));
        assert_eq!((p.peer_sends, p.peer_busy), (0, 0), "not counted here");
        assert_eq!(c.take(true), p, "reading does not reset");
        assert_eq!(c.take(false), LockProfile::default(), "reset zeroes");
    }

    #[test]
    fn sums_and_prints() {
        let a = LockProfile {
            holds: 10,
            waits: 2,
            waited_ns: 3_000,
            longest_ns: 2_000,
            held_ns: 40_000,
            shared: 100,
            domain_waits: 1,
            domain_waited_ns: 500,
            peer_sends: 30,
            peer_busy: 2,
        };
        let sum = a.plus(a);
        assert_eq!(sum.holds, 20);
        assert_eq!(sum.waited_ns, 6_000);
        let [first, second] = sum.lines();
        assert_eq!(
            first,
            "machine lock: 20 exclusive holds (4000 ns each), 4 waited (20.0 %), 6 us in all, 1500 ns per wait, longest 2 us"
        );
        assert_eq!(
            second,
            "machine lock: 200 exits served shared (60 of them event sends to another domain), 2 waited for their domain's exit lock, 1 us in all; 4 sends found the peer taken and were served exclusively"
        );
        // Nothing counted: no division by zero.
        assert!(LockProfile::default().lines()[0].contains("0 waited (0.0 %)"));
        let max = LockProfile {
            holds: u64::MAX,
            ..a
        };
        assert_eq!(max.plus(max).holds, u64::MAX);
    }
}
