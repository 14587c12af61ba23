//! vCPU affinity, as Xen keeps it per scheduling unit
//! (`cpu_hard_affinity`, `cpu_soft_affinity` in `common/sched/core.c`): the
//! pCPUs a vCPU may run on (hard affinity, `xl vcpu-pin`) and the ones it
//! prefers among those (soft affinity). Both start as every pCPU.
//!
//! This module owns the pCPU set type ([`CpuMask`]), the pair a scheduler
//! keeps per vCPU ([`Affinity`]) with Xen's rules for changing it, the
//! conversion from and to the caller's `xenctl_bitmap` bytes (Xen's
//! `xenctl_bitmap_to_bitmap` and `bitmap_to_xenctl_bitmap`), CPU lists as xl
//! writes them ([`CpuMask::parse_list`]: `all`, `0-2,5`, `^1`; the
//! toolstack's `vcpu-pin` and `cpus=`, the hypervisor's `domu=...,cpus=`), and the choice
//! of the pCPU to tickle for a woken vCPU that both schedulers share
//! ([`tickle_target`]). The schedulers pick a vCPU only on a pCPU of its
//! hard affinity, and among vCPUs of equal rank a pCPU takes first one that
//! prefers it.

use alloc::string::String;
use alloc::vec::Vec;

use rxen_abi::errno::{Errno, EINVAL};

/// Why a CPU list was refused ([`CpuMask::parse_list`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpuListError {
    /// This item is not a pCPU number.
    NotANumber(String),
    /// pCPU `cpu` is not below `nr_cpus`.
    NoSuchCpu { cpu: u64, nr_cpus: usize },
    /// This range ends before it starts.
    Backwards(String),
    /// The list names no pCPU at all.
    Empty(String),
}

impl core::fmt::Display for CpuListError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotANumber(text) => write!(f, "`{text}` is not a pCPU number"),
            Self::NoSuchCpu { cpu, nr_cpus } => {
                write!(f, "pCPU {cpu} does not exist (this machine has {nr_cpus})")
            }
            Self::Backwards(item) => write!(f, "`{item}`: the range goes backwards"),
            Self::Empty(text) => write!(f, "`{text}` names no pCPU"),
        }
    }
}

/// A set of pCPUs: bit `n` for pCPU `n` (rxen runs at most 64).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuMask(u64);

impl CpuMask {
    /// How many pCPUs a mask can name.
    pub const CAPACITY: usize = 64;

    /// No pCPU.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// pCPUs `0..nr_cpus` (at most [`CpuMask::CAPACITY`]).
    pub const fn all(nr_cpus: usize) -> Self {
        if nr_cpus >= Self::CAPACITY {
            Self(u64::MAX)
        } else {
            Self((1u64 << nr_cpus) - 1)
        }
    }

    /// pCPU `cpu` alone (beyond the capacity: no pCPU).
    pub const fn single(cpu: usize) -> Self {
        if cpu < Self::CAPACITY {
            Self(1 << cpu)
        } else {
            Self(0)
        }
    }

    /// The mask with these bits.
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    /// Its bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether pCPU `cpu` is in the set.
    pub const fn contains(self, cpu: usize) -> bool {
        cpu < Self::CAPACITY && self.0 & (1 << cpu) != 0
    }

    /// Adds pCPU `cpu` (beyond the capacity: nothing).
    pub fn insert(&mut self, cpu: usize) {
        if cpu < Self::CAPACITY {
            self.0 |= 1 << cpu;
        }
    }

    /// The pCPUs in both.
    pub const fn and(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// No pCPU in the set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The pCPUs in the set, lowest first (one step per pCPU in it: every
    /// scheduling pass walks the empty set of tickles).
    pub fn iter(self) -> impl Iterator<Item = usize> {
        let mut bits = self.0;
        core::iter::from_fn(move || {
            let cpu = bits.trailing_zeros() as usize;
            (bits != 0).then(|| {
                bits &= bits - 1;
                cpu
            })
        })
    }

    /// A CPU list as xl reads one, for a machine of `nr_cpus` pCPUs: `all`,
    /// or comma-separated pCPU numbers and ranges `a-b`, where `^n` (or
    /// `^a-b`) takes pCPUs out again, in order. A pCPU the machine does not
    /// have is refused, as is a list that names none.
    pub fn parse_list(text: &str, nr_cpus: usize) -> Result<Self, CpuListError> {
        let nr = nr_cpus.min(Self::CAPACITY);
        let text = text.trim();
        if text == "all" {
            return Ok(Self::all(nr));
        }
        let cpu = |n: &str| -> Result<usize, CpuListError> {
            let cpu: u64 = n
                .trim()
                .parse()
                .map_err(|_| CpuListError::NotANumber(n.into()))?;
            usize::try_from(cpu)
                .ok()
                .filter(|&c| c < nr)
                .ok_or(CpuListError::NoSuchCpu { cpu, nr_cpus: nr })
        };
        let mut mask = Self::empty();
        for item in text.split(',').map(str::trim) {
            let (negate, range) = match item.strip_prefix('^') {
                Some(rest) => (true, rest),
                None => (false, item),
            };
            let (from, to) = match range.split_once('-') {
                Some((a, b)) => (cpu(a)?, cpu(b)?),
                None if range == "all" && !negate => (0, nr.saturating_sub(1)),
                None => (cpu(range)?, cpu(range)?),
            };
            if from > to {
                return Err(CpuListError::Backwards(item.into()));
            }
            let bits = Self::all(to + 1).0 & !Self::all(from).0;
            mask.0 = if negate {
                mask.0 & !bits
            } else {
                mask.0 | bits
            };
        }
        if mask.is_empty() {
            return Err(CpuListError::Empty(text.into()));
        }
        Ok(mask)
    }

    /// How many bytes of a caller's `xenctl_bitmap` of `nr_bits` bits rxen
    /// reads or writes for `nr_cpus` pCPUs (Xen's `copy_bytes`: at most the
    /// bytes that cover the pCPUs; at most 8 here).
    pub fn xenctl_copy_bytes(nr_bits: u32, nr_cpus: usize) -> usize {
        let guest_bytes = (nr_bits as usize).div_ceil(8);
        guest_bytes.min(nr_cpus.min(Self::CAPACITY).div_ceil(8))
    }

    /// The set a caller's `xenctl_bitmap` names, from the first
    /// [`CpuMask::xenctl_copy_bytes`] of its bytes (`bytes`), as Xen's
    /// `xenctl_bitmap_to_bitmap` reads it: bits past the caller's `nr_bits`
    /// in its last byte and bits of pCPUs that do not exist are ignored.
    pub fn from_xenctl(bytes: &[u8], nr_bits: u32, nr_cpus: usize) -> Self {
        let n = Self::xenctl_copy_bytes(nr_bits, nr_cpus).min(bytes.len());
        let mut bits = 0u64;
        for (i, byte) in bytes.iter().take(n).enumerate() {
            bits |= u64::from(*byte) << (8 * i);
        }
        if !nr_bits.is_multiple_of(8) && (nr_bits as usize).div_ceil(8) == n {
            // The caller's last byte: only its first `nr_bits % 8` bits count.
            let last_bits = (n - 1) * 8 + (nr_bits % 8) as usize;
            bits &= Self::all(last_bits).0;
        }
        Self(bits).and(Self::all(nr_cpus))
    }

    /// The bytes Xen's `bitmap_to_xenctl_bitmap` writes for this set into a
    /// caller's bitmap of `nr_bits` bits, for `nr_cpus` pCPUs: the bytes
    /// covering the pCPUs (at most the caller's), then zeros up to the
    /// caller's size, but no more than `zero_limit` bytes in all (a caller's
    /// `nr_bits` is its own to choose, up to 2^32; a real map of every pCPU
    /// is far shorter).
    pub fn to_xenctl(self, nr_bits: u32, nr_cpus: usize, zero_limit: usize) -> Vec<u8> {
        let guest_bytes = (nr_bits as usize).div_ceil(8).min(zero_limit);
        let copy = Self::xenctl_copy_bytes(nr_bits, nr_cpus).min(guest_bytes);
        let mine = self.and(Self::all(nr_cpus)).0.to_le_bytes();
        let mut out = Vec::with_capacity(guest_bytes);
        out.extend_from_slice(&mine[..copy]);
        out.resize(guest_bytes, 0);
        out
    }
}

/// A vCPU's hard and soft affinity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Affinity {
    /// The pCPUs it may run on.
    pub hard: CpuMask,
    /// The pCPUs it prefers.
    pub soft: CpuMask,
}

impl Default for Affinity {
    /// Every pCPU there can be.
    fn default() -> Self {
        Self::all(CpuMask::CAPACITY)
    }
}

impl Affinity {
    /// Every pCPU, for both (a new vCPU's, as in Xen).
    pub const fn all(nr_cpus: usize) -> Self {
        Self {
            hard: CpuMask::all(nr_cpus),
            soft: CpuMask::all(nr_cpus),
        }
    }

    /// Sets the hard and/or the soft affinity as Xen's
    /// `vcpu_affinity_domctl` does, for `nr_cpus` pCPUs: a hard affinity
    /// with none of them is `EINVAL` and changes nothing; a soft one is taken
    /// as it is (even one outside the hard affinity: it then prefers
    /// nothing). Bits of pCPUs that do not exist are dropped.
    pub fn set(
        &mut self,
        hard: Option<CpuMask>,
        soft: Option<CpuMask>,
        nr_cpus: usize,
    ) -> Result<(), Errno> {
        let online = CpuMask::all(nr_cpus);
        let hard = hard.map(|h| h.and(online));
        if hard.is_some_and(CpuMask::is_empty) {
            return Err(EINVAL);
        }
        if let Some(h) = hard {
            self.hard = h;
        }
        if let Some(s) = soft {
            self.soft = s.and(online);
        }
        Ok(())
    }

    /// The soft affinity in force: the preferred pCPUs it may run on (what
    /// Xen reports back after a change; may be empty).
    pub const fn effective_soft(&self) -> CpuMask {
        self.soft.and(self.hard)
    }

    /// Whether the vCPU prefers pCPU `cpu`: it is in the soft affinity in
    /// force, or that prefers nothing in particular (empty, or every pCPU of
    /// the hard affinity: Xen's `has_soft_affinity` is false then).
    pub fn prefers(&self, cpu: usize) -> bool {
        let soft = self.effective_soft();
        soft.is_empty() || soft == self.hard || soft.contains(cpu)
    }
}

/// The pCPU to tickle for a woken vCPU with affinity `affinity`, of
/// `nr_cpus`, as Xen's `__runq_tickle`: an idle pCPU nobody tickled yet
/// (`free`) that it may run on, one it prefers first; else, among the pCPUs
/// it may run on, the one whose vCPU it should preempt most: `beaten(cpu)`
/// ranks that pCPU (None: not to be preempted, or already tickled), the
/// greatest rank wins.
pub fn tickle_target<K: Ord>(
    nr_cpus: usize,
    affinity: &Affinity,
    free: impl Fn(usize) -> bool,
    beaten: impl Fn(usize) -> Option<K>,
) -> Option<usize> {
    let allowed = || (0..nr_cpus).filter(|&c| affinity.hard.contains(c));
    allowed()
        .find(|&c| free(c) && affinity.prefers(c))
        .or_else(|| allowed().find(|&c| free(c)))
        .or_else(|| {
            allowed()
                .filter_map(|c| beaten(c).map(|k| (k, c)))
                .max_by(|a, b| a.0.cmp(&b.0))
                .map(|(_, c)| c)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(CpuMask::all(0), CpuMask::empty());
        assert_eq!(CpuMask::all(3).bits(), 0b111);
        assert_eq!(CpuMask::all(64).bits(), u64::MAX);
        assert_eq!(CpuMask::all(200).bits(), u64::MAX);
        let mut m = CpuMask::empty();
        m.insert(1);
        m.insert(63);
        m.insert(64);
        assert!(m.contains(1) && m.contains(63) && !m.contains(0) && !m.contains(64));
        assert_eq!(m.iter().collect::<Vec<_>>(), [1, 63]);
        assert_eq!(CpuMask::empty().iter().next(), None);
        assert_eq!(CpuMask::all(64).iter().count(), 64);
        assert_eq!(CpuMask::single(5), CpuMask::from_bits(1 << 5));
        assert_eq!(CpuMask::single(64), CpuMask::empty());
        assert_eq!(m.and(CpuMask::all(4)), CpuMask::from_bits(0b10));
    }

    #[test]
    fn cpu_lists_parse_as_xl_reads_them() {
        let p = |text: &str, nr: usize| CpuMask::parse_list(text, nr).map(CpuMask::bits);
        assert_eq!(p("all", 4), Ok(0b1111));
        assert_eq!(p("1", 4), Ok(0b10));
        assert_eq!(p("0-2", 4), Ok(0b111));
        assert_eq!(p(" 0 , 3 ", 4), Ok(0b1001));
        assert_eq!(p("0-3,^1", 4), Ok(0b1101));
        assert_eq!(p("all,^0-1", 4), Ok(0b1100));
        assert_eq!(p("all", 64), Ok(u64::MAX));
        assert_eq!(p("0-63", 64), Ok(u64::MAX));
        assert_eq!(p("63", 64), Ok(1 << 63));
        assert_eq!(p("1", 200), Ok(0b10), "at most 64 pCPUs");
        for bad in [
            "4",
            "2-1",
            "x",
            "",
            "1-",
            "^1",
            "0,^0",
            "-1",
            "99999999999999999999",
        ] {
            assert!(p(bad, 4).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            CpuMask::parse_list("64", 64).map_err(|e| alloc::format!("{e}")),
            Err("pCPU 64 does not exist (this machine has 64)".into())
        );
        assert_eq!(
            CpuMask::parse_list("3-1", 4),
            Err(CpuListError::Backwards("3-1".into()))
        );
        assert_eq!(
            CpuMask::parse_list("0,^0", 4),
            Err(CpuListError::Empty("0,^0".into()))
        );
    }

    #[test]
    fn xenctl_bitmaps_read_as_xen_reads_them() {
        // Two pCPUs: one byte is read, whatever the caller's size.
        assert_eq!(CpuMask::xenctl_copy_bytes(128, 2), 1);
        assert_eq!(CpuMask::xenctl_copy_bytes(0, 2), 0);
        assert_eq!(CpuMask::xenctl_copy_bytes(u32::MAX, 64), 8);
        assert_eq!(
            CpuMask::from_xenctl(&[0b10], 128, 2),
            CpuMask::from_bits(0b10)
        );
        // pCPUs that do not exist are dropped.
        assert_eq!(CpuMask::from_xenctl(&[0xFF], 8, 2), CpuMask::all(2));
        // Bits past the caller's nr_bits in its last byte do not count.
        assert_eq!(CpuMask::from_xenctl(&[0xFF], 1, 8), CpuMask::from_bits(1));
        assert_eq!(
            CpuMask::from_xenctl(&[0xFF, 0xFF], 12, 16),
            CpuMask::from_bits(0x0FFF)
        );
        // No bits, no bytes: the empty set.
        assert_eq!(CpuMask::from_xenctl(&[], 0, 4), CpuMask::empty());
        // Fewer bytes than asked (a short read): what there is.
        assert_eq!(CpuMask::from_xenctl(&[1], 64, 64), CpuMask::from_bits(1));
    }

    #[test]
    fn xenctl_bitmaps_written_as_xen_writes_them() {
        let m = CpuMask::from_bits(0b101);
        // The caller's whole map: the pCPUs' byte, then zeros.
        assert_eq!(m.to_xenctl(32, 3, 1024), [0b101, 0, 0, 0]);
        // A map shorter than the pCPUs: only what fits.
        assert_eq!(CpuMask::all(16).to_xenctl(8, 16, 1024), [0xFF]);
        // Bits of pCPUs that do not exist are never written.
        assert_eq!(CpuMask::from_bits(0xFF).to_xenctl(8, 2, 1024), [0b11]);
        // A huge nr_bits: zeros up to the limit, no more.
        assert_eq!(m.to_xenctl(u32::MAX, 3, 16).len(), 16);
        assert!(m.to_xenctl(0, 3, 1024).is_empty());
    }

    #[test]
    fn setting_follows_xens_rules() {
        let mut a = Affinity::all(4);
        assert_eq!(a.hard, CpuMask::all(4));
        // A hard affinity with no pCPU there (or none at all): EINVAL, nothing changes.
        assert_eq!(
            a.set(
                Some(CpuMask::from_bits(0b1_0000)),
                Some(CpuMask::empty()),
                4
            ),
            Err(EINVAL)
        );
        assert_eq!(a, Affinity::all(4));
        assert_eq!(a.set(Some(CpuMask::empty()), None, 4), Err(EINVAL));
        // Pinned to pCPUs 1 and 2 (pCPU 9 does not exist).
        a.set(Some(CpuMask::from_bits(0b10_0000_0110)), None, 4)
            .expect("pin");
        assert_eq!(a.hard, CpuMask::from_bits(0b110));
        assert_eq!(a.effective_soft(), CpuMask::from_bits(0b110));
        // No soft preference: every allowed pCPU is as good.
        assert!(a.prefers(1) && a.prefers(2));
        // Soft 2 and 3: prefers 2 (3 is outside the hard affinity).
        a.set(None, Some(CpuMask::from_bits(0b1100)), 4)
            .expect("soft");
        assert_eq!(a.effective_soft(), CpuMask::from_bits(0b100));
        assert!(a.prefers(2) && !a.prefers(1));
        // A soft affinity outside the hard one is accepted and prefers nothing.
        a.set(None, Some(CpuMask::from_bits(0b1)), 4).expect("soft");
        assert!(a.effective_soft().is_empty());
        assert!(a.prefers(1) && a.prefers(2));
    }

    #[test]
    fn tickles_a_preferred_idle_pcpu_then_any_allowed_then_the_most_beaten() {
        let mut a = Affinity::all(4);
        a.set(
            Some(CpuMask::from_bits(0b1110)),
            Some(CpuMask::from_bits(0b1000)),
            4,
        )
        .expect("set");
        let never = |_: usize| None::<u32>;
        // pCPUs 0, 1 and 3 idle: 3, the preferred one (0 is not allowed).
        assert_eq!(tickle_target(4, &a, |c| c != 2, never), Some(3));
        // Only 0 and 1 idle: 1.
        assert_eq!(tickle_target(4, &a, |c| c < 2, never), Some(1));
        // Only 0 idle (not allowed): the allowed pCPU ranked highest.
        let rank = |c: usize| [Some(9), Some(1), Some(5), None][c];
        assert_eq!(tickle_target(4, &a, |c| c == 0, rank), Some(2));
        assert_eq!(tickle_target(4, &a, |_| false, |_| None::<u32>), None);
    }
}
