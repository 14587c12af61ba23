//! The CMOS real-time clock, read once at boot for the guests' wall clock.

use x86_64::instructions::port::Port;

/// A date and time as the RTC keeps it (UTC on PCs booted by QEMU).
#[derive(Clone, Copy, Debug)]
pub struct RtcTime {
    /// Full year.
    pub year: u32,
    /// 1-12.
    pub month: u32,
    /// 1-31.
    pub day: u32,
    /// 0-23.
    pub hour: u32,
    /// 0-59.
    pub minute: u32,
    /// 0-59.
    pub second: u32,
}

fn cmos(register: u8) -> u8 {
    // SAFETY: ports 0x70/0x71 are the CMOS index and data registers; NMI
    // masking (bit 7) is left clear.
    unsafe {
        Port::<u8>::new(0x70).write(register & 0x7F);
        Port::<u8>::new(0x71).read()
    }
}

fn from_bcd(value: u8, binary: bool) -> u32 {
    if binary {
        value as u32
    } else {
        (value >> 4) as u32 * 10 + (value & 0xF) as u32
    }
}

/// Reads the RTC (waiting, bounded, for an update to finish).
pub fn read() -> RtcTime {
    for _ in 0..100_000 {
        if cmos(0x0A) & 0x80 == 0 {
            break;
        }
    }
    let status_b = cmos(0x0B);
    let binary = status_b & 0x04 != 0;
    let hour_raw = cmos(0x04);
    let mut hour = from_bcd(hour_raw & 0x7F, binary);
    if status_b & 0x02 == 0 && hour_raw & 0x80 != 0 {
        hour = (hour % 12) + 12;
    }
    RtcTime {
        year: 2000 + from_bcd(cmos(0x09), binary),
        month: from_bcd(cmos(0x08), binary).clamp(1, 12),
        day: from_bcd(cmos(0x07), binary).clamp(1, 31),
        hour: hour.min(23),
        minute: from_bcd(cmos(0x02), binary).min(59),
        second: from_bcd(cmos(0x00), binary).min(59),
    }
}
