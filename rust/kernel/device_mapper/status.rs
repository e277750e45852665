// SPDX-License-Identifier: GPL-2.0

//! The output of a target's `status` and `message` callbacks.
//!
//! C header: [`include/linux/device-mapper.h`](srctree/include/linux/device-mapper.h)
//! (`status_type_t`, `DMEMIT()`)

use crate::{
    bindings,
    ffi::{c_char, c_uint},
};
use core::fmt;

/// Which status `dmsetup` asks for (`status_type_t`).
///
/// # Examples
///
/// ```ignore
/// use core::fmt::Write;
/// use kernel::device_mapper::{StatusType, StatusWriter, Target};
///
/// fn status(&self, _target: &Target, kind: StatusType, out: &mut StatusWriter<'_>) {
///     match kind {
///         StatusType::Info => {}
///         StatusType::Table => {
///             let _ = write!(out, "{}", self.dev.name());
///         }
///         StatusType::Ima => {}
///     }
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusType {
    /// `dmsetup status`.
    Info,
    /// `dmsetup table`: the table line's arguments.
    Table,
    /// The IMA measurement string.
    Ima,
}

impl StatusType {
    pub(super) fn from_raw(kind: bindings::status_type_t) -> Self {
        match kind {
            bindings::status_type_t_STATUSTYPE_INFO => Self::Info,
            bindings::status_type_t_STATUSTYPE_TABLE => Self::Table,
            _ => Self::Ima,
        }
    }
}

/// The output buffer of a status or message call, filled like C's
/// `DMEMIT()`: output that does not fit is cut off and the buffer stays
/// NUL-terminated. Written to with [`core::fmt::Write`].
///
/// # Examples
///
/// ```ignore
/// use core::fmt::Write;
/// use kernel::device_mapper::{Args, StatusWriter, Target};
///
/// fn message(&self, _target: &Target, args: &Args<'_>, out: &mut StatusWriter<'_>) -> Result {
///     match (args.len(), args.get(0).map(|a| a.as_bytes())) {
///         (1, Some(b"stats")) => {
///             let _ = write!(out, "copies {}", self.copies());
///             Ok(())
///         }
///         _ => Err(EINVAL),
///     }
/// }
/// ```
///
/// # Invariants
///
/// `len <= buf.len()`; the first `len` bytes are the output, and unless the
/// buffer is empty, `len < buf.len()` and `buf[len]` is 0.
pub struct StatusWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> StatusWriter<'a> {
    /// A writer over `buf`, made empty.
    pub(super) fn new(buf: &'a mut [u8]) -> Self {
        if let Some(b) = buf.first_mut() {
            *b = 0;
        }
        // INVARIANT: Nothing is written, and the buffer, unless empty,
        // starts with a NUL.
        Self { buf, len: 0 }
    }

    /// Whether anything was written.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The `maxlen` bytes at `result` as a slice, `None` if there are none.
///
/// # Safety
///
/// Unless null, `result` must point to `maxlen` bytes that are the caller's
/// to write for `'a` (the buffer device-mapper hands a status or message
/// callback).
pub(super) unsafe fn raw_buffer<'a>(result: *mut c_char, maxlen: c_uint) -> Option<&'a mut [u8]> {
    if result.is_null() || maxlen == 0 {
        return None;
    }
    // SAFETY: The caller guarantees `maxlen` writable bytes at `result` for
    // `'a`, and `result` is not null.
    Some(unsafe { core::slice::from_raw_parts_mut(result.cast::<u8>(), maxlen as usize) })
}

impl fmt::Write for StatusWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Keep one byte for the terminating NUL.
        let room = self.buf.len().saturating_sub(self.len + 1);
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        // INVARIANT: `n` left room for the NUL, written after the output.
        if let Some(b) = self.buf.get_mut(self.len) {
            *b = 0;
        }
        Ok(())
    }
}
