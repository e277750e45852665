// SPDX-License-Identifier: GPL-2.0

use dm_snap_host::dm_snap_core::track::{Track, TrackTable, PROBES, SLOTS};

use std::{sync::Arc, thread, vec::Vec};

#[test]
fn counts_per_chunk() {
    let t = TrackTable::new();
    let a = t.track(7);
    let b = t.track(7);
    let c = t.track(8);
    assert!(matches!(a, Track::Slot(_)));
    assert_eq!(a, b, "reads of one chunk share its slot");
    assert_ne!(a, c);
    assert!(t.chunk_busy(7) && t.chunk_busy(8));
    assert!(!t.chunk_busy(9));
    // A completion of chunk 8 does not wait for the reads of chunk 7.
    assert!(t.untrack(c));
    assert!(!t.chunk_busy(8));
    assert!(t.chunk_busy(7));
    assert!(!t.untrack(a), "one read of chunk 7 is still counted");
    assert!(t.chunk_busy(7));
    assert!(t.untrack(b));
    assert!(!t.chunk_busy(7));
    assert!(!t.overflow_busy());
    assert_eq!(t.slots_used(), 0);
}

#[test]
fn an_emptied_slot_serves_another_chunk() {
    let t = TrackTable::new();
    let a = t.track(1);
    assert!(t.untrack(a));
    // Half as many chunks as slots find room: the slots are empty again
    // (a full table would leave some chunks more than PROBES from home).
    let mut held = Vec::new();
    for chunk in 0..SLOTS as u64 / 2 {
        held.push(t.track(chunk));
    }
    assert!(!t.overflow_busy());
    for (chunk, h) in held.into_iter().enumerate() {
        assert!(t.chunk_busy(chunk as u64));
        assert!(t.untrack(h));
        assert!(!t.chunk_busy(chunk as u64));
    }
}

#[test]
fn a_full_neighbourhood_overflows_and_drains_by_epoch() {
    let t = TrackTable::new();
    // Far more chunks in flight than slots: some reads overflow.
    let held: Vec<(u64, Track)> = (0..4 * SLOTS as u64).map(|c| (c, t.track(c))).collect();
    assert!(t.overflow_busy());
    let over: Vec<&(u64, Track)> = held
        .iter()
        .filter(|(_, h)| matches!(h, Track::Overflow(_)))
        .collect();
    assert!(!over.is_empty());
    // A completion switches the epoch: reads counted from now on are
    // new, and the old epoch drains with the reads counted before.
    let old = t.switch_overflow();
    let later = t.track(u64::MAX - 1);
    assert_eq!(
        later,
        Track::Overflow(1 - old),
        "a chunk number too large for a tag"
    );
    assert!(t.overflow_epoch_busy(old));
    for (_, h) in &over {
        t.untrack(*h);
    }
    assert!(!t.overflow_epoch_busy(old));
    assert!(t.overflow_epoch_busy(1 - old));
    t.untrack(later);
    assert!(!t.overflow_busy());
    for (c, h) in held.iter().filter(|(_, h)| matches!(h, Track::Slot(_))) {
        assert!(t.chunk_busy(*c));
        t.untrack(*h);
    }
    for c in 0..4 * SLOTS as u64 {
        assert!(!t.chunk_busy(c));
    }
}

#[test]
fn a_chunk_counted_in_two_slots_is_busy_until_both_drain() {
    let t = TrackTable::new();
    // Two chunks of one home slot.
    let first = t.track(0);
    t.untrack(first);
    let b = (1u64..)
        .find(|&c| {
            let h = t.track(c);
            t.untrack(h);
            h == first
        })
        .unwrap();
    // Chunk 0 takes the home slot, so b's read goes to the next; once
    // chunk 0's slot is empty again, b's next read takes it.
    let a = t.track(0);
    let b1 = t.track(b);
    assert!(t.untrack(a));
    let b2 = t.track(b);
    assert_ne!(b1, b2, "one chunk counted in two slots");
    assert!(t.chunk_busy(b));
    assert!(t.untrack(b2));
    assert!(t.chunk_busy(b), "its read in the other slot is in flight");
    assert!(t.untrack(b1));
    assert!(!t.chunk_busy(b));
}

#[test]
fn probes_stay_near_home() {
    let t = TrackTable::new();
    // Chunks of one home slot: PROBES of them find a slot, the rest
    // overflow rather than search the whole table.
    let mut same_home = Vec::new();
    let first = t.track(0);
    t.untrack(first);
    let mut c = 0u64;
    while same_home.len() < PROBES + 4 {
        let h = t.track(c);
        if h == first {
            same_home.push(c);
        }
        t.untrack(h);
        c += 1;
    }
    let held: Vec<Track> = same_home.iter().map(|&c| t.track(c)).collect();
    let slots = held.iter().filter(|h| matches!(h, Track::Slot(_))).count();
    assert_eq!(slots, PROBES);
    assert!(t.overflow_busy());
    for h in held {
        t.untrack(h);
    }
    assert!(!t.overflow_busy());
}

#[test]
fn racing_reads_leave_nothing_counted() {
    // Reads of a few hot chunks and many cold ones, tracked and untracked
    // from several threads at once: every count ends at zero, every slot
    // empty, and a chunk is busy while one of its reads is held.
    //
    // `chunk_busy` is asked with no lock: `used` is raised before a slot is
    // claimed, so a read that joins a slot another read is still claiming
    // is seen. (Raised after the claim, this failed 7 times in 40 runs
    // under load.)
    let t = Arc::new(TrackTable::new());
    let threads: Vec<_> = (0..8u64)
        .map(|id| {
            let t = t.clone();
            thread::spawn(move || {
                let mut x = id.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1;
                for _ in 0..20_000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let chunk = if x & 3 == 0 { x % 4 } else { x % 100_000 };
                    let h = t.track(chunk);
                    assert!(t.chunk_busy(chunk) || matches!(h, Track::Overflow(_)));
                    t.untrack(h);
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    assert!(!t.overflow_busy());
    assert_eq!(t.slots_used(), 0, "every slot emptied, and counted so");
    for c in 0..100_000 {
        assert!(!t.chunk_busy(c));
    }
}

#[test]
fn slots_in_use_are_counted() {
    let t = TrackTable::new();
    let held: Vec<Track> = (0..SLOTS as u64 / 2).map(|c| t.track(c)).collect();
    assert_eq!(t.slots_used(), SLOTS as u64 / 2);
    // A second read of a chunk shares its slot.
    let again = t.track(3);
    assert_eq!(t.slots_used(), SLOTS as u64 / 2);
    t.untrack(again);
    for (i, h) in held.into_iter().enumerate() {
        t.untrack(h);
        assert_eq!(t.slots_used(), (SLOTS / 2 - 1 - i) as u64);
    }
    // With no slot in use, no chunk is busy, whatever its slots held.
    assert!(!t.chunk_busy(3));
}
