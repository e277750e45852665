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
//! Reads are counted by chunk hash, in two epochs per bucket: a completion
//! switches its bucket to the other epoch and waits for the old one to
//! drain, so it waits only for reads that started before it, never for
//! later ones: a steady stream of reads to the bucket cannot starve it.
//!
//! C counterpart: `track_chunk()`, `stop_tracking_chunk()`,
//! `__chunk_is_tracked()` and `__check_for_conflicting_io()` in
//! `drivers/md/dm-snap.c`, which keep the tracked chunks in a hash of
//! lists through the per-bio data.

#![deny(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};
use kernel::{
    new_mutex, new_waitqueue,
    prelude::*,
    sync::{Mutex, WaitQueue},
};

/// Buckets of the tracked-read counters (a power of two).
const BUCKETS: usize = 256;

/// A bucket's word: the current epoch in bit 63, the reads in flight of
/// epoch 0 in bits 0..31 and of epoch 1 in bits 32..62. One word, so that
/// a read is counted in the epoch that is current when it is counted,
/// atomically with respect to a switch (reads complete in interrupt
/// context, where no lock of ours may be taken).
const EPOCH: u64 = 1 << 63;

fn one(epoch: u8) -> u64 {
    1 << (32 * u32::from(epoch))
}

fn reads(word: u64, epoch: u8) -> u64 {
    (word >> (32 * u32::from(epoch))) & 0x7fff_ffff
}

/// A read being tracked: where it was counted.
#[derive(Clone, Copy)]
pub(crate) struct Tracked {
    bucket: u16,
    epoch: u8,
}

/// The tracked reads of one snapshot.
///
/// Lock order: `drain` is taken alone, never under the snapshot's locks.
#[pin_data]
pub(crate) struct ReadTracker {
    buckets: [AtomicU64; BUCKETS],
    /// Serialises epoch switches: a switch back to an epoch happens only
    /// once that epoch's reads have drained.
    #[pin]
    drain: Mutex<()>,
    #[pin]
    drained: WaitQueue,
}

fn bucket(chunk: u64) -> usize {
    (chunk as usize) & (BUCKETS - 1)
}

impl ReadTracker {
    /// No reads tracked.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            buckets: core::array::from_fn(|_| AtomicU64::new(0)),
            drain <- new_mutex!((), "dm_snapshot_rs:tracked_drain"),
            drained <- new_waitqueue!(),
        })
    }

    /// Counts a read of `chunk` going to the origin (C: `track_chunk()`).
    /// The caller holds the snapshot lock, under which it found no
    /// exception for the chunk.
    pub(crate) fn track(&self, chunk: u64) -> Tracked {
        let b = bucket(chunk);
        let mut word = self.buckets[b].load(Ordering::Relaxed);
        loop {
            let epoch = u8::from(word & EPOCH != 0);
            match self.buckets[b].compare_exchange_weak(
                word,
                word + one(epoch),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Tracked {
                        bucket: b as u16,
                        epoch,
                    }
                }
                Err(w) => word = w,
            }
        }
    }

    /// A tracked read completed (C: `stop_tracking_chunk()`). Any context.
    pub(crate) fn untrack(&self, t: Tracked) {
        let d = one(t.epoch);
        let old = self.buckets[usize::from(t.bucket)].fetch_sub(d, Ordering::AcqRel);
        if reads(old, t.epoch) == 1 {
            self.drained.wake_up_all();
        }
    }

    /// Waits until the reads that went to the origin for `chunk` before
    /// now have completed (C: `__check_for_conflicting_io()`). The caller
    /// has made the chunk's exception complete, so no new read of the
    /// chunk is tracked; it holds none of the snapshot's locks but `meta`.
    pub(crate) fn drain(&self, chunk: u64) {
        let b = bucket(chunk);
        let word = self.buckets[b].load(Ordering::Acquire);
        if reads(word, 0) == 0 && reads(word, 1) == 0 {
            return;
        }
        let _serial = self.drain.lock();
        // The other epoch drained before the last switch to this one
        // (under `drain`), so reads counted there from now on are new.
        let old = self.buckets[b].fetch_xor(EPOCH, Ordering::AcqRel);
        let epoch = u8::from(old & EPOCH != 0);
        self.drained
            .wait_io(|| reads(self.buckets[b].load(Ordering::Acquire), epoch) == 0);
    }
}
