//! Index arithmetic of `xen/include/public/io/ring.h`: free-running 32-bit
//! ring indices, power-of-two ring sizes and the notification checks of
//! `RING_PUSH_*_AND_CHECK_NOTIFY`. The ring-declaring macros themselves are
//! not mirrored.

/// `RING_IDX` (ring.h): a free-running index; compare with wrapping arithmetic.
pub type RingIdx = u32;

/// `XEN_PAGE_SHIFT` (ring.h): ring protocols always use 4 KiB pages.
pub const XEN_PAGE_SHIFT: u32 = 12;

/// `__RD32(x)` (ring.h): round a 32-bit value down to a power of two (0 stays 0).
pub const fn round_down_pow2(x: u32) -> u32 {
    if x == 0 {
        0
    } else {
        1 << (31 - x.leading_zeros())
    }
}

/// `__CONST_RING_SIZE` (ring.h): entries in a shared ring of `total` bytes
/// whose entries start at `header` bytes and are `entry` bytes each.
pub const fn const_ring_size(total: u32, header: u32, entry: u32) -> u32 {
    round_down_pow2((total - header) / entry)
}

/// `XEN_FLEX_RING_SIZE(order)` (ring.h): bytes in each direction of a flex
/// ring of 2^`order` pages.
pub const fn xen_flex_ring_size(order: u32) -> u32 {
    1 << (order + XEN_PAGE_SHIFT - 1)
}

/// `name##_mask` (ring.h `DEFINE_XEN_FLEX_RING`): offset of `idx` in a ring
/// of `ring_size` (a power of two).
pub const fn ring_mask(idx: RingIdx, ring_size: RingIdx) -> RingIdx {
    idx & (ring_size.wrapping_sub(1))
}

/// Entries between consumer and producer (`prod - cons`, wrapping).
pub const fn ring_used(prod: RingIdx, cons: RingIdx) -> RingIdx {
    prod.wrapping_sub(cons)
}

/// Free entries in a ring of `ring_size` holding `prod - cons` entries.
pub const fn ring_free(prod: RingIdx, cons: RingIdx, ring_size: RingIdx) -> RingIdx {
    ring_size.wrapping_sub(ring_used(prod, cons))
}

/// `name##_queued` (ring.h `DEFINE_XEN_FLEX_RING`): bytes queued in a flex
/// ring of `ring_size`.
pub const fn flex_ring_queued(prod: RingIdx, cons: RingIdx, ring_size: RingIdx) -> RingIdx {
    if prod == cons {
        return 0;
    }
    let p = ring_mask(prod, ring_size);
    let c = ring_mask(cons, ring_size);
    if p == c {
        ring_size
    } else if p > c {
        p - c
    } else {
        ring_size - (c - p)
    }
}

/// The check of `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY` (and its response
/// twin): after publishing `new` over `old`, notify iff the other end's
/// `event` index lies in `(old, new]`.
pub const fn ring_need_notify(old: RingIdx, new: RingIdx, event: RingIdx) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(round_down_pow2(0), 0);
        assert_eq!(round_down_pow2(1), 1);
        assert_eq!(round_down_pow2(63), 32);
        assert_eq!(round_down_pow2(64), 64);
        assert_eq!(round_down_pow2(u32::MAX), 1 << 31);
        // A 4096-byte ring with the 64-byte sring header and 112-byte entries
        // (blkif) holds 32 entries.
        assert_eq!(const_ring_size(4096, 64, 112), 32);
        assert_eq!(xen_flex_ring_size(0), 2048);
        assert_eq!(xen_flex_ring_size(1), 4096);
    }

    #[test]
    fn index_math_wraps() {
        assert_eq!(ring_mask(1025, 1024), 1);
        assert_eq!(ring_used(3, u32::MAX - 1), 5);
        assert_eq!(ring_free(3, u32::MAX - 1, 32), 27);
        assert_eq!(flex_ring_queued(10, 10, 16), 0);
        assert_eq!(flex_ring_queued(26, 10, 16), 16);
        assert_eq!(flex_ring_queued(12, 10, 16), 2);
        assert_eq!(flex_ring_queued(17, 14, 16), 3);
    }

    #[test]
    fn notify() {
        assert!(ring_need_notify(0, 1, 1));
        assert!(!ring_need_notify(1, 2, 1));
        assert!(ring_need_notify(u32::MAX, 1, 0));
        assert!(!ring_need_notify(5, 5, 5));
    }
}
