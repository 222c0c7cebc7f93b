//! Logical capture's record index pages: `decode_page` on arbitrary bytes never panics nor
//! allocates beyond the input, and a page that decodes lists strictly ascending, non-empty keys.
#![no_main]

use hydrabackup::logical::index;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = index::decode_page(data) {
        assert!(entries.iter().all(|e| !e.key.is_empty()));
        assert!(entries.windows(2).all(|w| w[0].key < w[1].key));
    }
});
