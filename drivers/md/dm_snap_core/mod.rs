// SPDX-License-Identifier: GPL-2.0

//! Logic of the snapshot targets that needs no kernel.
//!
//! Everything below this module uses `core` only, so the module and the
//! host test crate (`host/`) compile the very same source: it is unit-tested
//! and fuzzed on the host, and linked into the kernel module unchanged.

#![deny(unsafe_code)]

pub mod chunk;
pub mod commit;
pub mod disk;
pub mod exception_table;
pub mod merge;
pub mod runs;
pub mod table;
pub mod throttle;
pub mod track;
pub mod transient;
