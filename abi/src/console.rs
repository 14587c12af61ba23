//! `xen/include/public/io/console.h`: the PV console shared page layout.
//!
//! This is the 4.17 layout (3088 bytes). The `connection` byte that follows
//! `out_prod` in newer headers (added for Xen 4.21) is not part of it.

use crate::ring::RingIdx;
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// `XENCONS_RING_IDX` (console.h): a free-running console ring index.
pub type XenconsRingIdx = RingIdx;

/// Size of `xencons_interface.in`.
pub const XENCONS_IN_SIZE: usize = 1024;
/// Size of `xencons_interface.out`.
pub const XENCONS_OUT_SIZE: usize = 2048;

/// `MASK_XENCONS_IDX(idx, ring)` (console.h) for a ring of `ring_size` bytes
/// (a power of two).
pub const fn mask_xencons_idx(idx: XenconsRingIdx, ring_size: usize) -> usize {
    (idx as usize) & (ring_size - 1)
}

/// `struct xencons_interface` (console.h): `in` is backend-to-guest input,
/// `out` is guest-to-backend output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct XenconsInterface {
    /// Input ring (`char in[1024]`).
    pub in_: [u8; XENCONS_IN_SIZE],
    /// Output ring (`char out[2048]`).
    pub out: [u8; XENCONS_OUT_SIZE],
    /// Input consumer index (guest).
    pub in_cons: XenconsRingIdx,
    /// Input producer index (backend).
    pub in_prod: XenconsRingIdx,
    /// Output consumer index (backend).
    pub out_cons: XenconsRingIdx,
    /// Output producer index (guest).
    pub out_prod: XenconsRingIdx,
}

impl Default for XenconsInterface {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assert_layout;

    #[test]
    fn layout() {
        // C: char in[1024]@0, char out[2048]@1024, then four u32 indices
        // @3072/3076/3080/3084; 3088.
        assert_layout!(XenconsInterface, size = 3088, {
            in_: 0, out: 1024, in_cons: 3072, in_prod: 3076, out_cons: 3080, out_prod: 3084,
        });
    }

    #[test]
    fn masking() {
        assert_eq!(mask_xencons_idx(2049, XENCONS_OUT_SIZE), 1);
        assert_eq!(mask_xencons_idx(u32::MAX, XENCONS_IN_SIZE), 1023);
    }
}
