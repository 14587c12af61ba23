//! `xen/include/public/grant_table.h`: the v1 grant entry, `GTF_*`/`GNTMAP_*`
//! flags, `GNTST_*` status codes and the `__HYPERVISOR_grant_table_op`
//! sub-ops with their argument structures.

use crate::xen::{DomId, GuestHandle, XenPfn};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `grant_ref_t` (grant_table.h): index into a grant table.
pub type GrantRef = u32;
/// `grant_handle_t` (grant_table.h): handle of a grant mapping.
pub type GrantHandle = u32;
/// `grant_status_t` (grant_table.h): a v2 status-frame entry.
pub type GrantStatus = u16;

// ---------------------------------------------------------------------------
// Sub-op numbers.

/// `GNTTABOP_map_grant_ref` (grant_table.h): array of [`GnttabMapGrantRef`].
pub const GNTTABOP_MAP_GRANT_REF: u32 = 0;
/// `GNTTABOP_unmap_grant_ref` (grant_table.h): array of [`GnttabUnmapGrantRef`].
pub const GNTTABOP_UNMAP_GRANT_REF: u32 = 1;
/// `GNTTABOP_setup_table` (grant_table.h): [`GnttabSetupTable`].
pub const GNTTABOP_SETUP_TABLE: u32 = 2;
/// `GNTTABOP_dump_table` (grant_table.h): [`GnttabDumpTable`].
pub const GNTTABOP_DUMP_TABLE: u32 = 3;
/// `GNTTABOP_transfer` (grant_table.h): array of [`GnttabTransfer`].
pub const GNTTABOP_TRANSFER: u32 = 4;
/// `GNTTABOP_copy` (grant_table.h): array of [`GnttabCopy`].
pub const GNTTABOP_COPY: u32 = 5;
/// `GNTTABOP_query_size` (grant_table.h): [`GnttabQuerySize`].
pub const GNTTABOP_QUERY_SIZE: u32 = 6;
/// `GNTTABOP_unmap_and_replace` (grant_table.h): array of [`GnttabUnmapAndReplace`].
pub const GNTTABOP_UNMAP_AND_REPLACE: u32 = 7;
/// `GNTTABOP_set_version` (grant_table.h): [`GnttabSetVersion`].
pub const GNTTABOP_SET_VERSION: u32 = 8;
/// `GNTTABOP_get_status_frames` (grant_table.h): [`GnttabGetStatusFrames`].
pub const GNTTABOP_GET_STATUS_FRAMES: u32 = 9;
/// `GNTTABOP_get_version` (grant_table.h): [`GnttabGetVersion`].
pub const GNTTABOP_GET_VERSION: u32 = 10;
/// `GNTTABOP_swap_grant_ref` (grant_table.h): array of [`GnttabSwapGrantRef`].
pub const GNTTABOP_SWAP_GRANT_REF: u32 = 11;
/// `GNTTABOP_cache_flush` (grant_table.h): array of [`GnttabCacheFlush`].
pub const GNTTABOP_CACHE_FLUSH: u32 = 12;

// ---------------------------------------------------------------------------
// Reserved entries.

/// `GNTTAB_NR_RESERVED_ENTRIES` (grant_table.h): entries kept for the toolstack.
pub const GNTTAB_NR_RESERVED_ENTRIES: u32 = 8;
/// `GNTTAB_RESERVED_CONSOLE` (grant_table.h): console ring grant.
pub const GNTTAB_RESERVED_CONSOLE: GrantRef = 0;
/// `GNTTAB_RESERVED_XENSTORE` (grant_table.h): xenstore ring grant.
pub const GNTTAB_RESERVED_XENSTORE: GrantRef = 1;

// ---------------------------------------------------------------------------
// GTF_* (grant entry `flags`).

/// `GTF_invalid` (grant_table.h): entry grants nothing.
pub const GTF_INVALID: u16 = 0;
/// `GTF_permit_access` (grant_table.h): `domid` may map/access `frame`.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// `GTF_accept_transfer` (grant_table.h): `domid` may transfer into `frame`.
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
/// `GTF_transitive` (grant_table.h): transitive grant (v2 only).
pub const GTF_TRANSITIVE: u16 = 3;
/// `GTF_type_mask` (grant_table.h).
pub const GTF_TYPE_MASK: u16 = 3;
/// `_GTF_readonly` (grant_table.h): bit number.
pub const GTF_READONLY_SHIFT: u16 = 2;
/// `GTF_readonly` (grant_table.h): restrict to read-only mappings.
pub const GTF_READONLY: u16 = 1 << GTF_READONLY_SHIFT;
/// `_GTF_reading` (grant_table.h): bit number.
pub const GTF_READING_SHIFT: u16 = 3;
/// `GTF_reading` (grant_table.h): grant is mapped for reading (set by Xen).
pub const GTF_READING: u16 = 1 << GTF_READING_SHIFT;
/// `_GTF_writing` (grant_table.h): bit number.
pub const GTF_WRITING_SHIFT: u16 = 4;
/// `GTF_writing` (grant_table.h): grant is mapped for writing (set by Xen).
pub const GTF_WRITING: u16 = 1 << GTF_WRITING_SHIFT;
/// `_GTF_PWT` (grant_table.h): bit number.
pub const GTF_PWT_SHIFT: u16 = 5;
/// `GTF_PWT` (grant_table.h): cache attribute PWT.
pub const GTF_PWT: u16 = 1 << GTF_PWT_SHIFT;
/// `_GTF_PCD` (grant_table.h): bit number.
pub const GTF_PCD_SHIFT: u16 = 6;
/// `GTF_PCD` (grant_table.h): cache attribute PCD.
pub const GTF_PCD: u16 = 1 << GTF_PCD_SHIFT;
/// `_GTF_PAT` (grant_table.h): bit number.
pub const GTF_PAT_SHIFT: u16 = 7;
/// `GTF_PAT` (grant_table.h): cache attribute PAT.
pub const GTF_PAT: u16 = 1 << GTF_PAT_SHIFT;
/// `_GTF_sub_page` (grant_table.h): bit number.
pub const GTF_SUB_PAGE_SHIFT: u16 = 8;
/// `GTF_sub_page` (grant_table.h): sub-page grant (v2 only).
pub const GTF_SUB_PAGE: u16 = 1 << GTF_SUB_PAGE_SHIFT;
/// `_GTF_transfer_committed` (grant_table.h): bit number.
pub const GTF_TRANSFER_COMMITTED_SHIFT: u16 = 2;
/// `GTF_transfer_committed` (grant_table.h).
pub const GTF_TRANSFER_COMMITTED: u16 = 1 << GTF_TRANSFER_COMMITTED_SHIFT;
/// `_GTF_transfer_completed` (grant_table.h): bit number.
pub const GTF_TRANSFER_COMPLETED_SHIFT: u16 = 3;
/// `GTF_transfer_completed` (grant_table.h).
pub const GTF_TRANSFER_COMPLETED: u16 = 1 << GTF_TRANSFER_COMPLETED_SHIFT;

// ---------------------------------------------------------------------------
// GNTMAP_* (map/unmap `flags`).

/// `_GNTMAP_device_map` (grant_table.h): bit number.
pub const GNTMAP_DEVICE_MAP_SHIFT: u32 = 0;
/// `GNTMAP_device_map` (grant_table.h): map for I/O devices.
pub const GNTMAP_DEVICE_MAP: u32 = 1 << GNTMAP_DEVICE_MAP_SHIFT;
/// `_GNTMAP_host_map` (grant_table.h): bit number.
pub const GNTMAP_HOST_MAP_SHIFT: u32 = 1;
/// `GNTMAP_host_map` (grant_table.h): map for host CPUs.
pub const GNTMAP_HOST_MAP: u32 = 1 << GNTMAP_HOST_MAP_SHIFT;
/// `_GNTMAP_readonly` (grant_table.h): bit number.
pub const GNTMAP_READONLY_SHIFT: u32 = 2;
/// `GNTMAP_readonly` (grant_table.h): read-only mapping.
pub const GNTMAP_READONLY: u32 = 1 << GNTMAP_READONLY_SHIFT;
/// `_GNTMAP_application_map` (grant_table.h): bit number.
pub const GNTMAP_APPLICATION_MAP_SHIFT: u32 = 3;
/// `GNTMAP_application_map` (grant_table.h): usable by applications too.
pub const GNTMAP_APPLICATION_MAP: u32 = 1 << GNTMAP_APPLICATION_MAP_SHIFT;
/// `_GNTMAP_contains_pte` (grant_table.h): bit number.
pub const GNTMAP_CONTAINS_PTE_SHIFT: u32 = 4;
/// `GNTMAP_contains_pte` (grant_table.h): `host_addr` is a PTE's address.
pub const GNTMAP_CONTAINS_PTE: u32 = 1 << GNTMAP_CONTAINS_PTE_SHIFT;
/// `_GNTMAP_guest_avail0` (grant_table.h): first guest-available bit.
pub const GNTMAP_GUEST_AVAIL0_SHIFT: u32 = 16;
/// `GNTMAP_guest_avail_mask` (grant_table.h).
pub const GNTMAP_GUEST_AVAIL_MASK: u32 = u32::MAX << GNTMAP_GUEST_AVAIL0_SHIFT;

// ---------------------------------------------------------------------------
// GNTCOPY_* and GNTTAB_CACHE_*.

/// `_GNTCOPY_source_gref` (grant_table.h): bit number.
pub const GNTCOPY_SOURCE_GREF_SHIFT: u16 = 0;
/// `GNTCOPY_source_gref` (grant_table.h): `source.u` is a grant ref.
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << GNTCOPY_SOURCE_GREF_SHIFT;
/// `_GNTCOPY_dest_gref` (grant_table.h): bit number.
pub const GNTCOPY_DEST_GREF_SHIFT: u16 = 1;
/// `GNTCOPY_dest_gref` (grant_table.h): `dest.u` is a grant ref.
pub const GNTCOPY_DEST_GREF: u16 = 1 << GNTCOPY_DEST_GREF_SHIFT;

/// `GNTTAB_CACHE_CLEAN` (grant_table.h).
pub const GNTTAB_CACHE_CLEAN: u32 = 1 << 0;
/// `GNTTAB_CACHE_INVAL` (grant_table.h).
pub const GNTTAB_CACHE_INVAL: u32 = 1 << 1;
/// `GNTTAB_CACHE_SOURCE_GREF` (grant_table.h).
pub const GNTTAB_CACHE_SOURCE_GREF: u32 = 1 << 31;

// ---------------------------------------------------------------------------
// GNTST_* status codes.

/// `GNTST_okay` (grant_table.h): normal return.
pub const GNTST_OKAY: i16 = 0;
/// `GNTST_general_error` (grant_table.h): general undefined error.
pub const GNTST_GENERAL_ERROR: i16 = -1;
/// `GNTST_bad_domain` (grant_table.h): unrecognised domain id.
pub const GNTST_BAD_DOMAIN: i16 = -2;
/// `GNTST_bad_gntref` (grant_table.h): unrecognised or inappropriate gntref.
pub const GNTST_BAD_GNTREF: i16 = -3;
/// `GNTST_bad_handle` (grant_table.h): unrecognised or inappropriate handle.
pub const GNTST_BAD_HANDLE: i16 = -4;
/// `GNTST_bad_virt_addr` (grant_table.h): inappropriate virtual address.
pub const GNTST_BAD_VIRT_ADDR: i16 = -5;
/// `GNTST_bad_dev_addr` (grant_table.h): inappropriate device address.
pub const GNTST_BAD_DEV_ADDR: i16 = -6;
/// `GNTST_no_device_space` (grant_table.h): out of space in the I/O MMU.
pub const GNTST_NO_DEVICE_SPACE: i16 = -7;
/// `GNTST_permission_denied` (grant_table.h): not enough privilege.
pub const GNTST_PERMISSION_DENIED: i16 = -8;
/// `GNTST_bad_page` (grant_table.h): page invalid for the op.
pub const GNTST_BAD_PAGE: i16 = -9;
/// `GNTST_bad_copy_arg` (grant_table.h): copy arguments cross a page boundary.
pub const GNTST_BAD_COPY_ARG: i16 = -10;
/// `GNTST_address_too_big` (grant_table.h): transfer page address too large.
pub const GNTST_ADDRESS_TOO_BIG: i16 = -11;
/// `GNTST_eagain` (grant_table.h): operation not done; try again.
pub const GNTST_EAGAIN: i16 = -12;
/// `GNTST_no_space` (grant_table.h): out of space (handles etc).
pub const GNTST_NO_SPACE: i16 = -13;

// ---------------------------------------------------------------------------
// Structures.

/// `struct grant_entry_v1` (grant_table.h): one v1 grant table entry.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GrantEntryV1 {
    /// `GTF_*` type and flags.
    pub flags: u16,
    /// Domain being granted foreign privileges.
    pub domid: DomId,
    /// Granted GFN (or transferred MFN).
    pub frame: u32,
}

/// `struct gnttab_map_grant_ref` (grant_table.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabMapGrantRef {
    /// IN: address to map at (GFN-based address for HVM).
    pub host_addr: u64,
    /// IN: `GNTMAP_*`.
    pub flags: u32,
    /// IN: grant reference.
    pub ref_: GrantRef,
    /// IN: granting domain.
    pub dom: DomId,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// OUT: mapping handle.
    pub handle: GrantHandle,
    /// OUT: bus address for device mappings.
    pub dev_bus_addr: u64,
}

/// `struct gnttab_unmap_grant_ref` (grant_table.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabUnmapGrantRef {
    /// IN: host address of the mapping.
    pub host_addr: u64,
    /// IN: device bus address of the mapping.
    pub dev_bus_addr: u64,
    /// IN: mapping handle.
    pub handle: GrantHandle,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Implicit C tail padding.
    pub _pad0: [u8; 2],
}

/// `struct gnttab_setup_table` (grant_table.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabSetupTable {
    /// IN: domain.
    pub dom: DomId,
    /// Implicit C padding.
    pub _pad0: [u8; 2],
    /// IN: number of frames wanted.
    pub nr_frames: u32,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Implicit C padding.
    pub _pad1: [u8; 6],
    /// OUT: handle to `xen_pfn_t` frame list.
    pub frame_list: GuestHandle,
}

/// `struct gnttab_dump_table` (grant_table.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabDumpTable {
    /// IN: domain.
    pub dom: DomId,
    /// OUT: `GNTST_*`.
    pub status: i16,
}

/// `struct gnttab_transfer` (grant_table.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabTransfer {
    /// IN: frame to transfer.
    pub mfn: XenPfn,
    /// IN: receiving domain.
    pub domid: DomId,
    /// Implicit C padding.
    pub _pad0: [u8; 2],
    /// IN: receiver's grant reference.
    pub ref_: GrantRef,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Implicit C tail padding.
    pub _pad1: [u8; 6],
}

/// `struct gnttab_copy_ptr` (grant_table.h): one side of a [`GnttabCopy`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabCopyPtr {
    /// Union `u`: `grant_ref_t ref` (low 32 bits) or `xen_pfn_t gmfn`.
    pub u: u64,
    /// Domain owning the frame.
    pub domid: DomId,
    /// Byte offset within the frame.
    pub offset: u16,
    /// Implicit C tail padding.
    pub _pad0: [u8; 4],
}

impl GnttabCopyPtr {
    /// `u.ref` (when the `GNTCOPY_*_gref` flag is set).
    pub const fn gref(&self) -> GrantRef {
        self.u as u32
    }
    /// `u.gmfn` (when the `GNTCOPY_*_gref` flag is clear).
    pub const fn gmfn(&self) -> XenPfn {
        self.u
    }
    /// Sets `u.ref`, leaving the upper 32 bits of the union as they were.
    pub fn set_gref(&mut self, gref: GrantRef) {
        self.u = (self.u & !0xffff_ffff) | u64::from(gref);
    }
}

/// `struct gnttab_copy` (grant_table.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabCopy {
    /// IN: source.
    pub source: GnttabCopyPtr,
    /// IN: destination.
    pub dest: GnttabCopyPtr,
    /// IN: bytes to copy.
    pub len: u16,
    /// IN: `GNTCOPY_*`.
    pub flags: u16,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Implicit C tail padding.
    pub _pad0: [u8; 2],
}

/// `struct gnttab_query_size` (grant_table.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabQuerySize {
    /// IN: domain.
    pub dom: DomId,
    /// Implicit C padding.
    pub _pad0: [u8; 2],
    /// OUT: current frames.
    pub nr_frames: u32,
    /// OUT: maximum frames.
    pub max_nr_frames: u32,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Implicit C tail padding.
    pub _pad1: [u8; 2],
}

/// `struct gnttab_unmap_and_replace` (grant_table.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabUnmapAndReplace {
    /// IN: host address of the mapping.
    pub host_addr: u64,
    /// IN: address whose mapping replaces it.
    pub new_addr: u64,
    /// IN: mapping handle.
    pub handle: GrantHandle,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Implicit C tail padding.
    pub _pad0: [u8; 2],
}

/// `struct gnttab_set_version` (grant_table.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabSetVersion {
    /// IN/OUT: grant table version (1 or 2).
    pub version: u32,
}

/// `struct gnttab_get_status_frames` (grant_table.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabGetStatusFrames {
    /// IN: number of frames.
    pub nr_frames: u32,
    /// IN: domain.
    pub dom: DomId,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// OUT: handle to `uint64_t` frame list.
    pub frame_list: GuestHandle,
}

/// `struct gnttab_get_version` (grant_table.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabGetVersion {
    /// IN: domain.
    pub dom: DomId,
    /// Padding (C `pad`).
    pub pad: u16,
    /// OUT: version.
    pub version: u32,
}

/// `struct gnttab_swap_grant_ref` (grant_table.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabSwapGrantRef {
    /// IN: first reference.
    pub ref_a: GrantRef,
    /// IN: second reference.
    pub ref_b: GrantRef,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Implicit C tail padding.
    pub _pad0: [u8; 2],
}

/// `struct gnttab_cache_flush` (grant_table.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabCacheFlush {
    /// Union `a`: `uint64_t dev_bus_addr` or `grant_ref_t ref` (low 32 bits).
    pub a: u64,
    /// Offset from the start of the grant.
    pub offset: u16,
    /// Size within the grant.
    pub length: u16,
    /// `GNTTAB_CACHE_*`.
    pub op: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assert_layout;

    #[test]
    fn numbers() {
        assert_eq!(GNTTABOP_COPY, 5);
        assert_eq!(GNTTABOP_CACHE_FLUSH, 12);
        assert_eq!(GTF_READONLY, 4);
        assert_eq!(GTF_SUB_PAGE, 0x100);
        assert_eq!(GNTMAP_HOST_MAP, 2);
        assert_eq!(GNTMAP_GUEST_AVAIL_MASK, 0xffff_0000);
        assert_eq!(GNTST_BAD_GNTREF, -3);
        assert_eq!(GNTST_NO_SPACE, -13);
    }

    #[test]
    fn layouts() {
        // C: u16 flags@0, domid_t@2, u32 frame@4; 8.
        assert_layout!(GrantEntryV1, size = 8, { flags: 0, domid: 2, frame: 4 });
        // C: u64@0, u32 flags@8, ref@12, domid_t dom@16, i16 status@18,
        // handle@20, u64 dev_bus_addr@24; 32.
        assert_layout!(GnttabMapGrantRef, size = 32, {
            host_addr: 0, flags: 8, ref_: 12, dom: 16, status: 18, handle: 20,
            dev_bus_addr: 24,
        });
        // C: u64@0, u64@8, handle@16, i16 status@20, tail pad; 24.
        assert_layout!(GnttabUnmapGrantRef, size = 24, {
            host_addr: 0, dev_bus_addr: 8, handle: 16, status: 20,
        });
        // C: domid_t@0, u32 nr_frames@4, i16 status@8, handle frame_list@16; 24.
        assert_layout!(GnttabSetupTable, size = 24, {
            dom: 0, nr_frames: 4, status: 8, frame_list: 16,
        });
        assert_layout!(GnttabDumpTable, size = 4, { dom: 0, status: 2 });
        // C: xen_pfn_t@0, domid_t@8, ref@12, i16 status@16; 24.
        assert_layout!(GnttabTransfer, size = 24, { mfn: 0, domid: 8, ref_: 12, status: 16 });
        // C gnttab_copy_ptr: union (8)@0, domid_t@8, u16 offset@10; 16.
        assert_layout!(GnttabCopyPtr, size = 16, { u: 0, domid: 8, offset: 10 });
        // C: source@0, dest@16, len@32, flags@34, status@36; 40.
        assert_layout!(GnttabCopy, size = 40, {
            source: 0, dest: 16, len: 32, flags: 34, status: 36,
        });
        // C: domid_t@0, nr_frames@4, max_nr_frames@8, i16 status@12; 16.
        assert_layout!(GnttabQuerySize, size = 16, {
            dom: 0, nr_frames: 4, max_nr_frames: 8, status: 12,
        });
        assert_layout!(GnttabUnmapAndReplace, size = 24, {
            host_addr: 0, new_addr: 8, handle: 16, status: 20,
        });
        assert_layout!(GnttabSetVersion, size = 4, { version: 0 });
        // C: u32 nr_frames@0, domid_t@4, i16 status@6, handle@8; 16.
        assert_layout!(GnttabGetStatusFrames, size = 16, {
            nr_frames: 0, dom: 4, status: 6, frame_list: 8,
        });
        assert_layout!(GnttabGetVersion, size = 8, { dom: 0, pad: 2, version: 4 });
        assert_layout!(GnttabSwapGrantRef, size = 12, { ref_a: 0, ref_b: 4, status: 8 });
        // C: union (8)@0, u16 offset@8, u16 length@10, u32 op@12; 16.
        assert_layout!(GnttabCacheFlush, size = 16, { a: 0, offset: 8, length: 10, op: 12 });
    }

    #[test]
    fn copy_ptr_union() {
        let mut p = GnttabCopyPtr {
            u: 0xdead_beef_0000_0000,
            ..Default::default()
        };
        p.set_gref(7);
        assert_eq!(p.gref(), 7);
        assert_eq!(p.gmfn(), 0xdead_beef_0000_0007);
        assert_eq!(&p.as_bytes()[..4], &7u32.to_le_bytes());
    }
}
