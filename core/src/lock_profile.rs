//! The machine lock's profile (Xen's lock profiling, `CONFIG_DEBUG_LOCK_PROFILE`
//! and its `l` / `L` debug keys): how often the lock was taken, how often a
//! CPU had to wait and for how long, and how many exits were served beside
//! the other CPUs instead (with the machine held shared). The platform keeps
//! the counters per CPU; this sums and prints them.

use alloc::format;
use alloc::string::String;

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
    /// Exits served with the machine held shared (local exits).
    pub shared: u64,
    /// Of those, times the domain's exit lock was busy (another vCPU of the
    /// domain was served) and the CPU waited.
    pub domain_waits: u64,
    /// Time spent waiting for domains' exit locks (ns).
    pub domain_waited_ns: u64,
}

impl LockProfile {
    /// The sum of `self` and `other` (saturating).
    pub fn plus(self, other: LockProfile) -> LockProfile {
        LockProfile {
            holds: self.holds.saturating_add(other.holds),
            waits: self.waits.saturating_add(other.waits),
            waited_ns: self.waited_ns.saturating_add(other.waited_ns),
            longest_ns: self.longest_ns.max(other.longest_ns),
            shared: self.shared.saturating_add(other.shared),
            domain_waits: self.domain_waits.saturating_add(other.domain_waits),
            domain_waited_ns: self.domain_waited_ns.saturating_add(other.domain_waited_ns),
        }
    }

    /// The lines the `l` key prints: the machine lock's holds, waits and
    /// mean wait, and the exits served beside other CPUs.
    pub fn lines(&self) -> [String; 2] {
        let mean = |ns: u64, n: u64| ns.checked_div(n).unwrap_or(0);
        [
            format!(
                "machine lock: {} exclusive holds, {} waited ({:.1} %), {} us in all, {} ns per wait, longest {} us",
                self.holds,
                self.waits,
                percent(self.waits, self.holds),
                self.waited_ns / 1000,
                mean(self.waited_ns, self.waits),
                self.longest_ns / 1000
            ),
            format!(
                "machine lock: {} exits served shared (local), {} waited for their domain's exit lock, {} us in all",
                self.shared,
                self.domain_waits,
                self.domain_waited_ns / 1000
            ),
        ]
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
    fn sums_and_prints() {
        let a = LockProfile {
            holds: 10,
            waits: 2,
            waited_ns: 3_000,
            longest_ns: 2_000,
            shared: 100,
            domain_waits: 1,
            domain_waited_ns: 500,
        };
        let sum = a.plus(a);
        assert_eq!(sum.holds, 20);
        assert_eq!(sum.waited_ns, 6_000);
        let [first, second] = sum.lines();
        assert_eq!(
            first,
            "machine lock: 20 exclusive holds, 4 waited (20.0 %), 6 us in all, 1500 ns per wait, longest 2 us"
        );
        assert_eq!(
            second,
            "machine lock: 200 exits served shared (local), 2 waited for their domain's exit lock, 1 us in all"
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
