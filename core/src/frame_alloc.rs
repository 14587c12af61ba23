//! The physical frame allocator: 4 KiB frames tracked in a caller-provided
//! bitmap.
//!
//! This module owns the bookkeeping of which physical frames are free. It
//! needs no heap: the caller sizes the bitmap with [`bitmap_words`], places it
//! with [`find_free_range`] and lends it to [`FrameAllocator::new`]. None of
//! these functions allocates.
//!
//! The bitmap holds two bit arrays of equal length: first the *managed* bits
//! (usable frames the allocator may hand out at all), then the *free* bits.
//! Frame 0 is never managed, so that physical address 0 (a null pointer) is
//! never handed out.

use crate::memmap::{MemoryMap, PAGE_SIZE};
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

/// Size of a frame in bytes.
pub const FRAME_SIZE: u64 = PAGE_SIZE;

const BITS: u64 = u64::BITS as u64;

/// Why an allocator operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameAllocError {
    /// The bitmap given to [`FrameAllocator::new`] is shorter than
    /// [`bitmap_words`] requires.
    BitmapTooSmall {
        /// Words required.
        needed: usize,
        /// Words provided.
        provided: usize,
    },
    /// The address is not frame aligned.
    Unaligned(u64),
    /// The address lies beyond the highest usable frame.
    OutOfRange(u64),
    /// The frame is not one the allocator manages (non-usable, reserved or
    /// frame 0), so it can never be freed.
    NotManaged(u64),
    /// The frame is already free.
    DoubleFree(u64),
}

impl fmt::Display for FrameAllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameAllocError::BitmapTooSmall { needed, provided } => write!(
                f,
                "frame bitmap too small: {provided} words provided, {needed} needed"
            ),
            FrameAllocError::Unaligned(a) => write!(f, "address {a:#x} is not frame aligned"),
            FrameAllocError::OutOfRange(a) => {
                write!(f, "address {a:#x} is beyond the managed memory")
            }
            FrameAllocError::NotManaged(a) => {
                write!(f, "frame {a:#x} is not allocatable memory")
            }
            FrameAllocError::DoubleFree(a) => write!(f, "frame {a:#x} is already free"),
        }
    }
}

/// Number of frames covering `0..max_usable_end`.
fn frame_count(map: &MemoryMap) -> u64 {
    map.max_usable_end().div_ceil(FRAME_SIZE)
}

/// Words of bitmap one bit array needs for `frames` frames.
fn words_for(frames: u64) -> u64 {
    frames.div_ceil(BITS)
}

/// Number of `u64` words of bitmap [`FrameAllocator::new`] needs for `map`
/// (two bits per frame from 0 up to the end of the highest usable region).
pub fn bitmap_words(map: &MemoryMap) -> usize {
    // At most 2 * 2^52 / 2^12 / 64 = 2^35 words, which fits a 64-bit usize;
    // saturate on narrower targets instead of truncating.
    usize::try_from(words_for(frame_count(map)) * 2).unwrap_or(usize::MAX)
}

/// Whether `[start, end)` touches a non-empty range of `reserved`; returns
/// the highest end among those touched.
fn reserved_overlap(reserved: &[Range<u64>], start: u64, end: u64) -> Option<u64> {
    reserved
        .iter()
        .filter(|r| r.start < r.end && r.start < end && start < r.end)
        .map(|r| r.end)
        .max()
}

/// Finds the lowest frame-aligned physical address of `bytes` (rounded up to
/// whole frames) of usable memory that touches no range of `reserved` and
/// does not include frame 0. Returns `None` if there is no such place or
/// `bytes` is 0.
pub fn find_free_range(map: &MemoryMap, reserved: &[Range<u64>], bytes: u64) -> Option<u64> {
    if bytes == 0 {
        return None;
    }
    let size = bytes.checked_next_multiple_of(FRAME_SIZE)?;
    for region in map.usable() {
        let mut start = region
            .start
            .max(FRAME_SIZE)
            .checked_next_multiple_of(FRAME_SIZE)?;
        while let Some(end) = start.checked_add(size) {
            if end > region.end {
                break;
            }
            match reserved_overlap(reserved, start, end) {
                None => return Some(start),
                Some(r_end) => match r_end.checked_next_multiple_of(FRAME_SIZE) {
                    Some(next) if next > start => start = next,
                    _ => break,
                },
            }
        }
    }
    None
}

/// A bitmap allocator of 4 KiB physical frames.
#[derive(Debug)]
pub struct FrameAllocator<'a> {
    /// Managed bits, one word per 64 frames.
    managed: &'a mut [u64],
    /// Free bits, same layout.
    free: &'a mut [u64],
    /// Frames covered: 0..frames.
    frames: u64,
    /// Managed frames.
    total: u64,
    /// Free frames.
    free_count: u64,
    /// Word index where the next single-frame search starts.
    hint: usize,
}

/// Sets (`value` true) or clears the bits of frames `first..last` in `words`.
fn fill(words: &mut [u64], first: u64, last: u64, value: bool) {
    let mut frame = first;
    while frame < last {
        let Ok(word) = usize::try_from(frame / BITS) else {
            return;
        };
        let bit = frame % BITS;
        let n = (BITS - bit).min(last - frame);
        let mask = if n == BITS {
            u64::MAX
        } else {
            ((1u64 << n) - 1) << bit
        };
        let Some(w) = words.get_mut(word) else {
            return;
        };
        if value {
            *w |= mask;
        } else {
            *w &= !mask;
        }
        frame += n;
    }
}

impl<'a> FrameAllocator<'a> {
    /// Builds an allocator over `bitmap`, which must hold at least
    /// [`bitmap_words`]`(map)` words (any extra words are left unused).
    ///
    /// Free frames are the usable frames of `map` that touch no range of
    /// `reserved` (a frame partly covered by a reserved range is reserved),
    /// except frame 0. Everything else is never handed out.
    pub fn new(
        bitmap: &'a mut [u64],
        map: &MemoryMap,
        reserved: &[Range<u64>],
    ) -> Result<Self, FrameAllocError> {
        let frames = frame_count(map);
        let needed = bitmap_words(map);
        if bitmap.len() < needed {
            return Err(FrameAllocError::BitmapTooSmall {
                needed,
                provided: bitmap.len(),
            });
        }
        let half = needed / 2;
        let (managed, rest) = bitmap.split_at_mut(half);
        let (free, _) = rest.split_at_mut(half);
        managed.fill(0);
        for region in map.usable() {
            // Usable regions are page aligned in a sanitized map; round
            // inward anyway so a partial frame is never managed.
            let first = region.start.div_ceil(FRAME_SIZE);
            let last = region.end / FRAME_SIZE;
            fill(managed, first, last, true);
        }
        for r in reserved {
            if r.start >= r.end {
                continue;
            }
            let first = r.start / FRAME_SIZE;
            let last = r.end.div_ceil(FRAME_SIZE).min(frames);
            fill(managed, first, last, false);
        }
        fill(managed, 0, 1.min(frames), false);
        free.copy_from_slice(managed);
        let total = managed.iter().map(|w| u64::from(w.count_ones())).sum();
        Ok(FrameAllocator {
            managed,
            free,
            frames,
            total,
            free_count: total,
            hint: 0,
        })
    }

    /// Allocates one frame and returns its physical address, or `None` if
    /// no frame is free.
    pub fn alloc(&mut self) -> Option<u64> {
        let n = self.free.len();
        if n == 0 || self.free_count == 0 {
            return None;
        }
        let start = self.hint.min(n - 1);
        let index = (start..n)
            .chain(0..start)
            .find(|&i| self.free.get(i).is_some_and(|w| *w != 0))?;
        let word = self.free.get_mut(index)?;
        let bit = u64::from(word.trailing_zeros());
        *word &= !(1u64 << bit);
        self.free_count -= 1;
        self.hint = index;
        Some((index as u64 * BITS + bit) * FRAME_SIZE)
    }

    /// Allocates `count` physically contiguous frames whose first frame
    /// number is a multiple of `align_frames`, returning the physical address
    /// of the first. Returns `None` if `count` is 0, `align_frames` is not a
    /// power of two, or no such run is free.
    pub fn alloc_contiguous(&mut self, count: usize, align_frames: usize) -> Option<u64> {
        if count == 0 || !align_frames.is_power_of_two() {
            return None;
        }
        let count = count as u64;
        let align = align_frames as u64;
        if count > self.free_count {
            return None;
        }
        let mut candidate = 0u64;
        'search: loop {
            let end = candidate.checked_add(count)?;
            if end > self.frames {
                return None;
            }
            let mut frame = candidate;
            while frame < end {
                if !self.bit(false, frame) {
                    // Skip whole words with no free frame quickly.
                    let mut next = frame + 1;
                    if self.free_word(frame) == 0 {
                        next = (frame / BITS + 1) * BITS;
                    }
                    candidate = next.checked_next_multiple_of(align)?;
                    continue 'search;
                }
                frame += 1;
            }
            fill(self.free, candidate, end, false);
            self.free_count -= count;
            return Some(candidate * FRAME_SIZE);
        }
    }

    /// Returns the frame at `addr` to the allocator.
    ///
    /// Fails, changing nothing, if `addr` is unaligned, beyond the managed
    /// memory, a frame that was never allocatable, or already free.
    pub fn free(&mut self, addr: u64) -> Result<(), FrameAllocError> {
        if !addr.is_multiple_of(FRAME_SIZE) {
            return Err(FrameAllocError::Unaligned(addr));
        }
        let frame = addr / FRAME_SIZE;
        if frame >= self.frames {
            return Err(FrameAllocError::OutOfRange(addr));
        }
        if !self.bit(true, frame) {
            return Err(FrameAllocError::NotManaged(addr));
        }
        if self.bit(false, frame) {
            return Err(FrameAllocError::DoubleFree(addr));
        }
        fill(self.free, frame, frame + 1, true);
        self.free_count += 1;
        if let Ok(word) = usize::try_from(frame / BITS) {
            self.hint = self.hint.min(word);
        }
        Ok(())
    }

    /// Whether the frame containing `addr` is free.
    pub fn is_free(&self, addr: u64) -> bool {
        self.bit(false, addr / FRAME_SIZE)
    }

    /// Number of free frames.
    pub fn free_frames(&self) -> u64 {
        self.free_count
    }

    /// Number of frames the allocator manages (free or allocated).
    pub fn total_frames(&self) -> u64 {
        self.total
    }

    /// The managed (`managed` true) or free bit of `frame`; false beyond
    /// the bitmap.
    fn bit(&self, managed: bool, frame: u64) -> bool {
        let words: &[u64] = if managed { self.managed } else { self.free };
        usize::try_from(frame / BITS)
            .ok()
            .and_then(|i| words.get(i))
            .is_some_and(|w| w & (1u64 << (frame % BITS)) != 0)
    }

    /// The free word containing `frame` (0 beyond the bitmap).
    fn free_word(&self, frame: u64) -> u64 {
        usize::try_from(frame / BITS)
            .ok()
            .and_then(|i| self.free.get(i))
            .copied()
            .unwrap_or(0)
    }
}

/// Pages in a domain's paging pool (Xen's HAP pool) unless configured:
/// 256 pages per vCPU plus one page per MiB of RAM, rounded up to whole
/// MiB, as Xen's `dom0_paging_pages` and libxl's
/// `libxl__get_required_paging_memory` compute it for a HAP guest.
pub fn default_paging_pages(vcpus: u32, ram_bytes: u64) -> u64 {
    let kib = 4 * (256 * u64::from(vcpus) + ram_bytes / (1 << 20));
    kib.div_ceil(1024) * 256
}

/// Why the paging pool refused an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// No heap for the pool's bookkeeping.
    NoMemory,
    /// The pool already holds every frame it was sized for.
    Full,
    /// More frames came back than were handed out.
    NotInUse(u64),
}

/// A domain's paging pool (Xen's HAP pool, `d->arch.paging.hap`): frames
/// taken from the machine when the domain is made, from which its nested
/// page tables are built. A table that maps nothing any more goes back to
/// the pool, never to the machine, so another domain never gets a frame
/// that a stale walk of this domain's tables may still reach; the frames
/// leave the pool only when the domain is gone. When the pool is empty the
/// guest's request fails with `-ENOMEM`.
///
/// The bookkeeping is allocated once, at [`PagingPool::new`]; nothing
/// allocates afterwards.
#[derive(Debug)]
pub struct PagingPool {
    /// Frames not in use.
    free: Vec<u64>,
    /// Frames the pool was sized for.
    size: usize,
    /// Frames the pool holds (free or in use).
    total: usize,
    /// Allocations refused since the pool was made.
    failures: u64,
    /// Most frames in use at once.
    peak: usize,
}

impl PagingPool {
    /// An empty pool for `pages` frames (fill it with [`PagingPool::add`]).
    pub fn new(pages: usize) -> Result<Self, PoolError> {
        let mut free = Vec::new();
        free.try_reserve_exact(pages)
            .map_err(|_| PoolError::NoMemory)?;
        Ok(Self {
            free,
            size: pages,
            total: 0,
            failures: 0,
            peak: 0,
        })
    }

    /// Adds a frame of the machine to the pool; gives it back when the pool
    /// is already at its size.
    pub fn add(&mut self, frame: u64) -> Result<(), PoolError> {
        if self.total >= self.size {
            return Err(PoolError::Full);
        }
        self.free.push(frame);
        self.total += 1;
        Ok(())
    }

    /// Takes a frame for a page table; `None` when every frame is in use.
    pub fn alloc(&mut self) -> Option<u64> {
        let frame = self.free.pop();
        if frame.is_none() {
            self.failures = self.failures.saturating_add(1);
        }
        self.peak = self.peak.max(self.in_use());
        frame
    }

    /// Gives back a frame [`PagingPool::alloc`] handed out.
    pub fn free(&mut self, frame: u64) -> Result<(), PoolError> {
        if self.free.len() >= self.total {
            return Err(PoolError::NotInUse(frame));
        }
        self.free.push(frame);
        Ok(())
    }

    /// Empties the pool when the domain is gone: `give_back` gets every free
    /// frame. Returns how many frames were still in use (not given back to
    /// the pool: lost to the machine).
    pub fn release(&mut self, give_back: &mut dyn FnMut(u64)) -> usize {
        let in_use = self.in_use();
        for frame in self.free.drain(..) {
            give_back(frame);
        }
        self.total = 0;
        in_use
    }

    /// Frames the pool was sized for.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Frames the pool holds, free or in use.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Frames in use as page tables.
    pub fn in_use(&self) -> usize {
        self.total - self.free.len()
    }

    /// Allocations refused (the pool was empty).
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Most frames in use at once so far.
    pub fn peak(&self) -> usize {
        self.peak
    }
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use crate::memmap::{sanitize, RawEntry};
    use alloc::collections::BTreeSet;
    use alloc::string::ToString;
    use alloc::vec;
    use alloc::vec::Vec;

    fn map_of(entries: &[(u64, u64, u32)]) -> MemoryMap {
        let raw: Vec<RawEntry> = entries
            .iter()
            .map(|&(b, l, t)| RawEntry::from_e820(b, l, t))
            .collect();
        sanitize(&raw, &mut |_| {})
    }

    fn qemu_map() -> MemoryMap {
        map_of(&[
            (0, 0x9fc00, 1),
            (0x9fc00, 0x400, 2),
            (0xf0000, 0x10000, 2),
            (0x100000, 0x700000, 1),
            (0x800000, 0x100000, 2),
            (0x900000, 0x100000, 1),
        ])
    }

    #[test]
    fn bitmap_words_sizes() {
        assert_eq!(bitmap_words(&MemoryMap::default()), 0);
        // 64 frames -> one word per array.
        assert_eq!(bitmap_words(&map_of(&[(0, 64 * 4096, 1)])), 2);
        assert_eq!(bitmap_words(&map_of(&[(0, 65 * 4096, 1)])), 4);
        // Non-usable memory above the last usable region does not count.
        assert_eq!(
            bitmap_words(&map_of(&[(0, 64 * 4096, 1), (1 << 40, 1 << 30, 2)])),
            2
        );
        // 0xa00000 bytes = 2560 frames = 40 words per array.
        assert_eq!(bitmap_words(&qemu_map()), 80);
    }

    #[test]
    fn too_small_bitmap() {
        let map = qemu_map();
        let mut bitmap = vec![0u64; 79];
        assert_eq!(
            FrameAllocator::new(&mut bitmap, &map, &[]).err(),
            Some(FrameAllocError::BitmapTooSmall {
                needed: 80,
                provided: 79
            })
        );
    }

    #[test]
    fn empty_map() {
        let map = MemoryMap::default();
        let mut bitmap: [u64; 0] = [];
        let mut a = FrameAllocator::new(&mut bitmap, &map, &[]).unwrap();
        assert_eq!(a.total_frames(), 0);
        assert_eq!(a.alloc(), None);
        assert_eq!(a.alloc_contiguous(1, 1), None);
        assert_eq!(a.free(0), Err(FrameAllocError::OutOfRange(0)));
        assert!(!a.is_free(0));
    }

    #[test]
    fn find_free_range_basic() {
        let map = qemu_map();
        // Frame 0 is skipped.
        assert_eq!(find_free_range(&map, &[], 1), Some(0x1000));
        assert_eq!(find_free_range(&map, &[], 0), None);
        // Too big for low memory: goes to 1 MiB.
        assert_eq!(find_free_range(&map, &[], 0xa0000), Some(0x100000));
        // Reserved ranges are avoided, partial frames included.
        assert_eq!(
            find_free_range(&map, &[0x100000..0x200001], 0x2000),
            Some(0x1000)
        );
        assert_eq!(
            find_free_range(&map, &[0..0x9f000, 0x100000..0x200001], 0x2000),
            Some(0x201000)
        );
        // Empty reserved ranges are ignored.
        assert_eq!(
            find_free_range(&map, &[0x5000..0x5000], 0x1000),
            Some(0x1000)
        );
        // Does not straddle regions.
        assert_eq!(find_free_range(&map, &[], 0x800000), None);
        assert_eq!(find_free_range(&map, &[], u64::MAX), None);
        assert_eq!(find_free_range(&map, &[0..u64::MAX], 1), None);
    }

    #[test]
    fn place_bitmap_then_build() {
        let map = qemu_map();
        let kernel = 0x100000..0x180000;
        let words = bitmap_words(&map);
        let at = find_free_range(&map, core::slice::from_ref(&kernel), words as u64 * 8).unwrap();
        let bitmap_range = at..at + words as u64 * 8;
        let mut bitmap = vec![u64::MAX; words];
        let mut a = FrameAllocator::new(&mut bitmap, &map, &[kernel.clone(), bitmap_range.clone()])
            .unwrap();
        while let Some(f) = a.alloc() {
            assert!(!(kernel.start <= f && f < kernel.end));
            assert!(!(bitmap_range.start <= f && f < bitmap_range.end));
        }
    }

    /// Exhausts the allocator and checks every frame handed out.
    fn exhaust_and_check(map: &MemoryMap, reserved: &[Range<u64>]) {
        let mut bitmap = vec![0u64; bitmap_words(map) + 3];
        let mut a = FrameAllocator::new(&mut bitmap, map, reserved).unwrap();
        let total = a.total_frames();
        assert_eq!(a.free_frames(), total);
        let mut seen = BTreeSet::new();
        while let Some(addr) = a.alloc() {
            assert_eq!(addr % FRAME_SIZE, 0);
            assert_ne!(addr, 0);
            assert!(seen.insert(addr), "{addr:#x} handed out twice");
            assert_eq!(map.kind_at(addr), Some(crate::memmap::RegionKind::Usable));
            assert_eq!(
                map.kind_at(addr + FRAME_SIZE - 1),
                Some(crate::memmap::RegionKind::Usable)
            );
            for r in reserved {
                assert!(
                    r.start >= r.end || addr + FRAME_SIZE <= r.start || addr >= r.end,
                    "{addr:#x} touches reserved {r:?}"
                );
            }
            assert!(!a.is_free(addr));
        }
        assert_eq!(seen.len() as u64, total);
        assert_eq!(a.free_frames(), 0);
        // Count independently: usable frames (not 0) touching no reserved range.
        let mut expected = 0;
        for region in map.usable() {
            let mut f = region.start;
            while f < region.end {
                let touches = reserved
                    .iter()
                    .any(|r| r.start < r.end && r.start < f + FRAME_SIZE && f < r.end);
                if f != 0 && !touches {
                    expected += 1;
                }
                f += FRAME_SIZE;
            }
        }
        assert_eq!(total, expected);
        for addr in &seen {
            a.free(*addr).unwrap();
        }
        assert_eq!(a.free_frames(), total);
    }

    #[test]
    fn exhaust_never_hands_out_reserved_or_unusable() {
        exhaust_and_check(&qemu_map(), &[]);
        exhaust_and_check(
            &qemu_map(),
            &[
                0x1800..0x2001,
                0x100000..0x100001,
                0x3ff..0x400,
                0x9ffff..0x100000,
            ],
        );
        exhaust_and_check(
            &qemu_map(),
            &[0..u64::MAX, Range { start: 5, end: 1 }], // all reserved, plus an inverted range
        );
        exhaust_and_check(&map_of(&[(0x1000, 0x1000, 1)]), &[]);
    }

    #[test]
    fn counts_and_hint() {
        let map = map_of(&[(0, 0x100000, 1)]); // 256 frames, frame 0 unmanaged
        let mut bitmap = vec![0u64; bitmap_words(&map)];
        let mut a = FrameAllocator::new(&mut bitmap, &map, &[]).unwrap();
        assert_eq!(a.total_frames(), 255);
        assert_eq!(a.free_frames(), 255);
        let first = a.alloc().unwrap();
        let second = a.alloc().unwrap();
        assert_eq!((first, second), (0x1000, 0x2000));
        assert_eq!(a.free_frames(), 253);
        a.free(first).unwrap();
        assert!(a.is_free(first));
        assert!(a.is_free(first + 5)); // containing frame
        assert_eq!(a.alloc(), Some(first));
        assert_eq!(a.total_frames(), 255);
    }

    #[test]
    fn free_errors() {
        let map = qemu_map();
        let mut bitmap = vec![0u64; bitmap_words(&map)];
        let mut a = FrameAllocator::new(&mut bitmap, &map, &[0x200000..0x201000]).unwrap();
        let f = a.alloc().unwrap();
        assert_eq!(a.free(f + 1), Err(FrameAllocError::Unaligned(f + 1)));
        assert_eq!(a.free(0xa00000), Err(FrameAllocError::OutOfRange(0xa00000)));
        assert_eq!(a.free(!0xfff), Err(FrameAllocError::OutOfRange(!0xfff)));
        assert_eq!(a.free(0), Err(FrameAllocError::NotManaged(0)));
        assert_eq!(a.free(0x9f000), Err(FrameAllocError::NotManaged(0x9f000)));
        assert_eq!(a.free(0x200000), Err(FrameAllocError::NotManaged(0x200000)));
        assert_eq!(a.free(0x850000), Err(FrameAllocError::NotManaged(0x850000)));
        let before = a.free_frames();
        a.free(f).unwrap();
        assert_eq!(a.free(f), Err(FrameAllocError::DoubleFree(f)));
        assert_eq!(a.free_frames(), before + 1);
        for e in [
            FrameAllocError::BitmapTooSmall {
                needed: 2,
                provided: 1,
            },
            FrameAllocError::Unaligned(1),
            FrameAllocError::OutOfRange(1),
            FrameAllocError::NotManaged(1),
            FrameAllocError::DoubleFree(1),
        ] {
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn contiguous_alignment() {
        let map = qemu_map();
        let mut bitmap = vec![0u64; bitmap_words(&map)];
        let mut a = FrameAllocator::new(&mut bitmap, &map, &[]).unwrap();
        assert_eq!(a.alloc_contiguous(0, 1), None);
        assert_eq!(a.alloc_contiguous(1, 0), None);
        assert_eq!(a.alloc_contiguous(1, 3), None);
        assert_eq!(a.alloc_contiguous(usize::MAX, 1), None);
        // Frame 0 is not managed, so the first aligned pair starts at frame 2.
        assert_eq!(a.alloc_contiguous(2, 2), Some(0x2000));
        // 2 MiB aligned, 2 MiB long: low memory is too small, 0x800000 is
        // reserved, so 0x200000.
        let big = a.alloc_contiguous(512, 512).unwrap();
        assert_eq!(big, 0x200000);
        for i in 0..512 {
            assert!(!a.is_free(big + i * FRAME_SIZE));
        }
        // 1 MiB reserved hole at 0x800000 is never crossed.
        let run = a.alloc_contiguous(0x200, 1).unwrap();
        assert!(run + 0x200 * FRAME_SIZE <= 0x800000 || run >= 0x900000);
        assert_eq!(run, 0x400000);
        // 256 frames aligned to 256: what is left above 1 MiB, in order.
        for want in [0x100000, 0x600000, 0x700000, 0x900000] {
            assert_eq!(a.alloc_contiguous(256, 256), Some(want));
        }
        assert_eq!(a.alloc_contiguous(256, 256), None);
        let free_before = a.free_frames();
        // Single-frame allocations still work after contiguous ones.
        let f = a.alloc().unwrap();
        assert!(f == 0x1000 || f >= 0x4000);
        assert_eq!(a.free_frames(), free_before - 1);
    }

    #[test]
    fn contiguous_exhaustion_is_consistent() {
        let map = map_of(&[(0, 0x40000, 1)]); // 64 frames, 63 managed
        let mut bitmap = vec![0u64; bitmap_words(&map)];
        let mut a = FrameAllocator::new(&mut bitmap, &map, &[0x10000..0x11000]).unwrap();
        assert_eq!(a.total_frames(), 62);
        let mut got = Vec::new();
        while let Some(addr) = a.alloc_contiguous(3, 1) {
            for i in 0..3 {
                got.push(addr + i * FRAME_SIZE);
            }
        }
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len() as u64 + a.free_frames(), 62);
        assert!(!got.contains(&0x10000) && !got.contains(&0));
        while a.alloc().is_some() {}
        assert_eq!(a.free_frames(), 0);
    }

    #[test]
    fn paging_pool_default_size_is_xens() {
        // 256 per vCPU + 1 per MiB, rounded up to a MiB (256 pages).
        assert_eq!(default_paging_pages(1, 16 << 20), 512);
        assert_eq!(default_paging_pages(1, 0), 256);
        assert_eq!(default_paging_pages(2, 256 << 20), 768);
        assert_eq!(default_paging_pages(4, 1 << 30), 2048);
        assert_eq!(default_paging_pages(1, 256 << 20), 512);
        assert_eq!(default_paging_pages(1, 257 << 20), 768);
        assert_eq!(default_paging_pages(1, (1 << 20) - 1), 256);
    }

    #[test]
    fn paging_pool_accounting() {
        let mut pool = PagingPool::new(3).unwrap();
        assert_eq!((pool.size(), pool.total(), pool.in_use()), (3, 0, 0));
        assert_eq!(pool.alloc(), None, "an empty pool hands out nothing");
        for frame in [0x1000, 0x2000, 0x3000] {
            pool.add(frame).unwrap();
        }
        assert_eq!(pool.add(0x4000), Err(PoolError::Full));
        assert_eq!(pool.total(), 3);
        let a = pool.alloc().unwrap();
        let b = pool.alloc().unwrap();
        let c = pool.alloc().unwrap();
        assert_eq!(pool.in_use(), 3);
        assert_eq!(pool.alloc(), None, "beyond the pool: -ENOMEM for the guest");
        assert_eq!(pool.peak(), 3);
        assert_eq!(pool.failures(), 2);
        // A freed table is reused.
        pool.free(b).unwrap();
        assert_eq!(pool.alloc(), Some(b));
        pool.free(a).unwrap();
        pool.free(b).unwrap();
        pool.free(c).unwrap();
        assert_eq!(
            pool.free(c),
            Err(PoolError::NotInUse(c)),
            "more back than out"
        );
        assert_eq!(pool.in_use(), 0);
        let mut back = Vec::new();
        assert_eq!(pool.release(&mut |f| back.push(f)), 0);
        back.sort_unstable();
        assert_eq!(back, [0x1000, 0x2000, 0x3000]);
        assert_eq!(pool.total(), 0);
    }

    #[test]
    fn paging_pool_release_counts_frames_still_in_use() {
        let mut pool = PagingPool::new(2).unwrap();
        pool.add(0x1000).unwrap();
        pool.add(0x2000).unwrap();
        let kept = pool.alloc().unwrap();
        let mut back = Vec::new();
        assert_eq!(pool.release(&mut |f| back.push(f)), 1);
        assert_eq!(back.len(), 1);
        assert_ne!(back[0], kept);
    }

    #[test]
    fn paging_pool_bookkeeping_failure_is_an_error_not_an_abort() {
        let failed = crate::test_alloc::failing_allocations(|| PagingPool::new(1 << 16).err());
        assert_eq!(failed, Some(PoolError::NoMemory));
        assert!(PagingPool::new(1 << 16).is_ok());
    }
}
