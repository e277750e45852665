// SPDX-License-Identifier: GPL-2.0

//! Fuzzes the persistent store's metadata parser with whole COW devices:
//! the input is the device, its first bytes the header. Whatever the bytes,
//! loading must end in metadata or an error, never a panic, and every
//! exception it accepts must point into the device's data chunks.

#![no_main]

use dm_snap_host::dm_snap_core::disk::{check_header, Header, HeaderState, Layout, Loader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|dev: &[u8]| {
    let sectors = (dev.len() / 512) as u64;
    let Ok(header) = Header::decode(dev) else {
        return;
    };
    let Ok(HeaderState::Existing { chunk, .. }) = check_header(&header, sectors) else {
        return;
    };
    let layout = Layout::new(chunk, sectors);
    let cs = chunk.sectors() as usize * 512;
    let mut loader = Loader::new(layout);
    loop {
        let area = match loader.next_area() {
            Ok(Some(area)) => area as usize,
            _ => break,
        };
        let Some(buf) = dev.get(area * cs..(area + 1) * cs) else {
            break;
        };
        let fed = loader.feed::<dm_snap_host::dm_snap_core::disk::MetadataError>(buf, |e| {
            assert!(e.new_chunk < layout.dev_chunks());
            assert!(!layout.is_metadata(e.new_chunk));
            Ok(())
        });
        if fed.is_err() {
            break;
        }
    }
    let state = loader.finish();
    assert!(state.current_committed < layout.exceptions_per_area());
});
