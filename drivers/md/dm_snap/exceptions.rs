// SPDX-License-Identifier: GPL-2.0

//! The complete exceptions of a snapshot: a hash table of runs of
//! consecutive chunks (`dm_snap_core::runs`), one bucket a window of old
//! chunks, each bucket a chain of nodes.
//!
//! A sequential fill takes one node for up to 128 chunks; a random one a
//! node of 32 bytes an exception, as C's slab object. A chain is kept in
//! the order of the runs' old chunks: walks stop at the first run past
//! their chunk, and an insertion finds in one walk both whether the chunk
//! is held already and where it goes. The buckets are
//! allocated when the table is made (`ctr` or the persistent store's
//! load), sized for the COW device as C sizes them; the I/O path only
//! takes a node reserved with the pending exception, or allocates one
//! with `GFP_NOIO` if that reservation failed.
//!
//! C counterpart: `struct dm_exception_table` for `s->complete`,
//! `dm_exception_table_init()`, `dm_insert_exception()`,
//! `dm_lookup_exception()` and `__remove_single_exception_chunk()` in
//! `drivers/md/dm-snap.c`.
//!
//! Locks: the snapshot's `complete`, a reader/writer semaphore around the
//! table, written with the snapshot's `inner` held.

#![deny(unsafe_code)]

use crate::dm_snap_core::runs::{self, Removed, Run};
use kernel::{alloc::Flags, prelude::*};

/// One run in a bucket's chain.
pub(crate) struct Node {
    run: Run,
    next: Option<KBox<Node>>,
}

/// A node allocated before it is needed: an exception completes without
/// allocating.
pub(crate) struct Spare(KBox<Node>);

impl Spare {
    /// A node for a later [`ExceptionTable::insert`].
    pub(crate) fn new(flags: Flags) -> Result<Self> {
        Ok(Self(KBox::new(
            Node {
                run: Run::one(0, 0),
                next: None,
            },
            flags,
        )?))
    }
}

/// Why [`ExceptionTable::insert`] added nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Insert {
    /// The origin chunk has an exception already.
    Held,
    /// A node was needed and none could be allocated.
    NoMem,
}

/// The complete exceptions: origin chunk to COW chunk.
pub(crate) struct ExceptionTable {
    /// `1 << order` buckets, or none for a table that holds nothing (what
    /// a snapshot handed over keeps).
    order: u32,
    buckets: KVVec<Option<KBox<Node>>>,
}

impl ExceptionTable {
    /// A table for a COW device of `cow_chunks` chunks, its buckets
    /// allocated now (`GFP_KERNEL`: a constructor's).
    pub(crate) fn new(cow_chunks: u64) -> Result<Self> {
        let order = runs::table_order(cow_chunks);
        let n = 1usize << order;
        let mut buckets = KVVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..n {
            buckets.push(None, GFP_KERNEL)?;
        }
        Ok(Self { order, buckets })
    }

    /// A table with no buckets: it holds nothing and takes nothing.
    pub(crate) fn empty() -> Self {
        Self {
            order: 0,
            buckets: KVVec::new(),
        }
    }

    fn bucket(&self, chunk: u64) -> Option<&Option<KBox<Node>>> {
        self.buckets.get(runs::bucket(chunk, self.order))
    }

    /// The COW chunk of origin chunk `chunk` (C: `dm_lookup_exception()`).
    pub(crate) fn get(&self, chunk: u64) -> Option<u64> {
        let mut cur = self.bucket(chunk)?.as_deref();
        while let Some(n) = cur {
            if n.run.old_chunk > chunk {
                // The chain is in order: no later run holds it.
                return None;
            }
            if let Some(new_chunk) = n.run.lookup(chunk) {
                return Some(new_chunk);
            }
            cur = n.next.as_deref();
        }
        None
    }

    /// Whether origin chunk `chunk` has an exception.
    pub(crate) fn contains(&self, chunk: u64) -> bool {
        self.get(chunk).is_some()
    }

    /// Adds the exception `old_chunk` to `new_chunk` (C:
    /// `dm_insert_exception()`): it joins a run it follows on from, or
    /// takes `spare`, or a node allocated with `flags`, in its place in the
    /// chain. Fails with [`Insert::Held`] if `old_chunk` has an exception
    /// already (the table is left as it was), with [`Insert::NoMem`] if it
    /// needed a node and none could be had.
    pub(crate) fn insert(
        &mut self,
        old_chunk: u64,
        new_chunk: u64,
        spare: Option<Spare>,
        flags: Flags,
    ) -> Result<(), Insert> {
        let b = runs::bucket(old_chunk, self.order);
        // `cur`: the link to the first run not passed yet. A run that
        // starts before the chunk is passed if the next one does too.
        let mut cur = self.buckets.get_mut(b).ok_or(Insert::NoMem)?;
        loop {
            let passed = match cur.as_deref_mut() {
                Some(n) if n.run.old_chunk <= old_chunk => {
                    if n.run.lookup(old_chunk).is_some() {
                        return Err(Insert::Held);
                    }
                    let Node { run, next } = n;
                    if !next
                        .as_deref()
                        .is_some_and(|m| m.run.old_chunk <= old_chunk)
                    {
                        // `run` is the last that starts before the chunk.
                        if runs::join(
                            Some(run),
                            next.as_deref_mut().map(|m| &mut m.run),
                            old_chunk,
                            new_chunk,
                        ) {
                            return Ok(());
                        }
                        return link(next, old_chunk, new_chunk, spare, flags);
                    }
                    true
                }
                // The chunk goes before this run, or at the end.
                _ => false,
            };
            if !passed {
                break;
            }
            match cur {
                Some(n) => cur = &mut n.next,
                None => break,
            }
        }
        // No run starts before the chunk.
        if runs::join(
            None,
            cur.as_deref_mut().map(|m| &mut m.run),
            old_chunk,
            new_chunk,
        ) {
            return Ok(());
        }
        link(cur, old_chunk, new_chunk, spare, flags)
    }

    /// Removes the exception of `chunk`, the first or last of its run (C:
    /// `__remove_single_exception_chunk()`).
    pub(crate) fn remove(&mut self, chunk: u64) -> Removed {
        let b = runs::bucket(chunk, self.order);
        let Some(head) = self.buckets.get_mut(b) else {
            return Removed::NotHeld;
        };
        let mut cur = head;
        loop {
            let r = match cur.as_deref_mut() {
                // In order: no run from here on holds it.
                Some(n) if n.run.old_chunk > chunk => return Removed::NotHeld,
                None => return Removed::NotHeld,
                Some(n) => n.run.remove(chunk),
            };
            match r {
                Removed::NotHeld => match cur {
                    Some(n) => cur = &mut n.next,
                    None => return Removed::NotHeld,
                },
                Removed::Empty => {
                    if let Some(mut n) = cur.take() {
                        *cur = n.next.take();
                    }
                    return Removed::Empty;
                }
                r => return r,
            }
        }
    }
}

/// Puts a run of its own for the exception `old_chunk` to `new_chunk` in
/// the chain at `at`, in `spare` or in a node allocated with `flags`.
fn link(
    at: &mut Option<KBox<Node>>,
    old_chunk: u64,
    new_chunk: u64,
    spare: Option<Spare>,
    flags: Flags,
) -> Result<(), Insert> {
    let Spare(mut node) = match spare {
        Some(s) => s,
        None => Spare::new(flags).map_err(|_| Insert::NoMem)?,
    };
    node.run = Run::one(old_chunk, new_chunk);
    node.next = at.take();
    *at = Some(node);
    Ok(())
}

impl Drop for ExceptionTable {
    fn drop(&mut self) {
        // Node by node: dropping a chain as one value would recurse once
        // a node.
        for head in self.buckets.iter_mut() {
            let mut cur = head.take();
            while let Some(mut n) = cur {
                cur = n.next.take();
            }
        }
    }
}
