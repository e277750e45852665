// SPDX-License-Identifier: GPL-2.0

use dm_snap_host::dm_snap_core::chunk::{ChunkSize, ChunkSizeError};

#[test]
fn accepts_powers_of_two() {
    for shift in 0..=21 {
        let c = ChunkSize::new(1 << shift).unwrap();
        assert_eq!(c.sectors(), 1 << shift);
        assert_eq!(c.shift(), shift);
    }
}

#[test]
fn rejects_like_c() {
    assert_eq!(ChunkSize::new(0), Err(ChunkSizeError::Zero));
    assert_eq!(ChunkSize::new(3), Err(ChunkSizeError::NotPowerOfTwo));
    assert_eq!(ChunkSize::new(24), Err(ChunkSizeError::NotPowerOfTwo));
    // C: chunk_size > INT_MAX >> SECTOR_SHIFT is "too high".
    assert_eq!(ChunkSize::new(1 << 22), Err(ChunkSizeError::TooLarge));
    assert_eq!(ChunkSize::new(1 << 40), Err(ChunkSizeError::TooLarge));
    assert!(ChunkSize::new((i32::MAX >> 9) as u64 + 1).is_err());
}

#[test]
fn messages_match_c() {
    assert_eq!(ChunkSizeError::Zero.message(), "Chunk size not set");
    assert_eq!(
        ChunkSizeError::NotPowerOfTwo.message(),
        "Chunk size is not a power of 2"
    );
    assert_eq!(ChunkSizeError::TooLarge.message(), "Chunk size is too high");
}

#[test]
fn arithmetic() {
    let c = ChunkSize::new(16).unwrap();
    assert_eq!(c.sector_to_chunk(0), 0);
    assert_eq!(c.sector_to_chunk(15), 0);
    assert_eq!(c.sector_to_chunk(16), 1);
    assert_eq!(c.offset_in_chunk(17), 1);
    assert_eq!(c.chunk_to_sector(3), Some(48));
    assert_eq!(c.chunk_to_sector(u64::MAX), None);
    for s in [0u64, 1, 15, 16, 1000, u64::MAX] {
        let back = c.chunk_to_sector(c.sector_to_chunk(s)).unwrap();
        assert_eq!(back + c.offset_in_chunk(s), s);
    }
}

#[test]
fn remap_keeps_the_offset_in_the_chunk() {
    let c = ChunkSize::new(16).unwrap();
    assert_eq!(c.first_sector(3), 48);
    assert_eq!(c.remap(5, 3 * 16 + 7), 5 * 16 + 7);
    assert_eq!(c.remap(0, 15), 15);
}
