//! The PCI devices the hypervisor knows of (Xen's `drivers/passthrough/pci.c`
//! segments and `pdev`s, and `arch/x86/x86_64/mmconfig_64.c`'s MMCONFIG
//! regions): the control domain reports them with `physdev_op`
//! (`PHYSDEVOP_pci_mmcfg_reserved`, `pci_device_add`, `pci_device_remove`).
//!
//! Not wired to anything else yet: nothing routes interrupts or mediates
//! config space by this registry today; it records what dom0 reports, as
//! Xen's does, so the vPCI and MSI work can build on it.
//!
//! Memory is bounded: the segments are those of the host's MCFG table (and
//! segment 0), each a fixed bitmap of its 65536 (bus, devfn) slots. Xen
//! allocates a segment for any number dom0 names; rxen answers `-ENODEV`
//! for one the firmware does not describe.
// Guest or firmware input is parsed here: no unchecked arithmetic, no
// indexing that can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use alloc::vec::Vec;

use rxen_abi::errno::{self, Errno};
use rxen_abi::physdev::XEN_PCI_MMCFG_RESERVED;

/// One ECAM window of the host's MCFG table (`struct acpi_mcfg_allocation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct McfgRegion {
    /// Base address of the window.
    pub address: u64,
    /// PCI segment.
    pub segment: u16,
    /// First bus.
    pub start_bus: u8,
    /// Last bus.
    pub end_bus: u8,
}

impl McfgRegion {
    /// Bytes of the window: 1 MiB per bus (`None` if `end_bus` is below
    /// `start_bus`).
    pub fn window_len(&self) -> Option<u64> {
        let buses = self.end_bus.checked_sub(self.start_bus)?;
        Some((u64::from(buses) + 1) << 20)
    }

    /// Whether host-physical `addr` is in the window.
    pub fn contains(&self, addr: u64) -> bool {
        self.window_len()
            .is_some_and(|len| addr.checked_sub(self.address).is_some_and(|off| off < len))
    }

    /// The configuration access a `size`-byte access at `addr` in the window
    /// makes (Xen's `vpci_mmcfg_decode_addr`): bus, device and function from
    /// the offset's bits 20-27 and 12-19, the register from bits 0-11. Only
    /// 1, 2 and 4-byte accesses aligned to their size (an 8-byte access is
    /// two 4-byte ones, for the caller to split).
    pub fn decode(&self, addr: u64, size: u8) -> Option<crate::vpci::ConfigAccess> {
        if !self.contains(addr) {
            return None;
        }
        let offset = addr.checked_sub(self.address)?;
        let bus = self
            .start_bus
            .checked_add(u8::try_from(offset >> 20).ok()?)?;
        let devfn = ((offset >> 12) & 0xFF) as u8;
        let reg = (offset & 0xFFF) as u16;
        crate::vpci::vpci_access_allowed(reg, size).then_some(crate::vpci::ConfigAccess {
            sbdf: crate::vpci::Sbdf::from_bdf(self.segment, u16::from_be_bytes([bus, devfn])),
            reg,
            size,
        })
    }

    /// The address of register `reg` (below 0x1000) of `sbdf` in the
    /// window, if the function's bus is in it.
    pub fn address_of(&self, sbdf: crate::vpci::Sbdf, reg: u16) -> Option<u64> {
        if sbdf.seg != self.segment
            || !(self.start_bus..=self.end_bus).contains(&sbdf.bus)
            || reg > 0xFFF
        {
            return None;
        }
        let bus = u64::from(sbdf.bus.checked_sub(self.start_bus)?);
        let devfn = u64::from(sbdf.bdf() & 0xFF);
        self.address
            .checked_add(bus << 20 | devfn << 12 | u64::from(reg))
    }
}

/// Words of one segment's device bitmap: 256 buses × 256 functions.
const SLOT_WORDS: usize = 65536 / 64;

/// One PCI segment: which (bus, devfn) were reported.
struct Segment {
    number: u16,
    present: alloc::boxed::Box<[u64; SLOT_WORDS]>,
}

impl Segment {
    fn new(number: u16) -> Self {
        Self {
            number,
            present: alloc::boxed::Box::new([0; SLOT_WORDS]),
        }
    }

    /// Word and bit of slot (bus, devfn).
    fn slot(bus: u8, devfn: u8) -> (usize, u64) {
        let slot = usize::from(bus) << 8 | usize::from(devfn);
        (slot / 64, 1 << (slot % 64))
    }
}

/// The machine's PCI segments, MMCONFIG regions and reported devices.
pub struct PciRegistry {
    /// The host's MCFG regions and whether dom0 confirmed each reserved.
    mmcfg: Vec<(McfgRegion, bool)>,
    segments: Vec<Segment>,
}

impl PciRegistry {
    /// A registry for the host's MCFG regions (empty on a machine without
    /// MMCONFIG): segment 0 and every segment they name.
    pub fn new(mcfg: &[McfgRegion]) -> Self {
        let mut segments = alloc::vec![Segment::new(0)];
        for region in mcfg {
            if !segments.iter().any(|s| s.number == region.segment) {
                segments.push(Segment::new(region.segment));
            }
        }
        Self {
            mmcfg: mcfg.iter().map(|&region| (region, false)).collect(),
            segments,
        }
    }

    /// `PHYSDEVOP_pci_mmcfg_reserved`, as Xen's `pci_mmcfg_reserved`: the
    /// region must be one of the MCFG table's (same segment and buses):
    /// `-EIO` if its address differs, `-ENODEV` if there is none, `-EINVAL`
    /// for unknown flags. With `XEN_PCI_MMCFG_RESERVED` it is usable, else
    /// not.
    pub fn mmcfg_reserved(
        &mut self,
        address: u64,
        segment: u16,
        start_bus: u8,
        end_bus: u8,
        flags: u32,
    ) -> Result<(), Errno> {
        if flags & !XEN_PCI_MMCFG_RESERVED != 0 {
            return Err(errno::EINVAL);
        }
        let (region, usable) = self
            .mmcfg
            .iter_mut()
            .find(|(r, _)| r.segment == segment && r.start_bus == start_bus && r.end_bus == end_bus)
            .ok_or(errno::ENODEV)?;
        if region.address != address {
            return Err(errno::EIO);
        }
        *usable = flags & XEN_PCI_MMCFG_RESERVED != 0;
        Ok(())
    }

    /// Whether dom0 confirmed the MCFG region of `segment` holding `bus`.
    pub fn mmcfg_usable(&self, segment: u16, bus: u8) -> bool {
        self.mmcfg.iter().any(|(r, usable)| {
            *usable && r.segment == segment && (r.start_bus..=r.end_bus).contains(&bus)
        })
    }

    fn segment(&mut self, number: u16) -> Result<&mut Segment, Errno> {
        self.segments
            .iter_mut()
            .find(|s| s.number == number)
            .ok_or(errno::ENODEV)
    }

    /// `PHYSDEVOP_pci_device_add`, as Xen's `pci_add_device`: records the
    /// function (again is fine); a virtual function's physical function
    /// (`physfn`) is recorded too if it was not.
    pub fn add_device(
        &mut self,
        segment: u16,
        bus: u8,
        devfn: u8,
        physfn: Option<(u8, u8)>,
    ) -> Result<(), Errno> {
        let seg = self.segment(segment)?;
        for (bus, devfn) in physfn.into_iter().chain([(bus, devfn)]) {
            let (word, bit) = Segment::slot(bus, devfn);
            if let Some(slot) = seg.present.get_mut(word) {
                *slot |= bit;
            }
        }
        Ok(())
    }

    /// `PHYSDEVOP_pci_device_remove`, as Xen's `pci_remove_device`:
    /// `-ENODEV` for a function that was not reported.
    pub fn remove_device(&mut self, segment: u16, bus: u8, devfn: u8) -> Result<(), Errno> {
        let seg = self.segment(segment)?;
        let (word, bit) = Segment::slot(bus, devfn);
        match seg.present.get_mut(word) {
            Some(slot) if *slot & bit != 0 => {
                *slot &= !bit;
                Ok(())
            }
            _ => Err(errno::ENODEV),
        }
    }

    /// Whether function (segment, bus, devfn) was reported.
    pub fn is_present(&self, segment: u16, bus: u8, devfn: u8) -> bool {
        let (word, bit) = Segment::slot(bus, devfn);
        self.segments
            .iter()
            .find(|s| s.number == segment)
            .and_then(|s| s.present.get(word))
            .is_some_and(|w| w & bit != 0)
    }

    /// The MCFG region whose window holds host-physical `addr`.
    pub fn mcfg_region_at(&self, addr: u64) -> Option<McfgRegion> {
        self.mmcfg
            .iter()
            .map(|(r, _)| *r)
            .find(|r| r.contains(addr))
    }

    /// The ECAM address of register `reg` of `sbdf`, if an MCFG region has
    /// its bus.
    pub fn ecam_address(&self, sbdf: crate::vpci::Sbdf, reg: u16) -> Option<u64> {
        self.mmcfg.iter().find_map(|(r, _)| r.address_of(sbdf, reg))
    }

    /// How many functions were reported.
    pub fn nr_devices(&self) -> usize {
        self.segments
            .iter()
            .flat_map(|s| s.present.iter())
            .map(|w| w.count_ones() as usize)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use crate::vpci::{ConfigAccess, Sbdf};

    /// QEMU q35's window: segment 0, buses 0-255 at 0xB0000000.
    const Q35: McfgRegion = McfgRegion {
        address: 0xB000_0000,
        segment: 0,
        start_bus: 0,
        end_bus: 0xFF,
    };

    #[test]
    fn ecam_addresses_decode_as_xen() {
        let ahci = Sbdf {
            seg: 0,
            bus: 0,
            dev: 0x1F,
            func: 2,
        };
        assert_eq!(Q35.address_of(ahci, 0x100), Some(0xB00F_A100));
        assert_eq!(
            Q35.decode(0xB00F_A100, 4),
            Some(ConfigAccess {
                sbdf: ahci,
                reg: 0x100,
                size: 4
            })
        );
        // The last register of the last function of the last bus.
        let last = Sbdf::from_bdf(0, 0xFFFF);
        assert_eq!(Q35.address_of(last, 0xFFF), Some(0xBFFF_FFFF));
        assert_eq!(
            Q35.decode(0xBFFF_FFFF, 1).map(|a| (a.sbdf, a.reg)),
            Some((last, 0xFFF))
        );
        // Outside, unaligned, odd sizes.
        assert_eq!(Q35.decode(0xC000_0000, 1), None);
        assert_eq!(Q35.decode(0xAFFF_FFFF, 1), None);
        assert_eq!(Q35.decode(0xB000_0002, 4), None);
        assert_eq!(Q35.decode(0xB000_0000, 3), None);
        assert_eq!(Q35.decode(0xB000_0000, 8), None);
        assert_eq!(Q35.address_of(ahci, 0x1000), None);
        // A window of buses 0x10-0x1F: bus 0x10 is its first MiB.
        let w = McfgRegion {
            address: 0xE000_0000,
            segment: 1,
            start_bus: 0x10,
            end_bus: 0x1F,
        };
        assert_eq!(w.window_len(), Some(16 << 20));
        let f = Sbdf::from_bdf(1, 0x1008);
        assert_eq!(w.address_of(f, 4), Some(0xE000_8004));
        assert_eq!(w.decode(0xE000_8004, 2).map(|a| a.sbdf), Some(f));
        assert_eq!(
            w.address_of(Sbdf::from_bdf(0, 0x1008), 4),
            None,
            "other segment"
        );
        assert_eq!(
            w.address_of(Sbdf::from_bdf(1, 0x2008), 4),
            None,
            "other bus"
        );
        assert!(!w.contains(0xE100_0000));
        // A broken table entry (end below start) has no window.
        let broken = McfgRegion { end_bus: 0, ..w };
        assert_eq!(broken.window_len(), None);
        assert_eq!(broken.decode(0xE000_0000, 4), None);
        // The registry finds the window.
        let r = PciRegistry::new(&[Q35, w]);
        assert_eq!(r.mcfg_region_at(0xE000_8004), Some(w));
        assert_eq!(r.mcfg_region_at(0xD000_0000), None);
        assert_eq!(r.ecam_address(f, 4), Some(0xE000_8004));
    }

    use super::*;

    /// QEMU q35's MCFG: one window at 0xB0000000 for buses 0-255.
    fn q35() -> PciRegistry {
        PciRegistry::new(&[McfgRegion {
            address: 0xB000_0000,
            segment: 0,
            start_bus: 0,
            end_bus: 255,
        }])
    }

    #[test]
    fn mmcfg_reserved_confirms_the_firmware_region_only() {
        let mut pci = q35();
        assert!(!pci.mmcfg_usable(0, 0));
        assert_eq!(pci.mmcfg_reserved(0xB000_0000, 0, 0, 255, 1), Ok(()));
        assert!(pci.mmcfg_usable(0, 7));
        // Another address for the same buses: -EIO, as Xen.
        assert_eq!(
            pci.mmcfg_reserved(0xC000_0000, 0, 0, 255, 1),
            Err(errno::EIO)
        );
        // Buses or a segment the MCFG table does not have: -ENODEV.
        assert_eq!(
            pci.mmcfg_reserved(0xB000_0000, 0, 0, 127, 1),
            Err(errno::ENODEV)
        );
        assert_eq!(
            pci.mmcfg_reserved(0xB000_0000, 1, 0, 255, 1),
            Err(errno::ENODEV)
        );
        // Unknown flags: -EINVAL.
        assert_eq!(
            pci.mmcfg_reserved(0xB000_0000, 0, 0, 255, 3),
            Err(errno::EINVAL)
        );
        // Without the flag the region is not usable any more.
        assert_eq!(pci.mmcfg_reserved(0xB000_0000, 0, 0, 255, 0), Ok(()));
        assert!(!pci.mmcfg_usable(0, 7));
    }

    #[test]
    fn devices_are_added_once_and_removed() {
        let mut pci = q35();
        assert_eq!(pci.add_device(0, 0, 0x08, None), Ok(()));
        assert_eq!(pci.add_device(0, 0, 0x08, None), Ok(()));
        assert_eq!(pci.add_device(0, 255, 255, None), Ok(()));
        assert_eq!(pci.nr_devices(), 2);
        assert!(pci.is_present(0, 0, 0x08));
        assert!(pci.is_present(0, 255, 255));
        assert_eq!(pci.remove_device(0, 0, 0x08), Ok(()));
        assert_eq!(pci.remove_device(0, 0, 0x08), Err(errno::ENODEV));
        assert!(!pci.is_present(0, 0, 0x08));
        assert_eq!(pci.nr_devices(), 1);
    }

    #[test]
    fn a_virtual_function_brings_its_physical_function() {
        let mut pci = q35();
        assert_eq!(pci.add_device(0, 3, 0x11, Some((3, 0x10))), Ok(()));
        assert!(pci.is_present(0, 3, 0x10));
        assert!(pci.is_present(0, 3, 0x11));
    }

    #[test]
    fn segments_the_firmware_does_not_describe_are_refused() {
        let mut pci = q35();
        for seg in [1, 0xFFFF] {
            assert_eq!(pci.add_device(seg, 0, 0, None), Err(errno::ENODEV));
            assert_eq!(pci.remove_device(seg, 0, 0), Err(errno::ENODEV));
            assert!(!pci.is_present(seg, 0, 0));
        }
        // Without any MCFG region, segment 0 still exists.
        let mut bare = PciRegistry::new(&[]);
        assert_eq!(bare.add_device(0, 0, 0x10, None), Ok(()));
        assert_eq!(
            bare.mmcfg_reserved(0xB000_0000, 0, 0, 255, 1),
            Err(errno::ENODEV)
        );
    }
}
