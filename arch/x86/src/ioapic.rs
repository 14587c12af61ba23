//! The host's IO-APICs (Xen's `arch/x86/io_apic.c`, reduced): their
//! registers, the redirection entries rxen programs for the GSIs it binds
//! to dom0, and the masking of a level-triggered pin from its interrupt
//! entry until dom0 ends the interrupt.
//!
//! A level-triggered pin fires again as soon as its remote IRR is cleared
//! while the device still asserts the line; rxen signals EOI from the
//! interrupt entry, long before dom0 has served the device. So the entry
//! masks such a pin first ([`mask_level_source`]), and it is unmasked when
//! dom0's local APIC ends the interrupt (Xen's `pirq_guest_eoi`).

use core::sync::atomic::{AtomicU64, Ordering};

/// Register select (offset from the base).
const IOREGSEL: u64 = 0x00;
/// Data window.
const IOWIN: u64 = 0x10;
/// Version register (bits 16-23: maximum redirection entry).
const REG_VERSION: u32 = 0x01;
/// First redirection table register; pin `n` is at `0x10 + 2n` (low) and
/// `0x11 + 2n` (high).
const REG_REDTBL: u32 = 0x10;

/// RTE bit 16: masked.
pub const RTE_MASKED: u64 = 1 << 16;
/// RTE bit 15: level triggered.
pub const RTE_LEVEL: u64 = 1 << 15;
/// RTE bit 13: active low.
pub const RTE_ACTIVE_LOW: u64 = 1 << 13;

/// One host IO-APIC by the address of its registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApic {
    base: u64,
}

impl IoApic {
    /// The IO-APIC whose registers are at `base` (from the MADT).
    pub fn new(base: u64) -> Self {
        Self { base }
    }

    fn read(&self, reg: u32) -> u32 {
        // SAFETY: the IO-APIC's registers (IOREGSEL at +0, IOWIN at +0x10)
        // are in the low 4 GiB the hypervisor's page tables identity-map
        // as uncached MMIO; no domain maps the IO-APIC pages (dom0's are
        // emulated). Every caller holds `LOCK`, so a select and its window
        // access are not interleaved with another CPU's.
        unsafe {
            core::ptr::write_volatile((self.base + IOREGSEL) as *mut u32, reg);
            core::ptr::read_volatile((self.base + IOWIN) as *const u32)
        }
    }

    fn write(&self, reg: u32, value: u32) {
        // SAFETY: as in `read`.
        unsafe {
            core::ptr::write_volatile((self.base + IOREGSEL) as *mut u32, reg);
            core::ptr::write_volatile((self.base + IOWIN) as *mut u32, value);
        }
    }

    /// The number of pins (maximum redirection entry plus one).
    pub fn pins(&self) -> u32 {
        let _lock = LOCK.lock();
        ((self.read(REG_VERSION) >> 16) & 0xFF) + 1
    }

    /// Pin `pin`'s redirection entry.
    pub fn rte(&self, pin: u32) -> u64 {
        let _lock = LOCK.lock();
        let low = self.read(REG_REDTBL + 2 * pin);
        let high = self.read(REG_REDTBL + 2 * pin + 1);
        u64::from(high) << 32 | u64::from(low)
    }

    /// Writes pin `pin`'s redirection entry: masked first, the destination,
    /// then the low word (which may unmask).
    pub fn set_rte(&self, pin: u32, rte: u64) {
        let _lock = LOCK.lock();
        self.write(REG_REDTBL + 2 * pin, RTE_MASKED as u32);
        self.write(REG_REDTBL + 2 * pin + 1, (rte >> 32) as u32);
        self.write(REG_REDTBL + 2 * pin, rte as u32);
    }

    /// Masks (`true`) or unmasks pin `pin`.
    pub fn mask(&self, pin: u32, masked: bool) {
        let _lock = LOCK.lock();
        let low = self.read(REG_REDTBL + 2 * pin);
        let low = if masked {
            low | RTE_MASKED as u32
        } else {
            low & !(RTE_MASKED as u32)
        };
        self.write(REG_REDTBL + 2 * pin, low);
    }
}

/// Serializes register accesses (select, then window). Taken with
/// interrupts off only (the scheduling loop and the interrupt entry), so
/// the interrupt entry never waits for its own CPU.
static LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// Per vector: the level-triggered pin it comes from, as `base | 1 << 11 |
/// pin` (the base is page aligned, pins are below 256), or 0.
static LEVEL_SOURCE: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];
const LEVEL_VALID: u64 = 1 << 11;

/// Notes that `vector` comes from level-triggered pin `pin` of `ioapic`
/// (`None`: from nothing level-triggered).
pub fn set_level_source(vector: u8, source: Option<(IoApic, u32)>) {
    let value = source.map_or(0, |(a, pin)| a.base | LEVEL_VALID | u64::from(pin & 0xFF));
    LEVEL_SOURCE[usize::from(vector)].store(value, Ordering::Release);
}

/// From the interrupt entry, before the EOI: masks the level-triggered pin
/// `vector` comes from, if any, so that it does not fire again until dom0
/// ends it.
pub fn mask_level_source(vector: u8) {
    let value = LEVEL_SOURCE[usize::from(vector)].load(Ordering::Acquire);
    if value & LEVEL_VALID == 0 {
        return;
    }
    IoApic::new(value & !0xFFF).mask((value & 0xFF) as u32, true);
}
