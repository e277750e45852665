// SPDX-License-Identifier: GPL-2.0

//! The block devices a target opens for its table.
//!
//! C header: [`include/linux/device-mapper.h`](srctree/include/linux/device-mapper.h)
//! (`struct dm_dev`, `dm_get_device()`, `dm_put_device()`,
//! `iterate_devices_callout_fn`)

use super::{
    dm_io::{Region, Span},
    Target,
};
use crate::{
    bindings,
    bio::Bio,
    error::{code::*, to_result, Result},
    ffi::{c_int, c_void},
    str::CStr,
};
use core::ptr::NonNull;

/// `BLK_OPEN_READ` of `include/linux/blkdev.h`: a `__force` cast, which
/// bindgen does not turn into a constant.
const BLK_OPEN_READ: bindings::blk_mode_t = 1 << 0;

impl Target {
    /// Opens the device at `path` (a path or `major:minor`) with the table's
    /// mode, for the life of this target (`dm_get_device()`).
    #[inline]
    pub fn get_device(&self, path: &CStr) -> Result<Device> {
        // SAFETY: `ti` is valid by the type invariant and its table is set
        // before any constructor runs.
        let mode = unsafe { bindings::dm_table_get_mode((*self.raw()).table) };
        self.open_device(path, mode)
    }

    /// Opens the device at `path` to be read from, for the life of this
    /// target: with the table's mode, or, if the device refuses writers,
    /// read-only (`dm_get_device(ti, path, BLK_OPEN_READ, ...)`), so that it
    /// can still be read.
    ///
    /// Not read-only first: a later `dm_get_device()` of the same device in
    /// this table with a wider mode (a COW device that is the origin itself)
    /// reopens it (`upgrade_mode()`) and frees the `struct dm_dev` an
    /// earlier open returned, which a [`Device`] still holds. With the
    /// table's mode, no open through [`Target`] can widen it; read-only, the
    /// device refuses the opens that would. (A C target in the same table
    /// that asks for a wider mode than the table's is not covered; none in
    /// the tree does.)
    #[inline]
    pub fn get_device_read_only(&self, path: &CStr) -> Result<Device> {
        match self.get_device(path) {
            Err(e) if e == EACCES || e == EROFS || e == EPERM || e == EBUSY => {
                self.open_device(path, BLK_OPEN_READ)
            }
            r => r,
        }
    }

    fn open_device(&self, path: &CStr, mode: bindings::blk_mode_t) -> Result<Device> {
        let ti = self.raw();
        // By the type invariant `ti` is valid, hence not null.
        let ti_nn = NonNull::new(ti).ok_or(EINVAL)?;
        let mut dev: *mut bindings::dm_dev = core::ptr::null_mut();
        // SAFETY: `ti` is valid by the type invariant, its table is set
        // before any constructor runs, `path` is NUL-terminated and `dev` is
        // a valid place for the result.
        to_result(unsafe { bindings::dm_get_device(ti, path.as_char_ptr(), mode, &mut dev) })?;
        // INVARIANT: `dm_get_device()` succeeded, so `dev` is an open device
        // of `ti`'s table, released by `Device::drop` with the same `ti`.
        Ok(Device {
            dev: NonNull::new(dev).ok_or(ENODEV)?,
            ti: ti_nn,
        })
    }
}

/// A device opened by a target with [`Target::get_device`] (`struct dm_dev`).
///
/// Kept in the target's instance and dropped with it, in the destructor
/// (`dtr`), which releases it (`dm_put_device()`).
///
/// # Examples
///
/// ```ignore
/// use kernel::device_mapper::{Device, MapBio, MapResult, Target};
///
/// struct Linear {
///     dev: Device,
/// }
///
/// // In `ctr`:
/// let dev = target.get_device(path)?;
/// // In `map`:
/// self.dev.remap(&mut bio);
/// // In `status`, for `dmsetup table`:
/// write!(out, "{}", self.dev.name());
/// ```
///
/// # Why this is not tied to the table by a lifetime
///
/// Releasing the device goes through the `struct dm_target` that opened it,
/// which device-mapper frees with its table once `dtr` has returned (and a
/// device still open then is put by `dm_table_destroy()` itself, with
/// "dm_put_device call missing"). So the last owner of a `Device` must drop
/// it by the end of `dtr`, and nothing in the type enforces that: it is
/// `'static` and may be moved anywhere.
///
/// A lifetime (`Device<'table>`) cannot express the rule. Target instances
/// are `'static` themselves: device-mapper keeps them behind a raw pointer
/// from `ctr` to `dtr`. And they share their devices through
/// reference-counted state: the snapshot target keeps its two `Device`s in
/// an `Arc<Snap>` that both the instance and a registry of all snapshots
/// hold; that registry is the target type's `Shared` data, which lives as
/// long as the [`Registration`](super::Registration), holds snapshots of
/// many tables at once, and so cannot hold a borrow of any one table.
/// When the last `Arc` goes is decided at run time. Nor is there a
/// reference count on a target or a table that a `Device` could hold
/// instead of a borrow.
///
/// What keeps it sound is the owner's structure, which must make the
/// instance's `dtr` drop the last owner of each `Device`. In the snapshot
/// target: the instance's `Drop` removes its `Arc<Snap>` from the registry
/// under the registry's write lock and drops it; origin writes only borrow
/// the registry's `Arc<Snap>`s under its read lock, never clone them; and
/// what may outlive a table (copies in flight, a table waiting for a
/// handover) holds the `Arc<SnapState>` inside, which has no `Device`.
/// Ranges of the device kept past the table are safe on their own: a
/// [`Region`] holds a reference to the device's open file.
///
/// # Invariants
///
/// `dev` was returned by `dm_get_device(ti, ...)` and has not been released;
/// `ti` is the target that opened it and outlives this value.
pub struct Device {
    dev: NonNull<bindings::dm_dev>,
    ti: NonNull<bindings::dm_target>,
}

// SAFETY: A `dm_dev` may be used and released from any thread; device-mapper
// serialises table changes itself.
unsafe impl Send for Device {}
// SAFETY: The shared methods only read fields that do not change while the
// device is open.
unsafe impl Sync for Device {}

impl Device {
    /// The open device; its fields do not change until it is released.
    #[inline]
    pub(super) fn raw(&self) -> &bindings::dm_dev {
        // SAFETY: By the type invariant `dev` is valid until `drop`.
        unsafe { self.dev.as_ref() }
    }

    /// The device's name as device-mapper prints it in tables (`major:minor`).
    #[inline]
    pub fn name(&self) -> &CStr {
        // SAFETY: `name` is a NUL-terminated array filled by `dm_get_device()`
        // and not changed while the device is open.
        unsafe { CStr::from_char_ptr(self.raw().name.as_ptr()) }
    }

    /// The size of the device in sectors.
    #[inline]
    pub fn sectors(&self) -> u64 {
        // SAFETY: `bdev` is valid while the device is open.
        unsafe { bindings::bdev_nr_sectors(self.raw().bdev) }
    }

    /// The logical block size of the device in bytes.
    #[inline]
    pub fn logical_block_size(&self) -> u32 {
        // SAFETY: `bdev` is valid while the device is open.
        unsafe { bindings::bdev_logical_block_size(self.raw().bdev) }
    }

    /// The physical block size of the device in bytes: the least it writes
    /// without reading and writing back the rest of a block, a multiple of
    /// [`Device::logical_block_size`].
    #[inline]
    pub fn physical_block_size(&self) -> u32 {
        // SAFETY: `bdev` is valid while the device is open.
        unsafe { bindings::bdev_physical_block_size(self.raw().bdev) }
    }

    /// The device number (`dev_t`) of the block device.
    #[inline]
    pub fn dev_t(&self) -> u32 {
        // SAFETY: `bdev` is valid while the device is open.
        unsafe { (*self.raw().bdev).bd_dev }
    }

    /// A range of `count` sectors from `sector` on this device, for dm-io
    /// and kcopyd. It keeps the device's open file, so it may outlive this
    /// `Device`.
    #[inline]
    pub fn region(&self, sector: u64, count: u64) -> Region {
        Region::of(self, sector, count)
    }

    /// A range of `count` sectors from `sector` on this device, for a
    /// kcopyd job started now: unlike [`Device::region`], it takes no
    /// reference on the device's file, and cannot outlive this `Device`.
    #[inline]
    pub fn span(&self, sector: u64, count: u64) -> Span<'_> {
        Span::of(self, sector, count)
    }

    /// Whether both refer to the same block device.
    #[inline]
    pub fn same_bdev(&self, other: &Device) -> bool {
        core::ptr::eq(self.raw().bdev, other.raw().bdev)
    }

    /// Sends `bio` to this device (`bio_set_dev()`), keeping its sector.
    #[inline]
    pub fn remap(&self, bio: &mut Bio) {
        // SAFETY: `bdev` is open until this device is released, which happens
        // in the target's `dtr`, after device-mapper has drained its bios.
        unsafe { bio.set_bdev(self.raw().bdev) };
    }
}

impl Drop for Device {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: By the type invariant `dev` was opened for `ti` and is
        // released exactly once, here.
        unsafe { bindings::dm_put_device(self.ti.as_ptr(), self.dev.as_ptr()) };
    }
}

/// The callout of `iterate_devices`, called once per underlying device.
///
/// # Examples
///
/// ```ignore
/// use kernel::device_mapper::{IterateDevices, Target};
///
/// fn iterate_devices(&self, target: &Target, callout: &mut IterateDevices) -> i32 {
///     let r = callout.call(&self.origin, 0, target.len());
///     if r != 0 {
///         return r;
///     }
///     callout.call(&self.cow, 0, self.cow.sectors())
/// }
/// ```
///
/// # Invariants
///
/// `callout` and `data` are what device-mapper passed to the
/// `iterate_devices` callback of `ti`, valid for the call.
pub struct IterateDevices {
    ti: *mut bindings::dm_target,
    callout: bindings::iterate_devices_callout_fn,
    data: *mut c_void,
}

impl IterateDevices {
    /// # Safety
    ///
    /// The arguments must be those device-mapper passed to the
    /// `iterate_devices` callback, and the value must not outlive it.
    #[inline]
    pub(super) unsafe fn new(
        ti: *mut bindings::dm_target,
        callout: bindings::iterate_devices_callout_fn,
        data: *mut c_void,
    ) -> Self {
        // INVARIANT: The caller passes the callback's arguments.
        Self { ti, callout, data }
    }

    /// Reports `sectors` sectors of `dev` from `start` as used by the target;
    /// a non-zero result stops the iteration and must be returned.
    #[inline]
    pub fn call(&mut self, dev: &Device, start: u64, sectors: u64) -> c_int {
        match self.callout {
            // SAFETY: By the type invariant the callout, `ti` and `data` are
            // those device-mapper passed for this call; `dev` is an open
            // device of a target.
            Some(f) => unsafe { f(self.ti, dev.dev.as_ptr(), start, sectors, self.data) },
            None => 0,
        }
    }
}
