// SPDX-License-Identifier: GPL-2.0

//! Wait queues for I/O waits.
//!
//! A [`WaitQueue`] lets a task sleep uninterruptibly, counted as waiting for
//! I/O (`io_schedule()`), until a condition holds; others wake it when they
//! change what the condition reads. Unlike [`super::CondVar`], the
//! condition is not tied to one lock, and the waiter may release locks of its
//! own once it is queued, so no wake-up is lost between the release and the
//! sleep.
//!
//! C header: [`include/linux/wait.h`](srctree/include/linux/wait.h)

use super::LockClassKey;
use crate::{
    bindings,
    init::PinInit,
    pin_init,
    str::CStr,
    task::{TASK_NORMAL, TASK_UNINTERRUPTIBLE},
    types::Opaque,
};
use core::{marker::PhantomPinned, ptr};
use macros::pin_data;

/// Creates a [`WaitQueue`] initialiser with the given name and a newly
/// created lock class.
#[macro_export]
macro_rules! new_waitqueue {
    ($($name:literal)?) => {
        $crate::sync::WaitQueue::new(
            $crate::optional_name!($($name)?),
            $crate::static_lock_class!(),
        )
    };
}
pub use new_waitqueue;

/// A wait queue head (`struct wait_queue_head`).
///
/// # Examples
///
/// ```
/// use core::sync::atomic::{AtomicU32, Ordering};
/// use kernel::{new_waitqueue, sync::WaitQueue};
///
/// let wq = KBox::pin_init(new_waitqueue!(), GFP_KERNEL)?;
/// let busy = AtomicU32::new(0);
/// // Returns at once: the condition holds.
/// wq.wait_io(|| busy.load(Ordering::Acquire) == 0);
/// wq.wake_up_all();
/// # Ok::<(), Error>(())
/// ```
///
/// # Invariants
///
/// `head` was initialised by `__init_waitqueue_head()`.
#[pin_data]
pub struct WaitQueue {
    #[pin]
    head: Opaque<bindings::wait_queue_head>,
    #[pin]
    _pin: PhantomPinned,
}

// SAFETY: A wait queue head may be used from any thread; it has its own lock.
unsafe impl Send for WaitQueue {}
// SAFETY: As for `Send`.
unsafe impl Sync for WaitQueue {}

impl WaitQueue {
    /// Creates a new wait queue initialiser.
    #[inline]
    pub fn new(name: &'static CStr, key: &'static LockClassKey) -> impl PinInit<Self> {
        pin_init!(Self {
            _pin: PhantomPinned,
            // SAFETY: `slot` is valid while the closure is called and both
            // `name` and `key` have static lifetimes.
            head <- Opaque::ffi_init(|slot| unsafe {
                bindings::__init_waitqueue_head(slot, name.as_char_ptr(), key.as_ptr())
            }),
        })
    }

    /// Sleeps uninterruptibly, as an I/O wait, until `cond` returns true.
    ///
    /// `cond` is checked after the task is queued, so a wake-up that follows
    /// a change of what `cond` reads is never lost.
    #[inline]
    pub fn wait_io(&self, cond: impl FnMut() -> bool) {
        self.wait(false, cond, || ());
    }

    /// Like [`WaitQueue::wait_io`], but the task waits exclusively:
    /// [`WaitQueue::wake_up`] wakes one such waiter, not all of them, so a
    /// freed resource does not wake a crowd. A waiter woken for a resource
    /// it then does not use must pass the wake-up on with `wake_up`.
    ///
    /// The first time `cond` is false, `release` runs after the task is
    /// queued and before it sleeps: the place to drop locks that whoever
    /// makes `cond` true may need. If `cond` holds at once, `release` runs
    /// before this returns. Either way it runs exactly once. Returns
    /// whether the task slept.
    #[inline]
    pub fn wait_io_exclusive_then(
        &self,
        cond: impl FnMut() -> bool,
        release: impl FnOnce(),
    ) -> bool {
        self.wait(true, cond, release)
    }

    fn wait(
        &self,
        exclusive: bool,
        mut cond: impl FnMut() -> bool,
        release: impl FnOnce(),
    ) -> bool {
        if cond() {
            release();
            return false;
        }
        let mut release = Some(release);
        let entry = Opaque::<bindings::wait_queue_entry>::uninit();
        // SAFETY: `entry` is valid for writes and lives until `finish_wait`.
        unsafe { bindings::init_wait(entry.get()) };
        loop {
            if exclusive {
                // SAFETY: By the type invariant `head` is initialised; `entry`
                // was initialised above.
                unsafe {
                    bindings::prepare_to_wait_exclusive(
                        self.head.get(),
                        entry.get(),
                        TASK_UNINTERRUPTIBLE,
                    )
                };
            } else {
                // SAFETY: As above.
                unsafe {
                    bindings::prepare_to_wait(self.head.get(), entry.get(), TASK_UNINTERRUPTIBLE)
                };
            }
            if cond() {
                break;
            }
            if let Some(r) = release.take() {
                r();
            }
            // SAFETY: The task is queued in uninterruptible state; any
            // wake-up since `prepare_to_wait` makes this return at once.
            unsafe { bindings::io_schedule() };
        }
        // SAFETY: `entry` was queued on `head` by `prepare_to_wait`.
        unsafe { bindings::finish_wait(self.head.get(), entry.get()) };
        if let Some(r) = release.take() {
            r();
            return false;
        }
        true
    }

    /// Wakes one exclusive waiter and every other waiter (`wake_up()`).
    /// Safe in interrupt context.
    #[inline]
    pub fn wake_up(&self) {
        // SAFETY: By the type invariant `head` is initialised.
        unsafe { bindings::__wake_up(self.head.get(), TASK_NORMAL, 1, ptr::null_mut()) };
    }

    /// Wakes every waiter (`wake_up_all()`). Safe in interrupt context.
    #[inline]
    pub fn wake_up_all(&self) {
        // SAFETY: By the type invariant `head` is initialised.
        unsafe { bindings::__wake_up(self.head.get(), TASK_NORMAL, 0, ptr::null_mut()) };
    }
}
