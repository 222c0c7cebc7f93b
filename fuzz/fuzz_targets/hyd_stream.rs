//! `.hyd` data: the streaming check (`check_stream`, `BlockCheck`) on arbitrary bytes never
//! panics, and agrees with the in-memory loader (`replay_bytes`) on whether they load.
#![no_main]

use hydrabackup::hyd::replay_bytes;
use hydrabackup::hyd::stream::check_stream;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let streamed = check_stream(data);
    let whole = replay_bytes(data);
    assert_eq!(streamed.is_ok(), whole.is_ok(), "{streamed:?} vs {whole:?}");
});
