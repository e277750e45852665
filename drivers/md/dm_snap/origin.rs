// SPDX-License-Identifier: GPL-2.0

//! The `snapshot-origin` target: `<origin device>`.
//!
//! Reads go straight to the origin device. Writes go there too, after every
//! snapshot of the origin has copied the chunk they overwrite.
//!
//! C counterpart: `origin_ctr()`, `origin_map()` and friends in
//! `drivers/md/dm-snap.c`.

#![deny(unsafe_code)]

use super::{
    origin_write::{do_origin, Limit},
    registry::Registry,
};
use core::{
    fmt::Write,
    sync::atomic::{AtomicU32, Ordering},
};
use kernel::{
    c_str,
    device_mapper::{
        Args, CtrError, Device, IterateDevices, MapBio, MapResult, StatusType, StatusWriter,
        Target, TargetOperations,
    },
    prelude::*,
    sync::Arc,
};

/// Target name and version, as C's `origin_target`.
pub(crate) const NAME: &CStr = c_str!("snapshot-origin");
/// Target version, as C's `origin_target`.
pub(crate) const VERSION: [u32; 3] = [1, 9, 0];

/// The most chunks, of the smallest chunk size among the origin's
/// snapshots, that one origin write spans: 256 KiB of 4 KiB chunks.
const MAX_STEPS: u64 = 64;

/// One `snapshot-origin` table line.
pub(crate) struct Origin {
    dev: Device,
    registry: Arc<Registry>,
    /// Writes are split at multiples of [`MAX_STEPS`] times this many
    /// sectors: the smallest chunk size of the origin's snapshots when it
    /// was last resumed.
    split_boundary: AtomicU32,
}

#[vtable]
impl TargetOperations for Origin {
    type Shared = Arc<Registry>;
    type PerBio = ();

    fn ctr(
        target: &mut Target,
        args: &Args<'_>,
        registry: &Arc<Registry>,
    ) -> Result<Pin<KBox<Self>>, CtrError> {
        let path = match (args.len(), args.get(0)) {
            (1, Some(path)) => path,
            _ => {
                return Err(CtrError::inval(c_str!(
                    "origin: incorrect number of arguments"
                )))
            }
        };
        let dev = target
            .get_device(path)
            .map_err(|e| CtrError::new(e, c_str!("Cannot get target device")))?;
        target.set_num_flush_bios(1);
        let split = registry.min_chunk(dev.dev_t());
        let origin = Origin {
            dev,
            registry: registry.clone(),
            split_boundary: AtomicU32::new(split),
        };
        KBox::pin(origin, GFP_KERNEL)
            .map_err(|_| CtrError::new(ENOMEM, c_str!("Cannot allocate private origin structure")))
    }

    fn map(&self, _target: &Target, mut bio: MapBio, _data: &mut ()) -> MapResult {
        self.dev.remap(&mut bio);
        if bio.is_preflush() || !bio.is_write() {
            return MapResult::Remapped(bio);
        }
        // One write spans at most `MAX_STEPS` chunks of the smallest size
        // (C splits at every chunk): it waits for as many copies at most.
        let span = u64::from(self.split_boundary.load(Ordering::Relaxed).max(1)) * MAX_STEPS;
        let available = span - (bio.sector() & (span - 1));
        if u64::from(bio.sectors()) > available {
            // `available` < `bio.sectors()`, a `u32`.
            bio.accept_partial(available as u32);
        }
        // Only writes concern the snapshots.
        match do_origin(&self.registry, self.dev.dev_t(), bio, Limit::Throttled) {
            Some(bio) => MapResult::Remapped(bio),
            None => MapResult::Submitted,
        }
    }

    fn resume(&self, _target: &Target) {
        let split = self.registry.min_chunk(self.dev.dev_t());
        self.split_boundary.store(split, Ordering::Relaxed);
    }

    fn status(&self, _target: &Target, kind: StatusType, out: &mut StatusWriter<'_>) {
        match kind {
            StatusType::Info => {}
            StatusType::Table => {
                let _ = write!(out, "{}", self.dev.name());
            }
            StatusType::Ima => {}
        }
    }

    fn iterate_devices(&self, target: &Target, callout: &mut IterateDevices) -> i32 {
        callout.call(&self.dev, 0, target.len())
    }
}
