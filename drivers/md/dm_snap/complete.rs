// SPDX-License-Identifier: GPL-2.0

//! Exception completion and commit ordering: what happens once a copy (or
//! the whole-chunk write that was the copy) has ended.
//!
//! The transient store completes the exception at once. The persistent
//! store commits exceptions in the order their COW chunks were allocated,
//! batching them into metadata area writes, and completes each once the
//! area holding it is on disk; a copy that ends early waits in the pending
//! table for its turn. Completion keeps the pending exception until the
//! snapshot reads sent to the origin before it have drained.
//!
//! C counterpart: `copy_callback()`, `complete_exception()` and
//! `pending_complete()` in `drivers/md/dm-snap.c`, with
//! `persistent_commit_exception()` in `drivers/md/dm-snap-persistent.c`.
//!
//! Locks: `meta`, then `inner`; `inner` is dropped around a metadata write
//! and a read drain. Origin writes released by a completion are retried
//! with no lock held.

#![deny(unsafe_code)]

use super::{
    copy::CopyJob,
    exceptions::{Insert, Spare},
    origin_write::{do_origin, Limit},
    persistent::Metadata,
    state::{Invalidate, SnapState},
    store::{AreaWrite, Commit},
};
use crate::dm_snap_core::disk::DiskException;
use kernel::{
    bio::{BioList, OwnedBio},
    device_mapper::kcopyd,
    mempool::PoolBox,
    prelude::*,
    sync::Arc,
};

impl kcopyd::Completion for CopyJob {
    type Ptr = PoolBox<CopyJob>;

    fn complete(mut job: PoolBox<CopyJob>, read_err: bool, write_err: u64) {
        // The job wrote one destination per copy, this one's first: the
        // others' copies end in their own snapshots' kcopyd threads, so
        // that their commits run side by side (see `Copies`).
        for (i, f) in job.followers.iter_mut().enumerate() {
            if let Some(cb) = f.take() {
                cb.run(read_err, (write_err >> (i + 1)) & 1);
            }
        }
        // The copy (or the zeroing) is over: its throttle slot is free
        // again, whatever the commit still has to do (C: `copy_callback()`
        // and `zero_callback()` end the copy first). So are those of the
        // copies of the chunks before it that the job covered, whose list
        // is turned round on the way, for their commits to run in the
        // order the COW chunks were allocated (see `Copies`).
        let ok = !read_err && write_err & 1 == 0;
        drop(job.slot.take());
        let mut earlier = job.earlier.take();
        let mut first = Some(job);
        while let Some(mut j) = earlier {
            earlier = j.earlier.take();
            drop(j.slot.take());
            j.earlier = first;
            first = Some(j);
        }
        while let Some(mut j) = first {
            first = j.earlier.take();
            copy_ended(j, ok);
        }
    }
}

/// The copy of `job` ended, `ok` if it succeeded.
fn copy_ended(job: PoolBox<CopyJob>, ok: bool) {
    let bio = job.bio.take();
    if job.zero {
        if let Some(b) = bio {
            if ok {
                b.complete()
            } else {
                b.io_error()
            }
        }
        return;
    }
    job.state.copy_done(job.chunk, ok, bio);
}

impl SnapState {
    /// A copy ended (C: the tail of `copy_callback()`), its throttle slot
    /// given back already. The transient store completes the exception at
    /// once; the persistent store commits exceptions in allocation order
    /// and completes them once their area is on disk. The origin writes
    /// that waited for the copies are retried last, with no lock held.
    pub(super) fn copy_done(self: &Arc<Self>, chunk: u64, ok: bool, full_bio: Option<OwnedBio>) {
        let mut retry = BioList::new();
        if self.cfg.persistent() {
            let mut meta = self.meta.lock();
            self.commit(&mut meta, chunk, ok, full_bio, &mut retry);
        } else {
            self.pending_complete(chunk, ok, full_bio, &mut retry);
        }
        // C: `retry_origin_bios()`. Not under `meta`: an origin write takes
        // the registry lock, which an origin write holding it may have to
        // wait for while it starts copies.
        for b in retry {
            if let Some(b) = do_origin(&self.registry, self.cfg.origin_dev, b, Limit::Unthrottled) {
                b.submit();
            }
        }
    }

    /// Commits the exception of `chunk`, whose copy ended, with those after
    /// it in allocation order that ended before (C:
    /// `persistent_commit_exception()` and `pending_complete()` for each).
    fn commit(
        self: &Arc<Self>,
        meta: &mut Option<Metadata>,
        chunk: u64,
        ok: bool,
        full_bio: Option<OwnedBio>,
        retry: &mut BioList,
    ) {
        let mut inner = self.inner.lock();
        let Some(pe) = inner.pending.get_mut(chunk) else {
            drop(inner);
            return lost_pending(chunk, full_bio);
        };
        pe.copy_failed = !ok;
        pe.full_bio = full_bio;
        pe.copy_ended = true;
        let seq = pe.seq;
        if !self.valid() {
            drop(inner);
            return self.fail_uncommitted(meta, chunk, retry);
        }
        if !inner.seq.is_next(seq) {
            // An earlier copy is still running: this one waits for its
            // turn in the pending table, marked as ended, which needs no
            // memory (the commit of the earlier one finds it).
            inner.waiting_turn += 1;
            return;
        }
        let mut chunk = chunk;
        while let Some(pe) = inner.pending.get_mut(chunk) {
            let e = DiskException {
                old_chunk: chunk,
                new_chunk: pe.new_chunk,
            };
            if pe.copy_failed {
                self.invalidate(&mut inner, Invalidate::Io);
            }
            let valid = self.valid();
            let next_seq = inner.seq.complete();
            match inner.store.commit_exception() {
                Commit::Now => {
                    drop(inner);
                    self.pending_complete(chunk, true, None, retry);
                    inner = self.inner.lock();
                }
                Commit::Area { index, nth, write } => {
                    if let Some(m) = meta.as_mut() {
                        m.add(index, nth, e);
                    }
                    if let Some(w) = write {
                        drop(inner);
                        self.write_area(meta, w, valid, retry);
                        inner = self.inner.lock();
                    }
                }
            }
            if inner.waiting_turn == 0 {
                break;
            }
            match inner.pending.find(|p| p.seq == next_seq && p.copy_ended) {
                Some(p) => chunk = p.chunk,
                None => break,
            }
            inner.waiting_turn -= 1;
        }
    }

    /// Writes a metadata area, then completes the exceptions it made
    /// durable, or fails them and invalidates the snapshot.
    fn write_area(
        self: &Arc<Self>,
        meta: &mut Option<Metadata>,
        w: AreaWrite,
        valid: bool,
        retry: &mut BioList,
    ) {
        let ok = meta
            .as_mut()
            .is_some_and(|m| m.write_area(w.area, w.next, valid));
        if valid && !ok {
            self.invalidate(&mut self.inner.lock(), Invalidate::Io);
        }
        if let Some(m) = meta.as_ref() {
            for &c in m.batched(w.batched) {
                self.pending_complete(c, ok, None, retry);
            }
        }
    }

    /// The snapshot is invalid: the exception of `chunk`, those batched
    /// for the next metadata write and those waiting for their turn fail.
    fn fail_uncommitted(
        self: &Arc<Self>,
        meta: &mut Option<Metadata>,
        chunk: u64,
        retry: &mut BioList,
    ) {
        self.pending_complete(chunk, false, None, retry);
        let n = self.inner.lock().store.take_batched();
        if let Some(m) = meta.as_ref() {
            for &c in m.batched(n) {
                self.pending_complete(c, false, None, retry);
            }
        }
        loop {
            let waiting = self
                .inner
                .lock()
                .pending
                .find(|p| p.copy_ended)
                .map(|p| p.chunk);
            let Some(c) = waiting else {
                break;
            };
            self.pending_complete(c, false, None, retry);
        }
        self.inner.lock().waiting_turn = 0;
    }

    /// Completes the exception of `chunk` (C: `pending_complete()`): on
    /// success it joins the complete table, and the bios that waited for it
    /// go on; on failure the snapshot is invalidated and they fail. The
    /// origin writes among them are added to `retry`.
    pub(super) fn pending_complete(
        self: &Arc<Self>,
        chunk: u64,
        ok: bool,
        full_bio: Option<OwnedBio>,
        retry: &mut BioList,
    ) {
        let mut inner = self.inner.lock();
        let Some(pe) = inner.pending.get_mut(chunk) else {
            drop(inner);
            return lost_pending(chunk, full_bio);
        };
        let full_bio = full_bio.or_else(|| pe.full_bio.take());
        let mut ok = ok && !pe.copy_failed;
        let new_chunk = pe.new_chunk;
        if !ok {
            self.invalidate(&mut inner, Invalidate::Io);
        } else if !self.valid() {
            ok = false;
        } else {
            // The table is held for the insertion only, not while the
            // snapshot is invalidated, nor while a block of nodes is
            // allocated (C: `alloc_completed_exception()`, before it takes
            // the lock). `inner`, held, keeps other insertions out between
            // the two.
            let mut table = self.complete.write();
            let mut added = table.insert_with(chunk, new_chunk, &mut Spare::default());
            if added == Err(Insert::NoMem) {
                let wants = table.wants();
                drop(table);
                let mut spare = Spare::new(wants);
                added = self
                    .complete
                    .write()
                    .insert_with(chunk, new_chunk, &mut spare);
            }
            match added {
                Ok(()) => {}
                // C: `alloc_completed_exception()` failed.
                Err(Insert::NoMem) => {
                    self.invalidate(&mut inner, Invalidate::NoMem);
                    ok = false;
                }
                Err(Insert::Held) => {
                    // Never: a chunk gets a pending exception only while
                    // it has no complete one. Two COW chunks for one
                    // origin chunk would be wrong data; none is used.
                    pr_err!(
                        "Corruption detected: exception for block {} completed twice\n",
                        chunk
                    );
                    self.invalidate(&mut inner, Invalidate::Io);
                    ok = false;
                }
            }
        }
        if ok && self.reads.busy(chunk) {
            // Snapshot reads of the chunk go to the COW device from now
            // on. Those that went to the origin before must finish before
            // the origin may be overwritten: until they have, the pending
            // exception stays, and new origin writes queue on it. With
            // none in flight, as is usual, the lock is kept.
            drop(inner);
            self.reads.drain(chunk);
            inner = self.inner.lock();
        }
        let Some(mut pe) = self.remove_pending(&mut inner, chunk) else {
            drop(inner);
            return lost_pending(chunk, full_bio);
        };
        let snapshot_bios = pe.snapshot_bios.take();
        let mut origin_bios = pe.origin_bios.take();
        drop(inner);
        drop(pe);
        if let Some(b) = full_bio {
            if ok {
                b.complete()
            } else {
                b.io_error()
            }
        }
        for b in snapshot_bios {
            if ok {
                b.submit()
            } else {
                b.io_error()
            }
        }
        retry.append(&mut origin_bios);
    }
}

/// A completion found no pending exception for `chunk`, a bookkeeping
/// bug: it is logged, and the whole-chunk write that was the copy, if any,
/// fails.
fn lost_pending(chunk: u64, full_bio: Option<OwnedBio>) {
    pr_err!("no pending exception for chunk {}\n", chunk);
    if let Some(b) = full_bio {
        b.io_error();
    }
}
