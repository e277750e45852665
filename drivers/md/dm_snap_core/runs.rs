// SPDX-License-Identifier: GPL-2.0

//! Completed exceptions packed in runs of consecutive chunks, hashed by
//! their window of [`RUN_CHUNKS`] chunks.
//!
//! An exception maps an origin chunk (`old_chunk`) to a COW chunk
//! (`new_chunk`). Exceptions whose old and new chunks both follow on from
//! those of another are kept as one [`Run`], as C's
//! `dm_consecutive_chunk_count()` does: a sequential fill, the usual case,
//! takes one entry for up to [`RUN_CHUNKS`] chunks. A run never leaves its
//! window (the old chunks that share `old_chunk >> WINDOW_BITS`), so a
//! lookup looks in one bucket only, the one of its chunk's window. A
//! bucket keeps its runs in the order of their old chunks, as C keeps its
//! lists: a walk stops at the first run past the chunk, and one walk both
//! finds an exception already held and the place of a new one. This
//! module has the logic of one run and of the hashing; the table of chains
//! is `exception_table`.
//!
//! C counterpart: `dm_insert_exception()`, `dm_lookup_exception()`,
//! `__remove_single_exception_chunk()` and the sizing of the complete
//! table in `init_hash_tables()`, in `drivers/md/dm-snap.c`. Unlike C, a
//! run cannot grow past its window even when two windows share a bucket,
//! so its count never overflows its 8 bits; and a window is an eighth of
//! C's (32 chunks, not 256), so that the windows of an origin spread over
//! the buckets: see [`WINDOW_BITS`].

/// The bits of a run's length less one, as C's `DM_CHUNK_CONSECUTIVE_BITS`.
pub const RUN_BITS: u32 = 8;

/// The bits of a window, the old chunks that share `chunk >> WINDOW_BITS`
/// and one bucket. C's is [`RUN_BITS`]: a window of 256 chunks. A bucket
/// is one of up to 2^18, so the windows of an origin of fewer than 2^26
/// chunks (256 GiB of 4 KiB chunks) number fewer than the buckets, and a
/// random fill crowds into the few buckets they use: with an origin four
/// times the COW device's size, C's chains are 64 runs long, walked at
/// each insertion and lookup, while most buckets stay empty. Windows of 32
/// chunks make chains eight times shorter, for eight nodes where C has one
/// per 256 chunks of a sequential fill. Those are 24-byte nodes
/// (`exception_table`), so its memory stays under C's (2.0 against 2.6
/// MiB at 1 M exceptions, most of it the buckets).
pub const WINDOW_BITS: u32 = 5;

/// The most chunks one run holds, and the size of a window.
pub const RUN_CHUNKS: u64 = 1 << WINDOW_BITS;

/// The bits of a packed run's `new_chunk` (C: `DM_CHUNK_NUMBER_BITS`).
pub const NEW_CHUNK_BITS: u32 = 64 - RUN_BITS;

/// Consecutive exceptions: `old_chunk + i` maps to `new_chunk + i` for `i`
/// from 0 to `extra`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// The first origin chunk.
    pub old_chunk: u64,
    /// The COW chunk of the first origin chunk.
    pub new_chunk: u64,
    /// The number of chunks after the first (C's consecutive count).
    pub extra: u8,
}

/// What removing one chunk left of its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    /// The run held only that chunk: the caller drops it.
    Empty,
    /// The run is one chunk shorter.
    Shorter,
    /// The chunk is inside the run, not at an end (C refuses this too:
    /// merges remove chunks in the reverse order of their addition).
    Middle,
    /// The run does not hold the chunk.
    NotHeld,
}

impl Run {
    /// The run of one exception.
    pub const fn one(old_chunk: u64, new_chunk: u64) -> Self {
        Self {
            old_chunk,
            new_chunk,
            extra: 0,
        }
    }

    /// The number of chunks in the run (at least one).
    pub fn chunks(&self) -> u64 {
        u64::from(self.extra) + 1
    }

    /// The last origin chunk of the run.
    pub fn last(&self) -> u64 {
        self.old_chunk + u64::from(self.extra)
    }

    /// The COW chunk of origin chunk `chunk`, if the run holds it.
    #[inline]
    pub fn lookup(&self, chunk: u64) -> Option<u64> {
        let i = chunk.checked_sub(self.old_chunk)?;
        (i <= u64::from(self.extra)).then(|| self.new_chunk + i)
    }

    /// Adds the exception `old_chunk` to `new_chunk` at either end of the
    /// run, if it follows on from the run in both chunks and stays in the
    /// run's window; false if it does not.
    #[inline]
    pub fn try_add(&mut self, old_chunk: u64, new_chunk: u64) -> bool {
        if self.extra == u8::MAX || window(old_chunk) != window(self.old_chunk) {
            return false;
        }
        let after = u64::from(self.extra) + 1;
        if self.old_chunk.checked_add(after) == Some(old_chunk)
            && self.new_chunk.checked_add(after) == Some(new_chunk)
        {
            self.extra += 1;
            return true;
        }
        if old_chunk.checked_add(1) == Some(self.old_chunk)
            && new_chunk.checked_add(1) == Some(self.new_chunk)
        {
            self.old_chunk = old_chunk;
            self.new_chunk = new_chunk;
            self.extra += 1;
            return true;
        }
        false
    }

    /// Removes `chunk`, which must be the first or the last of the run
    /// (C: `__remove_single_exception_chunk()`).
    pub fn remove(&mut self, chunk: u64) -> Removed {
        if self.lookup(chunk).is_none() {
            return Removed::NotHeld;
        }
        if self.extra == 0 {
            return Removed::Empty;
        }
        if chunk == self.old_chunk {
            self.old_chunk += 1;
            self.new_chunk += 1;
        } else if chunk != self.last() {
            return Removed::Middle;
        }
        self.extra -= 1;
        Removed::Shorter
    }

    /// The run in two words, as C keeps it: the old chunk, and the new
    /// chunk with the count in its top [`RUN_BITS`] bits. `None` if the new
    /// chunk does not fit in [`NEW_CHUNK_BITS`] bits (no COW device has
    /// that many chunks).
    pub fn pack(&self) -> Option<(u64, u64)> {
        if self.new_chunk >> NEW_CHUNK_BITS != 0 {
            return None;
        }
        Some((
            self.old_chunk,
            self.new_chunk | u64::from(self.extra) << NEW_CHUNK_BITS,
        ))
    }

    /// The run [`Run::pack`] packed.
    pub fn unpack(old_chunk: u64, packed: u64) -> Self {
        Self {
            old_chunk,
            new_chunk: packed & ((1 << NEW_CHUNK_BITS) - 1),
            extra: (packed >> NEW_CHUNK_BITS) as u8,
        }
    }
}

/// The window of origin chunk `chunk`: the runs that may hold it are in
/// this window's bucket.
#[inline]
pub fn window(chunk: u64) -> u64 {
    chunk >> WINDOW_BITS
}

/// The bucket of origin chunk `chunk` in a table of `1 << order` buckets
/// (C: `exception_hash()` with the complete table's `hash_shift`).
#[inline]
pub fn bucket(chunk: u64, order: u32) -> usize {
    (window(chunk) & ((1u64 << order) - 1)) as usize
}

/// The order of the bucket count of a complete table for a COW device of
/// `cow_chunks` chunks (C: `init_hash_tables()`): one bucket a COW chunk,
/// at least 64 and at most the 2 MiB of heads C allows (262144), rounded
/// down to a power of two.
pub fn table_order(cow_chunks: u64) -> u32 {
    const MIN_ORDER: u32 = 6;
    const MAX_ORDER: u32 = 18;
    match cow_chunks.checked_ilog2() {
        Some(o) => o.clamp(MIN_ORDER, MAX_ORDER),
        None => MIN_ORDER,
    }
}
