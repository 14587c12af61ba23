//! Host frames: the one place where a machine address of identity-mapped
//! RAM becomes memory that Rust reads and writes.
//!
//! The hypervisor's page tables map all host RAM at its physical address
//! (`paging`), so a machine address is also a pointer. Two types turn one
//! into the other, and only they build raw pointers or slices from it:
//!
//! - [`HostFrames`] owns contiguous frames taken from the frame allocator
//!   that no guest sees (scratch buffers, the SVM permission maps, an
//!   XSAVE area): plain slices, given back to the allocator on drop.
//! - [`FrameRef`] borrows memory that someone else owns and that a guest
//!   may write while the hypervisor looks (guest RAM, shared info, grant
//!   frames, a page another domain granted). It hands out no plain
//!   reference to its bytes: only copies in and out, bounds-checked, and
//!   atomic views (the guest's `lock` instructions pair with them).
//!
//! Whoever makes one vouches once, in its `unsafe` constructor, that the
//! range is identity-mapped RAM that stays alive (and, for
//! [`HostFrames`], is used by nothing else) for as long as the value.

use core::marker::PhantomData;
use core::sync::atomic::AtomicU64;

/// Bytes in a frame.
pub const PAGE_SIZE: usize = 4096;

/// Contiguous host frames owned by this value alone, identity-mapped and
/// shared with no guest; given back through `free` on drop.
pub struct HostFrames {
    start: u64,
    count: usize,
    free: fn(u64, usize),
}

impl HostFrames {
    /// Takes ownership of `count` frames from machine address `start`;
    /// `free(start, count)` gives them back on drop.
    ///
    /// # Safety
    /// `start` is page-aligned; the `count` frames from it are RAM,
    /// identity-mapped in the hypervisor, and used by nothing else until
    /// this value is dropped or [`into_raw`](Self::into_raw)ed.
    pub unsafe fn from_raw(start: u64, count: usize, free: fn(u64, usize)) -> Self {
        Self { start, count, free }
    }

    /// Machine address of the first frame (for hardware structures that
    /// point at it, such as the VMCB's permission map bases).
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Number of frames.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The frames' bytes.
    pub fn as_bytes(&self) -> &[u8] {
        if self.count == 0 {
            return &[];
        }
        // SAFETY: `from_raw`'s contract: the frames are identity-mapped RAM
        // owned by this value; the shared borrow of `self` excludes writers.
        unsafe { core::slice::from_raw_parts(self.start as *const u8, self.count * PAGE_SIZE) }
    }

    /// The frames' bytes, to write.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        if self.count == 0 {
            return &mut [];
        }
        // SAFETY: as in `as_bytes`; the exclusive borrow of `self` makes
        // this the only reference.
        unsafe { core::slice::from_raw_parts_mut(self.start as *mut u8, self.count * PAGE_SIZE) }
    }

    /// Gives up ownership without freeing: (start, count).
    pub fn into_raw(self) -> (u64, usize) {
        let raw = (self.start, self.count);
        core::mem::forget(self);
        raw
    }
}

impl Drop for HostFrames {
    fn drop(&mut self) {
        if self.count > 0 {
            (self.free)(self.start, self.count);
        }
    }
}

/// Why a [`FrameRef`] access was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange;

/// Bytes written per round of [`fill_blocks`].
const BLOCK: usize = 64;

/// Writes `word` over `blocks` blocks of eight words, as Linux's
/// `clear_page` does without `rep stos` where that is slow: an emulated CPU
/// (QEMU's TCG, the test platform) runs a `rep` string instruction one
/// iteration per translated block; zeroing a 256 MiB domain this way took
/// 60 ms against 87 ms with `rep stosq` under TCG (real CPUs run both at
/// memory speed). Volatile, so that the compiler does not turn the loop back
/// into a `memset` call.
///
/// # Safety
/// `to` is 8-byte aligned and valid for `blocks * 64` bytes.
unsafe fn fill_blocks(to: *mut u64, word: u64, blocks: usize) {
    for block in 0..blocks {
        for i in 0..BLOCK / 8 {
            // SAFETY: inside the range (the caller's contract).
            unsafe { core::ptr::write_volatile(to.add(block * (BLOCK / 8) + i), word) };
        }
    }
}

/// Copies `len` bytes from `from` to `to` (not overlapping): when both are
/// 8-byte aligned and `len` is whole blocks, a block of eight words is read
/// and then written, else `memcpy`.
///
/// Why: QEMU's TCG looks each access up in a direct-mapped TLB indexed by the
/// page number, and a copy between two pages whose addresses agree modulo
/// the TLB's reach (a kernel segment copied from 2 MiB-aligned scratch
/// frames into a domain's 2 MiB-aligned frames does, page after page) misses
/// on every access when loads and stores alternate (`rep movsq`): each miss
/// swaps the two entries through the victim TLB. Copying 58 MB that way took
/// 290-500 ms under TCG against 28-50 ms between pages that do not collide;
/// eight loads then eight stores alternate eight times less often. Real CPUs
/// copy either way at memory speed.
///
/// # Safety
/// `from` is valid for reads and `to` for writes of `len` bytes; the ranges
/// do not overlap.
unsafe fn copy_bytes(from: *const u8, to: *mut u8, len: usize) {
    if !(from as usize | to as usize).is_multiple_of(8) || !len.is_multiple_of(BLOCK) {
        // SAFETY: the caller's contract.
        unsafe { core::ptr::copy_nonoverlapping(from, to, len) };
        return;
    }
    let (from, to) = (from.cast::<u64>(), to.cast::<u64>());
    for block in 0..len / BLOCK {
        let at = block * (BLOCK / 8);
        let mut words = [0u64; BLOCK / 8];
        for (i, word) in words.iter_mut().enumerate() {
            // SAFETY: inside the source range (the caller's contract),
            // aligned (checked). Volatile, so that the loads stay together
            // and the loop is not turned back into `memcpy`.
            *word = unsafe { core::ptr::read_volatile(from.add(at + i)) };
        }
        for (i, word) in words.iter().enumerate() {
            // SAFETY: inside the destination range, aligned.
            unsafe { core::ptr::write_volatile(to.add(at + i), *word) };
        }
    }
}

/// A borrowed view of `len` bytes of identity-mapped host memory that a
/// guest may write concurrently: copies and atomics only.
#[derive(Clone, Copy)]
pub struct FrameRef<'a> {
    hpa: u64,
    len: usize,
    _borrow: PhantomData<&'a [AtomicU64]>,
}

impl<'a> FrameRef<'a> {
    /// A view of `len` bytes at machine address `hpa`.
    ///
    /// # Safety
    /// The range is RAM, identity-mapped in the hypervisor, not freed for
    /// `'a`, and nobody holds a plain (`&`/`&mut`) reference into it for
    /// `'a` (others reach it through copies, atomics or the guest).
    pub unsafe fn new(hpa: u64, len: usize) -> Self {
        Self {
            hpa,
            len,
            _borrow: PhantomData,
        }
    }

    /// Machine address of the first byte.
    pub fn hpa(&self) -> u64 {
        self.hpa
    }

    /// Bytes in the view.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn range(&self, offset: usize, len: usize) -> Result<*mut u8, OutOfRange> {
        let end = offset.checked_add(len).ok_or(OutOfRange)?;
        if end > self.len {
            return Err(OutOfRange);
        }
        Ok((self.hpa as usize + offset) as *mut u8)
    }

    /// Copies `buf.len()` bytes from `offset` into `buf`.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let from = self.range(offset, buf.len())?;
        // SAFETY: the range lies inside the view (checked), which `new`'s
        // contract keeps mapped and alive; `buf` is the caller's own memory
        // and cannot overlap memory nobody holds a reference into.
        unsafe { copy_bytes(from, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `buf` to `offset`.
    pub fn write(&self, offset: usize, buf: &[u8]) -> Result<(), OutOfRange> {
        let to = self.range(offset, buf.len())?;
        // SAFETY: as in `read`, the other way.
        unsafe { copy_bytes(buf.as_ptr(), to, buf.len()) };
        Ok(())
    }

    /// Sets every byte of the view to `byte`.
    pub fn fill(&self, byte: u8) {
        let at = self.hpa as *mut u8;
        if (at as usize).is_multiple_of(8) && self.len.is_multiple_of(BLOCK) {
            // SAFETY: the whole view (aligned, whole blocks: checked), which
            // `new`'s contract keeps mapped.
            unsafe { fill_blocks(at.cast(), u64::from_ne_bytes([byte; 8]), self.len / BLOCK) };
            return;
        }
        // SAFETY: the whole view, which `new`'s contract keeps mapped.
        unsafe { core::ptr::write_bytes(at, byte, self.len) };
    }

    /// Copies `len` bytes from `offset` of this view to `to_offset` of
    /// `dst` (the ranges may overlap: a copy within one page).
    pub fn copy_to(
        &self,
        offset: usize,
        dst: &FrameRef<'_>,
        to_offset: usize,
        len: usize,
    ) -> Result<(), OutOfRange> {
        let from = self.range(offset, len)?;
        let to = dst.range(to_offset, len)?;
        // SAFETY: both ranges lie inside their views (checked), which
        // `new`'s contract keeps mapped and alive; `copy` allows overlap.
        unsafe { core::ptr::copy(from, to, len) };
        Ok(())
    }

    /// The view as one page of 64-bit atomic words (it must be one
    /// page-aligned page).
    pub fn atomic_page(&self) -> Result<&'a [AtomicU64; PAGE_SIZE / 8], OutOfRange> {
        if !self.hpa.is_multiple_of(PAGE_SIZE as u64) || self.len != PAGE_SIZE {
            return Err(OutOfRange);
        }
        // SAFETY: one aligned page, alive for 'a (`new`); only atomic or
        // unreferenced accesses reach it.
        Ok(unsafe { &*(self.hpa as *const [AtomicU64; PAGE_SIZE / 8]) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::alloc::{alloc_zeroed, dealloc, Layout};
    use core::sync::atomic::Ordering;

    const LAYOUT: Layout = match Layout::from_size_align(2 * PAGE_SIZE, PAGE_SIZE) {
        Ok(layout) => layout,
        Err(_) => panic!(),
    };

    /// Two page-aligned pages of the test's heap standing in for host RAM.
    fn pages() -> u64 {
        // SAFETY: a non-zero-sized layout.
        let at = unsafe { alloc_zeroed(LAYOUT) } as u64;
        assert_ne!(at, 0);
        at
    }

    fn free(start: u64, count: usize) {
        assert_eq!(count, 2);
        // SAFETY: allocated by `pages` with LAYOUT, freed once.
        unsafe { dealloc(start as *mut u8, LAYOUT) };
    }

    #[test]
    fn frame_ref_copies_are_bounded() {
        let at = pages();
        {
            // SAFETY: the test's own pages, alive in this block.
            let view = unsafe { FrameRef::new(at + 16, 32) };
            assert_eq!(view.write(30, &[1, 2]), Ok(()));
            assert_eq!(view.write(31, &[1, 2]), Err(OutOfRange));
            assert_eq!(view.write(usize::MAX, &[1]), Err(OutOfRange));
            let mut buf = [0u8; 3];
            assert_eq!(view.read(29, &mut buf), Ok(()));
            assert_eq!(buf, [0, 1, 2]);
            assert_eq!(view.read(30, &mut buf), Err(OutOfRange));
            view.fill(0xAA);
            // SAFETY: as above.
            let page = unsafe { FrameRef::new(at, PAGE_SIZE) };
            let mut around = [0u8; 18];
            page.read(15, &mut around).unwrap();
            assert_eq!(around[0], 0, "nothing before the view");
            assert_eq!(around[1..17], [0xAA; 16]);
        }
        free(at, 2);
    }

    #[test]
    fn frame_ref_copy_to_overlapping() {
        let at = pages();
        {
            // SAFETY: the test's own pages, alive in this block.
            let page = unsafe { FrameRef::new(at, PAGE_SIZE) };
            page.write(0, &[1, 2, 3, 4]).unwrap();
            page.copy_to(0, &page, 2, 4).unwrap();
            let mut buf = [0u8; 6];
            page.read(0, &mut buf).unwrap();
            assert_eq!(buf, [1, 2, 1, 2, 3, 4]);
            assert_eq!(page.copy_to(4094, &page, 0, 3), Err(OutOfRange));
            assert_eq!(page.copy_to(0, &page, 4094, 3), Err(OutOfRange));
        }
        free(at, 2);
    }

    /// Reads and writes (whole aligned blocks: eight loads, then eight
    /// stores; otherwise `memcpy`), copies and fills (word stores or
    /// `write_bytes`) give back what was written and touch nothing outside
    /// their range.
    #[test]
    fn copies_and_fills_stay_in_their_range() {
        let at = pages();
        {
            // SAFETY: the test's own pages, alive in this block.
            let both = unsafe { FrameRef::new(at, 2 * PAGE_SIZE) };
            let pattern: alloc::vec::Vec<u8> = (0..PAGE_SIZE).map(|i| (i * 7 + 3) as u8).collect();
            for (offset, len) in [
                (0, PAGE_SIZE),
                (64, 128),
                (8, 64),
                (1, 64),
                (8, 60),
                (3, 4093),
            ] {
                both.fill(0);
                both.write(offset, &pattern[..len]).unwrap();
                let mut back = alloc::vec![0u8; len];
                both.read(offset, &mut back).unwrap();
                assert_eq!(back, pattern[..len], "read back {offset}+{len}");
                let mut first = alloc::vec![0xFFu8; PAGE_SIZE];
                both.read(0, &mut first).unwrap();
                assert!(
                    first[..offset]
                        .iter()
                        .chain(&first[offset + len..])
                        .all(|b| *b == 0),
                    "write {offset}+{len} stays in its range"
                );
                // Apart: into the second page; nothing around it changes.
                both.copy_to(offset, &both, PAGE_SIZE + offset, len)
                    .unwrap();
                let mut copy = alloc::vec![0u8; PAGE_SIZE];
                both.read(PAGE_SIZE, &mut copy).unwrap();
                assert!(
                    copy[..offset].iter().all(|b| *b == 0),
                    "before {offset}+{len}"
                );
                assert_eq!(copy[offset..offset + len], pattern[..len]);
                assert!(
                    copy[offset + len..].iter().all(|b| *b == 0),
                    "after {offset}+{len}"
                );
                // SAFETY: as above.
                let part = unsafe { FrameRef::new(at + PAGE_SIZE as u64 + offset as u64, len) };
                part.fill(0x5A);
                both.read(PAGE_SIZE, &mut copy).unwrap();
                assert!(copy[offset..offset + len].iter().all(|b| *b == 0x5A));
                assert!(
                    copy[offset + len..].iter().all(|b| *b == 0),
                    "fill {offset}+{len}"
                );
            }
            // Overlapping by a whole block: still a correct move.
            both.write(0, &pattern[..256]).unwrap();
            both.copy_to(0, &both, 64, 256).unwrap();
            let mut moved = [0u8; 256];
            both.read(64, &mut moved).unwrap();
            assert_eq!(moved[..], pattern[..256]);
        }
        free(at, 2);
    }

    #[test]
    fn frame_ref_atomic_page_checks_alignment() {
        let at = pages();
        {
            // SAFETY: the test's own pages, alive in this block.
            let page = unsafe { FrameRef::new(at, PAGE_SIZE) };
            page.atomic_page().unwrap()[1].store(0x1234_5678, Ordering::Relaxed);
            let mut word = [0u8; 8];
            page.read(8, &mut word).unwrap();
            assert_eq!(u64::from_le_bytes(word), 0x1234_5678);
            // SAFETY: as above.
            let unaligned = unsafe { FrameRef::new(at + 8, PAGE_SIZE) };
            assert!(unaligned.atomic_page().is_err());
            // SAFETY: as above.
            let short = unsafe { FrameRef::new(at, 6) };
            assert!(short.atomic_page().is_err());
        }
        free(at, 2);
    }

    #[test]
    fn host_frames_free_on_drop_only() {
        use std::sync::atomic::AtomicUsize;
        static FREED: AtomicUsize = AtomicUsize::new(0);
        fn count_and_free(start: u64, n: usize) {
            FREED.fetch_add(1, Ordering::Relaxed);
            free(start, n);
        }
        let at = pages();
        // SAFETY: the test's own pages, handed over whole.
        let mut frames = unsafe { HostFrames::from_raw(at, 2, count_and_free) };
        assert_eq!(frames.as_bytes().len(), 2 * PAGE_SIZE);
        frames.as_bytes_mut()[PAGE_SIZE] = 7;
        assert_eq!(frames.as_bytes()[PAGE_SIZE], 7);
        let (start, count) = frames.into_raw();
        assert_eq!(FREED.load(Ordering::Relaxed), 0, "into_raw does not free");
        // SAFETY: taken back from `into_raw`.
        drop(unsafe { HostFrames::from_raw(start, count, count_and_free) });
        assert_eq!(FREED.load(Ordering::Relaxed), 1);
    }
}
