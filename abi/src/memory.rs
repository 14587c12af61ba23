//! `xen/include/public/memory.h`: `__HYPERVISOR_memory_op` sub-ops and their
//! arguments, plus the E820 entry format its memory-map calls use.

use crate::xen::{DomId, GuestHandle, XenPfn, XenUlong};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

// ---------------------------------------------------------------------------
// Sub-op numbers.

/// `XENMEM_increase_reservation` (memory.h): arg is a [`XenMemoryReservation`].
pub const XENMEM_INCREASE_RESERVATION: u32 = 0;
/// `XENMEM_decrease_reservation` (memory.h): arg is a [`XenMemoryReservation`].
pub const XENMEM_DECREASE_RESERVATION: u32 = 1;
/// `XENMEM_maximum_ram_page` (memory.h): arg NULL; returns the highest MFN.
pub const XENMEM_MAXIMUM_RAM_PAGE: u32 = 2;
/// `XENMEM_current_reservation` (memory.h): arg is a `domid_t *`.
pub const XENMEM_CURRENT_RESERVATION: u32 = 3;
/// `XENMEM_maximum_reservation` (memory.h): arg is a `domid_t *`.
pub const XENMEM_MAXIMUM_RESERVATION: u32 = 4;
/// `XENMEM_machphys_mfn_list` (memory.h): arg is a [`XenMachphysMfnList`].
pub const XENMEM_MACHPHYS_MFN_LIST: u32 = 5;
/// `XENMEM_populate_physmap` (memory.h): arg is a [`XenMemoryReservation`].
pub const XENMEM_POPULATE_PHYSMAP: u32 = 6;
/// `XENMEM_add_to_physmap` (memory.h): arg is a [`XenAddToPhysmap`].
pub const XENMEM_ADD_TO_PHYSMAP: u32 = 7;
/// `XENMEM_memory_map` (memory.h): arg is a [`XenMemoryMap`] (own map).
pub const XENMEM_MEMORY_MAP: u32 = 9;
/// `XENMEM_machine_memory_map` (memory.h): arg is a [`XenMemoryMap`] (host).
pub const XENMEM_MACHINE_MEMORY_MAP: u32 = 10;
/// `XENMEM_exchange` (memory.h): arg is a [`XenMemoryExchange`].
pub const XENMEM_EXCHANGE: u32 = 11;
/// `XENMEM_machphys_mapping` (memory.h): arg is a [`XenMachphysMapping`].
pub const XENMEM_MACHPHYS_MAPPING: u32 = 12;
/// `XENMEM_set_memory_map` (memory.h): arg is a [`XenForeignMemoryMap`].
pub const XENMEM_SET_MEMORY_MAP: u32 = 13;
/// `XENMEM_maximum_gpfn` (memory.h): arg is a `domid_t *`.
pub const XENMEM_MAXIMUM_GPFN: u32 = 14;
/// `XENMEM_remove_from_physmap` (memory.h): arg is a [`XenRemoveFromPhysmap`].
pub const XENMEM_REMOVE_FROM_PHYSMAP: u32 = 15;
/// `XENMEM_set_pod_target` (memory.h): arg is a [`XenPodTarget`].
pub const XENMEM_SET_POD_TARGET: u32 = 16;
/// `XENMEM_get_pod_target` (memory.h): arg is a [`XenPodTarget`].
pub const XENMEM_GET_POD_TARGET: u32 = 17;
/// `XENMEM_get_sharing_freed_pages` (memory.h; tools).
pub const XENMEM_GET_SHARING_FREED_PAGES: u32 = 18;
/// `XENMEM_get_sharing_shared_pages` (memory.h; tools).
pub const XENMEM_GET_SHARING_SHARED_PAGES: u32 = 19;
/// `XENMEM_paging_op` (memory.h; tools).
pub const XENMEM_PAGING_OP: u32 = 20;
/// `XENMEM_access_op` (memory.h; tools).
pub const XENMEM_ACCESS_OP: u32 = 21;
/// `XENMEM_sharing_op` (memory.h; tools).
pub const XENMEM_SHARING_OP: u32 = 22;
/// `XENMEM_add_to_physmap_batch` (memory.h): arg is a [`XenAddToPhysmapBatch`].
pub const XENMEM_ADD_TO_PHYSMAP_BATCH: u32 = 23;
/// `XENMEM_claim_pages` (memory.h; tools): arg is a [`XenMemoryReservation`].
pub const XENMEM_CLAIM_PAGES: u32 = 24;
/// `XENMEM_machphys_compat_mfn_list` (memory.h).
pub const XENMEM_MACHPHYS_COMPAT_MFN_LIST: u32 = 25;
/// `XENMEM_get_vnumainfo` (memory.h).
pub const XENMEM_GET_VNUMAINFO: u32 = 26;
/// `XENMEM_reserved_device_memory_map` (memory.h; tools).
pub const XENMEM_RESERVED_DEVICE_MEMORY_MAP: u32 = 27;
/// `XENMEM_acquire_resource` (memory.h): arg is a [`XenMemAcquireResource`].
pub const XENMEM_ACQUIRE_RESOURCE: u32 = 28;

// ---------------------------------------------------------------------------
// XENMEMF_* (`mem_flags` of `xen_memory_reservation`).

/// `XENMEMF_address_bits(x)` (memory.h): restrict to addresses below 2^x.
pub const fn xenmemf_address_bits(x: u32) -> u32 {
    x
}
/// `XENMEMF_get_address_bits(x)` (memory.h).
pub const fn xenmemf_get_address_bits(x: u32) -> u32 {
    x & 0xff
}
/// `XENMEMF_node(x)` (memory.h): NUMA node to allocate from.
pub const fn xenmemf_node(x: u32) -> u32 {
    (x.wrapping_add(1)) << 8
}
/// `XENMEMF_get_node(x)` (memory.h).
pub const fn xenmemf_get_node(x: u32) -> u32 {
    ((x >> 8).wrapping_sub(1)) & 0xff
}
/// `XENMEMF_populate_on_demand` (memory.h).
pub const XENMEMF_POPULATE_ON_DEMAND: u32 = 1 << 16;
/// `XENMEMF_exact_node_request` (memory.h).
pub const XENMEMF_EXACT_NODE_REQUEST: u32 = 1 << 17;
/// `XENMEMF_vnode` (memory.h): the node given is a virtual node.
pub const XENMEMF_VNODE: u32 = 1 << 18;

// ---------------------------------------------------------------------------
// Map spaces.

/// `XENMAPSPACE_shared_info` (memory.h): the shared info page.
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
/// `XENMAPSPACE_grant_table` (memory.h): a grant table frame.
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;
/// `XENMAPSPACE_gmfn` (memory.h): a GMFN.
pub const XENMAPSPACE_GMFN: u32 = 2;
/// `XENMAPSPACE_gmfn_range` (memory.h): a GMFN range (add_to_physmap only).
pub const XENMAPSPACE_GMFN_RANGE: u32 = 3;
/// `XENMAPSPACE_gmfn_foreign` (memory.h): another domain's GMFN (batch only).
pub const XENMAPSPACE_GMFN_FOREIGN: u32 = 4;
/// `XENMAPSPACE_dev_mmio` (memory.h): device MMIO region (Arm only).
pub const XENMAPSPACE_DEV_MMIO: u32 = 5;
/// `XENMAPIDX_grant_table_status` (memory.h): OR'd into `idx` of a
/// `XENMAPSPACE_grant_table` mapping to map a status frame.
pub const XENMAPIDX_GRANT_TABLE_STATUS: u64 = 0x8000_0000;

// ---------------------------------------------------------------------------
// acquire_resource.

/// `XENMEM_resource_ioreq_server` (memory.h).
pub const XENMEM_RESOURCE_IOREQ_SERVER: u16 = 0;
/// `XENMEM_resource_grant_table` (memory.h).
pub const XENMEM_RESOURCE_GRANT_TABLE: u16 = 1;
/// `XENMEM_resource_vmtrace_buf` (memory.h).
pub const XENMEM_RESOURCE_VMTRACE_BUF: u16 = 2;
/// `XENMEM_resource_grant_table_id_shared` (memory.h).
pub const XENMEM_RESOURCE_GRANT_TABLE_ID_SHARED: u32 = 0;
/// `XENMEM_resource_grant_table_id_status` (memory.h).
pub const XENMEM_RESOURCE_GRANT_TABLE_ID_STATUS: u32 = 1;
/// `XENMEM_resource_ioreq_server_frame_bufioreq` (memory.h).
pub const XENMEM_RESOURCE_IOREQ_SERVER_FRAME_BUFIOREQ: u64 = 0;
/// `XENMEM_resource_ioreq_server_frame_ioreq(n)` (memory.h).
pub const fn xenmem_resource_ioreq_server_frame_ioreq(n: u64) -> u64 {
    1 + n
}

// ---------------------------------------------------------------------------
// E820.

/// `E820_RAM`: usable RAM (PC BIOS E820 type, as Xen's `asm/e820.h`).
pub const E820_RAM: u32 = 1;
/// `E820_RESERVED`: reserved.
pub const E820_RESERVED: u32 = 2;
/// `E820_ACPI`: ACPI reclaimable.
pub const E820_ACPI: u32 = 3;
/// `E820_NVS`: ACPI NVS.
pub const E820_NVS: u32 = 4;
/// `E820_UNUSABLE`: unusable.
pub const E820_UNUSABLE: u32 = 5;

/// One entry of the buffer of `XENMEM_memory_map` & co: "the same format as
/// returned by the BIOS INT 0x15 EAX=0xE820 call" (memory.h), i.e. Xen's
/// `struct __packed e820entry` (`asm/e820.h`), 20 bytes, unaligned.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C, packed)]
pub struct E820Entry {
    /// Start address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// `E820_*` type.
    pub type_: u32,
}

// ---------------------------------------------------------------------------
// Structures.

/// `struct xen_memory_reservation` (memory.h, interface >= 0x00030209).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenMemoryReservation {
    /// Handle to an array of `xen_pfn_t` (extent bases, IN and/or OUT).
    pub extent_start: GuestHandle,
    /// Number of extents.
    pub nr_extents: XenUlong,
    /// Each extent is 2^`extent_order` pages.
    pub extent_order: u32,
    /// `XENMEMF_*` flags.
    pub mem_flags: u32,
    /// Domain whose reservation changes (unprivileged: `DOMID_SELF`).
    pub domid: DomId,
    /// Implicit C tail padding.
    pub _pad0: [u8; 6],
}

/// `struct xen_memory_exchange` (memory.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenMemoryExchange {
    /// Extents to give up.
    pub in_: XenMemoryReservation,
    /// Extents to receive.
    pub out: XenMemoryReservation,
    /// OUT: input extents exchanged so far (caller must zero it).
    pub nr_exchanged: XenUlong,
}

/// `struct xen_machphys_mfn_list` (memory.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenMachphysMfnList {
    /// Size of the `extent_start` array.
    pub max_extents: u32,
    /// Implicit C padding.
    pub _pad0: [u8; 4],
    /// Handle to an array of `xen_pfn_t`.
    pub extent_start: GuestHandle,
    /// OUT: entries written.
    pub nr_extents: u32,
    /// Implicit C tail padding.
    pub _pad1: [u8; 4],
}

/// `struct xen_machphys_mapping` (memory.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenMachphysMapping {
    /// Start virtual address of the M2P table.
    pub v_start: XenUlong,
    /// End virtual address of the M2P table.
    pub v_end: XenUlong,
    /// Maximum MFN that can be looked up.
    pub max_mfn: XenUlong,
}

/// `struct xen_add_to_physmap` (memory.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenAddToPhysmap {
    /// Domain whose physmap changes.
    pub domid: DomId,
    /// Number of pages for `XENMAPSPACE_gmfn_range`.
    pub size: u16,
    /// `XENMAPSPACE_*`.
    pub space: u32,
    /// Index into the space (may carry [`XENMAPIDX_GRANT_TABLE_STATUS`]).
    pub idx: XenUlong,
    /// GPFN where the page should appear.
    pub gpfn: XenPfn,
}

/// `struct xen_add_to_physmap_batch` (memory.h, interface >= 0x00040700).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenAddToPhysmapBatch {
    /// Domain whose physmap changes.
    pub domid: DomId,
    /// `XENMAPSPACE_*`.
    pub space: u16,
    /// Number of pages.
    pub size: u16,
    /// Union `u`: `foreign_domid` for `gmfn_foreign`, else `res0` (must be 0).
    pub u: u16,
    /// Handle to `xen_ulong_t` indexes.
    pub idxs: GuestHandle,
    /// Handle to `xen_pfn_t` GPFNs.
    pub gpfns: GuestHandle,
    /// Handle to `int` per-index error codes (OUT).
    pub errs: GuestHandle,
}

/// `struct xen_remove_from_physmap` (memory.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenRemoveFromPhysmap {
    /// Domain whose physmap changes.
    pub domid: DomId,
    /// Implicit C padding.
    pub _pad0: [u8; 6],
    /// GPFN of the mapping to remove.
    pub gpfn: XenPfn,
}

/// `struct xen_memory_map` (memory.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenMemoryMap {
    /// IN: capacity of `buffer` in entries; OUT: entries stored.
    pub nr_entries: u32,
    /// Implicit C padding.
    pub _pad0: [u8; 4],
    /// Handle to an array of [`E820Entry`].
    pub buffer: GuestHandle,
}

/// `struct xen_foreign_memory_map` (memory.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenForeignMemoryMap {
    /// Domain whose map is set.
    pub domid: DomId,
    /// Implicit C padding.
    pub _pad0: [u8; 6],
    /// The map.
    pub map: XenMemoryMap,
}

/// `struct xen_pod_target` (memory.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenPodTarget {
    /// IN: target pages.
    pub target_pages: u64,
    /// OUT: total pages.
    pub tot_pages: u64,
    /// OUT: PoD cache pages.
    pub pod_cache_pages: u64,
    /// OUT: PoD entries.
    pub pod_entries: u64,
    /// IN: domain.
    pub domid: DomId,
    /// Implicit C tail padding.
    pub _pad0: [u8; 6],
}

/// `struct xen_mem_acquire_resource` (memory.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenMemAcquireResource {
    /// Domain whose resource is mapped.
    pub domid: DomId,
    /// `XENMEM_resource_*`.
    pub type_: u16,
    /// Type-specific id.
    pub id: u32,
    /// IN/OUT: number of frames.
    pub nr_frames: u32,
    /// Must be zero.
    pub pad: u32,
    /// Index of the first frame.
    pub frame: u64,
    /// Handle to `xen_pfn_t` frames.
    pub frame_list: GuestHandle,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assert_layout;

    #[test]
    fn numbers() {
        assert_eq!(XENMEM_POPULATE_PHYSMAP, 6);
        assert_eq!(XENMEM_ADD_TO_PHYSMAP, 7);
        assert_eq!(XENMEM_MEMORY_MAP, 9);
        assert_eq!(XENMEM_REMOVE_FROM_PHYSMAP, 15);
        assert_eq!(XENMEM_ACQUIRE_RESOURCE, 28);
        assert_eq!(XENMAPSPACE_GMFN_FOREIGN, 4);
        assert_eq!(xenmemf_node(0), 0x100);
        assert_eq!(xenmemf_get_node(xenmemf_node(3)), 3);
        assert_eq!(xenmemf_get_address_bits(xenmemf_address_bits(32)), 32);
    }

    #[test]
    fn e820_layout() {
        // C: __packed { u64 addr@0; u64 size@8; u32 type@16; } = 20 bytes.
        assert_layout!(E820Entry, size = 20, { addr: 0, size: 8, type_: 16 });
        assert_eq!(core::mem::align_of::<E820Entry>(), 1);
        let e = E820Entry {
            addr: 0x1000,
            size: 0x2000,
            type_: E820_RAM,
        };
        let mut two = [0u8; 40];
        two[20..].copy_from_slice(e.as_bytes());
        let back = E820Entry::read_from_bytes(&two[20..]).unwrap();
        assert_eq!({ back.addr }, 0x1000);
        assert_eq!({ back.type_ }, E820_RAM);
    }

    #[test]
    fn layouts() {
        // C: handle@0, xen_ulong_t@8, uint@16, uint@20, domid_t@24, pad to 32.
        assert_layout!(XenMemoryReservation, size = 32, {
            extent_start: 0, nr_extents: 8, extent_order: 16, mem_flags: 20,
            domid: 24, _pad0: 26,
        });
        // C: in@0 (32), out@32 (32), nr_exchanged@64; 72.
        assert_layout!(XenMemoryExchange, size = 72, { in_: 0, out: 32, nr_exchanged: 64 });
        // C: uint@0, handle@8, uint@16, pad to 24.
        assert_layout!(XenMachphysMfnList, size = 24, {
            max_extents: 0, extent_start: 8, nr_extents: 16,
        });
        assert_layout!(XenMachphysMapping, size = 24, { v_start: 0, v_end: 8, max_mfn: 16 });
        // C: domid_t@0, u16 size@2, uint space@4, xen_ulong_t idx@8, xen_pfn_t gpfn@16.
        assert_layout!(XenAddToPhysmap, size = 24, {
            domid: 0, size: 2, space: 4, idx: 8, gpfn: 16,
        });
        // C: domid@0, space@2, size@4, union u@6, idxs@8, gpfns@16, errs@24.
        assert_layout!(XenAddToPhysmapBatch, size = 32, {
            domid: 0, space: 2, size: 4, u: 6, idxs: 8, gpfns: 16, errs: 24,
        });
        // C: domid_t@0, xen_pfn_t gpfn@8.
        assert_layout!(XenRemoveFromPhysmap, size = 16, { domid: 0, gpfn: 8 });
        // C: uint nr_entries@0, handle buffer@8.
        assert_layout!(XenMemoryMap, size = 16, { nr_entries: 0, buffer: 8 });
        // C: domid_t@0, struct xen_memory_map map@8.
        assert_layout!(XenForeignMemoryMap, size = 24, { domid: 0, map: 8 });
        // C: four u64 @0/8/16/24, domid_t@32, pad to 40.
        assert_layout!(XenPodTarget, size = 40, {
            target_pages: 0, tot_pages: 8, pod_cache_pages: 16, pod_entries: 24, domid: 32,
        });
        // C: domid@0, type@2, id@4, nr_frames@8, pad@12, frame@16, frame_list@24.
        assert_layout!(XenMemAcquireResource, size = 32, {
            domid: 0, type_: 2, id: 4, nr_frames: 8, pad: 12, frame: 16, frame_list: 24,
        });
    }
}
