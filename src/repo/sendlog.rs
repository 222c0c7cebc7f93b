//! The send log of a write-only key (repo-format.md §2a): what this machine stored with it,
//! kept locally because a write-only key cannot read the repository back. It holds the index
//! records the backups wrote (so known blobs are not stored again), the tree blobs of the last
//! snapshot of each host and path set, and those snapshots (so the next backup has a parent).
//!
//! It lives in the repository's cache folder (`write-only/`). Like every cache it is checked
//! against the repository, never trusted over it: a record counts only while the pack (or
//! snapshot) it names is listed there, and a tree only when it hashes to its id. Deleting it is
//! safe: the next backup has no parent and stores its data again.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::crypto::Keys;
use crate::repo::index::{Index, IndexFile};
use crate::repo::names::NameIndex;
use crate::repo::object::{from_cbor, to_cbor};
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::Tree;
use crate::{Error, Id, Result};

const INDEX: &str = "index";
const TREES: &str = "trees";
const SNAPSHOTS: &str = "snapshots";

/// A write-only key's local record of what it stored.
#[derive(Debug, Clone)]
pub struct SendLog {
    dir: PathBuf,
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl SendLog {
    /// The send log in `dir` (created when first written).
    pub fn new(dir: PathBuf) -> SendLog {
        SendLog { dir }
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, kind: &str, id: &Id) -> PathBuf {
        self.dir.join(kind).join(id.to_hex())
    }

    /// Writes a record whole (temporary name, then rename), in folders only the user can read.
    fn write(&self, kind: &str, id: &Id, bytes: &[u8]) -> std::io::Result<()> {
        let folder = self.dir.join(kind);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&folder)?;
        let tmp = folder.join(format!(
            ".tmp.{}.{}",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.path(kind, id))
    }

    /// A failed write costs only deduplication later: it is warned about, never fatal.
    fn note(&self, what: &str, r: std::io::Result<()>) {
        if let Err(e) = r {
            tracing::warn!(
                "could not record {what} in the send log {}: {e}",
                self.dir.display()
            );
        }
    }

    /// Records an index file this machine stored.
    pub fn record_index(&self, id: &Id, f: &IndexFile) {
        self.note("an index file", self.write(INDEX, id, &to_cbor(f)));
    }

    /// Records a tree blob (plaintext) of a snapshot this machine stores.
    pub fn record_tree(&self, id: &Id, bytes: &[u8]) {
        if !self.path(TREES, id).exists() {
            self.note("a tree", self.write(TREES, id, bytes));
        }
    }

    /// Records a snapshot this machine stored.
    pub fn record_snapshot(&self, id: &Id, snap: &Snapshot) {
        self.note("the snapshot", self.write(SNAPSHOTS, id, &to_cbor(snap)));
    }

    /// The records of one kind that decode, by id (a torn or foreign file is skipped).
    fn records<T: serde::de::DeserializeOwned>(&self, kind: &str) -> Vec<(Id, T)> {
        let Ok(rd) = std::fs::read_dir(self.dir.join(kind)) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| {
                let id = Id::from_hex(e.file_name().to_str()?)?;
                let bytes = std::fs::read(e.path()).ok()?;
                Some((id, from_cbor(&bytes, kind).ok()?))
            })
            .collect()
    }

    /// The index of the blobs this machine stored in packs the repository still lists
    /// (`packs`); records whose packs are all gone (pruned) are dropped.
    pub fn index(&self, packs: &HashSet<Id>) -> Index {
        let mut files: Vec<IndexFile> = Vec::new();
        for (id, mut f) in self.records::<IndexFile>(INDEX) {
            f.packs.retain(|p| packs.contains(&p.id));
            if f.packs.is_empty() {
                let _ = std::fs::remove_file(self.path(INDEX, &id));
            } else {
                files.push(f);
            }
        }
        Index::from_files(&files)
    }

    /// A tree blob recorded here, checked against its id.
    pub fn tree(&self, keys: &Keys, id: &Id) -> Result<Vec<u8>> {
        let bytes = std::fs::read(self.path(TREES, id))
            .map_err(|_| Error::NotFound(format!("tree {id} in the send log")))?;
        if keys.blob_id(&bytes) != *id {
            return Err(Error::corrupt(
                format!("tree {id} in the send log"),
                "content does not match its id",
            ));
        }
        Ok(bytes)
    }

    /// The snapshots recorded here that the repository still lists (`listed`), oldest first.
    pub fn snapshots(&self, listed: &HashSet<String>) -> Vec<(Id, Snapshot)> {
        let mut v: Vec<(Id, Snapshot)> = self
            .records::<Snapshot>(SNAPSHOTS)
            .into_iter()
            .filter(|(id, _)| listed.contains(&id.to_hex()))
            .collect();
        v.sort_by(|a, b| a.1.timestamp().cmp(&b.1.timestamp()).then(a.0.cmp(&b.0)));
        v
    }

    /// Keeps the newest snapshot of each host and path set among `snaps` and the trees they
    /// reach; removes every other snapshot and tree record.
    pub fn retain_latest(&self, keys: &Keys, snaps: &[(Id, Snapshot)]) {
        let mut kept: Vec<&(Id, Snapshot)> = Vec::new();
        for s in snaps.iter().rev() {
            if !kept
                .iter()
                .any(|k| k.1.host == s.1.host && k.1.paths == s.1.paths)
            {
                kept.push(s);
            }
        }
        let keep_ids: HashSet<Id> = kept.iter().map(|s| s.0).collect();
        for (id, _) in self.records::<Snapshot>(SNAPSHOTS) {
            if !keep_ids.contains(&id) {
                let _ = std::fs::remove_file(self.path(SNAPSHOTS, &id));
            }
        }
        let mut reach = HashSet::new();
        let mut stack: Vec<Id> = kept.iter().map(|s| s.1.tree).collect();
        while let Some(id) = stack.pop() {
            if !reach.insert(id) {
                continue;
            }
            if let Ok(t) = self.tree(keys, &id).and_then(|b| Tree::decode(&b)) {
                stack.extend(t.nodes.iter().filter_map(|n| n.subtree));
            }
        }
        for s in &kept {
            if let Some(root) = s.1.names {
                reach.insert(root);
                if let Ok(n) = self.tree(keys, &root).and_then(|b| NameIndex::decode(&b)) {
                    reach.extend(n.pages.iter().map(|p| p.id));
                }
            }
        }
        let Ok(rd) = std::fs::read_dir(self.dir.join(TREES)) else {
            return;
        };
        for e in rd.flatten() {
            // Temporaries (another run's records being written) are left alone.
            let name = e.file_name();
            let unused = name
                .to_str()
                .and_then(Id::from_hex)
                .is_some_and(|id| !reach.contains(&id));
            if unused {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
