// SPDX-License-Identifier: GPL-2.0

//! Device-mapper snapshot targets (`snapshot-origin`, `snapshot` and
//! `snapshot-merge`), written in Rust.
//!
//! A drop-in replacement for `dm-snapshot.ko`: same target names, table
//! syntax, status lines, module parameters and on-disk COW format.
//!
//! C counterpart: `drivers/md/dm-snap.c`.

// Every file of the target denies `unsafe` itself (`#![deny(unsafe_code)]`);
// this crate root holds only the `module!` and parameter macros, whose
// expansions are the kernel crate's own `unsafe`.

use kernel::{
    device_mapper::{KcopydThrottle, Registration},
    prelude::*,
};

#[path = "dm_snap/complete.rs"]
mod complete;
#[path = "dm_snap/copy.rs"]
mod copy;
#[path = "dm_snap/ctr.rs"]
mod ctr;
pub mod dm_snap_core;
#[path = "dm_snap/drain.rs"]
mod drain;
#[path = "dm_snap/exceptions.rs"]
mod exceptions;
#[path = "dm_snap/handover.rs"]
mod handover;
#[path = "dm_snap/merge.rs"]
mod merge;
#[path = "dm_snap/origin.rs"]
mod origin;
#[path = "dm_snap/origin_write.rs"]
mod origin_write;
#[path = "dm_snap/pending.rs"]
mod pending;
#[path = "dm_snap/persistent.rs"]
mod persistent;
#[path = "dm_snap/read_tracker.rs"]
mod read_tracker;
#[path = "dm_snap/registry.rs"]
mod registry;
#[path = "dm_snap/snapshot.rs"]
mod snapshot;
#[path = "dm_snap/state.rs"]
mod state;
#[path = "dm_snap/store.rs"]
mod store;
#[path = "dm_snap/throttle.rs"]
mod throttle;

use merge::SnapshotMerge;
use origin::Origin;
use registry::Registry;
use snapshot::Snapshot;

module! {
    type: DmSnapshotRs,
    name: "dm_snapshot_rs",
    author: "dm-snapshot-rs developers",
    description: "device-mapper snapshot targets (Rust)",
    license: "GPL",
    // The device mapper asks for `dm-<target>` when a table names a target
    // no module has registered (C: `MODULE_ALIAS()` in dm-snap.c, whose
    // module name gives "dm-snapshot" itself).
    alias: ["dm-snapshot", "dm-snapshot-origin", "dm-snapshot-merge"],
}

/// C: `DEFAULT_COW_THRESHOLD`.
const DEFAULT_COW_THRESHOLD: u32 = 2048;

kernel::module_param_uint!(
    COW_THRESHOLD,
    "snapshot_cow_threshold",
    DEFAULT_COW_THRESHOLD,
    0o644,
    "Maximum number of chunks being copied on write"
);

/// The throttle of this module's kcopyd clients (C:
/// `DECLARE_DM_KCOPYD_THROTTLE_WITH_MODULE_PARM(snapshot_copy_throttle, ...)`).
pub(crate) static COPY_THROTTLE: KcopydThrottle = KcopydThrottle::new();

kernel::module_param_uint!(
    @storage COPY_THROTTLE.percentage(),
    "snapshot_copy_throttle",
    0o644,
    "A percentage of time allocated for copy on write"
);

struct DmSnapshotRs {
    _origin: Pin<KBox<Registration<Origin>>>,
    _snapshot: Pin<KBox<Registration<Snapshot>>>,
    _merge: Pin<KBox<Registration<SnapshotMerge>>>,
}

fn already_registered(e: &Error) {
    if *e == EEXIST {
        pr_err!("snapshot targets are registered already: unload dm-snapshot first\n");
    }
}

impl kernel::Module for DmSnapshotRs {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let registry = Registry::new()?;
        let origin = KBox::pin_init(
            Registration::new(origin::NAME, origin::VERSION, module, registry.clone()),
            GFP_KERNEL,
        )
        .inspect_err(already_registered)?;
        let snapshot = KBox::pin_init(
            Registration::new(snapshot::NAME, snapshot::VERSION, module, registry.clone()),
            GFP_KERNEL,
        )
        .inspect_err(already_registered)?;
        let merge = KBox::pin_init(
            Registration::new(merge::NAME, merge::VERSION, module, registry),
            GFP_KERNEL,
        )
        .inspect_err(already_registered)?;
        pr_info!("loaded (cow threshold {})\n", COW_THRESHOLD.get());
        Ok(DmSnapshotRs {
            _origin: origin,
            _snapshot: snapshot,
            _merge: merge,
        })
    }
}

impl Drop for DmSnapshotRs {
    fn drop(&mut self) {
        pr_info!("unloaded\n");
    }
}
