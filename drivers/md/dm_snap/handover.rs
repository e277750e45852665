// SPDX-License-Identifier: GPL-2.0

//! The exception handover: a `snapshot` table reloaded on the COW device of
//! a live one (`lvextend` of a snapshot) takes the live one's exceptions
//! and store over when it resumes; the live one is left invalid.
//!
//! C counterpart: `__handover_exceptions()`, the handover checks of
//! `snapshot_preresume()` and `snapshot_resume()`, and the cancellation in
//! `snapshot_dtr()` in `drivers/md/dm-snap.c`.
//!
//! Locks: the registry for writing, then each snapshot's `inner` in turn,
//! never both at once; the drain is waited for with no lock held.

#![deny(unsafe_code)]

use super::{
    exceptions::ExceptionTable,
    snapshot::Snapshot,
    state::{Handover, SnapState},
};
use core::{mem, sync::atomic::Ordering};
use kernel::{prelude::*, sync::Arc};

impl Snapshot {
    /// Whether this table may resume now (C: `snapshot_preresume()`): not
    /// while a table waits to take its exceptions over, nor, if it waits
    /// to take those of another, before that one is suspended.
    pub(super) fn may_resume(&self) -> Result {
        let st = &self.snap.state;
        if self
            .registry
            .handover_waits_for(st.cfg.origin_dev, &self.snap)
        {
            pr_err!("Unable to resume snapshot source until handover completes.\n");
            return Err(EINVAL);
        }
        let inner = st.inner.lock();
        if let Some(h) = &inner.handover {
            if !h.src.suspended.load(Ordering::Acquire) {
                pr_err!("Unable to perform snapshot handover until source is suspended.\n");
                return Err(EINVAL);
            }
        }
        Ok(())
    }

    /// Takes the exceptions of the live snapshot on the same COW device
    /// over, if this table waits to (C: `__handover_exceptions()`). Waits
    /// until the source has no copy in flight, then moves its complete
    /// table and store here under the origin lock, so that no origin write
    /// sees both snapshots or neither; the source gets this table's unread
    /// store in exchange, is left invalid and gets no I/O any more.
    pub(super) fn handover(&self) {
        let dest = &self.snap.state;
        let cow = &self.snap.cow;
        let cow_sectors = cow.sectors();
        let Some(src) = dest.inner.lock().handover.as_ref().map(|h| h.src.clone()) else {
            return;
        };
        // New copies of the source wait from now on, so the ones in
        // flight drain even while origin writes go on.
        src.drain.start();
        let exchanged = loop {
            src.drain.wait_idle();
            let origins = self.registry.write();
            // Under the registry lock: the source cannot go away (and
            // cancel the handover) meanwhile.
            let taken = {
                let mut d = dest.inner.lock();
                match d.handover.take() {
                    Some(h) if !h.src.drain.is_idle() => {
                        // A retried origin write started a copy: wait again.
                        d.handover = Some(h);
                        continue;
                    }
                    taken => taken,
                }
            };
            let Some(Handover { src, mut spare }) = taken else {
                // Cancelled: the source went away.
                drop(origins);
                src.drain.end();
                return;
            };
            let mut s = src.inner.lock();
            let valid = src.valid();
            let overflowed = src.overflowed();
            let seq = s.seq;
            let complete = mem::replace(&mut *src.complete.write(), ExceptionTable::empty());
            mem::swap(&mut s.store, &mut spare);
            src.set_valid(&mut s, false);
            drop(s);
            // `spare` is the source's store now; the COW device may have
            // grown since it was loaded.
            spare.handed_over(cow.region(0, cow_sectors), cow_sectors);
            let mut d = dest.inner.lock();
            dest.set_valid(&mut d, valid);
            dest.set_overflowed(&mut d, overflowed);
            d.seq = seq;
            *dest.complete.write() = complete;
            mem::swap(&mut d.store, &mut spare);
            drop(d);
            // Active before the registry lock goes: no origin write may
            // find the source invalid and the destination not yet active.
            dest.active.store(true, Ordering::Release);
            drop(origins);
            // This table's own unread store, dropped with no lock held.
            break spare;
        };
        drop(exchanged);
        src.drain.end();
        // No copy of `src` is in flight and none starts: its commits are
        // over once its metadata lock is free.
        let meta = src.meta.lock().take();
        if let Some(mut m) = meta {
            m.rebind(cow.region(0, cow_sectors), cow_sectors);
            *dest.meta.lock() = Some(m);
        }
    }
}

impl SnapState {
    /// Whether this snapshot, not yet resumed, waits to take the exceptions
    /// of `src` over.
    pub(crate) fn awaits_handover_from(&self, src: &Arc<SnapState>) -> bool {
        self.inner
            .lock()
            .handover
            .as_ref()
            .is_some_and(|h| Arc::ptr_eq(&h.src, src))
    }

    /// `src` goes away before this snapshot took its exceptions over: it
    /// never will, and it cannot serve the snapshot without them (C:
    /// `snapshot_dtr()`, "Cancelling snapshot handover.").
    ///
    /// The handover cancelled is returned, for the caller to drop once it
    /// holds no lock: its spare store's dm-io client is destroyed with it,
    /// and `bioset_exit()` takes `bio_slab_lock`, under which
    /// `bioset_init()` allocates (so reclaim, so origin writes, wait for it).
    #[must_use]
    pub(crate) fn cancel_handover_from(&self, src: &Arc<SnapState>) -> Option<Handover> {
        let mut inner = self.inner.lock();
        if !inner
            .handover
            .as_ref()
            .is_some_and(|h| Arc::ptr_eq(&h.src, src))
        {
            return None;
        }
        self.set_valid(&mut inner, false);
        pr_err!("Cancelling snapshot handover.\n");
        inner.handover.take()
    }
}
