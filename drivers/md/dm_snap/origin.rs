// SPDX-License-Identifier: GPL-2.0

//! The `snapshot-origin` target: `<origin device>`.
//!
//! Reads go straight to the origin device. Writes go there too, after every
//! snapshot of the origin has copied the chunk they overwrite.
//!
//! C counterpart: `origin_ctr()`, `origin_map()` and friends in
//! `drivers/md/dm-snap.c`.

use core::fmt::Write;
use kernel::{
    bio::Bio,
    c_str,
    device_mapper::{
        Args, CtrError, Device, IterateDevices, MapResult, StatusType, StatusWriter, Target,
        TargetOperations,
    },
    prelude::*,
};

/// Target name and version, as C's `origin_target`.
pub(crate) const NAME: &CStr = c_str!("snapshot-origin");
/// Target version, as C's `origin_target`.
pub(crate) const VERSION: [u32; 3] = [1, 9, 0];

/// One `snapshot-origin` table line.
pub(crate) struct Origin {
    dev: Device,
}

#[vtable]
impl TargetOperations for Origin {
    fn ctr(target: &mut Target, args: &Args<'_>) -> Result<Pin<KBox<Self>>, CtrError> {
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
        KBox::pin(Origin { dev }, GFP_KERNEL)
            .map_err(|_| CtrError::new(ENOMEM, c_str!("Cannot allocate private origin structure")))
    }

    fn map(&self, _target: &Target, bio: &mut Bio) -> MapResult {
        self.dev.remap(bio);
        MapResult::Remapped
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
