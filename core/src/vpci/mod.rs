//! PCI configuration space mediation for a PVH dom0, first piece: the
//! `0xCF8`/`0xCFC` (conf1) port mechanism of Xen's vPCI
//! (`arch/x86/hvm/io.c`: `vpci_portio_accept`, `vpci_portio_read`,
//! `vpci_portio_write`, `hvm_pci_decode_addr`; `include/xen/vpci.h`:
//! `vpci_access_allowed`).
//!
//! A 4-byte access to `0xCF8` reads or writes the domain's address latch
//! (Xen's `d->arch.hvm.pci_cf8`, one per domain, all 32 bits kept). An
//! access to `0xCFC-0xCFF` with the latch's enable bit (31) set is a
//! configuration access to segment 0, the bus, device and function of latch
//! bits 8-23, register `latch[7:2] | port[1:0]`, of the access's size; as in
//! Xen 4.17, the extended register bits 24-27 of the latch are ignored
//! (dom0 reaches registers above 0xFF through ECAM). Accesses that are not
//! 1, 2 or 4 bytes or not aligned to their size read all ones and write
//! nothing, and so does the data window while the enable bit is clear (Xen
//! answers them with its null handler).
//!
//! What a configuration access does is [`Vpci`]'s ([`msi`]): the device's
//! own bytes but for dom0's MSI messages, kept in a copy (Xen's `vpci_read`
//! / `vpci_write` with the MSI handlers of pvh-dom0.md §2.3). The
//! hypervisor carries the access out on the host (`hvm/vpci.rs`). ECAM
//! accesses are decoded by [`crate::pci::McfgRegion::decode`] and served the
//! same way. Not here yet: the BAR handlers, MSI-X.
// Guest input is decoded here: no unchecked arithmetic, no indexing that can
// panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use crate::ioport_policy::{PCI_CONF_ADDRESS, PCI_CONF_DATA};

pub mod msi;
pub mod msix;

pub use msi::{ConfigSpace, MsiEvent, MsiMessage, Vpci};
pub use msix::{DeviceMemory, Msix, MsixChange};

/// Latch bit 31: configuration cycles enabled (`CF8_ENABLED`).
pub const CF8_ENABLE: u32 = 1 << 31;

/// A PCI function: segment, bus, device (0-31), function (0-7) (Xen's
/// `pci_sbdf_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sbdf {
    /// Segment.
    pub seg: u16,
    /// Bus.
    pub bus: u8,
    /// Device, 0-31.
    pub dev: u8,
    /// Function, 0-7.
    pub func: u8,
}

impl Sbdf {
    /// From a 16-bit bus/device/function (`bus << 8 | dev << 3 | func`).
    pub fn from_bdf(seg: u16, bdf: u16) -> Self {
        let [bus, devfn] = bdf.to_be_bytes();
        Self {
            seg,
            bus,
            dev: devfn >> 3,
            func: devfn & 7,
        }
    }

    /// The 16-bit bus/device/function.
    pub fn bdf(self) -> u16 {
        u16::from_be_bytes([self.bus, (self.dev & 0x1F) << 3 | (self.func & 7)])
    }
}

impl core::fmt::Display for Sbdf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{}",
            self.seg, self.bus, self.dev, self.func
        )
    }
}

/// A decoded configuration space access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigAccess {
    /// The function.
    pub sbdf: Sbdf,
    /// The register (byte offset), aligned to `size`.
    pub reg: u16,
    /// 1, 2 or 4 bytes.
    pub size: u8,
}

/// Whether a `size`-byte access to register `reg` is one vPCI serves
/// (Xen's `vpci_access_allowed`: 1, 2 or 4 bytes, aligned to the size;
/// Xen also allows 8 on ECAM, which port I/O cannot issue).
pub fn vpci_access_allowed(reg: u16, size: u8) -> bool {
    matches!(size, 1 | 2 | 4) && reg & u16::from(size).wrapping_sub(1) == 0
}

/// All ones of `size` bytes (what an unanswered read returns).
fn all_ones(size: u8) -> u32 {
    match size {
        1 => 0xFF,
        2 => 0xFFFF,
        _ => 0xFFFF_FFFF,
    }
}

/// The outcome of a read of the conf1 ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortRead {
    /// Answered here: the latch, or all ones.
    Value(u32),
    /// A configuration read the platform carries out.
    Config(ConfigAccess),
}

/// The conf1 port mechanism of one domain (its `0xCF8` latch).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cf8Latch {
    cf8: u32,
}

impl Cf8Latch {
    /// Whether the mechanism takes a `size`-byte access at `port` (Xen's
    /// `vpci_portio_accept`): 4 bytes at `0xCF8`, anything starting in
    /// `0xCFC-0xCFF`.
    pub fn accept(port: u16, size: u8) -> bool {
        (port == PCI_CONF_ADDRESS && size == 4) || port & !3 == PCI_CONF_DATA
    }

    /// The latch as dom0 last wrote it.
    pub fn value(&self) -> u32 {
        self.cf8
    }

    /// The configuration access a `size`-byte access at data port `port`
    /// makes with the current latch (Xen's `hvm_pci_decode_addr` and
    /// `vpci_access_allowed`), if any.
    pub fn decode(&self, port: u16, size: u8) -> Option<ConfigAccess> {
        if self.cf8 & CF8_ENABLE == 0 || port & !3 != PCI_CONF_DATA {
            return None;
        }
        // Bits 8-23: bus, device, function (fit 16 bits after the mask).
        let bdf = ((self.cf8 & 0x00FF_FF00) >> 8) as u16;
        let reg = (self.cf8 & 0xFC) as u16 | (port & 3);
        vpci_access_allowed(reg, size).then_some(ConfigAccess {
            sbdf: Sbdf::from_bdf(0, bdf),
            reg,
            size,
        })
    }

    /// A `size`-byte read at `port` (Xen's `vpci_portio_read`).
    pub fn read(&self, port: u16, size: u8) -> PortRead {
        if port == PCI_CONF_ADDRESS && size == 4 {
            return PortRead::Value(self.cf8);
        }
        match self.decode(port, size) {
            Some(access) => PortRead::Config(access),
            None => PortRead::Value(all_ones(size)),
        }
    }

    /// A `size`-byte write of `value` at `port` (Xen's
    /// `vpci_portio_write`): the configuration write the platform carries
    /// out, with the value cut to the access's size, if any.
    pub fn write(&mut self, port: u16, size: u8, value: u32) -> Option<(ConfigAccess, u32)> {
        if port == PCI_CONF_ADDRESS && size == 4 {
            self.cf8 = value;
            return None;
        }
        self.decode(port, size)
            .map(|access| (access, value & all_ones(size)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux's conf1 address for bus/dev/fn/reg (`PCI_CONF1_ADDRESS`).
    fn conf1(bus: u32, dev: u32, func: u32, reg: u32) -> u32 {
        CF8_ENABLE | bus << 16 | dev << 11 | func << 8 | (reg & 0xFC)
    }

    fn access(bus: u8, dev: u8, func: u8, reg: u16, size: u8) -> ConfigAccess {
        ConfigAccess {
            sbdf: Sbdf {
                seg: 0,
                bus,
                dev,
                func,
            },
            reg,
            size,
        }
    }

    #[test]
    fn linux_probes_q35_host_bridge() {
        // pci_check_type1: save 0xCF8, write 0x80000000, read it back.
        let mut l = Cf8Latch::default();
        assert_eq!(l.read(0xCF8, 4), PortRead::Value(0));
        assert_eq!(l.write(0xCF8, 4, 0x8000_0000), None);
        assert_eq!(l.read(0xCF8, 4), PortRead::Value(0x8000_0000));
        // Vendor/device of 00:00.0 (8086:29c0 on q35).
        l.write(0xCF8, 4, conf1(0, 0, 0, 0));
        assert_eq!(l.read(0xCFC, 4), PortRead::Config(access(0, 0, 0, 0, 4)));
        assert_eq!(l.read(0xCFE, 2), PortRead::Config(access(0, 0, 0, 2, 2)));
        // Header type byte of 00:1f.0 (the ICH9 LPC bridge), register 0x0E.
        l.write(0xCF8, 4, conf1(0, 0x1F, 0, 0x0E));
        assert_eq!(
            l.read(0xCFE, 1),
            PortRead::Config(access(0, 0x1F, 0, 0x0E, 1))
        );
        // A write to the command register of 00:02.0, cut to 2 bytes.
        l.write(0xCF8, 4, conf1(0, 2, 0, 4));
        assert_eq!(
            l.write(0xCFC, 2, 0xDEAD_0007),
            Some((access(0, 2, 0, 4, 2), 0x0007))
        );
        // The highest bus/device/function.
        l.write(0xCF8, 4, conf1(255, 31, 7, 0xFC));
        assert_eq!(
            l.read(0xCFC, 4),
            PortRead::Config(access(255, 31, 7, 0xFC, 4))
        );
    }

    #[test]
    fn disabled_latch_and_misaligned_accesses_read_all_ones() {
        let mut l = Cf8Latch::default();
        // Enable bit clear.
        l.write(0xCF8, 4, conf1(0, 1, 0, 0) & !CF8_ENABLE);
        assert_eq!(l.read(0xCFC, 4), PortRead::Value(0xFFFF_FFFF));
        assert_eq!(l.read(0xCFD, 1), PortRead::Value(0xFF));
        assert_eq!(l.write(0xCFC, 4, 0), None);
        // Misaligned for the size.
        l.write(0xCF8, 4, conf1(0, 1, 0, 0x40));
        assert_eq!(l.read(0xCFD, 2), PortRead::Value(0xFFFF));
        assert_eq!(l.read(0xCFE, 4), PortRead::Value(0xFFFF_FFFF));
        assert_eq!(l.read(0xCFD, 4), PortRead::Value(0xFFFF_FFFF));
        assert_eq!(l.write(0xCFF, 2, 1), None);
        // Odd sizes.
        for size in [0, 3, 8, 255] {
            assert_eq!(l.decode(0xCFC, size), None);
            assert_eq!(l.write(0xCFC, size, 1), None);
        }
        // Ports outside the window never decode.
        for port in [0xCF8, 0xCF9, 0xCFB, 0xD00, 0, 0xFFFF] {
            assert_eq!(l.decode(port, 1), None, "{port:#x}");
        }
    }

    #[test]
    fn latch_keeps_every_bit_and_ignores_extended_register_bits() {
        let mut l = Cf8Latch::default();
        // Reserved bits 24-30 (AMD extended register bits 24-27) and the low
        // two bits: kept in the latch, not part of the decoded register.
        l.write(0xCF8, 4, 0xFF00_0103);
        assert_eq!(l.value(), 0xFF00_0103);
        assert_eq!(l.read(0xCF8, 4), PortRead::Value(0xFF00_0103));
        assert_eq!(l.read(0xCFC, 4), PortRead::Config(access(0, 0, 1, 0, 4)));
        // Only 4-byte accesses reach the latch.
        assert!(Cf8Latch::accept(0xCF8, 4));
        for size in [1, 2] {
            assert!(!Cf8Latch::accept(0xCF8, size));
        }
        for port in 0xCFC..=0xCFF {
            assert!(Cf8Latch::accept(port, 1));
        }
        assert!(!Cf8Latch::accept(0xCF9, 1));
        assert!(!Cf8Latch::accept(0xD00, 1));
        // A non-latch access at 0xCF8 changes nothing (the policy denies it;
        // here it decodes to nothing).
        assert_eq!(l.write(0xCF8, 2, 0), None);
        assert_eq!(l.value(), 0xFF00_0103);
    }

    #[test]
    fn sbdf_round_trips_and_garbage_is_harmless() {
        for bdf in [0u16, 0x00F8, 0x0100, 0xFFFF, 0x1234] {
            assert_eq!(Sbdf::from_bdf(0, bdf).bdf(), bdf);
        }
        assert_eq!(Sbdf::from_bdf(0, 0x00FA).to_string(), "0000:00:1f.2");
        let mut l = Cf8Latch::default();
        for cf8 in [0, u32::MAX, 0x8000_0000, 0x7FFF_FFFF, 0xAAAA_AAAA] {
            l.write(0xCF8, 4, cf8);
            for port in 0xCF0..=0xD08 {
                for size in 0..=8 {
                    let _ = l.read(port, size);
                    let mut copy = l;
                    if let Some((a, _)) = copy.write(port, size, u32::MAX) {
                        assert!(vpci_access_allowed(a.reg, a.size));
                        assert!(a.reg < 0x100);
                    }
                }
            }
        }
    }
}
