//! Crafted repository objects for the attack tests: files, trees and snapshots written through
//! the library, with none of the checks a backup makes (names, order and kinds are as given).
#![allow(dead_code)]

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use hydrabackup::Id;
use hydrabackup::backend::FileKind;
use hydrabackup::repo::Repository;
use hydrabackup::repo::blob::{BlobType, seal_blob};
use hydrabackup::repo::snapshot::Snapshot;
use hydrabackup::repo::tree::{Node, NodeKind, Tree};
use hydrabackup::repo::writer::PackWriter;

/// Writes crafted blobs into an existing repository; [`Crafter::snapshot`] stores them and a
/// snapshot of the given root entries.
pub struct Crafter {
    repo: Repository,
    writer: PackWriter,
    sent: HashSet<(bool, Id)>,
}

/// A node of `kind` named `name` with plain metadata.
fn node(name: &[u8], kind: NodeKind, mode: u32) -> Node {
    Node {
        name: name.to_vec(),
        kind,
        mode,
        mtime_ns: 1_600_000_000_123_456_789,
        ctime_ns: 0,
        inode: 0,
        uid: 0,
        gid: 0,
        size: 0,
        content: Vec::new(),
        subtree: None,
        target: None,
        swamp: None,
    }
}

impl Crafter {
    /// Opens the repository at `repo` with `password`.
    pub fn open(repo: &Path, password: &str) -> Crafter {
        let backend = hydrabackup::backend::open(repo.to_str().expect("UTF-8 path")).unwrap();
        let repo = Repository::open(Arc::from(backend), password.as_bytes()).unwrap();
        let writer = PackWriter::new(&repo, 1, false);
        Crafter {
            repo,
            writer,
            sent: HashSet::new(),
        }
    }

    fn store(&mut self, kind: BlobType, bytes: &[u8]) -> Id {
        let id = self.repo.keys().blob_id(bytes);
        if self.sent.insert((kind == BlobType::Tree, id)) {
            let b = seal_blob(self.repo.keys(), kind, id, bytes, 0);
            self.writer.sender().send(b).expect("writer runs");
        }
        id
    }

    /// A regular file holding `data` (one blob).
    pub fn file(&mut self, name: &[u8], data: &[u8]) -> Node {
        let mut n = node(name, NodeKind::File, 0o640);
        if !data.is_empty() {
            n.content = vec![self.store(BlobType::Data, data)];
        }
        n.size = data.len() as u64;
        n
    }

    /// A symlink to `target`.
    pub fn symlink(&mut self, name: &[u8], target: &[u8]) -> Node {
        let mut n = node(name, NodeKind::Symlink, 0o777);
        n.target = Some(target.to_vec());
        n
    }

    /// Stores a tree of `nodes` exactly in the order given; returns its id.
    pub fn tree(&mut self, nodes: Vec<Node>) -> Id {
        let bytes = Tree { nodes }.encode();
        self.store(BlobType::Tree, &bytes)
    }

    /// A directory holding `nodes` (in the order given).
    pub fn dir(&mut self, name: &[u8], nodes: Vec<Node>) -> Node {
        let mut n = node(name, NodeKind::Dir, 0o750);
        n.subtree = Some(self.tree(nodes));
        n
    }

    /// A chain of `depth` directories named `name`, the deepest holding `bottom`.
    pub fn chain(&mut self, name: &[u8], depth: usize, bottom: Vec<Node>) -> Node {
        let mut n = self.dir(name, bottom);
        for _ in 1..depth {
            n = self.dir(name, vec![n]);
        }
        n
    }

    /// Stores everything and a snapshot whose root tree holds `root`; returns the snapshot id.
    pub fn snapshot(mut self, root: Vec<Node>) -> String {
        let tree = self.tree(root);
        self.writer.finish(false).expect("blobs stored");
        let snap = Snapshot {
            time: jiff::Timestamp::now().to_string(),
            host: "crafted".into(),
            user: "attacker".into(),
            paths: vec!["/crafted".into()],
            tags: Vec::new(),
            excludes: Vec::new(),
            parent: None,
            tree,
            summary: Default::default(),
            catalogue: None,
            names: None,
            original: None,
            program: "crafted".into(),
        };
        self.repo
            .save_object(FileKind::Snapshot, &snap)
            .expect("snapshot stored")
            .to_hex()
    }
}
