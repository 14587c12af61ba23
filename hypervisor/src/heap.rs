//! The hypervisor heap: a small early heap in the image's BSS, usable from
//! the first instruction, and the main heap carved from the frame allocator
//! once the memory map is known. Allocation prefers the main heap; each
//! block is returned to the heap it came from.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicBool, Ordering};

use linked_list_allocator::LockedHeap;

/// Size of the early heap.
const EARLY_HEAP_SIZE: usize = 2 << 20;

#[repr(C, align(4096))]
struct EarlyArena([u8; EARLY_HEAP_SIZE]);

static mut EARLY_ARENA: EarlyArena = EarlyArena([0; EARLY_HEAP_SIZE]);

/// The two heaps behind `#[global_allocator]`.
pub struct DualHeap {
    early: LockedHeap,
    main: LockedHeap,
    early_ready: AtomicBool,
    main_ready: AtomicBool,
}

#[global_allocator]
static HEAP: DualHeap = DualHeap {
    early: LockedHeap::empty(),
    main: LockedHeap::empty(),
    early_ready: AtomicBool::new(false),
    main_ready: AtomicBool::new(false),
};

fn early_range() -> (usize, usize) {
    let start = core::ptr::addr_of!(EARLY_ARENA) as usize;
    (start, start + EARLY_HEAP_SIZE)
}

/// Makes the early heap usable. Call once, first thing on the boot CPU.
pub fn init_early() {
    if HEAP.early_ready.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: EARLY_ARENA is used by nothing but this heap, and this runs
    // once (guarded by `early_ready`) before any allocation.
    unsafe {
        HEAP.early.lock().init(
            core::ptr::addr_of_mut!(EARLY_ARENA) as *mut u8,
            EARLY_HEAP_SIZE,
        )
    };
}

/// Adds the main heap at `start` (identity-mapped, `size` bytes, owned by
/// the heap from now on).
///
/// # Safety
/// The range must be unused RAM, reserved for the heap for good.
pub unsafe fn init_main(start: u64, size: usize) {
    // SAFETY: guaranteed by the caller.
    unsafe { HEAP.main.lock().init(start as *mut u8, size) };
    HEAP.main_ready.store(true, Ordering::Release);
}

/// Bytes in use in both heaps.
pub fn used() -> usize {
    HEAP.early.lock().used() + HEAP.main.lock().used()
}

/// Bytes of the early heap in use (for the boot report).
pub fn early_used() -> usize {
    HEAP.early.lock().used()
}

// SAFETY: both heaps are locked allocators; each pointer is freed into the
// heap whose range contains it.
unsafe impl GlobalAlloc for DualHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.main_ready.load(Ordering::Acquire) {
            // SAFETY: forwarded with the caller's layout.
            let ptr = unsafe { self.main.alloc(layout) };
            if !ptr.is_null() {
                return ptr;
            }
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { self.early.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let (start, end) = early_range();
        let address = ptr as usize;
        // SAFETY: `ptr` came from the heap whose range holds it.
        unsafe {
            if (start..end).contains(&address) {
                self.early.dealloc(ptr, layout)
            } else {
                self.main.dealloc(ptr, layout)
            }
        }
    }
}
