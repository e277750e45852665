// SPDX-License-Identifier: GPL-2.0

//! Pending exceptions: chunks being copied into the COW device, and the
//! bios that wait for them.
//!
//! C counterpart: `struct dm_snap_pending_exception` and the pending
//! `struct dm_exception_table` of `drivers/md/dm-snap.c`
//! (`__lookup_pending_exception()`, `__insert_pending_exception()`).

#![deny(unsafe_code)]

use kernel::{
    bio::{BioList, OwnedBio},
    mempool::PoolBox,
    prelude::*,
};

/// Buckets of the pending exception table (a power of two).
const PENDING_BUCKETS: usize = 512;

/// A chunk being copied (C: `struct dm_snap_pending_exception`).
pub(crate) struct Pending {
    pub(super) chunk: u64,
    pub(super) new_chunk: u64,
    /// Origin writes waiting for the copy; mapped again once it is done.
    pub(super) origin_bios: BioList,
    /// Snapshot writes waiting for the copy, already remapped to the COW.
    pub(super) snapshot_bios: BioList,
    /// Persistent store: the allocation order, in which copies commit.
    pub(super) seq: u64,
    /// Persistent store: the copy ended with an error.
    pub(super) copy_failed: bool,
    /// Persistent store: the copy ended, and the exception waits for its
    /// turn to commit.
    pub(super) copy_ended: bool,
    /// Persistent store: a whole-chunk write that was the copy, completed
    /// once the exception is on disk.
    pub(super) full_bio: Option<OwnedBio>,
    next: Option<PoolBox<Pending>>,
}

impl Pending {
    pub(super) fn new(chunk: u64) -> Self {
        Self {
            chunk,
            new_chunk: 0,
            origin_bios: BioList::new(),
            snapshot_bios: BioList::new(),
            seq: 0,
            copy_failed: false,
            copy_ended: false,
            full_bio: None,
            next: None,
        }
    }
}

/// The pending exceptions, a hash of chains through the pool elements, so
/// inserting never allocates.
pub(super) struct PendingTable {
    buckets: KVec<Option<PoolBox<Pending>>>,
}

impl PendingTable {
    pub(super) fn new() -> Result<Self> {
        let mut buckets = KVec::with_capacity(PENDING_BUCKETS, GFP_KERNEL)?;
        for _ in 0..PENDING_BUCKETS {
            buckets.push(None, GFP_KERNEL)?;
        }
        Ok(Self { buckets })
    }

    fn bucket(chunk: u64) -> usize {
        (chunk as usize) & (PENDING_BUCKETS - 1)
    }

    pub(super) fn get_mut(&mut self, chunk: u64) -> Option<&mut Pending> {
        let mut cur = self.buckets.get_mut(Self::bucket(chunk))?.as_deref_mut();
        while let Some(p) = cur {
            if p.chunk == chunk {
                return Some(p);
            }
            cur = p.next.as_deref_mut();
        }
        None
    }

    pub(super) fn insert(&mut self, mut pe: PoolBox<Pending>) {
        if let Some(head) = self.buckets.get_mut(Self::bucket(pe.chunk)) {
            pe.next = head.take();
            *head = Some(pe);
        }
    }

    /// The first pending exception that `f` accepts, in no particular
    /// order: a walk over every one.
    pub(super) fn find(&mut self, f: impl Fn(&Pending) -> bool) -> Option<&mut Pending> {
        for head in self.buckets.iter_mut() {
            let mut cur = head.as_deref_mut();
            while let Some(p) = cur {
                if f(p) {
                    return Some(p);
                }
                cur = p.next.as_deref_mut();
            }
        }
        None
    }

    pub(super) fn remove(&mut self, chunk: u64) -> Option<PoolBox<Pending>> {
        let mut cur = self.buckets.get_mut(Self::bucket(chunk))?;
        while cur.as_ref().is_some_and(|p| p.chunk != chunk) {
            cur = &mut cur.as_mut()?.next;
        }
        let mut pe = cur.take()?;
        *cur = pe.next.take();
        Some(pe)
    }
}
