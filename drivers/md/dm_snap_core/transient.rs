// SPDX-License-Identifier: GPL-2.0

//! The transient store's allocation: COW chunks handed out one after the
//! other from the start of the device, nothing on disk.
//!
//! C counterpart: `transient_prepare_exception()` and `transient_usage()`
//! in `drivers/md/dm-snap-transient.c`.

use super::chunk::ChunkSize;

/// The sectors of the COW device handed out (C: `struct transient_c`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Transient {
    /// The first sector not handed out yet.
    pub next_free: u64,
}

impl Transient {
    /// Nothing handed out.
    pub const fn new() -> Self {
        Self { next_free: 0 }
    }

    /// The next free COW chunk, or `None` if a chunk of `chunk` no longer
    /// fits in `cow_sectors`, the COW device's size now (it may have
    /// grown since the last call).
    pub fn prepare(&mut self, chunk: ChunkSize, cow_sectors: u64) -> Option<u64> {
        let sectors = u64::from(chunk.sectors());
        let end = self.next_free.checked_add(sectors)?;
        if end > cow_sectors {
            return None;
        }
        let new_chunk = chunk.sector_to_chunk(self.next_free);
        self.next_free = end;
        Some(new_chunk)
    }

    /// Sectors allocated and metadata sectors, as the status line shows.
    pub fn usage(&self) -> (u64, u64) {
        (self.next_free, 0)
    }
}
