// SPDX-License-Identifier: GPL-2.0

//! Memory pools.
//!
//! A pool keeps a reserve of preallocated elements, so that allocations in
//! the I/O path (`GFP_NOIO`) make forward progress under memory pressure:
//! when the allocator has nothing, the caller sleeps until an element in use
//! comes back to the pool, instead of failing.
//!
//! C header: [`include/linux/mempool.h`](srctree/include/linux/mempool.h)

use crate::{
    alloc::Flags,
    bindings,
    error::{code::*, Result},
    ffi::c_void,
    sync::Arc,
    types::ForeignOwnable,
};
use core::{
    marker::PhantomData,
    mem::ManuallyDrop,
    ops::{Deref, DerefMut},
    ptr::NonNull,
};

/// The layout of one element: the pool it returns to, and the value.
struct Element<T> {
    pool: ManuallyDrop<Arc<Mempool<T>>>,
    value: T,
}

/// A pool of `T`-sized elements backed by `kmalloc` with a reserve of
/// `min_nr` elements (`mempool_create_kmalloc_pool()`).
///
/// # Examples
///
/// ```
/// use kernel::mempool::Mempool;
///
/// let pool = Mempool::<u64>::new(4)?;
/// let a = Mempool::alloc(&pool, 7, GFP_NOIO)?;
/// assert_eq!(*a, 7);
/// # Ok::<(), Error>(())
/// ```
///
/// # Invariants
///
/// `pool` was created by `mempool_create()` for elements of
/// `size_of::<Element<T>>()` bytes and is destroyed only when dropped, which
/// cannot happen while a [`PoolBox`] holds a reference to it.
pub struct Mempool<T> {
    pool: NonNull<bindings::mempool_t>,
    _t: PhantomData<T>,
}

// SAFETY: A mempool may be used from any thread; it has its own lock. The
// values are only reached through `PoolBox`, which carries `T`'s own bounds.
unsafe impl<T> Send for Mempool<T> {}
// SAFETY: As for `Send`.
unsafe impl<T> Sync for Mempool<T> {}

impl<T> Mempool<T> {
    const SIZE: usize = core::mem::size_of::<Element<T>>();

    /// Creates a pool with a reserve of `min_nr` elements.
    pub fn new(min_nr: u32) -> Result<Arc<Self>> {
        // kmalloc aligns its memory to at least 8 bytes.
        crate::build_assert!(core::mem::align_of::<Element<T>>() <= 8);
        let min_nr = i32::try_from(min_nr).map_err(|_| EINVAL)?;
        // SAFETY: `mempool_kmalloc` and `mempool_kfree` are the kmalloc pool
        // functions, which take the element size as their pool data.
        let raw = unsafe {
            bindings::mempool_create_node_noprof(
                min_nr,
                Some(bindings::mempool_kmalloc),
                Some(bindings::mempool_kfree),
                Self::SIZE as *mut c_void,
                bindings::GFP_KERNEL,
                bindings::NUMA_NO_NODE,
            )
        };
        let pool = NonNull::new(raw).ok_or(ENOMEM)?;
        // INVARIANT: The pool was just created for elements of `SIZE` bytes.
        Ok(Arc::new(
            Self {
                pool,
                _t: PhantomData,
            },
            crate::alloc::flags::GFP_KERNEL,
        )?)
    }

    /// Allocates an element for `value` (`mempool_alloc()`).
    ///
    /// With flags that may sleep (`GFP_NOIO`, `GFP_KERNEL`) this waits for an
    /// element to come back to the pool rather than fail; with `GFP_ATOMIC`
    /// or `GFP_NOWAIT` it may fail with `ENOMEM`.
    #[inline]
    pub fn alloc(this: &Arc<Self>, value: T, flags: Flags) -> Result<PoolBox<T>> {
        // SAFETY: By the type invariant `pool` is a live pool.
        let raw = unsafe { bindings::mempool_alloc_noprof(this.pool.as_ptr(), flags.as_raw()) };
        let ptr = NonNull::new(raw.cast::<Element<T>>()).ok_or(ENOMEM)?;
        // SAFETY: The pool hands out elements of `size_of::<Element<T>>()`
        // bytes, aligned by kmalloc as checked in `new`, for us to fill.
        unsafe {
            ptr.as_ptr().write(Element {
                pool: ManuallyDrop::new(this.clone()),
                value,
            })
        };
        // INVARIANT: `ptr` is an initialised element of the pool it refers to.
        Ok(PoolBox { ptr })
    }
}

impl<T> Drop for Mempool<T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: By the type invariant the pool is live, and since every
        // `PoolBox` holds a reference to it, none of its elements is in use.
        unsafe { bindings::mempool_destroy(self.pool.as_ptr()) };
    }
}

/// An owned `T` in an element of a [`Mempool`], given back to the pool when
/// dropped (`mempool_free()`).
///
/// # Invariants
///
/// `ptr` is an initialised element allocated from `(*ptr).pool`, owned by
/// this box.
pub struct PoolBox<T> {
    ptr: NonNull<Element<T>>,
}

// SAFETY: The box owns its `T`, so it may move to another thread when `T`
// can; giving the element back to the pool works from any thread.
unsafe impl<T: Send> Send for PoolBox<T> {}
// SAFETY: `&PoolBox<T>` only gives `&T`.
unsafe impl<T: Sync> Sync for PoolBox<T> {}

impl<T> Deref for PoolBox<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: By the type invariant the element is initialised and ours.
        unsafe { &(*self.ptr.as_ptr()).value }
    }
}

impl<T> DerefMut for PoolBox<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: By the type invariant the element is initialised and ours.
        unsafe { &mut (*self.ptr.as_ptr()).value }
    }
}

impl<T> Drop for PoolBox<T> {
    #[inline]
    fn drop(&mut self) {
        let elem = self.ptr.as_ptr();
        // SAFETY: By the type invariant the element is initialised and ours;
        // after this it is not used again.
        let pool = unsafe {
            core::ptr::drop_in_place(&mut (*elem).value);
            ManuallyDrop::take(&mut (*elem).pool)
        };
        // SAFETY: The element came from `pool`, which our reference keeps
        // alive until after this call.
        unsafe { bindings::mempool_free(elem.cast(), pool.pool.as_ptr()) };
        drop(pool);
    }
}

// `into_foreign` gives up ownership of the element as a pointer that only
// `from_foreign` turns back into a box, and `borrow` only into a shared
// reference.
impl<T: 'static> ForeignOwnable for PoolBox<T> {
    type Borrowed<'a> = &'a T;

    #[inline]
    fn into_foreign(self) -> *const c_void {
        let this = ManuallyDrop::new(self);
        this.ptr.as_ptr() as *const c_void
    }

    #[inline]
    unsafe fn borrow<'a>(ptr: *const c_void) -> &'a T {
        // SAFETY: The caller passes a pointer from `into_foreign` that has
        // not been reclaimed, so the element is initialised and alive.
        unsafe { &(*ptr.cast::<Element<T>>()).value }
    }

    #[inline]
    unsafe fn from_foreign(ptr: *const c_void) -> Self {
        // INVARIANT: The caller passes a pointer from `into_foreign`, whose
        // ownership comes back to us.
        PoolBox {
            // SAFETY: `into_foreign` never returns null.
            ptr: unsafe { NonNull::new_unchecked(ptr.cast_mut().cast()) },
        }
    }
}
