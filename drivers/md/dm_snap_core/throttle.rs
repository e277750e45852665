// SPDX-License-Identifier: GPL-2.0

//! The copy-on-write throttle's bookkeeping (the policy; the lock and the
//! wait queue are the kernel side's).
//!
//! C (the 2019 dm-devel fix, `wait_for_in_progress()`): a writer that would
//! start a copy waits while more than `snapshot_cow_threshold` copies are in
//! flight, and every copy that ends wakes all waiters, which then start
//! copies without counting them first, so a crowd can overshoot the limit.
//!
//! Here a writer *reserves* its copy in the same critical section that
//! checks the count, so the count never passes `threshold + 1` through
//! throttled writers; a copy that ends frees one slot and wakes one waiter.
//! Writes that need no new copy never reserve, so they are never held back.

/// The counters of one snapshot's throttle, kept under a spinlock.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    /// Copies in flight, reserved ones included.
    pub in_progress: u32,
    /// The highest `in_progress` seen.
    pub max_in_progress: u32,
    /// How many times a writer had to wait for a slot.
    pub waits: u64,
    /// Copies started without a reservation (from completions, which must
    /// never wait).
    pub unthrottled: u64,
}

impl Throttle {
    /// New counters.
    pub const fn new() -> Self {
        Self {
            in_progress: 0,
            max_in_progress: 0,
            waits: 0,
            unthrottled: 0,
        }
    }

    /// Whether a writer may start a copy now, as C decides: while no more
    /// than `threshold` copies are in flight (0 allows one at a time).
    pub fn has_room(&self, threshold: u32) -> bool {
        self.in_progress <= threshold
    }

    /// Takes a slot for a copy if there is room; the caller must start one
    /// copy per slot or give the slot back with [`Throttle::release`].
    pub fn try_reserve(&mut self, threshold: u32) -> bool {
        if !self.has_room(threshold) {
            return false;
        }
        self.account_start();
        true
    }

    /// Counts a copy started without a reservation.
    pub fn start_unthrottled(&mut self) {
        self.unthrottled += 1;
        self.account_start();
    }

    fn account_start(&mut self) {
        self.in_progress = self.in_progress.saturating_add(1);
        self.max_in_progress = self.max_in_progress.max(self.in_progress);
    }

    /// A copy ended, or a reserved slot is given back unused. Returns
    /// whether a waiter should be woken (a slot is free under
    /// `threshold`), or `None` if no copy was counted: a bookkeeping bug
    /// the caller reports, the count staying at zero.
    pub fn release(&mut self, threshold: u32) -> Option<bool> {
        self.in_progress = self.in_progress.checked_sub(1)?;
        Some(self.has_room(threshold))
    }

    /// Counts a writer that found no room and waits.
    pub fn count_wait(&mut self) {
        self.waits += 1;
    }
}
