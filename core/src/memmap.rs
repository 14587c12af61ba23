//! The firmware memory map (E820 style) and its sanitizing.
//!
//! This module owns the region kinds, the [`MemoryMap`] the rest of the
//! hypervisor trusts (sorted, disjoint, usable memory 4 KiB aligned), and
//! [`sanitize`], which turns whatever the firmware or boot loader handed over
//! into such a map, reporting each repair through a callback.
// Guest or firmware input is parsed here: no unchecked arithmetic, no
// indexing that can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use alloc::vec::Vec;
use core::fmt;

/// Size of a page; usable memory in a sanitized map is aligned to it.
pub const PAGE_SIZE: u64 = 4096;

/// Exclusive upper bound of the physical address space handled (2^52, the
/// architectural maximum of x86-64 physical addresses).
pub const MAX_PHYS_ADDR: u64 = 1 << 52;

/// The kind of a memory region, after the E820 type numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegionKind {
    /// RAM free for use (E820 type 1).
    Usable,
    /// Reserved by the firmware or hardware (E820 type 2).
    Reserved,
    /// ACPI tables, reusable once they are read (E820 type 3).
    AcpiReclaimable,
    /// ACPI non-volatile storage (E820 type 4).
    AcpiNvs,
    /// Memory reported defective (E820 type 5).
    Bad,
    /// Any other E820 type; treated like `Reserved`.
    Unknown(u32),
}

impl RegionKind {
    /// Converts an E820 type number.
    pub fn from_e820(ty: u32) -> RegionKind {
        match ty {
            1 => RegionKind::Usable,
            2 => RegionKind::Reserved,
            3 => RegionKind::AcpiReclaimable,
            4 => RegionKind::AcpiNvs,
            5 => RegionKind::Bad,
            other => RegionKind::Unknown(other),
        }
    }

    /// The E820 type number of this kind.
    pub fn to_e820(self) -> u32 {
        match self {
            RegionKind::Usable => 1,
            RegionKind::Reserved => 2,
            RegionKind::AcpiReclaimable => 3,
            RegionKind::AcpiNvs => 4,
            RegionKind::Bad => 5,
            RegionKind::Unknown(ty) => ty,
        }
    }

    /// Whether this is usable RAM.
    pub fn is_usable(self) -> bool {
        self == RegionKind::Usable
    }

    /// How restrictive the kind is; where regions overlap the higher one
    /// wins. Usable < ACPI reclaimable < unknown < reserved < ACPI NVS < bad,
    /// unknown kinds ordered among themselves by type number.
    fn restrictiveness(self) -> (u8, u32) {
        match self {
            RegionKind::Usable => (0, 0),
            RegionKind::AcpiReclaimable => (1, 0),
            RegionKind::Unknown(ty) => (2, ty),
            RegionKind::Reserved => (3, 0),
            RegionKind::AcpiNvs => (4, 0),
            RegionKind::Bad => (5, 0),
        }
    }
}

impl fmt::Display for RegionKind {
    /// Xen's spelling, e.g. `(usable)` or `(unknown type 7)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegionKind::Usable => f.write_str("(usable)"),
            RegionKind::Reserved => f.write_str("(reserved)"),
            RegionKind::AcpiReclaimable => f.write_str("(ACPI data)"),
            RegionKind::AcpiNvs => f.write_str("(ACPI NVS)"),
            RegionKind::Bad => f.write_str("(bad)"),
            RegionKind::Unknown(ty) => write!(f, "(unknown type {ty})"),
        }
    }
}

/// A range of physical memory of one kind; `end` is exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Region {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// What the memory is.
    pub kind: RegionKind,
}

impl Region {
    /// Length in bytes (0 if `end <= start`).
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the region holds no byte.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

impl fmt::Display for Region {
    /// Like Xen's boot-time dump: ` 0000000000000000 - 000000000009fc00 (usable)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, " {:016x} - {:016x} {}", self.start, self.end, self.kind)
    }
}

/// One entry as the firmware reports it: base, length and kind, unchecked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RawEntry {
    /// First byte.
    pub base: u64,
    /// Length in bytes; may be zero or run past the address space.
    pub len: u64,
    /// Kind of the memory.
    pub kind: RegionKind,
}

impl RawEntry {
    /// Builds an entry from an E820 triple.
    pub fn from_e820(base: u64, len: u64, ty: u32) -> RawEntry {
        RawEntry {
            base,
            len,
            kind: RegionKind::from_e820(ty),
        }
    }
}

/// A repair [`sanitize`] made; each names the input entry by its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SanitizeWarning {
    /// The entry has length zero; it was dropped.
    ZeroSized {
        /// Index of the entry in the input.
        index: usize,
        /// The entry.
        entry: RawEntry,
    },
    /// `base + len` overflows 64 bits; the entry was clamped to
    /// [`MAX_PHYS_ADDR`].
    Wrapping {
        /// Index of the entry in the input.
        index: usize,
        /// The entry.
        entry: RawEntry,
    },
    /// The entry reaches above [`MAX_PHYS_ADDR`]; it was clamped, or dropped
    /// when it starts there or above (`clamped_end` is then `None`).
    BeyondPhysAddr {
        /// Index of the entry in the input.
        index: usize,
        /// The entry.
        entry: RawEntry,
        /// New end of the entry, or `None` if it was dropped.
        clamped_end: Option<u64>,
    },
    /// Two entries of different kinds overlap; the overlap got kind `kept`.
    Overlap {
        /// Index of the first entry in the input.
        a: usize,
        /// The first entry's range (after clamping).
        a_region: Region,
        /// Index of the second entry in the input.
        b: usize,
        /// The second entry's range (after clamping).
        b_region: Region,
        /// The kind the overlapping bytes got.
        kept: RegionKind,
    },
    /// A usable entry is not page aligned; it was shrunk to whole pages, or
    /// dropped if no whole page remains (`aligned` is then `None`).
    Unaligned {
        /// Index of the entry in the input.
        index: usize,
        /// The entry's range (after clamping).
        region: Region,
        /// What was kept, or `None` if it was dropped.
        aligned: Option<Region>,
    },
}

fn fmt_raw(f: &mut fmt::Formatter<'_>, index: usize, e: &RawEntry) -> fmt::Result {
    write!(
        f,
        "memory map entry {index} (base {:#x}, length {:#x} {})",
        e.base, e.len, e.kind
    )
}

fn fmt_region(f: &mut fmt::Formatter<'_>, index: usize, r: &Region) -> fmt::Result {
    write!(
        f,
        "memory map entry {index} [{:#x}, {:#x}) {}",
        r.start, r.end, r.kind
    )
}

impl fmt::Display for SanitizeWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SanitizeWarning::ZeroSized { index, entry } => {
                fmt_raw(f, *index, entry)?;
                f.write_str(": zero length; dropped")
            }
            SanitizeWarning::Wrapping { index, entry } => {
                fmt_raw(f, *index, entry)?;
                write!(f, ": end wraps past 2^64; clamped to {MAX_PHYS_ADDR:#x}")
            }
            SanitizeWarning::BeyondPhysAddr {
                index,
                entry,
                clamped_end,
            } => {
                fmt_raw(f, *index, entry)?;
                match clamped_end {
                    Some(end) => write!(
                        f,
                        ": reaches beyond {MAX_PHYS_ADDR:#x}; clamped to end at {end:#x}"
                    ),
                    None => write!(f, ": starts beyond {MAX_PHYS_ADDR:#x}; dropped"),
                }
            }
            SanitizeWarning::Overlap {
                a,
                a_region,
                b,
                b_region,
                kept,
            } => {
                fmt_region(f, *a, a_region)?;
                f.write_str(" overlaps ")?;
                fmt_region(f, *b, b_region)?;
                write!(f, "; overlap kept as {kept}")
            }
            SanitizeWarning::Unaligned {
                index,
                region,
                aligned,
            } => {
                fmt_region(f, *index, region)?;
                match aligned {
                    Some(r) => write!(
                        f,
                        ": not page aligned; shrunk to [{:#x}, {:#x})",
                        r.start, r.end
                    ),
                    None => f.write_str(": not page aligned and smaller than a page; dropped"),
                }
            }
        }
    }
}

/// A sanitized memory map: regions sorted by address, disjoint, of non-zero
/// length, below [`MAX_PHYS_ADDR`], usable regions page aligned, and adjacent
/// regions of the same kind merged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryMap {
    regions: Vec<Region>,
}

impl MemoryMap {
    /// All regions, sorted by address.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The usable regions, sorted by address.
    pub fn usable(&self) -> impl Iterator<Item = &Region> + '_ {
        self.regions.iter().filter(|r| r.kind.is_usable())
    }

    /// Total bytes of usable memory.
    pub fn total_usable(&self) -> u64 {
        self.usable().map(Region::len).sum()
    }

    /// End of the highest usable region (0 if there is none).
    pub fn max_usable_end(&self) -> u64 {
        self.usable().map(|r| r.end).max().unwrap_or(0)
    }

    /// The kind of the byte at `addr`, or `None` if no region covers it.
    pub fn kind_at(&self, addr: u64) -> Option<RegionKind> {
        self.regions
            .iter()
            .find(|r| r.start <= addr && addr < r.end)
            .map(|r| r.kind)
    }
}

const PAGE_MASK: u64 = PAGE_SIZE - 1;

fn align_down(x: u64) -> u64 {
    x & !PAGE_MASK
}

/// Rounds up to a page; `x` must be at most [`MAX_PHYS_ADDR`], so this
/// cannot overflow.
fn align_up(x: u64) -> u64 {
    x.saturating_add(PAGE_MASK) & !PAGE_MASK
}

/// Sanitizes a raw memory map.
///
/// * Zero-length entries are dropped.
/// * Entries whose end wraps past 2^64 are clamped to [`MAX_PHYS_ADDR`];
///   entries reaching above it are clamped, or dropped if they start there.
/// * Where entries of different kinds overlap, the more restrictive kind wins
///   (bad > ACPI NVS > reserved > unknown > ACPI reclaimable > usable), and
///   one warning is reported per overlapping pair.
/// * Usable entries are shrunk inward to page boundaries (warned; dropped if
///   empty), the others grown outward, so that no byte any entry marks
///   non-usable ends up usable.
/// * Adjacent regions of the same kind are merged; the result is sorted.
///
/// Cost is quadratic in the number of entries, fine for firmware maps.
pub fn sanitize(raw: &[RawEntry], warn: &mut dyn FnMut(SanitizeWarning)) -> MemoryMap {
    // Pass 1: clamp every entry into a non-empty range below MAX_PHYS_ADDR.
    // `clamped` keeps the input index for warnings.
    let mut clamped: Vec<(usize, Region)> = Vec::with_capacity(raw.len());
    for (index, entry) in raw.iter().enumerate() {
        if entry.len == 0 {
            warn(SanitizeWarning::ZeroSized {
                index,
                entry: *entry,
            });
            continue;
        }
        if entry.base >= MAX_PHYS_ADDR {
            warn(SanitizeWarning::BeyondPhysAddr {
                index,
                entry: *entry,
                clamped_end: None,
            });
            continue;
        }
        let end = match entry.base.checked_add(entry.len) {
            Some(end) if end <= MAX_PHYS_ADDR => end,
            Some(_) => {
                warn(SanitizeWarning::BeyondPhysAddr {
                    index,
                    entry: *entry,
                    clamped_end: Some(MAX_PHYS_ADDR),
                });
                MAX_PHYS_ADDR
            }
            None => {
                warn(SanitizeWarning::Wrapping {
                    index,
                    entry: *entry,
                });
                MAX_PHYS_ADDR
            }
        };
        clamped.push((
            index,
            Region {
                start: entry.base,
                end,
                kind: entry.kind,
            },
        ));
    }

    // Pass 2: report overlaps between entries of different kinds.
    for (i, (ia, a)) in clamped.iter().enumerate() {
        for (ib, b) in clamped.iter().skip(i.saturating_add(1)) {
            if a.kind != b.kind && a.start < b.end && b.start < a.end {
                let kept = if a.kind.restrictiveness() >= b.kind.restrictiveness() {
                    a.kind
                } else {
                    b.kind
                };
                warn(SanitizeWarning::Overlap {
                    a: *ia,
                    a_region: *a,
                    b: *ib,
                    b_region: *b,
                    kept,
                });
            }
        }
    }

    // Pass 3: page-align: usable inward, everything else outward.
    let mut aligned: Vec<Region> = Vec::with_capacity(clamped.len());
    for (index, region) in clamped {
        if region.kind.is_usable() {
            let start = align_up(region.start);
            let end = align_down(region.end);
            let kept = if start < end {
                Some(Region {
                    start,
                    end,
                    kind: region.kind,
                })
            } else {
                None
            };
            if start != region.start || end != region.end {
                warn(SanitizeWarning::Unaligned {
                    index,
                    region,
                    aligned: kept,
                });
            }
            if let Some(r) = kept {
                aligned.push(r);
            }
        } else {
            aligned.push(Region {
                start: align_down(region.start),
                end: align_up(region.end),
                kind: region.kind,
            });
        }
    }

    // Pass 4: cut the address space at every boundary and give each piece
    // the most restrictive kind covering it.
    let mut bounds: Vec<u64> = Vec::with_capacity(aligned.len().saturating_mul(2));
    for r in &aligned {
        bounds.push(r.start);
        bounds.push(r.end);
    }
    bounds.sort_unstable();
    bounds.dedup();

    let mut regions: Vec<Region> = Vec::new();
    for pair in bounds.windows(2) {
        let &[lo, hi] = pair else { continue };
        let winner = aligned
            .iter()
            .filter(|r| r.start <= lo && hi <= r.end)
            .map(|r| r.kind)
            .max_by_key(|k| k.restrictiveness());
        let Some(kind) = winner else { continue };
        match regions.last_mut() {
            Some(last) if last.kind == kind && last.end == lo => last.end = hi,
            _ => regions.push(Region {
                start: lo,
                end: hi,
                kind,
            }),
        }
    }
    MemoryMap { regions }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn run(raw: &[RawEntry]) -> (MemoryMap, Vec<SanitizeWarning>) {
        let mut warnings = Vec::new();
        let map = sanitize(raw, &mut |w| warnings.push(w));
        (map, warnings)
    }

    fn e(base: u64, len: u64, ty: u32) -> RawEntry {
        RawEntry::from_e820(base, len, ty)
    }

    fn r(start: u64, end: u64, kind: RegionKind) -> Region {
        Region { start, end, kind }
    }

    use RegionKind::*;

    #[test]
    fn kinds_from_e820_and_display() {
        assert_eq!(RegionKind::from_e820(1), Usable);
        assert_eq!(RegionKind::from_e820(2), Reserved);
        assert_eq!(RegionKind::from_e820(3), AcpiReclaimable);
        assert_eq!(RegionKind::from_e820(4), AcpiNvs);
        assert_eq!(RegionKind::from_e820(5), Bad);
        assert_eq!(RegionKind::from_e820(0), Unknown(0));
        assert_eq!(RegionKind::from_e820(12), Unknown(12));
        for ty in 0..20 {
            assert_eq!(RegionKind::from_e820(ty).to_e820(), ty);
        }
        assert_eq!(Usable.to_string(), "(usable)");
        assert_eq!(Reserved.to_string(), "(reserved)");
        assert_eq!(AcpiReclaimable.to_string(), "(ACPI data)");
        assert_eq!(AcpiNvs.to_string(), "(ACPI NVS)");
        assert_eq!(Bad.to_string(), "(bad)");
        assert_eq!(Unknown(7).to_string(), "(unknown type 7)");
        assert_eq!(
            r(0, 0x9fc00, Usable).to_string(),
            " 0000000000000000 - 000000000009fc00 (usable)"
        );
    }

    #[test]
    fn qemu_like_map() {
        let raw = [
            e(0, 0x9fc00, 1),
            e(0x9fc00, 0x400, 2),
            e(0xf0000, 0x10000, 2),
            e(0x100000, 0x7ee0000, 1),
            e(0x7fe0000, 0x20000, 2),
            e(0xfffc0000, 0x40000, 2),
        ];
        let (map, warnings) = run(&raw);
        assert_eq!(
            map.regions(),
            &[
                r(0, 0x9f000, Usable),
                r(0x9f000, 0xa0000, Reserved),
                r(0xf0000, 0x100000, Reserved),
                r(0x100000, 0x7fe0000, Usable),
                r(0x7fe0000, 0x8000000, Reserved),
                r(0xfffc0000, 0x1_0000_0000, Reserved),
            ]
        );
        assert_eq!(warnings.len(), 1);
        assert!(matches!(
            warnings[0],
            SanitizeWarning::Unaligned {
                index: 0,
                aligned: Some(_),
                ..
            }
        ));
        assert_eq!(map.total_usable(), 0x9f000 + 0x7ee0000);
        assert_eq!(map.max_usable_end(), 0x7fe0000);
        assert_eq!(map.usable().count(), 2);
        assert_eq!(map.kind_at(0x9f800), Some(Reserved));
        assert_eq!(map.kind_at(0xa0000), None);
    }

    #[test]
    fn empty_input() {
        let (map, warnings) = run(&[]);
        assert!(map.regions().is_empty());
        assert!(warnings.is_empty());
        assert_eq!(map.total_usable(), 0);
        assert_eq!(map.max_usable_end(), 0);
    }

    #[test]
    fn zero_sized_dropped() {
        let (map, warnings) = run(&[e(0x1000, 0, 1), e(0x2000, 0x1000, 1)]);
        assert_eq!(map.regions(), &[r(0x2000, 0x3000, Usable)]);
        assert_eq!(
            warnings,
            vec![SanitizeWarning::ZeroSized {
                index: 0,
                entry: e(0x1000, 0, 1)
            }]
        );
        assert!(warnings[0].to_string().contains("entry 0"));
    }

    #[test]
    fn wrapping_entry_clamped() {
        let (map, warnings) = run(&[e(0x1000, u64::MAX, 1)]);
        assert_eq!(map.regions(), &[r(0x1000, MAX_PHYS_ADDR, Usable)]);
        assert!(matches!(
            warnings[..],
            [SanitizeWarning::Wrapping { index: 0, .. }]
        ));
    }

    #[test]
    fn beyond_phys_addr() {
        let (map, warnings) = run(&[
            e(MAX_PHYS_ADDR, 0x1000, 1),
            e(MAX_PHYS_ADDR - 0x1000, 0x2000, 2),
            e(u64::MAX, 1, 1),
        ]);
        assert_eq!(
            map.regions(),
            &[r(MAX_PHYS_ADDR - 0x1000, MAX_PHYS_ADDR, Reserved)]
        );
        assert!(matches!(
            warnings[..],
            [
                SanitizeWarning::BeyondPhysAddr {
                    index: 0,
                    clamped_end: None,
                    ..
                },
                SanitizeWarning::BeyondPhysAddr {
                    index: 1,
                    clamped_end: Some(MAX_PHYS_ADDR),
                    ..
                },
                SanitizeWarning::BeyondPhysAddr {
                    index: 2,
                    clamped_end: None,
                    ..
                },
            ]
        ));
    }

    #[test]
    fn reserved_inside_usable_splits_it() {
        let (map, warnings) = run(&[e(0, 0x10000, 1), e(0x4000, 0x1000, 2)]);
        assert_eq!(
            map.regions(),
            &[
                r(0, 0x4000, Usable),
                r(0x4000, 0x5000, Reserved),
                r(0x5000, 0x10000, Usable),
            ]
        );
        assert_eq!(
            warnings,
            vec![SanitizeWarning::Overlap {
                a: 0,
                a_region: r(0, 0x10000, Usable),
                b: 1,
                b_region: r(0x4000, 0x5000, Reserved),
                kept: Reserved,
            }]
        );
        let text = warnings[0].to_string();
        assert!(
            text.contains("entry 0") && text.contains("entry 1"),
            "{text}"
        );
    }

    #[test]
    fn unaligned_reserved_inside_usable_takes_whole_page() {
        let (map, _) = run(&[e(0, 0x10000, 1), e(0x4100, 0x10, 2)]);
        assert_eq!(
            map.regions(),
            &[
                r(0, 0x4000, Usable),
                r(0x4000, 0x5000, Reserved),
                r(0x5000, 0x10000, Usable),
            ]
        );
    }

    #[test]
    fn restrictiveness_order() {
        let cases = [
            (1, 3, AcpiReclaimable),
            (3, 2, Reserved),
            (2, 4, AcpiNvs),
            (4, 5, Bad),
            (1, 5, Bad),
            (3, 9, Unknown(9)),
            (9, 2, Reserved),
        ];
        for (a, b, want) in cases {
            for (x, y) in [(a, b), (b, a)] {
                let (map, warnings) = run(&[e(0x1000, 0x1000, x), e(0x1000, 0x1000, y)]);
                assert_eq!(map.regions(), &[r(0x1000, 0x2000, want)], "{x} vs {y}");
                assert!(
                    matches!(warnings[..], [SanitizeWarning::Overlap { kept, .. }] if kept == want)
                );
            }
        }
    }

    #[test]
    fn same_kind_overlap_merged_silently() {
        let (map, warnings) = run(&[e(0x1000, 0x3000, 1), e(0x2000, 0x3000, 1)]);
        assert_eq!(map.regions(), &[r(0x1000, 0x5000, Usable)]);
        assert!(warnings.is_empty());
    }

    #[test]
    fn adjacent_same_kind_merged_and_unsorted_input() {
        let (map, warnings) = run(&[
            e(0x3000, 0x1000, 1),
            e(0x1000, 0x1000, 1),
            e(0x2000, 0x1000, 1),
            e(0x5000, 0x1000, 2),
            e(0x4000, 0x1000, 2),
        ]);
        assert_eq!(
            map.regions(),
            &[r(0x1000, 0x4000, Usable), r(0x4000, 0x6000, Reserved)]
        );
        assert!(warnings.is_empty());
    }

    #[test]
    fn tiny_usable_dropped() {
        let (map, warnings) = run(&[e(0x1100, 0x800, 1)]);
        assert!(map.regions().is_empty());
        assert!(matches!(
            warnings[..],
            [SanitizeWarning::Unaligned {
                index: 0,
                aligned: None,
                ..
            }]
        ));
        assert!(warnings[0].to_string().contains("dropped"));
    }

    #[test]
    fn unknown_kinds_stay_distinct() {
        let (map, _) = run(&[e(0x1000, 0x1000, 7), e(0x2000, 0x1000, 8)]);
        assert_eq!(
            map.regions(),
            &[r(0x1000, 0x2000, Unknown(7)), r(0x2000, 0x3000, Unknown(8))]
        );
    }

    #[test]
    fn warning_display_all_variants() {
        let raw = [
            e(0, 0, 1),
            e(0x1000, u64::MAX, 2),
            e(MAX_PHYS_ADDR + 5, 1, 1),
            e(0x800, 0x1000, 1),
        ];
        let (_, warnings) = run(&raw);
        assert!(warnings.len() >= 4);
        for w in &warnings {
            let s = w.to_string();
            assert!(s.starts_with("memory map entry "), "{s}");
        }
    }

    /// Deterministic xorshift generator for the property tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn random_entry(rng: &mut Rng) -> RawEntry {
        let base = match rng.below(10) {
            0 => rng.next(),
            1 => MAX_PHYS_ADDR - rng.below(0x10000),
            2 => rng.below(0x100) * PAGE_SIZE,
            _ => rng.below(0x100_000),
        };
        let len = match rng.below(10) {
            0 => 0,
            1 => rng.next(),
            2 => rng.below(0x20) * PAGE_SIZE,
            _ => rng.below(0x40_000),
        };
        let ty = match rng.below(10) {
            0..=4 => 1,
            5 => 2,
            6 => 3,
            7 => 4,
            8 => 5,
            _ => 6 + rng.below(3) as u32,
        };
        e(base, len, ty)
    }

    fn end_of(entry: &RawEntry) -> u64 {
        entry
            .base
            .checked_add(entry.len)
            .unwrap_or(MAX_PHYS_ADDR)
            .min(MAX_PHYS_ADDR)
    }

    #[test]
    fn property_invariants() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..400 {
            let n = rng.below(if round % 10 == 0 { 300 } else { 24 }) as usize;
            let raw: Vec<RawEntry> = (0..n).map(|_| random_entry(&mut rng)).collect();
            let (map, _) = run(&raw);
            let regions = map.regions();
            for w in regions.windows(2) {
                assert!(w[0].end <= w[1].start, "sorted and disjoint: {w:?}");
                assert!(
                    !(w[0].end == w[1].start && w[0].kind == w[1].kind),
                    "adjacent same kind not merged: {w:?}"
                );
            }
            for reg in regions {
                assert!(reg.start < reg.end);
                assert!(reg.end <= MAX_PHYS_ADDR);
                if reg.kind.is_usable() {
                    assert_eq!(reg.start % PAGE_SIZE, 0);
                    assert_eq!(reg.end % PAGE_SIZE, 0);
                }
            }
            // No usable byte was marked non-usable by any input entry, and
            // every usable byte was usable in some input entry.
            for reg in map.usable() {
                for entry in &raw {
                    if entry.len == 0 || entry.base >= MAX_PHYS_ADDR {
                        continue;
                    }
                    let end = end_of(entry);
                    if !entry.kind.is_usable() {
                        assert!(
                            end <= reg.start || entry.base >= reg.end,
                            "{reg:?} overlaps non-usable {entry:?}"
                        );
                    }
                }
                // Check a few sample addresses are covered by a usable input.
                for addr in [
                    reg.start,
                    reg.end - 1,
                    reg.start + (reg.end - reg.start) / 2,
                ] {
                    assert!(raw.iter().any(|entry| entry.kind.is_usable()
                        && entry.len != 0
                        && entry.base <= addr
                        && addr < end_of(entry)));
                }
            }
            // Every non-usable input byte is still non-usable in the output.
            for entry in &raw {
                if entry.kind.is_usable() || entry.len == 0 || entry.base >= MAX_PHYS_ADDR {
                    continue;
                }
                for addr in [entry.base, end_of(entry) - 1] {
                    let kind = map.kind_at(addr);
                    assert!(
                        matches!(kind, Some(k) if !k.is_usable()),
                        "{addr:#x} of {entry:?} is {kind:?}"
                    );
                }
            }
        }
    }
}
