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
    alloc::Flags,
    bio::{BioSlot, OwnedBio},
    device_mapper::kcopyd::{self, PreparedCallback},
    mempool::{Mempool, PoolBox},
    prelude::*,
    sync::Arc,
};

/// A copy in flight, or a chunk being zeroed for a discard.
pub(crate) struct CopyJob {
    pub(super) state: Arc<SnapState>,
    pub(super) chunk: u64,
    /// The COW chunk the copy writes.
    pub(super) new_chunk: u64,
    /// The bio the job completes: a whole-chunk write, or a discard.
    pub(super) bio: BioSlot,
    pub(super) zero: bool,
    /// The job's place in the COW throttle, given back when the copy ends.
    pub(super) slot: Option<Slot>,
    /// The copies of the same origin chunk into other snapshots that this
    /// job's one read serves, its second destination on (see [`Copies`]):
    /// each completes in its own snapshot's kcopyd thread.
    pub(super) followers: [Option<PreparedCallback<CopyJob>>; kcopyd::MAX_REGIONS - 1],
    /// The copies of the chunks before this one, of the same snapshot and
    /// to the COW chunks before its own, that this job's copy covers too
    /// (see [`Copies`]), the last of them first.
    pub(super) earlier: Option<PoolBox<CopyJob>>,
}

impl CopyJob {
    /// A job for `chunk` of `state`, from its pool (`GFP_NOIO` waits for
    /// an element rather than fail).
    pub(super) fn alloc(
        state: &Arc<SnapState>,
        chunk: u64,
        zero: bool,
        flags: Flags,
    ) -> Result<PoolBox<Self>> {
        let job = CopyJob {
            state: state.clone(),
            chunk,
            new_chunk: 0,
            bio: BioSlot::new(),
            zero,
            slot: None,
            followers: Default::default(),
            earlier: None,
        };
        Mempool::alloc(&state.job_pool, job, flags)
    }
}

/// The copies one origin write starts: those of the same origin range go
/// out as one kcopyd job, which reads the origin once and writes every
/// snapshot's COW chunk (up to [`kcopyd::MAX_REGIONS`]) from that read.
/// C has no counterpart: `__origin_write()` starts a copy, and a read of
/// the origin, per snapshot.
///
/// Each copy keeps its own pending exception, throttle slot, commit and
/// invalidation; only the read is shared. The job runs on the first
/// snapshot's kcopyd client and writes the others' COW devices, which
/// stay open until their pending exceptions are gone ([`Snap`]'s drop
/// waits for them, as C's `snapshot_dtr()` does). The others' copies end
/// in their own clients' threads, prepared as the copy is added: their
/// commits then run side by side, as in C, where each snapshot's copy is
/// a job of its own client, rather than one after the other in the first
/// snapshot's thread, which would add up the COW devices' write
/// latencies.
///
/// The copies of consecutive chunks of one snapshot to consecutive COW
/// chunks, as those of a write over several chunks usually are, go out
/// as one kcopyd job too, the origin read and the COW write each as one
/// (or as kcopyd's sub-jobs), each copy keeping its own commit. C starts
/// one job per chunk, the origin write being split at every chunk.
///
/// Every copy added is started by [`Copies::start`], which runs when the
/// value is dropped at the latest: a copy, once its pending exception is
/// in, always starts. Its caller starts them before it waits for anything
/// a copy's end may be needed for: a throttle slot, a handover, memory
/// from the pools of copies it holds.
pub(super) struct Copies<'a> {
    /// The first snapshot, whose client runs the job, and its copy job,
    /// whose followers are the others' in destination order.
    lead: Option<(&'a Snap, PoolBox<CopyJob>)>,
    /// The origin range the job reads.
    from: (u64, u64),
    /// The destinations so far, in the order of the chain.
    to: [Option<(&'a Snap, u64)>; kcopyd::MAX_REGIONS],
    n: usize,
}

/// The most sectors one job of [`Copies`] copies for consecutive chunks:
/// 256 KiB, as much as an origin write spans with 4 KiB chunks.
const MAX_COPY_SECTORS: u64 = 512;

impl<'a> Copies<'a> {
    /// No copy yet.
    pub(super) fn new() -> Self {
        Copies {
            lead: None,
            from: (0, 0),
            to: [None; kcopyd::MAX_REGIONS],
            n: 0,
        }
    }

    /// Adds the copy of `job`'s chunk to COW chunk `new_chunk` of `snap`,
    /// which holds `slot`. It joins the job being built if it reads the
    /// same origin range and there is room, or if it copies the next
    /// chunk to the next COW chunk of the job's only snapshot; otherwise
    /// that job starts and this one begins the next. May sleep for memory
    /// (`GFP_NOIO`), as the copy's allocation did.
    pub(super) fn add(
        &mut self,
        snap: &'a Snap,
        mut job: PoolBox<CopyJob>,
        slot: Slot,
        new_chunk: u64,
    ) {
        job.slot = Some(slot);
        job.new_chunk = new_chunk;
        let from = snap.copy_range(job.chunk);
        if self.extends(snap, &job, from) {
            if let Some((_, last)) = self.lead.take() {
                job.earlier = Some(last);
            }
            self.lead = Some((snap, job));
            self.from.1 += from.1;
            return;
        }
        if self.lead.is_some() && (from != self.from || self.n == kcopyd::MAX_REGIONS) {
            self.start();
        }
        match self.lead.as_mut() {
            None => {
                self.from = from;
                self.lead = Some((snap, job));
            }
            Some((_, lead)) => {
                // Its completion runs in its own snapshot's thread. The
                // lead is destination 0 and n < MAX_REGIONS here, so
                // followers[n - 1] is there, and free.
                let f = self
                    .n
                    .checked_sub(1)
                    .and_then(|i| lead.followers.get_mut(i));
                let cb = snap.kc.prepare_callback::<CopyJob>(job);
                match f {
                    Some(f) => *f = Some(cb),
                    // Not reached; were it, the copy would fail rather
                    // than never end.
                    None => cb.run(true, 0),
                }
            }
        }
        self.to[self.n] = Some((snap, new_chunk));
        self.n += 1;
    }

    /// Whether the copy of `job`, reading `from`, continues the job being
    /// built: one snapshot's, its last copy that of the chunk before, to
    /// the COW chunk before, its origin range ending where `from` begins
    /// (so no copy in it was cut short by the origin's end), and short of
    /// [`MAX_COPY_SECTORS`]. Only copies from the origin come here, none
    /// with a bio to complete: zeroings and whole-chunk writes go to
    /// kcopyd apart.
    fn extends(&self, snap: &Snap, job: &CopyJob, from: (u64, u64)) -> bool {
        let Some((lead_snap, last)) = self.lead.as_ref() else {
            return false;
        };
        self.n == 1
            && core::ptr::eq(*lead_snap, snap)
            && last.chunk.checked_add(1) == Some(job.chunk)
            && last.new_chunk.checked_add(1) == Some(job.new_chunk)
            && self.from.0.checked_add(self.from.1) == Some(from.0)
            && self.from.1 + from.1 <= MAX_COPY_SECTORS
    }

    /// Starts the job built so far, if any (C: `start_copy()`). Cannot
    /// fail: whatever happens to the copy is reported by its completion,
    /// which runs in kcopyd's thread, never under the caller's locks.
    pub(super) fn start(&mut self) {
        let Some((lead, job)) = self.lead.take() else {
            return;
        };
        let (src, count) = self.from;
        let to = self
            .to
            .iter_mut()
            .filter_map(Option::take)
            .map(|(snap, new_chunk)| {
                let first = snap.state.cfg.chunk.first_sector(new_chunk);
                snap.cow.span(first, count)
            });
        self.n = 0;
        if let Err(job) = lead
            .kc
            .copy::<CopyJob>(lead.origin.span(src, count), to, job)
        {
            // At least one destination and at most the most kcopyd takes.
            lead.kc.prepare_callback::<CopyJob>(job).run(true, 0);
        }
    }
}

impl Drop for Copies<'_> {
    fn drop(&mut self) {
        self.start();
    }
}

impl Snap {
    /// The origin range that a copy of `chunk` reads: the chunk, or what
    /// of it lies within the origin.
    pub(super) fn copy_range(&self, chunk: u64) -> (u64, u64) {
        let size = self.state.cfg.chunk;
        let src = size.first_sector(chunk);
        let count = u64::from(size.sectors()).min(self.origin.sectors().saturating_sub(src));
        (src, count)
    }

    /// Starts `job`, holding `slot`, copying its chunk to COW chunk
    /// `new_chunk` (C: `start_copy()`): a copy of its own.
    pub(super) fn start_copy(&self, job: PoolBox<CopyJob>, slot: Slot, new_chunk: u64) {
        let mut copies = Copies::new();
        copies.add(self, job, slot, new_chunk);
        copies.start();
    }

    /// Zeroes the COW chunk a whole-chunk discard maps to, then completes
    /// the discard (C: `zero_exception()`). The zeroing counts as a copy
    /// for the COW throttle, as in C; the caller holds no lock.
    pub(super) fn zero_exception(&self, bio: OwnedBio) {
        let st = &self.state;
        let slot = st.throttle.wait_for_slot(|| ());
        let to = self
            .cow
            .span(bio.sector(), u64::from(st.cfg.chunk.sectors()));
        let Ok(mut job) = CopyJob::alloc(st, 0, true, GFP_NOIO) else {
            return bio.io_error();
        };
        job.slot = Some(slot);
        if let Err(b) = job.bio.put(bio) {
            return b.io_error();
        }
        if let Err(job) = self.kc.zero::<CopyJob>([to], job) {
            self.kc.prepare_callback::<CopyJob>(job).run(true, 0);
        }
    }
}
