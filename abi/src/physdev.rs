//! `xen/include/public/physdev.h`: `__HYPERVISOR_physdev_op`, the control
//! domain's reports about physical devices (the PCI sub-ops a PVH dom0
//! issues).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `PHYSDEVOP_eoi` (physdev.h).
pub const PHYSDEVOP_EOI: u32 = 12;
/// `PHYSDEVOP_irq_status_query` (physdev.h).
pub const PHYSDEVOP_IRQ_STATUS_QUERY: u32 = 5;
/// `PHYSDEVOP_map_pirq` (physdev.h).
pub const PHYSDEVOP_MAP_PIRQ: u32 = 13;
/// `PHYSDEVOP_unmap_pirq` (physdev.h).
pub const PHYSDEVOP_UNMAP_PIRQ: u32 = 14;
/// `PHYSDEVOP_get_free_pirq` (physdev.h).
pub const PHYSDEVOP_GET_FREE_PIRQ: u32 = 23;
/// `PHYSDEVOP_pci_mmcfg_reserved` (physdev.h): arg is a
/// [`PhysdevPciMmcfgReserved`].
pub const PHYSDEVOP_PCI_MMCFG_RESERVED: u32 = 24;
/// `PHYSDEVOP_pci_device_add` (physdev.h): arg is a [`PhysdevPciDeviceAdd`].
pub const PHYSDEVOP_PCI_DEVICE_ADD: u32 = 25;
/// `PHYSDEVOP_pci_device_remove` (physdev.h): arg is a [`PhysdevPciDevice`].
pub const PHYSDEVOP_PCI_DEVICE_REMOVE: u32 = 26;
/// `PHYSDEVOP_dbgp_op` (physdev.h).
pub const PHYSDEVOP_DBGP_OP: u32 = 29;

/// `XEN_PCI_MMCFG_RESERVED` (physdev.h): the region is reserved in the
/// firmware's memory map (so usable).
pub const XEN_PCI_MMCFG_RESERVED: u32 = 1;

/// `XEN_PCI_DEV_EXTFN` (physdev.h): an ARI extended function.
pub const XEN_PCI_DEV_EXTFN: u32 = 1;
/// `XEN_PCI_DEV_VIRTFN` (physdev.h): an SR-IOV virtual function.
pub const XEN_PCI_DEV_VIRTFN: u32 = 2;
/// `XEN_PCI_DEV_PXM` (physdev.h): `optarr[0]` holds the proximity domain.
pub const XEN_PCI_DEV_PXM: u32 = 4;

/// `struct physdev_pci_mmcfg_reserved` (physdev.h), 16 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct PhysdevPciMmcfgReserved {
    /// Base of the ECAM window.
    pub address: u64,
    /// PCI segment.
    pub segment: u16,
    /// First bus of the window.
    pub start_bus: u8,
    /// Last bus of the window.
    pub end_bus: u8,
    /// `XEN_PCI_MMCFG_*`.
    pub flags: u32,
}

/// `struct physdev_pci_device_add` (physdev.h), 12 bytes before its
/// flexible `optarr[]`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct PhysdevPciDeviceAdd {
    /// PCI segment.
    pub seg: u16,
    /// Bus.
    pub bus: u8,
    /// Device and function.
    pub devfn: u8,
    /// `XEN_PCI_DEV_*`.
    pub flags: u32,
    /// The physical function of a virtual function: bus.
    pub physfn_bus: u8,
    /// The physical function of a virtual function: devfn.
    pub physfn_devfn: u8,
    /// Padding to `optarr`.
    pub pad: [u8; 2],
}

/// `struct physdev_pci_device` (physdev.h), 4 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct PhysdevPciDevice {
    /// PCI segment.
    pub seg: u16,
    /// Bus.
    pub bus: u8,
    /// Device and function.
    pub devfn: u8,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assert_layout;

    #[test]
    fn layouts_match_physdev_h() {
        assert_layout!(PhysdevPciMmcfgReserved, size = 16, {
            address: 0, segment: 8, start_bus: 10, end_bus: 11, flags: 12,
        });
        assert_layout!(PhysdevPciDeviceAdd, size = 12, {
            seg: 0, bus: 2, devfn: 3, flags: 4, physfn_bus: 8, physfn_devfn: 9,
        });
        assert_layout!(PhysdevPciDevice, size = 4, { seg: 0, bus: 2, devfn: 3 });
    }
}
