// SPDX-License-Identifier: GPL-2.0

//! The snapshots of each origin device (C: `_origins` under `_origins_lock`).
//!
//! Origin writes look their snapshots up here, under the read lock; a
//! snapshot joins in its constructor and leaves in its destructor, under the
//! write lock.

use super::snapshot::{Snap, SnapState};
use kernel::{
    new_rwsem,
    prelude::*,
    rbtree::RBTree,
    sync::{
        rwsem::{ReadGuard, WriteGuard},
        Arc, RwSemaphore,
    },
};

/// Snapshots by (origin `dev_t`, identity): all snapshots of one origin are
/// neighbours.
pub(crate) type Origins = RBTree<(u32, usize), Arc<Snap>>;

/// The registry shared by both target types.
#[pin_data]
pub(crate) struct Registry {
    #[pin]
    origins: RwSemaphore<Origins>,
}

impl Registry {
    /// An empty registry.
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                origins <- new_rwsem!(RBTree::new(), "dm_snapshot_rs:origins"),
            }),
            GFP_KERNEL,
        )
    }

    /// Adds a snapshot of origin `dev`.
    pub(crate) fn register(&self, dev: u32, snap: Arc<Snap>) -> Result {
        let key = (dev, Snap::id(&snap));
        self.origins
            .write()
            .try_create_and_insert(key, snap, GFP_KERNEL)?;
        Ok(())
    }

    /// Removes a snapshot; once this returns no origin write starts new
    /// copies for it.
    pub(crate) fn unregister(&self, dev: u32, snap: &Arc<Snap>) -> Option<Arc<Snap>> {
        self.origins.write().remove(&(dev, Snap::id(snap)))
    }

    /// The shared state of the live snapshot of origin `dev` on COW device
    /// `cow`, whose exceptions a new table on that COW device takes over
    /// (C: `__find_snapshots_sharing_cow()`). An error if a table not yet
    /// resumed is on it already: only one may wait for a handover.
    ///
    /// Never a reference to the `Snap` itself: its devices belong to the
    /// other table, whose destructor must drop the last reference.
    pub(crate) fn sharing_cow(&self, dev: u32, cow: u32) -> Result<Option<Arc<SnapState>>> {
        let origins = self.origins.read();
        let mut src = None;
        for snap in snaps_of(&origins, dev).filter(|s| s.cow_dev() == cow) {
            if !snap.is_active() {
                return Err(EINVAL);
            }
            src = Some(snap.state().clone());
        }
        Ok(src)
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

/// The snapshots of origin `dev`.
pub(crate) fn snaps_of(origins: &Origins, dev: u32) -> impl Iterator<Item = &Arc<Snap>> {
    origins
        .iter()
        .filter(move |((d, _), _)| *d == dev)
        .map(|(_, s)| s)
}
