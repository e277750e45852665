// SPDX-License-Identifier: GPL-2.0

//! Reader/writer semaphores.
//!
//! A sleeping lock that many readers may hold at once, or one writer.
//!
//! C header: [`include/linux/rwsem.h`](srctree/include/linux/rwsem.h)

use super::LockClassKey;
use crate::{bindings, init::PinInit, pin_init, str::CStr, types::Opaque};
use core::{
    cell::UnsafeCell,
    marker::{PhantomData, PhantomPinned},
    ops::{Deref, DerefMut},
};
use macros::pin_data;

/// Creates a [`RwSemaphore`] initialiser with the given name and a newly
/// created lock class.
///
/// It uses the name if one is given, otherwise it generates one based on the
/// file name and line number.
#[macro_export]
macro_rules! new_rwsem {
    ($inner:expr $(, $name:literal)? $(,)?) => {
        $crate::sync::RwSemaphore::new(
            $inner, $crate::optional_name!($($name)?), $crate::static_lock_class!())
    };
}
pub use new_rwsem;

/// A reader/writer semaphore (`struct rw_semaphore`) protecting a `T`.
///
/// Readers get shared access through [`RwSemaphore::read`], a writer
/// exclusive access through [`RwSemaphore::write`]. Both may sleep, so
/// neither can be taken in atomic context.
///
/// # Examples
///
/// ```
/// use kernel::{new_rwsem, sync::RwSemaphore};
///
/// let sem = KBox::pin_init(new_rwsem!(0u32), GFP_KERNEL)?;
/// *sem.write() += 1;
/// assert_eq!(*sem.read(), 1);
/// # Ok::<(), Error>(())
/// ```
///
/// # Invariants
///
/// `sem` was initialised by `__init_rwsem()`; `data` is only reached
/// through a guard, which holds `sem` for reading (shared access) or for
/// writing (exclusive access).
#[pin_data]
pub struct RwSemaphore<T: ?Sized> {
    #[pin]
    sem: Opaque<bindings::rw_semaphore>,
    #[pin]
    _pin: PhantomPinned,
    data: UnsafeCell<T>,
}

// SAFETY: The semaphore can be moved to another thread with the data it
// protects when that data can.
unsafe impl<T: ?Sized + Send> Send for RwSemaphore<T> {}

// SAFETY: Writers get exclusive access (so `T` must be `Send`), readers get
// `&T` on several threads at once (so `T` must be `Sync`).
unsafe impl<T: ?Sized + Send + Sync> Sync for RwSemaphore<T> {}

impl<T> RwSemaphore<T> {
    /// Creates a new semaphore initialiser.
    #[inline]
    pub fn new(t: T, name: &'static CStr, key: &'static LockClassKey) -> impl PinInit<Self> {
        pin_init!(Self {
            data: UnsafeCell::new(t),
            _pin: PhantomPinned,
            // SAFETY: `slot` is valid while the closure is called and both
            // `name` and `key` have static lifetimes.
            sem <- Opaque::ffi_init(|slot| unsafe {
                bindings::__init_rwsem(slot, name.as_char_ptr(), key.as_ptr())
            }),
        })
    }
}

impl<T: ?Sized> RwSemaphore<T> {
    /// Takes the semaphore for reading, sleeping until no writer holds it
    /// (`down_read()`).
    #[inline]
    pub fn read(&self) -> ReadGuard<'_, T> {
        // SAFETY: By the type invariant the semaphore was initialised.
        unsafe { bindings::down_read(self.sem.get()) };
        // INVARIANT: The semaphore is now held for reading.
        ReadGuard {
            sem: self,
            _not_send: PhantomData,
        }
    }

    /// Takes the semaphore for writing, sleeping until nobody else holds it
    /// (`down_write()`).
    #[inline]
    pub fn write(&self) -> WriteGuard<'_, T> {
        // SAFETY: By the type invariant the semaphore was initialised.
        unsafe { bindings::down_write(self.sem.get()) };
        // INVARIANT: The semaphore is now held for writing.
        WriteGuard {
            sem: self,
            _not_send: PhantomData,
        }
    }
}

/// Shared access to the data of a [`RwSemaphore`]; released when dropped.
///
/// # Invariants
///
/// `sem` is held for reading by this guard. The guard is not `Send`: a
/// semaphore is released by the task that took it.
#[must_use = "the semaphore is released at once if the guard is not kept"]
pub struct ReadGuard<'a, T: ?Sized> {
    sem: &'a RwSemaphore<T>,
    _not_send: PhantomData<*mut ()>,
}

// SAFETY: A shared reference to the guard only gives `&T`.
unsafe impl<T: ?Sized + Sync> Sync for ReadGuard<'_, T> {}

impl<T: ?Sized> Deref for ReadGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: By the type invariant the semaphore is held for reading, so
        // no writer changes the data.
        unsafe { &*self.sem.data.get() }
    }
}

impl<T: ?Sized> Drop for ReadGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: By the type invariant this guard holds the semaphore for
        // reading.
        unsafe { bindings::up_read(self.sem.sem.get()) };
    }
}

/// Exclusive access to the data of a [`RwSemaphore`]; released when dropped.
///
/// # Invariants
///
/// `sem` is held for writing by this guard, which is not `Send`.
#[must_use = "the semaphore is released at once if the guard is not kept"]
pub struct WriteGuard<'a, T: ?Sized> {
    sem: &'a RwSemaphore<T>,
    _not_send: PhantomData<*mut ()>,
}

// SAFETY: A shared reference to the guard only gives `&T`.
unsafe impl<T: ?Sized + Sync> Sync for WriteGuard<'_, T> {}

impl<T: ?Sized> Deref for WriteGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: By the type invariant the semaphore is held for writing.
        unsafe { &*self.sem.data.get() }
    }
}

impl<T: ?Sized> DerefMut for WriteGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: By the type invariant the semaphore is held for writing, so
        // this guard's access is exclusive.
        unsafe { &mut *self.sem.data.get() }
    }
}

impl<T: ?Sized> Drop for WriteGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: By the type invariant this guard holds the semaphore for
        // writing.
        unsafe { bindings::up_write(self.sem.sem.get()) };
    }
}
