//! Blobs: `open_blob` with arbitrary `PackEntry` fields taken from the input, on the raw input
//! (fails authentication) and on the input's payload sealed with the fixed key, so that
//! decompression, the length check and the id check run on arbitrary payloads.
//!
//! Input: flags u8 (bit 0 tree, bit 1 compressed, bit 2 use the payload's real id),
//! raw_len u32, offset u32, len u32, id [u8; 32], then the payload.
#![no_main]

use std::sync::LazyLock;

use hydrabackup::Id;
use hydrabackup::crypto::{Keys, SealKey};
use hydrabackup::repo::blob::{BlobType, open_blob, seal_blob};
use hydrabackup::repo::pack::PackEntry;
use libfuzzer_sys::fuzz_target;

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys::new(SealKey::new(&[7; 32]), [9; 32]));

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 45 {
        return;
    }
    let (head, payload) = data.split_at(45);
    let flags = head[0];
    let kind = if flags & 1 != 0 {
        BlobType::Tree
    } else {
        BlobType::Data
    };
    let id = if flags & 4 != 0 {
        KEYS.blob_id(payload)
    } else {
        Id(head[13..45].try_into().expect("32 bytes"))
    };
    let e = PackEntry {
        kind,
        id,
        offset: u32_at(head, 5),
        len: u32_at(head, 9),
        raw_len: u32_at(head, 1),
        compressed: flags & 2 != 0,
    };
    let _ = open_blob(&KEYS, &e, data);
    let sealed = KEYS.seal_key().seal(payload);
    if let Ok(plain) = open_blob(&KEYS, &e, &sealed) {
        assert_eq!(plain.len(), e.raw_len as usize);
        assert_eq!(KEYS.blob_id(&plain), e.id);
    }

    // What seal_blob writes always opens again.
    let id = KEYS.blob_id(payload);
    let s = seal_blob(&KEYS, kind, id, payload, 1);
    let e = PackEntry {
        kind,
        id,
        offset: 0,
        len: s.sealed.len() as u32,
        raw_len: s.raw_len,
        compressed: s.compressed,
    };
    assert_eq!(
        open_blob(&KEYS, &e, &s.sealed).expect("own blob opens"),
        payload
    );
});
