// SPDX-License-Identifier: GPL-2.0

//! Table parsing against the behaviour of C's snapshot_ctr(), as the guest
//! selftests observe it on dm-snapshot.ko.

use dm_snap_host::dm_snap_core::{
    chunk::ChunkSizeError,
    table::{
        kstrtouint, parse_features, parse_snapshot, parse_store, Features, StoreError, StoreKind,
        TableError,
    },
};

fn args(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

#[test]
fn kstrtouint_like_c() {
    assert_eq!(kstrtouint("0"), Some(0));
    assert_eq!(kstrtouint("16"), Some(16));
    assert_eq!(kstrtouint("+16"), Some(16));
    assert_eq!(kstrtouint("16\n"), Some(16));
    assert_eq!(kstrtouint("4294967295"), Some(u32::MAX));
    for bad in [
        "",
        "+",
        "-1",
        "0x10",
        "abc",
        "1 ",
        " 1",
        "4294967296",
        "16\n\n",
    ] {
        assert_eq!(kstrtouint(bad), None, "{bad:?}");
    }
}

#[test]
fn accepted_tables() {
    let t = parse_snapshot(&args("/dev/a /dev/b P 8")).unwrap();
    assert_eq!(
        (t.origin, t.cow, t.store, t.chunk_size),
        ("/dev/a", "/dev/b", "P", "8")
    );
    assert_eq!(t.num_features(), 0);
    let t = parse_snapshot(&args("a b N 8 1 discard_zeroes_cow")).unwrap();
    assert!(t.features.discard_zeroes_cow && !t.features.discard_passdown_origin);
    let t = parse_snapshot(&args(
        "a b N 8 2 DISCARD_ZEROES_COW discard_passdown_origin",
    ))
    .unwrap();
    assert_eq!(t.num_features(), 2);
    // C ignores what follows the feature group, and a zero count.
    assert!(parse_snapshot(&args("a b N 8 0 extra")).is_ok());
    assert!(parse_snapshot(&args("a b N 8 1 discard_zeroes_cow extra")).is_ok());
}

#[test]
fn rejected_tables() {
    let err = |s| parse_snapshot(&args(s)).unwrap_err();
    assert_eq!(err("a b N"), TableError::TooFewArgs);
    assert_eq!(err("a b N 8 3 x y z"), TableError::FeatureCount);
    assert_eq!(
        err("a b N 8 2 discard_zeroes_cow"),
        TableError::FeatureCount
    );
    assert_eq!(err("a b N 8 x"), TableError::FeatureCount);
    assert_eq!(err("a b N 8 1 bogus"), TableError::UnknownFeature);
    assert_eq!(
        err("a b N 8 1 discard_passdown_origin"),
        TableError::PassdownWithoutZeroes
    );
    assert_eq!(
        TableError::PassdownWithoutZeroes.message(),
        c"discard_passdown_origin feature depends on discard_zeroes_cow"
    );
    assert_eq!(
        TableError::FeatureCount.message(),
        c"Invalid number of feature arguments"
    );
}

#[test]
fn stores() {
    let p = StoreKind::Persistent { overflow: false };
    let po = StoreKind::Persistent { overflow: true };
    assert_eq!(parse_store("P", "8").unwrap().0, p);
    assert_eq!(parse_store("p", "8").unwrap().0, p);
    assert_eq!(parse_store("PO", "8").unwrap().0, po);
    assert_eq!(parse_store("po", "8").unwrap().0, po);
    // C looks at the first option character only, and N has no options.
    assert_eq!(parse_store("POX", "8").unwrap().0, po);
    assert_eq!(parse_store("NX", "8").unwrap().0, StoreKind::Transient);
    assert_eq!(parse_store("n", "16").unwrap().1.unwrap().sectors(), 16);
    assert_eq!(parse_store("P", "0").unwrap().1, None);
    assert_eq!(p.as_str(), "P");
    assert_eq!(po.as_str(), "PO");
    assert_eq!(StoreKind::Transient.as_str(), "N");
}

#[test]
fn store_errors_in_c_order() {
    assert_eq!(parse_store("X", "abc"), Err(StoreError::UnknownType));
    assert_eq!(parse_store("", "8"), Err(StoreError::UnknownType));
    assert_eq!(parse_store("N", "abc"), Err(StoreError::InvalidChunkSize));
    // The chunk size is checked before the persistent store's options.
    assert_eq!(parse_store("PX", "abc"), Err(StoreError::InvalidChunkSize));
    assert_eq!(parse_store("PX", "8"), Err(StoreError::UnsupportedOption));
    assert_eq!(
        parse_store("N", "3"),
        Err(StoreError::ChunkSize(ChunkSizeError::NotPowerOfTwo))
    );
    assert_eq!(
        parse_store("N", "8388608"),
        Err(StoreError::ChunkSize(ChunkSizeError::TooLarge))
    );
    // Every store error reaches device-mapper as one message.
    assert_eq!(
        TableError::Store(StoreError::UnknownType).message(),
        c"Couldn't create exception store"
    );
    assert_eq!(
        StoreError::UnknownType.detail(),
        "Exception store type is not P or N"
    );
    assert!(StoreError::UnsupportedOption.logs_option());
}

#[test]
fn block_size() {
    let c = parse_store("N", "8").unwrap().1.unwrap();
    assert!(c.fits_block_size(512).is_ok());
    assert!(c.fits_block_size(4096).is_ok());
    let c = parse_store("N", "4").unwrap().1.unwrap();
    assert_eq!(
        c.fits_block_size(4096),
        Err(ChunkSizeError::NotBlockMultiple)
    );
    assert_eq!(
        ChunkSizeError::NotBlockMultiple.message(),
        "Chunk size is not a multiple of device blocksize"
    );
}

#[test]
fn features_alone() {
    assert_eq!(parse_features(&[]), Ok(Features::default()));
    assert_eq!(parse_features(&["0"]), Ok(Features::default()));
}

#[test]
fn features_print_in_c_order() {
    let f = parse_features(&["2", "discard_passdown_origin", "DISCARD_ZEROES_COW"]).unwrap();
    assert_eq!(f.count(), 2);
    let names: Vec<_> = f.names().collect();
    assert_eq!(names, ["discard_zeroes_cow", "discard_passdown_origin"]);
    assert_eq!(Features::default().names().count(), 0);
}
