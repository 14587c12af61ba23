//! The hypervisor heap: a small early heap in the image's BSS, usable from
//! the first instruction, the main heap carved from the frame allocator
//! once the memory map is known, and extensions: when the main heap is
//! full, the heap grows by [`CHUNK`] bytes of contiguous frames, up to a
//! limit set at boot (as Xen's xenheap takes its pages from the domain
//! heap). Guests cannot grow it without bound: every structure a guest
//! makes rxen allocate is bounded by a per-domain limit (grant frames,
//! maptrack, event channels, paging pool); growing only moves the machine's
//! limit from a fixed 16 MiB to the sum of those bounds. Allocation prefers
//! the main heap, then the extensions, then the early heap; each block is
//! returned to the heap it came from.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use linked_list_allocator::LockedHeap;

/// Size of the early heap.
const EARLY_HEAP_SIZE: usize = 2 << 20;

#[repr(C, align(4096))]
struct EarlyArena([u8; EARLY_HEAP_SIZE]);

static mut EARLY_ARENA: EarlyArena = EarlyArena([0; EARLY_HEAP_SIZE]);

/// Size of one extension of the heap.
pub const CHUNK: usize = 4 << 20;
/// Most extensions.
const MAX_CHUNKS: usize = 64;

/// Where the heap finds frames to grow: `count` contiguous frames, or None.
/// It must not allocate from the heap and must give up rather than wait for
/// a lock this CPU may hold (the heap grows from inside any allocation).
pub type GrowFrames = fn(count: usize) -> Option<u64>;

/// The heaps behind `#[global_allocator]`.
pub struct DualHeap {
    early: LockedHeap,
    main: LockedHeap,
    early_ready: AtomicBool,
    main_ready: AtomicBool,
    /// Extensions `0..chunks` are initialised; `chunk_at[i]` is where
    /// extension i starts.
    chunk: [LockedHeap; MAX_CHUNKS],
    chunk_at: [AtomicU64; MAX_CHUNKS],
    chunks: AtomicUsize,
    /// How many extensions may be added (set at boot).
    max_chunks: AtomicUsize,
    /// Held while one CPU grows the heap.
    growing: spin::Mutex<Option<GrowFrames>>,
}

#[global_allocator]
static HEAP: DualHeap = DualHeap {
    early: LockedHeap::empty(),
    main: LockedHeap::empty(),
    early_ready: AtomicBool::new(false),
    main_ready: AtomicBool::new(false),
    chunk: [const { LockedHeap::empty() }; MAX_CHUNKS],
    chunk_at: [const { AtomicU64::new(0) }; MAX_CHUNKS],
    chunks: AtomicUsize::new(0),
    max_chunks: AtomicUsize::new(0),
    growing: spin::Mutex::new(None),
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

/// Lets the heap grow by up to `max_bytes` (whole [`CHUNK`]s) of frames
/// taken with `grow`.
pub fn allow_growth(max_bytes: usize, grow: GrowFrames) {
    HEAP.max_chunks
        .store((max_bytes / CHUNK).min(MAX_CHUNKS), Ordering::Release);
    *HEAP.growing.lock() = Some(grow);
}

/// Bytes in use in all heaps.
pub fn used() -> usize {
    let chunks = HEAP.chunks.load(Ordering::Acquire);
    HEAP.early.lock().used()
        + HEAP.main.lock().used()
        + HEAP.chunk[..chunks]
            .iter()
            .map(|c| c.lock().used())
            .sum::<usize>()
}

/// Bytes the heap has grown by (extensions).
pub fn grown() -> usize {
    HEAP.chunks.load(Ordering::Acquire) * CHUNK
}

impl DualHeap {
    /// Tries the extensions from `first` on.
    fn alloc_in_chunks(&self, layout: Layout, first: usize) -> *mut u8 {
        let chunks = self.chunks.load(Ordering::Acquire);
        for chunk in &self.chunk[first.min(chunks)..chunks] {
            // SAFETY: forwarded with the caller's layout.
            let ptr = unsafe { chunk.alloc(layout) };
            if !ptr.is_null() {
                return ptr;
            }
        }
        core::ptr::null_mut()
    }

    /// Adds an extension and allocates from it; null if the heap may not or
    /// cannot grow (another CPU growing it is waited for, a frame allocator
    /// that is busy is not: see [`GrowFrames`]).
    fn grow_and_alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size().saturating_add(layout.align()) > CHUNK / 2 {
            return core::ptr::null_mut();
        }
        let Some(guard) = self.growing.try_lock() else {
            // Another CPU is growing it (or this one, from inside its frame
            // allocator): try what exists once more.
            return self.alloc_in_chunks(layout, 0);
        };
        let before = self.chunks.load(Ordering::Acquire);
        // Another CPU may have grown it since this one looked.
        let ptr = self.alloc_in_chunks(layout, 0);
        if !ptr.is_null() {
            return ptr;
        }
        let Some(grow) = *guard else {
            return core::ptr::null_mut();
        };
        if before >= self.max_chunks.load(Ordering::Acquire) {
            return core::ptr::null_mut();
        }
        let Some(at) = grow(CHUNK / 4096) else {
            return core::ptr::null_mut();
        };
        // SAFETY: `grow` handed over CHUNK bytes of unused, identity-mapped
        // RAM for good; extension `before` is not initialised yet (only this
        // CPU adds extensions, under `growing`), and it is published by
        // `chunks` only after its start is recorded.
        unsafe { self.chunk[before].lock().init(at as *mut u8, CHUNK) };
        self.chunk_at[before].store(at, Ordering::Release);
        self.chunks.store(before + 1, Ordering::Release);
        drop(guard);
        self.alloc_in_chunks(layout, before)
    }
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
            let ptr = self.alloc_in_chunks(layout, 0);
            if !ptr.is_null() {
                return ptr;
            }
            let ptr = self.grow_and_alloc(layout);
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
        let chunks = self.chunks.load(Ordering::Acquire);
        let chunk = (0..chunks).find(|&i| {
            let at = self.chunk_at[i].load(Ordering::Acquire) as usize;
            (at..at + CHUNK).contains(&address)
        });
        // SAFETY: `ptr` came from the heap whose range holds it.
        unsafe {
            if (start..end).contains(&address) {
                self.early.dealloc(ptr, layout)
            } else if let Some(i) = chunk {
                self.chunk[i].dealloc(ptr, layout)
            } else {
                self.main.dealloc(ptr, layout)
            }
        }
    }
}
