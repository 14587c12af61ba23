//! Memory the hypervisor shares with a guest: the one type through which
//! the core reads and writes a page that the guest (on another CPU) may be
//! writing at the same moment — the shared-info page, a registered
//! `vcpu_info` — never as a `&mut [u8]`.
//!
//! [`SharedPage`] is a view over one 4 KiB page as aligned 64-bit atomic
//! words. Every access is one atomic operation on one word, the same
//! operations the guest uses (`lock bts` ↔ [`SharedPage::test_and_set_bit`],
//! `lock and` ↔ [`SharedPage::fetch_and`]), as Xen's `guest_test_and_set_bit`
//! and friends: a bit the guest sets or clears meanwhile is never lost or
//! brought back. Bit numbers are counted from a byte offset as x86 bit
//! operations count them (bit `n` of the field at `at` is bit `n % 8` of the
//! byte `at + n / 8`), so fields need no alignment. Narrow stores and byte
//! copies change only their own bytes (a compare-and-exchange on the word).
//!
//! Offsets are checked: an access beyond the page does nothing and reports
//! `None` (or `false`), it never panics. The platform builds the view over
//! the host mapping of the page (the only `unsafe` part, outside the core).
// Guest or firmware input is parsed here: no unchecked arithmetic, no
// indexing that can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use core::sync::atomic::{AtomicU64, Ordering};

/// Bytes in a shared page.
pub const PAGE_BYTES: usize = 4096;
/// 64-bit words in a shared page.
pub const PAGE_WORDS: usize = PAGE_BYTES / 8;

/// A guest page seen as atomic words (see the module documentation).
#[derive(Clone, Copy)]
pub struct SharedPage<'a> {
    words: &'a [AtomicU64; PAGE_WORDS],
}

impl core::fmt::Debug for SharedPage<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SharedPage")
    }
}

/// (word index, bit within the word) of bit `bit` counted from byte `at`.
fn bit_position(at: usize, bit: usize) -> Option<(usize, u32)> {
    let byte = at.checked_add(bit / 8)?;
    if byte >= PAGE_BYTES {
        return None;
    }
    // Bit within the little-endian word: 8 per byte below it, plus `bit % 8`
    // (all below 64).
    let shift = (byte % 8).wrapping_mul(8).wrapping_add(bit % 8);
    Some((byte / 8, shift as u32))
}

/// The pieces of the `len` bytes from byte `at` of a page (which the
/// caller checked lie within it), word by word: the word's index, the bytes
/// within the word, the bytes within the caller's buffer.
fn pieces(
    at: usize,
    len: usize,
) -> impl Iterator<Item = (usize, core::ops::Range<usize>, core::ops::Range<usize>)> {
    let mut done = 0usize;
    core::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let byte = at.checked_add(done)?;
        let offset = byte % 8;
        let n = 8usize.wrapping_sub(offset).min(len.wrapping_sub(done));
        let piece = (
            byte / 8,
            offset..offset.wrapping_add(n),
            done..done.wrapping_add(n),
        );
        done = done.wrapping_add(n);
        Some(piece)
    })
}

impl<'a> SharedPage<'a> {
    /// The view over `words` (the page's 512 little-endian words).
    pub fn new(words: &'a [AtomicU64; PAGE_WORDS]) -> Self {
        Self { words }
    }

    fn word(&self, index: usize) -> Option<&'a AtomicU64> {
        self.words.get(index)
    }

    fn aligned_word(&self, at: usize) -> Option<&'a AtomicU64> {
        if !at.is_multiple_of(8) {
            return None;
        }
        self.word(at / 8)
    }

    /// Sets bit `bit` counted from byte `at`; returns whether it was set
    /// before (`None`: beyond the page).
    pub fn test_and_set_bit(&self, at: usize, bit: usize) -> Option<bool> {
        let (index, shift) = bit_position(at, bit)?;
        let mask = 1u64 << shift;
        Some(self.word(index)?.fetch_or(mask, Ordering::SeqCst) & mask != 0)
    }

    /// Clears bit `bit` counted from byte `at`; returns whether it was set
    /// before (`None`: beyond the page).
    pub fn test_and_clear_bit(&self, at: usize, bit: usize) -> Option<bool> {
        let (index, shift) = bit_position(at, bit)?;
        let mask = 1u64 << shift;
        Some(self.word(index)?.fetch_and(!mask, Ordering::SeqCst) & mask != 0)
    }

    /// Whether bit `bit` counted from byte `at` is set (`None`: beyond the
    /// page).
    pub fn test_bit(&self, at: usize, bit: usize) -> Option<bool> {
        let (index, shift) = bit_position(at, bit)?;
        Some(self.word(index)?.load(Ordering::SeqCst) & (1 << shift) != 0)
    }

    /// The aligned 64-bit word at byte `at`.
    pub fn load(&self, at: usize) -> Option<u64> {
        Some(self.aligned_word(at)?.load(Ordering::SeqCst))
    }

    /// Stores the aligned 64-bit word at byte `at`; false beyond the page
    /// or unaligned.
    pub fn store(&self, at: usize, value: u64) -> bool {
        self.aligned_word(at)
            .map(|w| w.store(value, Ordering::SeqCst))
            .is_some()
    }

    /// ORs `bits` into the aligned word at `at`; returns its old value.
    pub fn fetch_or(&self, at: usize, bits: u64) -> Option<u64> {
        Some(self.aligned_word(at)?.fetch_or(bits, Ordering::SeqCst))
    }

    /// ANDs `bits` into the aligned word at `at`; returns its old value.
    pub fn fetch_and(&self, at: usize, bits: u64) -> Option<u64> {
        Some(self.aligned_word(at)?.fetch_and(bits, Ordering::SeqCst))
    }

    /// The byte at `at`.
    pub fn load_u8(&self, at: usize) -> Option<u8> {
        let word = self.word(at / 8)?.load(Ordering::SeqCst);
        word.to_le_bytes().get(at % 8).copied()
    }

    /// Reads `buf.len()` bytes from `at` (each word read once); false (and
    /// `buf` untouched past the page) when the range leaves the page.
    pub fn read(&self, at: usize, buf: &mut [u8]) -> bool {
        if at.checked_add(buf.len()).is_none_or(|end| end > PAGE_BYTES) {
            return false;
        }
        for (index, in_word, in_buf) in pieces(at, buf.len()) {
            let Some(word) = self.word(index) else {
                return false;
            };
            let bytes = word.load(Ordering::SeqCst).to_le_bytes();
            match (buf.get_mut(in_buf), bytes.get(in_word)) {
                (Some(dst), Some(src)) => dst.copy_from_slice(src),
                _ => return false,
            }
        }
        true
    }

    /// Writes `bytes` at `at`, changing no other byte (one atomic update per
    /// word); false when the range leaves the page (nothing written then).
    pub fn write(&self, at: usize, bytes: &[u8]) -> bool {
        if at
            .checked_add(bytes.len())
            .is_none_or(|end| end > PAGE_BYTES)
        {
            return false;
        }
        for (index, in_word, in_buf) in pieces(at, bytes.len()) {
            let (Some(word), Some(part)) = (self.word(index), bytes.get(in_buf)) else {
                return false;
            };
            let _ = word.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                let mut b = w.to_le_bytes();
                b.get_mut(in_word.clone())?.copy_from_slice(part);
                Some(u64::from_le_bytes(b))
            });
        }
        true
    }

    /// Stores the byte `value` at `at`; false beyond the page.
    pub fn store_u8(&self, at: usize, value: u8) -> bool {
        self.write(at, &[value])
    }

    /// Stores the little-endian `value` at `at`; false beyond the page.
    pub fn store_u32(&self, at: usize, value: u32) -> bool {
        self.write(at, &value.to_le_bytes())
    }
}

/// A page of zeroed atomic words, for tests and for building pages.
pub fn zeroed_words() -> [AtomicU64; PAGE_WORDS] {
    [const { AtomicU64::new(0) }; PAGE_WORDS]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_count_from_a_byte_offset_as_x86_does() {
        let words = zeroed_words();
        let page = SharedPage::new(&words);
        assert_eq!(page.test_and_set_bit(16, 70), Some(false));
        assert_eq!(page.test_and_set_bit(16, 70), Some(true));
        // Bit 70 from byte 16: byte 24, bit 6 -> word 3, bit 6.
        assert_eq!(page.load(24), Some(1 << 6));
        // Unaligned field: bit 3 from byte 13 is bit 5*8+3 of word 1.
        assert_eq!(page.test_and_set_bit(13, 3), Some(false));
        assert_eq!(page.load(8), Some(1 << 43));
        assert_eq!(page.test_bit(13, 3), Some(true));
        assert_eq!(page.test_and_clear_bit(13, 3), Some(true));
        assert_eq!(page.test_and_clear_bit(13, 3), Some(false));
        assert_eq!(page.load(8), Some(0));
    }

    #[test]
    fn nothing_beyond_the_page() {
        let words = zeroed_words();
        let page = SharedPage::new(&words);
        assert_eq!(page.test_and_set_bit(4088, 64), None);
        assert_eq!(page.test_and_set_bit(0, 4096 * 8), None);
        assert_eq!(page.test_and_set_bit(usize::MAX, 9), None);
        assert_eq!(page.test_bit(4095, 8), None);
        assert_eq!(page.load(4096), None);
        assert_eq!(page.load(4), None, "unaligned word");
        assert!(!page.store(4096, 1));
        assert_eq!(page.fetch_or(8192, 1), None);
        assert!(!page.write(4094, &[1, 2, 3]));
        assert!(!page.write(usize::MAX, &[1]));
        let mut buf = [0u8; 4];
        assert!(!page.read(4093, &mut buf));
        assert!(words.iter().all(|w| w.load(Ordering::SeqCst) == 0));
    }

    #[test]
    fn narrow_writes_keep_their_neighbours() {
        let words = zeroed_words();
        let page = SharedPage::new(&words);
        assert!(page.store(0, u64::MAX));
        assert!(page.store_u8(1, 0));
        assert!(page.store_u32(4, 0x1234_5678));
        assert_eq!(page.load(0), Some(0x1234_5678_FFFF_00FF));
        assert!(page.write(6, &[0xAA; 4]));
        assert_eq!(page.load(0), Some(0xAAAA_5678_FFFF_00FF));
        assert_eq!(page.load(8), Some(0xAAAA));
        let mut buf = [0u8; 5];
        assert!(page.read(5, &mut buf));
        assert_eq!(buf, [0x56, 0xAA, 0xAA, 0xAA, 0xAA]);
        assert_eq!(page.load_u8(9), Some(0xAA));
        assert_eq!(page.fetch_and(0, 0xFF), Some(0xAAAA_5678_FFFF_00FF));
        assert_eq!(page.fetch_or(0, 0x100), Some(0xFF));
    }

    #[test]
    fn a_bit_the_other_side_sets_meanwhile_is_kept() {
        // The guest sets mask bits with `lock bts` while the hypervisor
        // clears another one: with one atomic operation each, neither is lost.
        let words = zeroed_words();
        let page = SharedPage::new(&words);
        let guest = std::thread::scope(|s| {
            let g = s.spawn(|| {
                for bit in (0..64).step_by(2) {
                    page.test_and_set_bit(0, bit);
                }
            });
            for _ in 0..10_000 {
                page.test_and_set_bit(0, 1);
                page.test_and_clear_bit(0, 1);
            }
            g.join()
        });
        assert!(guest.is_ok());
        assert_eq!(page.load(0), Some(0x5555_5555_5555_5555));
    }
}
