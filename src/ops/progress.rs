//! Lock-free progress counters an operation updates and a display may poll.
//!
//! A struct, not a trait: every operation only adds to counters, and a display (the CLI's bar,
//! or a library caller's) reads them from another thread whenever it likes; a trait would add
//! dynamic calls on the hot path and still need these counters behind it.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of work done and known; all relaxed atomics.
#[derive(Default, Debug)]
pub struct Progress {
    /// Items (files, packs, blobs) finished.
    pub items_done: AtomicU64,
    /// Items known so far.
    pub items_total: AtomicU64,
    /// Bytes finished.
    pub bytes_done: AtomicU64,
    /// Bytes known so far.
    pub bytes_total: AtomicU64,
}

impl Progress {
    /// Adds to the done counters.
    pub fn done(&self, items: u64, bytes: u64) {
        self.items_done.fetch_add(items, Ordering::Relaxed);
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Adds to the known totals.
    pub fn total(&self, items: u64, bytes: u64) {
        self.items_total.fetch_add(items, Ordering::Relaxed);
        self.bytes_total.fetch_add(bytes, Ordering::Relaxed);
    }

    /// (items done, items total, bytes done, bytes total).
    pub fn get(&self) -> (u64, u64, u64, u64) {
        (
            self.items_done.load(Ordering::Relaxed),
            self.items_total.load(Ordering::Relaxed),
            self.bytes_done.load(Ordering::Relaxed),
            self.bytes_total.load(Ordering::Relaxed),
        )
    }
}
