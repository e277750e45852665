// SPDX-License-Identifier: GPL-2.0

//! The complete exceptions of a snapshot: a hash table of runs of
//! consecutive chunks ([`runs`]), a bucket a window of old chunks, each
//! bucket a chain of nodes kept in the order of their runs' old chunks, so
//! that a walk stops at the first run past its chunk and an insertion
//! finds in one walk both whether the chunk is held already and where it
//! goes.
//!
//! The nodes live in blocks of [`BLOCK_NODES`] (4 KiB each), found through
//! a directory, and link to each other by index: the block's in the
//! directory, shifted, and the node's in the block, so that following a
//! link is a shift, a mask and two loads. A node is 24 bytes, where
//! C's slab object is 32, and taking one is a pop from the free list or
//! the next unused node of the last block, not a call into the allocator:
//! a load of a million exceptions at random allocates six thousand blocks,
//! not a million nodes. The table never allocates itself. The bucket
//! heads, the directory and the blocks are the caller's (`KVVec`s in the
//! kernel, `Vec`s in the host tests), and an insertion that needs a block
//! or a larger directory asks for them ([`Wants`]) through a callback: the
//! kernel's I/O path allocates them before it takes the table's lock.
//!
//! Every index is checked: a node index that is out of range ends a walk
//! as the end of a chain does, so no input, however wrong, makes the table
//! panic.
//!
//! C counterpart: `struct dm_exception_table` for `s->complete`,
//! `dm_exception_table_init()`, `dm_insert_exception()`,
//! `dm_lookup_exception()`, `__remove_single_exception_chunk()` and
//! `alloc_completed_exception()` in `drivers/md/dm-snap.c`.

use super::runs::{self, Removed, Run};
use core::{marker::PhantomData, ops::DerefMut};

/// The index of no node: the end of a chain or of the free list, and what
/// every bucket head holds in a new table.
pub const NO_NODE: u32 = u32::MAX;

/// One run in a bucket's chain, or a free node: [`Run`]'s fields laid out
/// with the link, in 24 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    old_chunk: u64,
    new_chunk: u64,
    next: u32,
    extra: u8,
}

const _: () = assert!(core::mem::size_of::<Node>() == 24);

impl Node {
    /// A node that holds nothing: what a new block is filled with.
    pub const EMPTY: Node = Node {
        old_chunk: 0,
        new_chunk: 0,
        next: NO_NODE,
        extra: 0,
    };

    #[inline]
    fn run(&self) -> Run {
        Run {
            old_chunk: self.old_chunk,
            new_chunk: self.new_chunk,
            extra: self.extra,
        }
    }

    #[inline]
    fn set_run(&mut self, r: Run) {
        self.old_chunk = r.old_chunk;
        self.new_chunk = r.new_chunk;
        self.extra = r.extra;
    }
}

/// The nodes of a block: 170, so that a block of 4080 bytes is one 4 KiB
/// allocation.
pub const BLOCK_NODES: usize = 4096 / core::mem::size_of::<Node>();

/// A node's index: its block's index shifted by this, or its index in the
/// block.
const SLOT_BITS: u32 = 8;

const _: () = assert!(BLOCK_NODES <= 1 << SLOT_BITS);

/// The most blocks a table has: no node's index is [`NO_NODE`]. That is
/// 2.8 G nodes, 64 GiB of them; a table past it takes no more exceptions,
/// as if out of memory.
pub const MAX_BLOCKS: usize = (1 << (32 - SLOT_BITS)) - 1;

/// The index of node `slot` of block `block`.
#[inline]
fn index(block: u32, slot: u32) -> u32 {
    block << SLOT_BITS | slot
}

/// The directory's length when it first has to grow.
const MIN_DIR: usize = 16;

/// What the next insertion needs that the table does not have, if it
/// takes a node of its own ([`ExceptionTable::wants`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Wants {
    /// A block of [`BLOCK_NODES`] nodes (any content: it is overwritten
    /// before use).
    pub block: bool,
    /// A directory of this many entries, every one `None`, that takes the
    /// place of the current one (the blocks move over).
    pub dir: Option<usize>,
}

/// What the caller gives for a [`Wants`]: the block and the directory, or
/// `None` for what it could not allocate or was not asked for.
#[derive(Debug)]
pub struct Reserve<B, D> {
    /// A block of [`BLOCK_NODES`] nodes.
    pub block: Option<B>,
    /// A larger directory, every entry `None`.
    pub dir: Option<D>,
}

impl<B, D> Default for Reserve<B, D> {
    fn default() -> Self {
        Self {
            block: None,
            dir: None,
        }
    }
}

/// Why [`ExceptionTable::insert`] added nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// The origin chunk has an exception already.
    Held,
    /// A node was needed and none could be had (no block given, or the
    /// table is at [`MAX_BLOCKS`], or has no buckets).
    NoMem,
}

/// The complete exceptions: origin chunk to COW chunk.
///
/// `H` holds the bucket heads (node indices), `B` a block's nodes, `D` the
/// directory of blocks.
pub struct ExceptionTable<H, B, D> {
    /// `1 << order` buckets (or none: a table that holds nothing).
    order: u32,
    heads: H,
    /// Blocks `0..blocks` are in use, the rest of the entries `None`.
    dir: D,
    blocks: u32,
    /// The nodes of the last block handed out so far, in order (all of
    /// them while there is no block): the next one is handed out once the
    /// free list is empty.
    last_used: u32,
    /// The first node of the free list: nodes freed by removals.
    free: u32,
    _blocks: PhantomData<B>,
}

impl<H, B, D> ExceptionTable<H, B, D>
where
    H: DerefMut<Target = [u32]>,
    B: DerefMut<Target = [Node]>,
    D: DerefMut<Target = [Option<B>]>,
{
    /// A table of `heads.len()` buckets, which must be `1 << order`, each
    /// head [`NO_NODE`] (or none at all: the table then holds nothing and
    /// takes nothing); `dir` is the directory, each entry `None`, and may
    /// be empty.
    pub fn new(order: u32, heads: H, dir: D) -> Self {
        Self {
            order,
            heads,
            dir,
            blocks: 0,
            last_used: BLOCK_NODES as u32,
            free: NO_NODE,
            _blocks: PhantomData,
        }
    }

    /// The number of buckets.
    pub fn buckets(&self) -> usize {
        self.heads.len()
    }

    #[inline]
    fn node(&self, i: u32) -> Option<&Node> {
        let slot = (i & ((1 << SLOT_BITS) - 1)) as usize;
        self.dir
            .get((i >> SLOT_BITS) as usize)?
            .as_deref()?
            .get(slot)
    }

    #[inline]
    fn node_mut(&mut self, i: u32) -> Option<&mut Node> {
        let slot = (i & ((1 << SLOT_BITS) - 1)) as usize;
        self.dir
            .get_mut((i >> SLOT_BITS) as usize)?
            .as_deref_mut()?
            .get_mut(slot)
    }

    /// Whether the last block has a node never handed out.
    fn room(&self) -> bool {
        (self.last_used as usize) < BLOCK_NODES
    }

    #[inline]
    fn head(&self, chunk: u64) -> u32 {
        self.heads
            .get(runs::bucket(chunk, self.order))
            .copied()
            .unwrap_or(NO_NODE)
    }

    /// The COW chunk of origin chunk `chunk` (C: `dm_lookup_exception()`).
    #[inline]
    pub fn get(&self, chunk: u64) -> Option<u64> {
        let mut cur = self.head(chunk);
        while let Some(n) = self.node(cur) {
            if n.old_chunk > chunk {
                // The chain is in order: no later run holds it.
                return None;
            }
            if let Some(new_chunk) = n.run().lookup(chunk) {
                return Some(new_chunk);
            }
            cur = n.next;
        }
        None
    }

    /// Whether origin chunk `chunk` has an exception.
    pub fn contains(&self, chunk: u64) -> bool {
        self.get(chunk).is_some()
    }

    /// Adds the exception `old_chunk` to `new_chunk` (C:
    /// `dm_insert_exception()`): it joins the run it follows on from (the
    /// one before it in its chain first, then the one after), or takes a
    /// node of its own in its place in the chain; if no node is free,
    /// `reserve` is called once with what is wanted. Fails with
    /// [`Insert::Held`] if `old_chunk` has an exception already, with
    /// [`Insert::NoMem`] if no node could be had; the exceptions are then
    /// left as they were.
    pub fn insert(
        &mut self,
        old_chunk: u64,
        new_chunk: u64,
        reserve: impl FnOnce(Wants) -> Reserve<B, D>,
    ) -> Result<(), Insert> {
        let b = runs::bucket(old_chunk, self.order);
        let head = *self.heads.get(b).ok_or(Insert::NoMem)?;
        // `prev`: the last run that starts at or before the chunk; `cur`:
        // the first that starts after it.
        let (mut prev, mut cur) = (NO_NODE, head);
        while let Some(n) = self.node(cur) {
            if n.old_chunk > old_chunk {
                break;
            }
            prev = cur;
            cur = n.next;
        }
        if let Some(p) = self.node_mut(prev) {
            let mut r = p.run();
            if r.lookup(old_chunk).is_some() {
                return Err(Insert::Held);
            }
            if r.try_add(old_chunk, new_chunk) {
                p.set_run(r);
                return Ok(());
            }
        }
        if let Some(c) = self.node_mut(cur) {
            let mut r = c.run();
            if r.try_add(old_chunk, new_chunk) {
                c.set_run(r);
                return Ok(());
            }
        }
        let i = self.take_node(reserve).ok_or(Insert::NoMem)?;
        let n = self.node_mut(i).ok_or(Insert::NoMem)?;
        n.set_run(Run::one(old_chunk, new_chunk));
        n.next = cur;
        match self.node_mut(prev) {
            Some(p) => p.next = i,
            None => {
                if let Some(h) = self.heads.get_mut(b) {
                    *h = i;
                }
            }
        }
        Ok(())
    }

    /// Removes the exception of `chunk`, the first or last of its run (C:
    /// `__remove_single_exception_chunk()`); a node left empty goes to
    /// the free list.
    pub fn remove(&mut self, chunk: u64) -> Removed {
        let b = runs::bucket(chunk, self.order);
        let Some(&head) = self.heads.get(b) else {
            return Removed::NotHeld;
        };
        let (mut prev, mut cur) = (NO_NODE, head);
        loop {
            let free = self.free;
            let Some(n) = self.node_mut(cur) else {
                return Removed::NotHeld;
            };
            if n.old_chunk > chunk {
                // In order: no run from here on holds it.
                return Removed::NotHeld;
            }
            let mut r = n.run();
            match r.remove(chunk) {
                Removed::NotHeld => {
                    prev = cur;
                    cur = n.next;
                }
                Removed::Empty => {
                    let next = n.next;
                    *n = Node::EMPTY;
                    n.next = free;
                    self.free = cur;
                    match self.node_mut(prev) {
                        Some(p) => p.next = next,
                        None => {
                            if let Some(h) = self.heads.get_mut(b) {
                                *h = next;
                            }
                        }
                    }
                    return Removed::Empty;
                }
                removed => {
                    n.set_run(r);
                    return removed;
                }
            }
        }
    }

    /// What an insertion that takes a node of its own needs now: nothing
    /// while a node is free; a block, and a larger directory when this
    /// one is full, otherwise. The kernel's I/O path allocates these
    /// before it takes the table's lock and gives them to
    /// [`ExceptionTable::insert`].
    pub fn wants(&self) -> Wants {
        if self.heads.is_empty() || self.free != NO_NODE || self.room() {
            return Wants::default();
        }
        let blocks = self.blocks as usize;
        if blocks < self.dir.len() {
            return Wants {
                block: true,
                dir: None,
            };
        }
        let len = self.dir.len().saturating_mul(2).clamp(MIN_DIR, MAX_BLOCKS);
        if len <= blocks {
            // At MAX_BLOCKS: no node more.
            return Wants::default();
        }
        Wants {
            block: true,
            dir: Some(len),
        }
    }

    /// Takes what `reserve` holds of what the table wants now (see
    /// [`ExceptionTable::wants`]); the rest is dropped. A table made with
    /// a block ahead takes its first exceptions without asking.
    pub fn provide(&mut self, reserve: Reserve<B, D>) {
        let Reserve { block, dir } = reserve;
        if let Some(dir) = dir {
            self.grow(dir);
        }
        if let Some(block) = block {
            if self.wants().block {
                self.add_block(block);
            }
        }
    }

    /// Adds `block` after the last, if it has [`BLOCK_NODES`] nodes and the
    /// directory room for it.
    fn add_block(&mut self, block: B) -> Option<()> {
        if block.len() != BLOCK_NODES {
            return None;
        }
        *self.dir.get_mut(self.blocks as usize)? = Some(block);
        self.blocks += 1;
        self.last_used = 0;
        Some(())
    }

    /// A node for an insertion: from the free list, the last block, or a
    /// block from `reserve`.
    fn take_node(&mut self, reserve: impl FnOnce(Wants) -> Reserve<B, D>) -> Option<u32> {
        if self.free != NO_NODE {
            let i = self.free;
            self.free = self.node(i)?.next;
            return Some(i);
        }
        if !self.room() {
            let wants = self.wants();
            if !wants.block {
                return None;
            }
            let Reserve { block, dir } = reserve(wants);
            if let Some(dir) = dir {
                self.grow(dir);
            }
            self.add_block(block?)?;
        }
        let i = index(self.blocks.checked_sub(1)?, self.last_used);
        self.last_used += 1;
        Some(i)
    }

    /// Moves the blocks to `dir`, if it is larger than the directory, and
    /// makes it the directory.
    fn grow(&mut self, mut dir: D) {
        if dir.len() <= self.dir.len() || dir.len() > MAX_BLOCKS {
            return;
        }
        for (to, from) in dir.iter_mut().zip(self.dir.iter_mut()) {
            *to = from.take();
        }
        self.dir = dir;
    }

    /// The runs of bucket `b`, in chain order (for checks: a chain that
    /// loops is cut after as many runs as there are nodes).
    pub fn runs(&self, b: usize) -> impl Iterator<Item = Run> + '_ {
        let mut cur = self.heads.get(b).copied().unwrap_or(NO_NODE);
        let mut left = self.nodes();
        core::iter::from_fn(move || {
            left = left.checked_sub(1)?;
            let n = self.node(cur)?;
            cur = n.next;
            Some(n.run())
        })
    }

    /// The nodes on the free list (for checks, as [`ExceptionTable::runs`]).
    pub fn free_nodes(&self) -> usize {
        let (mut cur, mut n) = (self.free, 0);
        while let Some(node) = self.node(cur) {
            if n == self.nodes() {
                break;
            }
            n += 1;
            cur = node.next;
        }
        n
    }

    /// The nodes handed out of the blocks so far, in chains or free.
    pub fn nodes(&self) -> usize {
        match self.blocks.checked_sub(1) {
            Some(full) => full as usize * BLOCK_NODES + self.last_used as usize,
            None => 0,
        }
    }

    /// The blocks allocated.
    pub fn blocks(&self) -> usize {
        self.blocks as usize
    }
}
