// SPDX-License-Identifier: GPL-2.0

//! Device-mapper targets.
//!
//! A target type implements [`TargetOperations`] and is registered with a
//! [`Registration`]. Device-mapper constructs one instance per table line
//! (`ctr`), keeps it in `ti->private`, hands it every bio of its range (`map`)
//! and asks it for its status lines; dropping the instance is `dtr`. The
//! instance opens its underlying devices as [`Device`]s; [`dm_io`] and
//! [`kcopyd`] do I/O and copies on [`Region`](dm_io::Region)s of them.
//!
//! See [`TargetOperations`] for a whole target.
//!
//! C header: [`include/linux/device-mapper.h`](srctree/include/linux/device-mapper.h)

mod bio;
mod device;
pub mod dm_io;
pub mod kcopyd;
mod operations;
mod registration;
mod status;
mod target;

pub use bio::{EndIoBio, EndIoResult, MapBio, MapResult, Taken};
pub use device::{Device, IterateDevices};
pub use kcopyd::KcopydThrottle;
pub use operations::TargetOperations;
pub use registration::Registration;
pub use status::{StatusType, StatusWriter};
pub use target::{Args, CtrError, QueueLimits, TableEvent, Target};
