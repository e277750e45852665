// SPDX-License-Identifier: GPL-2.0

//! The registration of a target type with device-mapper.
//!
//! C header: [`include/linux/device-mapper.h`](srctree/include/linux/device-mapper.h)
//! (`dm_register_target()`, `dm_unregister_target()`)

use super::{operations::Callbacks, TargetOperations};
use crate::{
    bindings,
    error::{to_result, Error},
    init::pin_init_from_closure,
    prelude::*,
    str::CStr,
    types::Opaque,
    ThisModule,
};
use core::marker::PhantomData;

/// The registration of a target type (`dm_register_target()`), undone when
/// dropped, with the data its instances share.
///
/// # Examples
///
/// ```ignore
/// use kernel::{c_str, device_mapper::Registration, prelude::*};
///
/// struct MyModule {
///     _target: Pin<KBox<Registration<Passthrough>>>,
/// }
///
/// impl kernel::Module for MyModule {
///     fn init(module: &'static ThisModule) -> Result<Self> {
///         let target = KBox::pin_init(
///             Registration::new(c_str!("passthrough"), [1, 0, 0], module, ()),
///             GFP_KERNEL,
///         )?;
///         Ok(MyModule { _target: target })
///     }
/// }
/// ```
///
/// # Invariants
///
/// `tt` is registered with device-mapper from initialisation to drop.
#[pin_data(PinnedDrop)]
pub struct Registration<T: TargetOperations> {
    #[pin]
    pub(super) tt: Opaque<bindings::target_type>,
    pub(super) shared: T::Shared,
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
