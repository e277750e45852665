// SPDX-License-Identifier: GPL-2.0

//! The persistent exception store (`P`, `PO`): the exceptions live in
//! metadata areas on the COW device, in the format of
//! `drivers/md/dm-snap-persistent.c` (see `dm_snap_core::disk`).
//!
//! This file does the metadata I/O: reading the header and the areas when
//! a table is loaded, and writing areas and the header afterwards. When to
//! write is decided by `dm_snap_core::commit`; the snapshot code calls in.

#![deny(unsafe_code)]

use super::exceptions::{ExceptionTable, Insert};
use crate::dm_snap_core::{
    chunk::ChunkSize,
    commit::Dirty,
    disk::{
        check_header, DiskException, Header, HeaderState, Layout, Loader, MetadataError,
        StoreState, DEFAULT_CHUNK_SECTORS, SNAP_MAGIC,
    },
    merge::{self, Run, Step},
};
use kernel::{
    alloc::VVec,
    device_mapper::{
        dm_io::{self, WriteMode},
        kcopyd::Region,
        Device,
    },
    impl_has_work, new_mutex, new_work,
    prelude::*,
    sync::{Arc, Mutex},
    workqueue::{OwnedQueue, Work, WorkItem},
};

/// Writes one chunk of the COW device.
fn write_chunk(
    io: &dm_io::Client,
    cow: &Region,
    layout: &Layout,
    chunk: u64,
    buf: &VVec<u8>,
    mode: WriteMode,
) -> Result {
    let sectors = u64::from(layout.chunk().sectors());
    io.write(
        &cow.at(layout.chunk().first_sector(chunk), sectors),
        buf,
        mode,
    )
}

/// Writes the header of a persistent store (C: `write_header()`). Apart
/// from the area writes so that invalidating a snapshot, which holds the
/// snapshot lock, never waits for a commit in progress.
struct HeaderWriter {
    io: dm_io::Client,
    /// The whole COW device.
    cow: Region,
    layout: Layout,
    buf: VVec<u8>,
}

impl HeaderWriter {
    fn new(cow: Region, layout: Layout) -> Result<Self, LoadError> {
        Ok(Self {
            io: dm_io::Client::new().map_err(|_| LoadError::NoMem)?,
            cow,
            layout,
            buf: chunk_buf(layout.chunk())?,
        })
    }

    /// Writes the header, valid or not.
    fn write(&mut self, valid: bool) -> Result {
        Header::new(self.layout.chunk(), valid)
            .encode(&mut self.buf)
            .map_err(|_| EINVAL)?;
        write_chunk(
            &self.io,
            &self.cow,
            &self.layout,
            0,
            &self.buf,
            WriteMode::FlushFua,
        )
    }
}

/// The header of a persistent store once the store is loaded: written,
/// with valid = 0, when the snapshot is invalidated.
///
/// Invalidation can happen while a bio is being submitted, where our own
/// synchronous I/O would wait behind that bio, so the write runs in a work
/// item on the module's `ksnaphd` queue, which has a rescuer thread for
/// progress under memory pressure; the work item is part of the slot, so
/// queueing it allocates nothing (C: `chunk_io()` with its on-stack work
/// on `ksnapd`).
#[pin_data]
pub(crate) struct HeaderSlot {
    #[pin]
    writer: Mutex<HeaderWriter>,
    #[pin]
    work: Work<HeaderSlot>,
}

impl_has_work! {
    impl HasWork<Self> for HeaderSlot { self.work }
}

impl WorkItem for HeaderSlot {
    type Pointer = Arc<HeaderSlot>;

    fn run(this: Arc<HeaderSlot>) {
        if this.writer.lock().write(false).is_err() {
            pr_err!("write header failed\n");
        }
    }
}

impl HeaderSlot {
    fn new(writer: HeaderWriter) -> Result<Arc<Self>, LoadError> {
        Arc::pin_init(
            pin_init!(Self {
                writer <- new_mutex!(writer),
                work <- new_work!("HeaderSlot::work"),
            }),
            GFP_KERNEL,
        )
        .map_err(|_| LoadError::NoMem)
    }

    /// Writes the header with valid = 0 and waits until it is on disk
    /// (C: `persistent_drop_snapshot()`), through `ksnaphd`. Once this
    /// returns the work function has returned too: nothing of the write
    /// still runs when the table, or the module, goes away.
    pub(crate) fn invalidate(self: &Arc<Self>, ksnaphd: &OwnedQueue) {
        // Already queued: a write is on its way, which the flush waits for
        // as well.
        let _ = ksnaphd.enqueue(self.clone());
        ksnaphd.flush();
    }

    /// Writes a valid header: a new store's first write.
    fn write_valid(&self) -> Result {
        self.writer.lock().write(true)
    }

    /// Points the header at `cow`, of `layout`: the COW device of the table
    /// the store was handed over to.
    pub(crate) fn rebind(&self, cow: Region, layout: Layout) {
        let mut w = self.writer.lock();
        w.cow = cow;
        w.layout = layout;
    }
}

/// The metadata I/O of one persistent store.
pub(crate) struct Metadata {
    io: dm_io::Client,
    /// The whole COW device.
    cow: Region,
    layout: Layout,
    /// The area being filled, as it is to be on disk.
    area: VVec<u8>,
    /// What of `area` the area on disk does not hold yet.
    dirty: Dirty,
    /// The COW device's physical block size in bytes: what an area write
    /// writes at least (see [`Dirty`]).
    block: usize,
    /// Zeroes, for a fresh area on disk.
    zeroes: VVec<u8>,
    /// The chunks of the exceptions added since the last area write, in
    /// order, to be completed once it is on disk.
    batched: VVec<u64>,
}

/// What loading a persistent store found.
pub(crate) struct Loaded {
    /// The chunk size: the table's, or the one on disk.
    pub(crate) chunk: ChunkSize,
    /// False if the header says the snapshot was invalidated.
    pub(crate) valid: bool,
    /// The allocation state after the last exception.
    pub(crate) state: StoreState,
    /// The exceptions on disk: origin chunk to COW chunk.
    pub(crate) complete: ExceptionTable,
    /// The metadata I/O, for the snapshot's later commits.
    pub(crate) meta: Metadata,
}

/// Why a persistent store could not be loaded.
pub(crate) enum LoadError {
    /// Out of memory.
    NoMem,
    /// The device could not be read or written.
    Io(Error),
    /// The metadata on the device is refused.
    Metadata(MetadataError),
    /// Two exceptions for one origin chunk.
    RepeatedChunk(u64),
}

impl From<MetadataError> for LoadError {
    fn from(e: MetadataError) -> Self {
        LoadError::Metadata(e)
    }
}

fn chunk_buf(chunk: ChunkSize) -> Result<VVec<u8>, LoadError> {
    VVec::from_elem(0u8, (chunk.sectors() as usize) << 9, GFP_KERNEL).map_err(|_| LoadError::NoMem)
}

impl Metadata {
    fn new(io: dm_io::Client, cow: &Device, layout: Layout) -> Result<Self, LoadError> {
        let per_area = layout.exceptions_per_area() as usize;
        Ok(Self {
            io,
            cow: cow.region(0, cow.sectors()),
            layout,
            area: chunk_buf(layout.chunk())?,
            dirty: Dirty::CLEAN,
            block: cow.physical_block_size() as usize,
            zeroes: chunk_buf(layout.chunk())?,
            batched: VVec::from_elem(0u64, per_area, GFP_KERNEL).map_err(|_| LoadError::NoMem)?,
        })
    }

    /// The layout of the store.
    pub(crate) fn layout(&self) -> Layout {
        self.layout
    }

    /// Points the metadata I/O at `cow`, of `cow_sectors`: the COW device
    /// of the table the store was handed over to (possibly grown since).
    /// It is the same device, so its block size is the same.
    pub(crate) fn rebind(&mut self, cow: Region, cow_sectors: u64) {
        self.cow = cow;
        self.layout = Layout::new(self.layout.chunk(), cow_sectors);
    }

    /// Zeroes metadata area `area` on disk: the end marker
    /// (C: `zero_disk_area()`).
    fn zero_area(&self, area: u64) -> Result {
        let chunk = self.layout.area_location(area).ok_or(EINVAL)?;
        write_chunk(
            &self.io,
            &self.cow,
            &self.layout,
            chunk,
            &self.zeroes,
            WriteMode::Plain,
        )
    }

    /// Adds exception `e` at `index` of the area being filled, and
    /// remembers its chunk as the `nth` batched since the last write.
    pub(crate) fn add(&mut self, index: u64, nth: u64, e: DiskException) {
        // The indices come from `Batch::commit`, below exceptions_per_area.
        if self
            .layout
            .write_exception(&mut self.area, index, e)
            .is_ok()
        {
            self.dirty.add(index);
        }
        if let Some(slot) = self.batched.as_mut_slice().get_mut(nth as usize) {
            *slot = e.old_chunk;
        }
    }

    /// Writes area `area` with flush and FUA, after zeroing area `next` on
    /// disk if the area is full (C: the tail of
    /// `persistent_commit_exception()`). Returns whether the exceptions in
    /// it are durable; the area in memory starts afresh after a full one.
    ///
    /// Only the blocks of the exceptions added since the last write go to
    /// the device ([`Dirty`]); C writes the whole chunk. The flush before
    /// them makes the copies they name durable first, as in C.
    pub(crate) fn write_area(&mut self, area: u64, next: Option<u64>, valid: bool) -> bool {
        let mut ok = valid;
        if let Some(n) = next {
            ok = ok && self.zero_area(n).is_ok();
        }
        if ok {
            let span = self.dirty.span(self.area.len(), self.block);
            ok = self.layout.area_location(area).is_some_and(|c| {
                let at = self.layout.chunk().first_sector(c) + (span.start as u64 >> 9);
                let sectors = (span.end - span.start) as u64 >> 9;
                self.io
                    .write_at(
                        &self.cow.at(at, sectors),
                        &self.area,
                        span.start,
                        WriteMode::FlushFua,
                    )
                    .is_ok()
            });
        }
        // Written, or the snapshot is invalid and writes no more.
        self.dirty = Dirty::CLEAN;
        if next.is_some() {
            self.area.as_mut_slice().fill(0);
        }
        ok
    }

    /// The merge's next run of exceptions (C:
    /// `persistent_prepare_merge()`): `None` once every exception is
    /// merged. An empty current area makes the one before it current,
    /// read from disk; `state` follows.
    pub(crate) fn prepare_merge(&mut self, state: &mut StoreState) -> Result<Option<Run>> {
        loop {
            match merge::step(state) {
                Step::Done => return Ok(None),
                Step::Scan => {
                    return merge::find_run(&self.layout, &self.area, state.current_committed)
                        .map(Some)
                        .map_err(|_| EINVAL)
                }
                Step::ReadArea(area) => {
                    let chunk = self.layout.area_location(area).ok_or(EINVAL)?;
                    let sectors = u64::from(self.layout.chunk().sectors());
                    self.io.read(
                        &self
                            .cow
                            .at(self.layout.chunk().first_sector(chunk), sectors),
                        &mut self.area,
                    )?;
                    // The area in memory is now the one on disk.
                    self.dirty = Dirty::CLEAN;
                    merge::stepped_back(state, &self.layout);
                }
            }
        }
    }

    /// The last `n` exceptions of the current area are merged: clears them
    /// and writes the area with flush and FUA (C:
    /// `persistent_commit_merge()`); `state` follows once it is on disk.
    pub(crate) fn commit_merge(&mut self, state: &mut StoreState, n: u64) -> Result {
        merge::clear_merged(&self.layout, &mut self.area, state.current_committed, n)
            .map_err(|_| EINVAL)?;
        let chunk = self
            .layout
            .area_location(state.current_area)
            .ok_or(EINVAL)?;
        write_chunk(
            &self.io,
            &self.cow,
            &self.layout,
            chunk,
            &self.area,
            WriteMode::FlushFua,
        )?;
        self.dirty = Dirty::CLEAN;
        merge::merged(state, &self.layout, n);
        Ok(())
    }

    /// The chunks batched by the last write, in commit order.
    pub(crate) fn batched(&self, n: u64) -> &[u64] {
        let n = (n as usize).min(self.batched.len());
        &self.batched[..n]
    }
}

/// Reads the header of a persistent store on `cow`: the chunk size the
/// store has (the table's `table_chunk`, or the default, for a new device;
/// the one on disk otherwise), and the header's state. Writes nothing.
/// `block` is the larger logical block size of the two devices.
fn read_header(
    io: &dm_io::Client,
    cow: &Device,
    table_chunk: Option<ChunkSize>,
    block: u32,
) -> Result<(ChunkSize, HeaderState), LoadError> {
    let first = match table_chunk {
        Some(c) => c,
        None => ChunkSize::new(DEFAULT_CHUNK_SECTORS.max(u64::from(cow.logical_block_size() >> 9)))
            .map_err(|e| LoadError::Metadata(MetadataError::BadChunkSize(0, e)))?,
    };
    let mut buf = chunk_buf(first)?;
    io.read(&cow.region(0, u64::from(first.sectors())), &mut buf)
        .map_err(LoadError::Io)?;
    let header = Header::decode(&buf)?;
    // As C, before the chunk size on disk is checked.
    if header.magic == SNAP_MAGIC && header.chunk_size != first.sectors() && table_chunk.is_some() {
        pr_warn!(
            "chunk size {} in device metadata overrides table chunk size of {}.\n",
            header.chunk_size,
            first.sectors()
        );
    }
    let state = check_header(&header, cow.sectors())?;
    let HeaderState::Existing { chunk, .. } = state else {
        return Ok((first, state));
    };
    if chunk != first {
        chunk
            .fits_block_size(block)
            .map_err(|e| LoadError::Metadata(MetadataError::BadChunkSize(chunk.sectors(), e)))?;
    }
    Ok((chunk, state))
}

/// The chunk size of the persistent store on `cow`, from its header alone
/// (see [`read_header`]): the constructor needs it before the table may
/// hold the device and [`load`] the store.
pub(crate) fn chunk_size(
    cow: &Device,
    table_chunk: Option<ChunkSize>,
    block: u32,
) -> Result<ChunkSize, LoadError> {
    let io = dm_io::Client::new().map_err(|_| LoadError::NoMem)?;
    Ok(read_header(&io, cow, table_chunk, block)?.0)
}

/// The header of a persistent store on `cow` that reads no metadata: the
/// store a table taking a live snapshot's exceptions over gives that
/// snapshot in exchange (C: the store `snapshot_ctr()` made, swapped by
/// `__handover_exceptions()`). Nothing is written unless it is invalidated.
pub(crate) fn unread_header(cow: &Device, chunk: ChunkSize) -> Result<Arc<HeaderSlot>, LoadError> {
    let layout = Layout::new(chunk, cow.sectors());
    HeaderSlot::new(HeaderWriter::new(cow.region(0, cow.sectors()), layout)?)
}

/// Reads (or, on a new device, writes) the metadata of a persistent store
/// on `cow` (C: `persistent_read_metadata()`). `table_chunk` is the chunk
/// size of the table, if it gave one; `block` the larger logical block size
/// of the two devices; `header` the store's header, written if the device
/// is new.
pub(crate) fn load(
    cow: &Device,
    table_chunk: Option<ChunkSize>,
    block: u32,
    header: &HeaderSlot,
) -> Result<Loaded, LoadError> {
    let io = dm_io::Client::new().map_err(|_| LoadError::NoMem)?;
    let cow_sectors = cow.sectors();
    let (first, state) = read_header(&io, cow, table_chunk, block)?;
    match state {
        HeaderState::New => {
            let layout = Layout::new(first, cow_sectors);
            let meta = Metadata::new(io, cow, layout)?;
            header.write_valid().map_err(LoadError::Io)?;
            meta.zero_area(0).map_err(LoadError::Io)?;
            Ok(Loaded {
                chunk: first,
                valid: true,
                state: StoreState::new(),
                complete: ExceptionTable::new(first.sector_to_chunk(cow_sectors))
                    .map_err(|_| LoadError::NoMem)?,
                meta,
            })
        }
        HeaderState::Existing { chunk, valid } => {
            let layout = Layout::new(chunk, cow_sectors);
            let mut meta = Metadata::new(io, cow, layout)?;
            let mut complete = ExceptionTable::new(chunk.sector_to_chunk(cow_sectors))
                .map_err(|_| LoadError::NoMem)?;
            if !valid {
                return Ok(Loaded {
                    chunk,
                    valid,
                    state: StoreState::new(),
                    complete,
                    meta,
                });
            }
            let mut area = chunk_buf(chunk)?;
            let mut loader = Loader::new(layout);
            while let Some(at) = loader.next_area()? {
                meta.io
                    .read(
                        &cow.region(chunk.first_sector(at), u64::from(chunk.sectors())),
                        &mut area,
                    )
                    .map_err(LoadError::Io)?;
                // `GFP_NOIO`, as C's `dm_add_exception()`: a table is
                // loaded while other devices of the stack may be
                // suspended, and reclaim must not wait for their I/O.
                // On a lockdep kernel it also spares each allocation the
                // reclaim bookkeeping that `GFP_KERNEL` brings.
                loader.feed(&area, |e: DiskException| {
                    complete
                        .insert(e.old_chunk, e.new_chunk, GFP_NOIO)
                        .map_err(|err| match err {
                            Insert::Held => LoadError::RepeatedChunk(e.old_chunk),
                            Insert::NoMem => LoadError::NoMem,
                        })
                })?;
            }
            let state = loader.finish();
            // The area being filled goes on from what is on disk (as C,
            // which keeps the last area read).
            meta.area.as_mut_slice().copy_from_slice(&area);
            Ok(Loaded {
                chunk,
                valid,
                state,
                complete,
                meta,
            })
        }
    }
}
