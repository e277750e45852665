// SPDX-License-Identifier: GPL-2.0

//! The COW throttle of one snapshot: copies in flight, counted under a
//! spinlock, and the writers waiting for room to start one.
//!
//! A writer that needs a new copy takes a [`Slot`] first; the slot goes
//! with the copy and is given back when the slot is dropped, which wakes
//! one waiter if that made room. Writes that need no new copy never take
//! one. The policy (when there is room, what is counted) is
//! `dm_snap_core::throttle`.
//!
//! C counterpart: `account_start_copy()`, `account_end_copy()` and
//! `wait_for_in_progress()` in `drivers/md/dm-snap.c` (the 2019 dm-devel
//! fix), with `s->in_progress` and `s->in_progress_wait`.
//!
//! Locks: the spinlock is a leaf, taken last and alone. A writer sleeps for
//! a slot holding no lock but what its `release` drops before it sleeps.

#![deny(unsafe_code)]

use crate::{dm_snap_core::throttle::Throttle, COW_THRESHOLD};
use kernel::{
    new_spinlock, new_waitqueue,
    prelude::*,
    sync::{Arc, SpinLock, WaitQueue},
};

/// Test-only build (`DM_SNAP_BUGGY_THROTTLE=1`): a writer sleeps for a slot
/// *before* it drops the locks it was asked to drop, the deadlock of the
/// 2019 dm-devel thread, which the throttle selftest must catch. False in
/// every shipped build.
const SLEEP_HOLDING_LOCKS: bool = cfg!(dm_snap_buggy_throttle);

/// One snapshot's throttle.
#[pin_data(PinnedDrop)]
pub(crate) struct CowThrottle {
    #[pin]
    counts: SpinLock<Throttle>,
    #[pin]
    wait: WaitQueue,
}

/// A copy's place in the throttle: taken before the copy starts, it goes
/// with the copy and is given back when dropped, when the copy ends (C:
/// `account_end_copy()`) or when the writer that took it starts no copy.
pub(crate) struct Slot {
    throttle: Arc<CowThrottle>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.throttle.end_copy();
    }
}

impl Slot {
    /// Whether this slot belongs to `throttle`.
    pub(crate) fn is_of(&self, throttle: &Arc<CowThrottle>) -> bool {
        Arc::ptr_eq(&self.throttle, throttle)
    }
}

impl CowThrottle {
    /// A throttle with no copy in flight.
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                counts <- new_spinlock!(Throttle::new(), "dm_snapshot_rs:throttle"),
                wait <- new_waitqueue!(),
            }),
            GFP_KERNEL,
        )
    }

    /// A slot, if the throttle has room for another copy.
    pub(crate) fn try_reserve(self: &Arc<Self>) -> Option<Slot> {
        self.counts
            .lock()
            .try_reserve(COW_THRESHOLD.get())
            .then(|| Slot {
                throttle: self.clone(),
            })
    }

    /// A slot for a copy started by a completion, which never waits: it is
    /// counted whatever the throttle holds.
    pub(crate) fn start_unthrottled(self: &Arc<Self>) -> Slot {
        self.counts.lock().start_unthrottled();
        Slot {
            throttle: self.clone(),
        }
    }

    /// A slot, sleeping until there is room (C: `wait_for_in_progress()`).
    /// `release` runs once, before the task sleeps if it must: the place
    /// to drop the caller's locks, which whoever ends a copy may need.
    pub(crate) fn wait_for_slot(self: &Arc<Self>, release: impl FnOnce()) -> Slot {
        if let Some(slot) = self.try_reserve() {
            release();
            return slot;
        }
        self.counts.lock().count_wait();
        let mut release = Some(release);
        let mut drop_locks = || {
            if let Some(r) = release.take() {
                r();
            }
        };
        let mut slot = None;
        loop {
            let take = || {
                slot = self.try_reserve();
                slot.is_some()
            };
            if SLEEP_HOLDING_LOCKS {
                self.wait.wait_io_exclusive_then(take, || ());
                drop_locks();
            } else {
                self.wait.wait_io_exclusive_then(take, &mut drop_locks);
            }
            // The wait returns once `take` got a slot.
            if let Some(slot) = slot.take() {
                return slot;
            }
        }
    }

    /// The counters, for the `stats` message.
    pub(crate) fn stats(&self) -> Throttle {
        *self.counts.lock()
    }

    /// A copy ended, or a slot goes back unused: wakes one waiter if that
    /// made room.
    fn end_copy(&self) {
        let wake = self.counts.lock().release(COW_THRESHOLD.get());
        match wake {
            Some(true) => self.wait.wake_up(),
            Some(false) => {}
            None => pr_warn!("copy accounting: no copy in flight to end\n"),
        }
    }
}

#[pinned_drop]
impl PinnedDrop for CowThrottle {
    fn drop(self: Pin<&mut Self>) {
        // Every slot holds a reference: a count left over is a bookkeeping
        // bug (C: `WARN_ON(s->in_progress)`).
        let n = self.counts.lock().in_progress;
        if n != 0 {
            pr_warn!("snapshot destroyed with {} copies counted in flight\n", n);
        }
    }
}
