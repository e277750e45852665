// SPDX-License-Identifier: GPL-2.0

//! The operations a target type implements, and the C callbacks of its
//! `struct target_type` that call them.
//!
//! C header: [`include/linux/device-mapper.h`](srctree/include/linux/device-mapper.h)
//! (`struct target_type`, `dm_ctr_fn` ... `dm_io_hints_fn`, `dm_per_bio_data()`)

use super::{
    status, Args, CtrError, EndIoBio, EndIoResult, IterateDevices, MapBio, MapResult, QueueLimits,
    Registration, StatusType, StatusWriter, TableEvent, Target,
};
use crate::{
    bindings,
    bio::OwnedBio,
    error::{code::*, Result, VTABLE_DEFAULT_ERROR},
    ffi::{c_char, c_int, c_uint, c_void},
    prelude::*,
    sync::Arc,
    types::Opaque,
};
use core::marker::PhantomData;

/// The operations of a device-mapper target type.
///
/// The implementing type is one target instance: built by `ctr`, shared by
/// every CPU that maps bios, and dropped by `dtr`. Register the type with a
/// [`Registration`].
///
/// # Examples
///
/// A `linear`-like target that sends every bio to one device, unchanged:
///
/// ```ignore
/// use core::fmt::Write;
/// use kernel::{
///     c_str,
///     device_mapper::{
///         Args, CtrError, Device, IterateDevices, MapBio, MapResult, StatusType,
///         StatusWriter, Target, TargetOperations,
///     },
///     prelude::*,
/// };
///
/// struct Passthrough {
///     dev: Device,
/// }
///
/// #[vtable]
/// impl TargetOperations for Passthrough {
///     type Shared = ();
///     type PerBio = ();
///
///     fn ctr(target: &mut Target, args: &Args<'_>, _: &()) -> Result<Pin<KBox<Self>>, CtrError> {
///         let path = match (args.len(), args.get(0)) {
///             (1, Some(path)) => path,
///             _ => return Err(CtrError::inval(c_str!("requires one argument"))),
///         };
///         let dev = target
///             .get_device(path)
///             .map_err(|e| CtrError::new(e, c_str!("Cannot get target device")))?;
///         target.set_num_flush_bios(1);
///         KBox::pin(Passthrough { dev }, GFP_KERNEL)
///             .map_err(|_| CtrError::new(ENOMEM, c_str!("Cannot allocate context")))
///     }
///
///     fn map(&self, _target: &Target, mut bio: MapBio, _data: &mut ()) -> MapResult {
///         self.dev.remap(&mut bio);
///         MapResult::Remapped(bio)
///     }
///
///     fn status(&self, _target: &Target, kind: StatusType, out: &mut StatusWriter<'_>) {
///         if kind == StatusType::Table {
///             let _ = write!(out, "{}", self.dev.name());
///         }
///     }
///
///     fn iterate_devices(&self, target: &Target, callout: &mut IterateDevices) -> i32 {
///         callout.call(&self.dev, 0, target.len())
///     }
/// }
/// ```
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

/// What `ti->private` holds for a constructed target: the instance, and
/// the table event handle it asked for, which `dtr` disarms.
struct Instance<T> {
    private: Pin<KBox<T>>,
    event: Option<Arc<TableEvent>>,
}

/// The C callbacks of target type `T`, set in its `struct target_type` by
/// [`Registration`].
pub(super) struct Callbacks<T>(PhantomData<T>);

impl<T: TargetOperations> Callbacks<T> {
    /// The per-bio data size we ask for: `PerBio`, rounded up so that
    /// device-mapper places it 8-byte aligned.
    const PER_BIO_SIZE: usize = (core::mem::size_of::<T::PerBio>() + 7) & !7;

    /// The target and the instance `ctr_callback` built for it: what every
    /// callback but the constructor and the destructor works on.
    ///
    /// # Safety
    ///
    /// `ti` must be a target built by `ctr_callback`, valid for `'a`, whose
    /// `dtr_callback` has not run.
    unsafe fn instance<'a>(ti: *mut bindings::dm_target) -> (&'a Target, &'a T) {
        // SAFETY: `ti` is valid for `'a` (caller); its `private` holds the
        // `Instance<T>` leaked by `ctr_callback`, reclaimed only by
        // `dtr_callback`, after every other callback.
        unsafe {
            let inst = &*(*ti).private.cast::<Instance<T>>();
            (Target::from_raw(ti), &*inst.private)
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
    pub(super) unsafe extern "C" fn ctr_callback(
        ti: *mut bindings::dm_target,
        argc: c_uint,
        argv: *mut *mut c_char,
    ) -> c_int {
        crate::build_assert!(core::mem::align_of::<T::PerBio>() <= 8);
        // SAFETY: `ti->type` is in the `Registration<T>`, which outlives its
        // instances; `argv` holds `argc` strings valid until we return; `ti`
        // is ours while the constructor runs.
        let (reg, args, target) = unsafe {
            (
                &*crate::container_of!(
                    (*ti).type_.cast::<Opaque<bindings::target_type>>(),
                    Registration<T>,
                    tt
                ),
                Args::from_raw(argc, argv),
                Target::from_raw_mut(ti),
            )
        };
        // The box for the instance first, so that nothing can fail between
        // the constructor's success and `private` holding it.
        let slot = KBox::<Instance<T>>::new_uninit(GFP_KERNEL);
        let r = match slot {
            Ok(slot) => T::ctr(target, &args, &reg.shared).map(|p| (slot, p)),
            Err(_) => Err(CtrError::new(
                ENOMEM,
                crate::c_str!("Cannot allocate target instance"),
            )),
        };
        // SAFETY: The constructor has returned (or never ran).
        let event = unsafe { Target::take_stashed_event(ti) };
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
    pub(super) unsafe extern "C" fn dtr_callback(ti: *mut bindings::dm_target) {
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
    pub(super) unsafe extern "C" fn map_callback(
        ti: *mut bindings::dm_target,
        bio: *mut bindings::bio,
    ) -> c_int {
        // SAFETY: device-mapper passes a constructed target, and a bio clone
        // that the target owns until it returns or completes it, with our
        // per-bio data, which nobody else uses; it starts as the default.
        let (target, this, bio, data) = unsafe {
            let data = Self::per_bio(bio);
            data.write(T::PerBio::default());
            let (target, this) = Self::instance(ti);
            (
                target,
                this,
                MapBio::new(OwnedBio::from_raw(bio)),
                &mut *data,
            )
        };
        let (r, kept) = T::map(this, target, bio, data).into_raw();
        if let Some(raw) = kept {
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
    pub(super) unsafe extern "C" fn end_io_callback(
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
        let (target, this, bio) = unsafe {
            let (target, this) = Self::instance(ti);
            let bio = EndIoBio::new(OwnedBio::from_raw(bio), *error != 0);
            (target, this, bio)
        };
        T::end_io(this, target, bio, data).into_raw() as c_int
    }

    /// # Safety
    ///
    /// Called by device-mapper only, for a constructed target and a `result`
    /// buffer of `maxlen` bytes.
    pub(super) unsafe extern "C" fn status_callback(
        ti: *mut bindings::dm_target,
        kind: bindings::status_type_t,
        _flags: c_uint,
        result: *mut c_char,
        maxlen: c_uint,
    ) {
        // SAFETY: device-mapper passes a constructed target, and a buffer
        // of `maxlen` bytes at `result` that is ours for the call.
        let (target, this, buf) = unsafe {
            let (target, this) = Self::instance(ti);
            (target, this, status::raw_buffer(result, maxlen))
        };
        let Some(buf) = buf else {
            return;
        };
        let mut out = StatusWriter::new(buf);
        T::status(this, target, StatusType::from_raw(kind), &mut out);
    }

    /// # Safety
    ///
    /// Called by device-mapper only, for a constructed target, `argc` valid
    /// argument strings and a `result` buffer of `maxlen` bytes.
    pub(super) unsafe extern "C" fn message_callback(
        ti: *mut bindings::dm_target,
        argc: c_uint,
        argv: *mut *mut c_char,
        result: *mut c_char,
        maxlen: c_uint,
    ) -> c_int {
        // SAFETY: device-mapper passes a constructed target, `argc` valid
        // argument strings and a buffer of `maxlen` bytes at `result`, all
        // ours for the call.
        let (target, this, args, buf) = unsafe {
            let (target, this) = Self::instance(ti);
            let args = Args::from_raw(argc, argv);
            (target, this, args, status::raw_buffer(result, maxlen))
        };
        let mut empty = [0u8; 1];
        let mut out = StatusWriter::new(buf.unwrap_or(&mut empty));
        match T::message(this, target, &args, &mut out) {
            Ok(()) if !out.is_empty() => 1,
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    ///
    /// Called by device-mapper only, for a constructed target, with its own
    /// callout and data.
    pub(super) unsafe extern "C" fn iterate_devices_callback(
        ti: *mut bindings::dm_target,
        callout: bindings::iterate_devices_callout_fn,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: `ti` is a constructed target; the callout and its data
        // are device-mapper's for this call, which `it` does not outlive.
        let (target, this, mut it) = unsafe {
            let (target, this) = Self::instance(ti);
            (target, this, IterateDevices::new(ti, callout, data))
        };
        T::iterate_devices(this, target, &mut it)
    }

    /// # Safety
    ///
    /// Called by device-mapper only, for a constructed target and limits
    /// that are ours for the call.
    pub(super) unsafe extern "C" fn io_hints_callback(
        ti: *mut bindings::dm_target,
        limits: *mut bindings::queue_limits,
    ) {
        // SAFETY: `ti` is a constructed target; `limits` is valid and ours
        // for the call, and `QueueLimits` is a transparent wrapper.
        let (target, this, limits) = unsafe {
            let (target, this) = Self::instance(ti);
            (target, this, &mut *limits.cast::<QueueLimits>())
        };
        T::io_hints(this, target, limits);
    }

    /// # Safety
    ///
    /// Called by device-mapper only, for a constructed target.
    pub(super) unsafe extern "C" fn presuspend_callback(ti: *mut bindings::dm_target) {
        // SAFETY: `ti` is a constructed target.
        let (target, this) = unsafe { Self::instance(ti) };
        T::presuspend(this, target);
    }

    /// # Safety
    ///
    /// Called by device-mapper only, for a constructed target.
    pub(super) unsafe extern "C" fn postsuspend_callback(ti: *mut bindings::dm_target) {
        // SAFETY: `ti` is a constructed target.
        let (target, this) = unsafe { Self::instance(ti) };
        T::postsuspend(this, target);
    }

    /// # Safety
    ///
    /// Called by device-mapper only, for a constructed target.
    pub(super) unsafe extern "C" fn preresume_callback(ti: *mut bindings::dm_target) -> c_int {
        // SAFETY: `ti` is a constructed target.
        let (target, this) = unsafe { Self::instance(ti) };
        match T::preresume(this, target) {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    ///
    /// Called by device-mapper only, for a constructed target.
    pub(super) unsafe extern "C" fn resume_callback(ti: *mut bindings::dm_target) {
        // SAFETY: `ti` is a constructed target.
        let (target, this) = unsafe { Self::instance(ti) };
        T::resume(this, target);
    }
}
