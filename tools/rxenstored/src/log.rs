//! Logging to stderr (or a file given by the CLI): levels, and a per-domain rate limit
//! so that a noisy guest cannot flood the log ("which domain did what").

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Severity, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// Errors.
    Error = 1,
    /// Warnings (misbehaving clients).
    Warn = 2,
    /// Connections, domains, live update.
    Info = 3,
    /// Every request.
    Debug = 4,
}

impl Level {
    /// Parses `error`, `warn`, `info` or `debug`.
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "error" => Level::Error,
            "warn" => Level::Warn,
            "info" => Level::Info,
            "debug" => Level::Debug,
            _ => return None,
        })
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Warn as u8);

/// Messages a domain may log per second before being rate-limited.
pub const PER_DOMAIN_PER_SEC: u32 = 20;

struct Bucket {
    window: Instant,
    count: u32,
    dropped: u64,
}

static BUCKETS: Mutex<Option<HashMap<u32, Bucket>>> = Mutex::new(None);
static SINK: Mutex<Option<std::fs::File>> = Mutex::new(None);

/// Sets the maximum level logged.
pub fn set_level(l: Level) {
    LEVEL.store(l as u8, Ordering::Relaxed);
}

/// Sends log lines to a file instead of stderr.
pub fn set_file(f: std::fs::File) {
    if let Ok(mut s) = SINK.lock() {
        *s = Some(f);
    }
}

/// Whether `l` would be logged.
pub fn enabled(l: Level) -> bool {
    l as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Logs one line attributed to `domid`, subject to the per-domain rate limit.
pub fn log(l: Level, domid: Option<u32>, msg: std::fmt::Arguments<'_>) {
    if !enabled(l) {
        return;
    }
    let mut note = String::new();
    if let Some(d) = domid {
        let Ok(mut g) = BUCKETS.lock() else { return };
        let b = g
            .get_or_insert_with(HashMap::new)
            .entry(d)
            .or_insert(Bucket {
                window: Instant::now(),
                count: 0,
                dropped: 0,
            });
        if b.window.elapsed().as_secs() >= 1 {
            if b.dropped > 0 {
                note = format!(" ({} earlier messages from dom{d} suppressed)", b.dropped);
            }
            b.window = Instant::now();
            b.count = 0;
            b.dropped = 0;
        }
        b.count += 1;
        if b.count > PER_DOMAIN_PER_SEC {
            b.dropped += 1;
            return;
        }
    }
    let who = domid.map(|d| format!("dom{d}: ")).unwrap_or_default();
    let line = format!("rxenstored [{l:?}] {who}{msg}{note}\n");
    if let Ok(mut s) = SINK.lock() {
        if let Some(f) = s.as_mut() {
            let _ = f.write_all(line.as_bytes());
            return;
        }
    }
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// `xlog!(Level::Info, Some(domid), "fmt", args...)`.
#[macro_export]
macro_rules! xlog {
    ($lvl:expr, $dom:expr, $($arg:tt)*) => {
        if $crate::log::enabled($lvl) {
            $crate::log::log($lvl, $dom, format_args!($($arg)*));
        }
    };
}
