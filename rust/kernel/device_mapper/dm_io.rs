// SPDX-License-Identifier: GPL-2.0

//! dm-io: synchronous reads and writes of a target's own metadata.
//!
//! C header: [`include/linux/dm-io.h`](srctree/include/linux/dm-io.h)

use super::kcopyd::Region;
use crate::{
    alloc::VVec,
    bindings,
    error::{code::*, to_result, Result},
};
use core::ptr::NonNull;

/// How a write reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// A plain write.
    Plain,
    /// Flush the device's cache first and write through it
    /// (`REQ_PREFLUSH | REQ_FUA`): the data, and all written before, is
    /// durable when the call returns.
    FlushFua,
}

/// A dm-io client (`struct dm_io_client`): its own bio set and page pool,
/// so its I/O makes progress under memory pressure.
///
/// # Invariants
///
/// `client` was returned by `dm_io_client_create()` and is destroyed only in
/// `drop`.
pub struct Client {
    client: NonNull<bindings::dm_io_client>,
}

// SAFETY: A dm-io client may be used from any thread.
unsafe impl Send for Client {}
// SAFETY: As for `Send`.
unsafe impl Sync for Client {}

impl Client {
    /// Creates a client.
    pub fn new() -> Result<Self> {
        // SAFETY: No preconditions.
        let client = crate::error::from_err_ptr(unsafe { bindings::dm_io_client_create() })?;
        // INVARIANT: The client was just created.
        Ok(Self {
            client: NonNull::new(client).ok_or(ENOMEM)?,
        })
    }

    fn io(&self, opf: u32, region: &Region, buf: *mut u8, len: usize) -> Result {
        let bytes = region.count().checked_mul(512).ok_or(EINVAL)?;
        if bytes == 0 || bytes > len as u64 {
            return Err(EINVAL);
        }
        let mut region = *region;
        let mut req = bindings::dm_io_request {
            bi_opf: opf,
            mem: bindings::dm_io_memory {
                type_: bindings::dm_io_mem_type_DM_IO_VMA,
                offset: 0,
                ptr: bindings::dm_io_memory__bindgen_ty_1 { vma: buf.cast() },
            },
            notify: bindings::dm_io_notify {
                fn_: None,
                context: core::ptr::null_mut(),
            },
            client: self.client.as_ptr(),
        };
        // SAFETY: The client is live (type invariant); `buf` is vmalloc
        // memory of `bytes` or more, borrowed for this synchronous call.
        to_result(unsafe {
            bindings::dm_io(&mut req, 1, region.as_raw(), core::ptr::null_mut(), 0)
        })
    }

    /// Reads `region` into the start of `buf`, waiting for the result.
    pub fn read(&self, region: &Region, buf: &mut VVec<u8>) -> Result {
        let len = buf.len();
        self.io(bindings::req_op_REQ_OP_READ, region, buf.as_mut_ptr(), len)
    }

    /// Writes the start of `buf` to `region`, waiting for the result.
    pub fn write(&self, region: &Region, buf: &VVec<u8>, mode: WriteMode) -> Result {
        let mut opf = bindings::req_op_REQ_OP_WRITE | (1 << bindings::req_flag_bits___REQ_SYNC);
        if mode == WriteMode::FlushFua {
            opf |= (1 << bindings::req_flag_bits___REQ_PREFLUSH)
                | (1 << bindings::req_flag_bits___REQ_FUA);
        }
        // dm-io only reads the buffer for a write.
        self.io(opf, region, buf.as_ptr().cast_mut(), buf.len())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the client is live; synchronous I/O
        // leaves nothing in flight.
        unsafe { bindings::dm_io_client_destroy(self.client.as_ptr()) };
    }
}
