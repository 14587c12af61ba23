//! The hypervisor's own page tables: an identity map of RAM and of the
//! low 4 GiB (MMIO such as the local APIC), with 2 MiB pages, no-execute
//! everywhere but the image, uncached for what is not RAM, and the first
//! 4 KiB page left unmapped so that null pointers fault; above that, up to
//! [`Layout::device_limit`], device memory (64-bit BARs: an MSI-X table rxen
//! programs for dom0) with 1 GiB pages, uncached and no-execute.

use core::ops::Range;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const WRITE_THROUGH: u64 = 1 << 3;
const CACHE_DISABLE: u64 = 1 << 4;
const HUGE: u64 = 1 << 7;
const NO_EXECUTE: u64 = 1 << 63;
const PAGE_2M: u64 = 2 << 20;
const PAGE_1G: u64 = 1 << 30;

/// What the page-table builder needs to know.
pub struct Layout<'a> {
    /// Identity-map up to this address (at least 4 GiB).
    pub limit: u64,
    /// RAM ranges (mapped write-back).
    pub ram: &'a [Range<u64>],
    /// The hypervisor image (mapped executable).
    pub image: Range<u64>,
    /// Identity-map device memory from the end of the above up to this
    /// address with 1 GiB pages (no more than `limit` when the CPU has no
    /// 1 GiB pages; at most 2^47, the end of the lower canonical half that
    /// an identity map can use).
    pub device_limit: u64,
}

/// Where [`build`] maps device memory up to, for `layout`: the RAM map's end,
/// or `device_limit` rounded down to 1 GiB (at most 2^47: identity-mapped
/// addresses at or above are not canonical).
pub fn mapped_limit(layout: &Layout) -> (u64, u64) {
    let limit = layout.limit.max(1 << 32).next_multiple_of(PAGE_1G);
    let device = (layout.device_limit.min(1 << 47) & !(PAGE_1G - 1)).max(limit);
    (limit, device)
}

/// Why the page tables could not be built.
#[derive(Debug)]
pub enum PagingError {
    /// The frame allocator ran out.
    OutOfFrames,
    /// The tables must sit below 4 GiB for the AP trampoline.
    TableAbove4G,
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

fn new_table(alloc_frame: &mut dyn FnMut() -> Option<u64>) -> Result<u64, PagingError> {
    let frame = alloc_frame().ok_or(PagingError::OutOfFrames)?;
    if frame >= 1 << 32 {
        return Err(PagingError::TableAbove4G);
    }
    // SAFETY: the frame was just handed out by the frame allocator, is
    // identity-mapped by the boot tables and nobody else uses it.
    unsafe { core::ptr::write_bytes(frame as *mut u8, 0, 4096) };
    Ok(frame)
}

fn set_entry(table: u64, index: u64, value: u64) {
    // SAFETY: `table` is a page-table frame we allocated and `index` < 512.
    unsafe { core::ptr::write_volatile((table + index * 8) as *mut u64, value) };
}

/// Builds the tables and returns the physical address of the PML4.
pub fn build(
    layout: &Layout,
    alloc_frame: &mut dyn FnMut() -> Option<u64>,
) -> Result<u64, PagingError> {
    let (limit, device_limit) = mapped_limit(layout);
    let pml4 = new_table(alloc_frame)?;
    let mut pdpt = 0;
    let mut address = 0;
    while address < limit {
        let pml4_index = (address >> 39) & 511;
        if address % (512 * PAGE_1G) == 0 {
            pdpt = new_table(alloc_frame)?;
            set_entry(pml4, pml4_index, pdpt | PRESENT | WRITABLE);
        }
        let pd = new_table(alloc_frame)?;
        set_entry(pdpt, (address >> 30) & 511, pd | PRESENT | WRITABLE);
        for index in 0..512 {
            let page = address + index * PAGE_2M;
            let range = page..page + PAGE_2M;
            let mut flags = PRESENT | WRITABLE;
            if !layout.ram.iter().any(|ram| overlaps(ram, &range)) {
                flags |= CACHE_DISABLE | WRITE_THROUGH;
            }
            // The first 2 MiB also hold the AP trampoline: executable.
            if page != 0 && !overlaps(&layout.image, &range) {
                flags |= NO_EXECUTE;
            }
            if page == 0 {
                let pt = new_table(alloc_frame)?;
                for small in 1..512 {
                    set_entry(pt, small, (small * 4096) | PRESENT | WRITABLE);
                }
                set_entry(pd, 0, pt | PRESENT | WRITABLE);
            } else {
                set_entry(pd, index, page | flags | HUGE);
            }
        }
        address += PAGE_1G;
    }
    // Device memory above: 1 GiB leaves in PDPTs of their own.
    while address < device_limit {
        let pml4_index = (address >> 39) & 511;
        if address % (512 * PAGE_1G) == 0 {
            pdpt = new_table(alloc_frame)?;
            set_entry(pml4, pml4_index, pdpt | PRESENT | WRITABLE);
        }
        set_entry(
            pdpt,
            (address >> 30) & 511,
            address | PRESENT | WRITABLE | CACHE_DISABLE | WRITE_THROUGH | NO_EXECUTE | HUGE,
        );
        address += PAGE_1G;
    }
    Ok(pml4)
}

/// Switches this CPU to the tables at `pml4`.
pub fn activate(pml4: u64) {
    // SAFETY: `pml4` was built by `build`, which identity-maps everything
    // the hypervisor touches (image, stacks, heap, boot data, MMIO).
    unsafe { core::arch::asm!("mov cr3, {}", in(reg) pml4, options(nostack)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(limit: u64, device_limit: u64) -> Layout<'static> {
        Layout {
            limit,
            ram: &[],
            image: 0..0,
            device_limit,
        }
    }

    /// RAM's map reaches 4 GiB at least, in whole GiB; device memory above it
    /// stops at 2^47 (the canonical lower half), in whole GiB, and never
    /// below the RAM's end (no 1 GiB pages: 0).
    #[test]
    fn the_mapped_limits_are_whole_gib_and_canonical() {
        assert_eq!(mapped_limit(&layout(0x2000_0000, 0)), (1 << 32, 1 << 32));
        assert_eq!(
            mapped_limit(&layout(0x1_2000_0000, 1 << 40)),
            (0x1_4000_0000, 1 << 40)
        );
        assert_eq!(mapped_limit(&layout(1 << 32, 1 << 48)), (1 << 32, 1 << 47));
        assert_eq!(
            mapped_limit(&layout(1 << 32, (1 << 40) + 12345)),
            (1 << 32, 1 << 40)
        );
    }
}
