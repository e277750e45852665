// SPDX-License-Identifier: GPL-2.0

//! The persistent store's merge steps, as C's persistent_prepare_merge()
//! and persistent_commit_merge().

use dm_snap_host::dm_snap_core::{
    chunk::ChunkSize,
    disk::{DiskException, Layout, MetadataError, StoreState},
    merge::{clear_merged, find_run, merged, step, stepped_back, Run, Step},
};

// 8-sector chunks: 256 exceptions per 4 KiB area, areas at 1, 258, ...
fn layout() -> Layout {
    Layout::new(ChunkSize::new(8).unwrap(), 1 << 20)
}

fn area_with(l: &Layout, es: &[(u64, u64)]) -> Vec<u8> {
    let mut a = vec![0u8; 4096];
    for (i, &(old_chunk, new_chunk)) in es.iter().enumerate() {
        l.write_exception(
            &mut a,
            i as u64,
            DiskException {
                old_chunk,
                new_chunk,
            },
        )
        .unwrap();
    }
    a
}

#[test]
fn run_of_consecutive_chunks_from_the_end() {
    let l = layout();
    let a = area_with(&l, &[(7, 2), (10, 3), (11, 4), (12, 5)]);
    let run = find_run(&l, &a, 4).unwrap();
    assert_eq!(
        run,
        Run {
            old_chunk: 10,
            new_chunk: 3,
            chunks: 3
        }
    );
    assert!(run.contains(10) && run.contains(12) && !run.contains(13) && !run.contains(9));
    // Consecutive in the origin only: one chunk at a time.
    let a = area_with(&l, &[(10, 2), (11, 4)]);
    assert_eq!(find_run(&l, &a, 2).unwrap().chunks, 1);
    // Backwards in the origin: not a run either.
    let a = area_with(&l, &[(11, 2), (10, 3)]);
    assert_eq!(find_run(&l, &a, 2).unwrap().chunks, 1);
    // The whole area.
    let a = area_with(&l, &[(0, 2), (1, 3), (2, 4)]);
    assert_eq!(
        find_run(&l, &a, 3).unwrap(),
        Run {
            old_chunk: 0,
            new_chunk: 2,
            chunks: 3
        }
    );
}

#[test]
fn run_never_reaches_below_chunk_zero() {
    let l = layout();
    // old_chunk 0 then u64::MAX would wrap in an unchecked subtraction.
    let a = area_with(&l, &[(u64::MAX, 2), (0, 3)]);
    assert_eq!(find_run(&l, &a, 2).unwrap().chunks, 1);
}

#[test]
fn run_refuses_metadata_and_beyond_device() {
    let l = layout();
    let a = area_with(&l, &[(5, 258)]);
    assert_eq!(find_run(&l, &a, 1), Err(MetadataError::NewChunkOnMetadata));
    let a = area_with(&l, &[(5, l.dev_chunks())]);
    assert_eq!(
        find_run(&l, &a, 1),
        Err(MetadataError::NewChunkBeyondDevice)
    );
    assert_eq!(find_run(&l, &a, 0), Err(MetadataError::Short));
    assert_eq!(find_run(&l, &a, 257), Err(MetadataError::Short));
}

#[test]
fn steps_back_through_full_areas_to_done() {
    let l = layout();
    let mut st = StoreState {
        next_free: 600,
        current_area: 2,
        current_committed: 0,
    };
    assert_eq!(step(&st), Step::ReadArea(1));
    stepped_back(&mut st, &l);
    assert_eq!((st.current_area, st.current_committed), (1, 256));
    assert_eq!(step(&st), Step::Scan);
    st.current_committed = 0;
    st.current_area = 0;
    assert_eq!(step(&st), Step::Done);
}

#[test]
fn commit_clears_the_run_and_counts_down_to_the_metadata() {
    let l = layout();
    let mut a = area_with(&l, &[(7, 2), (10, 3), (11, 4), (12, 5)]);
    let mut st = StoreState {
        next_free: 6,
        current_area: 0,
        current_committed: 4,
    };
    clear_merged(&l, &mut a, 4, 3).unwrap();
    assert_eq!(l.read_exception(&a, 0).unwrap().old_chunk, 7);
    for i in 1..4 {
        assert_eq!(l.read_exception(&a, i).unwrap().new_chunk, 0);
    }
    merged(&mut st, &l, 3);
    assert_eq!((st.current_committed, st.next_free), (1, 3));
    clear_merged(&l, &mut a, 1, 1).unwrap();
    merged(&mut st, &l, 1);
    // sectors_allocated == metadata_sectors: the merge is over.
    let (used, meta) = st.usage(&l);
    assert_eq!(used, meta);
    assert_eq!(step(&st), Step::Done);
    assert_eq!(clear_merged(&l, &mut a, 1, 2), Err(MetadataError::Short));
}

#[test]
fn commit_in_an_earlier_area() {
    let l = layout();
    let mut st = StoreState {
        next_free: 600,
        current_area: 1,
        current_committed: 256,
    };
    merged(&mut st, &l, 6);
    assert_eq!(st.current_committed, 250);
    assert_eq!(st.next_free, 258 + 250 + 1);
}
