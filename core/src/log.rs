//! Log-level filtering, as Xen's `loglvl=` and `guest_loglvl=` options define it.
//!
//! This module owns the log levels, the parsing of Xen's level names and of
//! the `<lower>[/<upper>]` threshold syntax, and the decision whether one
//! message is printed, including the rate limit for messages a guest can
//! trigger at will. It does not print anything itself.

use core::fmt;

/// A log level, ordered from least to most verbose.
///
/// As a *threshold*, a level lets through every message whose level is less
/// than or equal to it: `None` lets nothing through, `All` everything. As a
/// *message* level only `Error`, `Warning`, `Info` and `Debug` are meaningful;
/// a message of level `None` is never printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Nothing (threshold only).
    None,
    /// Errors.
    Error,
    /// Warnings.
    Warning,
    /// Informational messages.
    Info,
    /// Debugging messages.
    Debug,
    /// Everything (threshold only).
    All,
}

impl LogLevel {
    /// Every level, least verbose first.
    pub const ALL_LEVELS: [LogLevel; 6] = [
        LogLevel::None,
        LogLevel::Error,
        LogLevel::Warning,
        LogLevel::Info,
        LogLevel::Debug,
        LogLevel::All,
    ];

    /// Parses one of Xen's level names (`none`, `error`, `warning`, `info`,
    /// `debug`, `all`), ignoring ASCII case. Returns `None` for anything else.
    pub fn parse(s: &str) -> Option<LogLevel> {
        LogLevel::ALL_LEVELS
            .iter()
            .copied()
            .find(|level| level.name().eq_ignore_ascii_case(s))
    }

    /// The level's name as Xen spells it on the command line.
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::None => "none",
            LogLevel::Error => "error",
            LogLevel::Warning => "warning",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::All => "all",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a pair of thresholds decides for one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Print the message unconditionally (level within the lower threshold).
    Always,
    /// Print the message only if the rate limiter allows it (level above the
    /// lower but within the upper threshold).
    RateLimited,
    /// Drop the message.
    Never,
}

/// Xen's pair of thresholds from `loglvl=<lower>[/<upper>]`.
///
/// Messages within `lower` are always printed; messages above `lower` but
/// within `upper` are printed subject to rate limiting; the rest are dropped.
/// Parsing keeps `upper >= lower`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogThresholds {
    /// Messages at or below this level are always printed.
    pub lower: LogLevel,
    /// Messages at or below this level (and above `lower`) are rate-limited.
    pub upper: LogLevel,
}

impl LogThresholds {
    /// Xen's default for the hypervisor's own messages (`loglvl=warning/warning`).
    pub const HYPERVISOR_DEFAULT: LogThresholds = LogThresholds {
        lower: LogLevel::Warning,
        upper: LogLevel::Warning,
    };

    /// Xen's default for guest-triggered messages (`guest_loglvl=none/warning`).
    pub const GUEST_DEFAULT: LogThresholds = LogThresholds {
        lower: LogLevel::None,
        upper: LogLevel::Warning,
    };

    /// Parses Xen's `<lower>[/<upper>]`.
    ///
    /// As in Xen, a single level sets both thresholds, and an upper threshold
    /// below the lower one is raised to it. Returns `None` when a level name
    /// is unknown or a part is missing.
    pub fn parse(s: &str) -> Option<LogThresholds> {
        let (lower, upper) = match s.split_once('/') {
            Some((lower, upper)) => (LogLevel::parse(lower)?, LogLevel::parse(upper)?),
            None => {
                let level = LogLevel::parse(s)?;
                (level, level)
            }
        };
        Some(LogThresholds {
            lower,
            upper: upper.max(lower),
        })
    }

    /// Classifies a message of `level`.
    pub fn classify(&self, level: LogLevel) -> Verdict {
        if level == LogLevel::None {
            Verdict::Never
        } else if level <= self.lower {
            Verdict::Always
        } else if level <= self.upper {
            Verdict::RateLimited
        } else {
            Verdict::Never
        }
    }

    /// Whether a message of `level` is printed, given whether the rate
    /// limiter currently has room (`rate_limit_ok`).
    pub fn should_print(&self, level: LogLevel, rate_limit_ok: bool) -> bool {
        match self.classify(level) {
            Verdict::Always => true,
            Verdict::RateLimited => rate_limit_ok,
            Verdict::Never => false,
        }
    }
}

impl Default for LogThresholds {
    /// The hypervisor default, [`LogThresholds::HYPERVISOR_DEFAULT`].
    fn default() -> Self {
        LogThresholds::HYPERVISOR_DEFAULT
    }
}

impl fmt::Display for LogThresholds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.lower, self.upper)
    }
}

/// A rate limit for a message a guest can trigger as often as it likes: the
/// first ten are printed, then only the 16th, 32nd, 64th, ... occurrence.
pub struct RateLimit(core::sync::atomic::AtomicU64);

impl RateLimit {
    /// A limit that has let nothing through yet.
    pub const fn new() -> Self {
        Self(core::sync::atomic::AtomicU64::new(0))
    }

    /// Counts one occurrence; returns whether to print it.
    pub fn allow(&self) -> bool {
        let count = self.0.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        count < 10 || count.is_power_of_two()
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn ordering() {
        assert!(LogLevel::None < LogLevel::Error);
        assert!(LogLevel::Error < LogLevel::Warning);
        assert!(LogLevel::Warning < LogLevel::Info);
        assert!(LogLevel::Info < LogLevel::Debug);
        assert!(LogLevel::Debug < LogLevel::All);
    }

    #[test]
    fn parse_names_round_trip() {
        for level in LogLevel::ALL_LEVELS {
            assert_eq!(LogLevel::parse(level.name()), Some(level));
            assert_eq!(LogLevel::parse(&level.to_string()), Some(level));
        }
        assert_eq!(LogLevel::parse("WARNING"), Some(LogLevel::Warning));
    }

    #[test]
    fn parse_bad_names() {
        for bad in [
            "", "warn", "err", "errors", " info", "info ", "debug/", "3", "ïnfo",
        ] {
            assert_eq!(LogLevel::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn thresholds_single_level_sets_both() {
        let t = LogThresholds::parse("info").unwrap();
        assert_eq!(t.lower, LogLevel::Info);
        assert_eq!(t.upper, LogLevel::Info);
    }

    #[test]
    fn thresholds_pair() {
        let t = LogThresholds::parse("error/debug").unwrap();
        assert_eq!(t.lower, LogLevel::Error);
        assert_eq!(t.upper, LogLevel::Debug);
        assert_eq!(t.to_string(), "error/debug");
    }

    #[test]
    fn thresholds_upper_raised_to_lower() {
        let t = LogThresholds::parse("debug/error").unwrap();
        assert_eq!(t.lower, LogLevel::Debug);
        assert_eq!(t.upper, LogLevel::Debug);
    }

    #[test]
    fn thresholds_bad() {
        for bad in [
            "",
            "/",
            "info/",
            "/info",
            "info/bogus",
            "info/debug/all",
            "bogus",
        ] {
            assert_eq!(LogThresholds::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn defaults_match_xen() {
        assert_eq!(LogThresholds::default(), LogThresholds::HYPERVISOR_DEFAULT);
        let h = LogThresholds::HYPERVISOR_DEFAULT;
        assert!(h.should_print(LogLevel::Error, false));
        assert!(h.should_print(LogLevel::Warning, false));
        assert!(!h.should_print(LogLevel::Info, true));
        let g = LogThresholds::GUEST_DEFAULT;
        assert!(!g.should_print(LogLevel::Error, false));
        assert!(g.should_print(LogLevel::Error, true));
        assert!(g.should_print(LogLevel::Warning, true));
        assert!(!g.should_print(LogLevel::Info, true));
    }

    #[test]
    fn classify_none_and_all() {
        let none = LogThresholds::parse("none").unwrap();
        let all = LogThresholds::parse("all").unwrap();
        for level in [
            LogLevel::Error,
            LogLevel::Warning,
            LogLevel::Info,
            LogLevel::Debug,
        ] {
            assert_eq!(none.classify(level), Verdict::Never);
            assert_eq!(all.classify(level), Verdict::Always);
        }
        assert_eq!(all.classify(LogLevel::None), Verdict::Never);
        assert_eq!(all.classify(LogLevel::All), Verdict::Always);
    }

    #[test]
    fn classify_rate_limited_band() {
        let t = LogThresholds::parse("warning/debug").unwrap();
        assert_eq!(t.classify(LogLevel::Error), Verdict::Always);
        assert_eq!(t.classify(LogLevel::Warning), Verdict::Always);
        assert_eq!(t.classify(LogLevel::Info), Verdict::RateLimited);
        assert_eq!(t.classify(LogLevel::Debug), Verdict::RateLimited);
        assert!(t.should_print(LogLevel::Info, true));
        assert!(!t.should_print(LogLevel::Info, false));
        assert_eq!(t.classify(LogLevel::All), Verdict::Never);
    }

    #[test]
    fn rate_limit_lets_the_first_ten_then_powers_of_two_through() {
        let limit = RateLimit::new();
        let allowed: Vec<u64> = (0..200).filter(|_| limit.allow()).collect();
        assert_eq!(allowed, vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 32, 64, 128]);
    }
}
