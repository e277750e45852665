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
//! C counterpart: `snapshot_ctr()`, `snapshot_map()`, `start_copy()` and
//! friends in `drivers/md/dm-snap.c`, with the transient store of
//! `drivers/md/dm-snap-transient.c`. The pending exceptions are in
//! `pending.rs`, the origin write path (`__origin_write()`) in
//! `origin_write.rs`, completion and commit ordering (`copy_callback()`,
//! `pending_complete()`) in `complete.rs`.
//!
//! # Lock order
//!
//! 1. The registry (`Registry::origins`, C's `_origins_lock`): origin
//!    writes hold it for reading while they look at every snapshot of the
//!    origin; constructors, destructors and handovers for writing.
//! 2. A snapshot's `meta` (persistent store: serialises commits).
//! 3. A snapshot's `inner` (C's `s->lock`). Two snapshots' `inner` are
//!    never held at once.
//! 4. The throttle spinlock, the read tracker's locks, a persistent
//!    header's writer: leaves, taken last and alone.
//!
//! `invalidate` runs under `inner` and may sleep (it writes the header and
//! raises the table event); it takes no lock of this list. Nothing that
//! holds `meta` or `inner` takes the registry: the origin writes a
//! completion releases are retried only once its locks are dropped. A
//! writer sleeping for the throttle holds no lock at all (the deadlock of
//! the 2019 dm-devel thread).

#![deny(unsafe_code)]

use super::{
    pending::{Pending, PendingTable},
    persistent::{self, HeaderSlot, LoadError, Metadata},
    read_tracker::{ReadTracker, Tracked},
    registry::Registry,
};
use crate::{
    dm_snap_core::{
        chunk::ChunkSize,
        commit::{Batch, Sequencer},
        disk::{Layout, StoreState},
        table::{self, StoreError, StoreKind, TableError},
        throttle::Throttle,
    },
    COPY_THROTTLE,
};
use core::{
    fmt::Write,
    sync::atomic::{AtomicBool, AtomicU32, Ordering},
};
use kernel::{
    bio::{Bio, BioSlot, OwnedBio},
    c_str,
    device_mapper::{
        kcopyd, Args, CtrError, Device, EndIoBio, EndIoResult, IterateDevices, MapBio, MapResult,
        QueueLimits, StatusType, StatusWriter, TableEvent, Target, TargetOperations,
    },
    mempool::{Mempool, PoolBox},
    new_mutex, new_spinlock, new_waitqueue,
    prelude::*,
    rbtree::{RBTree, RBTreeNodeReservation},
    sync::{Arc, Mutex, SpinLock, WaitQueue},
};

/// Target name, as C's `snapshot_target`.
pub(crate) const NAME: &CStr = c_str!("snapshot");
/// Target version, as C's `snapshot_target`.
pub(crate) const VERSION: [u32; 3] = [1, 16, 0];

/// Pending exceptions kept in reserve for forward progress (C: `MIN_IOS`).
const MIN_IOS: u32 = 256;

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

/// The exception store's allocation state.
pub(super) enum Store {
    /// `N`: sectors of the COW device handed out.
    Transient { next_free: u64 },
    /// `P` and `PO`: the on-disk layout, the allocation state, the batch
    /// of exceptions waiting for a metadata write and the commit order.
    Persistent {
        layout: Layout,
        state: StoreState,
        batch: Batch,
        seq: Sequencer,
        /// `PO`: a full COW device fails snapshot writes instead of
        /// invalidating the snapshot.
        overflow: bool,
        /// The header, written on invalidation.
        header: Arc<HeaderSlot>,
    },
}

/// What the snapshot lock protects.
pub(super) struct Inner {
    pub(super) valid: bool,
    /// `PO`: a snapshot write found the COW device full (C:
    /// `snapshot_overflowed`); writes to the snapshot fail from then on.
    pub(super) overflowed: bool,
    /// Completed exceptions: origin chunk to COW chunk.
    pub(super) complete: RBTree<u64, u64>,
    pub(super) pending: PendingTable,
    pub(super) store: Store,
    /// A snapshot table reloaded on the COW device of a live one: the live
    /// one, whose exceptions this one takes over when it resumes (C:
    /// `__handover_exceptions()`).
    pub(super) handover_from: Option<Arc<SnapState>>,
    /// Persistent store: copies that ended before an earlier-allocated
    /// one and wait in the pending table for their turn to commit; the
    /// pending table is walked for the next one only while there are any.
    pub(super) waiting_turn: u32,
}

/// Why a snapshot is invalidated.
#[derive(Clone, Copy)]
pub(super) enum Invalidate {
    Io,
    NoMem,
}

/// The state a snapshot shares with its copies in flight.
#[pin_data(PinnedDrop)]
pub(crate) struct SnapState {
    pub(super) registry: Arc<Registry>,
    pub(super) origin_dev: u32,
    pub(super) chunk: ChunkSize,
    /// Origin writes at or beyond this sector need no copy.
    pub(super) table_end: u64,
    pub(super) discard_zeroes_cow: bool,
    pub(super) discard_passdown_origin: bool,
    /// Set on resume: only active snapshots copy on origin writes.
    pub(super) active: AtomicBool,
    #[pin]
    pub(super) inner: Mutex<Inner>,
    /// Reads sent to the origin and not completed.
    #[pin]
    pub(super) reads: ReadTracker,
    /// The COW throttle: copies in flight, under a spinlock, and the
    /// writers waiting for room.
    #[pin]
    pub(super) throttle: SpinLock<Throttle>,
    #[pin]
    pub(super) throttle_wait: WaitQueue,
    pub(super) pending_pool: Arc<Mempool<Pending>>,
    pub(super) job_pool: Arc<Mempool<CopyJob>>,
    pub(super) persistent: bool,
    /// Persistent store: the metadata area writes. Its lock serialises
    /// commits and is taken before `inner`.
    #[pin]
    pub(super) meta: Mutex<Option<Metadata>>,
    /// Pending exceptions, as `inner.pending` holds them; kept apart so
    /// that a handover can wait for none to be left.
    pub(super) pending_count: AtomicU32,
    #[pin]
    pub(super) idle_wait: WaitQueue,
    /// Set once the target is suspended, cleared when it resumes.
    pub(super) suspended: AtomicBool,
    /// Set while the snapshot is handed over to another table: origin
    /// writes that need a new copy of it wait (retried writes excepted:
    /// their chunk is copied already), so its copies in flight drain.
    pub(super) draining: AtomicBool,
    /// The table event, raised when the snapshot is invalidated.
    pub(super) event: Arc<TableEvent>,
}

/// A copy in flight, or a chunk being zeroed for a discard.
pub(crate) struct CopyJob {
    pub(super) state: Arc<SnapState>,
    pub(super) chunk: u64,
    /// The bio the job completes: a whole-chunk write, or a discard.
    pub(super) bio: BioSlot,
    pub(super) zero: bool,
}

impl CopyJob {
    /// A job for `chunk` of `state`, from its pool (waits for an element
    /// rather than fail, `GFP_NOIO`).
    fn alloc(state: &Arc<SnapState>, chunk: u64, zero: bool) -> Result<PoolBox<CopyJob>> {
        let job = CopyJob {
            state: state.clone(),
            chunk,
            bio: BioSlot::new(),
            zero,
        };
        Mempool::alloc(&state.job_pool, job, GFP_NOIO)
    }
}

impl SnapState {
    /// A pending exception for `chunk` and the job that will copy it, both
    /// taken before either goes anywhere, so that a copy, once its pending
    /// exception is in, always starts.
    ///
    /// The complete table's node comes along if memory allows; if not,
    /// the completion allocates it, as C does.
    pub(super) fn alloc_copy(
        self: &Arc<Self>,
        chunk: u64,
    ) -> Result<(PoolBox<Pending>, PoolBox<CopyJob>)> {
        let mut pe = Mempool::alloc(&self.pending_pool, Pending::new(chunk), GFP_NOIO)?;
        pe.node = RBTreeNodeReservation::new(GFP_NOIO).ok();
        Ok((pe, CopyJob::alloc(self, chunk, false)?))
    }
}

impl SnapState {
    pub(super) fn invalidate(&self, inner: &mut Inner, why: Invalidate) {
        if !inner.valid {
            return;
        }
        match why {
            Invalidate::Io => pr_err!("Invalidating snapshot: Error reading/writing.\n"),
            Invalidate::NoMem => pr_err!("Invalidating snapshot: Unable to allocate exception.\n"),
        }
        inner.valid = false;
        if let Store::Persistent { header, .. } = &inner.store {
            header.invalidate(self.registry.ksnaphd());
        }
        // dmeventd and `dmsetup wait` learn of it (C: `dm_table_event()`).
        self.event.raise();
    }

    /// Adds `pe` to the pending exceptions.
    pub(super) fn insert_pending(&self, inner: &mut Inner, pe: PoolBox<Pending>) {
        inner.pending.insert(pe);
        self.pending_count.fetch_add(1, Ordering::AcqRel);
    }

    /// Removes the pending exception of `chunk`.
    pub(super) fn remove_pending(&self, inner: &mut Inner, chunk: u64) -> Option<PoolBox<Pending>> {
        let pe = inner.pending.remove(chunk)?;
        if self.pending_count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle_wait.wake_up_all();
        }
        Some(pe)
    }

    /// Allocates the COW chunk for `pe` (C: the stores'
    /// `prepare_exception`); false when the COW device is full. As C, the
    /// COW device's size is read each time: it may have grown.
    pub(super) fn prepare(&self, inner: &mut Inner, pe: &mut Pending, cow_sectors: u64) -> bool {
        match &mut inner.store {
            Store::Transient { next_free } => {
                let chunk_sectors = u64::from(self.chunk.sectors());
                match next_free.checked_add(chunk_sectors) {
                    Some(end) if end <= cow_sectors => {}
                    _ => return false,
                }
                pe.new_chunk = self.chunk.sector_to_chunk(*next_free);
                *next_free += chunk_sectors;
                true
            }
            Store::Persistent {
                layout,
                state,
                batch,
                seq,
                ..
            } => {
                if layout.dev_chunks() != cow_sectors >> self.chunk.shift() {
                    *layout = Layout::new(layout.chunk(), cow_sectors);
                }
                let Some(new_chunk) = state.prepare(layout) else {
                    return false;
                };
                pe.new_chunk = new_chunk;
                pe.seq = seq.allocate();
                batch.prepared();
                true
            }
        }
    }

    /// A snapshot write found no room: `PO` marks the snapshot overflowed,
    /// the others invalidate it.
    pub(super) fn full(&self, inner: &mut Inner) {
        match inner.store {
            Store::Persistent { overflow: true, .. } => {
                if inner.valid && !inner.overflowed {
                    inner.overflowed = true;
                    pr_err!("Snapshot overflowed: Unable to allocate exception.\n");
                }
            }
            _ => self.invalidate(inner, Invalidate::NoMem),
        }
    }

    /// Remaps `bio` into COW chunk `new_chunk`.
    pub(super) fn remap_cow(&self, bio: &mut Bio, new_chunk: u64) {
        let offset = self.chunk.offset_in_chunk(bio.sector());
        bio.set_sector((new_chunk << self.chunk.shift()) + offset);
    }

    /// Takes a slot for a new copy if the throttle has room.
    pub(super) fn try_reserve(&self) -> bool {
        self.throttle.lock().try_reserve(crate::COW_THRESHOLD.get())
    }

    /// Counts a copy started by a completion, which never waits.
    pub(super) fn start_unthrottled(&self) {
        self.throttle.lock().start_unthrottled();
    }

    /// A copy ended, or a reserved slot goes back unused: wakes one waiter
    /// if that made room (C: `account_end_copy()`).
    pub(super) fn release_slot(&self) {
        let wake = self.throttle.lock().release(crate::COW_THRESHOLD.get());
        match wake {
            Some(true) => self.throttle_wait.wake_up(),
            Some(false) => {}
            None => pr_warn!("copy accounting: no copy in flight to end\n"),
        }
    }

    /// Sleeps until a slot is free and takes it (C: `wait_for_in_progress()`).
    /// `release` runs before the task sleeps, to drop the caller's locks.
    pub(super) fn wait_for_slot(&self, release: impl FnOnce()) {
        self.throttle.lock().count_wait();
        self.throttle_wait
            .wait_io_exclusive_then(|| self.try_reserve(), release);
    }

    /// Tracks a read of `chunk` sent to the origin until it completes.
    pub(super) fn track(&self, chunk: u64, data: &mut SnapBio) {
        *data = SnapBio::Tracked(self.reads.track(chunk));
    }
}

#[pinned_drop]
impl PinnedDrop for SnapState {
    fn drop(self: Pin<&mut Self>) {
        // All copies have ended by now (the kcopyd client is gone), so a
        // count left over is a bookkeeping bug (C: `WARN_ON(s->in_progress)`).
        let n = self.throttle.lock().in_progress;
        if n != 0 {
            pr_warn!("snapshot destroyed with {} copies counted in flight\n", n);
        }
    }
}

/// One snapshot: what origin writes need to copy into it. Shared by the
/// target instance and the registry.
pub(crate) struct Snap {
    /// Dropped first: waits for the copies, which use the devices.
    pub(super) kc: kcopyd::Client,
    pub(super) state: Arc<SnapState>,
    pub(super) origin: Device,
    pub(super) cow: Device,
}

impl Snap {
    /// The registry key part that tells snapshots of one origin apart.
    pub(crate) fn id(this: &Arc<Snap>) -> usize {
        let p: *const Snap = &**this;
        p as usize
    }

    /// The chunk size in sectors.
    pub(crate) fn chunk_sectors(&self) -> u32 {
        self.state.chunk.sectors()
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
        self.state.active.load(Ordering::Acquire)
    }

    /// Starts `job`, copying its chunk to COW chunk `new_chunk` (C:
    /// `start_copy()`). Cannot fail: the job was allocated before the
    /// pending exception went in, and whatever happens to the copy is
    /// reported by its completion, which runs in kcopyd's thread, never
    /// under the caller's locks.
    pub(super) fn start_copy(&self, job: PoolBox<CopyJob>, new_chunk: u64) {
        let st = &self.state;
        let shift = st.chunk.shift();
        let src = job.chunk << shift;
        let count = u64::from(st.chunk.sectors()).min(self.origin.sectors().saturating_sub(src));
        let from = self.origin.region(src, count);
        let to = self.cow.region(new_chunk << shift, count);
        if let Err(job) = self.kc.copy::<CopyJob>(&from, &[to], job) {
            // One destination is always accepted; end the job as failed.
            self.kc.prepare_callback::<CopyJob>(job).run(true, 0);
        }
    }

    /// Zeroes the COW chunk a whole-chunk discard maps to, then completes
    /// the discard (C: `zero_exception()`). The zeroing counts as a copy
    /// for the COW throttle, as in C; the caller holds no lock.
    fn zero_exception(&self, bio: OwnedBio) {
        let st = &self.state;
        if !st.try_reserve() {
            st.wait_for_slot(|| ());
        }
        let to = self.cow.region(bio.sector(), u64::from(st.chunk.sectors()));
        let job = match CopyJob::alloc(st, 0, true) {
            Ok(job) => job,
            Err(_) => {
                st.release_slot();
                return bio.io_error();
            }
        };
        if let Err(b) = job.bio.put(bio) {
            st.release_slot();
            return b.io_error();
        }
        if let Err(job) = self.kc.zero::<CopyJob>(&[to], job) {
            self.kc.prepare_callback::<CopyJob>(job).run(true, 0);
        }
    }
}

/// One `snapshot` table line.
pub(crate) struct Snapshot {
    snap: Arc<Snap>,
    registry: Arc<Registry>,
    store: StoreKind,
}

fn table_error(e: TableError) -> CtrError {
    let msg = match e {
        TableError::TooFewArgs => c_str!("requires 4 or more arguments"),
        TableError::FeatureCount => c_str!("Invalid number of feature arguments"),
        TableError::UnknownFeature => c_str!("Unrecognised feature requested"),
        TableError::PassdownWithoutZeroes => {
            c_str!("discard_passdown_origin feature depends on discard_zeroes_cow")
        }
        TableError::Store(_) => c_str!("Couldn't create exception store"),
        TableError::ChunkSizeNotSet => c_str!("Chunk size not set"),
    };
    CtrError::inval(msg)
}

fn load_error(e: LoadError) -> CtrError {
    let err = match e {
        LoadError::NoMem => ENOMEM,
        LoadError::Io(err) => {
            pr_err!("reading snapshot metadata failed\n");
            err
        }
        LoadError::Metadata(m) => {
            pr_err!("{}\n", m.message());
            EINVAL
        }
        LoadError::RepeatedChunk(c) => {
            pr_err!("exception for origin chunk {} repeated in metadata\n", c);
            EINVAL
        }
    };
    CtrError::new(err, c_str!("Failed to read snapshot metadata"))
}

fn nomem<E>(_: E) -> CtrError {
    CtrError::new(ENOMEM, c_str!("Cannot allocate private snapshot structure"))
}

fn store_error(e: StoreError, kind: &str) -> CtrError {
    if e.logs_option() {
        pr_warn!(
            "Unsupported persistent store option: {}\n",
            kind.get(1..).unwrap_or("")
        );
    }
    table_error(TableError::Store(e))
}

impl Snapshot {
    fn build(
        target: &mut Target,
        args: &Args<'_>,
        registry: &Arc<Registry>,
    ) -> Result<Pin<KBox<Self>>, CtrError> {
        let mut strs = KVec::with_capacity(args.len(), GFP_KERNEL).map_err(nomem)?;
        for i in 0..args.len() {
            let s = args.get(i).and_then(|a| a.to_str().ok()).unwrap_or("");
            strs.push(s, GFP_KERNEL).map_err(nomem)?;
        }
        let a = table::parse_snapshot(&strs).map_err(table_error)?;
        let (origin_path, cow_path) = match (args.get(0), args.get(1)) {
            (Some(o), Some(c)) => (o, c),
            _ => return Err(table_error(TableError::TooFewArgs)),
        };
        // Read only, as C: the snapshot never writes its origin through
        // this device, and the origin may refuse writers.
        let origin = target
            .get_device_read_only(origin_path)
            .map_err(|e| CtrError::new(e, c_str!("Cannot get origin device")))?;
        let cow = target
            .get_device(cow_path)
            .map_err(|e| CtrError::new(e, c_str!("Cannot get COW device")))?;
        if cow.same_bdev(&origin) {
            return Err(CtrError::inval(c_str!(
                "COW device cannot be the same as origin device"
            )));
        }
        let (store, chunk) =
            table::parse_store(a.store, a.chunk_size).map_err(|e| store_error(e, a.store))?;
        let block = origin.logical_block_size().max(cow.logical_block_size());
        if let Some(chunk) = chunk {
            chunk
                .fits_block_size(block)
                .map_err(|e| store_error(StoreError::ChunkSize(e), a.store))?;
        }
        let persistent = matches!(store, StoreKind::Persistent { .. });
        let origin_dev = origin.dev_t();
        let pairing_failed = || {
            CtrError::inval(c_str!(
                "Snapshot cow pairing for exception table handover failed"
            ))
        };
        // A table loaded on the COW device of a live snapshot takes that
        // snapshot's exceptions over when it resumes, instead of reading
        // the metadata, which only one table may hold. This look decides
        // which; registering checks it again, atomically (C:
        // `register_snapshot()`).
        let handover_from = registry
            .sharing_cow(origin_dev, cow.dev_t())
            .map_err(|_| pairing_failed())?;
        let chunk = match (&handover_from, store) {
            (Some(src), _) => {
                if src.persistent != persistent {
                    return Err(CtrError::inval(c_str!(
                        "Exception store type differs from the snapshot handed over"
                    )));
                }
                src.chunk
            }
            (None, StoreKind::Transient) => {
                chunk.ok_or_else(|| table_error(TableError::ChunkSizeNotSet))?
            }
            // The header alone: it gives the chunk size. Nothing is written
            // and no exception read until the table holds the COW device.
            (None, StoreKind::Persistent { .. }) => {
                persistent::chunk_size(&cow, chunk, block).map_err(load_error)?
            }
        };
        let pending_pool = Mempool::new(MIN_IOS).map_err(|_| {
            CtrError::new(
                ENOMEM,
                c_str!("Could not allocate mempool for pending exceptions"),
            )
        })?;
        let job_pool = Mempool::new(MIN_IOS).map_err(|_| {
            CtrError::new(
                ENOMEM,
                c_str!("Could not allocate mempool for pending exceptions"),
            )
        })?;
        let pending = PendingTable::new()
            .map_err(|_| CtrError::new(ENOMEM, c_str!("Unable to allocate hash table space")))?;
        let event = target.table_event().map_err(nomem)?;
        let table_end = target.begin() + target.len();
        let waiting_for = handover_from.clone();
        let state = Arc::pin_init(
            pin_init!(SnapState {
                registry: registry.clone(),
                origin_dev,
                chunk,
                table_end,
                discard_zeroes_cow: a.discard_zeroes_cow,
                discard_passdown_origin: a.discard_passdown_origin,
                active: AtomicBool::new(false),
                // The store is filled in below, or handed over on resume.
                inner <- new_mutex!(Inner {
                    valid: true,
                    overflowed: false,
                    complete: RBTree::new(),
                    pending,
                    store: Store::Transient { next_free: 0 },
                    handover_from: waiting_for,
                    waiting_turn: 0,
                }),
                reads <- ReadTracker::new(),
                throttle <- new_spinlock!(Throttle::new(), "dm_snapshot_rs:throttle"),
                throttle_wait <- new_waitqueue!(),
                pending_pool,
                job_pool,
                persistent,
                meta <- new_mutex!(None),
                pending_count: AtomicU32::new(0),
                idle_wait <- new_waitqueue!(),
                suspended: AtomicBool::new(false),
                draining: AtomicBool::new(false),
                event,
            }),
            GFP_KERNEL,
        )
        .map_err(nomem)?;
        let kc = kcopyd::Client::new(&COPY_THROTTLE)
            .map_err(|e| CtrError::new(e, c_str!("Could not create kcopyd client")))?;
        let snap = Arc::new(
            Snap {
                kc,
                state,
                origin,
                cow,
            },
            GFP_KERNEL,
        )
        .map_err(nomem)?;
        target.set_num_flush_bios(1);
        if a.discard_zeroes_cow {
            target.set_num_discard_bios(if a.discard_passdown_origin { 2 } else { 1 });
        }
        target
            .set_max_io_len(chunk.sectors())
            .map_err(|e| CtrError::new(e, c_str!("Cannot set the chunk size as max I/O length")))?;
        let entry = Registry::entry(origin_dev, snap.clone()).map_err(|_| {
            CtrError::new(ENOMEM, c_str!("Snapshot origin struct allocation failed"))
        })?;
        let this = KBox::pin(
            Snapshot {
                snap: snap.clone(),
                registry: registry.clone(),
                store,
            },
            GFP_KERNEL,
        )
        .map_err(nomem)?;
        // From here on, a failure drops `this`, which unregisters.
        // Registered, the snapshot holds its COW device: no other table can
        // load it meanwhile. It is not active, so origin writes pass it by.
        registry
            .register(entry, handover_from.as_ref())
            .map_err(|_| pairing_failed())?;
        if let (None, StoreKind::Persistent { overflow }) = (&handover_from, store) {
            let l = persistent::load(&snap.cow, Some(chunk), block).map_err(load_error)?;
            if l.chunk != chunk {
                return Err(CtrError::inval(c_str!(
                    "COW device changed while the table was loaded"
                )));
            }
            if !l.valid {
                pr_warn!("Snapshot is marked invalid.\n");
            }
            let st = &snap.state;
            let mut inner = st.inner.lock();
            inner.valid = l.valid;
            inner.complete = l.complete;
            inner.store = Store::Persistent {
                layout: l.meta.layout(),
                state: l.state,
                batch: Batch::new(),
                seq: Sequencer::new(),
                overflow,
                header: l.header,
            };
            drop(inner);
            *st.meta.lock() = Some(l.meta);
        }
        Ok(this)
    }

    fn write_status(&self, out: &mut StatusWriter<'_>) {
        let st = &self.snap.state;
        let inner = st.inner.lock();
        let total = self.snap.cow.sectors();
        if !inner.valid {
            let _ = write!(out, "Invalid");
        } else if inner.overflowed {
            let _ = write!(out, "Overflow");
        } else {
            let (used, metadata) = match &inner.store {
                Store::Transient { next_free } => (*next_free, 0),
                Store::Persistent { layout, state, .. } => state.usage(layout),
            };
            let _ = write!(out, "{}/{} {}", used, total, metadata);
        }
    }
}

impl Snapshot {
    /// Takes the exceptions of `src`, the live snapshot on the same COW
    /// device, over (C: `__handover_exceptions()`). Waits until `src` has
    /// no copy in flight, then moves its complete table and store here
    /// under the origin lock, so that no origin write sees both snapshots
    /// or neither; `src` is left invalid and gets no I/O any more.
    fn handover(&self) {
        let dest = &self.snap.state;
        let cow_sectors = self.snap.cow.sectors();
        let whole = self.snap.cow.region(0, cow_sectors);
        let layout = Layout::new(dest.chunk, cow_sectors);
        let Some(first) = dest.inner.lock().handover_from.clone() else {
            return;
        };
        // New copies of the source wait from now on, so the ones in
        // flight drain even while origin writes go on.
        first.draining.store(true, Ordering::Release);
        let src = loop {
            first
                .idle_wait
                .wait_io(|| first.pending_count.load(Ordering::Acquire) == 0);
            let origins = self.registry.write();
            // Under the registry lock: the source cannot go away (and
            // cancel the handover) meanwhile.
            let Some(src) = dest.inner.lock().handover_from.clone() else {
                drop(origins);
                first.end_drain();
                return;
            };
            let mut s = src.inner.lock();
            if src.pending_count.load(Ordering::Acquire) != 0 {
                // A retried origin write started one: wait again.
                drop(s);
                drop(origins);
                continue;
            }
            let valid = s.valid;
            let overflowed = s.overflowed;
            let complete = core::mem::take(&mut s.complete);
            let store = core::mem::replace(&mut s.store, Store::Transient { next_free: 0 });
            s.valid = false;
            drop(s);
            let mut d = dest.inner.lock();
            d.handover_from = None;
            d.valid = valid;
            d.overflowed = overflowed;
            d.complete = complete;
            d.store = store;
            if let Store::Persistent {
                layout: l,
                overflow,
                header,
                ..
            } = &mut d.store
            {
                // The COW device may have grown since (lvextend).
                *l = layout;
                *overflow = matches!(self.store, StoreKind::Persistent { overflow: true });
                header.rebind(whole, layout);
            }
            drop(d);
            // Active before the registry lock goes: no origin write may
            // find the source invalid and the destination not yet active.
            dest.active.store(true, Ordering::Release);
            drop(origins);
            break src;
        };
        src.end_drain();
        // No copy of `src` is in flight and none starts: its commits are
        // over once its metadata lock is free.
        let meta = src.meta.lock().take();
        if let Some(mut m) = meta {
            m.rebind(whole, layout);
            *dest.meta.lock() = Some(m);
        }
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // No origin write starts a copy for us after this, and a table
        // waiting to take our exceptions over is told it never will;
        // dropping the last reference then waits for the copies in flight
        // (the kcopyd client).
        let dev = self.snap.state.origin_dev;
        drop(self.registry.unregister(dev, &self.snap));
    }
}

impl SnapState {
    /// The handover of this snapshot is over (or cancelled): the origin
    /// writes that waited go on.
    fn end_drain(&self) {
        self.draining.store(false, Ordering::Release);
        self.idle_wait.wake_up_all();
    }

    /// Whether this snapshot, not yet resumed, waits to take the exceptions
    /// of `src` over.
    pub(crate) fn awaits_handover_from(&self, src: &Arc<SnapState>) -> bool {
        self.inner
            .lock()
            .handover_from
            .as_ref()
            .is_some_and(|h| Arc::ptr_eq(h, src))
    }

    /// `src` goes away before this snapshot took its exceptions over: it
    /// never will, and it cannot serve the snapshot without them (C:
    /// `snapshot_dtr()`, "Cancelling snapshot handover.").
    pub(crate) fn cancel_handover_from(&self, src: &Arc<SnapState>) {
        let mut inner = self.inner.lock();
        if inner
            .handover_from
            .as_ref()
            .is_some_and(|h| Arc::ptr_eq(h, src))
        {
            inner.handover_from = None;
            inner.valid = false;
            pr_err!("Cancelling snapshot handover.\n");
        }
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
        Self::build(target, args, registry)
    }

    fn map(&self, _target: &Target, mut bio: MapBio, data: &mut SnapBio) -> MapResult {
        let snap = &*self.snap;
        let st = &snap.state;
        if bio.is_preflush() {
            snap.cow.remap(&mut bio);
            return MapResult::Remapped(bio);
        }
        let chunk = st.chunk.sector_to_chunk(bio.sector());
        let mut inner = st.inner.lock();
        if !inner.valid || (inner.overflowed && !bio.is_read()) {
            return MapResult::Kill(bio);
        }
        let discard = bio.is_discard();
        if discard && st.discard_passdown_origin && bio.target_bio_nr() != 0 {
            // The second copy of a discard goes to the origin, without
            // triggering copies (it frees space there).
            st.track(chunk, data);
            drop(inner);
            snap.origin.remap(&mut bio);
            return MapResult::Remapped(bio);
        }
        if let Some(&new_chunk) = inner.complete.get(&chunk) {
            drop(inner);
            snap.cow.remap(&mut bio);
            st.remap_cow(&mut bio, new_chunk);
            if discard && bio.sectors() == st.chunk.sectors() {
                snap.zero_exception(bio.into_owned());
                return MapResult::Submitted;
            }
            return MapResult::Remapped(bio);
        }
        if discard {
            // Nothing to discard: no exception, and making one would copy.
            drop(inner);
            bio.into_owned().complete();
            return MapResult::Submitted;
        }
        if bio.is_read() {
            st.track(chunk, data);
            drop(inner);
            snap.origin.remap(&mut bio);
            return MapResult::Remapped(bio);
        }
        let mut spare: Option<(PoolBox<Pending>, PoolBox<CopyJob>)> = None;
        // A slot of the COW throttle, taken once a new copy is needed.
        let mut slot = false;
        loop {
            if let Some(pe) = inner.pending.get_mut(chunk) {
                let new_chunk = pe.new_chunk;
                snap.cow.remap(&mut bio);
                st.remap_cow(&mut bio, new_chunk);
                pe.snapshot_bios.push(bio.into_owned());
                drop(inner);
                if slot {
                    st.release_slot();
                }
                return MapResult::Submitted;
            }
            if let Some(&new_chunk) = inner.complete.get(&chunk) {
                drop(inner);
                if slot {
                    st.release_slot();
                }
                snap.cow.remap(&mut bio);
                st.remap_cow(&mut bio, new_chunk);
                return MapResult::Remapped(bio);
            }
            let Some((mut pe, job)) = spare.take() else {
                drop(inner);
                match st.alloc_copy(chunk) {
                    Ok(got) => spare = Some(got),
                    Err(_) => {
                        if slot {
                            st.release_slot();
                        }
                        return MapResult::Requeue(bio);
                    }
                }
                inner = st.inner.lock();
                if !inner.valid {
                    drop(inner);
                    if slot {
                        st.release_slot();
                    }
                    return MapResult::Kill(bio);
                }
                continue;
            };
            if !slot {
                slot = st.try_reserve();
                if !slot {
                    // Snapshot writes are throttled too; nothing to drop but
                    // our own lock.
                    drop(inner);
                    st.wait_for_slot(|| ());
                    slot = true;
                    spare = Some((pe, job));
                    inner = st.inner.lock();
                    if !inner.valid {
                        drop(inner);
                        st.release_slot();
                        return MapResult::Kill(bio);
                    }
                    continue;
                }
            }
            if !st.prepare(&mut inner, &mut pe, snap.cow.sectors()) {
                st.full(&mut inner);
                drop(inner);
                st.release_slot();
                return MapResult::Kill(bio);
            }
            let new_chunk = pe.new_chunk;
            snap.cow.remap(&mut bio);
            st.remap_cow(&mut bio, new_chunk);
            if bio.sectors() == st.chunk.sectors() {
                // The write covers the chunk: it is the copy (C:
                // `start_full_bio()`); its completion completes the
                // exception and gives the slot back.
                st.insert_pending(&mut inner, pe);
                drop(inner);
                *data = SnapBio::FullWrite(snap.kc.prepare_callback::<CopyJob>(job));
                return MapResult::Remapped(bio);
            }
            pe.snapshot_bios.push(bio.into_owned());
            st.insert_pending(&mut inner, pe);
            drop(inner);
            snap.start_copy(job, new_chunk);
            return MapResult::Submitted;
        }
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
                    self.store.as_str(),
                    st.chunk.sectors()
                );
                let n = u32::from(st.discard_zeroes_cow) + u32::from(st.discard_passdown_origin);
                if n > 0 {
                    let _ = write!(out, " {}", n);
                    if st.discard_zeroes_cow {
                        let _ = write!(out, " discard_zeroes_cow");
                    }
                    if st.discard_passdown_origin {
                        let _ = write!(out, " discard_passdown_origin");
                    }
                }
            }
            StatusType::Ima => {
                let (valid, overflowed) = {
                    let inner = st.inner.lock();
                    (inner.valid, inner.overflowed)
                };
                let yn = |b: bool| if b { 'y' } else { 'n' };
                let _ = write!(
                    out,
                    "target_name={},target_version={}.{}.{},",
                    NAME, VERSION[0], VERSION[1], VERSION[2]
                );
                let _ = write!(
                    out,
                    "snap_origin_name={},snap_cow_name={},",
                    snap.origin.name(),
                    snap.cow.name()
                );
                let _ = write!(
                    out,
                    "snap_valid={},snap_merge_failed=n,snapshot_overflowed={};",
                    yn(valid),
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
                let t = *self.snap.state.throttle.lock();
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
        if st.discard_zeroes_cow {
            // As C: all discards are split on chunk boundaries.
            limits.set_discard_granularity(st.chunk.sectors());
            limits.set_max_hw_discard_sectors(st.chunk.sectors());
        }
    }

    fn postsuspend(&self, _target: &Target) {
        self.snap.state.suspended.store(true, Ordering::Release);
    }

    fn preresume(&self, _target: &Target) -> Result {
        let st = &self.snap.state;
        if self.registry.handover_waits_for(st.origin_dev, &self.snap) {
            pr_err!("Unable to resume snapshot source until handover completes.\n");
            return Err(EINVAL);
        }
        let inner = st.inner.lock();
        if let Some(src) = &inner.handover_from {
            if !src.suspended.load(Ordering::Acquire) {
                pr_err!("Unable to perform snapshot handover until source is suspended.\n");
                return Err(EINVAL);
            }
        }
        Ok(())
    }

    fn resume(&self, _target: &Target) {
        let st = &self.snap.state;
        self.handover();
        st.suspended.store(false, Ordering::Release);
        st.active.store(true, Ordering::Release);
    }
}
