//! The backup walk examines a folder's entries in inode order (cold caches read the inode
//! table in sequence) but stores trees in name order: the trees do not depend on the order in
//! which entries were created, listed or examined.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use hydrabackup::id::Id;
use hydrabackup::repo::Repository;
use hydrabackup::repo::index::Index;
use hydrabackup::repo::tree::Node;

/// Names created in the order `order` gives (a permutation of 0..120), so that inode numbers
/// follow that order: files and folders of files, with the same content and times whatever
/// the order.
fn populate(root: &Path, order: &[usize]) {
    let name = |i: usize| format!("n{:03}", (i * 37) % 120);
    for &i in order {
        let p = root.join(name(i));
        if i % 10 == 0 {
            for &j in order.iter().filter(|&&j| j < 12) {
                let q = p.join(format!("m{j:02}"));
                write(&q, format!("{i}/{j}").as_bytes());
                set_mtime(&q, 1_500_000_000 + j as i64, 0);
            }
        } else {
            write(&p, &random_bytes(i as u64, 100 + i * 50));
            set_mtime(&p, 1_600_000_000 + i as i64, 0);
        }
    }
    for i in (0..120).step_by(10) {
        set_mtime(&root.join(name(i)), 1_700_000_000, 0);
    }
}

/// Every entry below the tree `id` in the order the trees hold them: its path and its node
/// without inode number, change time and subtree id.
fn entries(repo: &Repository, index: &Index, id: &Id, at: &str, out: &mut Vec<(String, Node)>) {
    let tree = repo.load_tree(index, id).unwrap();
    let names: Vec<&[u8]> = tree.nodes.iter().map(|n| n.name.as_slice()).collect();
    assert!(names.is_sorted(), "a tree is in name order");
    for n in &tree.nodes {
        let path = format!("{at}/{}", String::from_utf8_lossy(&n.name));
        let mut m = n.clone();
        (m.inode, m.ctime_ns, m.subtree) = (0, 0, None);
        out.push((path.clone(), m));
        if let Some(s) = &n.subtree {
            entries(repo, index, s, &path, out);
        }
    }
}

#[test]
fn trees_do_not_depend_on_the_order_of_entries_in_a_folder() {
    let t = TestRepo::init();
    let (a, b) = (t.path("a"), t.path("b"));
    let forward: Vec<usize> = (0..120).collect();
    let scrambled: Vec<usize> = (0..120).map(|i| (i * 53 + 11) % 120).rev().collect();
    populate(&a, &forward);
    populate(&b, &scrambled);
    let sa = t.backup(&[&a]);
    let sb = t.backup(&[&b]);
    // The same folder walked again, every file re-read: the very same tree.
    let sa2 = t.backup_args(&[&a], &["--force"]);

    let backend: Arc<dyn hydrabackup::backend::Backend> =
        Arc::from(hydrabackup::backend::open(t.repo.to_str().unwrap()).unwrap());
    let repo = Repository::open(backend, t.password.as_bytes()).unwrap();
    let index = repo.load_index().unwrap();
    let root = |v: &serde_json::Value| {
        repo.find_snapshot(v["snapshot_id"].as_str().unwrap())
            .unwrap()
            .1
            .tree
    };
    assert_eq!(root(&sa), root(&sa2), "byte-identical trees of one folder");
    let (mut ea, mut eb) = (Vec::new(), Vec::new());
    entries(&repo, &index, &root(&sa), "", &mut ea);
    entries(&repo, &index, &root(&sb), "", &mut eb);
    assert_eq!(ea.len(), 120 + 12 * 12);
    assert_eq!(
        ea, eb,
        "same trees apart from inode numbers and change times"
    );
}
