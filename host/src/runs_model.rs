// SPDX-License-Identifier: GPL-2.0

//! The kernel's exception table (`dm_snap_core::exception_table`) on
//! vectors, for the host tests and the fuzz target, with a check of every
//! invariant against a naive model (a map of every exception).

extern crate alloc;

use crate::dm_snap_core::{
    exception_table::{ExceptionTable, Insert, Node, Reserve, BLOCK_NODES, NO_NODE},
    runs::{self, Removed},
};
use alloc::{collections::BTreeMap, vec, vec::Vec};

type Inner = ExceptionTable<Vec<u32>, Vec<Node>, Vec<Option<Vec<Node>>>>;

/// The table, with the blocks and directories it asks for allocated at
/// once, as the kernel's load does.
pub struct Table {
    t: Inner,
}

impl Table {
    /// `1 << order` empty buckets.
    pub fn new(order: u32) -> Self {
        Self {
            t: ExceptionTable::new(order, vec![NO_NODE; 1 << order], Vec::new()),
        }
    }

    /// The table itself.
    pub fn inner(&mut self) -> &mut Inner {
        &mut self.t
    }

    /// Adds an exception; false if the chunk is held already (nothing
    /// changes).
    pub fn insert(&mut self, old: u64, new: u64) -> bool {
        match self.t.insert(old, new, |w| Reserve {
            block: w.block.then(|| vec![Node::EMPTY; BLOCK_NODES]),
            dir: w.dir.map(|n| vec![None; n]),
        }) {
            Ok(()) => true,
            Err(Insert::Held) => false,
            Err(Insert::NoMem) => panic!("no memory on the host"),
        }
    }

    /// The COW chunk of `chunk`.
    pub fn lookup(&self, chunk: u64) -> Option<u64> {
        self.t.get(chunk)
    }

    pub fn remove(&mut self, chunk: u64) -> Removed {
        self.t.remove(chunk)
    }

    /// The runs held.
    pub fn entries(&self) -> usize {
        (0..self.t.buckets()).map(|b| self.t.runs(b).count()).sum()
    }

    /// Every run: within its window, in its bucket, the right length, and
    /// each bucket in order of old chunks, its runs apart; every node in a
    /// chain or free, none in both or lost.
    pub fn check(&self, model: &BTreeMap<u64, u64>) {
        let mut held = 0;
        let mut nodes = 0;
        for i in 0..self.t.buckets() {
            let b: Vec<_> = self.t.runs(i).collect();
            nodes += b.len();
            for w in b.windows(2) {
                assert!(w[0].last() < w[1].old_chunk, "{:?} then {:?}", w[0], w[1]);
            }
            for r in &b {
                assert_eq!(runs::window(r.old_chunk), runs::window(r.last()), "{r:?}");
                assert_eq!(
                    runs::bucket(r.old_chunk, self.t.buckets().trailing_zeros()),
                    i,
                    "{r:?}"
                );
                for c in r.old_chunk..=r.last() {
                    assert_eq!(model.get(&c), r.lookup(c).as_ref(), "chunk {c} of {r:?}");
                }
                held += r.chunks();
            }
        }
        assert_eq!(nodes + self.t.free_nodes(), self.t.nodes(), "nodes lost");
        assert!(self.t.nodes() <= self.t.blocks() * BLOCK_NODES);
        assert_eq!(held, model.len() as u64);
        for (&o, &n) in model {
            assert_eq!(self.lookup(o), Some(n), "chunk {o}");
        }
    }
}
