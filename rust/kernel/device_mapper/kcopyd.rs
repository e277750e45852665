// SPDX-License-Identifier: GPL-2.0

//! kcopyd: asynchronous copies and zeroing between block devices, run by a
//! kernel thread on behalf of a client.
//!
//! Each job carries a context that the job owns until its completion gets
//! it back, so a completion can neither be lost nor run twice.
//!
//! C header: [`include/linux/dm-kcopyd.h`](srctree/include/linux/dm-kcopyd.h)

use crate::{
    bindings,
    error::{code::*, from_err_ptr, Result},
    ffi::{c_int, c_ulong, c_void},
    module_param::UintParam,
    types::{ForeignOwnable, Opaque},
};
use core::{
    marker::PhantomData,
    mem::{ManuallyDrop, MaybeUninit},
    ptr::NonNull,
};

/// The regions kcopyd copies from and to are dm-io's.
pub use super::dm_io::{IoRegion, Region, Span};

/// The most destinations one copy may have (`DM_KCOPYD_MAX_REGIONS`).
pub const MAX_REGIONS: usize = bindings::DM_KCOPYD_MAX_REGIONS as usize;

/// What runs when a job ends, and the context it gets back.
///
/// Implemented by the context's pointee type; `Ptr` is the owning pointer
/// the job holds ([`crate::alloc::KBox`], [`crate::sync::Arc`],
/// [`crate::mempool::PoolBox`], ...).
///
/// # Examples
///
/// ```ignore
/// use kernel::{device_mapper::kcopyd, prelude::*, sync::Arc};
///
/// struct CopyJob {
///     chunk: u64,
///     state: Arc<State>,
/// }
///
/// impl kcopyd::Completion for CopyJob {
///     type Ptr = KBox<CopyJob>;
///
///     fn complete(job: KBox<CopyJob>, read_err: bool, write_err: u64) {
///         job.state.copy_done(job.chunk, !read_err && write_err == 0);
///     }
/// }
/// ```
pub trait Completion {
    /// The owning pointer to the context.
    type Ptr: ForeignOwnable + Send;

    /// Called in the kcopyd thread when the job ends. `read_err` tells
    /// whether reading the source failed, `write_err` has one bit set per
    /// destination that failed. It may sleep briefly but must not wait for
    /// other jobs of the same client.
    fn complete(ctx: Self::Ptr, read_err: bool, write_err: u64);
}

/// # Safety
///
/// Called by kcopyd only, once per job, with the context `into_foreign`
/// gave it.
unsafe extern "C" fn notify<C: Completion>(read_err: c_int, write_err: c_ulong, ctx: *mut c_void) {
    // SAFETY: `ctx` came from `C::Ptr::into_foreign` when the job was
    // started and kcopyd hands it back exactly once.
    let ctx = unsafe { C::Ptr::from_foreign(ctx) };
    C::complete(ctx, read_err != 0, write_err as u64);
}

/// The destinations of a job as kcopyd takes them: room for
/// [`MAX_REGIONS`], of which kcopyd reads as many as it is told.
type Destinations = [MaybeUninit<bindings::dm_io_region>; MAX_REGIONS];

/// Room for the destinations of a job, none written yet.
#[inline]
fn no_destinations() -> Destinations {
    // SAFETY: An array of `MaybeUninit` needs no initialisation.
    unsafe { MaybeUninit::uninit().assume_init() }
}

/// Writes the destinations `to` at the start of `dests`; returns how many,
/// 1 to [`MAX_REGIONS`], or `None` for none or too many.
///
/// In place, and only those given: a copy runs per chunk, and a zeroed
/// array returned by value cost a `memset()` and a `memcpy()` each time.
#[inline]
fn destinations(
    to: impl IntoIterator<Item = impl IoRegion>,
    dests: &mut Destinations,
) -> Option<u32> {
    let mut n = 0;
    for s in to {
        dests.get_mut(n)?.write(s.io_region());
        n += 1;
    }
    (n > 0).then_some(n as u32)
}

/// A kcopyd client (`struct dm_kcopyd_client`): its own thread pool, page
/// reserve and throttle.
///
/// Dropping the client waits until every job it started has completed
/// (`dm_kcopyd_client_destroy()`); so a completion must never drop the last
/// owner of its client. The devices of the regions must stay open until
/// then, and the [`Region`]s given to a job are not kept by it: keep the
/// client in the same structure as the devices, declared before them so it
/// is dropped first.
///
/// # Examples
///
/// ```ignore
/// use kernel::{
///     device_mapper::{kcopyd, Device},
///     prelude::*,
/// };
///
/// static THROTTLE: kcopyd::KcopydThrottle = kcopyd::KcopydThrottle::new();
///
/// struct Mirror {
///     /// Dropped first: waits for the copies, which use the devices.
///     kc: kcopyd::Client,
///     from: Device,
///     to: Device,
/// }
///
/// let m = Mirror {
///     kc: kcopyd::Client::new(&THROTTLE)?,
///     from,
///     to,
/// };
/// // Copies sectors 0 to 7; `CopyJob::complete` (see `Completion`) runs
/// // when done.
/// let job = KBox::new(CopyJob { chunk: 0, state }, GFP_NOIO)?;
/// let _ = m.kc.copy::<CopyJob>(&m.from.region(0, 8), &[m.to.region(0, 8)], job);
/// ```
///
/// # Invariants
///
/// `kc` was returned by `dm_kcopyd_client_create()` and is destroyed only in
/// `drop`.
pub struct Client {
    kc: NonNull<bindings::dm_kcopyd_client>,
}

// SAFETY: A kcopyd client may be used from any thread; it has its own locks.
unsafe impl Send for Client {}
// SAFETY: As for `Send`.
unsafe impl Sync for Client {}

impl Client {
    /// Creates a client whose copies are throttled by `throttle`.
    #[inline]
    pub fn new(throttle: &'static KcopydThrottle) -> Result<Self> {
        // SAFETY: `throttle` has the layout of `struct dm_kcopyd_throttle`
        // and lives forever.
        let kc = from_err_ptr(unsafe { bindings::dm_kcopyd_client_create(throttle.as_raw()) })?;
        // INVARIANT: The client was just created.
        Ok(Self {
            kc: NonNull::new(kc).ok_or(ENOMEM)?,
        })
    }

    /// Copies `from` to every region of `to` (at most [`MAX_REGIONS`]),
    /// reading `from` once; `C::complete` gets `ctx` back when the copy
    /// ends, with bit `i` of its `write_err` set if writing the `i`-th
    /// destination failed.
    ///
    /// May sleep for memory (`GFP_NOIO`), never fails for want of it. Gives
    /// `ctx` back for no or too many destinations.
    pub fn copy<C: Completion>(
        &self,
        from: impl IoRegion,
        to: impl IntoIterator<Item = impl IoRegion>,
        ctx: C::Ptr,
    ) -> core::result::Result<(), C::Ptr> {
        let mut dests = no_destinations();
        let Some(n) = destinations(to, &mut dests) else {
            return Err(ctx);
        };
        let mut src = from.io_region();
        // The first `n` of `dests` are written; kcopyd reads no more.
        // SAFETY: By the type invariant `kc` is live; the regions are valid
        // (kcopyd copies them before returning); the context is given to
        // kcopyd, which passes it to `notify::<C>` once.
        unsafe {
            bindings::dm_kcopyd_copy(
                self.kc.as_ptr(),
                &mut src,
                n,
                dests.as_mut_ptr().cast(),
                0,
                Some(notify::<C>),
                ctx.into_foreign().cast_mut(),
            )
        };
        Ok(())
    }

    /// Writes zeroes to every region of `to` (at most [`MAX_REGIONS`]);
    /// `C::complete` gets `ctx` back when done.
    pub fn zero<C: Completion>(
        &self,
        to: impl IntoIterator<Item = impl IoRegion>,
        ctx: C::Ptr,
    ) -> core::result::Result<(), C::Ptr> {
        let mut dests = no_destinations();
        let Some(n) = destinations(to, &mut dests) else {
            return Err(ctx);
        };
        // SAFETY: As for `copy`.
        unsafe {
            bindings::dm_kcopyd_zero(
                self.kc.as_ptr(),
                n,
                dests.as_mut_ptr().cast(),
                0,
                Some(notify::<C>),
                ctx.into_foreign().cast_mut(),
            )
        };
        Ok(())
    }

    /// Prepares a completion to be run later in the kcopyd thread, from any
    /// context, interrupts included (`dm_kcopyd_prepare_callback()`). May
    /// sleep for memory (`GFP_NOIO`) but does not fail.
    pub fn prepare_callback<C: Completion>(&self, ctx: C::Ptr) -> PreparedCallback<C> {
        let ctx = ctx.into_foreign();
        // SAFETY: By the type invariant `kc` is live; the context is given
        // to the job, which passes it to `notify::<C>` once it is run.
        let job = unsafe {
            bindings::dm_kcopyd_prepare_callback(
                self.kc.as_ptr(),
                Some(notify::<C>),
                ctx.cast_mut(),
            )
        };
        // SAFETY: kcopyd takes the job from its mempool with `GFP_NOIO`,
        // which sleeps rather than fail, so `job` is never null.
        let job = unsafe { NonNull::new_unchecked(job) };
        // INVARIANT: `job` owns `ctx` until it is run.
        PreparedCallback {
            job,
            ctx,
            _c: PhantomData,
        }
    }
}

impl Drop for Client {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: By the type invariant `kc` is live; this waits for its jobs.
        unsafe { bindings::dm_kcopyd_client_destroy(self.kc.as_ptr()) };
    }
}

/// A completion prepared with [`Client::prepare_callback`], to be run once
/// with [`PreparedCallback::run`]. Dropping it runs it with a write error,
/// so the context always comes back.
///
/// # Examples
///
/// A write that covers a whole chunk is its own copy: its completion runs
/// when the write ends, in kcopyd's thread as for a real copy.
///
/// ```ignore
/// use kernel::device_mapper::{kcopyd::PreparedCallback, EndIoBio, EndIoResult};
///
/// // In `map`: prepared while allocating may still sleep.
/// *data = PerBio::FullWrite(self.kc.prepare_callback::<CopyJob>(job));
///
/// // In `end_io`, maybe in interrupt context:
/// if let PerBio::FullWrite(cb) = data {
///     cb.run(false, u64::from(bio.is_error()));
/// }
/// EndIoResult::Done(bio)
/// ```
///
/// # Invariants
///
/// `job` is a prepared kcopyd callback that owns the context `ctx` and has
/// not been run.
pub struct PreparedCallback<C: Completion> {
    /// Never null, so that an `Option` of it takes no more room.
    job: NonNull<c_void>,
    ctx: *const c_void,
    _c: PhantomData<C::Ptr>,
}

// SAFETY: A prepared callback may be run from any context; the context it
// owns is `Send`.
unsafe impl<C: Completion> Send for PreparedCallback<C> {}

impl<C: Completion> PreparedCallback<C> {
    /// The context the completion will get.
    #[inline]
    pub fn context(&self) -> <C::Ptr as ForeignOwnable>::Borrowed<'_> {
        // SAFETY: By the type invariant the context is owned by the job,
        // which has not run, so it is alive until `self` is consumed.
        unsafe { C::Ptr::borrow(self.ctx) }
    }

    /// Runs the completion in the kcopyd thread with these errors
    /// (`dm_kcopyd_do_callback()`). Safe in interrupt context.
    #[inline]
    pub fn run(self, read_err: bool, write_err: u64) {
        let this = ManuallyDrop::new(self);
        // SAFETY: By the type invariant the job was prepared and not run; it
        // is run once, here, as `self` is consumed.
        unsafe {
            bindings::dm_kcopyd_do_callback(
                this.job.as_ptr(),
                c_int::from(read_err),
                write_err as c_ulong,
            )
        };
    }
}

impl<C: Completion> Drop for PreparedCallback<C> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: As for `run`: the job has not run and `self` goes away.
        unsafe { bindings::dm_kcopyd_do_callback(self.job.as_ptr(), 0, 1) };
    }
}

/// The throttle of kcopyd clients (`struct dm_kcopyd_throttle`): the share
/// of time, in percent, their copies may keep the disks busy.
///
/// # Examples
///
/// A module keeps one in a static and exposes its percentage as a module
/// parameter, as C's `DECLARE_DM_KCOPYD_THROTTLE_WITH_MODULE_PARM()`:
///
/// ```ignore
/// use kernel::device_mapper::{kcopyd, KcopydThrottle};
///
/// static THROTTLE: KcopydThrottle = KcopydThrottle::new();
/// kernel::module_param_uint!(@storage THROTTLE.percentage(), "copy_throttle", 0o644, "...");
///
/// let kc = kcopyd::Client::new(&THROTTLE)?;
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
    #[inline]
    pub const fn new() -> Self {
        Self {
            throttle: UintParam::new(100),
            state: Opaque::new([0; 4]),
        }
    }

    /// The percentage, as a module parameter's storage.
    #[inline]
    pub const fn percentage(&self) -> &UintParam {
        &self.throttle
    }

    /// The raw pointer kcopyd clients are created with.
    #[inline]
    fn as_raw(&self) -> *mut bindings::dm_kcopyd_throttle {
        (self as *const Self).cast_mut().cast()
    }
}

impl Default for KcopydThrottle {
    #[inline]
    fn default() -> Self {
        Self::new()
    }
}
