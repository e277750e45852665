// SPDX-License-Identifier: GPL-2.0

//! When a persistent store writes its metadata, and in what order copies
//! that completed are committed.
//!
//! C batches exceptions (`persistent_commit_exception()`): each completed
//! copy adds its exception to the in-memory area, and the area is written
//! (with `REQ_PREFLUSH | REQ_FUA`) only when no other exception is in flight
//! or the area is full; then every exception batched since the last write
//! is called back. A full area is followed by zeroing the next one on disk,
//! which marks the end of the metadata. Copies can complete out of order,
//! but C (`copy_callback()` with `exception_sequence`) commits them in the
//! order their exceptions were allocated, so the metadata never names a
//! chunk whose allocation precedes one that is not yet on disk.

use super::disk::{Layout, StoreState, EXCEPTION_SIZE};
use core::ops::Range;

/// What the store does after adding an exception to its area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitAction {
    /// Other exceptions are in flight and the area has room: their commit
    /// writes this one too; nothing to write now.
    Defer,
    /// Write the area now, then call back every exception batched since
    /// the last write.
    Write {
        /// The area to write.
        area: u64,
        /// The area filled up: zero area `area + 1` on disk first (the end
        /// marker) and start it afresh in memory.
        next: Option<u64>,
    },
}

/// The batching state of a persistent store (C: `pending_count`,
/// `callback_count`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Exceptions prepared but not yet committed.
    pub in_flight: u64,
    /// Exceptions added to the area since the last write.
    pub batched: u64,
}

impl Batch {
    /// An empty batch.
    pub const fn new() -> Self {
        Self {
            in_flight: 0,
            batched: 0,
        }
    }

    /// An exception was prepared (its chunk allocated).
    pub fn prepared(&mut self) {
        self.in_flight += 1;
    }

    /// Adds a completed exception; returns its index in the current area
    /// and what to do next. `state` moves on to the next area when this one
    /// fills up.
    pub fn commit(&mut self, state: &mut StoreState, layout: &Layout) -> (u64, CommitAction) {
        let index = state.current_committed;
        let area = state.current_area;
        self.in_flight = self.in_flight.saturating_sub(1);
        self.batched += 1;
        let full = state.commit(layout);
        if self.in_flight > 0 && !full {
            return (index, CommitAction::Defer);
        }
        let next = if full { Some(area + 1) } else { None };
        (index, CommitAction::Write { area, next })
    }

    /// The area was written (or failed): returns how many batched
    /// exceptions to call back, and forgets them.
    pub fn written(&mut self) -> u64 {
        core::mem::take(&mut self.batched)
    }
}

/// The bytes of the area in memory that the area on disk does not hold
/// yet: those of the exceptions added since the last write.
///
/// A write of the area writes the blocks that hold them and leaves the
/// others, whose bytes on disk are already those in memory; C writes the
/// whole area, one chunk, each time. The bytes on disk afterwards are the
/// same. The blocks are the device's physical blocks, which it writes
/// without reading back the rest of one, so a crash in the middle of a
/// write cannot tear an exception committed before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dirty {
    start: usize,
    end: usize,
}

impl Dirty {
    /// Nothing added since the last write.
    pub const CLEAN: Dirty = Dirty {
        start: usize::MAX,
        end: 0,
    };

    /// Whether nothing was added since the last write.
    pub fn is_clean(&self) -> bool {
        self.start >= self.end
    }

    /// Exception `index` of the area was written in memory.
    pub fn add(&mut self, index: u64) {
        let Some(start) = usize::try_from(index)
            .ok()
            .and_then(|i| i.checked_mul(EXCEPTION_SIZE))
        else {
            // No area has such an index; a write covers the whole area.
            *self = Dirty {
                start: 0,
                end: usize::MAX,
            };
            return;
        };
        self.start = self.start.min(start);
        self.end = self.end.max(start.saturating_add(EXCEPTION_SIZE));
    }

    /// The bytes of an area of `area_len` bytes that a write covers: the
    /// blocks of `block` bytes that hold what was added, or the whole
    /// area when nothing was, when `block` is not a power of two that
    /// divides the area, or when what was added reaches past it.
    pub fn span(&self, area_len: usize, block: usize) -> Range<usize> {
        let whole = 0..area_len;
        if self.is_clean()
            || !block.is_power_of_two()
            || area_len % block != 0
            || self.end > area_len
        {
            return whole;
        }
        let start = self.start & !(block - 1);
        // `end` is at most `area_len`, a multiple of `block`: no overflow.
        let end = (self.end + block - 1) & !(block - 1);
        start..end
    }
}

/// Releases completed copies in allocation order.
///
/// Each exception gets a sequence number when it is allocated; a copy that
/// completes before an earlier one waits (the caller keeps it, keyed by its
/// sequence number) until [`Sequencer::complete`] says its turn came.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sequencer {
    next_alloc: u64,
    next_commit: u64,
}

impl Sequencer {
    /// No exception allocated yet.
    pub const fn new() -> Self {
        Self {
            next_alloc: 0,
            next_commit: 0,
        }
    }

    /// The sequence number of a newly allocated exception.
    pub fn allocate(&mut self) -> u64 {
        let seq = self.next_alloc;
        self.next_alloc += 1;
        seq
    }

    /// Whether the exception numbered `seq` is the next to commit.
    pub fn is_next(&self, seq: u64) -> bool {
        seq == self.next_commit
    }

    /// The next exception was committed: returns the number of the one
    /// after it, which the caller commits now if its copy already
    /// completed.
    pub fn complete(&mut self) -> u64 {
        self.next_commit += 1;
        self.next_commit
    }

    /// Copies allocated and not yet committed.
    pub fn outstanding(&self) -> u64 {
        self.next_alloc - self.next_commit
    }
}
