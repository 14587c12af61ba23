//! The hypervisor console: serial output with Xen-style log levels and the
//! `(rxen)` prefix, safe to use from every CPU and from fault handlers.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use rxen_core::log::{LogLevel, LogThresholds};
use spin::Mutex;

use crate::serial::{Serial, SerialSettings};

/// Prefix of every hypervisor console line (Xen prints `(XEN)`).
pub const PREFIX: &str = "(rxen) ";

static SERIAL: Mutex<Option<Serial>> = Mutex::new(None);
/// Whether serial output is on (`console=` lists `com1`).
static SERIAL_ENABLED: AtomicBool = AtomicBool::new(true);
/// Threshold: messages at or below this level are printed.
static THRESHOLD: AtomicU8 = AtomicU8::new(LogLevel::Warning as u8);

/// Programs the UART; before this call output is dropped.
pub fn init_serial(settings: &SerialSettings) {
    let serial = Serial::init(settings);
    *SERIAL.lock() = Some(serial);
}

/// A byte typed on the serial console, if one is waiting.
pub fn try_read_byte() -> Option<u8> {
    SERIAL.lock().as_ref()?.try_get_byte()
}

/// Turns serial output on or off (`console=none`).
pub fn set_serial_enabled(on: bool) {
    SERIAL_ENABLED.store(on, Ordering::Relaxed);
}

/// Applies `loglvl=`.
pub fn set_thresholds(thresholds: &LogThresholds) {
    THRESHOLD.store(thresholds.lower as u8, Ordering::Relaxed);
}

/// Whether a message of `level` is printed.
pub fn enabled(level: LogLevel) -> bool {
    level as u8 <= THRESHOLD.load(Ordering::Relaxed)
}

struct LineWriter<'a> {
    serial: &'a Serial,
    at_line_start: bool,
}

impl Write for LineWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if self.at_line_start {
                PREFIX.bytes().for_each(|b| self.serial.put_byte(b));
                self.at_line_start = false;
            }
            if byte == b'\n' {
                self.serial.put_byte(b'\r');
                self.at_line_start = true;
            }
            self.serial.put_byte(byte);
        }
        Ok(())
    }
}

fn emit(serial: &Serial, args: fmt::Arguments) {
    let mut writer = LineWriter {
        serial,
        at_line_start: true,
    };
    let _ = writer.write_fmt(args);
    if !writer.at_line_start {
        let _ = writer.write_str("\n");
    }
}

/// Prints one message (one or more lines, each prefixed) at `level`.
pub fn print(level: LogLevel, args: fmt::Arguments) {
    if !enabled(level) || !SERIAL_ENABLED.load(Ordering::Relaxed) {
        return;
    }
    x86_64::instructions::interrupts::without_interrupts(|| {
        let guard = SERIAL.lock();
        if let Some(serial) = guard.as_ref() {
            emit(serial, args);
        }
    });
}

/// Prints from a fault or panic path: never waits forever for the lock,
/// because the faulting code may hold it.
pub fn print_emergency(args: fmt::Arguments) {
    for _ in 0..1_000_000 {
        if let Some(guard) = SERIAL.try_lock() {
            if let Some(serial) = guard.as_ref() {
                emit(serial, args);
            }
            return;
        }
        core::hint::spin_loop();
    }
    // SAFETY: the holder did not release the lock within the bound; it is
    // stuck (most likely this CPU faulted while printing). Taking over the
    // UART can at worst interleave bytes with a stuck writer.
    unsafe { SERIAL.force_unlock() };
    if let Some(serial) = SERIAL.lock().as_ref() {
        emit(serial, args);
    }
}

/// Prints at the default level, like Xen's `printk` without a level.
#[macro_export]
macro_rules! printk {
    ($($arg:tt)*) => {
        $crate::console::print(rxen_core::log::LogLevel::Warning, format_args!($($arg)*))
    };
}

/// Prints at an explicit level: `log!(Info, "...")`.
#[macro_export]
macro_rules! log {
    ($level:ident, $($arg:tt)*) => {
        $crate::console::print(rxen_core::log::LogLevel::$level, format_args!($($arg)*))
    };
}
