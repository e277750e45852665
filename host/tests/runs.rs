// SPDX-License-Identifier: GPL-2.0

//! The packed exception runs against a naive model (a map of every
//! exception), through a table of buckets built the way the kernel's is.

use dm_snap_host::{
    dm_snap_core::runs::{self, Removed, Run, RUN_CHUNKS},
    runs_model::Table,
};
use std::collections::BTreeMap;

/// xorshift64*: the same sequence on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn a_sequential_fill_takes_one_entry_a_window() {
    let mut t = Table::new(6);
    let mut model = BTreeMap::new();
    // COW chunks 2.. as the persistent store hands them out.
    for (i, old) in (1000..1000 + 10 * RUN_CHUNKS).enumerate() {
        assert!(t.insert(old, 2 + i as u64));
        model.insert(old, 2 + i as u64);
    }
    t.check(&model);
    // 1000 is not window-aligned: a partial window at each end.
    assert_eq!(t.entries(), 11);
    assert_eq!(t.lookup(999), None);
    assert_eq!(t.lookup(1000 + 10 * RUN_CHUNKS), None);
}

#[test]
fn a_descending_fill_packs_too() {
    let mut t = Table::new(6);
    let mut model = BTreeMap::new();
    for i in 0..RUN_CHUNKS * 3 {
        let old = 3 * RUN_CHUNKS - 1 - i;
        assert!(t.insert(old, 10_000 - i));
        model.insert(old, 10_000 - i);
    }
    t.check(&model);
    assert_eq!(t.entries(), 3);
}

#[test]
fn runs_do_not_cross_windows_even_in_one_bucket() {
    // One bucket: every window shares it.
    let mut t = Table::new(0);
    let mut model = BTreeMap::new();
    for old in 0..4 * RUN_CHUNKS {
        assert!(t.insert(old, old + 5));
        model.insert(old, old + 5);
    }
    t.check(&model);
    assert_eq!(t.entries(), 4);
}

#[test]
fn chunks_that_do_not_follow_on_take_entries_of_their_own() {
    let mut t = Table::new(6);
    let mut model = BTreeMap::new();
    // Consecutive old chunks, new chunks out of step.
    for old in 0..100 {
        assert!(t.insert(old, 1000 - 2 * old));
        model.insert(old, 1000 - 2 * old);
    }
    t.check(&model);
    assert_eq!(t.entries(), 100);
}

/// A chunk that starts the next run is held, even where it would follow
/// on from the run before it: it is refused, not added a second time.
#[test]
fn a_chunk_held_by_the_next_run_is_refused() {
    let mut t = Table::new(6);
    let mut model = BTreeMap::new();
    for (old, new) in [
        (10, 100),
        (11, 101),
        (12, 102),
        (13, 200),
        (14, 201),
        (9, 50),
    ] {
        assert!(t.insert(old, new));
        model.insert(old, new);
    }
    assert!(!t.insert(13, 103));
    assert!(!t.insert(12, 103));
    assert!(!t.insert(9, 99));
    t.check(&model);
    assert_eq!(t.entries(), 3);
    assert_eq!(t.lookup(13), Some(200));
    // Between two runs, following on from neither: a run of its own, in
    // its place.
    assert!(t.insert(15, 300));
    assert!(t.insert(8, 400));
    model.insert(15, 300);
    model.insert(8, 400);
    t.check(&model);
}

#[test]
fn removal_from_either_end_and_not_the_middle() {
    let mut r = Run::one(10, 20);
    assert!(r.try_add(11, 21));
    assert!(r.try_add(9, 19));
    assert_eq!(
        r,
        Run {
            old_chunk: 9,
            new_chunk: 19,
            extra: 2
        }
    );
    assert_eq!(r.remove(10), Removed::Middle);
    assert_eq!(r.remove(12), Removed::NotHeld);
    assert_eq!(r.remove(11), Removed::Shorter);
    assert_eq!(r.remove(9), Removed::Shorter);
    assert_eq!(r, Run::one(10, 20));
    assert_eq!(r.remove(10), Removed::Empty);
}

#[test]
fn no_overflow_at_the_end_of_the_chunk_space() {
    let mut r = Run::one(u64::MAX, u64::MAX);
    assert!(!r.try_add(0, 0));
    assert_eq!(r.lookup(u64::MAX), Some(u64::MAX));
    let mut r = Run::one(0, 0);
    assert!(!r.try_add(u64::MAX, u64::MAX));
    // A full run takes nothing more.
    let mut r = Run {
        old_chunk: 0,
        new_chunk: 0,
        extra: u8::MAX,
    };
    assert!(!r.try_add(256, 256));
    assert_eq!(r.lookup(255), Some(255));
}

#[test]
fn packing_keeps_the_run() {
    let r = Run {
        old_chunk: 77,
        new_chunk: (1 << 56) - 1,
        extra: 200,
    };
    let (o, p) = r.pack().unwrap();
    assert_eq!(Run::unpack(o, p), r);
    assert_eq!(Run::one(1, 1 << 56).pack(), None);
}

#[test]
fn table_order_as_c_sizes_it() {
    assert_eq!(runs::table_order(0), 6);
    assert_eq!(runs::table_order(63), 6);
    assert_eq!(runs::table_order(1000), 9);
    assert_eq!(runs::table_order(1 << 18), 18);
    assert_eq!(runs::table_order(u64::MAX), 18);
}

/// Random workloads against the model: inserts in runs and at random,
/// lookups of held and absent chunks, removals of run ends (as a merge
/// does, newest first) and refused removals of middles.
#[test]
fn random_operations_match_the_model() {
    for seed in 1..=100u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let order = rng.below(8) as u32;
        let space = 1 + rng.below(4 * RUN_CHUNKS * 8);
        let mut t = Table::new(order);
        let mut model = BTreeMap::new();
        let mut next_new = 2u64;
        let mut added = Vec::new();
        for _ in 0..2000 {
            match rng.below(10) {
                0..=5 => {
                    // A run of up to 40 writes from a random chunk, some
                    // ascending, some descending.
                    let start = rng.below(space);
                    let n = 1 + rng.below(40);
                    let down = rng.below(4) == 0;
                    for i in 0..n {
                        let old = if down {
                            start.wrapping_sub(i)
                        } else {
                            start + i
                        };
                        if old >= space {
                            continue;
                        }
                        if model.contains_key(&old) {
                            // Held: refused, whatever COW chunk it would
                            // follow on from (the load of a COW device
                            // that repeats a chunk).
                            assert!(!t.insert(old, next_new), "seed {seed} chunk {old}");
                            assert!(!t.insert(old, model[&old] + 1), "seed {seed} chunk {old}");
                            continue;
                        }
                        assert!(t.insert(old, next_new));
                        model.insert(old, next_new);
                        added.push(old);
                        next_new += if rng.below(20) == 0 { 2 } else { 1 };
                    }
                }
                6 | 7 => {
                    let c = rng.below(space + 10);
                    assert_eq!(t.lookup(c), model.get(&c).copied(), "seed {seed} chunk {c}");
                }
                _ => {
                    // The newest exception goes first, as in a merge.
                    let Some(old) = added.pop() else { continue };
                    match t.remove(old) {
                        Removed::Empty | Removed::Shorter => {
                            model.remove(&old);
                        }
                        Removed::Middle => {
                            // Held, inside a run that grew on both sides
                            // of it after it was added: left alone.
                            assert!(model.contains_key(&old));
                        }
                        Removed::NotHeld => panic!("seed {seed}: chunk {old} not held"),
                    }
                }
            }
        }
        t.check(&model);
    }
}
