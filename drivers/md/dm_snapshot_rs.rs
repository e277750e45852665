// SPDX-License-Identifier: GPL-2.0

//! Device-mapper snapshot targets (`snapshot-origin`, `snapshot`,
//! `snapshot-merge`), written in Rust.
//!
//! A drop-in replacement for `dm-snapshot.ko`: same target names, table
//! syntax, status lines, module parameters and on-disk COW format.
//!
//! C counterpart: `drivers/md/dm-snap.c`.

use kernel::prelude::*;

pub mod dm_snap_core;

use dm_snap_core::chunk::ChunkSize;

module! {
    type: DmSnapshotRs,
    name: "dm_snapshot_rs",
    author: "dm-snapshot-rs developers",
    description: "device-mapper snapshot targets (Rust)",
    license: "GPL",
}

struct DmSnapshotRs;

impl kernel::Module for DmSnapshotRs {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        // The core-only logic is shared with the host test crate; make sure
        // the module is linked against the same code it is tested with.
        let default_chunk = ChunkSize::new(16).map_err(|_| EINVAL)?;
        pr_info!(
            "loaded (default chunk {} sectors)\n",
            default_chunk.sectors()
        );
        Ok(DmSnapshotRs)
    }
}

impl Drop for DmSnapshotRs {
    fn drop(&mut self) {
        pr_info!("unloaded\n");
    }
}
