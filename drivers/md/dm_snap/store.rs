// SPDX-License-Identifier: GPL-2.0

//! The exception store: where a snapshot's COW chunks come from, and how
//! its completed exceptions become durable.
//!
//! [`ExceptionStore`] is the interface, with two implementations: the
//! transient store (`N`), which keeps nothing on disk, and the in-memory
//! half of the persistent store (`P`, `PO`), whose metadata I/O is in
//! `persistent.rs`. A snapshot holds one in a [`Store`], under its lock.
//!
//! C counterpart: `struct dm_exception_store_type` in
//! `drivers/md/dm-exception-store.h`, with `drivers/md/dm-snap-transient.c`
//! and `drivers/md/dm-snap-persistent.c`.

#![deny(unsafe_code)]

use super::persistent::HeaderSlot;
use crate::dm_snap_core::{
    chunk::ChunkSize,
    commit::{Batch, CommitAction},
    disk::{Layout, StoreState},
    transient::Transient,
};
use core::ops::{Deref, DerefMut};
use kernel::{device_mapper::kcopyd::Region, sync::Arc, workqueue::OwnedQueue};

/// An exception store (C: `struct dm_exception_store_type`). The snapshot
/// calls it under its lock.
pub(crate) trait ExceptionStore: Send {
    /// A free COW chunk for a new exception, or `None` when the COW device,
    /// of `cow_sectors` now (it may have grown), is full (C:
    /// `prepare_exception`).
    fn prepare_exception(&mut self, cow_sectors: u64) -> Option<u64>;

    /// Takes the next completed exception, in allocation order (C:
    /// `commit_exception`): what must happen before it is durable.
    fn commit_exception(&mut self) -> Commit;

    /// Forgets the exceptions added since the last metadata write, which
    /// will never be written; returns how many there were.
    fn take_batched(&mut self) -> u64;

    /// Sectors allocated and metadata sectors, for the status line (C:
    /// `usage`).
    fn usage(&self) -> (u64, u64);

    /// The snapshot was invalidated: a persistent store says so on disk
    /// and waits until it is written (C: `drop_snapshot`).
    fn drop_snapshot(&self, ksnaphd: &OwnedQueue);

    /// The store now serves the table it was handed over to, whose COW
    /// device is `cow`, of `cow_sectors` (C: the swap of stores in
    /// `__handover_exceptions()`; the device may have grown).
    fn handed_over(&mut self, cow: Region, cow_sectors: u64);
}

/// What a completed exception needs before it is durable.
pub(crate) enum Commit {
    /// Nothing: it is complete at once.
    Now,
    /// It goes at `index` of the metadata area being filled, as the `nth`
    /// exception batched since the last write; then the area is written,
    /// or the write is left to a later commit.
    Area {
        index: u64,
        nth: u64,
        write: Option<AreaWrite>,
    },
}

/// A metadata area write that a commit asks for.
pub(crate) struct AreaWrite {
    /// The area to write.
    pub(crate) area: u64,
    /// The next area, zeroed on disk first when this one is full.
    pub(crate) next: Option<u64>,
    /// The exceptions batched by the write, completed once it is done.
    pub(crate) batched: u64,
}

/// The transient store (`N`, C: `dm-snap-transient.c`).
pub(crate) struct TransientStore {
    chunk: ChunkSize,
    alloc: Transient,
}

impl TransientStore {
    /// A store with nothing allocated.
    pub(crate) fn new(chunk: ChunkSize) -> Self {
        Self {
            chunk,
            alloc: Transient::new(),
        }
    }
}

impl ExceptionStore for TransientStore {
    fn prepare_exception(&mut self, cow_sectors: u64) -> Option<u64> {
        self.alloc.prepare(self.chunk, cow_sectors)
    }

    fn commit_exception(&mut self) -> Commit {
        Commit::Now
    }

    fn take_batched(&mut self) -> u64 {
        0
    }

    fn usage(&self) -> (u64, u64) {
        self.alloc.usage()
    }

    fn drop_snapshot(&self, _ksnaphd: &OwnedQueue) {}

    fn handed_over(&mut self, _cow: Region, _cow_sectors: u64) {}
}

/// The persistent store's allocation and batching state (`P`, `PO`, C:
/// `struct pstore` without its I/O, which is [`super::persistent`]'s).
pub(crate) struct PersistentStore {
    layout: Layout,
    state: StoreState,
    batch: Batch,
    /// The header, written on invalidation.
    header: Arc<HeaderSlot>,
}

impl PersistentStore {
    /// The store as its metadata left it (or a new one, `state` fresh).
    pub(crate) fn new(layout: Layout, state: StoreState, header: Arc<HeaderSlot>) -> Self {
        Self {
            layout,
            state,
            batch: Batch::new(),
            header,
        }
    }
}

impl PersistentStore {
    /// The allocation state and layout, for a merge (which allocates
    /// nothing, so no commit changes them meanwhile).
    pub(crate) fn merge_state(&self) -> (StoreState, Layout) {
        (self.state, self.layout)
    }

    /// The state a merge step left.
    pub(crate) fn set_merge_state(&mut self, state: StoreState) {
        self.state = state;
    }
}

impl ExceptionStore for PersistentStore {
    fn prepare_exception(&mut self, cow_sectors: u64) -> Option<u64> {
        let chunk = self.layout.chunk();
        if self.layout.dev_chunks() != chunk.sector_to_chunk(cow_sectors) {
            self.layout = Layout::new(chunk, cow_sectors);
        }
        let new_chunk = self.state.prepare(&self.layout)?;
        self.batch.prepared();
        Some(new_chunk)
    }

    fn commit_exception(&mut self) -> Commit {
        let (index, action) = self.batch.commit(&mut self.state, &self.layout);
        let nth = self.batch.batched - 1;
        let write = match action {
            CommitAction::Defer => None,
            CommitAction::Write { area, next } => Some(AreaWrite {
                area,
                next,
                batched: self.batch.written(),
            }),
        };
        Commit::Area { index, nth, write }
    }

    fn take_batched(&mut self) -> u64 {
        self.batch.written()
    }

    fn usage(&self) -> (u64, u64) {
        self.state.usage(&self.layout)
    }

    fn drop_snapshot(&self, ksnaphd: &OwnedQueue) {
        self.header.invalidate(ksnaphd);
    }

    fn handed_over(&mut self, cow: Region, cow_sectors: u64) {
        self.layout = Layout::new(self.layout.chunk(), cow_sectors);
        self.header.rebind(cow, self.layout);
    }
}

/// A snapshot's exception store: one of the two (C: `s->store`).
pub(crate) enum Store {
    Transient(TransientStore),
    Persistent(PersistentStore),
}

impl Store {
    /// The persistent store, if it is one: only it can be merged.
    pub(crate) fn persistent(&mut self) -> Option<&mut PersistentStore> {
        match self {
            Store::Transient(_) => None,
            Store::Persistent(s) => Some(s),
        }
    }
}

impl Deref for Store {
    type Target = dyn ExceptionStore;

    fn deref(&self) -> &Self::Target {
        match self {
            Store::Transient(s) => s,
            Store::Persistent(s) => s,
        }
    }
}

impl DerefMut for Store {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            Store::Transient(s) => s,
            Store::Persistent(s) => s,
        }
    }
}
