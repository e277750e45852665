// SPDX-License-Identifier: GPL-2.0

//! The bios device-mapper hands a target's `map` and `end_io`, and what the
//! target tells device-mapper to do with them.
//!
//! C header: [`include/linux/device-mapper.h`](srctree/include/linux/device-mapper.h)
//! (`DM_MAPIO_*`, `DM_ENDIO_*`, `dm_accept_partial_bio()`)

use crate::{
    bindings,
    bio::{Bio, OwnedBio},
};
use core::ops::{Deref, DerefMut};

/// What device-mapper does with a bio after `map` (`DM_MAPIO_*`).
///
/// The variants that give the bio back to device-mapper carry it, so a
/// target cannot both keep a bio and return it.
///
/// # Examples
///
/// A target that sends every bio on to its one device:
///
/// ```ignore
/// use kernel::device_mapper::{MapBio, MapResult, Target};
///
/// fn map(&self, _target: &Target, mut bio: MapBio, _data: &mut ()) -> MapResult {
///     self.dev.remap(&mut bio);
///     MapResult::Remapped(bio)
/// }
/// ```
pub enum MapResult {
    /// The target took the bio and will complete or submit it itself.
    Submitted,
    /// The bio was remapped; device-mapper submits it.
    Remapped(MapBio),
    /// Device-mapper requeues the bio.
    Requeue(MapBio),
    /// Device-mapper fails the bio with an I/O error.
    Kill(MapBio),
}

impl MapResult {
    /// The `DM_MAPIO_*` code, and the bio device-mapper gets back, if any.
    #[inline]
    pub(super) fn into_raw(self) -> (u32, Option<*mut bindings::bio>) {
        let (r, bio) = match self {
            MapResult::Submitted => return (bindings::DM_MAPIO_SUBMITTED, None),
            MapResult::Remapped(b) => (bindings::DM_MAPIO_REMAPPED, b),
            MapResult::Requeue(b) => (bindings::DM_MAPIO_REQUEUE, b),
            MapResult::Kill(b) => (bindings::DM_MAPIO_KILL, b),
        };
        (r, Some(bio.bio.into_raw()))
    }
}

/// A bio handed to a target's `map`.
///
/// The target either returns it to device-mapper in a [`MapResult`] or takes
/// it over with [`MapBio::into_owned`] and returns [`MapResult::Submitted`].
///
/// # Examples
///
/// Splitting writes at a boundary, then queueing them for later:
///
/// ```ignore
/// use kernel::device_mapper::{MapBio, MapResult, Target};
///
/// fn map(&self, _target: &Target, mut bio: MapBio, _data: &mut ()) -> MapResult {
///     let available = 8 - (bio.sector() as u32 & 7);
///     if bio.sectors() > available {
///         // Device-mapper sends the rest in another bio.
///         bio.accept_partial(available);
///     }
///     self.queue.lock().push(bio.into_owned());
///     MapResult::Submitted
/// }
/// ```
///
/// # Invariants
///
/// `bio` is a clone device-mapper passed to the `map` callback of a target.
pub struct MapBio {
    bio: OwnedBio,
}

impl MapBio {
    /// Wraps a bio handed to `map`.
    ///
    /// # Safety
    ///
    /// `bio` must be the clone device-mapper passed to a target's `map`.
    #[inline]
    pub(super) unsafe fn new(bio: OwnedBio) -> Self {
        // INVARIANT: The caller passes a clone handed to `map`.
        Self { bio }
    }

    /// Takes the bio over: the target now submits or completes it.
    #[inline]
    pub fn into_owned(self) -> OwnedBio {
        self.bio
    }

    /// Shortens the bio to its first `sectors` sectors; device-mapper sends
    /// the rest in another bio (`dm_accept_partial_bio()`).
    ///
    /// Does nothing unless `0 < sectors < self.sectors()`, or for a flush.
    #[inline]
    pub fn accept_partial(&mut self, sectors: u32) {
        if sectors == 0 || sectors >= self.bio.sectors() || self.bio.is_preflush() {
            return;
        }
        // SAFETY: By the type invariant the bio is a clone device-mapper
        // handed to `map`; it is not a flush and `sectors` is below its
        // size. A duplicated discard is refused by device-mapper itself.
        unsafe { bindings::dm_accept_partial_bio(self.bio.as_raw(), sectors) };
    }

    /// Which copy of a duplicated bio (flush, discard) this is, from 0
    /// (`dm_bio_get_target_bio_nr()`).
    #[inline]
    pub fn target_bio_nr(&self) -> u32 {
        // SAFETY: By the type invariant the bio is a device-mapper clone.
        unsafe { bindings::dm_bio_get_target_bio_nr(self.bio.as_raw()) }
    }
}

impl From<MapBio> for OwnedBio {
    #[inline]
    fn from(bio: MapBio) -> OwnedBio {
        bio.bio
    }
}

impl Deref for MapBio {
    type Target = Bio;

    #[inline]
    fn deref(&self) -> &Bio {
        &self.bio
    }
}

impl DerefMut for MapBio {
    #[inline]
    fn deref_mut(&mut self) -> &mut Bio {
        &mut self.bio
    }
}

/// Proof that a target took over a bio in `end_io`: only
/// [`EndIoBio::take`] makes one.
///
/// # Examples
///
/// ```ignore
/// use kernel::device_mapper::{EndIoBio, EndIoResult};
///
/// let (bio, taken) = bio.take();
/// // Completing `bio` later calls `end_io` again.
/// self.deferred.lock().push(bio);
/// EndIoResult::Incomplete(taken)
/// ```
pub struct Taken(());

/// What device-mapper does with a bio after `end_io` (`DM_ENDIO_*`).
///
/// # Examples
///
/// ```ignore
/// use kernel::device_mapper::{EndIoBio, EndIoResult, Target};
///
/// fn end_io(&self, _target: &Target, bio: EndIoBio, data: Self::PerBio) -> EndIoResult {
///     if !bio.is_error() || !data.retry {
///         return EndIoResult::Done(bio);
///     }
///     // Completed again once the retry ends.
///     let (bio, taken) = bio.take();
///     self.retry.lock().push(bio);
///     EndIoResult::Incomplete(taken)
/// }
/// ```
pub enum EndIoResult {
    /// Device-mapper completes the bio.
    Done(EndIoBio),
    /// The target took the bio and completes it again later.
    Incomplete(Taken),
}

impl EndIoResult {
    /// The `DM_ENDIO_*` code; the bio goes back to device-mapper.
    #[inline]
    pub(super) fn into_raw(self) -> u32 {
        match self {
            EndIoResult::Done(b) => {
                // device-mapper completes the bio: give it back.
                let _ = b.bio.into_raw();
                bindings::DM_ENDIO_DONE
            }
            EndIoResult::Incomplete(_) => bindings::DM_ENDIO_INCOMPLETE,
        }
    }
}

/// A completed bio handed to a target's `end_io`.
///
/// # Examples
///
/// ```ignore
/// use kernel::device_mapper::{EndIoBio, EndIoResult, Target};
///
/// fn end_io(&self, _target: &Target, bio: EndIoBio, _data: ()) -> EndIoResult {
///     if bio.is_error() {
///         pr_warn!("I/O error at sector {}\n", bio.sector());
///     }
///     EndIoResult::Done(bio)
/// }
/// ```
pub struct EndIoBio {
    bio: OwnedBio,
    error: bool,
}

impl EndIoBio {
    /// Wraps a completed bio handed to `end_io`; `error` tells whether it
    /// failed.
    #[inline]
    pub(super) fn new(bio: OwnedBio, error: bool) -> Self {
        Self { bio, error }
    }

    /// Whether the bio failed.
    #[inline]
    pub fn is_error(&self) -> bool {
        self.error
    }

    /// Takes the bio over; completing it later calls `end_io` again.
    #[inline]
    pub fn take(self) -> (OwnedBio, Taken) {
        (self.bio, Taken(()))
    }
}

impl Deref for EndIoBio {
    type Target = Bio;

    #[inline]
    fn deref(&self) -> &Bio {
        &self.bio
    }
}
