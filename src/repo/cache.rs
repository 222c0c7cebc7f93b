//! The local cache of what commands re-read from a repository (README "Local cache",
//! repo-format.md §12), under [`crate::repo::Repository::cache_dir`]:
//!
//! - `snapshots/list`: every readable snapshot, opened, in one object sealed with the
//!   repository's key, so that listing 10,000 snapshots reads one local file and only the
//!   snapshots that are new;
//! - `objects/index/<name>`: index files as stored (remote repositories only);
//! - `trees/<2 hex>/<blob id>`: sealed tree blobs (remote repositories only), at most
//!   [`TREE_CACHE_MAX`] bytes, the oldest removed first.
//!
//! Nothing here is trusted over the repository: a cached index file is used only when its
//! bytes hash to its name, a tree blob only when it opens and its plaintext hashes to its id
//! (as from a pack), the snapshot list only when it authenticates with the repository's key,
//! and each only while the repository lists the object (a tree: while the index does);
//! anything else is dropped and read from the repository again.
//! Files are written to a temporary name and renamed, so processes sharing a cache never see a
//! partial file; failures to write are logged and otherwise ignored.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Id;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::crypto::{Keys, SealKey};
use crate::repo::blob::{BlobType, open_blob};
use crate::repo::index::Index;
use crate::repo::object;
use crate::repo::pack::PackEntry;

/// Bytes of tree blobs kept at most; past it the least recently written are removed.
pub const TREE_CACHE_MAX: u64 = 512 << 20;

/// The Cache Directory Tagging Specification's marker (https://bford.info/cachedir/).
const CACHEDIR_TAG: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by hydrabackup.\n\
# For information about cache directory tags see https://bford.info/cachedir/\n";

/// `snapshots/list`: a sealed object (repo-format.md §12).
#[derive(Serialize, Deserialize)]
struct SnapshotList {
    /// Each snapshot's name and the plaintext of its object (format byte and CBOR).
    entries: Vec<(String, ByteBuf)>,
}

/// How often the cache answered, counted for the log.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Objects and blobs served from the cache.
    pub hits: AtomicU64,
    /// Objects and blobs read from the repository (and then cached).
    pub misses: AtomicU64,
    /// Cached entries dropped because they failed their check.
    pub dropped: AtomicU64,
}

/// One repository's cache folder; see the module documentation.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
    remote: bool,
    /// Whether the root's `CACHEDIR.TAG` was checked.
    tagged: std::sync::atomic::AtomicBool,
    /// Counters since the repository was opened.
    pub stats: CacheStats,
}

impl Cache {
    /// The cache in `dir` (created as needed); `remote`: whether index files and trees are
    /// cached too (the snapshot list always is).
    pub fn new(dir: PathBuf, remote: bool) -> Cache {
        Cache {
            dir,
            remote,
            tagged: Default::default(),
            stats: CacheStats::default(),
        }
    }

    fn count(&self, c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a read from the repository.
    pub fn missed(&self) {
        self.count(&self.stats.misses);
    }

    /// The cached snapshots (name → the object's plaintext); empty when there is no list or
    /// it does not open with `key` (it is then rebuilt).
    pub fn snapshot_list(&self, key: &SealKey) -> HashMap<String, Vec<u8>> {
        let path = self.dir.join("snapshots").join("list");
        let Ok(bytes) = std::fs::read(&path) else {
            return HashMap::new();
        };
        match object::open::<SnapshotList>(key, &bytes, "cached snapshot list") {
            Ok(l) => l
                .entries
                .into_iter()
                .map(|(n, b)| (n, b.into_vec()))
                .collect(),
            Err(e) => {
                tracing::warn!("{e}; rebuilding it");
                self.count(&self.stats.dropped);
                HashMap::new()
            }
        }
    }

    /// Replaces the cached snapshot list with `entries` (name, plaintext), sealed with `key`.
    pub fn save_snapshot_list(&self, key: &SealKey, entries: Vec<(String, Vec<u8>)>) {
        let list = SnapshotList {
            entries: entries
                .into_iter()
                .map(|(n, b)| (n, ByteBuf::from(b)))
                .collect(),
        };
        self.write(
            &self.dir.join("snapshots").join("list"),
            &object::seal(key, &list),
        );
    }

    /// Counts snapshots served from the list and read from the repository.
    pub fn snapshots_used(&self, hits: usize, misses: usize) {
        self.stats.hits.fetch_add(hits as u64, Ordering::Relaxed);
        self.stats
            .misses
            .fetch_add(misses as u64, Ordering::Relaxed);
    }

    fn object_path(&self, name: &str) -> PathBuf {
        self.dir.join("objects").join("index").join(name)
    }

    /// A cached index file whose bytes hash to `name`; one that does not is removed.
    pub fn index_file(&self, name: &str) -> Option<Vec<u8>> {
        if !self.remote {
            return None;
        }
        let path = self.object_path(name);
        let bytes = std::fs::read(&path).ok()?;
        if Id::of_stored(&bytes).to_hex() == name {
            self.count(&self.stats.hits);
            return Some(bytes);
        }
        tracing::warn!("cached index file {name} does not match its name; dropped");
        self.count(&self.stats.dropped);
        let _ = std::fs::remove_file(&path);
        None
    }

    /// Caches an index file read from the repository (already checked against its name).
    pub fn save_index_file(&self, name: &str, bytes: &[u8]) {
        if self.remote {
            self.write(&self.object_path(name), bytes);
        }
    }

    /// Removes the cached index files the repository no longer lists.
    pub fn retain_index_files(&self, listed: &[(String, u64)]) {
        if !self.remote {
            return;
        }
        let Ok(rd) = std::fs::read_dir(self.dir.join("objects").join("index")) else {
            return;
        };
        let keep: std::collections::HashSet<&str> =
            listed.iter().map(|(n, _)| n.as_str()).collect();
        for e in rd.flatten() {
            let name = e.file_name();
            if !keep.contains(name.to_string_lossy().as_ref()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    fn tree_path(&self, id: &Id) -> PathBuf {
        let hex = id.to_hex();
        self.dir.join("trees").join(&hex[..2]).join(hex)
    }

    /// The plaintext of a cached tree blob, opened and checked against `id`; a cached copy
    /// that fails is removed.
    pub fn tree(&self, keys: &Keys, id: &Id) -> Option<Vec<u8>> {
        if !self.remote {
            return None;
        }
        let path = self.tree_path(id);
        let bytes = std::fs::read(&path).ok()?;
        let opened = (bytes.len() >= 5)
            .then(|| {
                let raw_len = u32::from_le_bytes(bytes[1..5].try_into().expect("4 bytes"));
                let e = PackEntry {
                    kind: BlobType::Tree,
                    id: *id,
                    offset: 0,
                    len: (bytes.len() - 5) as u32,
                    raw_len,
                    compressed: bytes[0] == 1,
                };
                open_blob(keys, &e, &bytes[5..]).ok()
            })
            .flatten();
        match opened {
            Some(plain) => {
                self.count(&self.stats.hits);
                Some(plain)
            }
            None => {
                tracing::warn!("cached tree {id} does not open or match its id; dropped");
                self.count(&self.stats.dropped);
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Caches a tree blob read from a pack (already opened and checked).
    pub fn save_tree(&self, e: &PackEntry, sealed: &[u8]) {
        if !self.remote {
            return;
        }
        let mut out = Vec::with_capacity(sealed.len() + 5);
        out.push(u8::from(e.compressed));
        out.extend_from_slice(&e.raw_len.to_le_bytes());
        out.extend_from_slice(sealed);
        self.write(&self.tree_path(&e.id), &out);
    }

    /// Removes cached trees the index does not list, then the oldest ones while the rest
    /// exceeds [`TREE_CACHE_MAX`] (down to three quarters of it).
    pub fn trim_trees(&self, index: &Index) {
        if !self.remote {
            return;
        }
        let mut kept = Vec::new();
        let mut total = 0u64;
        let Ok(fans) = std::fs::read_dir(self.dir.join("trees")) else {
            return;
        };
        for fan in fans.flatten() {
            let Ok(files) = std::fs::read_dir(fan.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name();
                let id = Id::from_hex(&name.to_string_lossy());
                let listed =
                    id.is_some_and(|id| index.copies(BlobType::Tree, &id).next().is_some());
                if !listed {
                    let _ = std::fs::remove_file(f.path());
                    continue;
                }
                if let Ok(m) = f.metadata() {
                    total += m.len();
                    kept.push((m.modified().ok(), m.len(), f.path()));
                }
            }
        }
        if total <= TREE_CACHE_MAX {
            return;
        }
        kept.sort();
        for (_, len, path) in kept {
            if total <= TREE_CACHE_MAX / 4 * 3 {
                break;
            }
            if std::fs::remove_file(path).is_ok() {
                total -= len;
            }
        }
    }

    /// Writes `bytes` to `path` through a temporary file and a rename; the first write also
    /// marks the cache root with a `CACHEDIR.TAG`, so backup tools (ours with
    /// `--exclude-caches`, restic, borg, tar) skip it.
    fn write(&self, path: &Path, bytes: &[u8]) {
        if let Some(root) = self.dir.parent()
            && !self.tagged.swap(true, Ordering::Relaxed)
            && !root.join("CACHEDIR.TAG").exists()
        {
            let _ = write_atomic(&root.join("CACHEDIR.TAG"), CACHEDIR_TAG);
        }
        if let Err(e) = write_atomic(path, bytes) {
            tracing::debug!("cache write {} failed: {e}", path.display());
        }
    }

    /// Logs the counters (at info, so `-v` shows them).
    pub fn log_stats(&self) {
        let s = &self.stats;
        tracing::info!(
            hits = s.hits.load(Ordering::Relaxed),
            misses = s.misses.load(Ordering::Relaxed),
            dropped = s.dropped.load(Ordering::Relaxed),
            "cache"
        );
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        let s = &self.stats;
        if s.hits.load(Ordering::Relaxed)
            + s.misses.load(Ordering::Relaxed)
            + s.dropped.load(Ordering::Relaxed)
            > 0
        {
            self.log_stats();
        }
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("cache paths have a parent");
    // Private, as restic's: the files are sealed, but their names and sizes are nobody's business.
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(dir)?;
    // A name no other process picks: a random suffix; a file left by a killed writer is
    // harmless (only whole names are ever read) and small.
    let tmp = dir.join(format!(".tmp-{}", Id::random().to_hex()));
    let r = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_list_round_trips_and_a_damaged_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::new(dir.path().to_path_buf(), false);
        let key = SealKey::new(&[7; 32]);
        let a = vec![1u8; 300];
        c.save_snapshot_list(&key, vec![("aa".into(), a.clone()), ("bb".into(), vec![])]);
        let got = c.snapshot_list(&key);
        assert_eq!(got.len(), 2);
        assert_eq!(got["aa"], a);
        assert!(got["bb"].is_empty());
        assert!(c.snapshot_list(&SealKey::new(&[8; 32])).is_empty());
        let path = dir.path().join("snapshots/list");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(c.snapshot_list(&key).is_empty());
    }
}
