// SPDX-License-Identifier: GPL-2.0

//! Exact per-chunk counts of the snapshot reads in flight to the origin,
//! without a lock: reads complete in interrupt context.
//!
//! A slot holds one chunk's count, tagged with the chunk, in one atomic
//! word; a read finds its chunk's slot, or claims an empty one, by linear
//! probing from the chunk's hash, and a slot whose count falls to zero may
//! be emptied by anyone. A completion asks whether any slot still counts
//! reads of its chunk, so it waits for reads of that chunk only (C keeps
//! the tracked chunks in a hash of lists, through the per-bio data).
//!
//! A count of the slots in use lets a completion skip the probes when no
//! read is tracked in any slot, the common case of an origin write that
//! copies a chunk nobody reads through the snapshot.
//!
//! A read that finds no room (the slots near its hash hold other chunks, a
//! chunk number too large for a tag, a full count) is counted in the
//! overflow word instead, in two epochs: a completion that finds overflow
//! reads switches the epoch and waits for the old one only, so it never
//! waits for reads that started after it. Its caller serialises the
//! switches, so that an epoch is switched back to only once it drained.
//!
//! C counterpart: `track_chunk()`, `stop_tracking_chunk()` and
//! `__chunk_is_tracked()` in `drivers/md/dm-snap.c`.

use core::sync::atomic::{AtomicU64, Ordering};

/// The slots of one snapshot's table (a power of two).
pub const SLOTS: usize = 512;
/// The slots a read probes before it counts in the overflow word.
pub const PROBES: usize = 32;

const COUNT_BITS: u32 = 20;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
/// A slot's tag is its chunk + 1 (0: an empty slot), in the bits above the
/// count.
const TAG_MAX: u64 = (1 << (64 - COUNT_BITS)) - 1;

/// The overflow word: the current epoch in bit 63, the reads in flight of
/// epoch 0 in bits 0..31 and of epoch 1 in bits 32..62.
const EPOCH: u64 = 1 << 63;

fn one(epoch: u8) -> u64 {
    1 << (32 * u32::from(epoch))
}

fn reads(word: u64, epoch: u8) -> u64 {
    (word >> (32 * u32::from(epoch))) & 0x7fff_ffff
}

fn tag_of(chunk: u64) -> Option<u64> {
    chunk.checked_add(1).filter(|&t| t <= TAG_MAX)
}

fn slot_tag(word: u64) -> u64 {
    word >> COUNT_BITS
}

fn slot_count(word: u64) -> u64 {
    word & COUNT_MAX
}

fn home(chunk: u64) -> usize {
    // Fibonacci hashing: consecutive chunks spread over the table.
    (chunk.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SLOTS.trailing_zeros())) as usize
}

/// Where a read was counted; given back to [`TrackTable::untrack`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Track {
    /// In this slot of the table.
    Slot(u16),
    /// In the overflow word, in this epoch.
    Overflow(u8),
}

/// The reads in flight of one snapshot, per chunk.
pub struct TrackTable {
    slots: [AtomicU64; SLOTS],
    /// At least the slots not empty: raised before a slot is claimed,
    /// lowered after it is emptied, so never below them at any instant
    /// (see [`TrackTable::chunk_busy`]).
    used: AtomicU64,
    overflow: AtomicU64,
}

impl Default for TrackTable {
    fn default() -> Self {
        Self::new()
    }
}

impl TrackTable {
    /// No read counted.
    pub fn new() -> Self {
        Self {
            slots: core::array::from_fn(|_| AtomicU64::new(0)),
            used: AtomicU64::new(0),
            overflow: AtomicU64::new(0),
        }
    }

    /// Counts a read of `chunk`.
    pub fn track(&self, chunk: u64) -> Track {
        if let Some(tag) = tag_of(chunk) {
            let h = home(chunk);
            for i in 0..PROBES {
                let s = (h + i) & (SLOTS - 1);
                if self.try_slot(s, tag) {
                    return Track::Slot(s as u16);
                }
            }
        }
        let mut word = self.overflow.load(Ordering::Relaxed);
        loop {
            let epoch = u8::from(word & EPOCH != 0);
            match self.overflow.compare_exchange_weak(
                word,
                word + one(epoch),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Track::Overflow(epoch),
                Err(w) => word = w,
            }
        }
    }

    /// Counts a read of the chunk tagged `tag` in slot `s` if the slot is
    /// empty or counts that chunk already and has room.
    fn try_slot(&self, s: usize, tag: u64) -> bool {
        let slot = &self.slots[s];
        let mut word = slot.load(Ordering::Relaxed);
        loop {
            let new = if word == 0 {
                (tag << COUNT_BITS) | 1
            } else if slot_tag(word) == tag && slot_count(word) < COUNT_MAX {
                word + 1
            } else {
                return false;
            };
            // INVARIANT: `used` is raised before an empty slot is claimed,
            // and given back if the claim fails.
            if word == 0 {
                self.used.fetch_add(1, Ordering::AcqRel);
            }
            match slot.compare_exchange_weak(word, new, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(w) => {
                    if word == 0 {
                        self.used.fetch_sub(1, Ordering::AcqRel);
                    }
                    word = w;
                }
            }
        }
    }

    /// A read counted at `t` completed. Returns whether a count fell to
    /// zero, which a completion may be waiting for.
    pub fn untrack(&self, t: Track) -> bool {
        match t {
            Track::Slot(s) => {
                let slot = &self.slots[usize::from(s)];
                let old = slot.fetch_sub(1, Ordering::AcqRel);
                if slot_count(old) != 1 {
                    return false;
                }
                // Empty the slot unless a read of its chunk came meanwhile;
                // a slot counting no read may be emptied by anyone.
                if slot
                    .compare_exchange(old - 1, 0, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    self.used.fetch_sub(1, Ordering::AcqRel);
                }
                true
            }
            Track::Overflow(epoch) => {
                let old = self.overflow.fetch_sub(one(epoch), Ordering::AcqRel);
                reads(old, epoch) == 1
            }
        }
    }

    /// Whether a read of `chunk` is counted in a slot. [`TrackTable::track`]
    /// counts a chunk only in the [`PROBES`] slots from its home, so only
    /// those are looked at (a completion asks this for every exception),
    /// and none when every slot is empty.
    ///
    /// Exact for every read whose [`TrackTable::track`] returned before
    /// this call: its slot holds its count, and `used` was raised before
    /// the slot was claimed, so `used` is not zero while it is counted. A
    /// caller needs no lock for that (a completion asks after it made the
    /// chunk's exception complete, which reads tracked later will see).
    pub fn chunk_busy(&self, chunk: u64) -> bool {
        let Some(tag) = tag_of(chunk) else {
            return false;
        };
        if self.used.load(Ordering::Acquire) == 0 {
            return false;
        }
        let h = home(chunk);
        (0..PROBES).any(|i| {
            let word = self.slots[(h + i) & (SLOTS - 1)].load(Ordering::Acquire);
            slot_tag(word) == tag && slot_count(word) != 0
        })
    }

    /// Whether reads are counted in the overflow word, in either epoch.
    pub fn overflow_busy(&self) -> bool {
        let word = self.overflow.load(Ordering::Acquire);
        reads(word, 0) != 0 || reads(word, 1) != 0
    }

    /// Switches the overflow word to its other epoch; returns the epoch
    /// whose reads started before the switch. The caller serialises the
    /// switches and waits until that epoch drained before the next.
    pub fn switch_overflow(&self) -> u8 {
        let old = self.overflow.fetch_xor(EPOCH, Ordering::AcqRel);
        u8::from(old & EPOCH != 0)
    }

    /// The slots in use, and those a read is claiming: 0 once every read
    /// counted in a slot has completed.
    pub fn slots_used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Whether the overflow reads of `epoch` are still in flight.
    pub fn overflow_epoch_busy(&self, epoch: u8) -> bool {
        reads(self.overflow.load(Ordering::Acquire), epoch) != 0
    }
}
