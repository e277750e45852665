// SPDX-License-Identifier: GPL-2.0

//! Sleeping for a while.
//!
//! C header: [`include/linux/delay.h`](srctree/include/linux/delay.h)

/// Sleeps for at least `ms` milliseconds, uninterruptibly (`msleep()`).
///
/// Must not be called in atomic context.
pub fn msleep(ms: u32) {
    // SAFETY: `msleep` may be called from any sleepable context, which the
    // caller is in (documented above; sleeping in atomic context is caught
    // by `might_sleep()` debugging).
    unsafe { crate::bindings::msleep(ms) };
}
