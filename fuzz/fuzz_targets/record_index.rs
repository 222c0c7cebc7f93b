//! Logical capture's record index pages and block recipes: `decode_page` and `recipe::apply` on
//! arbitrary bytes never panic nor allocate beyond the input; a page that decodes lists strictly
//! ascending, non-empty keys; a recipe that applies gives a file that loads to its records.
#![no_main]

use hydrabackup::hyd::{FileHeader, LiveSet, Version, replay_bytes};
use hydrabackup::logical::{index, recipe};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = index::decode_page(data) {
        assert!(entries.iter().all(|e| !e.key.is_empty()));
        assert!(entries.windows(2).all(|w| w[0].key < w[1].key));
    }
    let live: LiveSet = (0..4u8).map(|i| (vec![b'k', i], vec![i; 3])).collect();
    let header = FileHeader::new(Version::V3, 0, 1).encode();
    if let Ok(file) = recipe::apply(&header, data, &live, None) {
        let r = replay_bytes(&file).expect("a recipe's file loads");
        assert!(r.live.iter().all(|(k, v)| live.get(k) == Some(v)));
    }
});
