// SPDX-License-Identifier: GPL-2.0

//! When the persistent store writes metadata, as C's
//! persistent_commit_exception(), and in-order release of completed copies.

use dm_snap_host::dm_snap_core::{
    chunk::ChunkSize,
    commit::{Batch, CommitAction, Dirty, Sequencer},
    disk::{Layout, StoreState, EXCEPTION_SIZE},
};

// 8-sector chunks: 256 exceptions per 4 KiB area.
fn layout() -> Layout {
    Layout::new(ChunkSize::new(8).unwrap(), 1 << 20)
}

#[test]
fn one_write_for_a_batch() {
    let (l, mut st, mut b) = (layout(), StoreState::new(), Batch::new());
    for _ in 0..5 {
        b.prepared();
    }
    for i in 0..4 {
        assert_eq!(b.commit(&mut st, &l), (i, CommitAction::Defer));
    }
    // The last one in flight writes the area for all five.
    assert_eq!(
        b.commit(&mut st, &l),
        (
            4,
            CommitAction::Write {
                area: 0,
                next: None
            }
        )
    );
    assert_eq!(b.written(), 5);
    assert_eq!(b.written(), 0);
    assert_eq!(st.current_committed, 5);
}

#[test]
fn a_lone_exception_is_written_at_once() {
    let (l, mut st, mut b) = (layout(), StoreState::new(), Batch::new());
    b.prepared();
    assert_eq!(
        b.commit(&mut st, &l),
        (
            0,
            CommitAction::Write {
                area: 0,
                next: None
            }
        )
    );
    assert_eq!(b.written(), 1);
}

#[test]
fn a_full_area_is_written_and_the_next_zeroed() {
    let (l, mut st, mut b) = (layout(), StoreState::new(), Batch::new());
    let epa = l.exceptions_per_area();
    // Always more in flight: only the full area forces a write.
    for _ in 0..epa + 2 {
        b.prepared();
    }
    for i in 0..epa - 1 {
        assert_eq!(b.commit(&mut st, &l), (i, CommitAction::Defer));
    }
    assert_eq!(
        b.commit(&mut st, &l),
        (
            epa - 1,
            CommitAction::Write {
                area: 0,
                next: Some(1)
            }
        )
    );
    assert_eq!(b.written(), epa);
    assert_eq!((st.current_area, st.current_committed), (1, 0));
    // The next exceptions go to area 1, from index 0.
    assert_eq!(b.commit(&mut st, &l), (0, CommitAction::Defer));
    assert_eq!(
        b.commit(&mut st, &l),
        (
            1,
            CommitAction::Write {
                area: 1,
                next: None
            }
        )
    );
}

#[test]
fn in_flight_never_underflows() {
    let (l, mut st, mut b) = (layout(), StoreState::new(), Batch::new());
    // A commit with nothing prepared (a store loaded with copies already
    // accounted elsewhere) still writes.
    assert!(matches!(
        b.commit(&mut st, &l).1,
        CommitAction::Write { .. }
    ));
    assert_eq!(b.in_flight, 0);
}

#[test]
fn sequencer_releases_in_allocation_order() {
    let mut s = Sequencer::new();
    let seqs: Vec<u64> = (0..4).map(|_| s.allocate()).collect();
    assert_eq!(seqs, [0, 1, 2, 3]);
    assert_eq!(s.outstanding(), 4);
    // 2 and 1 complete first: they must wait for 0.
    assert!(!s.is_next(2) && !s.is_next(1));
    assert!(s.is_next(0));
    assert_eq!(s.complete(), 1);
    assert!(s.is_next(1));
    assert_eq!(s.complete(), 2);
    assert_eq!(s.complete(), 3);
    assert!(s.is_next(3));
    assert_eq!(s.complete(), 4);
    assert_eq!(s.outstanding(), 0);
}

#[test]
fn a_clean_area_is_written_whole() {
    assert!(Dirty::CLEAN.is_clean());
    assert_eq!(Dirty::CLEAN.span(4096, 512), 0..4096);
}

#[test]
fn a_write_covers_the_blocks_of_what_was_added() {
    let mut d = Dirty::CLEAN;
    d.add(0);
    assert!(!d.is_clean());
    assert_eq!(d.span(4096, 512), 0..512);
    // Exceptions 31 and 32 straddle the first two sectors.
    let mut d = Dirty::CLEAN;
    d.add(32);
    d.add(31);
    assert_eq!(d.span(4096, 512), 0..1024);
    // The last exception of the area.
    let mut d = Dirty::CLEAN;
    d.add(255);
    assert_eq!(d.span(4096, 512), 3584..4096);
    // A batch in the middle of a 64 KiB area, 4 KiB physical blocks.
    let mut d = Dirty::CLEAN;
    for i in 300..=600 {
        d.add(i);
    }
    assert_eq!(d.span(65536, 4096), 4096..12288);
}

#[test]
fn odd_blocks_and_indices_write_the_whole_area() {
    let mut d = Dirty::CLEAN;
    d.add(3);
    // Blocks as large as the area, larger, or not a power of two.
    assert_eq!(d.span(4096, 4096), 0..4096);
    assert_eq!(d.span(512, 4096), 0..512);
    assert_eq!(d.span(4096, 0), 0..4096);
    assert_eq!(d.span(4096, 1536), 0..4096);
    // An index past the area, or past any area.
    let mut d = Dirty::CLEAN;
    d.add(256);
    assert_eq!(d.span(4096, 512), 0..4096);
    let mut d = Dirty::CLEAN;
    d.add(u64::MAX);
    assert_eq!(d.span(4096, 512), 0..4096);
}

#[test]
fn a_span_is_aligned_and_holds_every_exception_added() {
    // Every pair of indices of a 2 KiB area, blocks of 512 and 1024.
    for a in 0..128u64 {
        for b in a..128u64 {
            for block in [512usize, 1024] {
                let mut d = Dirty::CLEAN;
                d.add(b);
                d.add(a);
                let r = d.span(2048, block);
                assert_eq!(r.start % block, 0);
                assert_eq!(r.end % block, 0);
                assert!(r.end <= 2048);
                for i in [a, b] {
                    let at = i as usize * EXCEPTION_SIZE;
                    assert!(r.start <= at && at + EXCEPTION_SIZE <= r.end);
                }
                // No block more than needed.
                assert!(r.start + block > a as usize * EXCEPTION_SIZE);
                assert!(r.end < (b as usize + 1) * EXCEPTION_SIZE + block);
            }
        }
    }
}
