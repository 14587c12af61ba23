//! Host tests only: the test binary's global allocator (there can be only
//! one), which
//! - can be told to fail, so that a test shows a failing allocation gives
//!   the guest `-ENOMEM` and not an abort (on the hypervisor a failed
//!   infallible allocation is a host crash);
//! - counts the heap bytes a thread holds, and the most it held, so that a
//!   test can check a heap bound.
//!
//! Switch and counters are per thread (tests run in parallel); other
//! threads are never affected.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

std::thread_local! {
    /// Whether allocations of this thread fail.
    static FAILING: Cell<bool> = const { Cell::new(false) };
    /// Heap bytes this thread holds.
    static LIVE: Cell<usize> = const { Cell::new(0) };
    /// The most `LIVE` was since [`reset_peak`].
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn count_alloc(size: usize) {
    let _ = LIVE.try_with(|live| {
        live.set(live.get() + size);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
    });
}

fn count_free(size: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(size)));
}

/// The system allocator with a per-thread failure switch and counters.
struct FailableAlloc;

#[global_allocator]
static ALLOCATOR: FailableAlloc = FailableAlloc;

fn failing() -> bool {
    FAILING.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: every call is forwarded to the system allocator unchanged, or
// returns null (a failed allocation), which the contract allows.
unsafe impl GlobalAlloc for FailableAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if failing() {
            return core::ptr::null_mut();
        }
        // SAFETY: forwarded.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count_alloc(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if failing() {
            return core::ptr::null_mut();
        }
        // SAFETY: forwarded.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count_alloc(layout.size());
        }
        ptr
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if failing() {
            return core::ptr::null_mut();
        }
        // SAFETY: forwarded.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            count_free(layout.size());
            count_alloc(new_size);
        }
        new
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count_free(layout.size());
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f` with every heap allocation of this thread failing.
pub fn failing_allocations<T>(f: impl FnOnce() -> T) -> T {
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            FAILING.with(|flag| flag.set(false));
        }
    }
    FAILING.with(|flag| flag.set(true));
    let _restore = Restore;
    f()
}

/// Heap bytes this thread holds now.
pub fn live() -> usize {
    LIVE.with(Cell::get)
}

/// Starts a new peak from now.
pub fn reset_peak() {
    PEAK.with(|peak| peak.set(live()));
}

/// The most heap bytes this thread held since [`reset_peak`].
pub fn peak() -> usize {
    PEAK.with(Cell::get)
}
