//! Console output that never blocks, after Xen's `drivers/char/console.c`
//! and `serial.c`: guest lines assembled in a bounded buffer per domain
//! (Xen's `pbuf`), a per-domain output budget, and the transmit ring
//! (`serial_tx_buffer`) the UART drains. Pure logic: the platform owns the
//! UART and the locks.
//!
//! The hypervisor's own messages always go into the ring (the platform
//! waits for the UART when it is full, which only a burst of its own
//! messages can cause); guest lines may use all but the last quarter of it
//! and are dropped, and counted, when they do not fit.
// Guest or firmware input is parsed here: no unchecked arithmetic, no
// indexing that can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

/// Xen's `DOMAIN_PBUF_SIZE`: a guest line is printed when it reaches one
/// less than this many characters, or at its newline.
pub const DOMAIN_PBUF_SIZE: usize = 200;
/// Xen's default `serial_tx_buffer` (`CONFIG_SERIAL_TX_BUFSIZE`).
pub const DEFAULT_TX_BUFFER: usize = 16 * 1024;
/// Smallest transmit ring (Xen: one page).
pub const MIN_TX_BUFFER: usize = 4096;
/// Largest transmit ring rxen takes.
pub const MAX_TX_BUFFER: usize = 16 * 1024 * 1024;

/// The characters of a guest line being assembled (Xen's `pbuf`).
#[derive(Debug, Default)]
pub struct LineBuffer {
    text: String,
}

impl LineBuffer {
    /// An empty line.
    pub const fn new() -> Self {
        Self {
            text: String::new(),
        }
    }

    /// Adds one byte the guest wrote. Returns the completed line at a
    /// newline or when the line reached [`DOMAIN_PBUF_SIZE`] - 1 characters.
    /// As Xen keeps them: printable ASCII and tabs; other bytes are dropped.
    pub fn push(&mut self, byte: u8) -> Option<String> {
        match byte {
            b'\n' => return Some(self.take()),
            0x20..=0x7E | b'\t' => self.text.push(byte as char),
            _ => {}
        }
        (self.text.len() >= DOMAIN_PBUF_SIZE - 1).then(|| self.take())
    }

    /// Takes the partial line (at a domain's end).
    pub fn take(&mut self) -> String {
        core::mem::take(&mut self.text)
    }

    /// Characters waiting for their newline.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Whether no character is waiting.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

/// A domain's output budget: a token bucket of characters, so that one
/// guest cannot fill the serial line (or the transmit ring) for everyone.
/// Xen limits guest messages with `printk_ratelimit` (10 messages, then one
/// every 5 s) and does not print a domU's console_io output at its default
/// `guest_loglvl` at all; rxen prints it, within this budget, unless
/// `guest_loglvl` lets guest messages through unconditionally.
#[derive(Debug)]
pub struct OutputBudget {
    tokens: u64,
    last_ns: u64,
    dropped: u64,
}

impl OutputBudget {
    /// Characters a domain may print at once.
    pub const BURST: u64 = 64 * 1024;
    /// Characters per second a domain earns back (about what a 115200 baud
    /// line carries).
    pub const RATE: u64 = 8 * 1024;

    /// A full budget at system time `now`.
    pub const fn new(now: u64) -> Self {
        Self {
            tokens: Self::BURST,
            last_ns: now,
            dropped: 0,
        }
    }

    /// Charges a line of `chars` characters at system time `now`. Returns
    /// `Some(dropped)` if it may be printed, `dropped` being the characters
    /// dropped since the last line that was (to be reported first); `None`
    /// if it is dropped (and counted).
    pub fn charge(&mut self, now: u64, chars: u64) -> Option<u64> {
        let elapsed = now.saturating_sub(self.last_ns);
        // Earned in whole characters; the rest of the interval counts later.
        // (`elapsed` is capped so that the product fits.)
        let earned = elapsed
            .min(u64::MAX / Self::RATE)
            .saturating_mul(Self::RATE)
            / 1_000_000_000;
        if self.tokens.saturating_add(earned) >= Self::BURST {
            self.tokens = Self::BURST;
            self.last_ns = now;
        } else if earned > 0 {
            // Below BURST, so far from overflowing.
            self.tokens = self.tokens.saturating_add(earned);
            self.last_ns = self
                .last_ns
                .saturating_add(earned.saturating_mul(1_000_000_000) / Self::RATE);
        }
        if let Some(left) = self.tokens.checked_sub(chars) {
            self.tokens = left;
            Some(core::mem::take(&mut self.dropped))
        } else {
            self.drop_chars(chars);
            None
        }
    }

    /// Counts `chars` characters dropped for another reason.
    pub fn drop_chars(&mut self, chars: u64) {
        self.dropped = self.dropped.saturating_add(chars);
    }

    /// Takes the count of characters dropped and not reported yet.
    pub fn take_dropped(&mut self) -> u64 {
        core::mem::take(&mut self.dropped)
    }
}

/// Who wrote bytes into the transmit ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The hypervisor itself: never dropped.
    Hypervisor,
    /// A guest: dropped when the ring is fuller than its share.
    Guest,
}

/// The transmit ring between console writers and the UART (Xen's
/// `serial_tx_buffer`): a power of two of at least [`MIN_TX_BUFFER`] bytes.
#[derive(Debug)]
pub struct TxRing {
    buf: Vec<u8>,
    /// Index of the oldest byte.
    read: usize,
    /// Bytes queued.
    len: usize,
    /// Guest characters dropped because the ring was full.
    guest_dropped: u64,
}

impl TxRing {
    /// A ring of `size` bytes, rounded down to a power of two and kept
    /// within [`MIN_TX_BUFFER`]..=[`MAX_TX_BUFFER`], as Xen rounds it.
    pub fn new(size: usize) -> Self {
        let size = size.clamp(MIN_TX_BUFFER, MAX_TX_BUFFER);
        // The highest power of two not above `size` (at least MIN_TX_BUFFER).
        let size = 1usize << size.ilog2();
        Self {
            buf: vec![0; size],
            read: 0,
            len: 0,
            guest_dropped: 0,
        }
    }

    /// The ring's size in bytes.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Bytes waiting for the UART.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room for `source`: guests may not use the last quarter, which stays
    /// for the hypervisor's own messages.
    pub fn room(&self, source: Source) -> usize {
        let free = self.capacity().saturating_sub(self.len);
        match source {
            Source::Hypervisor => free,
            Source::Guest => free.saturating_sub(self.capacity() / 4),
        }
    }

    /// Queues all of `bytes` if `source` has room for them; otherwise
    /// queues nothing (a guest's bytes are counted as dropped).
    pub fn push(&mut self, source: Source, bytes: &[u8]) -> bool {
        if bytes.len() > self.room(source) {
            if source == Source::Guest {
                self.guest_dropped = self.guest_dropped.saturating_add(bytes.len() as u64);
            }
            return false;
        }
        // The capacity is a power of two: indices wrap with the mask.
        let mask = self.capacity().wrapping_sub(1);
        let tail = self.read.wrapping_add(self.len);
        for (i, &byte) in bytes.iter().enumerate() {
            if let Some(slot) = self.buf.get_mut(tail.wrapping_add(i) & mask) {
                *slot = byte;
            }
        }
        // Within the room checked above.
        self.len = self.len.saturating_add(bytes.len());
        true
    }

    /// Takes the count of guest characters dropped since the last call.
    pub fn take_guest_dropped(&mut self) -> u64 {
        core::mem::take(&mut self.guest_dropped)
    }

    /// Takes the oldest queued byte.
    pub fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let byte = *self.buf.get(self.read)?;
        self.read = self.read.wrapping_add(1) & self.capacity().wrapping_sub(1);
        self.len = self.len.saturating_sub(1);
        Some(byte)
    }
}

/// A domain's console output on its way to the hypervisor console: the line
/// being assembled and the domain's output budget.
#[derive(Debug)]
pub struct GuestConsole {
    line: LineBuffer,
    budget: OutputBudget,
}

impl GuestConsole {
    /// A console with nothing written and a full budget at `now`.
    pub const fn new(now: u64) -> Self {
        Self {
            line: LineBuffer::new(),
            budget: OutputBudget::new(now),
        }
    }

    /// Takes bytes the guest wrote at `now`; calls `emit(line, dropped)`
    /// for each complete non-empty line that may be printed, `dropped`
    /// being the characters of this domain dropped before it. `limited`:
    /// whether the budget applies (the platform's `guest_loglvl`).
    pub fn write(
        &mut self,
        bytes: &[u8],
        now: u64,
        limited: bool,
        emit: &mut dyn FnMut(&str, u64),
    ) {
        for &byte in bytes {
            if let Some(line) = self.line.push(byte) {
                self.emit(&line, now, limited, emit);
            }
        }
    }

    /// Emits the partial line (the domain ends), and a count of dropped
    /// characters not reported yet.
    pub fn flush(&mut self, now: u64, limited: bool, emit: &mut dyn FnMut(&str, u64)) {
        let line = self.line.take();
        self.emit(&line, now, limited, emit);
        let dropped = self.budget.take_dropped();
        if dropped > 0 {
            emit("", dropped);
        }
    }

    /// Counts characters of this domain dropped outside the budget (the
    /// transmit ring was full), to be reported with its next line.
    pub fn count_dropped(&mut self, chars: u64) {
        self.budget.drop_chars(chars);
    }

    fn emit(&mut self, line: &str, now: u64, limited: bool, emit: &mut dyn FnMut(&str, u64)) {
        if line.is_empty() {
            return;
        }
        // The newline counts too.
        let chars = (line.len() as u64).saturating_add(1);
        let allowed = if limited {
            self.budget.charge(now, chars)
        } else {
            Some(self.budget.take_dropped())
        };
        if let Some(dropped) = allowed {
            emit(line, dropped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_ends_at_its_newline_or_at_199_characters() {
        let mut line = LineBuffer::new();
        assert_eq!(line.push(b'h'), None);
        assert_eq!(line.push(b'\r'), None, "control bytes are dropped");
        assert_eq!(line.push(0xFF), None);
        assert_eq!(line.push(b'\t'), None);
        assert_eq!(line.push(b'i'), None);
        assert_eq!(line.push(b'\n').as_deref(), Some("h\ti"));
        assert_eq!(line.push(b'\n').as_deref(), Some(""));
        // A flood without newlines: never more than 199 characters held.
        let mut lines = Vec::new();
        for _ in 0..1000 {
            if let Some(l) = line.push(b'x') {
                lines.push(l);
            }
            assert!(line.len() < DOMAIN_PBUF_SIZE);
        }
        assert_eq!(lines.len(), 1000 / (DOMAIN_PBUF_SIZE - 1));
        assert!(lines.iter().all(|l| l.len() == DOMAIN_PBUF_SIZE - 1));
        assert_eq!(line.take().len(), 1000 % (DOMAIN_PBUF_SIZE - 1));
        assert!(line.is_empty());
    }

    #[test]
    fn the_budget_allows_a_burst_then_the_rate_and_counts_what_it_drops() {
        let mut budget = OutputBudget::new(0);
        let line = 128;
        let burst_lines = OutputBudget::BURST / line;
        for _ in 0..burst_lines {
            assert_eq!(budget.charge(0, line), Some(0));
        }
        assert_eq!(budget.charge(0, line), None);
        assert_eq!(budget.charge(1_000, line), None);
        // One second later: RATE characters more, the drops reported once.
        let second = 1_000_000_000;
        assert_eq!(budget.charge(second, line), Some(2 * line));
        let lines_per_second = OutputBudget::RATE / line;
        for _ in 1..lines_per_second {
            assert_eq!(budget.charge(second, line), Some(0));
        }
        assert_eq!(budget.charge(second, line), None);
        // A long silence refills at most the burst; time going backwards
        // earns nothing.
        assert_eq!(budget.charge(u64::MAX, OutputBudget::BURST), Some(line));
        assert_eq!(budget.charge(5, 1), None);
        assert_eq!(budget.take_dropped(), 1);
        // Many short charges in a row earn the same as one long wait.
        let mut budget = OutputBudget::new(0);
        assert!(budget.charge(0, OutputBudget::BURST).is_some());
        let mut t = 0;
        let mut printed = 0;
        while t < second {
            t += 1_000;
            if budget.charge(t, 1).is_some() {
                printed += 1;
            }
        }
        assert!((OutputBudget::RATE - 1..=OutputBudget::RATE).contains(&printed));
    }

    #[test]
    fn the_ring_keeps_a_quarter_for_the_hypervisor() {
        let mut ring = TxRing::new(5000);
        assert_eq!(ring.capacity(), 4096, "rounded down to a power of two");
        assert_eq!(TxRing::new(0).capacity(), MIN_TX_BUFFER);
        assert_eq!(TxRing::new(usize::MAX).capacity(), MAX_TX_BUFFER);
        let guest_share = 4096 - 1024;
        assert!(ring.push(Source::Guest, &[b'g'; 3000]));
        assert!(
            !ring.push(Source::Guest, &[b'g'; 100]),
            "past the guest share"
        );
        assert!(ring.push(Source::Guest, &vec![b'g'; guest_share - 3000]));
        assert_eq!(ring.room(Source::Guest), 0);
        assert!(!ring.push(Source::Guest, b"x"));
        assert_eq!(ring.take_guest_dropped(), 101);
        assert_eq!(ring.take_guest_dropped(), 0);
        assert!(ring.push(Source::Hypervisor, &[b'h'; 1024]));
        assert!(!ring.push(Source::Hypervisor, b"h"), "full");
        assert_eq!(ring.len(), 4096);
        // Drains oldest first, across the wrap.
        for _ in 0..3000 {
            assert_eq!(ring.pop(), Some(b'g'));
        }
        assert!(ring.push(Source::Guest, b"wrap"));
        let rest: Vec<u8> = core::iter::from_fn(|| ring.pop()).collect();
        assert_eq!(rest.len(), guest_share - 3000 + 1024 + 4);
        assert!(rest.ends_with(b"hhwrap"));
        assert!(ring.is_empty());
        assert_eq!(ring.pop(), None);
    }
    #[test]
    fn a_flooding_guest_gets_its_budget_and_a_count_of_the_rest() {
        let mut console = GuestConsole::new(0);
        let mut printed: Vec<(String, u64)> = Vec::new();
        let mut emit = |line: &str, dropped: u64| printed.push((line.into(), dropped));
        // 1 MiB without a newline, at one instant: the budget's worth of
        // 199-character lines, then nothing.
        let flood = vec![b'x'; 1 << 20];
        console.write(&flood, 0, true, &mut emit);
        let lines = (OutputBudget::BURST / 200) as usize;
        assert_eq!(printed.len(), lines);
        assert!(printed.iter().all(|(l, d)| l.len() == 199 && *d == 0));
        // A second later the next line comes with the count of what was lost.
        printed.clear();
        let mut emit = |line: &str, dropped: u64| printed.push((line.into(), dropped));
        console.write(b"\nhello\n", 1_000_000_000, true, &mut emit);
        let lost_lines = (1 << 20) / 199 - lines as u64;
        assert_eq!(printed.len(), 2);
        assert_eq!(printed[1].0, "hello");
        assert_eq!(
            printed[0].1,
            lost_lines * 200,
            "199 characters and a newline each"
        );
        // Unlimited (guest_loglvl=all): every line.
        let mut console = GuestConsole::new(0);
        let mut count = 0;
        console.write(&flood, 0, false, &mut |_, _| count += 1);
        assert_eq!(count, (1 << 20) / 199);
        let mut rest = Vec::new();
        console.count_dropped(7);
        console.flush(0, false, &mut |l: &str, d| rest.push((String::from(l), d)));
        assert_eq!(rest, [(String::from("x").repeat((1 << 20) % 199), 7)]);
    }
}
