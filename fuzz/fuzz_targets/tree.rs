//! Tree blobs: `Tree::decode` on arbitrary plaintext; what decodes has only safe, sorted,
//! unique names.
#![no_main]

use hydrabackup::repo::tree::{Tree, name_problem};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(t) = Tree::decode(data) else { return };
    let again = Tree::decode(&t.encode()).expect("re-encoded tree decodes");
    assert_eq!(again, t);
    assert!(t.nodes.windows(2).all(|w| w[0].name < w[1].name));
    for n in &t.nodes {
        assert_eq!(name_problem(&n.name), None);
        let _ = n.name_lossy();
        let _ = t.find(&n.name);
    }
});
