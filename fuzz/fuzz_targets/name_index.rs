//! Name index blobs: `NameIndex::decode` and `NamePage::decode` on arbitrary plaintext, and the
//! page selection of a decoded root for a few patterns.
#![no_main]

use hydrabackup::repo::names::{NameIndex, NamePage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(root) = NameIndex::decode(data) {
        let again = NameIndex::decode(&root.encode()).expect("re-encoded root decodes");
        assert_eq!(again, root);
        let _ = root.len();
        for pats in [&["**".to_string()][..], &["a/b/*".to_string(), "[".to_string()][..]] {
            let _ = root.candidates(pats);
        }
    }
    if let Ok(page) = NamePage::decode(data) {
        let again = NamePage::decode(&page.encode()).expect("re-encoded page decodes");
        assert_eq!(again, page);
        let _ = page.reference(hydrabackup::Id([0; 32]));
    }
});
