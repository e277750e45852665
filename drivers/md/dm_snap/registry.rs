// SPDX-License-Identifier: GPL-2.0

//! The snapshots of each origin device (C: `_origins` under `_origins_lock`).
//!
//! Origin writes look their snapshots up here, under the read lock; a
//! snapshot joins in its constructor and leaves in its destructor, under the
//! write lock.
//!
//! The registry also decides who holds a COW device: a table joins only if
//! no other table on its COW device is loading, and at most one live table
//! is there (whose exceptions the new one takes over when it resumes).
//! Joining checks and inserts under one write lock, before the new table
//! reads any metadata (C: `register_snapshot()`).
//!
//! Lock order: the registry lock before any snapshot's own locks. Nothing
//! is allocated under the write lock: origin writes hold the read lock
//! while they wait for copies to start, and reclaim may wait for them.

#![deny(unsafe_code)]

use super::state::{Snap, SnapState};
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::{
    c_str, new_rwsem, new_waitqueue,
    prelude::*,
    rbtree::{RBTree, RBTreeNode},
    sync::{
        rwsem::{ReadGuard, WriteGuard},
        Arc, RwSemaphore, WaitQueue,
    },
    workqueue::{OwnedQueue, WQ_MEM_RECLAIM},
};

/// Snapshots by (origin `dev_t`, identity): all snapshots of one origin are
/// neighbours.
pub(crate) type Origins = RBTree<(u32, usize), Arc<Snap>>;

/// A snapshot's place in the registry, allocated before it joins.
pub(crate) struct Entry {
    node: RBTreeNode<(u32, usize), Arc<Snap>>,
    origin: u32,
    cow: u32,
    merge: bool,
}

/// The registry shared by both target types.
#[pin_data]
pub(crate) struct Registry {
    #[pin]
    origins: RwSemaphore<Origins>,
    /// The persistent stores' header writes on invalidation (C: `ksnaphd`),
    /// drained when the module goes.
    ksnaphd: OwnedQueue,
    /// Pending exceptions completed, in any snapshot: a merge waiting for
    /// the copies it started in other snapshots waits for this to move (C:
    /// `_pending_exceptions_done_count`, `_pending_exceptions_done`).
    pending_done: AtomicU64,
    #[pin]
    pending_wait: WaitQueue,
}

impl Registry {
    /// An empty registry.
    pub(crate) fn new() -> Result<Arc<Self>> {
        let ksnaphd = OwnedQueue::new(c_str!("ksnaphd"), WQ_MEM_RECLAIM, 0)?;
        Arc::pin_init(
            pin_init!(Self {
                origins <- new_rwsem!(RBTree::new(), "dm_snapshot_rs:origins"),
                ksnaphd,
                pending_done: AtomicU64::new(0),
                pending_wait <- new_waitqueue!(),
            }),
            GFP_KERNEL,
        )
    }

    /// The queue of the persistent stores' header writes.
    pub(crate) fn ksnaphd(&self) -> &OwnedQueue {
        &self.ksnaphd
    }

    /// A pending exception left its table (C:
    /// `increment_pending_exceptions_done_count()`).
    pub(crate) fn pending_done(&self) {
        self.pending_done.fetch_add(1, Ordering::AcqRel);
        self.pending_wait.wake_up_all();
    }

    /// The count of pending exceptions done so far.
    pub(crate) fn pending_done_count(&self) -> u64 {
        self.pending_done.load(Ordering::Acquire)
    }

    /// Waits until a pending exception is done after `seen` was counted.
    pub(crate) fn wait_pending_done(&self, seen: u64) {
        self.pending_wait
            .wait_io(|| self.pending_done.load(Ordering::Acquire) != seen);
    }

    /// The place of `snap`, a snapshot of origin `dev`, in the registry.
    pub(crate) fn entry(dev: u32, snap: Arc<Snap>) -> Result<Entry> {
        let key = (dev, Snap::id(&snap));
        let cow = snap.cow_dev();
        let merge = snap.state().cfg.merge;
        Ok(Entry {
            merge,
            node: RBTreeNode::new(key, snap, GFP_KERNEL)?,
            origin: dev,
            cow,
        })
    }

    /// Adds a snapshot, if the snapshots on its COW device are still what
    /// the constructor found (C: `__validate_exception_handover()`): none,
    /// or the live one `src` whose exceptions it takes over. Otherwise
    /// another table got there first, and this one is refused.
    pub(crate) fn register(&self, entry: Entry, src: Option<&Arc<SnapState>>) -> Result {
        let mut origins = self.origins.write();
        let found = sharing(&origins, entry.origin, entry.cow)?;
        let same = match (found.as_ref(), src) {
            (None, None) => true,
            (Some(f), Some(s)) => Arc::ptr_eq(f.state(), s),
            _ => false,
        };
        if !same {
            return Err(EINVAL);
        }
        // One merging snapshot per origin (C: `__validate_exception_handover()`).
        if entry.merge && snaps_of(&origins, entry.origin).any(|s| s.state().cfg.merge) {
            return Err(EBUSY);
        }
        origins.insert(entry.node);
        Ok(())
    }

    /// Removes a snapshot; once this returns no origin write starts new
    /// copies for it, and a table that waited to take its exceptions over
    /// is invalid (C: `snapshot_dtr()` cancels the handover).
    pub(crate) fn unregister(&self, dev: u32, snap: &Arc<Snap>) -> Option<Arc<Snap>> {
        let mut cancelled = None;
        let mut origins = self.origins.write();
        let gone = origins.remove(&(dev, Snap::id(snap)));
        for dest in snaps_of(&origins, dev).filter(|s| s.cow_dev() == snap.cow_dev()) {
            // At most one table waits to take over one COW device's
            // exceptions.
            if let Some(h) = dest.state().cancel_handover_from(snap.state()) {
                cancelled = Some(h);
            }
        }
        drop(origins);
        // Not under the registry lock (see `cancel_handover_from()`).
        drop(cancelled);
        gone
    }

    /// The shared state of the live snapshot of origin `dev` on COW device
    /// `cow`, whose exceptions a new table on that COW device takes over
    /// (C: `__find_snapshots_sharing_cow()`). An error if a table not yet
    /// resumed is on it already (only one may wait for a handover), or two
    /// live ones are.
    ///
    /// Never a reference to the `Snap` itself: its devices belong to the
    /// other table, whose destructor must drop the last reference.
    pub(crate) fn sharing_cow(&self, dev: u32, cow: u32) -> Result<Option<Arc<SnapState>>> {
        Ok(sharing(&self.origins.read(), dev, cow)?.map(|s| s.state().clone()))
    }

    /// Whether a table waits to take the exceptions of `src` over: then
    /// `src` may not resume before it has (C: `snapshot_preresume()`).
    pub(crate) fn handover_waits_for(&self, dev: u32, src: &Arc<Snap>) -> bool {
        let origins = self.origins.read();
        let found = snaps_of(&origins, dev)
            .filter(|s| s.cow_dev() == src.cow_dev() && !Arc::ptr_eq(s, src))
            .any(|s| s.state().awaits_handover_from(src.state()));
        found
    }

    /// Write access: no origin write is between its snapshots meanwhile.
    pub(crate) fn write(&self) -> WriteGuard<'_, Origins> {
        self.origins.write()
    }

    /// Read access, for origin writes.
    pub(crate) fn read(&self) -> ReadGuard<'_, Origins> {
        self.origins.read()
    }

    /// The smallest chunk size of origin `dev`'s snapshots, in sectors; C's
    /// `__minimum_chunk_size()`, which gives 2^31 when there are none.
    pub(crate) fn min_chunk(&self, dev: u32) -> u32 {
        snaps_of(&self.origins.read(), dev)
            .map(|s| s.chunk_sectors())
            .min()
            .unwrap_or(1 << 31)
    }
}

/// The live snapshot of origin `dev` on COW device `cow`, if any; an error
/// if a table there has not resumed yet, or two live ones are there.
fn sharing(origins: &Origins, dev: u32, cow: u32) -> Result<Option<&Arc<Snap>>> {
    let mut src = None;
    for snap in snaps_of(origins, dev).filter(|s| s.cow_dev() == cow) {
        if !snap.is_active() || src.is_some() {
            return Err(EINVAL);
        }
        src = Some(snap);
    }
    Ok(src)
}

/// The snapshots of origin `dev`.
pub(crate) fn snaps_of(origins: &Origins, dev: u32) -> impl Iterator<Item = &Arc<Snap>> {
    origins
        .iter()
        .filter(move |((d, _), _)| *d == dev)
        .map(|(_, s)| s)
}
