// SPDX-License-Identifier: GPL-2.0

//! A target instance as device-mapper sees it, what its constructor gets
//! and may set, and its table's event.
//!
//! C header: [`include/linux/device-mapper.h`](srctree/include/linux/device-mapper.h)
//! (`struct dm_target`, `dm_get_device()`, `dm_table_event()`)

use crate::{
    bindings,
    error::{code::*, to_result, Error, Result},
    ffi::{c_char, c_uint},
    new_mutex,
    prelude::*,
    str::CStr,
    sync::{Arc, ArcBorrow, Mutex},
    types::Opaque,
};
use core::ptr::NonNull;

/// A constructor failure: the error code and the message device-mapper logs
/// as the table's reason (`ti->error`).
///
/// # Examples
///
/// ```ignore
/// use kernel::{c_str, device_mapper::CtrError};
///
/// let dev = target
///     .get_device(path)
///     .map_err(|e| CtrError::new(e, c_str!("Cannot get target device")))?;
/// if args.len() != 1 {
///     return Err(CtrError::inval(c_str!("incorrect number of arguments")));
/// }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct CtrError {
    /// The error code returned to device-mapper.
    pub err: Error,
    /// The reason, shown in the kernel log as `<dev>: <target>: <reason>`.
    pub msg: &'static CStr,
}

impl CtrError {
    /// Creates a constructor error.
    #[inline]
    pub const fn new(err: Error, msg: &'static CStr) -> Self {
        Self { err, msg }
    }

    /// `EINVAL` with a reason: a malformed table.
    #[inline]
    pub const fn inval(msg: &'static CStr) -> Self {
        Self::new(EINVAL, msg)
    }
}

/// The arguments of a table line after the target name (`argc`, `argv`), or
/// of a `dmsetup message`.
///
/// # Examples
///
/// ```ignore
/// use kernel::device_mapper::Args;
///
/// // `snapshot <origin> <cow> ...`
/// let (origin, cow) = match (args.get(0), args.get(1)) {
///     (Some(o), Some(c)) => (o, c),
///     _ => return Err(CtrError::inval(c_str!("requires 4 or more arguments"))),
/// };
/// ```
///
/// # Invariants
///
/// Every pointer in `args` points to a NUL-terminated string valid for `'a`.
pub struct Args<'a> {
    args: &'a [*mut c_char],
}

impl<'a> Args<'a> {
    /// The `argc` arguments at `argv`.
    ///
    /// # Safety
    ///
    /// Unless `argc` is 0 or `argv` null, `argv` must point to `argc`
    /// pointers to NUL-terminated strings, all valid for `'a`.
    #[inline]
    pub(super) unsafe fn from_raw(argc: c_uint, argv: *mut *mut c_char) -> Self {
        let args: &[*mut c_char] = if argc == 0 || argv.is_null() {
            &[]
        } else {
            // SAFETY: The caller passes `argc` valid argument pointers.
            unsafe { core::slice::from_raw_parts(argv, argc as usize) }
        };
        // INVARIANT: The caller vouches for the strings.
        Self { args }
    }

    /// The number of arguments.
    #[inline]
    pub fn len(&self) -> usize {
        self.args.len()
    }

    /// Whether there are no arguments.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }

    /// The argument at `index`, if there is one.
    #[inline]
    pub fn get(&self, index: usize) -> Option<&'a CStr> {
        let ptr = *self.args.get(index)?;
        // SAFETY: By the type invariant `ptr` is a NUL-terminated string
        // valid for `'a`.
        Some(unsafe { CStr::from_char_ptr(ptr) })
    }
}

/// A device-mapper target instance (`struct dm_target`).
///
/// Every callback gets `&Target`; the constructor gets `&mut Target`, the
/// only time the target's settings may change.
///
/// # Examples
///
/// ```ignore
/// use kernel::device_mapper::{Args, CtrError, Target};
///
/// fn ctr(target: &mut Target, args: &Args<'_>, _: &()) -> Result<Pin<KBox<Self>>, CtrError> {
///     let path = args.get(0).ok_or(CtrError::inval(c_str!("no device")))?;
///     let dev = target
///         .get_device(path)
///         .map_err(|e| CtrError::new(e, c_str!("Cannot get target device")))?;
///     // Flushes reach `map` once; no discards.
///     target.set_num_flush_bios(1);
///     KBox::pin(Self { dev }, GFP_KERNEL).map_err(|_| CtrError::new(ENOMEM, c_str!("no memory")))
/// }
/// ```
///
/// # Invariants
///
/// The wrapped `struct dm_target` is valid for as long as the reference, and
/// so is its table.
#[repr(transparent)]
pub struct Target(Opaque<bindings::dm_target>);

impl Target {
    /// # Safety
    ///
    /// `ptr` must be a valid `struct dm_target` for `'a`.
    #[inline]
    pub(super) unsafe fn from_raw<'a>(ptr: *mut bindings::dm_target) -> &'a Self {
        // SAFETY: `Target` is a transparent wrapper; the caller guarantees
        // validity for `'a`.
        unsafe { &*ptr.cast::<Self>() }
    }

    /// # Safety
    ///
    /// `ptr` must be a valid `struct dm_target` for `'a` that device-mapper
    /// does not use concurrently (it is being constructed).
    #[inline]
    pub(super) unsafe fn from_raw_mut<'a>(ptr: *mut bindings::dm_target) -> &'a mut Self {
        // SAFETY: As above, and the caller guarantees exclusive access.
        unsafe { &mut *ptr.cast::<Self>() }
    }

    #[inline]
    pub(super) fn raw(&self) -> *mut bindings::dm_target {
        self.0.get()
    }

    /// The first sector of the target in its device.
    #[inline]
    pub fn begin(&self) -> u64 {
        // SAFETY: By the type invariant `ti` is valid; `begin` is set before
        // the constructor runs and never changes.
        unsafe { (*self.raw()).begin }
    }

    /// The length of the target in sectors.
    #[inline]
    pub fn len(&self) -> u64 {
        // SAFETY: As for `begin`.
        unsafe { (*self.raw()).len }
    }

    /// Whether the target has zero length.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets how many copies of an empty flush bio the target receives.
    #[inline]
    pub fn set_num_flush_bios(&mut self, n: u32) {
        // SAFETY: `&mut self` means the target is being constructed and
        // device-mapper does not read it concurrently.
        unsafe { (*self.raw()).num_flush_bios = n };
    }

    /// Sets how many copies of a discard bio the target receives (0: none).
    #[inline]
    pub fn set_num_discard_bios(&mut self, n: u32) {
        // SAFETY: As for `set_num_flush_bios`.
        unsafe { (*self.raw()).num_discard_bios = n };
    }

    /// Splits bios so that none crosses a multiple of `sectors`
    /// (`dm_set_target_max_io_len()`).
    #[inline]
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
        // SAFETY: `&mut self`: the target is being constructed, `private`
        // is the constructor callback's until it returns, and holds null
        // or the handle stashed by an earlier call.
        let stashed = unsafe { (*ti).private }.cast::<TableEvent>().cast_const();
        if !stashed.is_null() {
            // SAFETY: A non-null `private` during construction is a handle
            // leaked with `Arc::into_raw` below and not yet reclaimed.
            return Ok(unsafe { ArcBorrow::from_raw(stashed) }.into());
        }
        // SAFETY: `ti` is valid, and its table outlives it.
        let table = NonNull::new(unsafe { (*ti).table }).ok_or(EINVAL)?;
        // INVARIANT: `table` is the table of `ti`, which is not destroyed
        // before the destructor callback disarms the handle.
        let ev = Arc::pin_init(
            pin_init!(TableEvent {
                table <- new_mutex!(Some(table)),
            }),
            GFP_KERNEL,
        )?;
        // SAFETY: As above; `take_stashed_event` reclaims the stashed
        // reference once the constructor returns.
        unsafe { (*ti).private = Arc::into_raw(ev.clone()).cast_mut().cast() };
        Ok(ev)
    }

    /// Takes back the table event handle [`Target::table_event`] stashed in
    /// `private` while the constructor ran, if it made one, and leaves
    /// `private` null.
    ///
    /// # Safety
    ///
    /// `ti` must be a valid target whose constructor has just returned.
    #[inline]
    pub(super) unsafe fn take_stashed_event(
        ti: *mut bindings::dm_target,
    ) -> Option<Arc<TableEvent>> {
        // SAFETY: `ti` is valid; during construction `private` is null or a
        // handle leaked by `Target::table_event` with `Arc::into_raw`.
        unsafe {
            let p = (*ti).private.cast::<TableEvent>().cast_const();
            (*ti).private = core::ptr::null_mut();
            (!p.is_null()).then(|| Arc::from_raw(p))
        }
    }
}

/// Raises the event of a target's table (`dm_table_event()`): the event
/// number of the mapped device goes up, and `dmsetup wait` and dmeventd
/// wake up. It may be kept by state that outlives a callback, e.g. a copy
/// in flight; once the target is destroyed it is disarmed and
/// [`TableEvent::raise`] does nothing.
///
/// # Examples
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
    #[inline]
    pub fn raise(&self) {
        let table = self.table.lock();
        if let Some(t) = *table {
            // SAFETY: By the type invariant the table is valid while set,
            // and it cannot be disarmed while we hold the lock.
            unsafe { bindings::dm_table_event(t.as_ptr()) };
        }
    }

    /// Turns the handle off: the target is being destroyed, or was never
    /// built.
    #[inline]
    pub(super) fn disarm(&self) {
        *self.table.lock() = None;
    }
}

/// The queue limits a target may adjust in `io_hints` (`struct queue_limits`).
///
/// # Examples
///
/// ```ignore
/// use kernel::device_mapper::{QueueLimits, Target};
///
/// fn io_hints(&self, _target: &Target, limits: &mut QueueLimits) {
///     // Discards split on chunk boundaries.
///     limits.set_discard_granularity(self.chunk_sectors);
///     limits.set_max_hw_discard_sectors(self.chunk_sectors);
/// }
/// ```
///
/// # Invariants
///
/// A `&mut QueueLimits` is only made in the `io_hints` callback, from the
/// limits device-mapper hands it, which are the callback's to change for
/// the call.
#[repr(transparent)]
pub struct QueueLimits(Opaque<bindings::queue_limits>);

impl QueueLimits {
    #[inline]
    fn raw(&mut self) -> &mut bindings::queue_limits {
        // SAFETY: By the type invariant the limits are valid and ours to
        // change while we hold `&mut self`.
        unsafe { &mut *self.0.get() }
    }

    /// Sets the discard granularity.
    #[inline]
    pub fn set_discard_granularity(&mut self, n: u32) {
        self.raw().discard_granularity = n;
    }

    /// Sets the largest discard the hardware side accepts, in sectors.
    #[inline]
    pub fn set_max_hw_discard_sectors(&mut self, n: u32) {
        self.raw().max_hw_discard_sectors = n;
    }
}
