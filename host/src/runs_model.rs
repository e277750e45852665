// SPDX-License-Identifier: GPL-2.0

//! A table of exception runs built the way the kernel's is
//! (`drivers/md/dm_snap/exceptions.rs`: buckets of runs kept in the order of
//! their old chunks), on vectors, for the host tests and the fuzz target,
//! with a check of every invariant against a naive model (a map of every
//! exception).

extern crate alloc;

use crate::dm_snap_core::runs::{self, Removed, Run};
use alloc::{collections::BTreeMap, vec::Vec};

/// A table of `1 << order` buckets, each a list of runs in order.
pub struct Table {
    order: u32,
    buckets: Vec<Vec<Run>>,
}

impl Table {
    /// `1 << order` empty buckets.
    pub fn new(order: u32) -> Self {
        Self {
            order,
            buckets: (0..1usize << order).map(|_| Vec::new()).collect(),
        }
    }

    fn bucket(&mut self, chunk: u64) -> &mut Vec<Run> {
        let b = runs::bucket(chunk, self.order);
        &mut self.buckets[b]
    }

    /// Adds an exception as the kernel's chain does, in order of old
    /// chunks; false if the chunk is held already (nothing changes).
    pub fn insert(&mut self, old: u64, new: u64) -> bool {
        let b = self.bucket(old);
        let i = b.partition_point(|r| r.old_chunk <= old);
        if i > 0 && b[i - 1].lookup(old).is_some() {
            return false;
        }
        let (before, after) = b.split_at_mut(i);
        if !runs::join(before.last_mut(), after.first_mut(), old, new) {
            b.insert(i, Run::one(old, new));
        }
        true
    }

    /// The COW chunk of `chunk`.
    pub fn lookup(&self, chunk: u64) -> Option<u64> {
        runs::lookup(&self.buckets[runs::bucket(chunk, self.order)], chunk)
    }

    pub fn remove(&mut self, chunk: u64) -> Removed {
        let b = self.bucket(chunk);
        for i in 0..b.len() {
            match b[i].remove(chunk) {
                Removed::NotHeld => continue,
                Removed::Empty => {
                    b.remove(i);
                    return Removed::Empty;
                }
                r => return r,
            }
        }
        Removed::NotHeld
    }

    /// The runs held.
    pub fn entries(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum()
    }

    /// Every run: within its window, in its bucket, the right length, and
    /// each bucket in order of old chunks, its runs apart.
    pub fn check(&self, model: &BTreeMap<u64, u64>) {
        let mut held = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            for w in b.windows(2) {
                assert!(w[0].last() < w[1].old_chunk, "{:?} then {:?}", w[0], w[1]);
            }
            for r in b {
                assert_eq!(runs::window(r.old_chunk), runs::window(r.last()), "{r:?}");
                assert_eq!(runs::bucket(r.old_chunk, self.order), i, "{r:?}");
                for c in r.old_chunk..=r.last() {
                    assert_eq!(model.get(&c), r.lookup(c).as_ref(), "chunk {c} of {r:?}");
                }
                held += r.chunks();
            }
        }
        assert_eq!(held, model.len() as u64);
        for (&o, &n) in model {
            assert_eq!(self.lookup(o), Some(n), "chunk {o}");
        }
    }
}
