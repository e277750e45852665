// SPDX-License-Identifier: GPL-2.0

//! The persistent store's on-disk format, against numbers C's
//! dm-snap-persistent.c produces (seen by the guest selftests on C).

use dm_snap_host::dm_snap_core::{
    chunk::{ChunkSize, ChunkSizeError},
    disk::*,
};

const COW_SECTORS: u64 = 16384; // 8 MiB

fn chunk(s: u64) -> ChunkSize {
    ChunkSize::new(s).unwrap()
}

#[test]
fn header_round_trip_and_bytes() {
    let mut buf = vec![0xffu8; 4096];
    Header::new(chunk(8), true).encode(&mut buf).unwrap();
    assert_eq!(
        &buf[..16],
        &[0x53, 0x6e, 0x41, 0x70, 1, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0]
    );
    assert!(buf[16..].iter().all(|&b| b == 0));
    let h = Header::decode(&buf).unwrap();
    assert_eq!(
        check_header(&h, COW_SECTORS),
        Ok(HeaderState::Existing {
            chunk: chunk(8),
            valid: true
        })
    );
    assert_eq!(Header::decode(&buf[..15]), Err(MetadataError::Short));
}

#[test]
fn header_checks() {
    let h = |magic, valid, version, chunk_size| Header {
        magic,
        valid,
        version,
        chunk_size,
    };
    assert_eq!(
        check_header(&h(0, 0, 0, 0), COW_SECTORS),
        Ok(HeaderState::New)
    );
    assert_eq!(
        check_header(&h(0, 7, 9, 3), COW_SECTORS),
        Ok(HeaderState::New)
    );
    assert_eq!(
        check_header(&h(1, 1, 1, 8), COW_SECTORS),
        Err(MetadataError::BadMagic)
    );
    assert_eq!(
        check_header(&h(SNAP_MAGIC, 1, 2, 8), COW_SECTORS),
        Err(MetadataError::BadVersion(2))
    );
    assert_eq!(
        check_header(&h(SNAP_MAGIC, 1, 1, 0), COW_SECTORS),
        Err(MetadataError::BadChunkSize(
            0,
            ChunkSizeError::NotPowerOfTwo
        ))
    );
    assert_eq!(
        check_header(&h(SNAP_MAGIC, 1, 1, 12), COW_SECTORS),
        Err(MetadataError::BadChunkSize(
            12,
            ChunkSizeError::NotPowerOfTwo
        ))
    );
    // C checks the chunk size before the version.
    assert_eq!(
        check_header(&h(SNAP_MAGIC, 1, 2, 12), COW_SECTORS),
        Err(MetadataError::BadChunkSize(
            12,
            ChunkSizeError::NotPowerOfTwo
        ))
    );
    assert_eq!(
        check_header(&h(SNAP_MAGIC, 1, 1, 1 << 30), COW_SECTORS),
        Err(MetadataError::BadChunkSize(
            1 << 30,
            ChunkSizeError::TooLarge
        ))
    );
    assert_eq!(
        check_header(&h(SNAP_MAGIC, 1, 1, 32768), COW_SECTORS),
        Err(MetadataError::ChunkBeyondDevice)
    );
    assert_eq!(
        check_header(&h(SNAP_MAGIC, 0, 1, 16), COW_SECTORS),
        Ok(HeaderState::Existing {
            chunk: chunk(16),
            valid: false
        })
    );
}

#[test]
fn layout() {
    let l = Layout::new(chunk(8), COW_SECTORS);
    assert_eq!(l.exceptions_per_area(), 256);
    assert_eq!(l.dev_chunks(), 2048);
    assert_eq!(l.area_location(0), Some(1));
    assert_eq!(l.area_location(1), Some(258));
    assert_eq!(l.area_location(u64::MAX), None);
    for c in [0, 1, 258, 515] {
        assert!(l.is_metadata(c), "{c}");
    }
    for c in [2, 257, 259, 514] {
        assert!(!l.is_metadata(c), "{c}");
    }
}

/// The status numbers C printed in the guest selftests (status and persist
/// groups): P, chunk 8, 8 MiB COW device.
#[test]
fn usage_matches_c() {
    let l = Layout::new(chunk(8), COW_SECTORS);
    let mut s = StoreState::new();
    assert_eq!(s.usage(&l), (16, 16));
    s.prepare(&l).unwrap();
    s.commit(&l);
    assert_eq!(s.usage(&l), (24, 16));
    let mut s = StoreState::new();
    for _ in 0..1280 {
        let c = s.prepare(&l).unwrap();
        assert!(!l.is_metadata(c));
        s.commit(&l);
    }
    assert_eq!(s.usage(&l), (10296, 56));
}

#[test]
fn fills_up() {
    let l = Layout::new(chunk(8), 2048); // 1 MiB: 256 chunks
    let mut s = StoreState::new();
    let mut n = 0;
    while s.prepare(&l).is_some() {
        s.commit(&l);
        n += 1;
    }
    // 256 chunks: header, area 0, then data chunks 2 to 255 (area 1 would
    // be chunk 258).
    assert_eq!(n, 254);
    assert!(s.next_free <= l.dev_chunks());
}

/// Writes exceptions as C would (prepare, commit, one area per chunk) into a
/// device image and returns it.
fn image(l: &Layout, olds: &[u64]) -> (Vec<u8>, StoreState, Vec<DiskException>) {
    let cs = l.chunk().sectors() as usize * 512;
    let mut dev = vec![0u8; l.dev_chunks() as usize * cs];
    Header::new(l.chunk(), true).encode(&mut dev[..cs]).unwrap();
    let mut s = StoreState::new();
    let mut all = Vec::new();
    for &old in olds {
        let new = s.prepare(l).unwrap();
        let e = DiskException {
            old_chunk: old,
            new_chunk: new,
        };
        let at = l.area_location(s.current_area).unwrap() as usize * cs;
        l.write_exception(&mut dev[at..at + cs], s.current_committed, e)
            .unwrap();
        s.commit(l);
        all.push(e);
    }
    (dev, s, all)
}

fn load(l: &Layout, dev: &[u8]) -> Result<(StoreState, Vec<DiskException>), MetadataError> {
    let cs = l.chunk().sectors() as usize * 512;
    let mut loader = Loader::new(*l);
    let mut got = Vec::new();
    while let Some(area) = loader.next_area()? {
        let at = area as usize * cs;
        loader.feed::<MetadataError>(&dev[at..at + cs], |e| {
            got.push(e);
            Ok(())
        })?;
    }
    Ok((loader.finish(), got))
}

#[test]
fn load_what_was_written() {
    let l = Layout::new(chunk(8), COW_SECTORS);
    for n in [0usize, 1, 255, 256, 257, 1280, 1500] {
        let olds: Vec<u64> = (0..n as u64).map(|i| i * 7 + 3).collect();
        let (dev, written, all) = image(&l, &olds);
        let (state, got) = load(&l, &dev).unwrap();
        assert_eq!(got, all, "{n}");
        assert_eq!(state, written, "{n}");
    }
}

#[test]
fn refuses_bad_exceptions() {
    let l = Layout::new(chunk(8), COW_SECTORS);
    let cs = 4096;
    let (mut dev, _, _) = image(&l, &[5, 6, 7]);
    for (new_chunk, err) in [
        (5000, MetadataError::NewChunkBeyondDevice),
        (258, MetadataError::NewChunkOnMetadata),
        (1, MetadataError::NewChunkOnMetadata),
    ] {
        let e = DiskException {
            old_chunk: 6,
            new_chunk,
        };
        l.write_exception(&mut dev[cs..2 * cs], 1, e).unwrap();
        assert_eq!(load(&l, &dev).unwrap_err(), err, "{new_chunk}");
    }
}

#[test]
fn refuses_areas_past_the_end() {
    // Every area full, up to the end of the device.
    let l = Layout::new(chunk(8), COW_SECTORS);
    let cs = 4096;
    let mut dev = vec![0u8; COW_SECTORS as usize * 512];
    let mut area = 0;
    while let Some(at) = l.area_location(area).filter(|&c| c < l.dev_chunks()) {
        for i in 0..256 {
            let e = DiskException {
                old_chunk: i,
                new_chunk: at + 1,
            };
            l.write_exception(&mut dev[at as usize * cs..][..cs], i, e)
                .unwrap();
        }
        area += 1;
    }
    assert_eq!(load(&l, &dev).unwrap_err(), MetadataError::AreaBeyondDevice);
}

/// A cheap stand-in for fuzzing: random bytes and bit flips never panic.
#[test]
fn random_devices_do_not_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let l = Layout::new(chunk(8), 512 * 8);
    let (clean, _, _) = image(&l, &(0..300).collect::<Vec<_>>());
    for _ in 0..2000 {
        let mut dev = clean.clone();
        for _ in 0..(rnd() % 16) {
            let at = (rnd() as usize) % dev.len();
            dev[at] ^= 1 << (rnd() % 8);
        }
        let _ = Header::decode(&dev).map(|h| check_header(&h, 4096));
        let _ = load(&l, &dev);
    }
}
