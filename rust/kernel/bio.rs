// SPDX-License-Identifier: GPL-2.0

//! Block I/O requests.
//!
//! C header: [`include/linux/bio.h`](srctree/include/linux/bio.h) and
//! [`include/linux/blk_types.h`](srctree/include/linux/blk_types.h)

use crate::{bindings, types::Opaque};

/// The size of a sector, the unit of `sector_t`, as a shift.
pub const SECTOR_SHIFT: u32 = 9;

/// A block I/O request (`struct bio`) handed to a driver.
///
/// # Invariants
///
/// The wrapped `struct bio` is valid, and the holder of a `&mut Bio` may
/// change its target and position (it owns the bio until it hands it on).
#[repr(transparent)]
pub struct Bio(Opaque<bindings::bio>);

impl Bio {
    /// Creates a mutable reference from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid `struct bio` that the caller owns for `'a`
    /// (nobody else reads or changes its target or position meanwhile).
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::bio) -> &'a mut Self {
        // SAFETY: `Bio` is a transparent wrapper of `struct bio`; the caller
        // guarantees validity and exclusive ownership for `'a`.
        unsafe { &mut *ptr.cast::<Self>() }
    }

    /// Returns the raw pointer.
    pub fn as_raw(&self) -> *mut bindings::bio {
        self.0.get()
    }

    fn raw(&self) -> &bindings::bio {
        // SAFETY: By the type invariant the bio is valid, and nobody else
        // changes the fields read through this reference while we hold `self`.
        unsafe { &*self.0.get() }
    }

    /// The first sector the request addresses.
    pub fn sector(&self) -> u64 {
        self.raw().bi_iter.bi_sector
    }

    /// Moves the request to another first sector (a remap).
    pub fn set_sector(&mut self, sector: u64) {
        // SAFETY: By the type invariant the holder of `&mut Bio` may change
        // the position; the pointer is valid.
        unsafe { (*self.0.get()).bi_iter.bi_sector = sector };
    }

    /// The size of the request in bytes.
    pub fn size(&self) -> u32 {
        self.raw().bi_iter.bi_size
    }

    /// The size of the request in sectors (`bio_sectors()`).
    pub fn sectors(&self) -> u32 {
        self.size() >> SECTOR_SHIFT
    }

    /// Whether the request writes (`bio_data_dir() == WRITE`).
    pub fn is_write(&self) -> bool {
        // SAFETY: `op_is_write` only looks at its argument.
        unsafe { bindings::op_is_write(self.raw().bi_opf) }
    }

    /// Whether the request asks for a cache flush before it (`REQ_PREFLUSH`).
    pub fn is_preflush(&self) -> bool {
        self.raw().bi_opf & (1 << bindings::req_flag_bits___REQ_PREFLUSH) != 0
    }

    /// Whether the request is a discard (`REQ_OP_DISCARD`).
    pub fn is_discard(&self) -> bool {
        // SAFETY: By the type invariant the bio is valid.
        unsafe { bindings::bio_op(self.0.get()) == bindings::req_op_REQ_OP_DISCARD }
    }

    /// Sends the request to another block device.
    ///
    /// # Safety
    ///
    /// `bdev` must be a valid block device that stays open until the request
    /// completes.
    pub(crate) unsafe fn set_bdev(&mut self, bdev: *mut bindings::block_device) {
        // SAFETY: The bio is valid and ours to change by the type invariant;
        // the caller guarantees `bdev`.
        unsafe { bindings::bio_set_dev(self.0.get(), bdev) };
    }
}
