//! A global allocator that counts allocations (and reallocations) and tracks live and peak
//! heap bytes, for the allocation test and the benchmarks. Include with `#[path = "…/support/counting_alloc.rs"] mod counting_alloc;`.
#![allow(
    unsafe_code,
    reason = "a counting global allocator wraps the system one"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes as u64, Ordering::Relaxed) + bytes as u64;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        grew(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        grew(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations and reallocations since the process started.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Heap bytes allocated and not yet freed.
#[allow(dead_code, reason = "not every includer reads it")]
pub fn live_bytes() -> u64 {
    LIVE.load(Ordering::Relaxed)
}

/// Starts a new peak: from now, [`peak_bytes`] is the highest live heap seen since.
#[allow(dead_code, reason = "not every includer reads it")]
pub fn reset_peak() {
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// The highest live heap (bytes) since the last [`reset_peak`].
#[allow(dead_code, reason = "not every includer reads it")]
pub fn peak_bytes() -> u64 {
    PEAK.load(Ordering::Relaxed)
}
