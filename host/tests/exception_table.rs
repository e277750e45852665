// SPDX-License-Identifier: GPL-2.0

//! The exception table's nodes: blocks taken only when no node is free,
//! the directory grown when full, nodes reused after removals, and an
//! insertion that gets no memory leaving the table as it was.

use dm_snap_host::{
    dm_snap_core::{
        exception_table::{
            ExceptionTable, Insert, Node, Reserve, Wants, BLOCK_NODES, MAX_BLOCKS, NO_NODE,
        },
        runs::{Removed, RUN_CHUNKS},
    },
    runs_model::Table,
};
use std::collections::BTreeMap;

type Raw = ExceptionTable<Vec<u32>, Vec<Node>, Vec<Option<Vec<Node>>>>;
type Res = Reserve<Vec<Node>, Vec<Option<Vec<Node>>>>;

fn give(w: Wants) -> Res {
    Reserve {
        block: w.block.then(|| vec![Node::EMPTY; BLOCK_NODES]),
        dir: w.dir.map(|n| vec![None; n]),
    }
}

/// Old chunks a window apart: every exception takes a node of its own.
fn apart(i: u64) -> u64 {
    i * RUN_CHUNKS
}

// A node is 24 bytes, a block fits 4 KiB, and no node's index is NO_NODE.
const _: () = assert!(std::mem::size_of::<Node>() == 24);
const _: () = assert!(BLOCK_NODES == 170 && BLOCK_NODES * 24 <= 4096);
const _: () = assert!(MAX_BLOCKS * BLOCK_NODES < NO_NODE as usize);

#[test]
fn blocks_are_taken_one_at_a_time_and_the_directory_doubles() {
    let mut t = Table::new(4);
    let mut model = BTreeMap::new();
    let n = 40 * BLOCK_NODES as u64 + 1;
    for i in 0..n {
        assert!(t.insert(apart(i), i + 2));
        model.insert(apart(i), i + 2);
    }
    t.check(&model);
    let raw = t.inner();
    assert_eq!(raw.nodes() as u64, n);
    assert_eq!(raw.blocks(), 41);
    // The next node is in the last block: nothing wanted.
    assert_eq!(raw.wants(), Wants::default());
}

#[test]
fn the_io_path_gets_what_it_wants_beforehand() {
    let mut t: Raw = ExceptionTable::new(2, vec![NO_NODE; 4], Vec::new());
    // A new table has no block: the first node wants one, and a directory.
    assert_eq!(
        t.wants(),
        Wants {
            block: true,
            dir: Some(16)
        }
    );
    // Nothing given: refused, and nothing changed.
    assert_eq!(t.insert(5, 2, |_| Reserve::default()), Err(Insert::NoMem));
    assert_eq!(t.get(5), None);
    assert_eq!(t.nodes(), 0);
    // A directory but no block: still refused, the directory kept.
    assert_eq!(
        t.insert(5, 2, |w| Reserve {
            block: None,
            dir: w.dir.map(|n| vec![None; n]),
        }),
        Err(Insert::NoMem)
    );
    assert_eq!(
        t.wants(),
        Wants {
            block: true,
            dir: None
        }
    );
    // A block of the wrong size is refused too.
    assert_eq!(
        t.insert(5, 2, |_| Reserve {
            block: Some(vec![Node::EMPTY; 3]),
            dir: None,
        }),
        Err(Insert::NoMem)
    );
    // What it wants, allocated before the insertion, as the kernel's
    // completion does outside the table's lock.
    let mut r = give(t.wants());
    assert_eq!(t.insert(5, 2, |_| std::mem::take(&mut r)), Ok(()));
    assert_eq!(t.get(5), Some(2));
    // Joins its run: no node, and the reserve is not asked.
    assert_eq!(t.insert(6, 3, |_| panic!("asked")), Ok(()));
    assert_eq!(t.wants(), Wants::default());
    assert_eq!(t.nodes(), 1);
}

#[test]
fn removed_nodes_are_reused_before_new_ones() {
    let mut t = Table::new(3);
    let mut model = BTreeMap::new();
    for i in 0..300 {
        assert!(t.insert(apart(i), 1000 + i));
        model.insert(apart(i), 1000 + i);
    }
    for i in (0..300).step_by(3) {
        assert_eq!(t.remove(apart(i)), Removed::Empty);
        model.remove(&apart(i));
    }
    t.check(&model);
    assert_eq!(t.inner().free_nodes(), 100);
    for i in 300..400 {
        assert!(t.insert(apart(i), 1000 + i));
        model.insert(apart(i), 1000 + i);
    }
    t.check(&model);
    let raw = t.inner();
    assert_eq!(raw.free_nodes(), 0);
    assert_eq!(raw.nodes(), 300);
    assert_eq!(raw.blocks(), 2);
}

#[test]
fn a_table_without_buckets_holds_nothing_and_takes_nothing() {
    let mut t: Raw = ExceptionTable::new(0, Vec::new(), Vec::new());
    assert_eq!(t.wants(), Wants::default());
    assert_eq!(t.insert(1, 1, give), Err(Insert::NoMem));
    assert_eq!(t.get(1), None);
    assert_eq!(t.remove(1), Removed::NotHeld);
}

/// Heads that point nowhere (a caller's mistake) end the walk as the end
/// of a chain does: no panic.
#[test]
fn wrong_heads_do_not_panic() {
    let mut t: Raw = ExceptionTable::new(1, vec![7, 1 << 30], Vec::new());
    assert_eq!(t.get(0), None);
    assert_eq!(t.remove(0), Removed::NotHeld);
    assert_eq!(t.insert(0, 9, give), Ok(()));
    assert_eq!(t.get(0), Some(9));
}

#[test]
fn what_is_provided_ahead_is_taken_only_if_wanted() {
    let mut t: Raw = ExceptionTable::new(2, vec![NO_NODE; 4], Vec::new());
    // Made with a first block, as the kernel makes it.
    t.provide(give(t.wants()));
    assert_eq!(t.blocks(), 1);
    assert_eq!(t.wants(), Wants::default());
    // Not wanted: dropped.
    t.provide(give(Wants {
        block: true,
        dir: None,
    }));
    assert_eq!(t.blocks(), 1);
    for i in 0..BLOCK_NODES as u64 {
        assert_eq!(t.insert(apart(i), i, |_| panic!("asked")), Ok(()));
    }
    assert_eq!(
        t.wants(),
        Wants {
            block: true,
            dir: None
        }
    );
    // A smaller directory is not taken either.
    t.provide(Reserve {
        block: None,
        dir: Some(vec![None; 4]),
    });
    assert_eq!(t.insert(apart(1000), 7, give), Ok(()));
    assert_eq!(t.blocks(), 2);
    assert_eq!(t.get(apart(1000)), Some(7));
}
