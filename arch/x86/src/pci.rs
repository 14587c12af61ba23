//! The host's PCI configuration space as rxen reaches it on dom0's behalf:
//! the conf1 ports (registers below 0x100 of segment 0) and the ECAM
//! windows of the MCFG table (every register), each access checked against
//! the windows recorded at boot.

use core::sync::atomic::{AtomicU64, Ordering};

/// The host's conf1 mechanism (`0xCF8`/`0xCFC`): one latch for the whole
/// machine, so every configuration access rxen makes for dom0 sets it and
/// uses it under this lock.
static CONF1: spin::Mutex<()> = spin::Mutex::new(());

fn conf1_address(bdf: u16, reg: u16) -> u32 {
    (1 << 31) | u32::from(bdf) << 8 | u32::from(reg & 0xFC)
}

/// Reads `size` (1, 2 or 4) bytes at register `reg` (below 0x100, aligned
/// to the size) of function `bdf` of segment 0 through conf1.
pub fn pci_conf1_read(bdf: u16, reg: u16, size: u8) -> u32 {
    let _latch = CONF1.lock();
    crate::port_io::dom0_access(0xCF8, 4, false, conf1_address(bdf, reg));
    crate::port_io::dom0_access(0xCFC | (reg & 3), size, true, 0)
}

/// Writes the low `size` bytes of `value` at register `reg` of `bdf`
/// through conf1 (as [`pci_conf1_read`]).
pub fn pci_conf1_write(bdf: u16, reg: u16, size: u8, value: u32) {
    let _latch = CONF1.lock();
    crate::port_io::dom0_access(0xCF8, 4, false, conf1_address(bdf, reg));
    crate::port_io::dom0_access(0xCFC | (reg & 3), size, false, value);
}

/// ECAM windows (base, length) the hypervisor may access: those of the MCFG
/// table below 4 GiB (which the hypervisor's page tables identity-map
/// uncached). At most 8.
static ECAM: [(AtomicU64, AtomicU64); 8] = [const { (AtomicU64::new(0), AtomicU64::new(0)) }; 8];

/// Records the ECAM windows (base, length); those above 4 GiB, empty or
/// beyond the eighth are left out.
pub fn set_ecam_windows(windows: &[(u64, u64)]) {
    let usable = windows
        .iter()
        .filter(|(base, len)| *len > 0 && base.checked_add(*len).is_some_and(|end| end <= 1 << 32));
    for (slot, (base, len)) in ECAM.iter().zip(usable) {
        slot.0.store(*base, Ordering::Relaxed);
        slot.1.store(*len, Ordering::Release);
    }
}

/// Whether a `size`-byte access at `address` lies in a recorded window.
fn in_ecam(address: u64, size: u8) -> bool {
    ECAM.iter().any(|(base, len)| {
        let (base, len) = (base.load(Ordering::Relaxed), len.load(Ordering::Acquire));
        address >= base && address - base < len && len - (address - base) >= u64::from(size)
    })
}

/// Reads `size` (1, 2 or 4) bytes at ECAM address `address`; all ones if it
/// is not in a recorded window.
pub fn ecam_read(address: u64, size: u8) -> u32 {
    if !in_ecam(address, size) || !address.is_multiple_of(u64::from(size.max(1))) {
        return u32::MAX;
    }
    // SAFETY: the address is inside an MCFG window below 4 GiB (checked
    // above), which the hypervisor's page tables identity-map uncached, and
    // aligned to the size; a configuration read has no side effect on
    // memory rxen uses.
    unsafe {
        match size {
            1 => u32::from(core::ptr::read_volatile(address as *const u8)),
            2 => u32::from(core::ptr::read_volatile(address as *const u16)),
            _ => core::ptr::read_volatile(address as *const u32),
        }
    }
}

/// Writes the low `size` bytes of `value` at ECAM address `address`; dropped
/// if it is not in a recorded window.
pub fn ecam_write(address: u64, size: u8, value: u32) {
    if !in_ecam(address, size) || !address.is_multiple_of(u64::from(size.max(1))) {
        return;
    }
    // SAFETY: as in `ecam_read`; the write goes to a device's configuration
    // space, which dom0 owns.
    unsafe {
        match size {
            1 => core::ptr::write_volatile(address as *mut u8, value as u8),
            2 => core::ptr::write_volatile(address as *mut u16, value as u16),
            _ => core::ptr::write_volatile(address as *mut u32, value),
        }
    }
}

/// The host's RAM (start, end), recorded at boot: device-memory accesses on
/// dom0's behalf never touch it.
static RAM: spin::Once<alloc::vec::Vec<(u64, u64)>> = spin::Once::new();

/// The local APIC and IO-APIC pages: rxen's own, never a device's.
const INTERRUPT_CONTROLLERS: [(u64, u64); 2] =
    [(0xFEC0_0000, 0xFED0_0000), (0xFEE0_0000, 0xFEF0_0000)];

/// The end of the device memory the hypervisor's page tables map (at least
/// 4 GiB; above, with 1 GiB pages: [`crate::paging`]).
static DEVICE_LIMIT: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(1 << 32);

/// Records where the identity map of device memory ends (at boot, once the
/// page tables are active; never below 4 GiB).
pub fn set_device_limit(end: u64) {
    DEVICE_LIMIT.store(end.max(1 << 32), core::sync::atomic::Ordering::Relaxed);
}

/// The end of the device memory rxen can reach ([`device_read`]).
pub fn device_limit() -> u64 {
    DEVICE_LIMIT.load(core::sync::atomic::Ordering::Relaxed)
}

/// Records the host's RAM ranges (start, end) once, at boot.
pub fn set_ram(ranges: &[(u64, u64)]) {
    RAM.call_once(|| ranges.to_vec());
}

/// Whether a `size`-byte access at `addr` is to device memory rxen may
/// touch: aligned, below [`device_limit`] (identity-mapped uncached), not
/// RAM, not the interrupt controllers.
fn is_device(addr: u64, size: u32) -> bool {
    let Some(ram) = RAM.get() else {
        return false;
    };
    let Some(end) = addr.checked_add(u64::from(size)) else {
        return false;
    };
    matches!(size, 1 | 2 | 4 | 8)
        && addr.is_multiple_of(u64::from(size))
        && end <= device_limit()
        && !ram
            .iter()
            .chain(INTERRUPT_CONTROLLERS.iter())
            .any(|&(start, stop)| addr < stop && start < end)
}

/// Reads `size` bytes of device memory at `addr` (an MSI-X table's page);
/// all ones where [`is_device`] refuses.
pub fn device_read(addr: u64, size: u32) -> u64 {
    if !is_device(addr, size) {
        return u64::MAX >> (64 - 8 * size.clamp(1, 8));
    }
    // SAFETY: `addr` is aligned device memory below the mapped limit,
    // neither RAM nor rxen's interrupt controllers (checked above),
    // identity-mapped uncached; dom0 owns the device.
    unsafe {
        match size {
            1 => u64::from(core::ptr::read_volatile(addr as *const u8)),
            2 => u64::from(core::ptr::read_volatile(addr as *const u16)),
            4 => u64::from(core::ptr::read_volatile(addr as *const u32)),
            _ => core::ptr::read_volatile(addr as *const u64),
        }
    }
}

/// Writes `size` bytes of `value` to device memory at `addr`; dropped where
/// [`is_device`] refuses.
pub fn device_write(addr: u64, size: u32, value: u64) {
    if !is_device(addr, size) {
        return;
    }
    // SAFETY: as in `device_read`.
    unsafe {
        match size {
            1 => core::ptr::write_volatile(addr as *mut u8, value as u8),
            2 => core::ptr::write_volatile(addr as *mut u16, value as u16),
            4 => core::ptr::write_volatile(addr as *mut u32, value as u32),
            _ => core::ptr::write_volatile(addr as *mut u64, value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The only test of the recorded windows: what is in, at the edges, and
    /// what is refused (above 4 GiB, empty, ninth).
    #[test]
    fn ecam_accesses_stay_in_the_windows() {
        let mut windows = alloc::vec![
            (0xB000_0000, 0x1000_0000),
            (0x1_0000_0000, 0x10_0000),
            (0xE000_0000, 0),
            (0xFFF0_0000, 0x20_0000),
        ];
        windows.extend((0..8).map(|i| (0xC000_0000 + i * 0x10_0000, 0x10_0000)));
        set_ecam_windows(&windows);
        assert!(in_ecam(0xB000_0000, 4));
        assert!(in_ecam(0xBFFF_FFFC, 4));
        assert!(!in_ecam(0xBFFF_FFFE, 4), "runs past the window");
        assert!(in_ecam(0xBFFF_FFFF, 1));
        assert!(!in_ecam(0xAFFF_FFFF, 1));
        assert!(!in_ecam(0x1_0000_0000, 4), "above 4 GiB");
        assert!(!in_ecam(0xE000_0000, 1), "empty");
        assert!(!in_ecam(0xFFF0_0000, 1), "ends past 4 GiB");
        assert!(in_ecam(0xC000_0000, 4));
        // Eight kept: the ninth usable one (0xC070_0000) is left out.
        assert!(in_ecam(0xC060_0000, 4));
        assert!(!in_ecam(0xC070_0000, 4));
        // Refused accesses do not touch memory.
        assert_eq!(ecam_read(0x1_0000_0000, 4), u32::MAX);
        assert_eq!(ecam_read(0xB000_0001, 2), u32::MAX, "unaligned");
        ecam_write(0xE000_0000, 4, 0);
    }

    /// Device memory is what RAM and the interrupt controllers are not,
    /// below 4 GiB, aligned.
    #[test]
    fn device_accesses_stay_off_ram() {
        assert!(
            !is_device(0xFEBD_1000, 4),
            "nothing before the RAM is known"
        );
        set_ram(&[(0, 0x9_F000), (0x10_0000, 0x8000_0000)]);
        assert!(is_device(0xFEBD_1000, 4));
        assert!(is_device(0xA_0000, 8));
        assert!(!is_device(0x9_EFFC, 4));
        assert!(!is_device(0x7FFF_FFF8, 8));
        assert!(is_device(0x8000_0000, 8));
        assert!(!is_device(0xFEBD_1002, 4), "unaligned");
        assert!(!is_device(0xFEBD_1000, 3));
        assert!(!is_device(0xFEC0_0000, 4), "IO-APIC");
        assert!(!is_device(0xFEE0_00B0, 4), "local APIC");
        assert!(!is_device(0xFFFF_FFFC, 8), "past 4 GiB");
        assert!(!is_device(u64::MAX - 3, 4));
        assert_eq!(device_read(0x10_0000, 4), 0xFFFF_FFFF);
        device_write(0x10_0000, 4, 0);
        // With device memory mapped above 4 GiB (1 GiB pages), up to its end.
        set_device_limit(1 << 40);
        assert_eq!(device_limit(), 1 << 40);
        assert!(is_device(0x1_0000_2000, 4));
        assert!(is_device((1 << 40) - 8, 8));
        assert!(!is_device((1 << 40) - 4, 8), "runs past the mapped end");
        assert!(!is_device(1 << 40, 4));
        set_device_limit(0);
        assert_eq!(device_limit(), 1 << 32, "never below 4 GiB");
    }
}
