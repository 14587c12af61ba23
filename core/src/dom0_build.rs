//! Building a 1:1 PVH dom0's memory: how much RAM it gets, its e820, and
//! the ranges the builder must identity-map (Xen's
//! `arch/x86/dom0_build.c:dom0_compute_nr_pages` and
//! `arch/x86/hvm/dom0_build.c` `pvh_setup_e820`, `pvh_populate_p2m`,
//! `pvh_setup_acpi`, with `drivers/passthrough/x86/iommu.c:hwdom_iommu_map`,
//! under issue 10's decision that dom0's RAM is the host's at the same
//! address).
//!
//! * [`dom0_nr_bytes`]: `dom0_mem=` resolved as Xen does (target or all but
//!   1/16 of what is available, at most 128 MiB kept back; clamped by `min:`
//!   and `max:` and by what is available; percentages of what is available).
//! * [`build`]: the e820 and RAM of [`crate::dom0_memory::layout`] (RAM from
//!   16 MiB up, where Linux 6.1 loads unrelocated, must be dom0's; RAM beyond
//!   `dom0_mem` and rxen's own frames `E820_UNUSABLE`; the other kinds kept;
//!   RAM trimmed to whole pages as `pvh_setup_e820` does), with rxen's
//!   reserved ranges named so that a failure says whose frames sit in the
//!   kernel's way, plus the identity-map plan: dom0's RAM; every non-RAM page
//!   below 1 MiB (`pvh_populate_p2m`); `E820_RESERVED` (`hwdom_iommu_map`
//!   with `dom0-iommu=map-reserved`, Xen's default) and `E820_ACPI` /
//!   `E820_NVS` above 1 MiB (`pvh_setup_acpi`). Never identity-mapped, as in
//!   Xen: the local APIC range `0xFEE00000-0xFEEFFFFF`, the IO-APIC pages
//!   (emulated), the MMCFG windows (trapped by vPCI), rxen's own frames
//!   (`xen_in_range`).
//!
//! Divergences from Xen, by the 1:1 decision: RAM is not populated with
//! arbitrary frames but given in place (low RAM included, where Xen gives a
//! copy of the host's bytes); a page of rxen's below 1 MiB is not
//! identity-mapped (Xen maps its reserved low pages), so dom0 never reaches
//! hypervisor memory through the CPU. Host ACPI tables that lie outside any
//! reserved or ACPI range (Xen's `pvh_add_mem_range(.., E820_ACPI)`) are
//! not handled here: that belongs with dom0's ACPI tables.
//!
//! The hypervisor sizes dom0 with [`dom0_nr_bytes`] and
//! [`dom0_paging_bytes`], lays it out with [`crate::dom0_memory::layout`] and
//! maps device memory on first touch
//! ([`crate::dom0_memory::is_device_memory`]); mapping
//! [`Dom0Build::identity`] at build time instead is not wired yet.
// Firmware input is parsed here: no unchecked arithmetic, no indexing that
// can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use alloc::vec::Vec;
use core::ops::Range;

use crate::cmdline::Dom0Mem;
use crate::dom0_memory::{self, Dom0Memory, Dom0MemoryError};
use crate::memmap::{MemoryMap, RegionKind, PAGE_SIZE};
use crate::mm::{Gfn, Hpa};

/// The first MiB: below it, every page that is not dom0's RAM is
/// identity-mapped (`pvh_populate_p2m`).
const MB1: u64 = 1 << 20;
/// The local APIC range Xen never maps into the hardware domain (the
/// interrupt address range, pfns `0xFEE00`-`0xFEEFF`).
const LAPIC_RANGE: Range<u64> = 0xFEE0_0000..0xFEF0_0000;
/// Xen's default reserve when `dom0_mem` gives no amount: 1/16 of what is
/// available, at most this much.
const DEFAULT_RESERVE_MAX: u64 = 128 << 20;

/// The bytes of RAM dom0 gets out of `avail` bytes available for it (Xen's
/// `dom0_compute_nr_pages`, final clamp): the target, or by default all but
/// `min(avail / 16, 128 MiB)`; at least `min:`, at most `max:`, at most
/// `avail`; whole pages. Percentages are of `avail`, as Xen's
/// `get_memsize`. The caller subtracts from `avail` first what Xen does
/// (the hypervisor's needs, dom0's paging pool: see [`dom0_paging_bytes`]).
pub fn dom0_nr_bytes(mem: &Dom0Mem, avail: u64) -> u64 {
    let default = || avail.saturating_sub((avail / 16).min(DEFAULT_RESERVE_MAX));
    let mut bytes = match mem.target {
        Some(t) => t.resolve(avail),
        None => default(),
    };
    if let Some(min) = mem.min {
        bytes = bytes.max(min.resolve(avail));
    }
    if let Some(max) = mem.max {
        bytes = bytes.min(max.resolve(avail));
    }
    bytes.min(avail) & !(PAGE_SIZE - 1)
}

/// dom0's `max_pages` (Xen's `dom0_compute_nr_pages`): `dom0_mem=max:` in
/// pages (percentages of `avail`), else no limit but the ABI's 32-bit page
/// count; what it may grow to with `XENMEM_populate_physmap` and
/// `increase_reservation`.
pub fn dom0_max_pages(mem: &Dom0Mem, avail: u64) -> u64 {
    mem.max
        .map_or(u64::from(u32::MAX), |max| max.resolve(avail) / PAGE_SIZE)
        .min(u64::from(u32::MAX))
}

/// Bytes of the paging pool (HAP) of a dom0 with `vcpus` vCPUs and
/// `ram_bytes` of RAM (Xen's `dom0_paging_pages`), saturating.
pub fn dom0_paging_bytes(vcpus: u32, ram_bytes: u64) -> u64 {
    crate::frame_alloc::default_paging_pages(vcpus.min(1 << 16), ram_bytes)
        .saturating_mul(PAGE_SIZE)
}

/// A range of host memory rxen keeps for itself (its image, heap, frame
/// tables, boot modules, trampoline...), with what it is for the messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reserved {
    /// The range, host-physical, end exclusive.
    pub range: Range<Hpa>,
    /// What it holds (e.g. "hypervisor image", "module 1").
    pub what: &'static str,
}

/// Why a range is identity-mapped into dom0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityKind {
    /// dom0's RAM (given 1:1).
    Ram,
    /// Not RAM, below 1 MiB: VGA hole, option ROMs, BIOS, EBDA
    /// (`pvh_populate_p2m`).
    LowMemory,
    /// `E820_RESERVED` above 1 MiB (`hwdom_iommu_map`, map-reserved).
    Reserved,
    /// `E820_ACPI` or `E820_NVS` above 1 MiB (`pvh_setup_acpi`).
    Acpi,
}

/// A range of frames the builder maps at the same frame number in dom0's
/// physical map (gfn = mfn).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityRange {
    /// The frames, end exclusive.
    pub frames: Range<Gfn>,
    /// Why.
    pub kind: IdentityKind,
}

/// Host facts the identity map must keep out of dom0's reach.
#[derive(Clone, Copy, Debug, Default)]
pub struct Traps<'a> {
    /// Base addresses of the host IO-APICs (their pages are emulated).
    pub ioapics: &'a [Hpa],
    /// The host's MMCFG (ECAM) windows (trapped by vPCI).
    pub mmcfg: &'a [Range<Hpa>],
}

/// dom0's memory: RAM and e820 ([`Dom0Memory`]) and the identity-map plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dom0Build {
    /// dom0's RAM (host ranges at the same address) and e820.
    pub memory: Dom0Memory,
    /// What the builder maps 1:1, sorted by frame, disjoint.
    pub identity: Vec<IdentityRange>,
}

/// Why dom0's memory cannot be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dom0BuildError {
    /// A reserved range is empty or inverted, or reaches past 2^52.
    BadReserved(Reserved),
    /// The range where dom0's kernel loads (16 MiB and up) is not all free
    /// RAM: `range` is in the way; `by` names rxen's ranges overlapping it
    /// (none: the host has no RAM there).
    KernelWindowTaken {
        /// The first part of the window that is not free RAM.
        range: Range<Hpa>,
        /// rxen's reserved ranges in it.
        by: Vec<&'static str>,
    },
    /// Less RAM than asked for is free from 16 MiB up.
    TooSmall {
        /// Bytes asked for.
        wanted: u64,
        /// Bytes there are.
        free: u64,
    },
}

impl core::fmt::Display for Dom0BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadReserved(r) => write!(
                f,
                "reserved range {}-{} ({}) is empty or out of range",
                r.range.start, r.range.end, r.what
            ),
            Self::KernelWindowTaken { range, by } if by.is_empty() => write!(
                f,
                "{}-{}, where dom0's kernel loads, is not RAM on this host",
                range.start, range.end
            ),
            Self::KernelWindowTaken { range, by } => {
                write!(
                    f,
                    "{}-{}, where dom0's kernel loads, holds rxen's ",
                    range.start, range.end
                )?;
                for (i, what) in by.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    f.write_str(what)?;
                }
                Ok(())
            }
            Self::TooSmall { wanted, free } => write!(
                f,
                "{} MiB asked for dom0, {} MiB of RAM free above 16 MiB",
                wanted >> 20,
                free >> 20
            ),
        }
    }
}

fn page_down(addr: u64) -> u64 {
    addr & !(PAGE_SIZE - 1)
}

fn page_up(addr: u64) -> u64 {
    page_down(addr.saturating_add(PAGE_SIZE - 1))
}

/// `parts` without `hole` (all end-exclusive byte ranges).
fn subtract(parts: Vec<Range<u64>>, hole: &Range<u64>) -> Vec<Range<u64>> {
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        if hole.end <= p.start || p.end <= hole.start {
            out.push(p);
            continue;
        }
        if p.start < hole.start {
            out.push(p.start..hole.start);
        }
        if hole.end < p.end {
            out.push(hole.end..p.end);
        }
    }
    out
}

/// Lays out a 1:1 dom0 of `bytes` of RAM (above 16 MiB; the host's low RAM
/// comes on top) in the host map `host`, around rxen's `reserved` ranges,
/// and plans its identity map, keeping `traps` out of it.
pub fn build(
    host: &MemoryMap,
    reserved: &[Reserved],
    bytes: u64,
    traps: Traps<'_>,
) -> Result<Dom0Build, Dom0BuildError> {
    let mut taken: Vec<Range<u64>> = Vec::with_capacity(reserved.len());
    for r in reserved {
        let (start, end) = (r.range.start.0, r.range.end.0);
        if start >= end || end > crate::memmap::MAX_PHYS_ADDR {
            return Err(Dom0BuildError::BadReserved(r.clone()));
        }
        taken.push(start..end);
    }
    let memory = dom0_memory::layout(host, &taken, bytes).map_err(|e| match e {
        Dom0MemoryError::KernelWindowTaken(range) => Dom0BuildError::KernelWindowTaken {
            by: reserved
                .iter()
                .filter(|r| r.range.start.0 < range.end && range.start < r.range.end.0)
                .map(|r| r.what)
                .collect(),
            range: Hpa(range.start)..Hpa(range.end),
        },
        Dom0MemoryError::TooSmall { wanted, free } => Dom0BuildError::TooSmall { wanted, free },
    })?;

    let mut plan: Vec<(Range<u64>, IdentityKind)> = Vec::new();
    for r in &memory.ram {
        plan.push((r.clone(), IdentityKind::Ram));
    }
    // Below 1 MiB: every page that is not dom0's RAM nor rxen's.
    let mut low = alloc::vec![0..MB1];
    for r in memory.ram.iter().chain(taken.iter()) {
        low = subtract(low, &(page_down(r.start)..page_up(r.end)));
    }
    plan.extend(low.into_iter().map(|r| (r, IdentityKind::LowMemory)));
    // Above 1 MiB: reserved, ACPI and NVS, whole pages.
    for region in host.regions() {
        let kind = match region.kind {
            RegionKind::Reserved => IdentityKind::Reserved,
            RegionKind::AcpiReclaimable | RegionKind::AcpiNvs => IdentityKind::Acpi,
            _ => continue,
        };
        let start = page_down(region.start).max(MB1);
        let end = page_up(region.end);
        if start >= end {
            continue;
        }
        let mut parts = alloc::vec![start..end];
        let holes = core::iter::once(LAPIC_RANGE)
            .chain(traps.ioapics.iter().map(|a| {
                let page = page_down(a.0);
                page..page.saturating_add(PAGE_SIZE)
            }))
            .chain(
                traps
                    .mmcfg
                    .iter()
                    .map(|m| page_down(m.start.0)..page_up(m.end.0)),
            )
            .chain(taken.iter().map(|t| page_down(t.start)..page_up(t.end)));
        for hole in holes {
            parts = subtract(parts, &hole);
        }
        plan.extend(parts.into_iter().map(|r| (r, kind)));
    }
    plan.sort_by_key(|(r, _)| r.start);

    let mut identity: Vec<IdentityRange> = Vec::with_capacity(plan.len());
    for (r, kind) in plan {
        let frames = Gfn(r.start >> 12)..Gfn(r.end >> 12);
        if frames.start >= frames.end {
            continue;
        }
        if let Some(last) = identity.last_mut() {
            if last.kind == kind && last.frames.end == frames.start {
                last.frames.end = frames.end;
                continue;
            }
        }
        identity.push(IdentityRange { frames, kind });
    }
    Ok(Dom0Build { memory, identity })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmdline::MemAmount;
    use crate::memmap::{sanitize, RawEntry};

    #[test]
    fn dom0_max_pages_is_unbounded_unless_max_is_given() {
        const GIB: u64 = 1 << 30;
        let none = Dom0Mem::default();
        assert_eq!(dom0_max_pages(&none, 2 * GIB), u64::from(u32::MAX));
        let max = Dom0Mem {
            max: Some(MemAmount::Bytes(GIB)),
            ..Dom0Mem::default()
        };
        assert_eq!(dom0_max_pages(&max, 2 * GIB), GIB / 4096);
        let half = Dom0Mem {
            max: Some(MemAmount::Percent(50)),
            ..Dom0Mem::default()
        };
        assert_eq!(dom0_max_pages(&half, 2 * GIB), GIB / 4096);
        // Beyond the ABI's 32-bit page count: clamped, as Xen's UINT_MAX.
        let huge = Dom0Mem {
            max: Some(MemAmount::Bytes(u64::MAX)),
            ..Dom0Mem::default()
        };
        assert_eq!(dom0_max_pages(&huge, 2 * GIB), u64::from(u32::MAX));
    }

    const RAM: u32 = 1;
    const RESERVED: u32 = 2;
    const ACPI: u32 = 3;
    const NVS: u32 = 4;
    const UNUSABLE: u32 = 5;

    /// QEMU 7.2 q35 with SeaBIOS and 2 GiB (`-m 2G`): low RAM, EBDA, BIOS,
    /// RAM to 0x7FFE0000, ACPI tables in a reserved range, the MMCFG
    /// window, the local APIC region SeaBIOS reports, the BIOS flash.
    fn q35() -> MemoryMap {
        sanitize(
            &[
                RawEntry::from_e820(0, 0x9FC00, RAM),
                RawEntry::from_e820(0x9FC00, 0x400, RESERVED),
                RawEntry::from_e820(0xF0000, 0x10000, RESERVED),
                RawEntry::from_e820(0x10_0000, 0x7FEE_0000, RAM),
                RawEntry::from_e820(0x7FFE_0000, 0x2_0000, RESERVED),
                RawEntry::from_e820(0xB000_0000, 0x1000_0000, RESERVED),
                RawEntry::from_e820(0xFED1_C000, 0x4000, RESERVED),
                RawEntry::from_e820(0xFEE0_0000, 0x1000, RESERVED),
                RawEntry::from_e820(0xFEFF_C000, 0x4000, RESERVED),
                RawEntry::from_e820(0xFFFC_0000, 0x4_0000, RESERVED),
            ],
            &mut |_| {},
        )
    }

    fn hpa(r: Range<u64>) -> Range<Hpa> {
        Hpa(r.start)..Hpa(r.end)
    }

    fn rxen() -> Vec<Reserved> {
        alloc::vec![
            Reserved {
                range: hpa(0x10_0000..0x40_0000),
                what: "hypervisor image",
            },
            Reserved {
                range: hpa(0x40_0000..0xC0_0000),
                what: "module 1 (dom0 kernel)",
            },
            Reserved {
                range: hpa(0x8000..0x9000),
                what: "AP trampoline",
            },
        ]
    }

    const IOAPICS: [Hpa; 1] = [Hpa(0xFEC0_0000)];

    fn traps() -> Traps<'static> {
        const MMCFG: [Range<Hpa>; 1] = [Hpa(0xB000_0000)..Hpa(0xC000_0000)];
        Traps {
            ioapics: &IOAPICS,
            mmcfg: &MMCFG,
        }
    }

    fn ident(b: &Dom0Build) -> Vec<(u64, u64, IdentityKind)> {
        b.identity
            .iter()
            .map(|r| (r.frames.start.0, r.frames.end.0, r.kind))
            .collect()
    }

    #[test]
    fn q35_dom0_of_512_mib() {
        let b = build(&q35(), &rxen(), 512 << 20, traps()).unwrap();
        let e820: Vec<_> = b
            .memory
            .map
            .iter()
            .map(|r| (r.addr, r.addr + r.size, r.kind))
            .collect();
        assert_eq!(
            e820,
            [
                (0, 0x8000, RAM),
                (0x8000, 0x9000, UNUSABLE),
                (0x9000, 0x9F000, RAM),
                (0x9F000, 0xA0000, RESERVED),
                (0xF0000, 0x10_0000, RESERVED),
                (0x10_0000, 16 << 20, UNUSABLE),
                (16 << 20, 528 << 20, RAM),
                (528 << 20, 0x7FFE_0000, UNUSABLE),
                (0x7FFE_0000, 0x8000_0000, RESERVED),
                (0xB000_0000, 0xC000_0000, RESERVED),
                (0xFED1_C000, 0xFED2_0000, RESERVED),
                (0xFEE0_0000, 0xFEE0_1000, RESERVED),
                (0xFEFF_C000, 0xFF00_0000, RESERVED),
                (0xFFFC_0000, 0x1_0000_0000, RESERVED),
            ]
        );
        assert_eq!(
            ident(&b),
            [
                (0, 8, IdentityKind::Ram),
                (9, 0x9F, IdentityKind::Ram),
                // EBDA, VGA hole, option ROMs, BIOS.
                (0x9F, 0x100, IdentityKind::LowMemory),
                (16 << 8, 528 << 8, IdentityKind::Ram),
                // SeaBIOS's ACPI tables sit in a reserved range on q35.
                (0x7FFE0, 0x80000, IdentityKind::Reserved),
                // Not the MMCFG window, nor the local APIC page.
                (0xFED1C, 0xFED20, IdentityKind::Reserved),
                (0xFEFFC, 0xFF000, IdentityKind::Reserved),
                (0xFFFC0, 0x100000, IdentityKind::Reserved),
            ]
        );
        assert_eq!(b.memory.bytes(), (512 << 20) + 0x9E000);
    }

    #[test]
    fn acpi_nvs_and_reserved_above_4_gib_and_trimming() {
        // A host with ACPI and NVS ranges, RAM entries not page aligned, an
        // IO-APIC inside a reserved range and reserved memory above 4 GiB.
        let host = sanitize(
            &[
                RawEntry::from_e820(0, 0x9_F000, RAM),
                RawEntry::from_e820(0x10_0000, 0x3FF0_0800, RAM),
                RawEntry::from_e820(0x4000_0800, 0x1_0000, ACPI),
                RawEntry::from_e820(0x4001_0800, 0x8000, NVS),
                RawEntry::from_e820(0xFEC0_0000, 0x10_0000, RESERVED),
                RawEntry::from_e820(0x1_0000_0000, 0x4000_0123, RAM),
                RawEntry::from_e820(0x2_0000_0000, 0x1000, RESERVED),
            ],
            &mut |_| {},
        );
        let b = build(&host, &rxen(), 256 << 20, traps()).unwrap();
        // RAM trimmed inward to pages; the ACPI/NVS pages outward.
        assert!(b
            .memory
            .map
            .iter()
            .any(|r| r.addr == 0x1_0000_0000 && r.size == 0x4000_0000 && r.kind == UNUSABLE));
        assert_eq!(
            ident(&b).into_iter().skip(4).collect::<Vec<_>>(),
            [
                (0x40000, 0x40019, IdentityKind::Acpi),
                // The IO-APIC page is emulated, not mapped.
                (0xFEC01, 0xFED00, IdentityKind::Reserved),
                (0x200000, 0x200001, IdentityKind::Reserved),
            ]
        );
        // dom0's RAM and what is identity-mapped never overlap, and nothing
        // of rxen's is mapped.
        for (i, r) in b.identity.iter().enumerate() {
            for s in b.identity.iter().skip(i + 1) {
                assert!(r.frames.end <= s.frames.start, "{r:?} {s:?}");
            }
            for x in rxen() {
                assert!(
                    r.frames.end.0 << 12 <= x.range.start.0
                        || x.range.end.0 <= r.frames.start.0 << 12
                );
            }
        }
    }

    #[test]
    fn failure_names_whose_frames_are_in_the_kernels_way() {
        let mut reserved = rxen();
        reserved.push(Reserved {
            range: hpa((20 << 20)..(22 << 20)),
            what: "frame allocator bitmap",
        });
        let e = build(&q35(), &reserved, 256 << 20, traps()).unwrap_err();
        assert_eq!(
            e,
            Dom0BuildError::KernelWindowTaken {
                range: hpa((20 << 20)..(22 << 20)),
                by: alloc::vec!["frame allocator bitmap"],
            }
        );
        assert_eq!(
            e.to_string(),
            "0x1400000-0x1600000, where dom0's kernel loads, holds rxen's frame allocator bitmap"
        );
        // A host without RAM there.
        let small = sanitize(&[RawEntry::from_e820(0, 24 << 20, RAM)], &mut |_| {});
        let e = build(&small, &[], 64 << 20, traps()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "0x1800000-0x5000000, where dom0's kernel loads, is not RAM on this host"
        );
        // Too much asked for.
        assert!(matches!(
            build(&q35(), &rxen(), 4 << 30, traps()),
            Err(Dom0BuildError::TooSmall { .. })
        ));
    }

    #[test]
    fn garbage_reserved_ranges_and_maps() {
        for (start, end) in [
            (5, 5),
            (10, 2),
            (0, (1 << 52) + 1),
            (u64::MAX - 1, u64::MAX),
        ] {
            let r = Reserved {
                range: Hpa(start)..Hpa(end),
                what: "x",
            };
            assert_eq!(
                build(&q35(), core::slice::from_ref(&r), 64 << 20, traps()),
                Err(Dom0BuildError::BadReserved(r))
            );
        }
        // An empty host map, a map of only reserved memory, traps at odd
        // places: errors, no panic.
        let empty = sanitize(&[], &mut |_| {});
        assert!(build(&empty, &[], 64 << 20, Traps::default()).is_err());
        let only_reserved = sanitize(&[RawEntry::from_e820(0, u64::MAX, RESERVED)], &mut |_| {});
        assert!(build(&only_reserved, &[], 0, Traps::default()).is_err());
        const ODD: [Hpa; 2] = [Hpa(u64::MAX), Hpa(0)];
        const ODD_MMCFG: [Range<Hpa>; 2] = [Hpa(u64::MAX)..Hpa(0), Hpa(0)..Hpa(u64::MAX)];
        let b = build(
            &q35(),
            &[],
            64 << 20,
            Traps {
                ioapics: &ODD,
                mmcfg: &ODD_MMCFG,
            },
        )
        .unwrap();
        // The all-covering MMCFG window leaves no reserved range mapped.
        assert!(b
            .identity
            .iter()
            .all(|r| matches!(r.kind, IdentityKind::Ram | IdentityKind::LowMemory)));
    }

    #[test]
    fn dom0_mem_as_xen() {
        let avail = 2000 << 20;
        let pct = |p| Some(MemAmount::Percent(p));
        let bytes = |b: u64| Some(MemAmount::Bytes(b));
        let m = |min, max, target| Dom0Mem { min, max, target };
        // Default: all but 1/16, at most 128 MiB kept back.
        assert_eq!(
            dom0_nr_bytes(&m(None, None, None), avail),
            avail - (125 << 20)
        );
        assert_eq!(
            dom0_nr_bytes(&m(None, None, None), 8 << 30),
            (8 << 30) - (128 << 20)
        );
        assert_eq!(
            dom0_nr_bytes(&m(None, None, bytes(512 << 20)), avail),
            512 << 20
        );
        // Percentages of what is available.
        assert_eq!(dom0_nr_bytes(&m(None, None, pct(50)), avail), 1000 << 20);
        // min raises, max lowers, avail caps.
        assert_eq!(
            dom0_nr_bytes(&m(bytes(768 << 20), None, bytes(512 << 20)), avail),
            768 << 20
        );
        assert_eq!(dom0_nr_bytes(&m(None, pct(10), None), avail), 200 << 20);
        assert_eq!(dom0_nr_bytes(&m(None, None, bytes(u64::MAX)), avail), avail);
        assert_eq!(dom0_nr_bytes(&m(bytes(u64::MAX), None, None), avail), avail);
        // max wins over min (Xen clamps by max after min).
        assert_eq!(
            dom0_nr_bytes(&m(bytes(900 << 20), bytes(600 << 20), None), avail),
            600 << 20
        );
        // Whole pages; nothing available, nothing given.
        assert_eq!(
            dom0_nr_bytes(&m(None, None, bytes(0x1234_5678)), avail),
            0x1234_5000
        );
        assert_eq!(dom0_nr_bytes(&m(None, None, None), 0), 0);
        // Paging pool: 256 pages per vCPU plus one per MiB, whole MiB.
        assert_eq!(dom0_paging_bytes(1, 512 << 20), 3 << 20);
        assert!(dom0_paging_bytes(u32::MAX, u64::MAX) > 0);
    }
}
