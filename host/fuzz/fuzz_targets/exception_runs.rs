// SPDX-License-Identifier: GPL-2.0

//! Fuzzes the exception runs (`dm_snap_core::runs`) against a naive model,
//! a map of every exception: the input is a table size and a sequence of
//! insertions (in runs or not, of chunks held or not), lookups and
//! removals. Every answer must be the model's, and every run within its
//! window, in its bucket and in order, whatever the sequence.

#![no_main]

use dm_snap_host::{dm_snap_core::runs::Removed, runs_model::Table};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let Some((&first, ops)) = data.split_first() else {
        return;
    };
    let order = u32::from(first % 8);
    // Chunks near the top of the chunk space too, where runs end.
    let base = if first & 0x80 != 0 {
        u64::MAX - 0x1_0000
    } else {
        0
    };
    let mut t = Table::new(order);
    let mut model = BTreeMap::new();
    let mut next_new = 2u64;
    for op in ops.chunks_exact(4) {
        let old = base + u64::from(u16::from_le_bytes([op[1], op[2]]));
        match op[0] % 8 {
            0..=3 => {
                // The next COW chunk (runs form), or one out of step.
                let new = if op[3] & 1 == 0 {
                    next_new
                } else {
                    next_new + u64::from(op[3])
                };
                let held = model.contains_key(&old);
                assert_eq!(t.insert(old, new), !held, "insert of {old}");
                if !held {
                    model.insert(old, new);
                    next_new = new + 1;
                }
            }
            4 | 5 => assert_eq!(t.lookup(old), model.get(&old).copied(), "lookup of {old}"),
            _ => match t.remove(old) {
                Removed::Empty | Removed::Shorter => {
                    assert!(model.remove(&old).is_some(), "removed {old}, not held");
                }
                Removed::Middle => assert!(model.contains_key(&old), "{old} not held"),
                Removed::NotHeld => assert!(!model.contains_key(&old), "{old} held"),
            },
        }
    }
    t.check(&model);
});
