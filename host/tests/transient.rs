// SPDX-License-Identifier: GPL-2.0

//! The transient store's allocation against C's
//! `transient_prepare_exception()`.

use dm_snap_host::dm_snap_core::{chunk::ChunkSize, transient::Transient};

#[test]
fn hands_out_chunks_in_order_until_full() {
    let chunk = ChunkSize::new(8).unwrap();
    let mut t = Transient::new();
    assert_eq!(t.prepare(chunk, 32), Some(0));
    assert_eq!(t.prepare(chunk, 32), Some(1));
    assert_eq!(t.usage(), (16, 0));
    assert_eq!(t.prepare(chunk, 32), Some(2));
    assert_eq!(t.prepare(chunk, 32), Some(3));
    // Full: nothing changes.
    assert_eq!(t.prepare(chunk, 32), None);
    assert_eq!(t.usage(), (32, 0));
    // The device grew: allocation goes on.
    assert_eq!(t.prepare(chunk, 40), Some(4));
}

#[test]
fn a_partial_chunk_at_the_end_is_not_used() {
    let chunk = ChunkSize::new(8).unwrap();
    let mut t = Transient::new();
    assert_eq!(t.prepare(chunk, 15), Some(0));
    assert_eq!(t.prepare(chunk, 15), None);
}

#[test]
fn no_overflow_near_the_end_of_the_sector_space() {
    let chunk = ChunkSize::new(8).unwrap();
    let mut t = Transient {
        next_free: u64::MAX - 4,
    };
    assert_eq!(t.prepare(chunk, u64::MAX), None);
}
