//! Memory the hypervisor shares with a guest: the one type through which
//! the core reads and writes a page that the guest (on another CPU) may be
//! writing at the same moment — the shared-info page, a registered
//! `vcpu_info`, the PV console ring, FIFO event words and control blocks,
//! grant-table entries — never as a `&mut [u8]`.
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
//! 32-bit fields (FIFO event words, control-block `ready` and `head`, the
//! flags+domid and frame words of a grant entry) are
//! the halves of their word and must be 4-byte aligned (little-endian:
//! `at % 8 == 4` is the high half): [`SharedPage::fetch_or_u32`] and
//! [`SharedPage::fetch_and_u32`] are one `lock or`/`lock and` on the word
//! with the other half's bits left alone; [`SharedPage::compare_exchange_u32`]
//! and [`SharedPage::fetch_update_u32`] compare-and-exchange the whole
//! word, trying again when only the other half changed, so they behave as
//! the `AtomicU32` operations of the same names and never undo what the
//! guest wrote to the neighbouring field.
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
    /// word, at most [`CAS_TRIES`] rounds each: a guest racing a word that
    /// long loses that word's bytes); false when the range leaves the page
    /// (nothing written then).
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
            let _ = update_word(word, |w| {
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

    /// The enclosing word of the 4-byte-aligned 32-bit field at `at` and
    /// the field's shift within it (little-endian: `at % 8 == 4` is the
    /// high half).
    fn half(&self, at: usize) -> Option<(&'a AtomicU64, u32)> {
        if !at.is_multiple_of(4) {
            return None;
        }
        let shift = if at % 8 == 4 { 32 } else { 0 };
        Some((self.word(at / 8)?, shift))
    }

    /// The aligned 32-bit field at byte `at` (`None`: beyond the page or
    /// not 4-byte aligned).
    pub fn load_u32(&self, at: usize) -> Option<u32> {
        let (word, shift) = self.half(at)?;
        Some(field(word.load(Ordering::SeqCst), shift))
    }

    /// Stores the little-endian `value` in the aligned 32-bit field at
    /// `at`, leaving the other half of its word as it is; false beyond the
    /// page or not 4-byte aligned. (A guest that rewrites the other half
    /// through all [`CAS_TRIES`] rounds loses the store, as with
    /// [`SharedPage::write`].)
    pub fn store_u32(&self, at: usize, value: u32) -> bool {
        self.fetch_update_u32(at, |_| Some(value)).is_some()
    }

    /// ORs `bits` into the aligned 32-bit field at `at` (one atomic
    /// operation); returns its old value.
    pub fn fetch_or_u32(&self, at: usize, bits: u32) -> Option<u32> {
        let (word, shift) = self.half(at)?;
        let old = word.fetch_or(u64::from(bits) << shift, Ordering::SeqCst);
        Some(field(old, shift))
    }

    /// ANDs `bits` into the aligned 32-bit field at `at` (one atomic
    /// operation; the other half of the word is ANDed with ones); returns
    /// its old value.
    pub fn fetch_and_u32(&self, at: usize, bits: u32) -> Option<u32> {
        let (word, shift) = self.half(at)?;
        let mask = !(u64::from(!bits) << shift);
        Some(field(word.fetch_and(mask, Ordering::SeqCst), shift))
    }

    /// Replaces the aligned 32-bit field at `at` with `new` if it holds
    /// `current`, as `AtomicU32::compare_exchange`: `Ok(current)` when
    /// replaced, `Err(value)` with the value found otherwise (`None`:
    /// beyond the page or not 4-byte aligned). The exchange is on the
    /// whole word; when it fails only because the other half changed, it
    /// is tried again (at most [`CAS_TRIES`] rounds: after that the failure
    /// reports this field as found, unchanged, and nothing is written).
    pub fn compare_exchange_u32(
        &self,
        at: usize,
        current: u32,
        new: u32,
    ) -> Option<Result<u32, u32>> {
        let (word, shift) = self.half(at)?;
        let result = update_word(word, |w| {
            (field(w, shift) == current).then(|| with_field(w, shift, new))
        });
        Some(result.map(|_| current).map_err(|w| field(w, shift)))
    }

    /// Updates the aligned 32-bit field at `at` with `f`, as
    /// `AtomicU32::fetch_update`: `f` gets the field's value and returns the
    /// new one (`None`: leave it), and is called again whenever the word
    /// changed meanwhile (either half). Returns `Ok(old)` when updated,
    /// `Err(old)` when `f` declined (`None`: beyond the page or not 4-byte
    /// aligned).
    pub fn fetch_update_u32(
        &self,
        at: usize,
        mut f: impl FnMut(u32) -> Option<u32>,
    ) -> Option<Result<u32, u32>> {
        let (word, shift) = self.half(at)?;
        let result = update_word(word, |w| Some(with_field(w, shift, f(field(w, shift))?)));
        Some(result.map(|w| field(w, shift)).map_err(|w| field(w, shift)))
    }
}

/// Compare-and-exchange rounds one update of a shared word may take.
pub const CAS_TRIES: usize = 1024;

/// `AtomicU64::fetch_update` with at most [`CAS_TRIES`] rounds: `Ok(old)`
/// when `f`'s value went in, `Err(seen)` when `f` declined, or when the
/// guest changed the word under every round (then the update is not made:
/// a guest that rewrites its own shared word that fast loses its own update,
/// and the hypervisor's work stays bounded).
fn update_word(word: &AtomicU64, mut f: impl FnMut(u64) -> Option<u64>) -> Result<u64, u64> {
    let mut w = word.load(Ordering::SeqCst);
    for _ in 0..CAS_TRIES {
        let new = f(w).ok_or(w)?;
        match word.compare_exchange(w, new, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(old) => return Ok(old),
            Err(seen) => w = seen,
        }
    }
    Err(w)
}

/// The 32-bit field at `shift` (0 or 32) of `word`.
fn field(word: u64, shift: u32) -> u32 {
    (word >> shift) as u32
}

/// `word` with its 32-bit field at `shift` (0 or 32) replaced by `value`.
fn with_field(word: u64, shift: u32, value: u32) -> u64 {
    (word & !(u64::from(u32::MAX) << shift)) | (u64::from(value) << shift)
}

/// A page of zeroed atomic words, for tests and for building pages.
pub fn zeroed_words() -> [AtomicU64; PAGE_WORDS] {
    [const { AtomicU64::new(0) }; PAGE_WORDS]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_the_guest_keeps_racing_gives_up_after_cas_tries() {
        let word = AtomicU64::new(5);
        let mut rounds = 0;
        // The "guest" changes the word between every load and exchange.
        let result = update_word(&word, |w| {
            rounds += 1;
            word.fetch_add(1 << 40, Ordering::SeqCst);
            Some(w + 1)
        });
        assert!(result.is_err());
        assert_eq!(rounds, CAS_TRIES);
        assert_eq!(word.load(Ordering::SeqCst) & 0xFFFF, 5, "nothing written");
        // Undisturbed, one round.
        assert_eq!(
            update_word(&word, |w| Some(w + 1)).map(|old| old & 0xFFFF),
            Ok(5)
        );
    }

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
    fn u32_fields_are_the_halves_of_their_word() {
        let words = zeroed_words();
        let page = SharedPage::new(&words);
        assert!(page.store(16, 0x1111_2222_3333_4444));
        assert_eq!(page.load_u32(16), Some(0x3333_4444));
        assert_eq!(page.load_u32(20), Some(0x1111_2222));
        assert!(page.store_u32(20, 0xAAAA_BBBB));
        assert_eq!(page.load(16), Some(0xAAAA_BBBB_3333_4444));
        assert!(page.store_u32(16, 0x5));
        assert_eq!(page.load(16), Some(0xAAAA_BBBB_0000_0005));
        // fetch_or / fetch_and change their half only.
        assert_eq!(page.fetch_or_u32(16, 0xF0), Some(0x5));
        assert_eq!(page.fetch_or_u32(20, 0x4), Some(0xAAAA_BBBB));
        assert_eq!(page.load(16), Some(0xAAAA_BBBF_0000_00F5));
        assert_eq!(page.fetch_and_u32(20, 0xFFFF_0000), Some(0xAAAA_BBBF));
        assert_eq!(page.fetch_and_u32(16, !0x1), Some(0xF5));
        assert_eq!(page.load(16), Some(0xAAAA_0000_0000_00F4));
        // compare_exchange: Ok(current) when it matched, Err(found) when not.
        assert_eq!(
            page.compare_exchange_u32(20, 0xAAAA_0000, 7),
            Some(Ok(0xAAAA_0000))
        );
        assert_eq!(page.compare_exchange_u32(20, 0xAAAA_0000, 8), Some(Err(7)));
        assert_eq!(
            page.compare_exchange_u32(16, 0xF4, 0x1_0000),
            Some(Ok(0xF4))
        );
        assert_eq!(page.load(16), Some(0x0000_0007_0001_0000));
        // fetch_update: Ok(old) when updated, Err(old) when declined.
        assert_eq!(page.fetch_update_u32(20, |v| Some(v * 3)), Some(Ok(7)));
        assert_eq!(page.fetch_update_u32(16, |_| None), Some(Err(0x1_0000)));
        assert_eq!(page.load(16), Some(0x0000_0015_0001_0000));
        // The last field of the page.
        assert!(page.store_u32(4092, 0xDEAD_BEEF));
        assert_eq!(page.load_u32(4092), Some(0xDEAD_BEEF));
        assert_eq!(page.load(4088), Some(0xDEAD_BEEF_0000_0000));
    }

    #[test]
    fn u32_fields_are_aligned_and_in_the_page() {
        let words = zeroed_words();
        let page = SharedPage::new(&words);
        for at in [1, 2, 3, 6, 4094, 4096, 4100, usize::MAX - 3, usize::MAX] {
            assert_eq!(page.load_u32(at), None, "load_u32({at})");
            assert!(!page.store_u32(at, 1), "store_u32({at})");
            assert_eq!(page.fetch_or_u32(at, 1), None, "fetch_or_u32({at})");
            assert_eq!(page.fetch_and_u32(at, 0), None, "fetch_and_u32({at})");
            assert_eq!(
                page.compare_exchange_u32(at, 0, 1),
                None,
                "compare_exchange_u32({at})"
            );
            assert_eq!(
                page.fetch_update_u32(at, |_| Some(1)),
                None,
                "fetch_update_u32({at})"
            );
        }
        assert!(words.iter().all(|w| w.load(Ordering::SeqCst) == 0));
    }

    #[test]
    fn a_u32_exchange_keeps_what_the_other_half_got_meanwhile() {
        // One side compare-exchanges (and updates) the low half of a word
        // again and again while the other sets bits in the high half: no
        // exchange undoes a bit, and each exchange of the low half counts.
        const ROUNDS: u32 = 20_000;
        let words = zeroed_words();
        let page = SharedPage::new(&words);
        let other = std::thread::scope(|s| {
            let g = s.spawn(|| {
                for i in 0..ROUNDS {
                    page.fetch_or_u32(12, 1 << (i % 32));
                    page.fetch_and_u32(12, !(1 << ((i + 16) % 32)) | 1 << 31);
                    page.fetch_or_u32(12, 1 << ((i + 16) % 32));
                }
            });
            let mut value = 0u32;
            for _ in 0..ROUNDS {
                assert_eq!(
                    page.compare_exchange_u32(8, value, value + 1),
                    Some(Ok(value))
                );
                value += 1;
                assert_eq!(page.fetch_update_u32(8, |v| Some(v + 1)), Some(Ok(value)));
                value += 1;
            }
            g.join()
        });
        assert!(other.is_ok());
        assert_eq!(page.load_u32(8), Some(2 * ROUNDS));
        assert_eq!(page.load_u32(12), Some(u32::MAX));
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
