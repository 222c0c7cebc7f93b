//! Sealed objects: `object::open` with a fixed key on arbitrary bytes (which fail
//! authentication), and on arbitrary plaintext sealed with that key, decoded as each kind of
//! sealed object (config, index file, snapshot, lock).
#![no_main]

use std::sync::LazyLock;

use hydrabackup::crypto::SealKey;
use hydrabackup::repo::config::Config;
use hydrabackup::repo::index::IndexFile;
use hydrabackup::repo::lock::LockInfo;
use hydrabackup::repo::object::{open, seal};
use hydrabackup::repo::snapshot::Snapshot;
use libfuzzer_sys::fuzz_target;

static KEY: LazyLock<SealKey> = LazyLock::new(|| SealKey::new(&[7; 32]));

fuzz_target!(|data: &[u8]| {
    let _ = open::<IndexFile>(&*KEY, data, "index");
    let sealed = KEY.seal(data);
    let _ = open::<Config>(&*KEY, &sealed, "config");
    let _ = open::<Snapshot>(&*KEY, &sealed, "snapshot");
    let _ = open::<LockInfo>(&*KEY, &sealed, "lock");
    if let Ok(f) = open::<IndexFile>(&*KEY, &sealed, "index") {
        let back: IndexFile = open(&*KEY, &seal(&*KEY, &f), "index").expect("round trip");
        assert_eq!(back, f);
    }
});
