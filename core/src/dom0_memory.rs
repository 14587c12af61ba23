//! dom0's memory, mapped 1:1 (guest-physical = host-physical), and the memory
//! map it gets (issue 10's design; Xen's `arch/x86/hvm/dom0_build.c`
//! `pvh_setup_e820` gives the shape).
//!
//! dom0 programs devices with guest-physical addresses; without an IOMMU they
//! must be host-physical ones, so dom0's RAM is host RAM at the same address:
//! the host's low RAM (below the legacy hole: BIOS data, the real-mode
//! trampoline Linux needs) and RAM from [`DOM0_KERNEL_BASE`] up, where Linux
//! (not relocated on PVH entry) loads, until dom0's size is reached. Every
//! other byte of host RAM (the hypervisor, its heap and frames, the other
//! domains) is `E820_UNUSABLE` in dom0's map, so dom0 never takes it for RAM
//! or for a PCI BAR; the other kinds keep the host's shape.
//!
//! What 1:1 without an IOMMU does not protect against: a device dom0 drives
//! can DMA anywhere, hypervisor included.
// Guest or firmware input is parsed here: no unchecked arithmetic, no
// indexing that can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use alloc::vec::Vec;
use core::ops::Range;

use rxen_abi::memory::E820_UNUSABLE;

use crate::domain::GuestMemRegion;
use crate::memmap::{MemoryMap, RegionKind};

/// Where Linux 6.1 loads (`CONFIG_PHYSICAL_START`): dom0's RAM from here
/// up must be its own.
pub const DOM0_KERNEL_BASE: u64 = 16 << 20;
/// How much from [`DOM0_KERNEL_BASE`] up must be free of the hypervisor's
/// frames for a distribution kernel to load and unpack.
pub const DOM0_KERNEL_WINDOW: u64 = 64 << 20;
/// The legacy hole (VGA, option ROMs, BIOS) starts here.
const LEGACY_HOLE: u64 = 0xA_0000;

/// Where dom0's RAM is and the memory map it gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dom0Memory {
    /// dom0's RAM, host ranges mapped at the same guest address, sorted.
    pub ram: Vec<Range<u64>>,
    /// dom0's memory map (E820 entries, sorted, merged).
    pub map: Vec<GuestMemRegion>,
    /// Where dom0's ACPI tables go ([`Dom0Memory::take_acpi_page`]).
    pub acpi_page: Option<u64>,
}

impl Dom0Memory {
    /// Bytes of RAM dom0 has.
    pub fn bytes(&self) -> u64 {
        self.ram
            .iter()
            .map(|r| r.end.saturating_sub(r.start))
            .fold(0, u64::saturating_add)
    }

    /// The end of dom0's highest RAM.
    pub fn end(&self) -> u64 {
        self.ram.last().map_or(0, |r| r.end)
    }

    /// Takes the last page of dom0's highest RAM below 4 GiB for the ACPI
    /// tables built for it (as Xen's `pvh_steal_ram`): still dom0's memory,
    /// mapped 1:1, but ACPI in its memory map. Returns its address (`None`
    /// without RAM from 16 MiB below 4 GiB).
    pub fn take_acpi_page(&mut self) -> Option<u64> {
        let range = self
            .ram
            .iter()
            .rfind(|r| r.start >= DOM0_KERNEL_BASE && r.end <= 1 << 32)?;
        let page = range.end.checked_sub(0x1000)?;
        if page < range.start {
            return None;
        }
        let mut map = Vec::with_capacity(self.map.len().saturating_add(2));
        for r in &self.map {
            let end = r.addr.saturating_add(r.size);
            if r.kind == RegionKind::Usable.to_e820() && r.addr <= page && page < end {
                let before = page.saturating_sub(r.addr);
                let after = end.saturating_sub(page.saturating_add(0x1000));
                if before > 0 {
                    map.push(GuestMemRegion { size: before, ..*r });
                }
                map.push(GuestMemRegion {
                    addr: page,
                    size: 0x1000,
                    kind: RegionKind::AcpiReclaimable.to_e820(),
                });
                if after > 0 {
                    map.push(GuestMemRegion {
                        addr: page.saturating_add(0x1000),
                        size: after,
                        kind: r.kind,
                    });
                }
            } else {
                map.push(*r);
            }
        }
        self.map = map;
        self.acpi_page = Some(page);
        Some(page)
    }
}

/// Why dom0's memory cannot be laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dom0MemoryError {
    /// The kernel's window is not all free host RAM: this range (kept by
    /// the hypervisor, the boot loader, or not RAM) is in the way.
    KernelWindowTaken(Range<u64>),
    /// Less RAM than asked for is free from the kernel's base up.
    TooSmall {
        /// Bytes asked for.
        wanted: u64,
        /// Bytes there are.
        free: u64,
    },
}

impl core::fmt::Display for Dom0MemoryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::KernelWindowTaken(r) => write!(
                f,
                "{:#x}-{:#x}, where dom0's kernel loads, is not free RAM",
                r.start, r.end
            ),
            Self::TooSmall { wanted, free } => write!(
                f,
                "{} MiB asked for dom0, {} MiB of RAM free above 16 MiB",
                wanted >> 20,
                free >> 20
            ),
        }
    }
}

/// The local APIC's and IO-APICs' pages: never mapped into a domain (the
/// hypervisor owns the interrupt controllers; dom0 gets emulated ones).
const INTERRUPT_CONTROLLERS: [Range<u64>; 2] = [0xFEC0_0000..0xFED0_0000, 0xFEE0_0000..0xFEF0_0000];

/// Whether host-physical `addr` is device memory a 1:1 dom0 may reach
/// directly (mapped on first touch, as Xen maps its hardware domain's MMIO):
/// not RAM in the host's memory map `host` (so neither the hypervisor's nor
/// another domain's), not an interrupt controller, within 48 bits.
pub fn is_device_memory(host: &[GuestMemRegion], addr: u64) -> bool {
    addr < 1 << 48
        && !INTERRUPT_CONTROLLERS.iter().any(|r| r.contains(&addr))
        && !host.iter().any(|r| {
            r.kind == RegionKind::Usable.to_e820()
                && r.addr <= addr
                && addr.wrapping_sub(r.addr) < r.size
        })
}

/// `addr` rounded up to a page (addresses near the top stay in the last
/// page: memory maps end below 2^52).
fn page_up(addr: u64) -> u64 {
    addr.saturating_add(0xFFF) & !0xFFF
}

/// The free parts of `range`: without any of `taken`.
fn free_parts(range: Range<u64>, taken: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut parts = alloc::vec![range];
    for t in taken {
        let mut next = Vec::new();
        for p in parts {
            if t.end <= p.start || p.end <= t.start {
                next.push(p);
                continue;
            }
            if p.start < t.start {
                next.push(p.start..t.start);
            }
            if t.end < p.end {
                next.push(t.end..p.end);
            }
        }
        parts = next;
    }
    parts
}

/// Lays out a 1:1 dom0 of `bytes` of RAM above [`DOM0_KERNEL_BASE`] (whole
/// pages; the host's low RAM comes on top) in the host memory `map`,
/// avoiding the `taken` ranges (the hypervisor image, boot data, modules).
pub fn layout(
    map: &MemoryMap,
    taken: &[Range<u64>],
    bytes: u64,
) -> Result<Dom0Memory, Dom0MemoryError> {
    let wanted = bytes & !0xFFF;
    let mut ram: Vec<Range<u64>> = Vec::new();
    // Low RAM, below the legacy hole, as the host has it (whole pages).
    for r in map.usable() {
        let end = r.end.min(LEGACY_HOLE);
        if r.start < end {
            ram.extend(
                free_parts(r.start..end, taken)
                    .into_iter()
                    .map(|p| page_up(p.start)..(p.end & !0xFFF))
                    .filter(|p| p.start < p.end),
            );
        }
    }
    // From the kernel's base up: the window must be free RAM.
    let window = kernel_window(wanted);
    let window_free: Vec<_> = map
        .usable()
        .flat_map(|r| {
            let start = r.start.max(window.start);
            let end = r.end.min(window.end);
            if start < end {
                free_parts(start..end, taken)
            } else {
                Vec::new()
            }
        })
        .collect();
    let mut covered = window.start;
    for part in &window_free {
        if part.start != covered {
            return Err(Dom0MemoryError::KernelWindowTaken(covered..part.start));
        }
        covered = part.end;
    }
    if covered != window.end {
        return Err(Dom0MemoryError::KernelWindowTaken(covered..window.end));
    }
    let mut left = wanted;
    let mut free: u64 = 0;
    for r in map.usable() {
        let start = page_up(r.start.max(DOM0_KERNEL_BASE));
        let end = r.end & !0xFFF;
        if start >= end {
            continue;
        }
        for part in free_parts(start..end, taken) {
            let part = page_up(part.start)..(part.end & !0xFFF);
            if part.start >= part.end {
                continue;
            }
            // Non-empty: start < end.
            let len = part.end.wrapping_sub(part.start);
            free = free.saturating_add(len);
            if left == 0 {
                continue;
            }
            let take = left.min(len);
            ram.push(part.start..part.start.wrapping_add(take));
            left = left.wrapping_sub(take);
        }
    }
    if left > 0 {
        return Err(Dom0MemoryError::TooSmall { wanted, free });
    }
    Ok(Dom0Memory {
        map: e820(map, &ram),
        ram,
        acpi_page: None,
    })
}

/// dom0's memory map: the host's, with usable RAM that is not dom0's
/// marked unusable.
fn e820(map: &MemoryMap, ram: &[Range<u64>]) -> Vec<GuestMemRegion> {
    let mut out: Vec<GuestMemRegion> = Vec::new();
    let mut push = |addr: u64, end: u64, kind: u32| {
        if addr >= end {
            return;
        }
        if let Some(last) = out.last_mut() {
            if last.kind == kind && last.addr.checked_add(last.size) == Some(addr) {
                last.size = last.size.saturating_add(end.wrapping_sub(addr));
                return;
            }
        }
        out.push(GuestMemRegion {
            addr,
            size: end.wrapping_sub(addr),
            kind,
        });
    };
    for r in map.regions() {
        if r.kind != RegionKind::Usable {
            push(r.start, r.end, r.kind.to_e820());
            continue;
        }
        let mut at = r.start;
        for own in ram.iter().filter(|o| o.start < r.end && r.start < o.end) {
            let start = own.start.max(r.start);
            let end = own.end.min(r.end);
            push(at, start, E820_UNUSABLE);
            push(start, end, RegionKind::Usable.to_e820());
            at = end;
        }
        push(at, r.end, E820_UNUSABLE);
    }
    out
}

/// dom0's kernel window for a dom0 of `bytes`: what [`layout`] needs free.
pub fn kernel_window(bytes: u64) -> Range<u64> {
    let wanted = bytes & !0xFFF;
    DOM0_KERNEL_BASE..DOM0_KERNEL_BASE.saturating_add(DOM0_KERNEL_WINDOW.min(wanted.max(1 << 20)))
}

/// Where the boot modules that lie in `window` (dom0's kernel window) move
/// to, as Xen moves its boot modules out of the way in `__start_xen`: each
/// such module, in order, to the highest page-aligned place below 4 GiB in
/// usable RAM that is clear of the window, of `taken` (the hypervisor's
/// image and boot data, every module where it is now) and of the places
/// given so far. `None`: the module stays (it is not in the window, or
/// there is no room: [`layout`] then says why dom0 cannot be 1:1).
pub fn relocate_modules(
    map: &MemoryMap,
    taken: &[Range<u64>],
    modules: &[Range<u64>],
    window: Range<u64>,
) -> Vec<Option<u64>> {
    let mut busy: Vec<Range<u64>> = taken.to_vec();
    busy.extend(modules.iter().cloned());
    busy.push(window.clone());
    modules
        .iter()
        .map(|m| {
            let size = page_up(m.end.checked_sub(m.start)?);
            if m.end <= window.start || window.end <= m.start || size == 0 {
                return None;
            }
            let place = map
                .usable()
                .filter(|r| r.start < 1 << 32)
                .flat_map(|r| free_parts(r.start..r.end.min(1 << 32), &busy))
                .filter_map(|p| {
                    let start = p.end.checked_sub(size)? & !0xFFF;
                    (start >= p.start).then_some(start)
                })
                .max()?;
            busy.push(place..place.saturating_add(size));
            Some(place)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memmap::{sanitize, RawEntry};

    /// QEMU's multiboot loader puts the modules right after the image; with
    /// a big initramfs they reach into the kernel window, and move to the
    /// top of RAM below 4 GiB, the first highest; then dom0 is 1:1 again.
    #[test]
    fn modules_in_the_kernel_window_move_to_the_top_of_ram() {
        let window = kernel_window(256 << 20);
        assert_eq!(window, (16 << 20)..(80 << 20));
        let image = 0x10_0000..0x30_0000;
        let kernel = 0x30_0000..0xB2_0000;
        let initrd = 0xB2_0000..0x10E_4230;
        let low = 0x20_0000_u64..0x20_1000; // below the window: stays
        let modules = [kernel.clone(), initrd.clone(), low.clone()];
        let moved = relocate_modules(
            &q35(),
            core::slice::from_ref(&image),
            &modules,
            window.clone(),
        );
        let initrd_size = page_up(initrd.end - initrd.start);
        assert_eq!(
            moved,
            [None, Some((0x3FEE_0000 - initrd_size) & !0xFFF), None]
        );
        // Before: no 1:1 dom0; after: yes.
        let before = [image.clone(), kernel.clone(), initrd.clone()];
        assert!(layout(&q35(), &before, 256 << 20).is_err());
        let place = moved[1].unwrap();
        let after = [image, kernel, place..place + initrd_size];
        let d = layout(&q35(), &after, 256 << 20).unwrap();
        assert_eq!(d.ram[1].start, 16 << 20);
        // Two modules in the window: the second goes below the first.
        let modules = [(20 << 20)..(21 << 20), (21 << 20)..(23 << 20)];
        let moved = relocate_modules(&q35(), &[], &modules, window.clone());
        assert_eq!(
            moved,
            [Some(0x3FEE_0000 - (1 << 20)), Some(0x3FEE_0000 - (3 << 20))]
        );
        // No room: stays.
        let huge = (20 << 20)..(2 << 30);
        assert_eq!(
            relocate_modules(&q35(), &[], core::slice::from_ref(&huge), window.clone()),
            [None]
        );
        // Broken ranges are left alone.
        #[allow(clippy::reversed_empty_ranges)]
        let broken = [(30 << 20)..(20 << 20), (20 << 20)..(20 << 20)];
        assert_eq!(relocate_modules(&q35(), &[], &broken, window), [None, None]);
    }

    /// QEMU q35 (SeaBIOS) with 1 GiB.
    fn q35() -> MemoryMap {
        sanitize(
            &[
                RawEntry::from_e820(0, 0x9FC00, 1),
                RawEntry::from_e820(0x9FC00, 0x400, 2),
                RawEntry::from_e820(0xF0000, 0x10000, 2),
                RawEntry::from_e820(0x10_0000, 0x3FEE_0000 - 0x10_0000, 1),
                RawEntry::from_e820(0x3FEE_0000, 0x2_0000, 2),
                RawEntry::from_e820(0xB000_0000, 0x1000_0000, 2),
                RawEntry::from_e820(0xFEFF_C000, 0x4000, 2),
                RawEntry::from_e820(0xFFFC_0000, 0x4_0000, 2),
            ],
            &mut |_| {},
        )
    }

    /// The hypervisor image at 1 MiB and two modules below 16 MiB.
    const TAKEN: [Range<u64>; 3] = [
        0x10_0000..0x30_0000,
        0x30_0000..0xB0_0000,
        0xB0_0000..0xC0_0000,
    ];

    #[test]
    fn dom0_gets_low_ram_and_ram_from_16_mib_up() {
        let d = layout(&q35(), &TAKEN, 256 << 20).unwrap();
        assert_eq!(d.ram, [0..0x9F000, (16 << 20)..(272 << 20)]);
        assert_eq!(d.bytes(), (256 << 20) + 0x9F000);
        let kinds: Vec<_> = d.map.iter().map(|r| (r.addr, r.size, r.kind)).collect();
        assert_eq!(
            kinds,
            [
                (0, 0x9F000, 1),
                (0x9F000, 0x1000, 2),
                (0xF0000, 0x10000, 2),
                (0x10_0000, (15 << 20), E820_UNUSABLE),
                (16 << 20, 256 << 20, 1),
                (272 << 20, 0x3FEE_0000 - (272 << 20), E820_UNUSABLE),
                (0x3FEE_0000, 0x2_0000, 2),
                (0xB000_0000, 0x1000_0000, 2),
                (0xFEFF_C000, 0x4000, 2),
                (0xFFFC_0000, 0x4_0000, 2),
            ]
        );
    }

    #[test]
    fn ram_around_what_is_taken_above_the_window() {
        // Something of the hypervisor's at 100 MiB: dom0's RAM goes around it.
        let mut taken = TAKEN.to_vec();
        taken.push((100 << 20)..(101 << 20));
        let d = layout(&q35(), &taken, 128 << 20).unwrap();
        assert_eq!(
            d.ram,
            [
                0..0x9F000,
                (16 << 20)..(100 << 20),
                (101 << 20)..(145 << 20)
            ]
        );
        assert!(d
            .map
            .iter()
            .any(|r| r.addr == 100 << 20 && r.size == 1 << 20 && r.kind == E820_UNUSABLE));
    }

    #[test]
    fn a_taken_kernel_window_is_refused_with_the_range() {
        let mut taken = TAKEN.to_vec();
        taken.push((20 << 20)..(21 << 20));
        assert_eq!(
            layout(&q35(), &taken, 256 << 20),
            Err(Dom0MemoryError::KernelWindowTaken((20 << 20)..(21 << 20)))
        );
        // A machine whose RAM ends below the window's end.
        let small = sanitize(&[RawEntry::from_e820(0, 40 << 20, 1)], &mut |_| {});
        assert_eq!(
            layout(&small, &[], 256 << 20),
            Err(Dom0MemoryError::KernelWindowTaken((40 << 20)..(80 << 20)))
        );
    }

    #[test]
    fn more_than_there_is_is_refused() {
        let e = layout(&q35(), &TAKEN, 2 << 30).unwrap_err();
        assert_eq!(
            e,
            Dom0MemoryError::TooSmall {
                wanted: 2 << 30,
                free: 0x3FEE_0000 - (16 << 20)
            }
        );
        assert!(e.to_string().contains("2048 MiB asked for dom0"));
    }

    #[test]
    fn boot_data_in_low_memory_leaves_whole_pages() {
        let mut taken = TAKEN.to_vec();
        taken.push(0x9000..0x90D8);
        taken.push(0x9500..0x9558);
        let d = layout(&q35(), &taken, 64 << 20).unwrap();
        assert_eq!(d.ram, [0..0x9000, 0xA000..0x9F000, (16 << 20)..(80 << 20)]);
        assert!(d
            .map
            .iter()
            .any(|r| r.addr == 0x9000 && r.size == 0x1000 && r.kind == E820_UNUSABLE));
    }

    #[test]
    fn device_memory_is_what_is_not_ram_nor_an_interrupt_controller() {
        let host: Vec<GuestMemRegion> = q35()
            .regions()
            .iter()
            .map(|r| GuestMemRegion {
                addr: r.start,
                size: r.len(),
                kind: r.kind.to_e820(),
            })
            .collect();
        // Device memory: the BIOS ROM, the ECAM window, a BAR, the HPET.
        for addr in [
            0xF_FFF0,
            0xB000_0000,
            0xFEBD_4000,
            0xFED0_0000,
            0x80_0000_0000,
        ] {
            assert!(is_device_memory(&host, addr), "{addr:#x}");
        }
        // Not: RAM (the hypervisor's, dom0's, anyone's), the IO-APIC and local
        // APIC pages, beyond 48 bits.
        for addr in [
            0,
            0x10_0000,
            0x1100_0000,
            0x3FED_FFFF,
            0xFEC0_0000,
            0xFEE0_0FF0,
            1 << 48,
            u64::MAX,
        ] {
            assert!(!is_device_memory(&host, addr), "{addr:#x}");
        }
    }

    #[test]
    fn the_last_ram_page_below_4_gib_holds_the_acpi_tables() {
        let mut d = layout(&q35(), &TAKEN, 256 << 20).unwrap();
        assert_eq!(d.take_acpi_page(), Some((272 << 20) - 0x1000));
        // Still RAM of dom0's, 1:1; its memory map says ACPI.
        assert_eq!(d.bytes(), (256 << 20) + 0x9F000);
        let around: Vec<_> = d
            .map
            .iter()
            .filter(|r| r.addr >= 16 << 20 && r.addr < 272 << 20)
            .map(|r| (r.addr, r.size, r.kind))
            .collect();
        assert_eq!(
            around,
            [
                (16 << 20, (256 << 20) - 0x1000, 1),
                ((272 << 20) - 0x1000, 0x1000, 3)
            ]
        );
        // Without RAM from 16 MiB there is no page for them.
        let mut low = layout(&q35(), &TAKEN, 0).unwrap();
        low.ram.truncate(1);
        assert_eq!(low.take_acpi_page(), None);
    }

    #[test]
    fn unaligned_and_tiny_requests() {
        let d = layout(&q35(), &TAKEN, (32 << 20) + 123).unwrap();
        assert_eq!(d.end(), 48 << 20);
        // A request of nothing still keeps a window of 1 MiB for the kernel.
        let d = layout(&q35(), &TAKEN, 0).unwrap();
        assert_eq!(d.ram.len(), 1);
        assert_eq!(d.ram[0], 0..0x9F000);
    }
}
