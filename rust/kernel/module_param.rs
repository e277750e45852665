// SPDX-License-Identifier: GPL-2.0

//! Module parameters that can be changed at runtime through sysfs.
//!
//! The `module!` macro of this kernel has no parameters. This gives loadable
//! modules C's `module_param_named(name, var, uint, perm)`: an entry in the
//! `__param` section that the module loader turns into
//! `/sys/module/<module>/parameters/<name>`, parsed and printed by the kernel's
//! own `param_ops_uint`, plus the `parm=` and `parmtype=` strings `modinfo`
//! shows.
//!
//! C header: [`include/linux/moduleparam.h`](srctree/include/linux/moduleparam.h)

use crate::{bindings, str::CStr};
use core::sync::atomic::{AtomicU32, Ordering};

/// The storage of an unsigned integer module parameter.
///
/// The kernel writes it through `param_ops_uint` when the module is loaded with
/// `name=value` and when root writes the sysfs file; Rust code reads it with
/// [`UintParam::get`] and sees the new value at once.
///
/// # Invariants
///
/// The kernel only ever stores a whole, aligned `unsigned int` to it
/// (`param_set_uint()`, serialised by `kernel_param_lock()`), and Rust code
/// only reads it, atomically.
#[repr(transparent)]
pub struct UintParam(AtomicU32);

impl UintParam {
    /// Creates the storage with its default value.
    #[inline]
    pub const fn new(default: u32) -> Self {
        Self(AtomicU32::new(default))
    }

    /// Returns the current value.
    #[inline]
    pub fn get(&self) -> u32 {
        // The kernel's store is a plain aligned 32-bit store, single-copy
        // atomic on every architecture Linux runs on; `Relaxed` is C's
        // `READ_ONCE()`.
        self.0.load(Ordering::Relaxed)
    }

    /// Returns the pointer `param_ops_uint` stores through.
    #[inline]
    pub const fn as_ptr(&self) -> *mut u32 {
        self.0.as_ptr()
    }
}

/// A `struct kernel_param` placed in the `__param` section.
///
/// Only built by [`module_param_uint!`](crate::module_param_uint).
///
/// # Invariants
///
/// `name` points to a static NUL-terminated string, `mod_` to the module's own
/// `struct module`, `ops` to `param_ops_uint` and `arg` to a static
/// [`UintParam`]; none of them is ever written after the module is linked.
#[repr(transparent)]
pub struct KernelParam(bindings::kernel_param);

// SAFETY: By the type invariant every pointer in it refers to static data that
// is valid for the module's lifetime, and Rust never writes the structure, so
// sharing it between threads is sound.
unsafe impl Sync for KernelParam {}

impl KernelParam {
    /// Describes an `unsigned int` parameter.
    ///
    /// # Safety
    ///
    /// `module` must be the `struct module` of the module this value is linked
    /// into (`THIS_MODULE`), and the value must be placed in that module's
    /// `__param` section.
    pub const unsafe fn uint(
        name: &'static CStr,
        module: *mut bindings::module,
        param: &'static UintParam,
        perm: u16,
    ) -> Self {
        // INVARIANT: `name` and `param` are `'static`, the caller vouches for
        // `module`, and `param_ops_uint` is the kernel's own static.
        Self(bindings::kernel_param {
            name: name.as_char_ptr(),
            mod_: module,
            ops: core::ptr::addr_of!(bindings::param_ops_uint),
            perm,
            level: -1,
            flags: 0,
            __bindgen_anon_1: bindings::kernel_param__bindgen_ty_1 {
                arg: param.as_ptr().cast(),
            },
        })
    }
}

/// Copies a string into an array of its exact length, for `.modinfo` entries.
#[doc(hidden)]
pub const fn modinfo_bytes<const N: usize>(s: &str) -> [u8; N] {
    let bytes = s.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// Declares an `unsigned int` module parameter, like C's
/// `module_param_named(name, var, uint, perm)` with `MODULE_PARM_DESC`.
///
/// Must be used in the crate root of a loadable module, after `module!`
/// (it uses `THIS_MODULE`). The value is read with [`UintParam::get`].
///
/// # Examples
///
/// ```ignore
/// kernel::module_param_uint!(
///     COW_THRESHOLD,
///     "snapshot_cow_threshold",
///     2048,
///     0o644,
///     "Maximum number of chunks being copied on write"
/// );
///
/// fn limit() -> u32 {
///     COW_THRESHOLD.get()
/// }
/// ```
///
/// A parameter kept in a field of another structure names it instead, with
/// `@storage`, like C's `module_param_named(name, s.field, uint, perm)`:
///
/// ```ignore
/// kernel::module_param_uint!(@storage THROTTLE.percentage(), "copy_throttle", 0o644, "...");
/// ```
#[macro_export]
macro_rules! module_param_uint {
    ($var:ident, $name:literal, $default:expr, $perm:expr, $desc:literal $(,)?) => {
        static $var: $crate::module_param::UintParam =
            $crate::module_param::UintParam::new($default);

        $crate::module_param_uint!(@storage &$var, $name, $perm, $desc);
    };
    (@storage $storage:expr, $name:literal, $perm:expr, $desc:literal $(,)?) => {
        #[cfg(MODULE)]
        const _: () = {
            #[link_section = "__param"]
            #[used(compiler)]
            static PARAM: $crate::module_param::KernelParam =
                // SAFETY: `THIS_MODULE` is this module's `struct module` and
                // the value goes into this module's `__param` section.
                unsafe {
                    $crate::module_param::KernelParam::uint(
                        $crate::c_str!($name),
                        THIS_MODULE.as_ptr(),
                        $storage,
                        $perm,
                    )
                };

            const PARMTYPE: &str = concat!("parmtype=", $name, ":uint\0");
            #[link_section = ".modinfo"]
            #[used(compiler)]
            static MODINFO_PARMTYPE: [u8; PARMTYPE.len()] =
                $crate::module_param::modinfo_bytes::<{ PARMTYPE.len() }>(PARMTYPE);

            const PARM: &str = concat!("parm=", $name, ":", $desc, "\0");
            #[link_section = ".modinfo"]
            #[used(compiler)]
            static MODINFO_PARM: [u8; PARM.len()] =
                $crate::module_param::modinfo_bytes::<{ PARM.len() }>(PARM);
        };
    };
}
