// SPDX-License-Identifier: GPL-2.0

//! One snapshot's state: what its table line set, its exception tables
//! and store under the snapshot lock, and the small parts that each own
//! their lock and wait queue (read tracker, COW throttle, handover drain).
//!
//! The state is shared by the table instance, the registry (through
//! [`Snap`]) and the copies in flight, which may outlive the table.
//!
//! C counterpart: `struct dm_snapshot` in `drivers/md/dm-snap.c`, and the
//! exception sequence of `copy_callback()`.
//!
//! # Lock order
//!
//! 1. The registry (`Registry::origins`, C's `_origins_lock`): origin
//!    writes hold it for reading while they look at every snapshot of the
//!    origin; constructors, destructors and handovers for writing.
//! 2. A snapshot's `meta` (persistent store: serialises commits).
//! 3. A snapshot's `inner` (C's `s->lock`). Two snapshots' `inner` are
//!    never held at once.
//! 4. A snapshot's `complete` table, a reader/writer semaphore: changed
//!    with `inner` held, looked up under `inner` or alone (the mapping of
//!    a snapshot read, as C looks up under `down_read(&s->lock)`).
//! 5. The COW throttle's spinlock, the read tracker's locks, a persistent
//!    header's writer: leaves, taken last and alone.
//!
//! [`SnapState::invalidate`] runs under `inner` and may sleep (it writes
//! the header and raises the table event); it takes no lock of this list.
//! Nothing that holds `meta` or `inner` takes the registry: the origin
//! writes a completion releases are retried only once its locks are
//! dropped. A writer sleeping for the throttle or for a drain holds no
//! lock at all (the deadlock of the 2019 dm-devel thread).
//!
//! A merge (`merge.rs`) takes the registry only with no lock of its
//! snapshot held, then its `meta` for the rest of a step, and `inner`
//! under it for short moments; it waits for its copy and for the writes
//! to the chunks it merges with `inner` dropped.
//!
//! Memory reclaim comes before all of them: an origin write may be issued
//! by reclaim (`kswapd` writing the origin's page cache back, swap on the
//! origin), and it waits for what holds these locks. So nothing allocates
//! under them with a mask that may enter the filesystem or start I/O
//! (`GFP_NOIO` at most). Each constructor shows lockdep this order once
//! ([`SnapState::prime_lockdep`]), so that an inversion or an allocation
//! against it is reported the first time it happens, not only when the two
//! sides meet.

#![deny(unsafe_code)]

use super::{
    copy::CopyJob,
    drain::Drain,
    exceptions::ExceptionTable,
    pending::{Pending, PendingTable},
    persistent::Metadata,
    read_tracker::ReadTracker,
    registry::Registry,
    store::Store,
    throttle::CowThrottle,
};
use crate::dm_snap_core::{
    chunk::ChunkSize,
    commit::Sequencer,
    merge::Run,
    table::{Features, StoreKind},
};
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::{
    alloc::{fs_reclaim_scope, Flags},
    bio::{Bio, BioList},
    device_mapper::{kcopyd, Device, TableEvent},
    mempool::{Mempool, PoolBox},
    prelude::*,
    sync::{Arc, Mutex, RwSemaphore},
};

/// What a `snapshot` table line set; never changes.
pub(crate) struct Config {
    /// The origin's device number, the snapshot's key in the registry.
    pub(crate) origin_dev: u32,
    pub(crate) chunk: ChunkSize,
    /// `N`, `P` or `PO`: the one place that says whether the store is
    /// persistent, and whether a full one overflows.
    pub(crate) store: StoreKind,
    /// Origin writes at or beyond this sector need no copy.
    pub(crate) table_end: u64,
    pub(crate) features: Features,
    /// A `snapshot-merge` table: it merges its exceptions into the origin
    /// and gets no new ones.
    pub(crate) merge: bool,
}

impl Config {
    /// Whether the exceptions are kept on the COW device.
    pub(crate) fn persistent(&self) -> bool {
        matches!(self.store, StoreKind::Persistent { .. })
    }
}

/// A table reloaded on the COW device of a live snapshot waits to take
/// the live one's exceptions over when it resumes (C:
/// `__handover_exceptions()`).
pub(super) struct Handover {
    /// The live snapshot.
    pub(super) src: Arc<SnapState>,
    /// The store the live snapshot gets in exchange for its own, made by
    /// this table's constructor, as C swaps the two tables' stores.
    pub(super) spare: Store,
}

/// What the snapshot lock protects.
pub(super) struct Inner {
    pub(super) pending: PendingTable,
    pub(super) store: Store,
    /// The order in which exceptions were allocated, and in which a
    /// persistent store commits them (C: `exception_start_sequence`,
    /// `exception_complete_sequence`).
    pub(super) seq: Sequencer,
    /// Persistent store: copies that ended before an earlier-allocated
    /// one and wait in the pending table for their turn to commit; the
    /// pending table is walked for the next one only while there are any.
    pub(super) waiting_turn: u32,
    /// Set while this table waits to take a live snapshot's exceptions
    /// over.
    pub(super) handover: Option<Handover>,
    /// `snapshot-merge`: the chunks being merged, whose writes wait in
    /// `queued` (C: `first_merging_chunk`, `num_merging_chunks`,
    /// `bios_queued_during_merge`).
    pub(super) merging: Option<Run>,
    pub(super) queued: BioList,
    /// `snapshot-merge`: the merge stopped on an error (C:
    /// `merge_failed`); I/O goes on.
    pub(super) merge_failed: bool,
}

/// Why a snapshot is invalidated.
#[derive(Clone, Copy)]
pub(super) enum Invalidate {
    Io,
    NoMem,
}

/// The state a snapshot shares with its copies in flight.
#[pin_data]
pub(crate) struct SnapState {
    pub(super) cfg: Config,
    pub(super) registry: Arc<Registry>,
    /// Set on resume: only active snapshots copy on origin writes.
    pub(super) active: AtomicBool,
    /// Set once the target is suspended, cleared when it resumes.
    pub(super) suspended: AtomicBool,
    /// The snapshot is valid (C: `s->valid`). Set by the constructor, then
    /// changed only with `inner` held ([`SnapState::set_valid`]), so it is
    /// stable for whoever holds `inner`; read without a lock where a stale
    /// answer is harmless (the mapping of a snapshot read).
    pub(super) valid: AtomicBool,
    /// `PO`: a snapshot write found the COW device full (C:
    /// `snapshot_overflowed`); writes to the snapshot fail from then on.
    /// Changed only with `inner` held ([`SnapState::set_overflowed`]).
    pub(super) overflowed: AtomicBool,
    #[pin]
    pub(super) inner: Mutex<Inner>,
    /// Completed exceptions: origin chunk to COW chunk. Changed only with
    /// `inner` held as well; the mapping of a snapshot read looks up in
    /// it without `inner`.
    #[pin]
    pub(super) complete: RwSemaphore<ExceptionTable>,
    /// Reads sent to the origin and not completed.
    #[pin]
    pub(super) reads: ReadTracker,
    pub(super) throttle: Arc<CowThrottle>,
    /// The pending exceptions, counted for a handover.
    #[pin]
    pub(super) drain: Drain,
    pub(super) pending_pool: Arc<Mempool<Pending>>,
    pub(super) job_pool: Arc<Mempool<CopyJob>>,
    /// Persistent store: the metadata area writes. Its lock serialises
    /// commits and is taken before `inner`.
    #[pin]
    pub(super) meta: Mutex<Option<Metadata>>,
    /// The table event, raised when the snapshot is invalidated.
    pub(super) event: Arc<TableEvent>,
}

impl SnapState {
    /// Takes the locks of the lock order above once, in that order, as
    /// if from memory reclaim (C has no counterpart; `dma_resv_lockdep()`
    /// primes lockdep the same way).
    pub(super) fn prime_lockdep(&self) {
        fs_reclaim_scope(GFP_KERNEL, || {
            let _origins = self.registry.read();
            let _meta = self.meta.lock();
            let _inner = self.inner.lock();
            let _complete = self.complete.write();
        });
    }

    /// A pending exception for `chunk` and the job that will copy it, both
    /// taken before either goes anywhere, so that a copy, once its pending
    /// exception is in, always starts. `flags`: `GFP_NOIO`, which waits
    /// for an element of the pools rather than fail, or `GFP_NOWAIT`.
    pub(super) fn alloc_copy(
        self: &Arc<Self>,
        chunk: u64,
        flags: Flags,
    ) -> Result<(PoolBox<Pending>, PoolBox<CopyJob>)> {
        let pe = Mempool::alloc(&self.pending_pool, Pending::new(chunk), flags)?;
        Ok((pe, CopyJob::alloc(self, chunk, false, flags)?))
    }

    /// Marks the snapshot invalid (C: `__invalidate_snapshot()`): the
    /// persistent header says so on disk, and dmeventd learns of it.
    pub(super) fn invalidate(&self, inner: &mut Inner, why: Invalidate) {
        if !self.valid() {
            return;
        }
        match why {
            Invalidate::Io => pr_err!("Invalidating snapshot: Error reading/writing.\n"),
            Invalidate::NoMem => pr_err!("Invalidating snapshot: Unable to allocate exception.\n"),
        }
        self.set_valid(inner, false);
        inner.store.drop_snapshot(self.registry.ksnaphd());
        // dmeventd and `dmsetup wait` learn of it (C: `dm_table_event()`).
        self.event.raise();
    }

    /// Adds `pe` to the pending exceptions.
    pub(super) fn insert_pending(&self, inner: &mut Inner, pe: PoolBox<Pending>) {
        inner.pending.insert(pe);
        self.drain.get();
    }

    /// Removes the pending exception of `chunk`.
    pub(super) fn remove_pending(&self, inner: &mut Inner, chunk: u64) -> Option<PoolBox<Pending>> {
        let pe = inner.pending.remove(chunk)?;
        self.drain.put();
        self.registry.pending_done();
        Some(pe)
    }

    /// Allocates the COW chunk for `pe` from the store, and its place in
    /// the commit order; false when the COW device is full. As C, the COW
    /// device's size is read each time: it may have grown.
    pub(super) fn prepare(&self, inner: &mut Inner, pe: &mut Pending, cow_sectors: u64) -> bool {
        let Some(new_chunk) = inner.store.prepare_exception(cow_sectors) else {
            return false;
        };
        pe.new_chunk = new_chunk;
        pe.seq = inner.seq.allocate();
        true
    }

    /// A snapshot write found no room: `PO` marks the snapshot overflowed,
    /// the others invalidate it.
    pub(super) fn full(&self, inner: &mut Inner) {
        if self.cfg.store == (StoreKind::Persistent { overflow: true }) {
            if self.valid() && !self.overflowed() {
                self.set_overflowed(inner, true);
                pr_err!("Snapshot overflowed: Unable to allocate exception.\n");
            }
        } else {
            self.invalidate(inner, Invalidate::NoMem);
        }
    }

    /// Whether origin writes copy into this snapshot.
    pub(super) fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Whether the snapshot is valid (C: `s->valid`).
    pub(super) fn valid(&self) -> bool {
        self.valid.load(Ordering::Acquire)
    }

    /// Sets whether the snapshot is valid; `inner` is this snapshot's,
    /// held.
    pub(super) fn set_valid(&self, _inner: &mut Inner, valid: bool) {
        self.valid.store(valid, Ordering::Release);
    }

    /// Whether a `PO` snapshot overflowed (C: `snapshot_overflowed`).
    pub(super) fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }

    /// Sets whether the snapshot overflowed; `inner` is this snapshot's,
    /// held.
    pub(super) fn set_overflowed(&self, _inner: &mut Inner, overflowed: bool) {
        self.overflowed.store(overflowed, Ordering::Release);
    }
}

/// One snapshot: what origin writes need to copy into it. Shared by the
/// target instance and the registry.
///
/// Its devices stay open until no exception of it is pending: a copy into
/// its COW device may run on another snapshot's kcopyd client, when one
/// read of the origin serves several snapshots (`Copies`).
pub(crate) struct Snap {
    /// Dropped first: waits for the copies it runs, which use the devices.
    pub(super) kc: kcopyd::Client,
    pub(super) state: Arc<SnapState>,
    pub(super) origin: Device,
    pub(super) cow: Device,
}

impl Drop for Snap {
    fn drop(&mut self) {
        // No origin write finds this snapshot any more; the copies into it
        // that other snapshots' clients run end, and with them its pending
        // exceptions (C: `snapshot_dtr()` waits for
        // `pending_exceptions_count`). Then its own client goes, and the
        // devices.
        self.state.drain.wait_idle();
    }
}

impl Snap {
    /// The registry key part that tells snapshots of one origin apart.
    pub(crate) fn id(this: &Arc<Snap>) -> usize {
        let p: *const Snap = &**this;
        p as usize
    }

    /// The chunk size in sectors.
    pub(crate) fn chunk_sectors(&self) -> u32 {
        self.state.cfg.chunk.sectors()
    }

    /// The state the snapshot shares with its copies in flight.
    pub(crate) fn state(&self) -> &Arc<SnapState> {
        &self.state
    }

    /// The COW device's number.
    pub(crate) fn cow_dev(&self) -> u32 {
        self.cow.dev_t()
    }

    /// Whether the snapshot has been resumed: origin writes copy into it.
    pub(crate) fn is_active(&self) -> bool {
        self.state.is_active()
    }

    /// Remaps `bio` to its place in COW chunk `new_chunk`.
    pub(super) fn remap_cow(&self, bio: &mut Bio, new_chunk: u64) {
        let sector = self.state.cfg.chunk.remap(new_chunk, bio.sector());
        self.cow.remap(bio);
        bio.set_sector(sector);
    }
}
