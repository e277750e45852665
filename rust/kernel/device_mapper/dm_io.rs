// SPDX-License-Identifier: GPL-2.0

//! dm-io: synchronous reads and writes of a target's own metadata, and the
//! ranges of sectors that dm-io and kcopyd work on.
//!
//! C header: [`include/linux/dm-io.h`](srctree/include/linux/dm-io.h)

use super::Device;
use crate::{
    alloc::VVec,
    bindings,
    error::{code::*, to_result, Result},
};
use core::{marker::PhantomData, ptr::NonNull};

/// A range of sectors on a block device (`struct dm_io_region`), made by
/// [`Device::region`], for dm-io and kcopyd.
///
/// It holds a reference to the open file of its device (`struct dm_dev`'s
/// `bdev_file`, C's `get_file()` and `fput()`), so the block device stays
/// open for as long as the region is kept, even past the table whose
/// [`Device`] it came from: state that outlives a table, such as a
/// persistent store handed over to the next table, may keep its region.
/// Whether to still do I/O there once that table is gone is the holder's
/// call; the region only makes it memory-safe. A region dropped after its
/// table released the device closes it (deferred by `fput()` to the
/// task's return to user space, or to a work item).
///
/// # Examples
///
/// ```ignore
/// use kernel::device_mapper::dm_io::{self, Region};
///
/// struct Store {
///     io: dm_io::Client,
///     /// The whole device: kept, it keeps the device open.
///     dev: Region,
/// }
///
/// let store = Store {
///     io: dm_io::Client::new()?,
///     dev: dev.region(0, dev.sectors()),
/// };
/// // Sectors 8 to 15 of the same device.
/// store.io.read(&store.dev.at(8, 8), &mut buf)?;
/// ```
///
/// # Invariants
///
/// `file` is an open block device file on which this value holds a
/// reference of its own, put when it is dropped; `raw.bdev` is the block
/// device of that file.
pub struct Region {
    raw: bindings::dm_io_region,
    file: *mut bindings::file,
}

// SAFETY: A region is a counted reference to an open file and a range of
// sectors; dm-io and kcopyd may be given it, and it may be dropped
// (`fput()`), on any thread.
unsafe impl Send for Region {}
// SAFETY: As for `Send`; a shared region is only read.
unsafe impl Sync for Region {}

impl Region {
    /// The range of `count` sectors from `sector` on `dev`.
    pub(super) fn of(dev: &Device, sector: u64, count: u64) -> Self {
        let d = dev.raw();
        // SAFETY: `dev` is open, so `bdev_file` is its open file; the
        // reference taken here is put by `drop`.
        unsafe { bindings::get_file(d.bdev_file) };
        // INVARIANT: We hold a reference to `bdev_file`, whose block device
        // is `bdev`.
        Self {
            raw: bindings::dm_io_region {
                bdev: d.bdev,
                sector,
                count,
            },
            file: d.bdev_file,
        }
    }

    /// The range of `count` sectors from `sector` on the same device.
    #[inline]
    pub fn at(&self, sector: u64, count: u64) -> Self {
        // SAFETY: By the type invariant `file` is open, as our reference
        // keeps it; the reference taken here is put by `drop`.
        unsafe { bindings::get_file(self.file) };
        // INVARIANT: We hold a reference to `file`, whose block device is
        // `raw.bdev`.
        Self {
            raw: bindings::dm_io_region {
                bdev: self.raw.bdev,
                sector,
                count,
            },
            file: self.file,
        }
    }

    /// The number of sectors.
    #[inline]
    pub fn count(&self) -> u64 {
        self.raw.count
    }

    /// The region as dm-io and kcopyd take it. The block device it names
    /// stays open only while this region, or another reference to its
    /// file, is kept.
    #[inline]
    pub(super) fn raw(&self) -> bindings::dm_io_region {
        self.raw
    }
}

/// A range of sectors on a device for one I/O or copy (`struct
/// dm_io_region`), made by [`Device::span`]: borrowed from the [`Device`],
/// so it cannot outlive it, and free to make, as it holds no reference on
/// the device's file. kcopyd copies the regions it is given when a job
/// starts, as a [`Region`]'s; what keeps the device open while the job
/// runs is the rule of [`kcopyd::Client`](super::kcopyd::Client).
///
/// # Examples
///
/// ```ignore
/// // One chunk copied: no region is kept.
/// kc.copy::<CopyJob>(origin.span(src, 8), [cow.span(dst, 8)], job)?;
/// ```
#[derive(Clone, Copy)]
pub struct Span<'a> {
    raw: bindings::dm_io_region,
    _dev: PhantomData<&'a Device>,
}

impl<'a> Span<'a> {
    /// The range of `count` sectors from `sector` on `dev`.
    #[inline]
    pub(super) fn of(dev: &'a Device, sector: u64, count: u64) -> Self {
        Self {
            raw: bindings::dm_io_region {
                bdev: dev.raw().bdev,
                sector,
                count,
            },
            _dev: PhantomData,
        }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// What dm-io and kcopyd take as a range of sectors: a [`Region`], a
/// [`Span`], or a reference to either.
pub trait IoRegion: sealed::Sealed {
    /// The region as dm-io and kcopyd take it. Its block device is open
    /// for as long as the value it came from is kept.
    fn io_region(&self) -> bindings::dm_io_region;
}

impl sealed::Sealed for Region {}
impl IoRegion for Region {
    #[inline]
    fn io_region(&self) -> bindings::dm_io_region {
        self.raw
    }
}

impl sealed::Sealed for Span<'_> {}
impl IoRegion for Span<'_> {
    #[inline]
    fn io_region(&self) -> bindings::dm_io_region {
        self.raw
    }
}

impl<R: IoRegion> sealed::Sealed for &R {}
impl<R: IoRegion> IoRegion for &R {
    #[inline]
    fn io_region(&self) -> bindings::dm_io_region {
        (**self).io_region()
    }
}

impl Clone for Region {
    #[inline]
    fn clone(&self) -> Self {
        self.at(self.raw.sector, self.raw.count)
    }
}

impl Drop for Region {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: By the type invariant we hold a reference to `file`, put
        // once, here. `fput()` may be called from any context.
        unsafe { bindings::fput(self.file) };
    }
}

/// How a write reaches the disk.
///
/// # Examples
///
/// ```ignore
/// use kernel::device_mapper::dm_io::WriteMode;
///
/// // The exceptions in `area` are durable once this returns.
/// io.write(&cow.at(area_chunk << shift, chunk_sectors), &area, WriteMode::FlushFua)?;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// A plain write.
    Plain,
    /// Flush the device's cache first and write through it
    /// (`REQ_PREFLUSH | REQ_FUA`): the data, and all written before, is
    /// durable when the call returns.
    FlushFua,
}

/// A dm-io client (`struct dm_io_client`): its own bio set and page pool,
/// so its I/O makes progress under memory pressure.
///
/// # Examples
///
/// ```ignore
/// use kernel::{
///     alloc::VVec,
///     device_mapper::dm_io::{Client, WriteMode},
/// };
///
/// let io = Client::new()?;
/// let mut buf = VVec::from_elem(0u8, 4096, GFP_KERNEL)?;
/// io.read(&cow.region(0, 8), &mut buf)?;
/// buf[0] ^= 1;
/// // Durable once this returns.
/// io.write(&cow.region(0, 8), &buf, WriteMode::FlushFua)?;
/// ```
///
/// # Invariants
///
/// `client` was returned by `dm_io_client_create()` and is destroyed only in
/// `drop`.
pub struct Client {
    client: NonNull<bindings::dm_io_client>,
}

// SAFETY: A dm-io client may be used from any thread.
unsafe impl Send for Client {}
// SAFETY: As for `Send`.
unsafe impl Sync for Client {}

impl Client {
    /// Creates a client.
    #[inline]
    pub fn new() -> Result<Self> {
        // SAFETY: No preconditions.
        let client = crate::error::from_err_ptr(unsafe { bindings::dm_io_client_create() })?;
        // INVARIANT: The client was just created.
        Ok(Self {
            client: NonNull::new(client).ok_or(ENOMEM)?,
        })
    }

    fn io(&self, opf: u32, region: &Region, buf: *mut u8, len: usize) -> Result {
        let bytes = region.count().checked_mul(512).ok_or(EINVAL)?;
        if bytes == 0 || bytes > len as u64 {
            return Err(EINVAL);
        }
        let mut raw = region.raw();
        let mut req = bindings::dm_io_request {
            bi_opf: opf,
            mem: bindings::dm_io_memory {
                type_: bindings::dm_io_mem_type_DM_IO_VMA,
                offset: 0,
                ptr: bindings::dm_io_memory__bindgen_ty_1 { vma: buf.cast() },
            },
            notify: bindings::dm_io_notify {
                fn_: None,
                context: core::ptr::null_mut(),
            },
            client: self.client.as_ptr(),
        };
        // SAFETY: The client is live (type invariant); `buf` is vmalloc
        // memory of `bytes` or more, borrowed for this synchronous call; the
        // region's device is open while `region` is kept, past the call.
        to_result(unsafe { bindings::dm_io(&mut req, 1, &mut raw, core::ptr::null_mut(), 0) })
    }

    /// Reads `region` into the start of `buf`, waiting for the result.
    #[inline]
    pub fn read(&self, region: &Region, buf: &mut VVec<u8>) -> Result {
        let len = buf.len();
        self.io(bindings::req_op_REQ_OP_READ, region, buf.as_mut_ptr(), len)
    }

    /// Writes the start of `buf` to `region`, waiting for the result.
    #[inline]
    pub fn write(&self, region: &Region, buf: &VVec<u8>, mode: WriteMode) -> Result {
        self.write_at(region, buf, 0, mode)
    }

    /// Writes `buf` from byte `offset` on to `region`, waiting for the
    /// result: `EINVAL` if `buf` holds fewer bytes than `region` from there.
    /// The device sees the memory's alignment: `offset` is a multiple of
    /// its logical block size.
    ///
    /// # Examples
    ///
    /// ```ignore
    /// // Only the second sector of `area` changed since it was written.
    /// io.write_at(&cow.at(area_sector + 1, 1), &area, 512, WriteMode::FlushFua)?;
    /// ```
    pub fn write_at(
        &self,
        region: &Region,
        buf: &VVec<u8>,
        offset: usize,
        mode: WriteMode,
    ) -> Result {
        let mut opf = bindings::req_op_REQ_OP_WRITE | (1 << bindings::req_flag_bits___REQ_SYNC);
        if mode == WriteMode::FlushFua {
            opf |= (1 << bindings::req_flag_bits___REQ_PREFLUSH)
                | (1 << bindings::req_flag_bits___REQ_FUA);
        }
        // A tail of the vmalloc buffer is vmalloc memory too; `io` checks
        // that it holds the region.
        let tail = buf.get(offset..).ok_or(EINVAL)?;
        // dm-io only reads the buffer for a write.
        self.io(opf, region, tail.as_ptr().cast_mut(), tail.len())
    }
}

impl Client {
    /// Flushes the volatile write cache of `region`'s device
    /// (`REQ_OP_WRITE | REQ_PREFLUSH` with no data), waiting for the
    /// result: what was written to the device before is durable once this
    /// returns. Only the region's device counts, not its range.
    ///
    /// # Examples
    ///
    /// ```ignore
    /// // The chunks copied to the origin are on disk from here on.
    /// io.flush(&origin.region(0, 0))?;
    /// ```
    pub fn flush(&self, region: &Region) -> Result {
        let mut raw = region.raw();
        // dm-io sends a flush for a region of no sectors.
        raw.count = 0;
        let mut req = bindings::dm_io_request {
            bi_opf: bindings::req_op_REQ_OP_WRITE
                | (1 << bindings::req_flag_bits___REQ_SYNC)
                | (1 << bindings::req_flag_bits___REQ_PREFLUSH),
            mem: bindings::dm_io_memory {
                type_: bindings::dm_io_mem_type_DM_IO_KMEM,
                offset: 0,
                ptr: bindings::dm_io_memory__bindgen_ty_1 {
                    addr: core::ptr::null_mut(),
                },
            },
            notify: bindings::dm_io_notify {
                fn_: None,
                context: core::ptr::null_mut(),
            },
            client: self.client.as_ptr(),
        };
        // SAFETY: The client is live (type invariant); a flush of no
        // sectors reads no memory; the region's device is open while
        // `region` is kept, past this synchronous call.
        to_result(unsafe { bindings::dm_io(&mut req, 1, &mut raw, core::ptr::null_mut(), 0) })
    }
}

impl Drop for Client {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: By the type invariant the client is live; synchronous I/O
        // leaves nothing in flight.
        unsafe { bindings::dm_io_client_destroy(self.client.as_ptr()) };
    }
}
