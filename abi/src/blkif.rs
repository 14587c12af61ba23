//! `xen/include/public/io/blkif.h`: the block device ring protocol (x86_64 layout),
//! as a blkfront and a blkback share it through one granted page: the `blkif_sring`
//! header of `io/ring.h` (four indices and 48 bytes of padding), then
//! [`BLKIF_RING_SIZE`] entries of the larger of a request and a response.

use crate::ring::{const_ring_size, RingIdx};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `BLKIF_OP_READ`: read sectors from the device into the segments' pages.
pub const BLKIF_OP_READ: u8 = 0;
/// `BLKIF_OP_WRITE`: write the segments' pages to the device.
pub const BLKIF_OP_WRITE: u8 = 1;
/// `BLKIF_OP_FLUSH_DISKCACHE`.
pub const BLKIF_OP_FLUSH_DISKCACHE: u8 = 3;
/// `BLKIF_OP_DISCARD`.
pub const BLKIF_OP_DISCARD: u8 = 5;
/// `BLKIF_OP_INDIRECT`.
pub const BLKIF_OP_INDIRECT: u8 = 6;

/// `BLKIF_MAX_SEGMENTS_PER_REQUEST`: segments of a direct request.
pub const BLKIF_MAX_SEGMENTS_PER_REQUEST: usize = 11;

/// `BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST`: indirect pages an indirect request names.
pub const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST: usize = 8;
/// Segments in one indirect page (`XEN_PAGE_SIZE / sizeof(blkif_request_segment)`).
pub const BLKIF_SEGS_PER_INDIRECT_FRAME: usize = 512;

/// `BLKIF_RSP_OKAY`.
pub const BLKIF_RSP_OKAY: i16 = 0;
/// `BLKIF_RSP_ERROR`.
pub const BLKIF_RSP_ERROR: i16 = -1;
/// `BLKIF_RSP_EOPNOTSUPP`.
pub const BLKIF_RSP_EOPNOTSUPP: i16 = -2;

/// Bytes of a sector as blkif counts them (`first_sect`, `sector_number`).
pub const BLKIF_SECTOR_SIZE: usize = 512;

/// `struct blkif_request_segment`: a granted page and the sectors of it used.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct BlkifRequestSegment {
    /// `gref`: the grant of the page.
    pub gref: u32,
    /// `first_sect`: first sector of the page used (0..=7).
    pub first_sect: u8,
    /// `last_sect`: last sector of the page used (inclusive, 0..=7).
    pub last_sect: u8,
    /// C's implicit padding.
    pub pad: u16,
}

/// `struct blkif_request` (read/write form).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct BlkifRequest {
    /// `operation`: `BLKIF_OP_*`.
    pub operation: u8,
    /// `nr_segments`: segments used (1..=11 for a direct read/write).
    pub nr_segments: u8,
    /// `handle`: `blkif_vdev_t`, only for the frontend's own use.
    pub handle: u16,
    /// C's implicit padding.
    pub pad: u32,
    /// `id`: echoed in the response.
    pub id: u64,
    /// `sector_number`: start sector on the device (512-byte sectors).
    pub sector_number: u64,
    /// `seg`: the segments.
    pub seg: [BlkifRequestSegment; BLKIF_MAX_SEGMENTS_PER_REQUEST],
}

/// `struct blkif_request_indirect`: a read or write whose segments are in granted
/// pages of [`BlkifRequestSegment`]s (`BLKIF_OP_INDIRECT`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct BlkifRequestIndirect {
    /// `operation`: [`BLKIF_OP_INDIRECT`].
    pub operation: u8,
    /// `indirect_op`: [`BLKIF_OP_READ`] or [`BLKIF_OP_WRITE`].
    pub indirect_op: u8,
    /// `nr_segments`: segments in the indirect pages.
    pub nr_segments: u16,
    /// C's implicit padding (`_pad1` on x86_64).
    pub pad1: u32,
    /// `id`: echoed in the response.
    pub id: u64,
    /// `sector_number`: start sector on the device.
    pub sector_number: u64,
    /// `handle`: `blkif_vdev_t`.
    pub handle: u16,
    /// `_pad2`.
    pub pad2: u16,
    /// `indirect_grefs`: the grants of the pages of segments.
    pub indirect_grefs: [u32; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST],
    /// `_pad3` on x86_64.
    pub pad3: u32,
}

/// `struct blkif_response`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct BlkifResponse {
    /// `id`: the request's.
    pub id: u64,
    /// `operation`: the request's.
    pub operation: u8,
    /// C's implicit padding.
    pub pad: u8,
    /// `status`: `BLKIF_RSP_*`.
    pub status: i16,
    /// C's implicit padding.
    pub pad2: u32,
}

/// Bytes of the `blkif_sring` header (`req_prod`, `req_event`, `rsp_prod`,
/// `rsp_event`, `__pad[48]`).
pub const BLKIF_SRING_HEADER: usize = 64;
/// Bytes of a `blkif_sring` entry (the union of request and response).
pub const BLKIF_SRING_ENTRY: usize = core::mem::size_of::<BlkifRequest>();
/// `RING_SIZE` of a one-page `blkif` ring: 32 entries.
pub const BLKIF_RING_SIZE: RingIdx =
    const_ring_size(4096, BLKIF_SRING_HEADER as u32, BLKIF_SRING_ENTRY as u32);

/// `struct blkif_sring`'s header: the producer and event indices of both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct BlkifSringHeader {
    /// `req_prod`: requests the frontend produced.
    pub req_prod: RingIdx,
    /// `req_event`: notify the backend when `req_prod` passes this.
    pub req_event: RingIdx,
    /// `rsp_prod`: responses the backend produced.
    pub rsp_prod: RingIdx,
    /// `rsp_event`: notify the frontend when `rsp_prod` passes this.
    pub rsp_event: RingIdx,
    /// `__pad[48]`.
    pub pad: [u8; 48],
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assert_layout;

    #[test]
    fn layout() {
        // C (x86_64): uint8_t operation@0, nr_segments@1, uint16_t handle@2,
        // uint64_t id@8, blkif_sector_t sector_number@16, seg[11]@24 (8 each): 112.
        assert_layout!(BlkifRequest, size = 112, {
            operation: 0, nr_segments: 1, handle: 2, id: 8, sector_number: 16, seg: 24,
        });
        // uint8_t operation@0, indirect_op@1, uint16_t nr_segments@2, id@8,
        // sector_number@16, handle@24, indirect_grefs[8]@28: 64.
        assert_layout!(BlkifRequestIndirect, size = 64, {
            operation: 0, indirect_op: 1, nr_segments: 2, id: 8, sector_number: 16,
            handle: 24, indirect_grefs: 28,
        });
        assert_layout!(BlkifRequestSegment, size = 8, { gref: 0, first_sect: 4, last_sect: 5 });
        // uint64_t id@0, uint8_t operation@8, int16_t status@10: 16.
        assert_layout!(BlkifResponse, size = 16, { id: 0, operation: 8, status: 10 });
        assert_layout!(BlkifSringHeader, size = 64, {
            req_prod: 0, req_event: 4, rsp_prod: 8, rsp_event: 12, pad: 16,
        });
    }

    #[test]
    fn ring_size() {
        // (4096 - 64) / 112 = 36, rounded down to a power of two.
        assert_eq!(BLKIF_RING_SIZE, 32);
        assert_eq!(BLKIF_SRING_ENTRY, 112);
    }
}
