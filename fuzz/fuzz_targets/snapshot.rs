//! Snapshots: `object::decode_plain::<Snapshot>` on arbitrary plaintext (format byte, then raw
//! or zstd-compressed CBOR).
#![no_main]

use hydrabackup::repo::object::{decode_plain, to_cbor};
use hydrabackup::repo::snapshot::Snapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = decode_plain::<Snapshot>(data, "snapshot") else {
        return;
    };
    let _ = s.timestamp();
    // Compare encodings rather than values: a decoded NaN duration is not equal to itself.
    let cbor = to_cbor(&s);
    let mut plain = vec![0u8];
    plain.extend_from_slice(&cbor);
    let again: Snapshot = decode_plain(&plain, "snapshot").expect("re-encoded snapshot decodes");
    assert_eq!(to_cbor(&again), cbor);
});
