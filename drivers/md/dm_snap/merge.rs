// SPDX-License-Identifier: GPL-2.0

//! The `snapshot-merge` target: the table line of `snapshot`
//! (`<origin> <COW device> <P|PO> <chunk size> [<#features> <feature>...]`),
//! loaded in place of the origin's `snapshot-origin`. It takes the
//! snapshot's exceptions over when it resumes (the handover of
//! `handover.rs`), or reads them from the COW device, and copies them back
//! onto the origin, from the newest backwards, a run of consecutive chunks
//! at a time.
//!
//! Each step: the other snapshots of the origin copy the chunks first (as
//! an origin write would make them); writes to the chunks wait in a queue
//! and the writes sent to their COW chunks before drain; kcopyd copies the
//! run; the origin is flushed; then the store clears the run's exceptions
//! on disk (`dm_snap_core::merge`), and only then they leave the complete
//! table and the queued writes go on to the origin. A crash at any point
//! leaves every chunk either still an exception or merged.
//!
//! Meanwhile the target serves I/O as the snapshot would read: a chunk
//! with an exception is read (and written) on the COW device, the others
//! on the origin, whose writes copy into the other snapshots. An error
//! stops the merge with `Merge failed` in the status; I/O goes on.
//! Suspending stops the merge, resuming starts it again from the metadata.
//!
//! C counterpart: `snapshot_merge_map()`, `snapshot_merge_next_chunks()`,
//! `merge_callback()`, `remove_single_exception_chunk()`,
//! `start_merge()`, `stop_merge()`, `snapshot_merge_presuspend()` and
//! `snapshot_merge_resume()` in `drivers/md/dm-snap.c`.
//!
//! Locks: the merge takes the registry only in [`origin_write_extent`],
//! with no lock of the snapshot held; then it holds the snapshot's `meta`
//! for the rest of the step (no commit of the merging snapshot competes:
//! it gets no exceptions), and `inner` for short moments; it waits for
//! the copy and the drains with `inner` dropped.

#![deny(unsafe_code)]

use super::{
    origin_write::{do_origin, origin_write_extent, Limit},
    registry::Registry,
    snapshot::{SnapBio, Snapshot},
    state::{Snap, SnapState},
};
use crate::dm_snap_core::{disk::StoreState, merge::Run, runs::Removed};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use kernel::{
    c_str,
    device_mapper::{
        dm_io, kcopyd, Args, CtrError, EndIoBio, EndIoResult, IterateDevices, MapBio, MapResult,
        QueueLimits, StatusType, StatusWriter, Target, TargetOperations,
    },
    impl_has_work, new_waitqueue, new_work,
    prelude::*,
    sync::{Arc, WaitQueue},
    workqueue::{OwnedQueue, Work, WorkItem, WQ_MEM_RECLAIM},
};

/// Target name, as C's `merge_target`.
pub(crate) const NAME: &CStr = c_str!("snapshot-merge");
/// Target version, as C's `merge_target`.
pub(crate) const VERSION: [u32; 3] = [1, 5, 0];

/// The copy of one run, waited for by the merge (C: `merge_callback()`).
/// Holds nothing of the snapshot: kcopyd may drop it last.
#[pin_data]
struct CopyWait {
    /// 0 while the copy runs, then [`COPY_OK`], [`COPY_READ_ERR`] or
    /// [`COPY_WRITE_ERR`].
    result: AtomicU8,
    #[pin]
    wait: WaitQueue,
}

const COPY_OK: u8 = 1;
const COPY_READ_ERR: u8 = 2;
const COPY_WRITE_ERR: u8 = 3;

impl kcopyd::Completion for CopyWait {
    type Ptr = Arc<CopyWait>;

    fn complete(this: Arc<CopyWait>, read_err: bool, write_err: u64) {
        let r = if read_err {
            COPY_READ_ERR
        } else if write_err != 0 {
            COPY_WRITE_ERR
        } else {
            COPY_OK
        };
        this.result.store(r, Ordering::Release);
        this.wait.wake_up_all();
    }
}

/// The merge of one `snapshot-merge` table, run as a work item (C: the
/// `RUNNING_MERGE` and `SHUTDOWN_MERGE` bits and the chain of
/// `merge_callback()`s).
#[pin_data]
pub(crate) struct Merger {
    snap: Arc<Snap>,
    registry: Arc<Registry>,
    /// The origin flush after each copy.
    io: dm_io::Client,
    /// The merge runs (C: `RUNNING_MERGE`).
    running: AtomicBool,
    /// The merge is asked to stop at its next step (C: `SHUTDOWN_MERGE`).
    shutdown: AtomicBool,
    /// The smallest chunk size of the origin's snapshots at resume, in
    /// sectors: the other snapshots' copies are started at this step.
    step: AtomicU32,
    /// Woken when the merge stops running.
    #[pin]
    stopped: WaitQueue,
    #[pin]
    work: Work<Merger>,
}

impl_has_work! {
    impl HasWork<Self> for Merger { self.work }
}

impl WorkItem for Merger {
    type Pointer = Arc<Merger>;

    fn run(this: Arc<Merger>) {
        this.merge();
        this.running.store(false, Ordering::Release);
        this.stopped.wake_up_all();
    }
}

/// Why a merge step ended the merge.
enum Stop {
    /// Asked to, or nothing left: not an error.
    Done,
    /// An error: `Merge failed`.
    Failed,
}

impl Merger {
    fn new(snap: Arc<Snap>, registry: Arc<Registry>) -> Result<Arc<Self>> {
        let io = dm_io::Client::new()?;
        Arc::pin_init(
            pin_init!(Self {
                snap,
                registry,
                io,
                running: AtomicBool::new(false),
                shutdown: AtomicBool::new(false),
                step: AtomicU32::new(1),
                stopped <- new_waitqueue!(),
                work <- new_work!("Merger::work"),
            }),
            GFP_KERNEL,
        )
    }

    fn st(&self) -> &Arc<SnapState> {
        &self.snap.state
    }

    /// Starts the merge unless it runs (C: `start_merge()`).
    fn start(self: &Arc<Self>, wq: &OwnedQueue) {
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        if wq.enqueue(self.clone()).is_err() {
            // Still queued from a run that is ending: it merges.
            pr_warn!("merge work queued twice\n");
        }
    }

    /// Stops the merge and waits until it has (C: `stop_merge()`).
    fn stop(&self) {
        self.shutdown.store(true, Ordering::Release);
        self.stopped
            .wait_io(|| !self.running.load(Ordering::Acquire));
        self.shutdown.store(false, Ordering::Release);
    }

    /// Merges step by step until done, stopped or failed (C:
    /// `snapshot_merge_next_chunks()` and `merge_callback()`).
    fn merge(&self) {
        loop {
            match self.merge_step() {
                Ok(()) => {}
                Err(Stop::Done) => return,
                Err(Stop::Failed) => return self.fail(),
            }
        }
    }

    /// The merge failed: `Merge failed` from now on, and the writes that
    /// waited for the chunks being merged fail (C: the `shut` path of
    /// `merge_callback()`).
    fn fail(&self) {
        let mut inner = self.st().inner.lock();
        inner.merge_failed = true;
        inner.merging = None;
        let queued = inner.queued.take();
        drop(inner);
        for b in queued {
            b.io_error();
        }
    }

    fn merge_step(&self) -> Result<(), Stop> {
        let snap = &*self.snap;
        let st = self.st();
        if self.shutdown.load(Ordering::Acquire) {
            return Err(Stop::Done);
        }
        if !st.valid() {
            pr_err!("Snapshot is invalid: can't merge\n");
            return Err(Stop::Done);
        }
        let (run, mut state) = self.prepare()?;
        let chunk = st.cfg.chunk;
        let io_sectors = run.chunks.saturating_mul(u64::from(chunk.sectors()));
        // An exception past the origin's end (the origin shrank, or the
        // metadata says so) has nothing to copy; a chunk beyond `u64`
        // sectors must not wrap around onto the origin's start.
        let dest = chunk.chunk_to_sector(run.old_chunk).unwrap_or(u64::MAX);
        let count = io_sectors.min(snap.origin.sectors().saturating_sub(dest));
        // The other snapshots copy the chunks before the merge overwrites
        // them; wait until they have. No lock of ours is held: the
        // registry comes first.
        let dev = st.cfg.origin_dev;
        let step = self.step.load(Ordering::Relaxed);
        let mut seen = self.registry.pending_done_count();
        while origin_write_extent(&self.registry, dev, dest, count, step) {
            self.registry.wait_pending_done(seen);
            seen = self.registry.pending_done_count();
        }
        let mut meta = st.meta.lock();
        let Some(m) = meta.as_mut() else {
            return Err(Stop::Failed);
        };
        // Writes to the run wait from now on; those sent to its COW chunks
        // before finish first (C: `__check_for_conflicting_io()`).
        st.inner.lock().merging = Some(run);
        for c in 0..run.chunks {
            st.reads.drain(run.old_chunk + c);
        }
        if count > 0 {
            self.copy(&run, dest, count)?;
        }
        if self.io.flush(&snap.origin.region(0, 0)).is_err() {
            pr_err!("Flush after merge failed: shutting down merge\n");
            return Err(Stop::Failed);
        }
        if m.commit_merge(&mut state, run.chunks).is_err() {
            pr_err!("Write error in exception store: shutting down merge\n");
            return Err(Stop::Failed);
        }
        drop(meta);
        self.remove_exceptions(&run, state)
    }

    /// The next run to merge, and the store's state once it is found (C:
    /// `prepare_merge`); the state is the store's from then on.
    fn prepare(&self) -> Result<(Run, StoreState), Stop> {
        let st = self.st();
        let mut meta = st.meta.lock();
        let state = st
            .inner
            .lock()
            .store
            .persistent()
            .map(|p| p.merge_state().0);
        let (Some(m), Some(mut state)) = (meta.as_mut(), state) else {
            pr_err!("Read error in exception store: shutting down merge\n");
            return Err(Stop::Failed);
        };
        let run = match m.prepare_merge(&mut state) {
            Ok(Some(run)) => run,
            Ok(None) => return Err(Stop::Done),
            Err(_) => {
                pr_err!("Read error in exception store: shutting down merge\n");
                return Err(Stop::Failed);
            }
        };
        if let Some(p) = st.inner.lock().store.persistent() {
            p.set_merge_state(state);
        }
        Ok((run, state))
    }

    /// Copies `count` sectors of the run from the COW device to `dest` on
    /// the origin, and waits for the copy.
    fn copy(&self, run: &Run, dest: u64, count: u64) -> Result<(), Stop> {
        let snap = &*self.snap;
        let chunk = self.st().cfg.chunk;
        let from = snap.cow.region(chunk.first_sector(run.new_chunk), count);
        let to = snap.origin.region(dest, count);
        let wait = Arc::pin_init(
            pin_init!(CopyWait {
                result: AtomicU8::new(0),
                wait <- new_waitqueue!(),
            }),
            GFP_NOIO,
        )
        .map_err(|_| {
            pr_err!("Unable to allocate merge copy: shutting down merge\n");
            Stop::Failed
        })?;
        if snap
            .kc
            .copy::<CopyWait>(&from, &[to], wait.clone())
            .is_err()
        {
            return Err(Stop::Failed);
        }
        wait.wait
            .wait_io(|| wait.result.load(Ordering::Acquire) != 0);
        match wait.result.load(Ordering::Acquire) {
            COPY_READ_ERR => {
                pr_err!("Read error: shutting down merge.\n");
                Err(Stop::Failed)
            }
            COPY_WRITE_ERR => {
                pr_err!("Write error: shutting down merge.\n");
                Err(Stop::Failed)
            }
            _ => Ok(()),
        }
    }

    /// The run is merged on disk: its exceptions leave the complete table,
    /// from the last chunk back, and the writes that waited go on to the
    /// origin (C: `remove_single_exception_chunk()`).
    fn remove_exceptions(&self, run: &Run, state: StoreState) -> Result<(), Stop> {
        let st = self.st();
        let mut inner = st.inner.lock();
        if let Some(p) = inner.store.persistent() {
            p.set_merge_state(state);
        }
        // The table taken once for the run, not once a chunk.
        let mut table = st.complete.write();
        for c in (0..run.chunks).rev() {
            let old = run.old_chunk + c;
            if !matches!(table.remove(old), Removed::Empty | Removed::Shorter) {
                drop(table);
                drop(inner);
                pr_err!(
                    "Corruption detected: exception for block {} is on disk but not in memory\n",
                    old
                );
                return Err(Stop::Failed);
            }
        }
        drop(table);
        inner.merging = None;
        let queued = inner.queued.take();
        drop(inner);
        for b in queued {
            b.submit();
        }
        Ok(())
    }
}

fn nomem<E>(_: E) -> CtrError {
    CtrError::new(ENOMEM, c_str!("Cannot allocate private snapshot structure"))
}

/// One `snapshot-merge` table line.
pub(crate) struct SnapshotMerge {
    /// Dropped first: waits for the merge work, which holds the snapshot.
    wq: OwnedQueue,
    merger: Arc<Merger>,
    snapshot: Pin<KBox<Snapshot>>,
    /// Writes are split at multiples of this many sectors: the smallest
    /// chunk size of the origin's snapshots when it was last resumed (C:
    /// `ti->max_io_len` set by `snapshot_merge_resume()`).
    split_boundary: AtomicU32,
}

impl Drop for SnapshotMerge {
    fn drop(&mut self) {
        // C: `snapshot_dtr()` stops the merge of a snapshot-merge.
        self.merger.stop();
    }
}

impl SnapshotMerge {
    /// A write of a chunk with no exception (or of an invalid snapshot):
    /// it goes to the origin, after the other snapshots copied the chunk.
    fn to_origin(&self, mut bio: MapBio) -> MapResult {
        let snap = &*self.snapshot.snap;
        snap.origin.remap(&mut bio);
        if !bio.is_write() {
            return MapResult::Remapped(bio);
        }
        // C: `do_origin(s->origin, bio, false)`, no throttle.
        match do_origin(
            &self.merger.registry,
            snap.state.cfg.origin_dev,
            bio,
            Limit::Unthrottled,
        ) {
            Some(bio) => MapResult::Remapped(bio),
            None => MapResult::Submitted,
        }
    }
}

#[vtable]
impl TargetOperations for SnapshotMerge {
    type Shared = Arc<Registry>;
    type PerBio = SnapBio;

    fn ctr(
        target: &mut Target,
        args: &Args<'_>,
        registry: &Arc<Registry>,
    ) -> Result<Pin<KBox<Self>>, CtrError> {
        let snapshot = Snapshot::build(target, args, registry, true)?;
        let merger = Merger::new(snapshot.snap.clone(), registry.clone()).map_err(nomem)?;
        let wq = OwnedQueue::new(c_str!("kmerged"), WQ_MEM_RECLAIM, 1).map_err(nomem)?;
        let split = snapshot.snap.chunk_sectors();
        KBox::pin(
            SnapshotMerge {
                wq,
                merger,
                snapshot,
                split_boundary: AtomicU32::new(split),
            },
            GFP_KERNEL,
        )
        .map_err(nomem)
    }

    fn map(&self, _target: &Target, mut bio: MapBio, data: &mut SnapBio) -> MapResult {
        let snap = &*self.snapshot.snap;
        let st = &snap.state;
        if bio.is_preflush() {
            if bio.target_bio_nr() == 0 {
                snap.origin.remap(&mut bio);
            } else {
                snap.cow.remap(&mut bio);
            }
            return MapResult::Remapped(bio);
        }
        if bio.is_discard() {
            // Once merging, discards no longer effect change (C).
            bio.into_owned().complete();
            return MapResult::Submitted;
        }
        let split = self.split_boundary.load(Ordering::Relaxed).max(1);
        let available = split - ((bio.sector() as u32) & (split - 1));
        if bio.sectors() > available {
            bio.accept_partial(available);
        }
        let chunk = st.cfg.chunk.sector_to_chunk(bio.sector());
        let mut inner = st.inner.lock();
        if !st.valid() {
            // A snapshot merged in full (or invalid) is the origin.
            drop(inner);
            return self.to_origin(bio);
        }
        let found = st.complete.read().get(chunk);
        let Some(new_chunk) = found else {
            drop(inner);
            return self.to_origin(bio);
        };
        let write = bio.is_write();
        if write && inner.merging.is_some_and(|r| r.contains(chunk)) {
            // Written once the chunk is merged, to the origin.
            snap.origin.remap(&mut bio);
            inner.queued.push(bio.into_owned());
            return MapResult::Submitted;
        }
        if write {
            // The merge of the chunk waits for this write.
            *data = SnapBio::Tracked(st.reads.track(chunk));
        }
        drop(inner);
        snap.remap_cow(&mut bio, new_chunk);
        MapResult::Remapped(bio)
    }

    fn end_io(&self, target: &Target, bio: EndIoBio, data: SnapBio) -> EndIoResult {
        self.snapshot.end_io(target, bio, data)
    }

    fn status(&self, target: &Target, kind: StatusType, out: &mut StatusWriter<'_>) {
        self.snapshot.status(target, kind, out)
    }

    fn iterate_devices(&self, target: &Target, callout: &mut IterateDevices) -> i32 {
        self.snapshot.iterate_devices(target, callout)
    }

    fn io_hints(&self, target: &Target, limits: &mut QueueLimits) {
        self.snapshot.io_hints(target, limits)
    }

    fn presuspend(&self, _target: &Target) {
        self.merger.stop();
    }

    fn postsuspend(&self, target: &Target) {
        self.snapshot.postsuspend(target)
    }

    fn preresume(&self, target: &Target) -> Result {
        self.snapshot.preresume(target)
    }

    fn resume(&self, target: &Target) {
        // Takes the snapshot's exceptions over, if it waits to.
        self.snapshot.resume(target);
        let snap = &self.snapshot.snap;
        // It acts as an origin: writes split as the origin's would be.
        let split = self.merger.registry.min_chunk(snap.state.cfg.origin_dev);
        self.split_boundary.store(split, Ordering::Relaxed);
        self.merger.step.store(split, Ordering::Relaxed);
        self.merger.start(&self.wq);
    }
}
