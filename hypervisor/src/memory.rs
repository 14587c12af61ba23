//! Memory set-up at boot: the sanitized memory map, the reserved ranges,
//! the global frame allocator, the main heap and the hypervisor's own page
//! tables.

use alloc::vec::Vec;
use core::ops::Range;

use rxen_core::domain::GuestMemRegion;
use rxen_core::frame_alloc::{self, FrameAllocator};
use rxen_core::memmap::{self, MemoryMap, RawEntry, SanitizeWarning};
use rxen_x86::bootinfo::BootInfo;
use rxen_x86::{log, printk};
use spin::Mutex;

/// Everything below 1 MiB stays with the firmware and the AP trampoline.
const LOW_MEMORY: Range<u64> = 0..(1 << 20);
/// Main heap size.
pub const HEAP_SIZE: u64 = 16 << 20;

/// The host memory map (for XENMEM_machine_memory_map).
static HOST_MAP: spin::Once<Vec<GuestMemRegion>> = spin::Once::new();
/// Highest host RAM frame + 1.
static HOST_MAX_PAGE: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The host memory map as E820 entries.
pub fn host_memory_map() -> Vec<GuestMemRegion> {
    HOST_MAP.get().cloned().unwrap_or_default()
}

/// Whether host-physical `addr` is device memory that a 1:1 dom0 may reach
/// directly ([`rxen_core::dom0_memory::is_device_memory`] on the host map).
pub fn is_device_memory(addr: u64) -> bool {
    HOST_MAP
        .get()
        .is_some_and(|map| rxen_core::dom0_memory::is_device_memory(map, addr))
}

/// Highest host RAM frame + 1.
pub fn host_max_page() -> u64 {
    HOST_MAX_PAGE.load(core::sync::atomic::Ordering::Relaxed)
}

/// The machine's frame allocator.
pub static FRAMES: Mutex<Option<FrameAllocator<'static>>> = Mutex::new(None);

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// Physical range of the hypervisor image (text, data and BSS).
pub fn image_range() -> Range<u64> {
    // Linker-script symbols: only their addresses are taken.
    core::ptr::addr_of!(__image_start) as u64..core::ptr::addr_of!(__image_end) as u64
}

/// Moves the boot modules that lie in dom0's kernel window out of it, to the
/// top of RAM below 4 GiB ([`rxen_core::dom0_memory::relocate_modules`], as
/// Xen moves its modules in `__start_xen`): a loader that puts a big
/// initramfs right after the hypervisor reaches past 16 MiB, where a 1:1
/// dom0's Linux loads. Runs at boot on one CPU, before anything allocates.
pub fn relocate_boot_modules(
    modules: &mut [(usize, rxen_x86::bootinfo::BootModule)],
    map: &MemoryMap,
    occupied: &[Range<u64>],
) {
    use rxen_core::dom0_memory::{kernel_window, relocate_modules, DOM0_KERNEL_WINDOW};
    let mut taken = occupied.to_vec();
    taken.push(image_range());
    let ranges: Vec<Range<u64>> = modules.iter().map(|(_, m)| m.start..m.end).collect();
    let places = relocate_modules(map, &taken, &ranges, kernel_window(DOM0_KERNEL_WINDOW));
    for ((index, module), place) in modules.iter_mut().zip(places) {
        let Some(to) = place else {
            continue;
        };
        let len = module.end - module.start;
        // SAFETY: boot time on the boot CPU, before the frame allocator or
        // any other CPU exists; the boot page tables identity-map the first
        // 4 GiB writable. The source is the module as the loader placed it;
        // the destination is usable RAM below 4 GiB clear of the image, the
        // boot data and every module (`relocate_modules`); `copy` allows
        // the two to overlap.
        unsafe { core::ptr::copy(module.start as *const u8, to as *mut u8, len as usize) };
        printk!(
            "Module {index}: moved to {to:#x} - {:#x}, out of dom0's kernel window",
            to + len
        );
        module.start = to;
        module.end = to + len;
    }
}

/// Sanitizes and prints the firmware memory map.
pub fn memory_map(boot: &BootInfo) -> MemoryMap {
    let raw: Vec<RawEntry> = boot
        .memory
        .iter()
        .map(|entry| RawEntry::from_e820(entry.base, entry.len, entry.kind))
        .collect();
    let map = memmap::sanitize(&raw, &mut |warning| match warning {
        // Firmware maps commonly end RAM off a page boundary: not worth a warning.
        SanitizeWarning::Unaligned { .. } => log!(Info, "Memory map: {warning}"),
        _ => printk!("Warning: memory map: {warning}"),
    });
    printk!("Physical RAM map:");
    for region in map.regions() {
        printk!(
            " {:016x} - {:016x} {}",
            region.start,
            region.end,
            region.kind
        );
    }
    HOST_MAP.call_once(|| {
        map.regions()
            .iter()
            .map(|r| GuestMemRegion {
                addr: r.start,
                size: r.end - r.start,
                kind: r.kind.to_e820(),
            })
            .collect()
    });
    let ram: Vec<(u64, u64)> = map
        .regions()
        .iter()
        .filter(|r| r.kind.to_e820() == rxen_core::memmap::RegionKind::Usable.to_e820())
        .map(|r| (r.start, r.end))
        .collect();
    rxen_x86::pci::set_ram(&ram);
    HOST_MAX_PAGE.store(
        map.max_usable_end() / 4096,
        core::sync::atomic::Ordering::Relaxed,
    );
    let total = map.total_usable();
    printk!("System RAM: {}MB ({}kB)", total >> 20, total >> 10);
    map
}

/// Creates the frame allocator (keeping `reserved` out of it), then the main
/// heap. Returns `false` if there is no memory to work with.
pub fn init_frames_and_heap(map: &MemoryMap, mut reserved: Vec<Range<u64>>) -> bool {
    reserved.push(LOW_MEMORY);
    reserved.push(image_range());
    let words = frame_alloc::bitmap_words(map);
    let bytes = (words as u64 * 8).next_multiple_of(4096);
    let Some(bitmap_at) = frame_alloc::find_free_range(map, &reserved, bytes) else {
        printk!("No room for the frame bitmap ({bytes} bytes)");
        return false;
    };
    reserved.push(bitmap_at..bitmap_at + bytes);
    // SAFETY: `find_free_range` chose usable RAM that no reserved range
    // (image, boot data, modules) touches; it is identity-mapped and from
    // now on belongs to the bitmap alone.
    let bitmap = unsafe { core::slice::from_raw_parts_mut(bitmap_at as *mut u64, words) };
    let mut frames = match FrameAllocator::new(bitmap, map, &reserved) {
        Ok(frames) => frames,
        Err(error) => {
            printk!("Frame allocator: {error}");
            return false;
        }
    };
    let heap_size = HEAP_SIZE
        .min(frames.free_frames() * 4096 / 4)
        .next_multiple_of(4096);
    let Some(heap_at) = frames.alloc_contiguous((heap_size / 4096) as usize, 1) else {
        printk!("No contiguous {heap_size} bytes for the heap");
        return false;
    };
    // SAFETY: the frames were just taken from the allocator for the heap.
    unsafe { crate::heap::init_main(heap_at, heap_size as usize) };
    // It may grow by up to a quarter of what is left, when every domain's
    // bounded structures together need more than the main heap.
    let growth = (frames.free_frames() * 4096 / 4) as usize;
    crate::heap::allow_growth(growth, grow_heap);
    printk!(
        "Frames: {} of {} free ({} MiB); heap {} MiB at {:#x}; bitmap at {:#x}",
        frames.free_frames(),
        frames.total_frames(),
        frames.free_frames() >> 8,
        heap_size >> 20,
        heap_at,
        bitmap_at
    );
    log!(
        Debug,
        "Early heap used: {} bytes",
        crate::heap::early_used()
    );
    *FRAMES.lock() = Some(frames);
    true
}

/// Allocates one frame from the global allocator.
pub fn alloc_frame() -> Option<u64> {
    FRAMES.lock().as_mut().and_then(|frames| frames.alloc())
}

/// Allocates `count` contiguous frames.
pub fn alloc_frames(count: usize) -> Option<u64> {
    FRAMES
        .lock()
        .as_mut()
        .and_then(|frames| frames.alloc_contiguous(count, 1))
}

/// Allocates `count` contiguous frames aligned to `align` frames.
pub fn alloc_frames_aligned(count: usize, align: usize) -> Option<u64> {
    FRAMES
        .lock()
        .as_mut()
        .and_then(|frames| frames.alloc_contiguous(count, align))
}

/// Returns `count` frames starting at `start` to the allocator. A frame the
/// allocator refuses (double free) is reported, never silently reused.
/// Takes `count` contiguous frames that only the returned owner uses (no
/// guest sees them); they go back to the allocator when it is dropped.
pub fn alloc_owned(count: usize) -> Option<rxen_x86::frame::HostFrames> {
    let start = alloc_frames(count)?;
    // SAFETY: the allocator just handed out these frames, page-aligned RAM
    // in the identity map, to this caller alone; `free_frames` takes them
    // back once, when the owner is dropped.
    Some(unsafe { rxen_x86::frame::HostFrames::from_raw(start, count, free_frames) })
}

pub fn free_frames(start: u64, count: usize) {
    let mut refused = 0u64;
    let mut first_error = None;
    {
        let mut guard = FRAMES.lock();
        let Some(frames) = guard.as_mut() else { return };
        for index in 0..count as u64 {
            if let Err(error) = frames.free(start + index * 4096) {
                refused += 1;
                first_error.get_or_insert(error);
            }
        }
    }
    // Printed without the lock: nothing may allocate from the heap while it
    // is held (the heap grows from the frame allocator, see `grow_heap`).
    if let Some(error) = first_error {
        printk!("Frame allocator: {error} ({refused} frames refused)");
    }
}

/// Frames for the heap to grow by ([`crate::heap::GrowFrames`]): nothing
/// allocates from the heap while the frame allocator's lock is held, so
/// waiting for that lock from inside an allocation cannot deadlock.
fn grow_heap(count: usize) -> Option<u64> {
    let at = alloc_frames(count)?;
    log!(
        Info,
        "Heap: grown by {} MiB to {} MiB",
        (count * 4096) >> 20,
        ((HEAP_SIZE as usize) + crate::heap::grown() + count * 4096) >> 20
    );
    Some(at)
}

/// Free frames now (for reports and tests).
pub fn free_frame_count() -> u64 {
    FRAMES
        .lock()
        .as_ref()
        .map(|frames| frames.free_frames())
        .unwrap_or(0)
}

/// Builds and activates the hypervisor's page tables; returns the PML4.
pub fn init_page_tables(map: &MemoryMap) -> Option<u64> {
    let ram: Vec<Range<u64>> = map
        .usable()
        .map(|region| region.start..region.end)
        .collect();
    let limit = map.max_usable_end();
    // Device memory above RAM (64-bit BARs) up to the physical address
    // width, with 1 GiB pages where the CPU has them.
    let device_limit = if rxen_x86::cpu::has_1g_pages() {
        1u64 << rxen_x86::cpu::phys_addr_bits().min(47)
    } else {
        0
    };
    let layout = rxen_x86::paging::Layout {
        limit,
        ram: &ram,
        image: image_range(),
        device_limit,
    };
    let (limit, device_limit) = rxen_x86::paging::mapped_limit(&layout);
    match rxen_x86::paging::build(&layout, &mut alloc_frame) {
        Ok(pml4) => {
            rxen_x86::paging::activate(pml4);
            rxen_x86::pci::set_device_limit(device_limit);
            log!(
                Info,
                "Page tables: identity map up to {limit:#x}, device memory up to {device_limit:#x}, PML4 at {pml4:#x}"
            );
            Some(pml4)
        }
        Err(error) => {
            printk!("Page tables: {error:?}");
            None
        }
    }
}
