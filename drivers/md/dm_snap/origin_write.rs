// SPDX-License-Identifier: GPL-2.0

//! The origin write path: before a write reaches the origin, every active
//! snapshot of it that lacks the chunk starts a copy of it, and the write
//! waits for the copies, or for room in the COW throttle to start them.
//!
//! C counterpart: `__origin_write()` and `do_origin()` in
//! `drivers/md/dm-snap.c`, with the throttle's `wait_for_in_progress()`.
//! Unlike C, a write spanning several chunks is not split at each: it
//! waits for all of their copies; and the copies one write starts share
//! one read of the origin chunk, and one kcopyd job for one snapshot's
//! consecutive chunks ([`Copies`]).
//!
//! Locks: the registry for reading, then one snapshot's `inner` at a time
//! (the lock order is written at the top of `state.rs`). A writer that
//! sleeps, for the throttle or for a handover to drain, holds none.

#![deny(unsafe_code)]

use super::{
    copy::{Copies, CopyJob},
    pending::Pending,
    registry::{snaps_of, Origins, Registry},
    state::{Invalidate, Snap},
    throttle::Slot,
};
use kernel::{
    bio::{Bio, OwnedBio},
    mempool::PoolBox,
    prelude::*,
};

/// Whether an origin write may wait for the COW throttle.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// A write from the origin target: it waits for room to start copies.
    Throttled,
    /// A write retried by a completion, which must never wait.
    Unthrottled,
}

/// The outcome of one pass of an origin write over the snapshots.
enum Pass<'a> {
    /// Every snapshot has the chunk: the write may go to the origin.
    Done,
    /// The write waits for a copy of the chunk, queued on it by the pass.
    Queued,
    /// This snapshot is copying the chunk: the write waits for that copy.
    Wait(&'a Snap),
    /// This snapshot needs a copy but has no room to start one.
    Full(&'a Snap),
    /// This snapshot needs a copy but is being handed over: no new copy
    /// starts until it has been.
    Drain(&'a Snap),
}

/// One pass over the active snapshots of origin `dev`, adding to `copies`
/// a copy of the chunk at `sector` for each that lacks it (C:
/// `__origin_write()`). A slot taken for a snapshot while waiting is in
/// `held`. The caller starts the copies before it waits for anything.
///
/// If the last snapshot is copying the chunk, or starts to, the write in
/// `bio` waits for that copy, queued on it under the lock the pass holds
/// already (as C's `__origin_write()` queues it on the last copy it
/// starts), rather than under the lock taken again for [`Pass::Wait`]. No
/// snapshot is left then to make the write wait for the throttle or a
/// handover; the copy's completion retries the write, which waits for
/// the copies still running in other snapshots.
fn origin_pass<'a, B: Into<OwnedBio>>(
    origins: &'a Origins,
    dev: u32,
    sector: u64,
    limit: Limit,
    held: &mut Option<Slot>,
    bio: &mut Option<B>,
    copies: &mut Copies<'a>,
) -> Pass<'a> {
    let mut wait_on = None;
    let mut queued = false;
    let mut snaps = snaps_of(origins, dev).peekable();
    while let Some(snap) = snaps.next() {
        let last = snaps.peek().is_none();
        let st = &snap.state;
        // A merging snapshot gets no new exceptions: it is as good as
        // deleted (C: `dm_target_is_snapshot_merge()`).
        if sector >= st.cfg.table_end || !st.is_active() || st.cfg.merge {
            continue;
        }
        let chunk = st.cfg.chunk.sector_to_chunk(sector);
        // A chunk copied already, with no copy pending in this snapshot at
        // all: nothing to do here, and no need for `inner`, so rewrites
        // from several CPUs do not queue on it (C looks up under
        // `down_read(&s->lock)` and its tables' bucket locks).
        //
        // The order matters. An exception is pending, and counted, from
        // before its chunk becomes complete until after the snapshot reads
        // it drains have ended; the write must wait for it in that span.
        // The count is read after the lookup found the chunk complete, so
        // it counts that exception unless it is gone, reads drained.
        let complete = st.complete.read().contains(chunk);
        if complete && st.drain.is_idle() {
            continue;
        }
        // A chunk not copied yet most likely needs a copy: its pending
        // exception and job are taken before `inner`, which is then taken
        // once, not dropped for them and taken again (given back unused
        // if another write started the copy meanwhile). An invalid
        // snapshot copies nothing: nothing is taken for it.
        let mut spare: Option<(PoolBox<Pending>, PoolBox<CopyJob>)> = if complete || !st.valid() {
            None
        } else {
            st.alloc_copy(chunk, GFP_NOWAIT).ok()
        };
        let mut inner = st.inner.lock();
        let started = loop {
            if !st.valid() {
                break None;
            }
            if let Some(pe) = inner.pending.get_mut(chunk) {
                // Another write started this copy: no new one, no slot.
                if last {
                    if let Some(b) = bio.take() {
                        pe.origin_bios.push(b.into());
                        queued = true;
                    }
                }
                wait_on = Some(snap);
                break None;
            }
            if st.complete.read().contains(chunk) {
                break None;
            }
            if limit == Limit::Throttled && st.drain.is_draining() {
                return Pass::Drain(snap);
            }
            let Some((mut pe, job)) = spare.take() else {
                drop(inner);
                let got = match st.alloc_copy(chunk, GFP_NOWAIT) {
                    Ok(got) => Ok(got),
                    // The pools' elements may be in the copies not yet
                    // started: they start before the pass waits for one.
                    Err(_) => {
                        copies.start();
                        st.alloc_copy(chunk, GFP_NOIO)
                    }
                };
                inner = st.inner.lock();
                match got {
                    Ok(got) => spare = Some(got),
                    Err(_) => {
                        st.invalidate(&mut inner, Invalidate::NoMem);
                        break None;
                    }
                }
                continue;
            };
            // A new copy takes a slot of the throttle.
            let slot = match held.take() {
                Some(h) if h.is_of(&st.throttle) => h,
                h => {
                    *held = h;
                    let slot = match limit {
                        Limit::Unthrottled => Some(st.throttle.start_unthrottled()),
                        Limit::Throttled => st.throttle.try_reserve(),
                    };
                    let Some(slot) = slot else {
                        return Pass::Full(snap);
                    };
                    slot
                }
            };
            if !st.prepare(&mut inner, &mut pe, snap.cow.sectors()) {
                // The slot goes back with it.
                st.invalidate(&mut inner, Invalidate::NoMem);
                break None;
            }
            let new_chunk = pe.new_chunk;
            if last {
                if let Some(b) = bio.take() {
                    pe.origin_bios.push(b.into());
                    queued = true;
                }
            }
            st.insert_pending(&mut inner, pe);
            wait_on = Some(snap);
            break Some((job, slot, new_chunk));
        };
        drop(inner);
        if let Some((job, slot, new_chunk)) = started {
            copies.add(snap, job, slot, new_chunk);
        }
    }
    if queued {
        return Pass::Queued;
    }
    match wait_on {
        Some(snap) => Pass::Wait(snap),
        None => Pass::Done,
    }
}

/// An origin write (C: `do_origin()`): `None` if the bio waits for copies,
/// otherwise the bio, to be sent on to the origin.
///
/// The write may span several chunks: each chunk it overwrites, of the
/// smallest size among the origin's snapshots, gets its own pass, under
/// one hold of the registry, and the write waits for the copies of all
/// of them. C splits an origin write at the smallest chunk size when the
/// origin is resumed and sends each piece through `do_origin()`: one
/// write here instead of one per chunk, to the origin and through the
/// block layer, and a snapshot added since the origin's resume cannot
/// make a write miss its chunks.
///
/// A throttled write that finds no room for a copy in some snapshot waits
/// for a slot with no lock held: it drops the origin lock before it sleeps
/// (the deadlock of the 2019 dm-devel thread) and looks the origin up again
/// after waking, the slot in hand; the copies it started already are
/// pending then, and their chunks are not copied again. Writes whose
/// chunks are copied already, or being copied, in every snapshot never
/// wait.
pub(crate) fn do_origin<B: Into<OwnedBio> + core::ops::Deref<Target = Bio>>(
    registry: &Registry,
    dev: u32,
    bio: B,
    limit: Limit,
) -> Option<B> {
    let sector = bio.sector();
    let end = sector.saturating_add(u64::from(bio.sectors()));
    let mut bio = Some(bio);
    // A slot taken while waiting, for the snapshot that had no room; if
    // no copy needs it after all, it goes back when dropped.
    let mut held: Option<Slot> = None;
    'again: loop {
        let origins = registry.read();
        let Some(step) = snaps_of(&origins, dev).map(|s| s.chunk_sectors()).min() else {
            return bio;
        };
        // Chunk sizes are powers of two: each step ends on a multiple.
        let mask = u64::from(step.max(1)) - 1;
        let mut wait_on = None;
        // The copies the passes start; those of consecutive chunks go out
        // together.
        let mut copies = Copies::new();
        let mut at = sector;
        loop {
            let next = (at | mask).saturating_add(1);
            let last = next >= end;
            // The write is queued by the pass of its last chunk only: no
            // pass after it may make it wait for the throttle.
            let mut none = None;
            let offer = if last { &mut bio } else { &mut none };
            match origin_pass(&origins, dev, at, limit, &mut held, offer, &mut copies) {
                Pass::Done => {}
                Pass::Queued => return None,
                Pass::Wait(snap) => wait_on = Some((snap, at)),
                Pass::Drain(snap) => {
                    let st = snap.state.clone();
                    // Dropped, the copies start.
                    drop(copies);
                    drop(origins);
                    drop(held.take());
                    // As C's `dm_internal_suspend_fast()` of the origin
                    // during a handover, but for the writes that need a
                    // new copy of the snapshot handed over only.
                    st.drain.wait_drained();
                    continue 'again;
                }
                Pass::Full(snap) => {
                    let throttle = snap.state.throttle.clone();
                    drop(copies);
                    drop(held.take());
                    held = Some(throttle.wait_for_slot(move || drop(origins)));
                    continue 'again;
                }
            }
            if last {
                break;
            }
            at = next;
        }
        drop(copies);
        let Some((snap, at)) = wait_on else {
            return bio;
        };
        let st = &snap.state;
        let chunk = st.cfg.chunk.sector_to_chunk(at);
        let mut inner = st.inner.lock();
        if let Some(pe) = inner.pending.get_mut(chunk) {
            if let Some(b) = bio.take() {
                pe.origin_bios.push(b.into());
            }
            return None;
        }
        // The copy completed meanwhile: look again.
    }
}

/// Starts the copies that the other snapshots of origin `dev` need before
/// a merge overwrites `sectors` sectors from `sector`, in steps of `step`
/// sectors (C: `origin_write_extent()`); returns whether one is pending,
/// which the merge must wait for. Never waits for the COW throttle, as C's
/// `__origin_write()` without a bio.
pub(crate) fn origin_write_extent(
    registry: &Registry,
    dev: u32,
    sector: u64,
    sectors: u64,
    step: u32,
) -> bool {
    let step = u64::from(step.max(1));
    let origins = registry.read();
    let mut must_wait = false;
    let mut n = 0;
    while n < sectors {
        let Some(at) = sector.checked_add(n) else {
            break;
        };
        let mut held = None;
        // Started as the pass returns.
        let mut copies = Copies::new();
        if !matches!(
            origin_pass(
                &origins,
                dev,
                at,
                Limit::Unthrottled,
                &mut held,
                &mut None::<OwnedBio>,
                &mut copies
            ),
            Pass::Done
        ) {
            must_wait = true;
        }
        n = n.saturating_add(step);
    }
    must_wait
}
