// SPDX-License-Identifier: GPL-2.0

//! The drain of a snapshot handed over to another table: its pending
//! exceptions are counted, and while it drains, origin writes that need a
//! new copy of it wait, so that the count falls to zero even under
//! sustained writes and its exceptions can move.
//!
//! C counterpart: none as such. C suspends the origin for a handover
//! (`dm_internal_suspend_fast()` in `snapshot_resume()`) and counts
//! nothing; here only the writes that would start a copy of the snapshot
//! being handed over wait.

#![deny(unsafe_code)]

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use kernel::{new_waitqueue, prelude::*, sync::WaitQueue};

/// The pending exceptions of one snapshot, and whether it drains.
#[pin_data]
pub(crate) struct Drain {
    /// Pending exceptions: those in the snapshot's pending table.
    pending: AtomicU32,
    draining: AtomicBool,
    /// Woken when `pending` falls to zero and when a drain ends.
    #[pin]
    wait: WaitQueue,
}

impl Drain {
    /// No pending exception, not draining.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            pending: AtomicU32::new(0),
            draining: AtomicBool::new(false),
            wait <- new_waitqueue!(),
        })
    }

    /// A pending exception joined the table.
    pub(crate) fn get(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
    }

    /// A pending exception left the table.
    pub(crate) fn put(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.wait.wake_up_all();
        }
    }

    /// Whether no exception is pending.
    ///
    /// An exception is counted from before its chunk can be complete (it
    /// joins the pending table first) until after it left the table, with
    /// release and acquire ordering: whoever found a chunk complete and
    /// then finds no exception pending comes after that chunk's exception
    /// left the table, and after the snapshot reads it waited for
    /// (`origin_pass()` skips the snapshot lock on this).
    pub(crate) fn is_idle(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }

    /// Starts a drain: from now on, origin writes that need a new copy
    /// wait until it ends.
    pub(crate) fn start(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Waits until no exception is pending.
    pub(crate) fn wait_idle(&self) {
        self.wait.wait_io(|| self.is_idle());
    }

    /// Whether a drain is on: origin writes that need a new copy wait.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Waits until the drain is over.
    pub(crate) fn wait_drained(&self) {
        self.wait.wait_io(|| !self.is_draining());
    }

    /// The drain is over (the handover done or cancelled): the origin
    /// writes that waited go on.
    pub(crate) fn end(&self) {
        self.draining.store(false, Ordering::Release);
        self.wait.wake_up_all();
    }
}
