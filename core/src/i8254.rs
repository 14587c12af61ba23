//! A guest's 8254 PIT channel 2 and the speaker/gate port `0x61` (the
//! part of Xen's `arch/x86/emul-i8254.c` that Linux's TSC calibration
//! uses): control words at `0x43` for channel 2 (every mode, the LSB / MSB
//! / LSB-then-MSB access modes, the counter latch and the read-back
//! command), the counter at `0x42` with its LSB/MSB flip-flop, the gate
//! (bit 0) and OUT2 (bit 5) at `0x61`. The counter runs at
//! [`PIT_FREQ`] from the time the hypervisor hands in (its system time, in
//! nanoseconds), so a guest that calibrates against it measures rxen's
//! own idea of the TSC's rate.
//!
//! **Deviation from Xen.** Xen emulates the PIT only for HVM guests and
//! gives PVH guests (domUs and dom0) none: their reads of `0x42` and `0x61`
//! return all ones. Linux on AMD calibrates `cpu_khz` with the PIT
//! (`native_calibrate_cpu_early` → `quick_pit_calibrate`) even when Xen's
//! pvclock gives it the TSC's rate, and against all ones
//! `pit_expect_msb(0xff)` spins its full 50,000 iterations, two port
//! exits each. Under emulation (QEMU TCG) that is seconds of boot, so rxen
//! gives its PVH guests this channel; channel 2 has no interrupt, so the
//! guest sees no other difference. Channels 0 and 1 (`0x40`, `0x41`) and
//! IRQ0 are not emulated: control words for them are ignored.
//!
//! Every access takes constant time whatever the guest wrote and however
//! far time jumped (no loops; tick arithmetic saturates or wraps as the
//! 16-bit counter does).
// Guest input: no unchecked arithmetic, no indexing (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

/// The PIT's input clock in Hz (Xen's `PIT_FREQ`).
pub const PIT_FREQ: u64 = 1_193_182;
/// Channel 2's counter port.
pub const PIT_CH2: u16 = 0x42;
/// The mode/command port (Linux's `PIT_MODE`).
pub const PIT_MODE: u16 = 0x43;
/// The NMI status and control port: speaker data (bit 1), channel 2's
/// gate (bit 0) and OUT2 (bit 5) (Linux's `NMI_REASON_PORT`, Xen's
/// `handle_speaker_io`).
pub const SPEAKER_PORT: u16 = 0x61;

/// Nanoseconds per second.
const NS_PER_SEC: u128 = 1_000_000_000;

/// Whether an access of `size` bytes at `port` is this model's (Xen's
/// `handle_pit_io` and `handle_speaker_io` take single bytes only).
pub fn handles(port: u16, size: u8) -> bool {
    size == 1 && matches!(port, PIT_CH2 | PIT_MODE | SPEAKER_PORT)
}

/// PIT ticks in `ns` nanoseconds.
fn ticks(ns: u64) -> u64 {
    let t = u128::from(ns).saturating_mul(u128::from(PIT_FREQ)) / NS_PER_SEC;
    u64::try_from(t).unwrap_or(u64::MAX)
}

/// The access mode of a control word (bits 5:4), also the state of the
/// read and write flip-flops (Xen's `RW_STATE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RwState {
    /// Low byte only.
    Lsb,
    /// High byte only.
    Msb,
    /// Low byte next, then the high byte.
    Word0,
    /// High byte next (the low byte went).
    Word1,
}

impl RwState {
    /// The access field (1..=3) as it appears in a status byte.
    fn field(self) -> u8 {
        match self {
            RwState::Lsb => 1,
            RwState::Msb => 2,
            RwState::Word0 | RwState::Word1 => 3,
        }
    }
}

/// One counter (Xen's `struct hvm_hw_pit_channel` plus its load time).
#[derive(Clone, Debug)]
struct Channel {
    /// The count loaded, 1..=0x10000 (a written 0 counts 0x10000).
    count: u32,
    /// Counting mode, 0..=5.
    mode: u8,
    /// BCD flag of the control word (kept for the status byte; the
    /// counter counts in binary, as Xen's).
    bcd: bool,
    /// Access mode of the last control word.
    rw_mode: RwState,
    read_state: RwState,
    write_state: RwState,
    /// The low byte of a two-byte count being written.
    write_latch: u8,
    /// A latched count and which of its bytes the next reads return.
    latched: Option<(u16, RwState)>,
    /// A latched status byte (read-back command).
    status: Option<u8>,
    /// Ticks counted before `since` (while the gate was high earlier).
    base: u64,
    /// When counting last (re)started; `None` while stopped.
    since: Option<u64>,
}

impl Channel {
    /// Ticks counted since the count was loaded.
    fn elapsed(&self, now: u64) -> u64 {
        match self.since {
            Some(since) => self.base.saturating_add(ticks(now.saturating_sub(since))),
            None => self.base,
        }
    }

    /// The counter's value now (Xen's `pit_get_count`).
    fn counter(&self, now: u64) -> u16 {
        let d = self.elapsed(now);
        let count = u64::from(self.count.max(1));
        // `count` is at least 1: the remainders always exist.
        let phase = d.checked_rem(count).unwrap_or(0);
        let value = match self.mode {
            3 => count.saturating_sub(phase.saturating_mul(2).checked_rem(count).unwrap_or(0)),
            2 => count.saturating_sub(phase),
            _ => count.wrapping_sub(d),
        };
        // Truncation intended: a 16-bit counter (0x10000 reads 0).
        (value & 0xFFFF) as u16
    }

    /// The OUT pin now (Xen's `pit_get_out`).
    fn out(&self, now: u64) -> bool {
        let d = self.elapsed(now);
        let count = u64::from(self.count.max(1));
        let phase = d.checked_rem(count).unwrap_or(0);
        match self.mode {
            0 => d >= count,
            1 => d < count,
            2 => phase == 0 && d != 0,
            3 => phase < count.saturating_add(1) / 2,
            _ => d == count,
        }
    }

    /// Loads a count and starts counting (Xen's `pit_load_count`); in the
    /// modes the gate holds, counting waits for the gate.
    fn load(&mut self, value: u16, gate: bool, now: u64) {
        self.count = if value == 0 {
            0x10000
        } else {
            u32::from(value)
        };
        self.base = 0;
        self.since = (gate || matches!(self.mode, 1 | 5)).then_some(now);
    }

    /// The status byte of the read-back command.
    fn status_byte(&self, now: u64) -> u8 {
        (u8::from(self.out(now)) << 7)
            | (self.rw_mode.field() << 4)
            | (self.mode << 1)
            | u8::from(self.bcd)
    }
}

/// A domain's PIT channel 2 and port `0x61` (Xen's `PITState`, one
/// channel of it).
#[derive(Clone, Debug)]
pub struct Pit {
    ch2: Channel,
    /// Channel 2's gate (port `0x61` bit 0).
    gate: bool,
    /// The speaker data bit (port `0x61` bit 1), stored only.
    speaker_data_on: bool,
}

impl Default for Pit {
    fn default() -> Self {
        Self::new()
    }
}

impl Pit {
    /// The state at reset (Xen's `pit_reset` for channel 2: mode 3,
    /// count 0x10000, LSB-then-MSB, gate low).
    pub fn new() -> Self {
        Self {
            ch2: Channel {
                count: 0x10000,
                mode: 3,
                bcd: false,
                rw_mode: RwState::Word0,
                read_state: RwState::Word0,
                write_state: RwState::Word0,
                write_latch: 0,
                latched: None,
                status: None,
                base: 0,
                since: None,
            },
            gate: false,
            speaker_data_on: false,
        }
    }

    /// A one-byte read of `port` at system time `now` (ns). Ports the
    /// model does not own read all ones.
    pub fn read(&mut self, port: u16, now: u64) -> u8 {
        match port {
            PIT_CH2 => self.read_counter(now),
            SPEAKER_PORT => self.read_speaker(now),
            // The mode port is write-only (Xen: reads of it are ~0).
            _ => 0xFF,
        }
    }

    /// A one-byte write of `value` to `port` at system time `now` (ns).
    /// Writes to ports the model does not own are dropped.
    pub fn write(&mut self, port: u16, value: u8, now: u64) {
        match port {
            PIT_CH2 => self.write_counter(value, now),
            PIT_MODE => self.write_control(value, now),
            SPEAKER_PORT => self.write_speaker(value, now),
            _ => {}
        }
    }

    /// A control word (Xen's `pit_ioport_write`, address 3).
    fn write_control(&mut self, value: u8, now: u64) {
        let ch = &mut self.ch2;
        match value >> 6 {
            // Read-back: bit 3 selects channel 2; bit 5 clear latches the
            // count, bit 4 clear the status.
            3 if value & (1 << 3) != 0 => {
                if value & 0x20 == 0 && ch.latched.is_none() {
                    ch.latched = Some((ch.counter(now), ch.rw_mode));
                }
                if value & 0x10 == 0 && ch.status.is_none() {
                    ch.status = Some(ch.status_byte(now));
                }
            }
            2 => match (value >> 4) & 3 {
                0 => {
                    // Counter latch command (Xen's `pit_latch_count`).
                    if ch.latched.is_none() {
                        ch.latched = Some((ch.counter(now), ch.rw_mode));
                    }
                }
                access => {
                    ch.rw_mode = match access {
                        1 => RwState::Lsb,
                        2 => RwState::Msb,
                        _ => RwState::Word0,
                    };
                    ch.read_state = ch.rw_mode;
                    ch.write_state = ch.rw_mode;
                    // Modes 6 and 7 are modes 2 and 3.
                    let mode = (value >> 1) & 7;
                    ch.mode = if mode > 5 { mode & 3 } else { mode };
                    ch.bcd = value & 1 != 0;
                    // A new control word stops the counter until a count
                    // is written (OUT low in mode 0, high otherwise).
                    ch.base = 0;
                    ch.since = None;
                }
            },
            // Channels 0 and 1 are not emulated.
            _ => {}
        }
    }

    /// A write of the counter port (Xen's `pit_ioport_write`, 0-2).
    fn write_counter(&mut self, value: u8, now: u64) {
        let gate = self.gate;
        let ch = &mut self.ch2;
        match ch.write_state {
            RwState::Lsb => ch.load(u16::from(value), gate, now),
            RwState::Msb => ch.load(u16::from(value) << 8, gate, now),
            RwState::Word0 => {
                ch.write_latch = value;
                ch.write_state = RwState::Word1;
            }
            RwState::Word1 => {
                ch.load(
                    u16::from(ch.write_latch) | (u16::from(value) << 8),
                    gate,
                    now,
                );
                ch.write_state = RwState::Word0;
            }
        }
    }

    /// A read of the counter port (Xen's `pit_ioport_read`).
    fn read_counter(&mut self, now: u64) -> u8 {
        let ch = &mut self.ch2;
        if let Some(status) = ch.status.take() {
            return status;
        }
        if let Some((count, state)) = ch.latched {
            let [lo, hi] = count.to_le_bytes();
            return match state {
                RwState::Lsb => {
                    ch.latched = None;
                    lo
                }
                RwState::Msb | RwState::Word1 => {
                    ch.latched = None;
                    hi
                }
                RwState::Word0 => {
                    ch.latched = Some((count, RwState::Word1));
                    lo
                }
            };
        }
        let [lo, hi] = ch.counter(now).to_le_bytes();
        match ch.read_state {
            RwState::Lsb => lo,
            RwState::Msb => hi,
            RwState::Word0 => {
                ch.read_state = RwState::Word1;
                lo
            }
            RwState::Word1 => {
                ch.read_state = RwState::Word0;
                hi
            }
        }
    }

    /// A read of port `0x61` (Xen's `handle_speaker_io`): the refresh
    /// toggle in bit 4 flips every 16 µs or so, as Xen's.
    fn read_speaker(&self, now: u64) -> u8 {
        let refresh = ((now >> 14) & 1) as u8;
        (u8::from(self.ch2.out(now)) << 5)
            | (refresh << 4)
            | (u8::from(self.speaker_data_on) << 1)
            | u8::from(self.gate)
    }

    /// A write of port `0x61`: the speaker data bit and the gate (Xen's
    /// `pit_set_gate`, with the 8254's gate semantics: in modes 0, 2, 3
    /// and 4 a low gate holds the count; in modes 1, 2, 3 and 5 a rising
    /// edge restarts it).
    fn write_speaker(&mut self, value: u8, now: u64) {
        self.speaker_data_on = value & 2 != 0;
        let gate = value & 1 != 0;
        let ch = &mut self.ch2;
        match (self.gate, gate) {
            (false, true) => {
                if matches!(ch.mode, 0 | 4) {
                    ch.since = Some(now);
                } else {
                    ch.base = 0;
                    ch.since = Some(now);
                }
            }
            (true, false) if matches!(ch.mode, 0 | 2 | 3 | 4) => {
                ch.base = ch.elapsed(now);
                ch.since = None;
            }
            _ => {}
        }
        self.gate = gate;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nanoseconds of `n` PIT ticks (rounded up, so that `ticks` of it is
    /// `n`).
    fn ns_of(n: u64) -> u64 {
        (u128::from(n) * NS_PER_SEC).div_ceil(u128::from(PIT_FREQ)) as u64
    }

    /// A guest with a fake clock: every port access takes `exit_ns`, and
    /// its TSC runs at `tsc_khz`.
    struct Guest {
        pit: Pit,
        now: u64,
        exit_ns: u64,
        tsc_khz: u64,
        accesses: u64,
    }

    impl Guest {
        fn new(exit_ns: u64, tsc_khz: u64) -> Self {
            Self {
                pit: Pit::new(),
                now: 1_000_000_000,
                exit_ns,
                tsc_khz,
                accesses: 0,
            }
        }
        fn inb(&mut self, port: u16) -> u8 {
            self.now += self.exit_ns;
            self.accesses += 1;
            self.pit.read(port, self.now)
        }
        fn outb(&mut self, value: u8, port: u16) {
            self.now += self.exit_ns;
            self.accesses += 1;
            self.pit.write(port, value, self.now);
        }
        fn get_cycles(&self) -> u64 {
            (u128::from(self.now) * u128::from(self.tsc_khz) / 1_000_000) as u64
        }

        // Linux 6.1 arch/x86/kernel/tsc.c, transcribed.
        fn pit_verify_msb(&mut self, val: u8) -> bool {
            self.inb(0x42);
            self.inb(0x42) == val
        }
        fn pit_expect_msb(&mut self, val: u8) -> (bool, u64, u64) {
            let (mut tsc, mut prev_tsc) = (0, 0);
            let mut count = 0;
            while count < 50000 {
                if !self.pit_verify_msb(val) {
                    break;
                }
                prev_tsc = tsc;
                tsc = self.get_cycles();
                count += 1;
            }
            let delta = self.get_cycles() - prev_tsc;
            (count > 5, tsc, delta)
        }
        /// `quick_pit_calibrate`: kHz, or 0 if it failed.
        fn quick_pit_calibrate(&mut self) -> u64 {
            const MAX_QUICK_PIT_ITERATIONS: u64 = 50 * PIT_FREQ / 1000 / 256;
            let v = self.inb(0x61);
            self.outb((v & !0x02) | 0x01, 0x61);
            self.outb(0xb0, 0x43);
            self.outb(0xff, 0x42);
            self.outb(0xff, 0x42);
            self.pit_verify_msb(0);
            let (ok, tsc, d1) = self.pit_expect_msb(0xff);
            if ok {
                for i in 1..=MAX_QUICK_PIT_ITERATIONS {
                    let (ok, t, d2) = self.pit_expect_msb((0xff - i) as u8);
                    if !ok {
                        break;
                    }
                    let delta = t - tsc;
                    if i == 1 && d1 + d2 >= (delta * MAX_QUICK_PIT_ITERATIONS) >> 11 {
                        return 0;
                    }
                    if d1 + d2 >= delta >> 11 {
                        continue;
                    }
                    if !self.pit_verify_msb((0xfe - i) as u8) {
                        break;
                    }
                    return delta * PIT_FREQ / (i * 256 * 1000);
                }
            }
            0
        }
    }

    #[test]
    fn linux_quick_pit_calibrate_measures_the_tsc() {
        // 1 µs per port access, as on hardware: success, within 500 ppm.
        let mut guest = Guest::new(1_000, 2_994_000);
        let khz = guest.quick_pit_calibrate();
        assert!(
            khz.abs_diff(2_994_000) * 2000 < 2_994_000,
            "measured {khz} kHz"
        );
        // About 30 ms of PIT periods, not 50,000 spins.
        assert!(guest.accesses < 70_000, "{} accesses", guest.accesses);
    }

    #[test]
    fn linux_quick_pit_calibrate_gives_up_early_when_exits_are_slow() {
        // 40 µs per access (emulation): too coarse for 500 ppm, so it
        // fails, but after a few PIT periods and a few dozen accesses.
        let mut guest = Guest::new(40_000, 2_000_000);
        assert_eq!(guest.quick_pit_calibrate(), 0);
        assert!(guest.accesses < 100, "{} accesses", guest.accesses);
    }

    #[test]
    fn mode0_counts_down_and_raises_out() {
        let mut pit = Pit::new();
        let t0 = 5_000;
        pit.write(SPEAKER_PORT, 1, t0);
        pit.write(PIT_MODE, 0xB0, t0);
        pit.write(PIT_CH2, 0x10, t0);
        pit.write(PIT_CH2, 0x00, t0); // count 16
        assert_eq!(
            pit.read(SPEAKER_PORT, t0) & 0x21,
            0x01,
            "OUT low, gate high"
        );
        let t = t0 + ns_of(10);
        assert_eq!(pit.read(PIT_CH2, t), 6);
        assert_eq!(pit.read(PIT_CH2, t), 0);
        let t = t0 + ns_of(16);
        assert_eq!(
            pit.read(SPEAKER_PORT, t) & 0x20,
            0x20,
            "OUT high at terminal count"
        );
        // It keeps counting down past zero, wrapping.
        let t = t0 + ns_of(17);
        assert_eq!(pit.read(PIT_CH2, t), 0xFF);
        assert_eq!(pit.read(PIT_CH2, t), 0xFF);
    }

    #[test]
    fn latch_holds_the_count_until_both_bytes_are_read() {
        let mut pit = Pit::new();
        pit.write(SPEAKER_PORT, 1, 0);
        pit.write(PIT_MODE, 0xB0, 0);
        pit.write(PIT_CH2, 0x34, 0);
        pit.write(PIT_CH2, 0x12, 0);
        pit.write(PIT_MODE, 0x80, ns_of(0x100)); // latch channel 2
        let later = ns_of(0x800);
        assert_eq!(pit.read(PIT_CH2, later), 0x34);
        assert_eq!(pit.read(PIT_CH2, later), 0x11);
        // Then live again.
        assert_eq!(pit.read(PIT_CH2, later), 0x34);
        assert_eq!(pit.read(PIT_CH2, later), 0x0A);
        // Read-back of the status: OUT low, LSB-then-MSB, mode 0.
        pit.write(PIT_MODE, 0xE8, later);
        assert_eq!(pit.read(PIT_CH2, later), 0x30);
    }

    #[test]
    fn a_low_gate_holds_mode0() {
        let mut pit = Pit::new();
        pit.write(SPEAKER_PORT, 1, 0);
        pit.write(PIT_MODE, 0x90, 0); // LSB only, mode 0
        pit.write(PIT_CH2, 100, 0);
        pit.write(SPEAKER_PORT, 0, ns_of(10));
        assert_eq!(pit.read(PIT_CH2, ns_of(50)), 90);
        pit.write(SPEAKER_PORT, 1, ns_of(60));
        assert_eq!(pit.read(PIT_CH2, ns_of(60) + ns_of(5)), 85);
        assert_eq!(pit.read(SPEAKER_PORT, 0) & 3, 1);
    }

    #[test]
    fn every_control_word_and_access_order_is_harmless() {
        // Garbage in any order, with time jumping to the end of time: no
        // panic, and the counter port always answers.
        let mut pit = Pit::new();
        let times = [0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX, 3, 0];
        let mut n = 0u64;
        for cw in 0..=255u8 {
            for &t in &times {
                pit.write(PIT_MODE, cw, t);
                pit.write(PIT_CH2, cw.wrapping_mul(7), t);
                pit.write(SPEAKER_PORT, cw, t);
                n += u64::from(pit.read(PIT_CH2, t));
                n += u64::from(pit.read(SPEAKER_PORT, t));
                n += u64::from(pit.read(PIT_MODE, t));
                pit.write(0x40, cw, t);
                n += u64::from(pit.read(0x41, t));
            }
        }
        assert!(n > 0);
        // Modes 6 and 7 are modes 2 and 3; a count of 0 is 0x10000.
        let mut pit = Pit::new();
        pit.write(SPEAKER_PORT, 1, 0);
        pit.write(PIT_MODE, 0xBC, 0);
        pit.write(PIT_CH2, 0, 0);
        pit.write(PIT_CH2, 0, 0);
        pit.write(PIT_MODE, 0xE8, 0); // read back channel 2's status only
        assert_eq!(pit.read(PIT_CH2, 0), 0x34);
        // At the end of time the counter still answers, lo then hi.
        let lo = pit.read(PIT_CH2, u64::MAX);
        let hi = pit.read(PIT_CH2, u64::MAX);
        let d = ticks(u64::MAX) % 0x10000;
        assert_eq!(u64::from(u16::from_le_bytes([lo, hi])), 0x10000 - d);
    }

    #[test]
    fn only_single_bytes_of_the_three_ports_are_handled() {
        assert!(handles(0x42, 1) && handles(0x43, 1) && handles(0x61, 1));
        assert!(!handles(0x40, 1) && !handles(0x41, 1));
        assert!(!handles(0x42, 2) && !handles(0x61, 4) && !handles(0x60, 2));
    }
}
