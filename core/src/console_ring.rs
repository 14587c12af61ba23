//! The hypervisor's end of a domain's PV console ring
//! (`xen/include/public/io/console.h`, `struct xencons_interface`): what
//! xenconsoled does for a guest, done by the hypervisor for boot-time
//! domains. Output is taken from `out` (the guest produces, we consume),
//! typed input is put into `in` (we produce, the guest consumes).
//!
//! The page is shared: the guest's vCPUs write the indices and the ring
//! bytes while we look, so it is seen only through a [`SharedPage`]. Each
//! index is read once; an index pair that claims more than the ring holds
//! is clamped to the ring's size; the bytes are copied out before the
//! consumer index moves (as xenconsoled's `buffer_append`), so whatever the
//! guest does meanwhile changes only which bytes it gets printed.
// Guest or firmware input is parsed here: no unchecked arithmetic, no
// indexing that can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use rxen_abi::console::{mask_xencons_idx, XenconsInterface, XENCONS_IN_SIZE, XENCONS_OUT_SIZE};

use crate::shared_page::SharedPage;

/// Byte offset of `in` in the page.
const IN_AT: usize = core::mem::offset_of!(XenconsInterface, in_);
/// Byte offset of `out` in the page.
const OUT_AT: usize = core::mem::offset_of!(XenconsInterface, out);
/// Byte offset of `in_cons`.
const IN_CONS_AT: usize = core::mem::offset_of!(XenconsInterface, in_cons);
/// Byte offset of `in_prod`.
const IN_PROD_AT: usize = core::mem::offset_of!(XenconsInterface, in_prod);
/// Byte offset of `out_cons`.
const OUT_CONS_AT: usize = core::mem::offset_of!(XenconsInterface, out_cons);
/// Byte offset of `out_prod`.
const OUT_PROD_AT: usize = core::mem::offset_of!(XenconsInterface, out_prod);

/// Reads the ring index at byte `at` once.
fn index(page: SharedPage<'_>, at: usize) -> u32 {
    let mut bytes = [0u8; 4];
    // The four index fields are inside the page (see the layout test in
    // the ABI); `read` leaves zeros if they were not.
    let _ = page.read(at, &mut bytes);
    u32::from_le_bytes(bytes)
}

/// Takes what the guest wrote to its output ring into `buf` and advances
/// `out_cons`; returns the number of bytes taken (0: nothing pending).
pub fn take_output(page: SharedPage<'_>, buf: &mut [u8; XENCONS_OUT_SIZE]) -> usize {
    let cons = index(page, OUT_CONS_AT);
    let prod = index(page, OUT_PROD_AT);
    // A guest that claims more than the ring holds gets the ring's worth.
    let len = usize::try_from(prod.wrapping_sub(cons))
        .unwrap_or(usize::MAX)
        .min(XENCONS_OUT_SIZE);
    let mut at = cons;
    for byte in buf.iter_mut().take(len) {
        let offset = OUT_AT.saturating_add(mask_xencons_idx(at, XENCONS_OUT_SIZE));
        *byte = page.load_u8(offset).unwrap_or(0);
        at = at.wrapping_add(1);
    }
    if len > 0 {
        // `len` is at most 2048.
        let _ = page.store_u32(OUT_CONS_AT, cons.wrapping_add(len as u32));
    }
    len
}

/// Puts one typed byte into the guest's input ring and advances `in_prod`;
/// false when the ring is full (the byte is dropped, as a full UART would).
pub fn put_input(page: SharedPage<'_>, byte: u8) -> bool {
    let cons = index(page, IN_CONS_AT);
    let prod = index(page, IN_PROD_AT);
    if usize::try_from(prod.wrapping_sub(cons)).map_or(true, |n| n >= XENCONS_IN_SIZE) {
        return false;
    }
    let offset = IN_AT.saturating_add(mask_xencons_idx(prod, XENCONS_IN_SIZE));
    page.store_u8(offset, byte) && page.store_u32(IN_PROD_AT, prod.wrapping_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared_page::zeroed_words;

    fn set(page: SharedPage<'_>, at: usize, value: u32) {
        assert!(page.store_u32(at, value));
    }

    #[test]
    fn output_is_taken_in_order_across_the_wrap() {
        let words = zeroed_words();
        let page = SharedPage::new(&words);
        // Five bytes starting two before the end of `out`.
        let start = (XENCONS_OUT_SIZE - 2) as u32;
        for (i, b) in b"hello".iter().enumerate() {
            let at = OUT_AT + mask_xencons_idx(start.wrapping_add(i as u32), XENCONS_OUT_SIZE);
            assert!(page.store_u8(at, *b));
        }
        set(page, OUT_CONS_AT, start);
        set(page, OUT_PROD_AT, start + 5);
        let mut buf = [0u8; XENCONS_OUT_SIZE];
        assert_eq!(take_output(page, &mut buf), 5);
        assert_eq!(&buf[..5], b"hello");
        assert_eq!(index(page, OUT_CONS_AT), start + 5);
        assert_eq!(take_output(page, &mut buf), 0, "nothing left");
    }

    #[test]
    fn indices_wrap_at_u32() {
        let words = zeroed_words();
        let page = SharedPage::new(&words);
        set(page, OUT_CONS_AT, u32::MAX - 1);
        set(page, OUT_PROD_AT, 2);
        let mut buf = [0u8; XENCONS_OUT_SIZE];
        assert_eq!(take_output(page, &mut buf), 4);
        assert_eq!(index(page, OUT_CONS_AT), 2);
    }

    #[test]
    fn hostile_indices_are_clamped_to_the_ring() {
        let words = zeroed_words();
        let page = SharedPage::new(&words);
        // The input ring holds other bytes, which must not be taken.
        assert!(page.write(IN_AT, &[0x11; XENCONS_IN_SIZE]));
        // prod behind cons: the guest claims 2^32 - 16 bytes.
        set(page, OUT_CONS_AT, 100);
        set(page, OUT_PROD_AT, 84);
        let mut buf = [0xAAu8; XENCONS_OUT_SIZE];
        assert_eq!(take_output(page, &mut buf), XENCONS_OUT_SIZE);
        assert_eq!(index(page, OUT_CONS_AT), 100 + XENCONS_OUT_SIZE as u32);
        // Nothing outside the ring was read: the `in` ring and the indices
        // are not part of what was taken (all zeros but the ring's bytes).
        assert!(buf.iter().all(|&b| b == 0));
        // The input indices were not touched.
        assert_eq!(index(page, IN_CONS_AT), 0);
        assert_eq!(index(page, IN_PROD_AT), 0);
    }

    #[test]
    fn input_fills_the_ring_and_stops() {
        let words = zeroed_words();
        let page = SharedPage::new(&words);
        set(page, IN_CONS_AT, 7);
        set(page, IN_PROD_AT, 7);
        for i in 0..XENCONS_IN_SIZE {
            assert!(put_input(page, i as u8), "byte {i}");
        }
        assert!(!put_input(page, 0xFF), "a full ring takes nothing");
        assert_eq!(index(page, IN_PROD_AT), 7 + XENCONS_IN_SIZE as u32);
        // The first byte sits at in[7], the last one wrapped to in[6].
        assert_eq!(page.load_u8(IN_AT + 7), Some(0));
        assert_eq!(page.load_u8(IN_AT + 6), Some((XENCONS_IN_SIZE - 1) as u8));
        // Output side untouched.
        assert_eq!(index(page, OUT_CONS_AT), 0);
        assert_eq!(page.load_u8(OUT_AT), Some(0));
    }

    #[test]
    fn hostile_input_indices_never_write_outside_in() {
        let words = zeroed_words();
        let page = SharedPage::new(&words);
        // cons far ahead of prod: the ring looks full (2^32 - n in flight).
        set(page, IN_CONS_AT, 5000);
        set(page, IN_PROD_AT, 10);
        assert!(!put_input(page, 1));
        // prod at any value: the byte lands inside `in`.
        for prod in [u32::MAX, 0x8000_0000, 1023, 1024] {
            let words = zeroed_words();
            let page = SharedPage::new(&words);
            set(page, IN_CONS_AT, prod);
            set(page, IN_PROD_AT, prod);
            assert!(put_input(page, 0x5A));
            let mut whole = [0u8; 4096];
            assert!(page.read(0, &mut whole));
            let written: alloc::vec::Vec<usize> = whole
                .iter()
                .enumerate()
                .filter(|&(_, &b)| b == 0x5A)
                .map(|(i, _)| i)
                .collect();
            assert_eq!(written.len(), 1);
            assert!(written[0] < IN_AT + XENCONS_IN_SIZE, "prod {prod:#x}");
        }
    }
}
