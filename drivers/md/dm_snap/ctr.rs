// SPDX-License-Identifier: GPL-2.0

//! Construction of a `snapshot` table line: the arguments, the devices,
//! the exception store (read from the COW device, or to be taken over from
//! a live snapshot on it), and the snapshot's place in the registry.
//!
//! The checks, their order and their messages are C's, so that a table is
//! refused for the same reason by either module; those that need no
//! device are `dm_snap_core::table`'s.
//!
//! C counterpart: `snapshot_ctr()` and `register_snapshot()` in
//! `drivers/md/dm-snap.c`, `dm_exception_store_create()` in
//! `drivers/md/dm-exception-store.c`.

#![deny(unsafe_code)]

use super::{
    drain::Drain,
    exceptions::ExceptionTable,
    pending::PendingTable,
    persistent::{self, HeaderSlot, LoadError},
    read_tracker::ReadTracker,
    registry::Registry,
    snapshot::Snapshot,
    state::{Config, Handover, Inner, Snap, SnapState},
    store::{PersistentStore, Store, TransientStore},
    throttle::CowThrottle,
};
use crate::{
    dm_snap_core::{
        chunk::ChunkSize,
        commit::Sequencer,
        disk::{Layout, MetadataError, StoreState},
        table::{self, StoreError, StoreKind, TableError},
    },
    COPY_THROTTLE,
};
use core::sync::atomic::AtomicBool;
use kernel::{
    bio::BioList,
    c_str,
    device_mapper::{kcopyd, Args, CtrError, Device, Target},
    mempool::Mempool,
    new_mutex, new_rwsem,
    prelude::*,
    sync::Arc,
};

/// Pending exceptions kept in reserve for forward progress (C: `MIN_IOS`).
const MIN_IOS: u32 = 256;

/// One argument of the table line: its text for the parser, its C string
/// to open a device by.
#[derive(Clone, Copy)]
struct Arg<'a> {
    c: &'a CStr,
    text: &'a str,
}

impl AsRef<str> for Arg<'_> {
    fn as_ref(&self) -> &str {
        self.text
    }
}

fn table_error(e: TableError) -> CtrError {
    // `dm_snap_core` words the reason, NUL-terminated for `ti->error`.
    let msg = CStr::from_bytes_with_nul(e.message().to_bytes_with_nul())
        .unwrap_or(c_str!("Invalid argument"));
    CtrError::inval(msg)
}

fn load_error(e: LoadError) -> CtrError {
    let err = match e {
        LoadError::NoMem => ENOMEM,
        LoadError::Io(err) => {
            pr_err!("reading snapshot metadata failed\n");
            err
        }
        // C's words and errors for what C checks too.
        LoadError::Metadata(m @ MetadataError::BadMagic) => {
            pr_warn!("{}\n", m.message());
            ENXIO
        }
        LoadError::Metadata(MetadataError::BadVersion(v)) => {
            pr_warn!("unable to handle snapshot disk version {}\n", v);
            EINVAL
        }
        LoadError::Metadata(MetadataError::BadChunkSize(size, e)) => {
            pr_err!("invalid on-disk chunk size {}: {}.\n", size, e.message());
            EINVAL
        }
        LoadError::Metadata(m) => {
            pr_err!("{}\n", m.message());
            EINVAL
        }
        LoadError::RepeatedChunk(c) => {
            pr_err!("exception for origin chunk {} repeated in metadata\n", c);
            EINVAL
        }
    };
    CtrError::new(err, c_str!("Failed to read snapshot metadata"))
}

fn nomem<E>(_: E) -> CtrError {
    CtrError::new(ENOMEM, c_str!("Cannot allocate private snapshot structure"))
}

fn store_error(e: StoreError, kind: &str) -> CtrError {
    if e.logs_option() {
        pr_warn!(
            "Unsupported persistent store option: {}\n",
            kind.get(1..).unwrap_or("")
        );
    }
    table_error(TableError::Store(e))
}

fn pairing_failed() -> CtrError {
    CtrError::inval(c_str!(
        "Snapshot cow pairing for exception table handover failed"
    ))
}

/// A fresh store of `kind` on `cow`, with nothing read from the device;
/// a persistent one comes with its header, to read the store through.
fn unread_store(
    kind: StoreKind,
    cow: &Device,
    chunk: ChunkSize,
) -> Result<(Store, Option<Arc<HeaderSlot>>), CtrError> {
    Ok(match kind {
        StoreKind::Transient => (Store::Transient(TransientStore::new(chunk)), None),
        StoreKind::Persistent { .. } => {
            let header = persistent::unread_header(cow, chunk).map_err(load_error)?;
            let layout = Layout::new(chunk, cow.sectors());
            let store = PersistentStore::new(layout, StoreState::new(), header.clone());
            (Store::Persistent(store), Some(header))
        }
    })
}

impl Snapshot {
    /// Constructs a `snapshot` table line, or with `merge` a
    /// `snapshot-merge` one (C: `snapshot_ctr()`).
    pub(super) fn build(
        target: &mut Target,
        args: &Args<'_>,
        registry: &Arc<Registry>,
        merge: bool,
    ) -> Result<Pin<KBox<Self>>, CtrError> {
        let mut strs = KVec::with_capacity(args.len(), GFP_KERNEL).map_err(nomem)?;
        for c in (0..args.len()).filter_map(|i| args.get(i)) {
            let text = c.to_str().unwrap_or("");
            strs.push(Arg { c, text }, GFP_KERNEL).map_err(nomem)?;
        }
        let a = table::parse_snapshot(&strs).map_err(table_error)?;
        // Read only, as C: the snapshot never writes its origin through
        // this device, and the origin may refuse writers. A merge writes it.
        let origin = if merge {
            target.get_device(a.origin.c)
        } else {
            target.get_device_read_only(a.origin.c)
        }
        .map_err(|e| CtrError::new(e, c_str!("Cannot get origin device")))?;
        let cow = target
            .get_device(a.cow.c)
            .map_err(|e| CtrError::new(e, c_str!("Cannot get COW device")))?;
        if cow.same_bdev(&origin) {
            return Err(CtrError::inval(c_str!(
                "COW device cannot be the same as origin device"
            )));
        }
        let (store, chunk) = table::parse_store(a.store.text, a.chunk_size.text)
            .map_err(|e| store_error(e, a.store.text))?;
        if merge && store == StoreKind::Transient {
            // Only the persistent store can merge (C: no `prepare_merge`).
            return Err(CtrError::inval(c_str!(
                "Snapshot exception store does not support snapshot-merge."
            )));
        }
        let block = origin.logical_block_size().max(cow.logical_block_size());
        if let Some(chunk) = chunk {
            chunk
                .fits_block_size(block)
                .map_err(|e| store_error(StoreError::ChunkSize(e), a.store.text))?;
        }
        let origin_dev = origin.dev_t();
        // A table loaded on the COW device of a live snapshot takes that
        // snapshot's exceptions over when it resumes, instead of reading
        // the metadata, which only one table may hold. This look decides
        // which; registering checks it again, atomically (C:
        // `register_snapshot()`).
        let handover_from = registry
            .sharing_cow(origin_dev, cow.dev_t())
            .map_err(|_| pairing_failed())?;
        let chunk = match (&handover_from, store) {
            (Some(src), _) => {
                if src.cfg.persistent() != matches!(store, StoreKind::Persistent { .. }) {
                    return Err(CtrError::inval(c_str!(
                        "Exception store type differs from the snapshot handed over"
                    )));
                }
                src.cfg.chunk
            }
            (None, StoreKind::Transient) => {
                chunk.ok_or_else(|| table_error(TableError::ChunkSizeNotSet))?
            }
            // The header alone: it gives the chunk size. Nothing is written
            // and no exception read until the table holds the COW device.
            (None, StoreKind::Persistent { .. }) => {
                persistent::chunk_size(&cow, chunk, block).map_err(load_error)?
            }
        };
        let handover = match handover_from.clone() {
            Some(src) => Some(Handover {
                src,
                spare: unread_store(store, &cow, chunk)?.0,
            }),
            None => None,
        };
        let cfg = Config {
            origin_dev,
            chunk,
            store,
            table_end: target.begin() + target.len(),
            features: a.features,
            merge,
        };
        let pool_error = |_| {
            CtrError::new(
                ENOMEM,
                c_str!("Could not allocate mempool for pending exceptions"),
            )
        };
        let pending_pool = Mempool::new(MIN_IOS).map_err(pool_error)?;
        let job_pool = Mempool::new(MIN_IOS).map_err(pool_error)?;
        let table_error = |_| CtrError::new(ENOMEM, c_str!("Unable to allocate hash table space"));
        let pending = PendingTable::new().map_err(table_error)?;
        let event = target.table_event().map_err(nomem)?;
        let throttle = CowThrottle::new().map_err(nomem)?;
        // The store is read below, once the table holds the COW device, or
        // handed over on resume.
        let (unread, header) = unread_store(store, &cow, chunk)?;
        // Sized for the COW device, as C's `init_hash_tables()`; a store
        // read below comes with its own.
        let complete = if handover_from.is_none() && header.is_some() {
            ExceptionTable::empty()
        } else {
            ExceptionTable::new(chunk.sector_to_chunk(cow.sectors())).map_err(table_error)?
        };
        let state = Arc::pin_init(
            pin_init!(SnapState {
                cfg,
                registry: registry.clone(),
                active: AtomicBool::new(false),
                suspended: AtomicBool::new(false),
                valid: AtomicBool::new(true),
                overflowed: AtomicBool::new(false),
                inner <- new_mutex!(Inner {
                    pending,
                    store: unread,
                    seq: Sequencer::new(),
                    waiting_turn: 0,
                    handover,
                    merging: None,
                    queued: BioList::new(),
                    merge_failed: false,
                }),
                complete <- new_rwsem!(complete, "dm_snapshot_rs:complete"),
                reads <- ReadTracker::new(),
                throttle,
                drain <- Drain::new(),
                pending_pool,
                job_pool,
                meta <- new_mutex!(None),
                event,
            }),
            GFP_KERNEL,
        )
        .map_err(nomem)?;
        state.prime_lockdep();
        let kc = kcopyd::Client::new(&COPY_THROTTLE)
            .map_err(|e| CtrError::new(e, c_str!("Could not create kcopyd client")))?;
        let snap = Arc::new(
            Snap {
                kc,
                state,
                origin,
                cow,
            },
            GFP_KERNEL,
        )
        .map_err(nomem)?;
        // A merge flushes the origin (bio 0) and the COW device (bio 1).
        target.set_num_flush_bios(if merge { 2 } else { 1 });
        if a.features.discard_zeroes_cow {
            target.set_num_discard_bios(a.features.count());
        }
        target
            .set_max_io_len(chunk.sectors())
            .map_err(|e| CtrError::new(e, c_str!("Cannot set the chunk size as max I/O length")))?;
        let entry = Registry::entry(origin_dev, snap.clone()).map_err(|_| {
            CtrError::new(ENOMEM, c_str!("Snapshot origin struct allocation failed"))
        })?;
        let this = KBox::pin(
            Snapshot {
                snap: snap.clone(),
                registry: registry.clone(),
            },
            GFP_KERNEL,
        )
        .map_err(nomem)?;
        // From here on, a failure drops `this`, which unregisters.
        // Registered, the snapshot holds its COW device: no other table can
        // load it meanwhile. It is not active, so origin writes pass it by.
        registry
            .register(entry, handover_from.as_ref())
            .map_err(|e| {
                if e == EBUSY {
                    CtrError::inval(c_str!("A snapshot is already merging."))
                } else {
                    pairing_failed()
                }
            })?;
        if let (None, Some(header)) = (&handover_from, header) {
            load(&snap, chunk, block, header)?;
        }
        Ok(this)
    }
}

/// Reads the persistent store of `snap` from its COW device (C:
/// `persistent_read_metadata()`), now that the table holds the device.
fn load(
    snap: &Snap,
    chunk: ChunkSize,
    block: u32,
    header: Arc<HeaderSlot>,
) -> Result<(), CtrError> {
    let l = persistent::load(&snap.cow, Some(chunk), block, &header).map_err(load_error)?;
    if l.chunk != chunk {
        return Err(CtrError::inval(c_str!(
            "COW device changed while the table was loaded"
        )));
    }
    if !l.valid {
        pr_warn!("Snapshot is marked invalid.\n");
    }
    let st = &snap.state;
    let mut inner = st.inner.lock();
    st.set_valid(&mut inner, l.valid);
    *st.complete.write() = l.complete;
    inner.store = Store::Persistent(PersistentStore::new(l.meta.layout(), l.state, header));
    drop(inner);
    *st.meta.lock() = Some(l.meta);
    Ok(())
}
