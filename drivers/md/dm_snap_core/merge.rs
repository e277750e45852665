// SPDX-License-Identifier: GPL-2.0

//! The persistent store's side of a merge: which exceptions to merge next
//! and what the metadata looks like once they are merged.
//!
//! A merge walks the exceptions from the newest (the last committed one of
//! the current area) backwards. Each step takes the run of exceptions that
//! end the area and are consecutive in both the origin and the COW device,
//! so that one copy merges them all. Once the run is on the origin, its
//! exceptions are cleared in the area (an exception of all zeroes ends the
//! metadata) and the area is written: a crash at any point leaves either
//! the exceptions, whose data is still on the COW device, or the origin
//! with the data merged.
//!
//! C counterpart: `persistent_prepare_merge()` and
//! `persistent_commit_merge()` in `drivers/md/dm-snap-persistent.c`.

use super::disk::{DiskException, Layout, MetadataError, StoreState};

/// What to do before the next run can be found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Every exception is merged.
    Done,
    /// The current area is empty: read area `area`, the one before it,
    /// then call [`stepped_back`].
    ReadArea(u64),
    /// The current area holds exceptions: call [`find_run`].
    Scan,
}

/// The next step of a merge with the store in `state` (the first half of
/// C's `persistent_prepare_merge()`).
pub fn step(state: &StoreState) -> Step {
    if state.current_committed != 0 {
        Step::Scan
    } else if state.current_area == 0 {
        Step::Done
    } else {
        Step::ReadArea(state.current_area - 1)
    }
}

/// The area [`Step::ReadArea`] named was read: it is the current area now,
/// and full.
pub fn stepped_back(state: &mut StoreState, layout: &Layout) {
    state.current_area = state.current_area.saturating_sub(1);
    state.current_committed = layout.exceptions_per_area();
}

/// A run of exceptions to merge with one copy: `chunks` chunks from origin
/// chunk `old_chunk` and COW chunk `new_chunk` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// The first origin chunk of the run.
    pub old_chunk: u64,
    /// The first COW chunk of the run.
    pub new_chunk: u64,
    /// The number of chunks, at least 1.
    pub chunks: u64,
}

impl Run {
    /// Whether origin chunk `chunk` is in the run.
    pub fn contains(&self, chunk: u64) -> bool {
        chunk >= self.old_chunk && chunk - self.old_chunk < self.chunks
    }
}

fn checked(layout: &Layout, e: DiskException) -> Result<DiskException, MetadataError> {
    if e.new_chunk >= layout.dev_chunks() {
        return Err(MetadataError::NewChunkBeyondDevice);
    }
    if layout.is_metadata(e.new_chunk) {
        return Err(MetadataError::NewChunkOnMetadata);
    }
    Ok(e)
}

/// The run that ends the `committed` exceptions of `area`, found backwards
/// from the last one (the second half of C's `persistent_prepare_merge()`).
/// Unlike C, every exception of the run is checked against the device, as
/// the loader does: an area read again from a device changed meanwhile
/// cannot make the merge copy outside the data chunks.
pub fn find_run(layout: &Layout, area: &[u8], committed: u64) -> Result<Run, MetadataError> {
    if committed == 0 || committed > layout.exceptions_per_area() {
        return Err(MetadataError::Short);
    }
    let last = checked(layout, layout.read_exception(area, committed - 1)?)?;
    let mut n = 1;
    while n < committed {
        let e = layout.read_exception(area, committed - 1 - n)?;
        if last.old_chunk.checked_sub(n) != Some(e.old_chunk)
            || last.new_chunk.checked_sub(n) != Some(e.new_chunk)
        {
            break;
        }
        checked(layout, e)?;
        n += 1;
    }
    Ok(Run {
        old_chunk: last.old_chunk + 1 - n,
        new_chunk: last.new_chunk + 1 - n,
        chunks: n,
    })
}

/// Clears the last `merged` of the `committed` exceptions of `area`, to be
/// written (the first half of C's `persistent_commit_merge()`).
pub fn clear_merged(
    layout: &Layout,
    area: &mut [u8],
    committed: u64,
    merged: u64,
) -> Result<(), MetadataError> {
    if merged > committed {
        return Err(MetadataError::Short);
    }
    let zero = DiskException {
        old_chunk: 0,
        new_chunk: 0,
    };
    for i in 0..merged {
        layout.write_exception(area, committed - 1 - i, zero)?;
    }
    Ok(())
}

/// The area with the last `merged` exceptions cleared is on disk (the
/// second half of C's `persistent_commit_merge()`). As in C, `next_free`
/// only feeds the status line from now on: it is set to just past the
/// exceptions left, so that the status counts down to the metadata alone.
pub fn merged(state: &mut StoreState, layout: &Layout, merged: u64) {
    state.current_committed = state.current_committed.saturating_sub(merged);
    state.next_free = layout
        .area_location(state.current_area)
        .unwrap_or(u64::MAX)
        .saturating_add(state.current_committed + 1);
}
