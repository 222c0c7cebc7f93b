//! Index files: CBOR `IndexFile` decoding, then building the in-memory `Index` from it.
#![no_main]

use hydrabackup::repo::blob::BlobType;
use hydrabackup::repo::index::{Index, IndexFile};
use hydrabackup::repo::object::{from_cbor, to_cbor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = from_cbor::<IndexFile>(data, "index file") else {
        return;
    };
    let again: IndexFile = from_cbor(&to_cbor(&f), "index file").expect("re-encoded index decodes");
    assert_eq!(again, f);
    let ix = Index::from_files([&f]);
    assert_eq!(ix.iter().count(), ix.len());
    // Records that do not decode are left out; every blob of the others is indexed.
    for p in f.packs.iter().filter(|p| p.entries().is_ok()) {
        for &(flags, id, ..) in &p.blobs {
            let kind = if flags & 1 != 0 {
                BlobType::Tree
            } else {
                BlobType::Data
            };
            let loc = ix.get(kind, &id).expect("every listed blob is indexed");
            assert!(ix.contains(kind, &id));
            assert!(ix.packs().contains(&loc.pack));
        }
    }
});
