//! The hypervisor console: serial output with Xen-style log levels and the
//! `(rxen)` prefix, safe to use from every CPU and from fault handlers.
//!
//! Output never waits for the UART (Xen's `serial_tx_buffer`): messages go
//! into a transmit ring that the scheduling loop drains in bounded slices
//! while the UART has room (polled: rxen takes no host interrupts outside
//! its idle loop, so the transmitter-empty interrupt would wait for the
//! same points). Guest lines are queued whole or dropped and counted when
//! the ring is fuller than their share; the hypervisor's own messages are
//! never dropped. Fault, panic and stop paths send everything synchronously.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use rxen_core::console::{Source, TxRing};
use rxen_core::log::{LogLevel, LogThresholds};
use spin::Mutex;

use crate::serial::{Serial, SerialSettings};

/// Prefix of every hypervisor console line (Xen prints `(XEN)`).
pub const PREFIX: &str = "(rxen) ";

/// Most bytes moved from the ring to the UART per [`poll`] (and per
/// message printed): a bounded slice of work, never a wait for the UART.
const DRAIN_SLICE: usize = 1024;
/// Bytes the UART takes each time it says its transmitter is empty (the
/// 16550's FIFO).
const UART_FIFO: usize = 16;

/// The UART and, once [`set_tx_buffer`] ran, the transmit ring in front of
/// it. Without a ring (early boot) output is synchronous.
struct Console {
    serial: Option<Serial>,
    ring: Option<TxRing>,
}

static SERIAL: Mutex<Console> = Mutex::new(Console {
    serial: None,
    ring: None,
});
/// Whether serial output is on (`console=` lists `com1`).
static SERIAL_ENABLED: AtomicBool = AtomicBool::new(true);

/// The console history (`xl dmesg`): what was printed, without the CRs.
/// Taken inside `SERIAL` (never the other way round), interrupts off.
static CONRING: Mutex<rxen_core::conring::ConRing> = Mutex::new(rxen_core::conring::ConRing::new());

/// Whether guests' lines go into the console history too (`console_to_ring`).
static CONSOLE_TO_RING: AtomicBool = AtomicBool::new(false);

/// `console_to_ring`: keep guests' console output in the history too.
pub fn set_console_to_ring(on: bool) {
    CONSOLE_TO_RING.store(on, Ordering::Relaxed);
}

/// Keeps `bytes` in the console history (CRs left out).
fn remember(bytes: &[u8]) {
    let mut ring = CONRING.lock();
    for piece in bytes.split(|&b| b == b'\r') {
        ring.put(piece);
    }
}

/// Runs `f` on the console history (`XEN_SYSCTL_readconsole`).
pub fn with_conring(f: &mut dyn FnMut(&mut rxen_core::conring::ConRing)) {
    x86_64::instructions::interrupts::without_interrupts(|| f(&mut CONRING.lock()));
}
/// Threshold: messages at or below this level are printed.
static THRESHOLD: AtomicU8 = AtomicU8::new(LogLevel::Warning as u8);
/// Whether guest console lines are subject to their domain's budget
/// (`guest_loglvl=` below `debug`).
static GUEST_LIMITED: AtomicBool = AtomicBool::new(true);

/// Programs the UART; before this call output is dropped.
pub fn init_serial(settings: &SerialSettings) {
    let serial = Serial::init(settings);
    SERIAL.lock().serial = Some(serial);
}

/// Puts a transmit ring of `size` bytes (`serial_tx_buffer=`, rounded as
/// Xen rounds it) between writers and the UART. Needs the heap.
pub fn set_tx_buffer(size: usize) {
    let ring = TxRing::new(size);
    x86_64::instructions::interrupts::without_interrupts(|| {
        let mut console = SERIAL.lock();
        console.drain_all();
        console.ring = Some(ring);
    });
}

/// A byte typed on the serial console, if one is waiting.
pub fn try_read_byte() -> Option<u8> {
    SERIAL.lock().serial.as_ref()?.try_get_byte()
}

/// Turns serial output on or off (`console=none`).
pub fn set_serial_enabled(on: bool) {
    SERIAL_ENABLED.store(on, Ordering::Relaxed);
}

/// Applies `loglvl=`.
pub fn set_thresholds(thresholds: &LogThresholds) {
    THRESHOLD.store(thresholds.lower as u8, Ordering::Relaxed);
}

/// Applies `guest_loglvl=`: guest console lines are always printed (within
/// the ring's room) when its lower threshold lets debug messages through,
/// otherwise within their domain's output budget.
pub fn set_guest_thresholds(thresholds: &LogThresholds) {
    GUEST_LIMITED.store(thresholds.lower < LogLevel::Debug, Ordering::Relaxed);
}

/// Whether guest console lines are subject to their domain's budget.
pub fn guest_output_limited() -> bool {
    GUEST_LIMITED.load(Ordering::Relaxed)
}

/// Whether a message of `level` is printed.
pub fn enabled(level: LogLevel) -> bool {
    level as u8 <= THRESHOLD.load(Ordering::Relaxed)
}

impl Console {
    /// Moves queued bytes to the UART while it has room, at most
    /// [`DRAIN_SLICE`] of them; never waits.
    fn drain_some(&mut self) {
        let (Some(serial), Some(ring)) = (self.serial.as_ref(), self.ring.as_mut()) else {
            return;
        };
        let mut moved = 0;
        while moved < DRAIN_SLICE && !ring.is_empty() && serial.tx_empty() {
            for byte in core::iter::from_fn(|| ring.pop()).take(UART_FIFO) {
                serial.put_byte_now(byte);
                moved += 1;
            }
        }
    }

    /// Sends everything queued, waiting for the UART (bounded per byte).
    fn drain_all(&mut self) {
        let (Some(serial), Some(ring)) = (self.serial.as_ref(), self.ring.as_mut()) else {
            return;
        };
        while let Some(byte) = ring.pop() {
            serial.put_byte(byte);
        }
    }

    /// One byte of a hypervisor message: into the ring, making room by
    /// waiting for the UART if it is full; straight out without a ring.
    fn put_hypervisor(&mut self, byte: u8) {
        self.put_byte(byte, true);
    }

    /// Queues `byte` (kept in the history if `keep`).
    fn put_byte(&mut self, byte: u8, keep: bool) {
        if keep && byte != b'\r' {
            remember(&[byte]);
        }
        let Some(serial) = self.serial.as_ref() else {
            return;
        };
        let Some(ring) = self.ring.as_mut() else {
            serial.put_byte(byte);
            return;
        };
        if !ring.push(Source::Hypervisor, &[byte]) {
            // Full: the oldest byte goes out now to make room.
            if let Some(old) = ring.pop() {
                serial.put_byte(old);
            }
            ring.push(Source::Hypervisor, &[byte]);
        }
    }
}

struct LineWriter<'a> {
    console: &'a mut Console,
    at_line_start: bool,
}

impl Write for LineWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if self.at_line_start {
                PREFIX.bytes().for_each(|b| self.console.put_hypervisor(b));
                self.at_line_start = false;
            }
            if byte == b'\n' {
                self.console.put_hypervisor(b'\r');
                self.at_line_start = true;
            }
            self.console.put_hypervisor(byte);
        }
        Ok(())
    }
}

fn emit(console: &mut Console, args: fmt::Arguments) {
    let mut writer = LineWriter {
        console,
        at_line_start: true,
    };
    let _ = writer.write_fmt(args);
    if !writer.at_line_start {
        let _ = writer.write_str("\n");
    }
}

/// Prints one message (one or more lines, each prefixed) at `level`: into
/// the transmit ring, then as much of the ring as the UART takes now.
pub fn print(level: LogLevel, args: fmt::Arguments) {
    if !enabled(level) || !SERIAL_ENABLED.load(Ordering::Relaxed) {
        return;
    }
    x86_64::instructions::interrupts::without_interrupts(|| {
        let mut console = SERIAL.lock();
        emit(&mut console, args);
        console.drain_some();
    });
}

/// Longest guest line queued whole (longer ones are cut).
const GUEST_LINE_MAX: usize = 256;

/// Queues one line of domain `domid`'s console output, `(rxen) (dN) line`,
/// as guest output: whole or not at all (then counted as dropped). A count
/// of the domain's characters dropped before it (`dropped`), and of guest
/// characters the full ring dropped, is printed first. Returns whether the
/// line was queued.
pub fn print_guest_line(domid: u16, line: &str, dropped: u64) -> bool {
    if !SERIAL_ENABLED.load(Ordering::Relaxed) {
        return true;
    }
    let mut text = Buf::new();
    let _ = write!(text, "{PREFIX}(d{domid}) {line}");
    text.end_line();
    x86_64::instructions::interrupts::without_interrupts(|| {
        let mut console = SERIAL.lock();
        let console = &mut *console;
        if console.ring.is_none() {
            if dropped > 0 {
                emit(
                    console,
                    format_args!("d{domid}: {dropped} characters of guest output dropped"),
                );
            }
            if !line.is_empty() {
                let keep = CONSOLE_TO_RING.load(Ordering::Relaxed);
                text.bytes().iter().for_each(|&b| console.put_byte(b, keep));
            }
            return true;
        }
        let full_dropped = console.ring.as_mut().map_or(0, |r| r.take_guest_dropped());
        if dropped > 0 {
            emit(
                console,
                format_args!("d{domid}: {dropped} characters of guest output dropped"),
            );
        }
        if full_dropped > 0 {
            emit(
                console,
                format_args!(
                    "{full_dropped} characters of guest output dropped (console buffer full)"
                ),
            );
        }
        let queued = line.is_empty()
            || console
                .ring
                .as_mut()
                .is_some_and(|ring| ring.push(Source::Guest, text.bytes()));
        if queued && !line.is_empty() && CONSOLE_TO_RING.load(Ordering::Relaxed) {
            remember(text.bytes());
        }
        console.drain_some();
        queued
    })
}

/// A line of at most [`GUEST_LINE_MAX`] bytes, ending in CR LF.
struct Buf {
    bytes: [u8; GUEST_LINE_MAX],
    len: usize,
}

impl Buf {
    fn new() -> Self {
        Self {
            bytes: [0; GUEST_LINE_MAX],
            len: 0,
        }
    }

    fn end_line(&mut self) {
        self.len = self.len.min(GUEST_LINE_MAX - 2);
        self.bytes[self.len..self.len + 2].copy_from_slice(b"\r\n");
        self.len += 2;
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Write for Buf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = GUEST_LINE_MAX - 2 - self.len;
        let n = s.len().min(room);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Moves a bounded slice of queued output to the UART (the scheduling
/// loop calls this on every pass, instead of a transmit interrupt).
pub fn poll() {
    x86_64::instructions::interrupts::without_interrupts(|| {
        if let Some(mut console) = SERIAL.try_lock() {
            console.drain_some();
        }
    });
}

/// Whether output waits for the UART (the caller should come back soon).
pub fn pending() -> bool {
    SERIAL
        .try_lock()
        .is_some_and(|console| console.ring.as_ref().is_some_and(|r| !r.is_empty()))
}

/// Sends everything queued, waiting for the UART: before the machine
/// stops, so that the last lines reach the log.
pub fn flush() {
    with_console_emergency(|console| console.drain_all());
}

/// Runs `f` on the console from a fault, panic or stop path: never waits
/// forever for the lock, because the code that holds it may have faulted
/// or been stopped.
fn with_console_emergency(f: impl FnOnce(&mut Console)) {
    for _ in 0..1_000_000 {
        if let Some(mut guard) = SERIAL.try_lock() {
            f(&mut guard);
            return;
        }
        core::hint::spin_loop();
    }
    // SAFETY: the holder did not release the lock within the bound; it is
    // stuck (most likely this CPU faulted while printing, or it was parked
    // by the stop NMI). Taking over the UART can at worst interleave bytes
    // with a stuck writer.
    unsafe { SERIAL.force_unlock() };
    f(&mut SERIAL.lock());
}

/// Prints from a fault or panic path, synchronously: what is queued goes
/// out first, then the message, without waiting forever for the lock.
pub fn print_emergency(args: fmt::Arguments) {
    with_console_emergency(|console| {
        console.drain_all();
        let ring = console.ring.take();
        emit(console, args);
        console.ring = ring;
    });
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
