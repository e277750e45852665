// SPDX-License-Identifier: GPL-2.0

//! Host build of the kernel-independent logic of the Rust dm-snapshot targets.
//!
//! The sources live in the module's tree (`drivers/md/dm_snap_core/`) and are
//! compiled here unchanged, `no_std`, so what is tested and fuzzed on the host
//! is exactly what the kernel module links.

#![no_std]

#[path = "../../drivers/md/dm_snap_core/mod.rs"]
pub mod dm_snap_core;

/// Host only, not in the module: a table of exception runs on vectors, as
/// the kernel builds its own, for the tests and the fuzz target.
pub mod runs_model;
