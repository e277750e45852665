// SPDX-License-Identifier: GPL-2.0

//! Parsing of `snapshot` table lines.
//!
//! `<origin> <COW device> <P|PO|N> <chunk size> [<#features> [<feature>]*]`
//!
//! The checks, their order and their messages are C's (`snapshot_ctr()`,
//! `parse_snapshot_features()`, `dm_exception_store_create()`), so a table
//! is refused for the same reason by either module. The checks that need the
//! devices (opening them, comparing them, the block size) are the kernel
//! side's; everything else is here.

use super::chunk::{ChunkSize, ChunkSizeError};
use core::ffi::CStr;

/// The exception store a table asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// `N`: exceptions live in memory only.
    Transient,
    /// `P` or, with `overflow`, `PO`: exceptions are kept on the COW device.
    Persistent {
        /// `PO`: userspace understands `Overflow` (writes to a full snapshot
        /// fail instead of invalidating it).
        overflow: bool,
    },
}

impl StoreKind {
    /// The store type as the table line prints it (`N`, `P` or `PO`).
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Transient => "N",
            StoreKind::Persistent { overflow: false } => "P",
            StoreKind::Persistent { overflow: true } => "PO",
        }
    }
}

/// The first part of a `snapshot` table line: what C checks before it
/// opens the devices. `A` is the caller's argument type (`&str` here; the
/// kernel side keeps each argument's C string beside its text, to open the
/// devices by).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotArgs<A> {
    /// The origin device's path or `major:minor`.
    pub origin: A,
    /// The COW device's path or `major:minor`.
    pub cow: A,
    /// The store type argument, checked by [`parse_store`] after the devices.
    pub store: A,
    /// The chunk size argument, checked by [`parse_store`] after the devices.
    pub chunk_size: A,
    /// The optional features.
    pub features: Features,
}

impl<A> SnapshotArgs<A> {
    /// The number of feature arguments the table line prints.
    pub fn num_features(&self) -> u32 {
        self.features.count()
    }
}

/// The optional features of a `snapshot` table line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// `discard_zeroes_cow`: a discard of a chunk that has an exception
    /// zeroes its COW chunk.
    pub discard_zeroes_cow: bool,
    /// `discard_passdown_origin`: discards go on to the origin too.
    pub discard_passdown_origin: bool,
}

impl Features {
    /// The feature `discard_zeroes_cow`, as a table line spells it.
    pub const DISCARD_ZEROES_COW: &'static str = "discard_zeroes_cow";
    /// The feature `discard_passdown_origin`, as a table line spells it.
    pub const DISCARD_PASSDOWN_ORIGIN: &'static str = "discard_passdown_origin";

    /// The number of features set.
    pub fn count(self) -> u32 {
        u32::from(self.discard_zeroes_cow) + u32::from(self.discard_passdown_origin)
    }

    /// The names of the features set, in the order a table line shows them
    /// (C: `snapshot_status()`).
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        [
            (self.discard_zeroes_cow, Self::DISCARD_ZEROES_COW),
            (self.discard_passdown_origin, Self::DISCARD_PASSDOWN_ORIGIN),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
    }
}

/// Why an exception store could not be created.
///
/// C reports all of these to device-mapper as "Couldn't create exception
/// store" (`snapshot_ctr()` overwrites `ti->error`); [`StoreError::detail`]
/// is the message C set first, and [`StoreError::log`] what C also logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The store type is neither `P` nor `N`.
    UnknownType,
    /// The chunk size is not a decimal number.
    InvalidChunkSize,
    /// The chunk size is not acceptable.
    ChunkSize(ChunkSizeError),
    /// `P` with an option other than `O`.
    UnsupportedOption,
}

impl StoreError {
    /// The message C put in `ti->error` before overwriting it.
    pub fn detail(self) -> &'static str {
        match self {
            StoreError::UnknownType => "Exception store type is not P or N",
            StoreError::InvalidChunkSize => "Invalid chunk size",
            StoreError::ChunkSize(e) => e.message(),
            StoreError::UnsupportedOption => "Exception store type constructor failed",
        }
    }

    /// Whether C logs a line of its own for this error
    /// (`Unsupported persistent store option: <option>`).
    pub fn logs_option(self) -> bool {
        self == StoreError::UnsupportedOption
    }
}

/// Why a table line was refused, in the order C checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    /// Fewer than four arguments.
    TooFewArgs,
    /// The feature count is not a number from 0 to 2 that the line holds.
    FeatureCount,
    /// A feature other than the two known ones.
    UnknownFeature,
    /// `discard_passdown_origin` without `discard_zeroes_cow`.
    PassdownWithoutZeroes,
    /// The exception store arguments.
    Store(StoreError),
    /// A transient store with chunk size 0 (only a persistent store can take
    /// it from the COW device).
    ChunkSizeNotSet,
}

impl TableError {
    /// The reason device-mapper logs for the table (`ti->error`), a C
    /// string as `ti->error` wants it.
    pub fn message(self) -> &'static CStr {
        match self {
            TableError::TooFewArgs => c"requires 4 or more arguments",
            TableError::FeatureCount => c"Invalid number of feature arguments",
            TableError::UnknownFeature => c"Unrecognised feature requested",
            TableError::PassdownWithoutZeroes => {
                c"discard_passdown_origin feature depends on discard_zeroes_cow"
            }
            TableError::Store(_) => c"Couldn't create exception store",
            TableError::ChunkSizeNotSet => c"Chunk size not set",
        }
    }
}

/// C's `kstrtouint(s, 10, &v)`: decimal digits with an optional leading `+`
/// and an optional trailing newline, no overflow.
pub fn kstrtouint(s: &str) -> Option<u32> {
    let s = s.strip_suffix('\n').unwrap_or(s);
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.bytes().try_fold(0u32, |acc, b| {
        acc.checked_mul(10)?.checked_add(u32::from(b - b'0'))
    })
}

/// Parses the arguments of a `snapshot` table line up to the devices.
///
/// C's order of checks, which the kernel side keeps: argument count and
/// features (here); opening the origin ("Cannot get origin device"),
/// comparing it with the COW device ("COW device cannot be the same as origin
/// device"), opening the COW device ("Cannot get COW device"); the store type
/// and chunk size ([`parse_store`]); the chunk size against the devices'
/// block size ([`ChunkSize::fits_block_size`]); a transient store without a
/// chunk size ([`TableError::ChunkSizeNotSet`]).
pub fn parse_snapshot<A: Copy + AsRef<str>>(args: &[A]) -> Result<SnapshotArgs<A>, TableError> {
    let [origin, cow, store, chunk_size, features @ ..] = args else {
        return Err(TableError::TooFewArgs);
    };
    let features = self::features(features)?;
    Ok(SnapshotArgs {
        origin: *origin,
        cow: *cow,
        store: *store,
        chunk_size: *chunk_size,
        features,
    })
}

/// Parses only the feature arguments (C's `parse_snapshot_features()`).
pub fn parse_features(args: &[&str]) -> Result<Features, TableError> {
    features(args)
}

fn features<A: AsRef<str>>(args: &[A]) -> Result<Features, TableError> {
    let (mut zeroes, mut passdown) = (false, false);
    if let Some((count, rest)) = args.split_first() {
        let n = kstrtouint(count.as_ref()).ok_or(TableError::FeatureCount)? as usize;
        if n > 2 || n > rest.len() {
            return Err(TableError::FeatureCount);
        }
        for name in rest[..n].iter().map(AsRef::as_ref) {
            if name.eq_ignore_ascii_case(Features::DISCARD_ZEROES_COW) {
                zeroes = true;
            } else if name.eq_ignore_ascii_case(Features::DISCARD_PASSDOWN_ORIGIN) {
                passdown = true;
            } else {
                return Err(TableError::UnknownFeature);
            }
        }
    }
    if passdown && !zeroes {
        return Err(TableError::PassdownWithoutZeroes);
    }
    Ok(Features {
        discard_zeroes_cow: zeroes,
        discard_passdown_origin: passdown,
    })
}

/// Parses the store type and chunk size (C's `dm_exception_store_create()`
/// and the stores' constructors, in that order: type, chunk size, options).
pub fn parse_store(kind: &str, chunk: &str) -> Result<(StoreKind, Option<ChunkSize>), StoreError> {
    let mut chars = kind.bytes();
    let store = match chars.next().map(|c| c.to_ascii_uppercase()) {
        // C's persistent_ctr() looks at the first option character only.
        Some(b'P') => match chars.next().map(|c| c.to_ascii_uppercase()) {
            None => Ok(StoreKind::Persistent { overflow: false }),
            Some(b'O') => Ok(StoreKind::Persistent { overflow: true }),
            Some(_) => Err(StoreError::UnsupportedOption),
        },
        // C's transient_ctr() ignores options.
        Some(b'N') => Ok(StoreKind::Transient),
        _ => return Err(StoreError::UnknownType),
    };
    let sectors = kstrtouint(chunk).ok_or(StoreError::InvalidChunkSize)?;
    let chunk_size = match sectors {
        0 => None,
        n => Some(ChunkSize::new(u64::from(n)).map_err(StoreError::ChunkSize)?),
    };
    Ok((store?, chunk_size))
}
