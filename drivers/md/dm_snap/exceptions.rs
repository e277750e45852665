// SPDX-License-Identifier: GPL-2.0

//! The complete exceptions of a snapshot: `dm_snap_core::exception_table`
//! on kernel vectors. The bucket heads and the directory are `KVVec`s, a
//! block of nodes a `KVec` of 4080 bytes (one `kmalloc-4k` object).
//!
//! The buckets are allocated when the table is made (`ctr` or the
//! persistent store's load), sized for the COW device as C sizes them,
//! with a first block of nodes. The load allocates the blocks as it goes.
//! The I/O path inserts without allocating while a node is free or left
//! in the last block, that is for 169 of every 170 exceptions that take a
//! node; for the others, it allocates the block with the table's lock
//! dropped, and inserts again. As C's `alloc_completed_exception()`, it
//! asks with `GFP_NOIO`, then once more with `GFP_ATOMIC`, before the
//! snapshot is invalidated for want of memory.
//!
//! C counterpart: `struct dm_exception_table` for `s->complete` and its
//! allocation in `init_hash_tables()`, and the `exception_cache` of
//! `alloc_completed_exception()`, in `drivers/md/dm-snap.c`.
//!
//! Locks: the snapshot's `complete`, a reader/writer semaphore around the
//! table, written with the snapshot's `inner` held.

#![deny(unsafe_code)]

use crate::dm_snap_core::{
    exception_table::{self, Node, Reserve, Wants, BLOCK_NODES, NO_NODE},
    runs::{self, Removed},
};
use kernel::{alloc::Flags, prelude::*};

pub(crate) use exception_table::Insert;

type Block = KVec<Node>;
type Dir = KVVec<Option<Block>>;

/// Blocks and a directory allocated for an insertion ahead of it, what
/// [`ExceptionTable::wants`] asked for.
#[derive(Default)]
pub(crate) struct Spare(Reserve<Block, Dir>);

impl Spare {
    /// What `wants` asks for, for the I/O path: each part allocated with
    /// `GFP_NOIO`, or if that fails with `GFP_ATOMIC` (C:
    /// `alloc_completed_exception()`). What could not be allocated is
    /// left out: the insertion then fails with [`Insert::NoMem`].
    pub(crate) fn new(wants: Wants) -> Self {
        Self(reserve(wants, &[GFP_NOIO, GFP_ATOMIC]))
    }
}

/// What `wants` asks for, each part allocated with the first of `flags`
/// that succeeds; what none could allocate is left out.
fn reserve(wants: Wants, flags: &[Flags]) -> Reserve<Block, Dir> {
    Reserve {
        block: if wants.block {
            flags.iter().find_map(|&f| new_block(f).ok())
        } else {
            None
        },
        dir: wants
            .dir
            .and_then(|n| flags.iter().find_map(|&f| new_dir(n, f).ok())),
    }
}

fn new_block(flags: Flags) -> Result<Block> {
    Ok(KVec::from_elem(Node::EMPTY, BLOCK_NODES, flags)?)
}

fn new_dir(n: usize, flags: Flags) -> Result<Dir> {
    let mut dir = KVVec::with_capacity(n, flags)?;
    for _ in 0..n {
        dir.push(None, flags)?;
    }
    Ok(dir)
}

/// The complete exceptions: origin chunk to COW chunk.
pub(crate) struct ExceptionTable(exception_table::ExceptionTable<KVVec<u32>, Block, Dir>);

impl ExceptionTable {
    /// A table for a COW device of `cow_chunks` chunks, its buckets and
    /// a first block of nodes allocated now (`GFP_KERNEL`: a
    /// constructor's).
    pub(crate) fn new(cow_chunks: u64) -> Result<Self> {
        let order = runs::table_order(cow_chunks);
        let heads = KVVec::from_elem(NO_NODE, 1 << order, GFP_KERNEL)?;
        let mut table = exception_table::ExceptionTable::new(order, heads, KVVec::new());
        let wants = table.wants();
        let first = reserve(wants, &[GFP_KERNEL]);
        if first.block.is_none() || first.dir.is_none() != wants.dir.is_none() {
            return Err(ENOMEM);
        }
        table.provide(first);
        Ok(Self(table))
    }

    /// A table with no buckets: it holds nothing and takes nothing.
    pub(crate) fn empty() -> Self {
        Self(exception_table::ExceptionTable::new(
            0,
            KVVec::new(),
            KVVec::new(),
        ))
    }

    /// The COW chunk of origin chunk `chunk` (C: `dm_lookup_exception()`).
    pub(crate) fn get(&self, chunk: u64) -> Option<u64> {
        self.0.get(chunk)
    }

    /// Whether origin chunk `chunk` has an exception.
    pub(crate) fn contains(&self, chunk: u64) -> bool {
        self.0.contains(chunk)
    }

    /// Adds the exception `old_chunk` to `new_chunk` (C:
    /// `dm_insert_exception()`), allocating a block with `flags` if it
    /// needs one: the load's insertion.
    pub(crate) fn insert(
        &mut self,
        old_chunk: u64,
        new_chunk: u64,
        flags: Flags,
    ) -> Result<(), Insert> {
        self.0
            .insert(old_chunk, new_chunk, |wants| reserve(wants, &[flags]))
    }

    /// Adds the exception `old_chunk` to `new_chunk` with what `spare`
    /// holds, allocating nothing: [`Insert::NoMem`] if it needed more
    /// (see [`ExceptionTable::wants`]).
    pub(crate) fn insert_with(
        &mut self,
        old_chunk: u64,
        new_chunk: u64,
        spare: &mut Spare,
    ) -> Result<(), Insert> {
        self.0
            .insert(old_chunk, new_chunk, |_| core::mem::take(&mut spare.0))
    }

    /// What an insertion that takes a node of its own needs allocated
    /// first.
    pub(crate) fn wants(&self) -> Wants {
        self.0.wants()
    }

    /// Removes the exception of `chunk`, the first or last of its run (C:
    /// `__remove_single_exception_chunk()`).
    pub(crate) fn remove(&mut self, chunk: u64) -> Removed {
        self.0.remove(chunk)
    }
}
