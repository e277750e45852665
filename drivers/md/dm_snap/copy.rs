// SPDX-License-Identifier: GPL-2.0

//! Starting copies: a chunk copied from the origin to its COW chunk, or a
//! COW chunk zeroed for a discard, each a kcopyd job that holds its COW
//! throttle slot until it ends (`complete.rs` takes over from there).
//!
//! C counterpart: `start_copy()`, `zero_exception()` and the kcopyd side
//! of `start_full_bio()` in `drivers/md/dm-snap.c`.

#![deny(unsafe_code)]

use super::{
    state::{Snap, SnapState},
    throttle::Slot,
};
use kernel::{
    bio::{BioSlot, OwnedBio},
    mempool::{Mempool, PoolBox},
    prelude::*,
    sync::Arc,
};

/// A copy in flight, or a chunk being zeroed for a discard.
pub(crate) struct CopyJob {
    pub(super) state: Arc<SnapState>,
    pub(super) chunk: u64,
    /// The bio the job completes: a whole-chunk write, or a discard.
    pub(super) bio: BioSlot,
    pub(super) zero: bool,
    /// The job's place in the COW throttle, given back when the copy ends.
    pub(super) slot: Option<Slot>,
}

impl CopyJob {
    /// A job for `chunk` of `state`, from its pool (waits for an element
    /// rather than fail, `GFP_NOIO`).
    pub(super) fn alloc(state: &Arc<SnapState>, chunk: u64, zero: bool) -> Result<PoolBox<Self>> {
        let job = CopyJob {
            state: state.clone(),
            chunk,
            bio: BioSlot::new(),
            zero,
            slot: None,
        };
        Mempool::alloc(&state.job_pool, job, GFP_NOIO)
    }
}

impl Snap {
    /// Starts `job`, holding `slot`, copying its chunk to COW chunk
    /// `new_chunk` (C: `start_copy()`). Cannot fail: the job was allocated
    /// before the pending exception went in, and whatever happens to the
    /// copy is reported by its completion, which runs in kcopyd's thread,
    /// never under the caller's locks.
    pub(super) fn start_copy(&self, mut job: PoolBox<CopyJob>, slot: Slot, new_chunk: u64) {
        let chunk = self.state.cfg.chunk;
        let src = chunk.first_sector(job.chunk);
        let count = u64::from(chunk.sectors()).min(self.origin.sectors().saturating_sub(src));
        let from = self.origin.region(src, count);
        let to = self.cow.region(chunk.first_sector(new_chunk), count);
        job.slot = Some(slot);
        if let Err(job) = self.kc.copy::<CopyJob>(&from, &[to], job) {
            // One destination is always accepted; end the job as failed.
            self.kc.prepare_callback::<CopyJob>(job).run(true, 0);
        }
    }

    /// Zeroes the COW chunk a whole-chunk discard maps to, then completes
    /// the discard (C: `zero_exception()`). The zeroing counts as a copy
    /// for the COW throttle, as in C; the caller holds no lock.
    pub(super) fn zero_exception(&self, bio: OwnedBio) {
        let st = &self.state;
        let slot = st.throttle.wait_for_slot(|| ());
        let to = self
            .cow
            .region(bio.sector(), u64::from(st.cfg.chunk.sectors()));
        let Ok(mut job) = CopyJob::alloc(st, 0, true) else {
            return bio.io_error();
        };
        job.slot = Some(slot);
        if let Err(b) = job.bio.put(bio) {
            return b.io_error();
        }
        if let Err(job) = self.kc.zero::<CopyJob>(&[to], job) {
            self.kc.prepare_callback::<CopyJob>(job).run(true, 0);
        }
    }
}
