//! Tree blobs: `Tree::decode` on arbitrary plaintext.
#![no_main]

use hydrabackup::repo::tree::Tree;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(t) = Tree::decode(data) else { return };
    let again = Tree::decode(&t.encode()).expect("re-encoded tree decodes");
    assert_eq!(again, t);
    for n in &t.nodes {
        let _ = n.name_lossy();
        let _ = t.find(&n.name);
    }
});
