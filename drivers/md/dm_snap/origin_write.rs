// SPDX-License-Identifier: GPL-2.0

//! The origin write path: before a write reaches the origin, every active
//! snapshot of it that lacks the chunk starts a copy of it, and the write
//! waits for the copies, or for room in the COW throttle to start them.
//!
//! C counterpart: `__origin_write()` and `do_origin()` in
//! `drivers/md/dm-snap.c`, with the throttle's `wait_for_in_progress()`.
//!
//! Locks: the registry for reading, then one snapshot's `inner` at a time
//! (the lock order is written at the top of `snapshot.rs`). A writer that
//! sleeps, for the throttle or for a handover to drain, holds none.

#![deny(unsafe_code)]

use super::{
    pending::Pending,
    registry::{snaps_of, Origins, Registry},
    snapshot::{CopyJob, Invalidate, Snap, SnapState},
};
use core::sync::atomic::Ordering;
use kernel::{
    bio::{Bio, OwnedBio},
    mempool::PoolBox,
    sync::Arc,
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
    /// This snapshot is copying the chunk: the write waits for that copy.
    Wait(&'a Snap),
    /// This snapshot needs a copy but has no room to start one.
    Full(&'a Snap),
    /// This snapshot needs a copy but is being handed over: no new copy
    /// starts until it has been.
    Drain(&'a Snap),
}

/// One pass over the active snapshots of origin `dev`, starting a copy of
/// the chunk at `sector` in each that lacks it (C: `__origin_write()`).
/// A slot reserved for a snapshot while waiting is in `held`.
fn origin_pass<'a>(
    origins: &'a Origins,
    dev: u32,
    sector: u64,
    limit: Limit,
    held: &mut Option<Arc<SnapState>>,
) -> Pass<'a> {
    let mut wait_on = None;
    for snap in snaps_of(origins, dev) {
        let st = &snap.state;
        if sector >= st.table_end || !st.active.load(Ordering::Acquire) {
            continue;
        }
        let chunk = st.chunk.sector_to_chunk(sector);
        let mut spare: Option<(PoolBox<Pending>, PoolBox<CopyJob>)> = None;
        let mut inner = st.inner.lock();
        let started = loop {
            if !inner.valid {
                break None;
            }
            if inner.pending.get_mut(chunk).is_some() {
                // Another write started this copy: no new one, no slot.
                wait_on = Some(snap);
                break None;
            }
            if inner.complete.get(&chunk).is_some() {
                break None;
            }
            if limit == Limit::Throttled && st.draining.load(Ordering::Acquire) {
                return Pass::Drain(snap);
            }
            let Some((mut pe, job)) = spare.take() else {
                drop(inner);
                let got = st.alloc_copy(chunk);
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
            let slot = if held.as_ref().is_some_and(|h| Arc::ptr_eq(h, st)) {
                *held = None;
                true
            } else if limit == Limit::Unthrottled {
                st.start_unthrottled();
                true
            } else {
                st.try_reserve()
            };
            if !slot {
                return Pass::Full(snap);
            }
            if !st.prepare(&mut inner, &mut pe, snap.cow.sectors()) {
                st.invalidate(&mut inner, Invalidate::NoMem);
                // The slot goes back once the lock is dropped.
                break Some(None);
            }
            let new_chunk = pe.new_chunk;
            st.insert_pending(&mut inner, pe);
            wait_on = Some(snap);
            break Some(Some((job, new_chunk)));
        };
        drop(inner);
        match started {
            Some(Some((job, new_chunk))) => snap.start_copy(job, new_chunk),
            Some(None) => st.release_slot(),
            None => {}
        }
    }
    match wait_on {
        Some(snap) => Pass::Wait(snap),
        None => Pass::Done,
    }
}

/// An origin write (C: `do_origin()`): `None` if the bio waits for copies,
/// otherwise the bio, to be sent on to the origin.
///
/// A throttled write that finds no room for a copy in some snapshot waits
/// for a slot with no lock held: it drops the origin lock before it sleeps
/// (the deadlock of the 2019 dm-devel thread) and looks the origin up again
/// after waking. Writes whose chunk is copied already, or being copied, in
/// every snapshot never wait.
pub(crate) fn do_origin<B: Into<OwnedBio> + core::ops::Deref<Target = Bio>>(
    registry: &Registry,
    dev: u32,
    bio: B,
    limit: Limit,
) -> Option<B> {
    let sector = bio.sector();
    let mut held: Option<Arc<SnapState>> = None;
    let mut bio = Some(bio);
    loop {
        let origins = registry.read();
        match origin_pass(&origins, dev, sector, limit, &mut held) {
            Pass::Done => {
                drop(origins);
                if let Some(h) = held.take() {
                    h.release_slot();
                }
                return bio;
            }
            Pass::Wait(snap) => {
                let st = &snap.state;
                let chunk = st.chunk.sector_to_chunk(sector);
                let mut inner = st.inner.lock();
                if let Some(pe) = inner.pending.get_mut(chunk) {
                    if let Some(b) = bio.take() {
                        pe.origin_bios.push(b.into());
                    }
                    drop(inner);
                    drop(origins);
                    if let Some(h) = held.take() {
                        h.release_slot();
                    }
                    return None;
                }
                // The copy completed meanwhile: look again.
            }
            Pass::Drain(snap) => {
                let st = snap.state.clone();
                drop(origins);
                if let Some(h) = held.take() {
                    h.release_slot();
                }
                // As C's `dm_internal_suspend_fast()` of the origin during
                // a handover, but for the writes that need a new copy of
                // the snapshot handed over only.
                st.idle_wait
                    .wait_io(|| !st.draining.load(Ordering::Acquire));
            }
            Pass::Full(snap) => {
                let st = snap.state.clone();
                if let Some(h) = held.take() {
                    h.release_slot();
                }
                if cfg!(dm_snap_buggy_throttle) {
                    // Test-only build (DM_SNAP_BUGGY_THROTTLE=1): sleep with
                    // the origin lock held, the bug the throttle selftest
                    // must catch. Never shipped.
                    st.wait_for_slot(|| ());
                    drop(origins);
                } else {
                    st.wait_for_slot(move || drop(origins));
                }
                held = Some(st);
            }
        }
    }
}
