//! The console history (Xen's `conring`): the last [`CONRING_SIZE`] bytes the
//! hypervisor printed, its own messages and the guests' console lines, for
//! `XEN_SYSCTL_readconsole` (`xl dmesg`). Indices run freely modulo 2^32 as
//! Xen's `conringp` (producer) and `conringc` (the oldest byte kept); a reader
//! may start from an index it got earlier (incremental reads) and may clear
//! what it read.
// Input from the control domain is parsed here: no unchecked arithmetic, no
// indexing that can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use alloc::vec::Vec;

/// Bytes of history (Xen's default `conring_size`, 16 KiB).
pub const CONRING_SIZE: usize = 16 * 1024;

/// The ring: a fixed buffer and two free-running indices.
pub struct ConRing {
    buf: [u8; CONRING_SIZE],
    /// Index of the next byte written.
    prod: u32,
    /// Index of the oldest byte kept (or cleared up to).
    cons: u32,
}

impl Default for ConRing {
    fn default() -> Self {
        Self::new()
    }
}

impl ConRing {
    /// An empty ring.
    pub const fn new() -> Self {
        Self {
            buf: [0; CONRING_SIZE],
            prod: 0,
            cons: 0,
        }
    }

    /// Appends `bytes`; the oldest ones go when the ring is full.
    pub fn put(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if let Some(slot) = self.buf.get_mut(self.prod as usize % CONRING_SIZE) {
                *slot = b;
            }
            self.prod = self.prod.wrapping_add(1);
        }
        if self.prod.wrapping_sub(self.cons) as usize > CONRING_SIZE {
            self.cons = self.prod.wrapping_sub(CONRING_SIZE as u32);
        }
    }

    /// Xen's `read_console_ring`: appends to `out` up to `max` bytes from
    /// the oldest kept, or from `from` (an index an earlier read returned)
    /// if that is newer; returns the index after them (for the next
    /// incremental read, and for [`ConRing::clear_to`]).
    pub fn read(&self, from: Option<u32>, max: usize, out: &mut Vec<u8>) -> u32 {
        let mut c = self.cons;
        if let Some(index) = from {
            // Newer than the oldest byte kept, and not past the end.
            let ahead = index.wrapping_sub(c);
            if ahead as i32 > 0 && ahead <= self.prod.wrapping_sub(c) {
                c = index;
            }
        }
        let mut done = 0usize;
        while c != self.prod && done < max {
            let at = c as usize % CONRING_SIZE;
            let len = (self.prod.wrapping_sub(c) as usize)
                .min(CONRING_SIZE.saturating_sub(at))
                .min(max.saturating_sub(done));
            out.extend_from_slice(self.buf.get(at..at.saturating_add(len)).unwrap_or(&[]));
            done = done.saturating_add(len);
            c = c.wrapping_add(len as u32);
        }
        c
    }

    /// Drops the history up to `index` (a read's result; as Xen's `clear`,
    /// only what the reader got, and nothing outside what is kept).
    pub fn clear_to(&mut self, index: u32) {
        if index.wrapping_sub(self.cons) <= self.prod.wrapping_sub(self.cons) {
            self.cons = index;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(ring: &ConRing, from: Option<u32>, max: usize) -> (Vec<u8>, u32) {
        let mut out = Vec::new();
        let index = ring.read(from, max, &mut out);
        (out, index)
    }

    #[test]
    fn reads_what_was_printed_and_continues_from_an_index() {
        let mut ring = ConRing::new();
        ring.put(b"hello ");
        let (text, index) = read_all(&ring, None, 100);
        assert_eq!((text.as_slice(), index), (&b"hello "[..], 6));
        ring.put(b"world");
        assert_eq!(read_all(&ring, Some(index), 100).0, b"world");
        assert_eq!(read_all(&ring, None, 100).0, b"hello world");
        // A small buffer: the first bytes, and where to go on.
        assert_eq!(read_all(&ring, None, 3), (b"hel".to_vec(), 3));
        // An index past the end, or older than the history, reads it all.
        assert_eq!(read_all(&ring, Some(9999), 100).0, b"hello world");
    }

    #[test]
    fn keeps_the_last_16_kib_across_the_wrap() {
        let mut ring = ConRing::new();
        let text: Vec<u8> = (0..CONRING_SIZE + 1000).map(|i| (i % 251) as u8).collect();
        ring.put(&text);
        let (all, index) = read_all(&ring, None, 2 * CONRING_SIZE);
        assert_eq!(all.len(), CONRING_SIZE);
        assert_eq!(all, text[1000..]);
        assert_eq!(index as usize, CONRING_SIZE + 1000);
    }

    #[test]
    fn clear_drops_only_what_was_read() {
        let mut ring = ConRing::new();
        ring.put(b"abcdef");
        let (_, index) = read_all(&ring, None, 3);
        ring.clear_to(index);
        assert_eq!(read_all(&ring, None, 10).0, b"def");
        // An index outside the history clears nothing.
        ring.clear_to(9999);
        assert_eq!(read_all(&ring, None, 10).0, b"def");
        ring.clear_to(6);
        assert!(read_all(&ring, None, 10).0.is_empty());
    }
}
