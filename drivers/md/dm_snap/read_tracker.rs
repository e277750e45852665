// SPDX-License-Identifier: GPL-2.0

//! Snapshot reads sent to the origin, tracked until they complete, so that
//! no origin write overwrites a chunk such a read has yet to read.
//!
//! A snapshot read of a chunk without an exception goes to the origin. If
//! the chunk's copy completes meanwhile, the next origin write to it would
//! go straight to the origin: before the pending exception goes away, its
//! completion waits for the reads that were in flight when the exception
//! became complete (later reads of the chunk go to the COW device).
//!
//! Reads are counted per chunk in a lock-free table
//! ([`dm_snap_core::track`](crate::dm_snap_core::track)), so a completion
//! waits for reads of its own chunk only. Reads that find no room there are
//! counted in an overflow word with two epochs: a completion that finds
//! some switches the epoch and waits for the old one, so it never waits for
//! later reads, and a steady stream of reads cannot starve it.
//!
//! C counterpart: `track_chunk()`, `stop_tracking_chunk()`,
//! `__chunk_is_tracked()` and `__check_for_conflicting_io()` in
//! `drivers/md/dm-snap.c`, which keep the tracked chunks in a hash of
//! lists through the per-bio data.

#![deny(unsafe_code)]

use crate::dm_snap_core::track::{Track, TrackTable};
use kernel::{
    new_mutex, new_waitqueue,
    prelude::*,
    sync::{Mutex, WaitQueue},
};

/// A read being tracked: where it was counted.
#[derive(Clone, Copy)]
pub(crate) struct Tracked(Track);

/// The tracked reads of one snapshot.
///
/// Lock order: `drain` is taken alone, never under the snapshot's locks.
#[pin_data]
pub(crate) struct ReadTracker {
    table: TrackTable,
    /// Serialises the overflow word's epoch switches: a switch back to an
    /// epoch happens only once that epoch's reads have drained.
    #[pin]
    drain: Mutex<()>,
    #[pin]
    drained: WaitQueue,
}

impl ReadTracker {
    /// No reads tracked.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            table: TrackTable::new(),
            drain <- new_mutex!((), "dm_snapshot_rs:tracked_drain"),
            drained <- new_waitqueue!(),
        })
    }

    /// Counts a read of `chunk` going to the origin (C: `track_chunk()`).
    /// The caller holds the snapshot lock, under which it found no
    /// exception for the chunk.
    pub(crate) fn track(&self, chunk: u64) -> Tracked {
        Tracked(self.table.track(chunk))
    }

    /// A tracked read completed (C: `stop_tracking_chunk()`). Any context.
    pub(crate) fn untrack(&self, t: Tracked) {
        if self.table.untrack(t.0) {
            self.drained.wake_up_all();
        }
    }

    /// Whether [`ReadTracker::drain`] of `chunk` could wait: a read of it,
    /// or of a chunk counted in the overflow word, is in flight. Asked once
    /// the chunk's exception is complete (made so with the table held
    /// exclusively, while reads are tracked with it shared), no read of
    /// the chunk can be tracked any more: a `false` stays so, and the
    /// caller may skip the drain without dropping its locks.
    pub(crate) fn busy(&self, chunk: u64) -> bool {
        self.table.overflow_busy() || self.table.chunk_busy(chunk)
    }

    /// Waits until the reads that went to the origin for `chunk` before
    /// now have completed (C: `__check_for_conflicting_io()`). The caller
    /// has made the chunk's exception complete, so no new read of the
    /// chunk is tracked; it holds none of the snapshot's locks but `meta`.
    pub(crate) fn drain(&self, chunk: u64) {
        let t = &self.table;
        if !t.overflow_busy() {
            // Every read of the chunk in flight is in a slot: none started
            // after the exception became complete.
            if t.chunk_busy(chunk) {
                self.drained.wait_io(|| !t.chunk_busy(chunk));
            }
            return;
        }
        let _serial = self.drain.lock();
        // The other epoch drained before the last switch to this one
        // (under `drain`), so reads counted there from now on are new.
        let epoch = t.switch_overflow();
        self.drained
            .wait_io(|| !t.chunk_busy(chunk) && !t.overflow_epoch_busy(epoch));
    }
}
