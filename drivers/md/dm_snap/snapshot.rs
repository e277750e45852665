// SPDX-License-Identifier: GPL-2.0

//! The `snapshot` target:
//! `<origin> <COW device> <N|P|PO> <chunk size> [<#features> <feature>...]`.
//!
//! Reads of a chunk that has an exception go to the COW device, others to
//! the origin. The first write to a chunk, through the snapshot or through
//! the origin, copies the chunk from the origin to a free chunk of the COW
//! device (a pending exception) and completes the exception when the copy
//! is done; bios that touch the chunk meanwhile wait on the pending
//! exception.
//!
//! C counterpart: `snapshot_map()`, `snapshot_end_io()`,
//! `snapshot_status()` and the other target operations in
//! `drivers/md/dm-snap.c`. The rest of the snapshot is in its own files:
//! `state.rs` (the shared state and the lock order), `ctr.rs`
//! (construction), `copy.rs` (starting copies), `pending.rs`,
//! `origin_write.rs` (`__origin_write()`), `complete.rs` (completion and
//! commit order), `store.rs` and `persistent.rs` (the exception stores),
//! `handover.rs`, `throttle.rs`, `drain.rs` and `read_tracker.rs`.

#![deny(unsafe_code)]

use super::{
    copy::CopyJob, merge, pending::Pending, read_tracker::Tracked, registry::Registry, state::Snap,
    throttle::Slot,
};
use core::{fmt::Write, sync::atomic::Ordering};
use kernel::{
    c_str,
    device_mapper::{
        kcopyd, Args, CtrError, EndIoBio, EndIoResult, IterateDevices, MapBio, MapResult,
        QueueLimits, StatusType, StatusWriter, Target, TargetOperations,
    },
    mempool::PoolBox,
    prelude::*,
    sync::Arc,
};

/// Target name, as C's `snapshot_target`.
pub(crate) const NAME: &CStr = c_str!("snapshot");
/// Target version, as C's `snapshot_target`.
pub(crate) const VERSION: [u32; 3] = [1, 16, 0];

/// What a bio of this target carries from `map` to `end_io`.
#[derive(Default)]
pub(crate) enum SnapBio {
    /// Nothing to do on completion.
    #[default]
    None,
    /// A read sent to the origin, tracked until it completes.
    Tracked(Tracked),
    /// A write covering a whole chunk, which is its own copy: completing it
    /// completes the exception.
    FullWrite(kcopyd::PreparedCallback<CopyJob>),
}

/// One `snapshot` table line.
pub(crate) struct Snapshot {
    pub(super) snap: Arc<Snap>,
    pub(super) registry: Arc<Registry>,
}

impl Snapshot {
    fn write_status(&self, out: &mut StatusWriter<'_>) {
        let st = &self.snap.state;
        let inner = st.inner.lock();
        if !st.valid() {
            let _ = write!(out, "Invalid");
        } else if inner.merge_failed {
            let _ = write!(out, "Merge failed");
        } else if st.overflowed() {
            let _ = write!(out, "Overflow");
        } else {
            let (used, metadata) = inner.store.usage();
            let _ = write!(out, "{}/{} {}", used, self.snap.cow.sectors(), metadata);
        }
    }

    /// A write to the snapshot of a chunk with no exception yet: it waits
    /// on the chunk's pending exception, starting one (and its copy) if
    /// there is none (C: the write half of `snapshot_map()`).
    fn map_write(&self, mut bio: MapBio, chunk: u64, data: &mut SnapBio) -> MapResult {
        let snap = &*self.snap;
        let st = &snap.state;
        // The chunk had no exception a moment ago: its pending exception
        // and job are taken before the snapshot lock, so that the lock is
        // taken once, not dropped for them and taken again (given back if
        // another write started the chunk's exception meanwhile).
        let mut spare: Option<(PoolBox<Pending>, PoolBox<CopyJob>)> =
            st.alloc_copy(chunk, GFP_NOWAIT).ok();
        // A slot of the COW throttle, taken once a new copy is needed; it
        // goes back by itself on every way out that starts no copy.
        let mut slot: Option<Slot> = None;
        let mut inner = st.inner.lock();
        loop {
            if !st.valid() {
                return MapResult::Kill(bio);
            }
            if let Some(pe) = inner.pending.get_mut(chunk) {
                let new_chunk = pe.new_chunk;
                snap.remap_cow(&mut bio, new_chunk);
                pe.snapshot_bios.push(bio.into_owned());
                return MapResult::Submitted;
            }
            let found = st.complete.read().get(chunk);
            if let Some(new_chunk) = found {
                drop(inner);
                snap.remap_cow(&mut bio, new_chunk);
                return MapResult::Remapped(bio);
            }
            let Some((mut pe, job)) = spare.take() else {
                drop(inner);
                match st.alloc_copy(chunk, GFP_NOIO) {
                    Ok(got) => spare = Some(got),
                    Err(_) => return MapResult::Requeue(bio),
                }
                inner = st.inner.lock();
                continue;
            };
            let Some(taken) = slot.take().or_else(|| st.throttle.try_reserve()) else {
                // Snapshot writes are throttled too; nothing to drop but
                // our own lock.
                drop(inner);
                slot = Some(st.throttle.wait_for_slot(|| ()));
                spare = Some((pe, job));
                inner = st.inner.lock();
                continue;
            };
            if !st.prepare(&mut inner, &mut pe, snap.cow.sectors()) {
                st.full(&mut inner);
                return MapResult::Kill(bio);
            }
            let new_chunk = pe.new_chunk;
            snap.remap_cow(&mut bio, new_chunk);
            if bio.sectors() == st.cfg.chunk.sectors() {
                // The write covers the chunk: it is the copy (C:
                // `start_full_bio()`); its completion completes the
                // exception and gives the slot back.
                st.insert_pending(&mut inner, pe);
                drop(inner);
                let mut job = job;
                job.slot = Some(taken);
                *data = SnapBio::FullWrite(snap.kc.prepare_callback::<CopyJob>(job));
                return MapResult::Remapped(bio);
            }
            pe.snapshot_bios.push(bio.into_owned());
            st.insert_pending(&mut inner, pe);
            drop(inner);
            snap.start_copy(job, taken, new_chunk);
            return MapResult::Submitted;
        }
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // No origin write starts a copy for us after this, and a table
        // waiting to take our exceptions over is told it never will;
        // dropping the last reference then waits for the copies in flight
        // (the kcopyd client).
        let dev = self.snap.state.cfg.origin_dev;
        drop(self.registry.unregister(dev, &self.snap));
    }
}

#[vtable]
impl TargetOperations for Snapshot {
    type Shared = Arc<Registry>;
    type PerBio = SnapBio;

    fn ctr(
        target: &mut Target,
        args: &Args<'_>,
        registry: &Arc<Registry>,
    ) -> Result<Pin<KBox<Self>>, CtrError> {
        Self::build(target, args, registry, false)
    }

    fn map(&self, _target: &Target, mut bio: MapBio, data: &mut SnapBio) -> MapResult {
        let snap = &*self.snap;
        let st = &snap.state;
        if bio.is_preflush() {
            snap.cow.remap(&mut bio);
            return MapResult::Remapped(bio);
        }
        let chunk = st.cfg.chunk.sector_to_chunk(bio.sector());
        if !st.valid() || (st.overflowed() && !bio.is_read()) {
            return MapResult::Kill(bio);
        }
        // The table shared, not the snapshot lock: reads of the snapshot
        // map side by side, as under C's `down_read(&s->lock)`. An
        // exception becomes complete with the table held exclusively, so
        // a read either finds it or is tracked before, and the completion
        // then waits for the read.
        let table = st.complete.read();
        let discard = bio.is_discard();
        if discard && st.cfg.features.discard_passdown_origin && bio.target_bio_nr() != 0 {
            // The second copy of a discard goes to the origin, without
            // triggering copies (it frees space there).
            *data = SnapBio::Tracked(st.reads.track(chunk));
            drop(table);
            snap.origin.remap(&mut bio);
            return MapResult::Remapped(bio);
        }
        if let Some(new_chunk) = table.get(chunk) {
            drop(table);
            snap.remap_cow(&mut bio, new_chunk);
            if discard && bio.sectors() == st.cfg.chunk.sectors() {
                snap.zero_exception(bio.into_owned());
                return MapResult::Submitted;
            }
            return MapResult::Remapped(bio);
        }
        if discard {
            // Nothing to discard: no exception, and making one would copy.
            drop(table);
            bio.into_owned().complete();
            return MapResult::Submitted;
        }
        if bio.is_read() {
            *data = SnapBio::Tracked(st.reads.track(chunk));
            drop(table);
            snap.origin.remap(&mut bio);
            return MapResult::Remapped(bio);
        }
        drop(table);
        self.map_write(bio, chunk, data)
    }

    fn end_io(&self, _target: &Target, bio: EndIoBio, data: SnapBio) -> EndIoResult {
        match data {
            SnapBio::None => EndIoResult::Done(bio),
            SnapBio::Tracked(t) => {
                self.snap.state.reads.untrack(t);
                EndIoResult::Done(bio)
            }
            SnapBio::FullWrite(cb) => {
                let err = bio.is_error();
                let (b, taken) = bio.take();
                if let Err(b) = cb.context().bio.put(b) {
                    b.io_error();
                }
                cb.run(false, u64::from(err));
                EndIoResult::Incomplete(taken)
            }
        }
    }

    fn status(&self, _target: &Target, kind: StatusType, out: &mut StatusWriter<'_>) {
        let snap = &*self.snap;
        let st = &snap.state;
        match kind {
            StatusType::Info => self.write_status(out),
            StatusType::Table => {
                let _ = write!(
                    out,
                    "{} {} {} {}",
                    snap.origin.name(),
                    snap.cow.name(),
                    st.cfg.store.as_str(),
                    st.cfg.chunk.sectors()
                );
                let features = st.cfg.features;
                if features.count() > 0 {
                    let _ = write!(out, " {}", features.count());
                    for name in features.names() {
                        let _ = write!(out, " {}", name);
                    }
                }
            }
            StatusType::Ima => {
                let (valid, merge_failed, overflowed) = {
                    let inner = st.inner.lock();
                    (st.valid(), inner.merge_failed, st.overflowed())
                };
                let yn = |b: bool| if b { 'y' } else { 'n' };
                let (name, version) = if st.cfg.merge {
                    (merge::NAME, merge::VERSION)
                } else {
                    (NAME, VERSION)
                };
                let _ = write!(
                    out,
                    "target_name={},target_version={}.{}.{},",
                    name, version[0], version[1], version[2]
                );
                let _ = write!(
                    out,
                    "snap_origin_name={},snap_cow_name={},",
                    snap.origin.name(),
                    snap.cow.name()
                );
                let _ = write!(
                    out,
                    "snap_valid={},snap_merge_failed={},snapshot_overflowed={};",
                    yn(valid),
                    yn(merge_failed),
                    yn(overflowed)
                );
            }
        }
    }

    /// `stats`: the COW throttle's counters of this snapshot (an extension;
    /// C's snapshot target takes no messages).
    fn message(&self, _target: &Target, args: &Args<'_>, out: &mut StatusWriter<'_>) -> Result {
        match (args.len(), args.get(0).map(|a| a.as_bytes())) {
            (1, Some(b"stats")) => {
                let t = self.snap.state.throttle.stats();
                let _ = write!(
                    out,
                    "in_progress {} max_in_progress {} throttled_waits {} unthrottled {} threshold {}",
                    t.in_progress,
                    t.max_in_progress,
                    t.waits,
                    t.unthrottled,
                    crate::COW_THRESHOLD.get()
                );
                Ok(())
            }
            _ => {
                pr_warn!("Unrecognised message received.\n");
                Err(EINVAL)
            }
        }
    }

    fn iterate_devices(&self, target: &Target, callout: &mut IterateDevices) -> i32 {
        let r = callout.call(&self.snap.origin, 0, target.len());
        if r != 0 {
            return r;
        }
        callout.call(&self.snap.cow, 0, self.snap.cow.sectors())
    }

    fn io_hints(&self, _target: &Target, limits: &mut QueueLimits) {
        let st = &self.snap.state;
        if st.cfg.features.discard_zeroes_cow {
            // As C: all discards are split on chunk boundaries.
            limits.set_discard_granularity(st.cfg.chunk.sectors());
            limits.set_max_hw_discard_sectors(st.cfg.chunk.sectors());
        }
    }

    fn postsuspend(&self, _target: &Target) {
        self.snap.state.suspended.store(true, Ordering::Release);
    }

    fn preresume(&self, _target: &Target) -> Result {
        self.may_resume()
    }

    fn resume(&self, _target: &Target) {
        let st = &self.snap.state;
        self.handover();
        st.suspended.store(false, Ordering::Release);
        st.active.store(true, Ordering::Release);
    }
}
