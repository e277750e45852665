// SPDX-License-Identifier: GPL-2.0

//! Block I/O requests.
//!
//! C header: [`include/linux/bio.h`](srctree/include/linux/bio.h) and
//! [`include/linux/blk_types.h`](srctree/include/linux/blk_types.h)

use crate::{bindings, types::Opaque};
use core::{
    mem::ManuallyDrop,
    ops::{Deref, DerefMut},
    ptr::NonNull,
    sync::atomic::{AtomicPtr, Ordering},
};

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
    #[inline]
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::bio) -> &'a mut Self {
        // SAFETY: `Bio` is a transparent wrapper of `struct bio`; the caller
        // guarantees validity and exclusive ownership for `'a`.
        unsafe { &mut *ptr.cast::<Self>() }
    }

    /// Returns the raw pointer.
    #[inline]
    pub fn as_raw(&self) -> *mut bindings::bio {
        self.0.get()
    }

    #[inline]
    fn raw(&self) -> &bindings::bio {
        // SAFETY: By the type invariant the bio is valid, and nobody else
        // changes the fields read through this reference while we hold `self`.
        unsafe { &*self.0.get() }
    }

    /// The first sector the request addresses.
    #[inline]
    pub fn sector(&self) -> u64 {
        self.raw().bi_iter.bi_sector
    }

    /// Moves the request to another first sector (a remap).
    #[inline]
    pub fn set_sector(&mut self, sector: u64) {
        // SAFETY: By the type invariant the holder of `&mut Bio` may change
        // the position; the pointer is valid.
        unsafe { (*self.0.get()).bi_iter.bi_sector = sector };
    }

    /// The size of the request in bytes.
    #[inline]
    pub fn size(&self) -> u32 {
        self.raw().bi_iter.bi_size
    }

    /// The size of the request in sectors (`bio_sectors()`).
    #[inline]
    pub fn sectors(&self) -> u32 {
        self.size() >> SECTOR_SHIFT
    }

    /// Whether the request writes (`bio_data_dir() == WRITE`).
    #[inline]
    pub fn is_write(&self) -> bool {
        // SAFETY: `op_is_write` only looks at its argument.
        unsafe { bindings::op_is_write(self.raw().bi_opf) }
    }

    /// Whether the request asks for a cache flush before it (`REQ_PREFLUSH`).
    #[inline]
    pub fn is_preflush(&self) -> bool {
        self.raw().bi_opf & (1 << bindings::req_flag_bits___REQ_PREFLUSH) != 0
    }

    /// Whether the request reads (`bio_data_dir() == READ`).
    #[inline]
    pub fn is_read(&self) -> bool {
        !self.is_write()
    }

    /// Whether the request is a discard (`REQ_OP_DISCARD`).
    #[inline]
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
    #[inline]
    pub(crate) unsafe fn set_bdev(&mut self, bdev: *mut bindings::block_device) {
        // SAFETY: The bio is valid and ours to change by the type invariant;
        // the caller guarantees `bdev`.
        unsafe { bindings::bio_set_dev(self.0.get(), bdev) };
    }
}

/// A bio its holder owns and must hand on exactly once: submit it to a
/// device, complete it, or fail it.
///
/// A bio that is dropped without being handed on is failed with an I/O
/// error, so no request is ever lost.
///
/// # Invariants
///
/// `ptr` is a valid bio that this value owns: nobody else submits, completes
/// or changes it until it is handed on.
pub struct OwnedBio {
    ptr: NonNull<bindings::bio>,
}

// SAFETY: A bio may be submitted or completed from any thread.
unsafe impl Send for OwnedBio {}

impl OwnedBio {
    /// Takes ownership of a bio.
    ///
    /// # Safety
    ///
    /// `ptr` must be a valid bio that the caller owns and gives up: it must
    /// not use it again except through the returned value.
    #[inline]
    pub unsafe fn from_raw(ptr: *mut bindings::bio) -> Self {
        // INVARIANT: The caller hands over a valid bio it owns.
        Self {
            // SAFETY: The caller passes a valid, hence non-null, pointer.
            ptr: unsafe { NonNull::new_unchecked(ptr) },
        }
    }

    /// Gives up ownership without handing the bio on; the caller takes it.
    #[inline]
    pub fn into_raw(self) -> *mut bindings::bio {
        ManuallyDrop::new(self).ptr.as_ptr()
    }

    /// Sends the bio to the device it is set to (`submit_bio_noacct()`).
    #[inline]
    pub fn submit(self) {
        // SAFETY: By the type invariant we own a valid bio; the block layer
        // takes it over.
        unsafe { bindings::submit_bio_noacct(self.into_raw()) };
    }

    /// Completes the bio with the status it has (`bio_endio()`).
    #[inline]
    pub fn complete(self) {
        // SAFETY: By the type invariant we own a valid bio; completing it
        // gives it back to its submitter.
        unsafe { bindings::bio_endio(self.into_raw()) };
    }

    /// Completes the bio with an I/O error (`bio_io_error()`).
    #[inline]
    pub fn io_error(self) {
        let ptr = self.into_raw();
        // SAFETY: By the type invariant we own a valid bio; completing it
        // gives it back to its submitter.
        unsafe {
            (*ptr).bi_status = bindings::BLK_STS_IOERR as bindings::blk_status_t;
            bindings::bio_endio(ptr);
        }
    }
}

impl Deref for OwnedBio {
    type Target = Bio;

    #[inline]
    fn deref(&self) -> &Bio {
        // SAFETY: By the type invariant the bio is valid and ours.
        unsafe { &*self.ptr.as_ptr().cast::<Bio>() }
    }
}

impl DerefMut for OwnedBio {
    #[inline]
    fn deref_mut(&mut self) -> &mut Bio {
        // SAFETY: By the type invariant the bio is valid and ours.
        unsafe { Bio::from_raw(self.ptr.as_ptr()) }
    }
}

impl Drop for OwnedBio {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: By the type invariant we own a valid bio that was not
        // handed on (every method that does so forgets `self`).
        unsafe {
            (*self.ptr.as_ptr()).bi_status = bindings::BLK_STS_IOERR as bindings::blk_status_t;
            bindings::bio_endio(self.ptr.as_ptr());
        }
    }
}

/// A first-in, first-out list of owned bios, chained through `bi_next`
/// (`struct bio_list`). Bios still on the list when it is dropped are failed
/// with an I/O error.
///
/// # Invariants
///
/// `head` is null or the first of a chain of owned bios linked by `bi_next`
/// and ending in null, whose last element is `tail`.
pub struct BioList {
    head: *mut bindings::bio,
    tail: *mut bindings::bio,
}

// SAFETY: The list owns its bios, which may be handed on from any thread.
unsafe impl Send for BioList {}

impl BioList {
    /// An empty list.
    #[inline]
    pub const fn new() -> Self {
        Self {
            head: core::ptr::null_mut(),
            tail: core::ptr::null_mut(),
        }
    }

    /// Adds `bio` at the end.
    #[inline]
    pub fn push(&mut self, bio: OwnedBio) {
        let ptr = bio.into_raw();
        // SAFETY: We own `ptr`; `tail`, if not null, is the last bio of our
        // chain (type invariant).
        unsafe {
            (*ptr).bi_next = core::ptr::null_mut();
            if self.tail.is_null() {
                self.head = ptr;
            } else {
                (*self.tail).bi_next = ptr;
            }
        }
        // INVARIANT: `ptr` ends the chain.
        self.tail = ptr;
    }

    /// Takes the first bio off the list.
    pub fn pop(&mut self) -> Option<OwnedBio> {
        if self.head.is_null() {
            return None;
        }
        let ptr = self.head;
        // SAFETY: `head` is an owned bio of the chain (type invariant).
        unsafe {
            self.head = (*ptr).bi_next;
            (*ptr).bi_next = core::ptr::null_mut();
        }
        if self.head.is_null() {
            self.tail = core::ptr::null_mut();
        }
        // SAFETY: The bio was owned by the list and is now unlinked from it.
        Some(unsafe { OwnedBio::from_raw(ptr) })
    }

    /// Takes all bios, leaving the list empty.
    #[inline]
    pub fn take(&mut self) -> BioList {
        core::mem::take(self)
    }

    /// Moves all bios of `other` to the end of this list.
    #[inline]
    pub fn append(&mut self, other: &mut BioList) {
        while let Some(bio) = other.pop() {
            self.push(bio);
        }
    }
}

impl Default for BioList {
    #[inline]
    fn default() -> Self {
        Self::new()
    }
}

impl IntoIterator for BioList {
    type Item = OwnedBio;
    type IntoIter = BioListIter;

    #[inline]
    fn into_iter(self) -> BioListIter {
        BioListIter(self)
    }
}

/// The bios of a [`BioList`], first to last; those not taken are failed
/// when the iterator is dropped.
pub struct BioListIter(BioList);

impl Iterator for BioListIter {
    type Item = OwnedBio;

    #[inline]
    fn next(&mut self) -> Option<OwnedBio> {
        self.0.pop()
    }
}

impl Drop for BioList {
    #[inline]
    fn drop(&mut self) {
        while let Some(bio) = self.pop() {
            bio.io_error();
        }
    }
}

/// A place for one owned bio that may be filled and emptied from any
/// context, interrupts included (it is a single atomic pointer).
///
/// # Invariants
///
/// `ptr` is null or an owned bio.
pub struct BioSlot {
    ptr: AtomicPtr<bindings::bio>,
}

impl BioSlot {
    /// An empty slot.
    #[inline]
    pub const fn new() -> Self {
        Self {
            ptr: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// Puts `bio` in the slot; gives it back if the slot is full.
    #[inline]
    pub fn put(&self, bio: OwnedBio) -> core::result::Result<(), OwnedBio> {
        let ptr = bio.into_raw();
        match self.ptr.compare_exchange(
            core::ptr::null_mut(),
            ptr,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            // INVARIANT: The slot now owns the bio.
            Ok(_) => Ok(()),
            // SAFETY: The slot did not take `ptr`, which is still ours.
            Err(_) => Err(unsafe { OwnedBio::from_raw(ptr) }),
        }
    }

    /// Takes the bio out of the slot, if there is one.
    #[inline]
    pub fn take(&self) -> Option<OwnedBio> {
        let ptr = self.ptr.swap(core::ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: A non-null pointer in the slot is an owned bio (type
        // invariant), now ours alone since we swapped it out.
        NonNull::new(ptr).map(|p| unsafe { OwnedBio::from_raw(p.as_ptr()) })
    }
}

impl Default for BioSlot {
    #[inline]
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for BioSlot {
    #[inline]
    fn drop(&mut self) {
        if let Some(bio) = self.take() {
            bio.io_error();
        }
    }
}
