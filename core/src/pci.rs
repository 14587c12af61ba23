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
