// SPDX-License-Identifier: GPL-2.0

//! Device-mapper targets.
//!
//! A target type implements [`TargetOperations`] and is registered with a
//! [`Registration`]. Device-mapper constructs one instance per table line
//! (`ctr`), keeps it in `ti->private`, hands it every bio of its range (`map`)
//! and asks it for its status lines; dropping the instance is `dtr`.
//!
//! C header: [`include/linux/device-mapper.h`](srctree/include/linux/device-mapper.h)

use crate::{
    bindings,
    bio::{Bio, OwnedBio},
    error::{code::*, to_result, Error, Result, VTABLE_DEFAULT_ERROR},
    ffi::{c_char, c_int, c_uint, c_void},
    init::pin_init_from_closure,
    module_param::UintParam,
    new_mutex,
    prelude::*,
    str::CStr,
    sync::{Arc, ArcBorrow, Mutex},
    types::Opaque,
    ThisModule,
};
use core::{
    fmt,
    marker::PhantomData,
    ops::{Deref, DerefMut},
    ptr::NonNull,
};

pub mod dm_io;
pub mod kcopyd;

/// What device-mapper does with a bio after `map` (`DM_MAPIO_*`).
///
/// The variants that give the bio back to device-mapper carry it, so a
/// target cannot both keep a bio and return it.
pub enum MapResult {
    /// The target took the bio and will complete or submit it itself.
    Submitted,
    /// The bio was remapped; device-mapper submits it.
    Remapped(MapBio),
    /// Device-mapper requeues the bio.
    Requeue(MapBio),
    /// Device-mapper fails the bio with an I/O error.
    Kill(MapBio),
}

/// A bio handed to a target's `map`.
///
/// The target either returns it to device-mapper in a [`MapResult`] or takes
/// it over with [`MapBio::into_owned`] and returns [`MapResult::Submitted`].
pub struct MapBio {
    bio: OwnedBio,
}

impl MapBio {
    /// Takes the bio over: the target now submits or completes it.
    pub fn into_owned(self) -> OwnedBio {
        self.bio
    }

    /// Shortens the bio to its first `sectors` sectors; device-mapper sends
    /// the rest in another bio (`dm_accept_partial_bio()`).
    ///
    /// Does nothing unless `0 < sectors < self.sectors()`, or for a flush.
    pub fn accept_partial(&mut self, sectors: u32) {
        if sectors == 0 || sectors >= self.bio.sectors() || self.bio.is_preflush() {
            return;
        }
        // SAFETY: The bio is a clone device-mapper handed to `map` (the only
        // place a `MapBio` is made), not a duplicated flush or discard bio,
        // and `sectors` is below its size.
        unsafe { bindings::dm_accept_partial_bio(self.bio.as_raw(), sectors) };
    }

    /// Which copy of a duplicated bio (flush, discard) this is, from 0
    /// (`dm_bio_get_target_bio_nr()`).
    pub fn target_bio_nr(&self) -> u32 {
        // SAFETY: The bio is a device-mapper clone.
        unsafe { bindings::dm_bio_get_target_bio_nr(self.bio.as_raw()) }
    }
}

impl From<MapBio> for OwnedBio {
    fn from(bio: MapBio) -> OwnedBio {
        bio.bio
    }
}

impl Deref for MapBio {
    type Target = Bio;

    fn deref(&self) -> &Bio {
        &self.bio
    }
}

impl DerefMut for MapBio {
    fn deref_mut(&mut self) -> &mut Bio {
        &mut self.bio
    }
}

/// A completed bio handed to a target's `end_io`.
pub struct EndIoBio {
    bio: OwnedBio,
    error: bool,
}

/// Proof that a target took over a bio in `end_io`.
pub struct Taken(());

/// What device-mapper does with a bio after `end_io` (`DM_ENDIO_*`).
pub enum EndIoResult {
    /// Device-mapper completes the bio.
    Done(EndIoBio),
    /// The target took the bio and completes it again later.
    Incomplete(Taken),
}

impl EndIoBio {
    /// Whether the bio failed.
    pub fn is_error(&self) -> bool {
        self.error
    }

    /// Takes the bio over; completing it later calls `end_io` again.
    pub fn take(self) -> (OwnedBio, Taken) {
        (self.bio, Taken(()))
    }
}

impl Deref for EndIoBio {
    type Target = Bio;

    fn deref(&self) -> &Bio {
        &self.bio
    }
}

/// Which status `dmsetup` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusType {
    /// `dmsetup status`.
    Info,
    /// `dmsetup table`: the table line's arguments.
    Table,
    /// The IMA measurement string.
    Ima,
}

/// A constructor failure: the error code and the message device-mapper logs
/// as the table's reason (`ti->error`).
#[derive(Debug, Clone, Copy)]
pub struct CtrError {
    /// The error code returned to device-mapper.
    pub err: Error,
    /// The reason, shown in the kernel log as `<dev>: <target>: <reason>`.
    pub msg: &'static CStr,
}

impl CtrError {
    /// Creates a constructor error.
    pub const fn new(err: Error, msg: &'static CStr) -> Self {
        Self { err, msg }
    }

    /// `EINVAL` with a reason: a malformed table.
    pub const fn inval(msg: &'static CStr) -> Self {
        Self::new(EINVAL, msg)
    }
}

/// The arguments of a table line after the target name (`argc`, `argv`).
pub struct Args<'a> {
    args: &'a [*mut c_char],
}

impl<'a> Args<'a> {
    /// The number of arguments.
    pub fn len(&self) -> usize {
        self.args.len()
    }

    /// Whether there are no arguments.
    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }

    /// The argument at `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<&'a CStr> {
        let ptr = *self.args.get(index)?;
        // SAFETY: device-mapper passes `argc` valid NUL-terminated strings
        // that live until the constructor returns, which outlives `'a`.
        Some(unsafe { CStr::from_char_ptr(ptr) })
    }
}

/// `BLK_OPEN_READ` of `include/linux/blkdev.h`: a `__force` cast, which
/// bindgen does not turn into a constant.
const BLK_OPEN_READ: bindings::blk_mode_t = 1 << 0;

/// A device-mapper target instance (`struct dm_target`).
///
/// # Invariants
///
/// The wrapped `struct dm_target` is valid for as long as the reference.
#[repr(transparent)]
pub struct Target(Opaque<bindings::dm_target>);

impl Target {
    /// # Safety
    ///
    /// `ptr` must be a valid `struct dm_target` for `'a`.
    unsafe fn from_raw<'a>(ptr: *mut bindings::dm_target) -> &'a Self {
        // SAFETY: `Target` is a transparent wrapper; the caller guarantees
        // validity for `'a`.
        unsafe { &*ptr.cast::<Self>() }
    }

    /// # Safety
    ///
    /// `ptr` must be a valid `struct dm_target` for `'a` that device-mapper
    /// does not use concurrently (it is being constructed).
    unsafe fn from_raw_mut<'a>(ptr: *mut bindings::dm_target) -> &'a mut Self {
        // SAFETY: As above, and the caller guarantees exclusive access.
        unsafe { &mut *ptr.cast::<Self>() }
    }

    fn raw(&self) -> *mut bindings::dm_target {
        self.0.get()
    }

    /// The first sector of the target in its device.
    pub fn begin(&self) -> u64 {
        // SAFETY: By the type invariant `ti` is valid; `begin` is set before
        // the constructor runs and never changes.
        unsafe { (*self.raw()).begin }
    }

    /// The length of the target in sectors.
    pub fn len(&self) -> u64 {
        // SAFETY: As for `begin`.
        unsafe { (*self.raw()).len }
    }

    /// Whether the target has zero length.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Opens the device at `path` (a path or `major:minor`) with the table's
    /// mode, for the life of this target (`dm_get_device()`).
    pub fn get_device(&self, path: &CStr) -> Result<Device> {
        // SAFETY: `ti` is valid by the type invariant and its table is set
        // before any constructor runs.
        let mode = unsafe { bindings::dm_table_get_mode((*self.raw()).table) };
        self.open_device(path, mode)
    }

    /// Opens the device at `path` for reading only, whatever the table's
    /// mode, for the life of this target: a device that refuses writers
    /// can still be read (`dm_get_device(ti, path, BLK_OPEN_READ, ...)`).
    pub fn get_device_read_only(&self, path: &CStr) -> Result<Device> {
        self.open_device(path, BLK_OPEN_READ)
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

    /// Sets how many copies of an empty flush bio the target receives.
    pub fn set_num_flush_bios(&mut self, n: u32) {
        // SAFETY: `&mut self` means the target is being constructed and
        // device-mapper does not read it concurrently.
        unsafe { (*self.raw()).num_flush_bios = n };
    }

    /// Sets how many copies of a discard bio the target receives (0: none).
    pub fn set_num_discard_bios(&mut self, n: u32) {
        // SAFETY: As for `set_num_flush_bios`.
        unsafe { (*self.raw()).num_discard_bios = n };
    }

    /// Splits bios so that none crosses a multiple of `sectors`
    /// (`dm_set_target_max_io_len()`).
    pub fn set_max_io_len(&mut self, sectors: u32) -> Result {
        // SAFETY: `&mut self` means the target is being constructed.
        to_result(unsafe { bindings::dm_set_target_max_io_len(self.raw(), sectors.into()) })
    }

    /// A handle that raises this target's table event (`dm_table_event()`)
    /// from wherever it is kept, such as an I/O completion (see
    /// [`TableEvent`]). Only while the target is constructed; every call
    /// gives the same one.
    pub fn table_event(&mut self) -> Result<Arc<TableEvent>> {
        let ti = self.raw();
        // SAFETY: `&mut self` means the target is being constructed:
        // `private` belongs to `ctr_callback` until the constructor returns,
        // and holds null or the handle stashed by an earlier call.
        let stashed = unsafe { (*ti).private }.cast::<TableEvent>().cast_const();
        if !stashed.is_null() {
            // SAFETY: A non-null `private` during construction is a handle
            // leaked with `Arc::into_raw` below and not yet reclaimed.
            return Ok(unsafe { ArcBorrow::from_raw(stashed) }.into());
        }
        // SAFETY: `ti` is valid, and its table outlives it.
        let table = NonNull::new(unsafe { (*ti).table }).ok_or(EINVAL)?;
        // INVARIANT: `table` is the table of `ti`, which is not destroyed
        // before `dtr_callback` disarms the handle.
        let ev = Arc::pin_init(
            pin_init!(TableEvent {
                table <- new_mutex!(Some(table)),
            }),
            GFP_KERNEL,
        )?;
        // SAFETY: As above; `ctr_callback` reclaims the stashed reference
        // once the constructor returns.
        unsafe { (*ti).private = Arc::into_raw(ev.clone()).cast_mut().cast() };
        Ok(ev)
    }
}

/// Raises the event of a target's table (`dm_table_event()`): the event
/// number of the mapped device goes up, and `dmsetup wait` and dmeventd
/// wake up. It may be kept by state that outlives a callback, e.g. a copy
/// in flight; once the target is destroyed it is disarmed and
/// [`TableEvent::raise`] does nothing.
///
/// ```ignore
/// // In `ctr`:
/// let event = target.table_event()?;
/// // Later, when the target breaks, in a context that may sleep:
/// event.raise();
/// ```
///
/// # Invariants
///
/// `table`, while `Some`, points to the table of a live target: the target's
/// destructor sets it to `None` before the table can go away.
#[pin_data]
pub struct TableEvent {
    #[pin]
    table: Mutex<Option<NonNull<bindings::dm_table>>>,
}

// SAFETY: The table pointer is only used under the mutex, while the type
// invariant keeps it valid; `dm_table_event()` may be called from any task.
unsafe impl Send for TableEvent {}
// SAFETY: As for `Send`: every access goes through the mutex.
unsafe impl Sync for TableEvent {}

impl TableEvent {
    /// Raises the table event, unless the target is gone. May sleep.
    pub fn raise(&self) {
        let table = self.table.lock();
        if let Some(t) = *table {
            // SAFETY: By the type invariant the table is valid while set,
            // and it cannot be disarmed while we hold the lock.
            unsafe { bindings::dm_table_event(t.as_ptr()) };
        }
    }

    /// Turns the handle off: the target is being destroyed.
    fn disarm(&self) {
        *self.table.lock() = None;
    }
}

/// What `ti->private` holds for a constructed target: the instance, and
/// the table event handle it asked for, which `dtr` disarms.
struct Instance<T> {
    private: Pin<KBox<T>>,
    event: Option<Arc<TableEvent>>,
}

/// The queue limits a target may adjust in `io_hints` (`struct queue_limits`).
#[repr(transparent)]
pub struct QueueLimits(Opaque<bindings::queue_limits>);

impl QueueLimits {
    fn raw(&mut self) -> &mut bindings::queue_limits {
        // SAFETY: A `&mut QueueLimits` is only made in `io_hints_callback`,
        // from the limits device-mapper hands over for the call.
        unsafe { &mut *self.0.get() }
    }

    /// Sets the discard granularity.
    pub fn set_discard_granularity(&mut self, n: u32) {
        self.raw().discard_granularity = n;
    }

    /// Sets the largest discard the hardware side accepts, in sectors.
    pub fn set_max_hw_discard_sectors(&mut self, n: u32) {
        self.raw().max_hw_discard_sectors = n;
    }
}

/// A device opened by a target with [`Target::get_device`] (`struct dm_dev`).
///
/// Kept in the target's private data and dropped with it, in `dtr`, which
/// releases it (`dm_put_device()`).
///
/// Known gap: nothing but this convention stops a `Device` from being moved
/// somewhere that outlives its target (a global, another target), where
/// dropping it would release it through a freed `dm_target`. Tying it to
/// the table's lifetime (a reference-counted table, or a lifetime on the
/// instance) is to come before the abstraction goes upstream.
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
    fn raw(&self) -> &bindings::dm_dev {
        // SAFETY: By the type invariant `dev` is valid until `drop`.
        unsafe { self.dev.as_ref() }
    }

    /// The device's name as device-mapper prints it in tables (`major:minor`).
    pub fn name(&self) -> &CStr {
        // SAFETY: `name` is a NUL-terminated array filled by `dm_get_device()`
        // and not changed while the device is open.
        unsafe { CStr::from_char_ptr(self.raw().name.as_ptr()) }
    }

    /// The size of the device in sectors.
    pub fn sectors(&self) -> u64 {
        // SAFETY: `bdev` is valid while the device is open.
        unsafe { bindings::bdev_nr_sectors(self.raw().bdev) }
    }

    /// The logical block size of the device in bytes.
    pub fn logical_block_size(&self) -> u32 {
        // SAFETY: `bdev` is valid while the device is open.
        unsafe { bindings::bdev_logical_block_size(self.raw().bdev) }
    }

    /// The device number (`dev_t`) of the block device.
    pub fn dev_t(&self) -> u32 {
        // SAFETY: `bdev` is valid while the device is open.
        unsafe { (*self.raw().bdev).bd_dev }
    }

    /// A range of `count` sectors from `sector` on this device, for kcopyd.
    pub fn region(&self, sector: u64, count: u64) -> kcopyd::Region {
        kcopyd::Region::new(self.raw().bdev, sector, count)
    }

    /// Whether both refer to the same block device.
    pub fn same_bdev(&self, other: &Device) -> bool {
        core::ptr::eq(self.raw().bdev, other.raw().bdev)
    }

    /// Sends `bio` to this device (`bio_set_dev()`), keeping its sector.
    pub fn remap(&self, bio: &mut Bio) {
        // SAFETY: `bdev` is open until this device is released, which happens
        // in the target's `dtr`, after device-mapper has drained its bios.
        unsafe { bio.set_bdev(self.raw().bdev) };
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // SAFETY: By the type invariant `dev` was opened for `ti` and is
        // released exactly once, here.
        unsafe { bindings::dm_put_device(self.ti.as_ptr(), self.dev.as_ptr()) };
    }
}

/// The output buffer of a status call, filled like C's `DMEMIT()`: output
/// that does not fit is cut off and the buffer stays NUL-terminated.
pub struct StatusWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl fmt::Write for StatusWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Keep one byte for the terminating NUL.
        let room = self.buf.len().saturating_sub(self.len + 1);
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if let Some(b) = self.buf.get_mut(self.len) {
            *b = 0;
        }
        Ok(())
    }
}

/// The callout of `iterate_devices`, called once per underlying device.
pub struct IterateDevices {
    ti: *mut bindings::dm_target,
    callout: bindings::iterate_devices_callout_fn,
    data: *mut c_void,
}

impl IterateDevices {
    /// Reports `sectors` sectors of `dev` from `start` as used by the target;
    /// a non-zero result stops the iteration and must be returned.
    pub fn call(&mut self, dev: &Device, start: u64, sectors: u64) -> c_int {
        match self.callout {
            // SAFETY: device-mapper passed the callout with its `ti` and
            // `data`; `dev` is an open device of that target.
            Some(f) => unsafe { f(self.ti, dev.dev.as_ptr(), start, sectors, self.data) },
            None => 0,
        }
    }
}

/// The operations of a device-mapper target type.
///
/// The implementing type is one target instance: built by `ctr`, shared by
/// every CPU that maps bios, and dropped by `dtr`.
#[macros::vtable]
pub trait TargetOperations: Sized + Send + Sync {
    /// Data shared by all instances of the target type, given when the type
    /// is registered (for example a registry of devices).
    type Shared: Send + Sync;

    /// State kept with each bio from `map` to `end_io` (per-bio data). It
    /// starts as `Default::default()` for every bio.
    type PerBio: Default + Send;

    /// Builds an instance from the table line's arguments (`ctr`).
    fn ctr(
        target: &mut Target,
        args: &Args<'_>,
        shared: &Self::Shared,
    ) -> Result<Pin<KBox<Self>>, CtrError>;

    /// Maps a bio (`map`).
    fn map(&self, target: &Target, bio: MapBio, data: &mut Self::PerBio) -> MapResult;

    /// Sees a bio complete (`end_io`); `data` is what `map` left.
    fn end_io(&self, _target: &Target, _bio: EndIoBio, _data: Self::PerBio) -> EndIoResult {
        crate::build_error(VTABLE_DEFAULT_ERROR)
    }

    /// Writes a status line (`status`).
    fn status(&self, _target: &Target, _kind: StatusType, _out: &mut StatusWriter<'_>) {
        crate::build_error(VTABLE_DEFAULT_ERROR)
    }

    /// Handles a `dmsetup message` (`message`); output goes to `out`.
    fn message(&self, _target: &Target, _args: &Args<'_>, _out: &mut StatusWriter<'_>) -> Result {
        crate::build_error(VTABLE_DEFAULT_ERROR)
    }

    /// Reports the underlying devices (`iterate_devices`).
    fn iterate_devices(&self, _target: &Target, _callout: &mut IterateDevices) -> c_int {
        crate::build_error(VTABLE_DEFAULT_ERROR)
    }

    /// Adjusts the queue limits of the mapped device (`io_hints`).
    fn io_hints(&self, _target: &Target, _limits: &mut QueueLimits) {
        crate::build_error(VTABLE_DEFAULT_ERROR)
    }

    /// Called before the device is suspended (`presuspend`).
    fn presuspend(&self, _target: &Target) {
        crate::build_error(VTABLE_DEFAULT_ERROR)
    }

    /// Called once the device is suspended (`postsuspend`).
    fn postsuspend(&self, _target: &Target) {
        crate::build_error(VTABLE_DEFAULT_ERROR)
    }

    /// Called before the device resumes; an error keeps it suspended
    /// (`preresume`).
    fn preresume(&self, _target: &Target) -> Result {
        crate::build_error(VTABLE_DEFAULT_ERROR)
    }

    /// Called when the device resumes (`resume`).
    fn resume(&self, _target: &Target) {
        crate::build_error(VTABLE_DEFAULT_ERROR)
    }
}

struct Callbacks<T>(PhantomData<T>);

impl<T: TargetOperations> Callbacks<T> {
    /// The per-bio data size we ask for: `PerBio`, rounded up so that
    /// device-mapper places it 8-byte aligned.
    const PER_BIO_SIZE: usize = (core::mem::size_of::<T::PerBio>() + 7) & !7;

    /// # Safety
    ///
    /// `ti` must be a valid target whose `private` was set by `ctr_callback`.
    unsafe fn private<'a>(ti: *mut bindings::dm_target) -> &'a T {
        // SAFETY: `private` holds an `Instance<T>` leaked by `ctr_callback`
        // and reclaimed only by `dtr_callback`, after every other callback.
        unsafe { &(*(*ti).private.cast::<Instance<T>>()).private }
    }

    /// Takes back the table event handle `Target::table_event` stashed in
    /// `private` while the constructor ran, if it made one.
    ///
    /// # Safety
    ///
    /// `ti` must be a target whose constructor has just returned.
    unsafe fn take_stashed_event(ti: *mut bindings::dm_target) -> Option<Arc<TableEvent>> {
        // SAFETY: `ti` is valid; during construction `private` is null or a
        // handle leaked by `Target::table_event` with `Arc::into_raw`.
        unsafe {
            let p = (*ti).private.cast::<TableEvent>().cast_const();
            (*ti).private = core::ptr::null_mut();
            (!p.is_null()).then(|| Arc::from_raw(p))
        }
    }

    /// # Safety
    ///
    /// `bio` must be a clone device-mapper passes to `map` or `end_io` of a
    /// target built by `ctr_callback`, which sized its per-bio data.
    unsafe fn per_bio(bio: *mut bindings::bio) -> *mut T::PerBio {
        // SAFETY: device-mapper reserved `PER_BIO_SIZE` bytes before the
        // clone, 8-byte aligned (checked in `ctr_callback`).
        unsafe { bindings::dm_per_bio_data(bio, Self::PER_BIO_SIZE).cast() }
    }

    /// # Safety
    ///
    /// Called by device-mapper only: `ti` is a target being constructed and
    /// `argv` holds `argc` valid NUL-terminated strings.
    unsafe extern "C" fn ctr_callback(
        ti: *mut bindings::dm_target,
        argc: c_uint,
        argv: *mut *mut c_char,
    ) -> c_int {
        crate::build_assert!(core::mem::align_of::<T::PerBio>() <= 8);
        let args: &[*mut c_char] = if argc == 0 || argv.is_null() {
            &[]
        } else {
            // SAFETY: device-mapper passes `argc` valid argument pointers.
            unsafe { core::slice::from_raw_parts(argv, argc as usize) }
        };
        // SAFETY: `ti->type` is the `target_type` inside the registration
        // that registered these callbacks, which outlives every instance.
        let reg = unsafe {
            &*crate::container_of!(
                (*ti).type_.cast::<Opaque<bindings::target_type>>(),
                Registration<T>,
                tt
            )
        };
        // SAFETY: device-mapper passes a valid target it does not touch while
        // the constructor runs.
        let target = unsafe { Target::from_raw_mut(ti) };
        // The box for the instance first, so that nothing can fail between
        // the constructor's success and `private` holding it.
        let slot = KBox::<Instance<T>>::new_uninit(GFP_KERNEL);
        let r = match slot {
            Ok(slot) => T::ctr(target, &Args { args }, &reg.shared).map(|p| (slot, p)),
            Err(_) => Err(CtrError::new(
                ENOMEM,
                crate::c_str!("Cannot allocate target instance"),
            )),
        };
        // SAFETY: The constructor has returned (or never ran).
        let event = unsafe { Self::take_stashed_event(ti) };
        match r {
            Ok((slot, private)) => {
                let inst = slot.write(Instance { private, event });
                // SAFETY: `ti` is valid and ours while constructing. The
                // instance stays pinned in its box, reclaimed in `dtr_callback`.
                unsafe {
                    (*ti).private = KBox::into_raw(inst).cast();
                    (*ti).per_io_data_size = Self::PER_BIO_SIZE as c_uint;
                }
                0
            }
            Err(e) => {
                // The table is not built: whatever kept the handle must not
                // raise it any more.
                if let Some(ev) = event {
                    ev.disarm();
                }
                // SAFETY: `ti` is valid; `error` is only read, and `msg` is
                // static.
                unsafe { (*ti).error = e.msg.as_char_ptr().cast_mut() };
                e.err.to_errno()
            }
        }
    }

    /// # Safety
    ///
    /// Called by device-mapper only, once, for a target `ctr_callback` built.
    unsafe extern "C" fn dtr_callback(ti: *mut bindings::dm_target) {
        // SAFETY: `private` was set by `ctr_callback` from a boxed instance,
        // and device-mapper calls `dtr` once, after the last other callback.
        let inst = unsafe { KBox::from_raw((*ti).private.cast::<Instance<T>>()) };
        let Instance { private, event } = KBox::into_inner(inst);
        // The instance first: what it drops may still raise the event
        // (copies ending), and the table outlives `dtr`.
        drop(private);
        if let Some(ev) = event {
            ev.disarm();
        }
    }

    /// # Safety
    ///
    /// Called by device-mapper only, for a constructed target and a bio it
    /// hands over to the target.
    unsafe extern "C" fn map_callback(
        ti: *mut bindings::dm_target,
        bio: *mut bindings::bio,
    ) -> c_int {
        // SAFETY: device-mapper passes a bio clone with our per-bio data,
        // which nobody else uses; it starts as the default.
        let data = unsafe {
            let data = Self::per_bio(bio);
            data.write(T::PerBio::default());
            &mut *data
        };
        // SAFETY: device-mapper passes a constructed target and a bio that the
        // target owns until it returns or completes it.
        let (target, private, bio) = unsafe {
            (
                Target::from_raw(ti),
                Self::private(ti),
                OwnedBio::from_raw(bio),
            )
        };
        let (r, kept) = match T::map(private, target, MapBio { bio }, data) {
            MapResult::Submitted => (bindings::DM_MAPIO_SUBMITTED, None),
            MapResult::Remapped(b) => (bindings::DM_MAPIO_REMAPPED, Some(b)),
            MapResult::Requeue(b) => (bindings::DM_MAPIO_REQUEUE, Some(b)),
            MapResult::Kill(b) => (bindings::DM_MAPIO_KILL, Some(b)),
        };
        if let Some(b) = kept {
            let raw = b.into_owned().into_raw();
            if r != bindings::DM_MAPIO_REMAPPED {
                // SAFETY: device-mapper frees a killed or requeued clone
                // without calling `end_io`, so the per-bio data ends here.
                unsafe { core::ptr::drop_in_place(Self::per_bio(raw)) };
            }
        }
        r as c_int
    }

    /// # Safety
    ///
    /// Called by device-mapper only, for a constructed target and a clone
    /// that went through `map_callback`; `error` points to its status.
    unsafe extern "C" fn end_io_callback(
        ti: *mut bindings::dm_target,
        bio: *mut bindings::bio,
        error: *mut bindings::blk_status_t,
    ) -> c_int {
        // SAFETY: `map_callback` initialised the per-bio data, and a taken
        // bio gets a fresh default before it can complete again.
        let data = unsafe {
            let p = Self::per_bio(bio);
            let d = p.read();
            p.write(T::PerBio::default());
            d
        };
        if !T::HAS_END_IO {
            drop(data);
            return bindings::DM_ENDIO_DONE as c_int;
        }
        // SAFETY: device-mapper passes a constructed target, a valid status
        // and a bio that is ours for the call.
        let (target, private, ebio) = unsafe {
            (
                Target::from_raw(ti),
                Self::private(ti),
                EndIoBio {
                    bio: OwnedBio::from_raw(bio),
                    error: *error != 0,
                },
            )
        };
        match T::end_io(private, target, ebio, data) {
            EndIoResult::Done(b) => {
                // device-mapper completes the bio: give it back.
                let _ = b.bio.into_raw();
                bindings::DM_ENDIO_DONE as c_int
            }
            EndIoResult::Incomplete(_) => bindings::DM_ENDIO_INCOMPLETE as c_int,
        }
    }

    /// # Safety
    ///
    /// Called by device-mapper only, for a constructed target and a `result`
    /// buffer of `maxlen` bytes.
    unsafe extern "C" fn status_callback(
        ti: *mut bindings::dm_target,
        kind: bindings::status_type_t,
        _flags: c_uint,
        result: *mut c_char,
        maxlen: c_uint,
    ) {
        if result.is_null() || maxlen == 0 {
            return;
        }
        let kind = match kind {
            bindings::status_type_t_STATUSTYPE_INFO => StatusType::Info,
            bindings::status_type_t_STATUSTYPE_TABLE => StatusType::Table,
            _ => StatusType::Ima,
        };
        // SAFETY: device-mapper passes a buffer of `maxlen` bytes that is ours
        // for the call.
        let buf = unsafe { core::slice::from_raw_parts_mut(result.cast::<u8>(), maxlen as usize) };
        buf[0] = 0;
        let mut out = StatusWriter { buf, len: 0 };
        // SAFETY: `ti` is a constructed target.
        let (target, private) = unsafe { (Target::from_raw(ti), Self::private(ti)) };
        T::status(private, target, kind, &mut out);
    }

    /// # Safety
    ///
    /// Called by device-mapper only, for a constructed target, `argc` valid
    /// argument strings and a `result` buffer of `maxlen` bytes.
    unsafe extern "C" fn message_callback(
        ti: *mut bindings::dm_target,
        argc: c_uint,
        argv: *mut *mut c_char,
        result: *mut c_char,
        maxlen: c_uint,
    ) -> c_int {
        let args: &[*mut c_char] = if argc == 0 || argv.is_null() {
            &[]
        } else {
            // SAFETY: device-mapper passes `argc` valid argument pointers.
            unsafe { core::slice::from_raw_parts(argv, argc as usize) }
        };
        let mut empty = [0u8; 1];
        let buf: &mut [u8] = if result.is_null() || maxlen == 0 {
            &mut empty
        } else {
            // SAFETY: device-mapper passes a buffer of `maxlen` bytes that is
            // ours for the call.
            unsafe { core::slice::from_raw_parts_mut(result.cast::<u8>(), maxlen as usize) }
        };
        buf[0] = 0;
        let mut out = StatusWriter { buf, len: 0 };
        // SAFETY: `ti` is a constructed target.
        let (target, private) = unsafe { (Target::from_raw(ti), Self::private(ti)) };
        match T::message(private, target, &Args { args }, &mut out) {
            Ok(()) if out.len > 0 => 1,
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    ///
    /// Called by device-mapper only, for a constructed target, with its own
    /// callout and data.
    unsafe extern "C" fn iterate_devices_callback(
        ti: *mut bindings::dm_target,
        callout: bindings::iterate_devices_callout_fn,
        data: *mut c_void,
    ) -> c_int {
        let mut it = IterateDevices { ti, callout, data };
        // SAFETY: `ti` is a constructed target.
        let (target, private) = unsafe { (Target::from_raw(ti), Self::private(ti)) };
        T::iterate_devices(private, target, &mut it)
    }

    /// # Safety
    ///
    /// Called by device-mapper only, for a constructed target and limits
    /// that are ours for the call.
    unsafe extern "C" fn io_hints_callback(
        ti: *mut bindings::dm_target,
        limits: *mut bindings::queue_limits,
    ) {
        // SAFETY: `ti` is a constructed target; `limits` is valid and ours
        // for the call, and `QueueLimits` is a transparent wrapper.
        let (target, private, limits) = unsafe {
            (
                Target::from_raw(ti),
                Self::private(ti),
                &mut *limits.cast::<QueueLimits>(),
            )
        };
        T::io_hints(private, target, limits);
    }

    /// # Safety
    ///
    /// Called by device-mapper only, for a constructed target.
    unsafe extern "C" fn presuspend_callback(ti: *mut bindings::dm_target) {
        // SAFETY: `ti` is a constructed target.
        let (target, private) = unsafe { (Target::from_raw(ti), Self::private(ti)) };
        T::presuspend(private, target);
    }

    /// # Safety
    ///
    /// Called by device-mapper only, for a constructed target.
    unsafe extern "C" fn postsuspend_callback(ti: *mut bindings::dm_target) {
        // SAFETY: `ti` is a constructed target.
        let (target, private) = unsafe { (Target::from_raw(ti), Self::private(ti)) };
        T::postsuspend(private, target);
    }

    /// # Safety
    ///
    /// Called by device-mapper only, for a constructed target.
    unsafe extern "C" fn preresume_callback(ti: *mut bindings::dm_target) -> c_int {
        // SAFETY: `ti` is a constructed target.
        let (target, private) = unsafe { (Target::from_raw(ti), Self::private(ti)) };
        match T::preresume(private, target) {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    ///
    /// Called by device-mapper only, for a constructed target.
    unsafe extern "C" fn resume_callback(ti: *mut bindings::dm_target) {
        // SAFETY: `ti` is a constructed target.
        let (target, private) = unsafe { (Target::from_raw(ti), Self::private(ti)) };
        T::resume(private, target);
    }
}

/// The registration of a target type (`dm_register_target()`), undone when
/// dropped, with the data its instances share.
///
/// # Invariants
///
/// `tt` is registered with device-mapper from initialisation to drop.
#[pin_data(PinnedDrop)]
pub struct Registration<T: TargetOperations> {
    #[pin]
    tt: Opaque<bindings::target_type>,
    shared: T::Shared,
    _t: PhantomData<T>,
}

// SAFETY: The target type is only touched by device-mapper, which does its
// own locking, and by `drop`; the shared data is `Send`.
unsafe impl<T: TargetOperations> Send for Registration<T> {}
// SAFETY: `&Registration` only gives access to the shared data, which is
// `Sync`.
unsafe impl<T: TargetOperations> Sync for Registration<T> {}

impl<T: TargetOperations> Registration<T> {
    /// Registers target type `name` with `version`, owned by `module`, whose
    /// instances share `shared`.
    ///
    /// Fails with `EEXIST` if another module has registered the name.
    pub fn new(
        name: &'static CStr,
        version: [u32; 3],
        module: &'static ThisModule,
        shared: T::Shared,
    ) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            shared,
            _t: PhantomData,
            // The type is registered last, once `shared` is in place.
            tt <- Self::register(name, version, module),
        })
    }

    fn register(
        name: &'static CStr,
        version: [u32; 3],
        module: &'static ThisModule,
    ) -> impl PinInit<Opaque<bindings::target_type>, Error> {
        let closure = move |slot: *mut Opaque<bindings::target_type>| {
            let tt = Opaque::raw_get(slot);
            // SAFETY: `slot` is valid for writes; an all-zero `target_type`
            // is valid (no callbacks, empty list head).
            unsafe { core::ptr::write_bytes(tt, 0, 1) };
            // SAFETY: `tt` was just initialised and is not shared yet.
            let t = unsafe { &mut *tt };
            t.name = name.as_char_ptr();
            t.module = module.as_ptr();
            t.version = version;
            t.ctr = Some(Callbacks::<T>::ctr_callback);
            t.dtr = Some(Callbacks::<T>::dtr_callback);
            t.map = Some(Callbacks::<T>::map_callback);
            if T::HAS_END_IO || core::mem::needs_drop::<T::PerBio>() {
                t.end_io = Some(Callbacks::<T>::end_io_callback);
            }
            if T::HAS_STATUS {
                t.status = Some(Callbacks::<T>::status_callback);
            }
            if T::HAS_MESSAGE {
                t.message = Some(Callbacks::<T>::message_callback);
            }
            if T::HAS_ITERATE_DEVICES {
                t.iterate_devices = Some(Callbacks::<T>::iterate_devices_callback);
            }
            if T::HAS_IO_HINTS {
                t.io_hints = Some(Callbacks::<T>::io_hints_callback);
            }
            if T::HAS_PRESUSPEND {
                t.presuspend = Some(Callbacks::<T>::presuspend_callback);
            }
            if T::HAS_POSTSUSPEND {
                t.postsuspend = Some(Callbacks::<T>::postsuspend_callback);
            }
            if T::HAS_PRERESUME {
                t.preresume = Some(Callbacks::<T>::preresume_callback);
            }
            if T::HAS_RESUME {
                t.resume = Some(Callbacks::<T>::resume_callback);
            }
            // SAFETY: `tt` is a fully set up target type in pinned memory
            // that stays registered until `drop` (type invariant), inside a
            // `Registration<T>` whose `shared` is initialised.
            to_result(unsafe { bindings::dm_register_target(tt) })
        };
        // SAFETY: The closure initialises the slot completely on success and
        // leaves nothing registered on failure.
        unsafe { pin_init_from_closure(closure) }
    }
}

#[pinned_drop]
impl<T: TargetOperations> PinnedDrop for Registration<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: By the type invariant `tt` is registered; device-mapper
        // refuses to unload a module whose targets are in use, so no table
        // refers to it any more.
        unsafe { bindings::dm_unregister_target(self.tt.get()) };
    }
}

/// The throttle of kcopyd clients (`struct dm_kcopyd_throttle`): the share
/// of time, in percent, their copies may keep the disks busy.
///
/// A module keeps one in a static and exposes its percentage as a module
/// parameter, as C's `DECLARE_DM_KCOPYD_THROTTLE_WITH_MODULE_PARM()`:
///
/// ```ignore
/// static THROTTLE: KcopydThrottle = KcopydThrottle::new();
/// kernel::module_param_uint!(@storage THROTTLE.percentage(), "copy_throttle", 0o644, "...");
/// ```
///
/// # Invariants
///
/// The layout is that of `struct dm_kcopyd_throttle`; kcopyd changes the
/// fields other than the percentage under its own lock, and the percentage
/// is written by the module parameter code only.
#[repr(C)]
pub struct KcopydThrottle {
    throttle: UintParam,
    state: Opaque<[u32; 4]>,
}

// SAFETY: kcopyd serialises its updates of the state with its throttle
// spinlock, and the percentage is an atomic; Rust reads neither otherwise.
unsafe impl Sync for KcopydThrottle {}

const _: () = assert!(
    core::mem::size_of::<KcopydThrottle>() == core::mem::size_of::<bindings::dm_kcopyd_throttle>()
        && core::mem::align_of::<KcopydThrottle>()
            == core::mem::align_of::<bindings::dm_kcopyd_throttle>()
);

impl KcopydThrottle {
    /// No throttling: 100 percent, as C's default.
    pub const fn new() -> Self {
        Self {
            throttle: UintParam::new(100),
            state: Opaque::new([0; 4]),
        }
    }

    /// The percentage, as a module parameter's storage.
    pub const fn percentage(&self) -> &UintParam {
        &self.throttle
    }

    /// The raw pointer kcopyd clients are created with.
    fn as_raw(&self) -> *mut bindings::dm_kcopyd_throttle {
        (self as *const Self).cast_mut().cast()
    }
}

impl Default for KcopydThrottle {
    fn default() -> Self {
        Self::new()
    }
}
