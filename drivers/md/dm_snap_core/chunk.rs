// SPDX-License-Identifier: GPL-2.0

//! Chunk arithmetic.
//!
//! A snapshot divides its origin into chunks of a power-of-two number of
//! 512-byte sectors; every copy-on-write copies one whole chunk.
//! C counterpart: `dm_exception_store_set_chunk_size()` and the
//! `sector_to_chunk()`/`chunk_to_sector()` helpers in `dm-exception-store.h`.

/// A sector number or count, in 512-byte units (`sector_t`).
pub type Sector = u64;

/// A chunk number (`chunk_t`).
pub type Chunk = u64;

/// Why a chunk size was refused; each maps to the C target's `ti->error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkSizeError {
    /// Zero sectors.
    Zero,
    /// Not a power of two.
    NotPowerOfTwo,
    /// Larger than C allows (`INT_MAX >> SECTOR_SHIFT` sectors).
    TooLarge,
    /// Not a multiple of a device's logical block size.
    NotBlockMultiple,
}

impl ChunkSizeError {
    /// The message the C target reports for this error.
    pub fn message(self) -> &'static str {
        match self {
            ChunkSizeError::Zero => "Chunk size not set",
            ChunkSizeError::NotPowerOfTwo => "Chunk size is not a power of 2",
            ChunkSizeError::TooLarge => "Chunk size is too high",
            ChunkSizeError::NotBlockMultiple => "Chunk size is not a multiple of device blocksize",
        }
    }
}

/// The largest chunk size C accepts, in sectors (`INT_MAX >> SECTOR_SHIFT`).
pub const MAX_CHUNK_SECTORS: u64 = (i32::MAX as u64) >> 9;

/// A validated chunk size.
///
/// # Invariants
///
/// `sectors` is a non-zero power of two no larger than [`MAX_CHUNK_SECTORS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSize {
    sectors: u32,
    shift: u32,
}

impl ChunkSize {
    /// Validates a chunk size given in sectors.
    pub fn new(sectors: u64) -> Result<Self, ChunkSizeError> {
        if sectors == 0 {
            return Err(ChunkSizeError::Zero);
        }
        if !sectors.is_power_of_two() {
            return Err(ChunkSizeError::NotPowerOfTwo);
        }
        if sectors > MAX_CHUNK_SECTORS {
            return Err(ChunkSizeError::TooLarge);
        }
        let sectors = u32::try_from(sectors).map_err(|_| ChunkSizeError::TooLarge)?;
        // INVARIANT: checked above: non-zero power of two, at most the maximum.
        Ok(Self {
            sectors,
            shift: sectors.trailing_zeros(),
        })
    }

    /// Checks the size against a device's logical block size in bytes.
    pub fn fits_block_size(self, block_bytes: u32) -> Result<(), ChunkSizeError> {
        let block_sectors = (block_bytes >> 9).max(1);
        if self.sectors % block_sectors != 0 {
            return Err(ChunkSizeError::NotBlockMultiple);
        }
        Ok(())
    }

    /// The size in sectors.
    pub fn sectors(self) -> u32 {
        self.sectors
    }

    /// log2 of the size in sectors.
    pub fn shift(self) -> u32 {
        self.shift
    }

    /// The chunk that holds `sector`.
    pub fn sector_to_chunk(self, sector: Sector) -> Chunk {
        sector >> self.shift
    }

    /// The first sector of `chunk`, or `None` if it lies beyond `u64`.
    pub fn chunk_to_sector(self, chunk: Chunk) -> Option<Sector> {
        chunk.checked_mul(u64::from(self.sectors))
    }

    /// The first sector of `chunk`, a chunk of a device's sectors (C's
    /// `chunk_to_sector()`, which cannot overflow for such a chunk).
    pub fn first_sector(self, chunk: Chunk) -> Sector {
        chunk << self.shift
    }

    /// Where `sector` lands when its chunk is remapped to `new_chunk`: the
    /// same offset in that chunk (C: `remap_exception()`).
    pub fn remap(self, new_chunk: Chunk, sector: Sector) -> Sector {
        self.first_sector(new_chunk) + self.offset_in_chunk(sector)
    }

    /// The offset of `sector` within its chunk.
    pub fn offset_in_chunk(self, sector: Sector) -> Sector {
        sector & (u64::from(self.sectors) - 1)
    }
}
