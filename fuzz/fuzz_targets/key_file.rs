//! Key files (stored unsealed): `KeyFile::decode`, and opening the ones with cheap KDF
//! parameters (dearer ones are refused or merely slow by design, see `derive_key`).
#![no_main]

use hydrabackup::repo::keyfile::KeyFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(k) = KeyFile::decode(data) else { return };
    let bytes = k.encode();
    let again = KeyFile::decode(&bytes).expect("re-encoded key file decodes");
    assert_eq!(again.encode(), bytes);
    if k.kdf.mem_kib <= 256 && k.kdf.iterations <= 2 && k.kdf.parallelism <= 4 {
        let _ = k.open(b"password");
    }
});
