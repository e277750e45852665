// SPDX-License-Identifier: GPL-2.0

use dm_snap_host::dm_snap_core::throttle::Throttle;

#[test]
fn reserves_up_to_threshold_plus_one() {
    let mut t = Throttle::new();
    let mut n = 0;
    while t.try_reserve(4) {
        n += 1;
        assert!(n < 100);
    }
    // As C: copies may start while no more than 4 are in flight.
    assert_eq!(n, 5);
    assert_eq!(t.in_progress, 5);
    assert_eq!(t.max_in_progress, 5);
}

#[test]
fn threshold_zero_allows_one_at_a_time() {
    let mut t = Throttle::new();
    assert!(t.try_reserve(0));
    assert!(!t.try_reserve(0));
    assert_eq!(t.release(0), Some(true));
    assert!(t.try_reserve(0));
}

#[test]
fn a_crowd_cannot_overshoot() {
    // However many writers race for the slots, each must reserve under the
    // lock, so the count never passes threshold + 1.
    let mut t = Throttle::new();
    for round in 0..1000u32 {
        for _ in 0..64 {
            if !t.try_reserve(16) {
                t.count_wait();
            }
        }
        if round % 3 == 0 {
            t.release(16);
        }
    }
    assert!(t.max_in_progress <= 17);
    assert!(t.waits > 0);
}

#[test]
fn release_wakes_only_below_threshold() {
    let mut t = Throttle::new();
    for _ in 0..3 {
        t.start_unthrottled();
    }
    assert_eq!(t.unthrottled, 3);
    // 3 in flight, threshold 1: a release to 2 leaves no room.
    assert_eq!(t.release(1), Some(false));
    assert_eq!(t.release(1), Some(true));
    assert_eq!(t.release(1), Some(true));
    // Never below zero.
    assert_eq!(t.release(1), None);
    assert_eq!(t.in_progress, 0);
}
