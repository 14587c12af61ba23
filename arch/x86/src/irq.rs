//! Device interrupt vectors of the host (Xen's `arch/x86/irq.c` vector
//! allocation, reduced): rxen hands out vectors of
//! [`FIRST_DEVICE_VECTOR`]..=[`LAST_DEVICE_VECTOR`] to the interrupts it
//! binds for a domain (an MSI of a device dom0 drives). The interrupt entry
//! only notes the vector as pending and signals EOI (MSIs are edge
//! triggered); the scheduling loop takes the pending vectors under the
//! machine lock and delivers each to its domain.
//!
//! A vector nobody holds (a device programmed behind rxen's back) is counted
//! and dropped: every vector from 32 up has an entry, so no interrupt can
//! fault the host.

use core::sync::atomic::{AtomicU64, Ordering};

/// The first vector handed out for devices (below: exceptions, the legacy
/// PIC's range).
pub const FIRST_DEVICE_VECTOR: u8 = 0x30;
/// The last vector handed out for devices (above: rxen's timer, kick and
/// spurious vectors).
pub const LAST_DEVICE_VECTOR: u8 = 0xEF;

/// A 256-bit vector set, one bit per vector, updated atomically.
struct VectorSet([AtomicU64; 4]);

impl VectorSet {
    const fn new() -> Self {
        Self([const { AtomicU64::new(0) }; 4])
    }

    fn word(&self, vector: u8) -> (&AtomicU64, u64) {
        let [word, bit] = [usize::from(vector / 64), usize::from(vector % 64)];
        (&self.0[word], 1u64 << bit)
    }

    /// Sets `vector`; returns whether it was clear.
    fn insert(&self, vector: u8) -> bool {
        let (word, bit) = self.word(vector);
        word.fetch_or(bit, Ordering::AcqRel) & bit == 0
    }

    /// Clears `vector`; returns whether it was set.
    fn remove(&self, vector: u8) -> bool {
        let (word, bit) = self.word(vector);
        word.fetch_and(!bit, Ordering::AcqRel) & bit != 0
    }

    fn contains(&self, vector: u8) -> bool {
        let (word, bit) = self.word(vector);
        word.load(Ordering::Acquire) & bit != 0
    }
}

/// Vectors handed out.
static ALLOCATED: VectorSet = VectorSet::new();
/// Vectors that fired and were not yet taken.
static PENDING: VectorSet = VectorSet::new();
/// Interrupts on vectors nobody holds.
static STRAY: AtomicU64 = AtomicU64::new(0);

/// Hands out a free device vector, `None` when all are taken.
pub fn alloc_vector() -> Option<u8> {
    (FIRST_DEVICE_VECTOR..=LAST_DEVICE_VECTOR).find(|&v| ALLOCATED.insert(v))
}

/// Hands out `count` free device vectors in a block aligned to `count` (a
/// power of two up to 32: a multiple-message MSI, whose device sets the low
/// bits of the vector), returning the first; `None` when no such block is
/// free or `count` is not a power of two up to 32.
pub fn alloc_vectors(count: u8) -> Option<u8> {
    if !count.is_power_of_two() || count > 32 {
        return None;
    }
    let first = FIRST_DEVICE_VECTOR.next_multiple_of(count);
    (first..=LAST_DEVICE_VECTOR)
        .step_by(usize::from(count))
        .filter(|&base| {
            base.checked_add(count - 1)
                .is_some_and(|l| l <= LAST_DEVICE_VECTOR)
        })
        .find(|&base| {
            // Taken one by one; a block another CPU holds part of is let go.
            for (i, v) in (base..base + count).enumerate() {
                if !ALLOCATED.insert(v) {
                    (base..base + i as u8).for_each(|v| {
                        ALLOCATED.remove(v);
                    });
                    return false;
                }
            }
            true
        })
}

/// Gives `vector` back (an interrupt already pending on it is dropped).
pub fn free_vector(vector: u8) {
    PENDING.remove(vector);
    ALLOCATED.remove(vector);
}

/// Vectors handed out right now.
pub fn allocated() -> usize {
    ALLOCATED
        .0
        .iter()
        .map(|w| w.load(Ordering::Relaxed).count_ones() as usize)
        .sum()
}

/// Notes an interrupt on `vector` (from the interrupt entry, before its
/// EOI): pending if the vector is handed out, a stray otherwise.
pub fn note(vector: u8) {
    if ALLOCATED.contains(vector) {
        PENDING.insert(vector);
    } else {
        STRAY.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether any device interrupt waits to be delivered.
pub fn any_pending() -> bool {
    PENDING.0.iter().any(|w| w.load(Ordering::Acquire) != 0)
}

/// Takes every pending vector, lowest first, and hands it to `deliver`.
pub fn take_pending(mut deliver: impl FnMut(u8)) {
    for (i, word) in PENDING.0.iter().enumerate() {
        let mut bits = word.swap(0, Ordering::AcqRel);
        while bits != 0 {
            let bit = bits.trailing_zeros();
            bits &= bits - 1;
            // i < 4 and bit < 64: the vector fits in a byte.
            deliver((i as u32 * 64 + bit) as u8);
        }
    }
}

/// Interrupts that arrived on vectors nobody holds, since boot.
pub fn stray() -> u64 {
    STRAY.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The only test of the global sets: allocation, an interrupt on a held
    /// vector and on a free one, taking, freeing.
    #[test]
    fn vectors_are_handed_out_noted_and_taken() {
        let a = alloc_vector().expect("a vector");
        let b = alloc_vector().expect("another");
        assert!((FIRST_DEVICE_VECTOR..=LAST_DEVICE_VECTOR).contains(&a));
        assert_ne!(a, b);
        assert_eq!(allocated(), 2);
        assert!(!any_pending());
        let stray = stray();
        note(b);
        note(a);
        note(a);
        note(0xEE);
        assert_eq!(stray + 1, super::stray(), "a free vector is a stray");
        assert!(any_pending());
        let mut taken = alloc::vec::Vec::new();
        take_pending(|v| taken.push(v));
        assert_eq!(taken, [a.min(b), a.max(b)], "each once, lowest first");
        assert!(!any_pending());
        // An interrupt pending on a vector being freed is dropped.
        note(a);
        free_vector(a);
        assert!(!any_pending());
        assert_eq!(alloc_vector(), Some(a), "the lowest free vector again");
        free_vector(a);
        free_vector(b);
        assert_eq!(allocated(), 0);
        // All of them, then none left.
        let all: alloc::vec::Vec<u8> = core::iter::from_fn(alloc_vector).collect();
        assert_eq!(
            all.len(),
            usize::from(LAST_DEVICE_VECTOR - FIRST_DEVICE_VECTOR) + 1
        );
        assert_eq!(alloc_vector(), None);
        all.into_iter().for_each(free_vector);
        // Blocks: aligned, past what is held, refused when not a power of two.
        let one = alloc_vector().expect("a vector");
        let four = alloc_vectors(4).expect("four");
        assert_eq!(four % 4, 0);
        assert!(!(four..four + 4).contains(&one));
        let sixteen = alloc_vectors(16).expect("sixteen");
        assert_eq!(sixteen % 16, 0);
        assert!(sixteen >= FIRST_DEVICE_VECTOR && sixteen + 15 <= LAST_DEVICE_VECTOR);
        assert_eq!(allocated(), 1 + 4 + 16);
        assert_eq!(alloc_vectors(3), None);
        assert_eq!(alloc_vectors(0), None);
        assert_eq!(alloc_vectors(64), None);
        // 32-vector blocks fit from 0x40 to 0xDF: four, less the ones held.
        let mut blocks = alloc::vec::Vec::new();
        while let Some(b) = alloc_vectors(32) {
            assert_eq!(b % 32, 0);
            blocks.push(b);
        }
        assert!(!blocks.is_empty() && blocks.len() < 5, "{blocks:x?}");
        // A failed try leaves nothing held: singles still fill every gap.
        let held = allocated();
        let singles: alloc::vec::Vec<u8> = core::iter::from_fn(alloc_vector).collect();
        assert_eq!(
            held + singles.len(),
            usize::from(LAST_DEVICE_VECTOR - FIRST_DEVICE_VECTOR) + 1
        );
        singles.into_iter().for_each(free_vector);
        for b in blocks {
            (b..b + 32).for_each(free_vector);
        }
        (four..four + 4).for_each(free_vector);
        (sixteen..sixteen + 16).for_each(free_vector);
        free_vector(one);
        assert_eq!(allocated(), 0);
    }
}
