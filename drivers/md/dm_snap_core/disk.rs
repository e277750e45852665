// SPDX-License-Identifier: GPL-2.0

//! The on-disk format of the persistent exception store.
//!
//! Byte for byte the format of `drivers/md/dm-snap-persistent.c`:
//!
//! - chunk 0 holds the header: little-endian `u32` magic (`0x70416e53`),
//!   valid flag, version (1) and chunk size in sectors, then zeroes;
//! - metadata areas of one chunk each follow at chunk
//!   `1 + area * (exceptions_per_area + 1)`, every one followed by the
//!   `exceptions_per_area` data chunks it describes;
//! - an area holds `chunk_size * 512 / 16` exceptions of two little-endian
//!   `u64`, `{old_chunk, new_chunk}`; the first `new_chunk` of 0 ends the
//!   metadata.
//!
//! Unlike C, the loader here checks every exception against the device: a
//! `new_chunk` past the end of the COW device or on the header or a metadata
//! area is refused, so a corrupt or hostile device cannot make the snapshot
//! read or write outside its data chunks.

use super::chunk::{ChunkSize, ChunkSizeError};

/// `SNAP_MAGIC`: "SnAp".
pub const SNAP_MAGIC: u32 = 0x7041_6e53;
/// `SNAPSHOT_DISK_VERSION`.
pub const DISK_VERSION: u32 = 1;
/// `NUM_SNAPSHOT_HDR_CHUNKS`: the header chunk before the first area.
pub const HDR_CHUNKS: u64 = 1;
/// The size of the header's fields in bytes.
pub const HEADER_SIZE: usize = 16;
/// The size of one on-disk exception in bytes.
pub const EXCEPTION_SIZE: usize = 16;
/// `DM_CHUNK_SIZE_DEFAULT_SECTORS`: the chunk size of a new device whose
/// table gives 0.
pub const DEFAULT_CHUNK_SECTORS: u64 = 32;

fn le32(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

#[inline]
fn le64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

/// Why metadata on a COW device was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataError {
    /// A buffer shorter than the structure read from it.
    Short,
    /// The magic is neither 0 (new device) nor `SNAP_MAGIC`.
    BadMagic,
    /// A version other than 1.
    BadVersion(u32),
    /// The chunk size in the header (the value given) is not acceptable.
    BadChunkSize(u32, ChunkSizeError),
    /// The chunk size in the header is larger than the COW device.
    ChunkBeyondDevice,
    /// A metadata area would lie past the end of the COW device.
    AreaBeyondDevice,
    /// An exception's `new_chunk` lies past the end of the COW device.
    NewChunkBeyondDevice,
    /// An exception's `new_chunk` is the header or a metadata area.
    NewChunkOnMetadata,
}

impl MetadataError {
    /// A message for the kernel log.
    pub fn message(self) -> &'static str {
        match self {
            MetadataError::Short => "Metadata buffer too short",
            MetadataError::BadMagic => "Invalid or corrupt snapshot",
            MetadataError::BadVersion(_) => "unable to handle snapshot disk version",
            MetadataError::BadChunkSize(_, e) => e.message(),
            MetadataError::ChunkBeyondDevice => "chunk size in device metadata exceeds the device",
            MetadataError::AreaBeyondDevice => "metadata area beyond the end of the COW device",
            MetadataError::NewChunkBeyondDevice => "exception beyond the end of the COW device",
            MetadataError::NewChunkOnMetadata => "exception points to a metadata chunk",
        }
    }
}

/// The header fields, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `SNAP_MAGIC`, or 0 on a new device.
    pub magic: u32,
    /// Non-zero while the snapshot is valid.
    pub valid: u32,
    /// `DISK_VERSION`.
    pub version: u32,
    /// The chunk size in sectors.
    pub chunk_size: u32,
}

impl Header {
    /// The header C writes for a snapshot.
    pub fn new(chunk: ChunkSize, valid: bool) -> Self {
        Self {
            magic: SNAP_MAGIC,
            valid: u32::from(valid),
            version: DISK_VERSION,
            chunk_size: chunk.sectors(),
        }
    }

    /// Reads the header from the first bytes of chunk 0.
    pub fn decode(buf: &[u8]) -> Result<Self, MetadataError> {
        if buf.len() < HEADER_SIZE {
            return Err(MetadataError::Short);
        }
        Ok(Self {
            magic: le32(buf, 0),
            valid: le32(buf, 4),
            version: le32(buf, 8),
            chunk_size: le32(buf, 12),
        })
    }

    /// Writes the header as chunk 0: the fields, then zeroes to the end of
    /// `buf` (C clears the whole chunk).
    pub fn encode(&self, buf: &mut [u8]) -> Result<(), MetadataError> {
        if buf.len() < HEADER_SIZE {
            return Err(MetadataError::Short);
        }
        buf.fill(0);
        buf[0..4].copy_from_slice(&self.magic.to_le_bytes());
        buf[4..8].copy_from_slice(&self.valid.to_le_bytes());
        buf[8..12].copy_from_slice(&self.version.to_le_bytes());
        buf[12..16].copy_from_slice(&self.chunk_size.to_le_bytes());
        Ok(())
    }
}

/// What a COW device's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderState {
    /// Magic 0: a new snapshot; the header is to be written.
    New,
    /// A snapshot with metadata in the given chunk size.
    Existing {
        /// The chunk size the metadata was written with (it overrides the
        /// table's, as in C).
        chunk: ChunkSize,
        /// False once the snapshot was invalidated.
        valid: bool,
    },
}

/// Checks a header read from a COW device of `cow_sectors` sectors.
///
/// C's checks in C's order (magic, chunk size, version), so that a header
/// with two faults is refused for the one C names, plus one C lacks: a
/// chunk size no larger than the device (C reads past the device's end
/// and fails with an I/O error).
pub fn check_header(header: &Header, cow_sectors: u64) -> Result<HeaderState, MetadataError> {
    if header.magic == 0 {
        return Ok(HeaderState::New);
    }
    if header.magic != SNAP_MAGIC {
        return Err(MetadataError::BadMagic);
    }
    // C checks an on-disk chunk size with `is_power_of_2()` only, so 0 is
    // "not a power of 2" there, not "not set".
    let chunk = ChunkSize::new(u64::from(header.chunk_size)).map_err(|e| {
        let e = match e {
            ChunkSizeError::Zero => ChunkSizeError::NotPowerOfTwo,
            e => e,
        };
        MetadataError::BadChunkSize(header.chunk_size, e)
    })?;
    if header.version != DISK_VERSION {
        return Err(MetadataError::BadVersion(header.version));
    }
    if u64::from(chunk.sectors()) > cow_sectors {
        return Err(MetadataError::ChunkBeyondDevice);
    }
    Ok(HeaderState::Existing {
        chunk,
        valid: header.valid != 0,
    })
}

/// The byte offset of exception `index` in an area of `len` bytes.
#[inline]
fn exception_offset(len: usize, index: u64) -> Result<usize, MetadataError> {
    usize::try_from(index)
        .ok()
        .and_then(|i| i.checked_mul(EXCEPTION_SIZE))
        .filter(|at| at + EXCEPTION_SIZE <= len)
        .ok_or(MetadataError::Short)
}

/// One exception: the origin chunk and the COW chunk holding its old data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskException {
    /// The chunk of the origin.
    pub old_chunk: u64,
    /// The chunk of the COW device.
    pub new_chunk: u64,
}

/// The placement of metadata on a COW device for one chunk size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    chunk: ChunkSize,
    exceptions_per_area: u64,
    dev_chunks: u64,
}

impl Layout {
    /// The layout for `chunk` on a COW device of `cow_sectors` sectors.
    pub fn new(chunk: ChunkSize, cow_sectors: u64) -> Self {
        Self {
            chunk,
            exceptions_per_area: (u64::from(chunk.sectors()) << 9) / EXCEPTION_SIZE as u64,
            dev_chunks: chunk.sector_to_chunk(cow_sectors),
        }
    }

    /// The chunk size.
    pub fn chunk(&self) -> ChunkSize {
        self.chunk
    }

    /// Exceptions in one metadata area.
    pub fn exceptions_per_area(&self) -> u64 {
        self.exceptions_per_area
    }

    /// Whole chunks on the COW device.
    pub fn dev_chunks(&self) -> u64 {
        self.dev_chunks
    }

    #[inline]
    fn stride(&self) -> u64 {
        self.exceptions_per_area + 1
    }

    /// The chunk of metadata area `area` (C's `area_location()`).
    pub fn area_location(&self, area: u64) -> Option<u64> {
        area.checked_mul(self.stride())?.checked_add(HDR_CHUNKS)
    }

    /// Whether `chunk` is the header or a metadata area.
    #[inline]
    pub fn is_metadata(&self, chunk: u64) -> bool {
        chunk < HDR_CHUNKS || (chunk - HDR_CHUNKS) % self.stride() == 0
    }

    /// Reads exception `index` of an area.
    #[inline]
    pub fn read_exception(&self, area: &[u8], index: u64) -> Result<DiskException, MetadataError> {
        let at = exception_offset(area.len(), index)?;
        Ok(DiskException {
            old_chunk: le64(area, at),
            new_chunk: le64(area, at + 8),
        })
    }

    /// Writes exception `index` of an area.
    pub fn write_exception(
        &self,
        area: &mut [u8],
        index: u64,
        e: DiskException,
    ) -> Result<(), MetadataError> {
        let at = exception_offset(area.len(), index)?;
        area[at..at + 8].copy_from_slice(&e.old_chunk.to_le_bytes());
        area[at + 8..at + 16].copy_from_slice(&e.new_chunk.to_le_bytes());
        Ok(())
    }
}

/// The allocation state of a persistent store, as C's `struct pstore`
/// fields `next_free`, `current_area` and `current_committed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreState {
    /// The next free chunk of the COW device.
    pub next_free: u64,
    /// The metadata area being filled.
    pub current_area: u64,
    /// Exceptions committed to the current area.
    pub current_committed: u64,
}

impl StoreState {
    /// The state of a new store: header, first area, nothing committed.
    pub fn new() -> Self {
        Self {
            next_free: HDR_CHUNKS + 1,
            current_area: 0,
            current_committed: 0,
        }
    }

    /// Steps `next_free` over a metadata area (C's `skip_metadata()`).
    fn skip_metadata(&mut self, layout: &Layout) {
        if self.next_free % layout.stride() == HDR_CHUNKS {
            self.next_free += 1;
        }
    }

    /// Allocates the COW chunk for a new exception, or `None` when the
    /// device is full (C's `persistent_prepare_exception()`).
    pub fn prepare(&mut self, layout: &Layout) -> Option<u64> {
        if layout.dev_chunks < self.next_free.checked_add(1)? {
            return None;
        }
        let chunk = self.next_free;
        self.next_free += 1;
        self.skip_metadata(layout);
        Some(chunk)
    }

    /// Accounts one committed exception; returns true when the area is full
    /// and the next one begins (C's `persistent_commit_exception()`).
    pub fn commit(&mut self, layout: &Layout) -> bool {
        self.current_committed += 1;
        if self.current_committed == layout.exceptions_per_area {
            self.current_committed = 0;
            self.current_area += 1;
            return true;
        }
        false
    }

    /// Sectors in use and sectors of metadata, for the status line
    /// (C's `persistent_usage()`).
    pub fn usage(&self, layout: &Layout) -> (u64, u64) {
        let cs = u64::from(layout.chunk.sectors());
        (
            self.next_free.saturating_mul(cs),
            (self.current_area + 1 + HDR_CHUNKS).saturating_mul(cs),
        )
    }
}

impl Default for StoreState {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads the metadata areas of an existing store, one at a time
/// (C's `read_exceptions()`), checking every exception.
pub struct Loader {
    layout: Layout,
    state: StoreState,
    done: bool,
}

impl Loader {
    /// Starts loading with `layout`.
    pub fn new(layout: Layout) -> Self {
        Self {
            layout,
            state: StoreState::new(),
            done: false,
        }
    }

    /// The chunk of the area to read next, or `None` once the last area
    /// (the first that is not full) has been fed.
    pub fn next_area(&self) -> Result<Option<u64>, MetadataError> {
        if self.done {
            return Ok(None);
        }
        match self.layout.area_location(self.state.current_area) {
            Some(chunk) if chunk < self.layout.dev_chunks => Ok(Some(chunk)),
            _ => Err(MetadataError::AreaBeyondDevice),
        }
    }

    /// Feeds the area returned by [`Loader::next_area`]; `add` is called
    /// with every exception in it and may refuse one (a repeated
    /// `old_chunk`, say) with an error of its own.
    pub fn feed<E: From<MetadataError>>(
        &mut self,
        area: &[u8],
        mut add: impl FnMut(DiskException) -> Result<(), E>,
    ) -> Result<(), E> {
        let layout = self.layout;
        for i in 0..layout.exceptions_per_area {
            let e = layout.read_exception(area, i)?;
            if e.new_chunk == 0 {
                self.state.current_committed = i;
                self.done = true;
                return Ok(());
            }
            if e.new_chunk >= layout.dev_chunks {
                return Err(MetadataError::NewChunkBeyondDevice.into());
            }
            if layout.is_metadata(e.new_chunk) {
                return Err(MetadataError::NewChunkOnMetadata.into());
            }
            if self.state.next_free <= e.new_chunk {
                self.state.next_free = e.new_chunk + 1;
            }
            add(e)?;
        }
        // A full area: the metadata goes on in the next one.
        self.state.current_area += 1;
        Ok(())
    }

    /// The store's state after the last area.
    pub fn finish(mut self) -> StoreState {
        self.state.skip_metadata(&self.layout);
        self.state
    }
}
