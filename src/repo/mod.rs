//! The repository format: config, key files, packs, index, trees, snapshots and locks on top of
//! a [`Backend`]. Only this layer knows byte layouts (see `repo-format.md`).

pub mod blob;
pub mod cache;
pub mod compress;
pub mod config;
pub mod filter;
pub mod idset;
pub mod index;
pub mod index_map;
pub mod keyfile;
pub mod lock;
pub mod names;
pub mod object;
pub mod pack;
pub mod sendlog;
pub mod snapshot;
pub mod tree;
pub mod writer;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use serde::{Serialize, de::DeserializeOwned};
use zeroize::Zeroizing;

use crate::backend::{Backend, FileKind};
use crate::crypto::{self, KdfParams, Keys, SealKey, fill_random};
use crate::{Error, Id, Result};
use blob::BlobType;
use config::{Config, FORMAT_VERSION};
use index::{Index, IndexFile};
use keyfile::{KeyFile, KeySecrets, WriteOnlySecrets};
use sendlog::SendLog;
use snapshot::Snapshot;
use tree::Tree;

/// An open repository: backend, keys and config.
pub struct Repository {
    backend: Arc<dyn Backend>,
    keys: Keys,
    config: Config,
    key_name: String,
    /// The master key; `None` when a write-only key opened the repository.
    master: Option<Zeroizing<[u8; 32]>>,
    /// Keys of the packs whose blobs a write-only session sealed, learnt from their headers
    /// (`None`: the pack is sealed with the master key).
    pack_keys: Mutex<HashMap<Id, Option<Keys>>>,
    /// Snapshots skipped so far because they do not open or decode: name → reason.
    damaged: Mutex<BTreeMap<String, String>>,
    /// Root of the local caches (see [`Repository::with_cache_root`]); `None`: no cache.
    cache_root: Option<PathBuf>,
    /// The cache of snapshots, index files and trees in [`Repository::cache_dir`].
    cache: Option<cache::Cache>,
}

/// A snapshot read by [`Repository::snapshots`]: its name, the snapshot and its object's
/// plaintext (or why not), and whether it came from the local cache.
type LoadedSnapshot = (String, Result<(Snapshot, Vec<u8>)>, bool);

/// A snapshot file that was skipped because it does not open or decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DamagedSnapshot {
    /// Its name (the id it claims).
    pub id: String,
    /// What is wrong with it.
    pub error: String,
}

/// Whether the config's `.hyd` chunking parameters are ones a backup can work with
/// (repo-format.md §3): a forged config must not make chunks empty, endless or too large to hold.
fn hyd_chunking_is_valid(c: &Config) -> bool {
    let h = &c.hyd_chunker;
    (64..=1 << 24).contains(&h.max) && h.min <= h.max && (1..=1 << 24).contains(&h.avg)
}

/// Whether `e` says the object is not there (removed between a listing and a read).
pub(crate) fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::Backend { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

impl Repository {
    /// Creates a new repository with fresh secrets and one key for `password`.
    pub fn init(
        backend: Arc<dyn Backend>,
        password: &[u8],
        kdf: KdfParams,
        config: Config,
    ) -> Result<Repository> {
        if backend.exists()? {
            return Err(Error::RepoExists(backend.location()));
        }
        if !config.chunker.is_valid()
            || !hyd_chunking_is_valid(&config)
            || config.pack_size < 1 << 16
            || config.pack_size > 1 << 30
        {
            return Err(Error::InvalidInput(
                "invalid chunker or pack parameters".into(),
            ));
        }
        kdf.check().map_err(Error::InvalidInput)?;
        if let Some(l) = &config.object_lock {
            if l.retention_secs == 0 {
                return Err(Error::InvalidInput("the retention must be positive".into()));
            }
            // Before anything is written: `create` makes the bucket with Object Lock.
            backend.set_object_lock(Some(l.lock()))?;
        }
        backend.create()?;
        let mut master = Zeroizing::new([0u8; 32]);
        fill_random(master.as_mut());
        let key_name = write_key(backend.as_ref(), &master, password, kdf)?;
        let seal = SealKey::new(&master);
        // The config is written last: its presence is what makes the repository exist.
        backend.write(FileKind::Config, "config", &object::seal(&seal, &config))?;
        Ok(Repository {
            keys: Keys::full(&master, config.id_key.0),
            backend,
            config,
            key_name,
            master: Some(master),
            pack_keys: Mutex::default(),
            damaged: Mutex::default(),
            cache_root: None,
            cache: None,
        })
    }

    /// Opens a repository with `password`, trying every key file (see [`Repository::open_with`]).
    pub fn open(backend: Arc<dyn Backend>, password: &[u8]) -> Result<Repository> {
        Self::open_with(backend, password, None)
    }

    /// Opens a repository with `password`. With `key_hint` (a key name prefix) only that key
    /// file is tried. Otherwise every key file that decodes with parameters in bounds is tried,
    /// cheapest Argon2 cost first, so a planted key file can neither lock out the real ones nor
    /// make opening dearer than they are; key files that are damaged or out of bounds are
    /// skipped with a warning.
    pub fn open_with(
        backend: Arc<dyn Backend>,
        password: &[u8],
        key_hint: Option<&str>,
    ) -> Result<Repository> {
        if !backend.exists()? {
            return Err(Error::RepoNotFound(backend.location()));
        }
        let mut names = backend.list(FileKind::Key)?;
        if let Some(hint) = key_hint {
            names.retain(|(n, _)| n.starts_with(hint));
            match names.len() {
                0 => return Err(Error::NotFound(format!("key {hint}"))),
                1 => {}
                n => {
                    return Err(Error::InvalidInput(format!(
                        "key prefix {hint} is ambiguous ({n} matches)"
                    )));
                }
            }
        }
        let mut candidates = Vec::new();
        for (name, size) in names {
            match object::read_capped(backend.as_ref(), FileKind::Key, &name, Some(size))
                .and_then(|b| KeyFile::decode(&b))
            {
                Ok(kf) => candidates.push((name, kf)),
                Err(e) if is_not_found(&e) => {}
                Err(e @ Error::Corrupt { .. }) => tracing::warn!("key {name} skipped: {e}"),
                Err(e) => return Err(e),
            }
        }
        if candidates.is_empty() {
            return Err(Error::corrupt(
                "repository keys",
                "no key file is readable, so no password can open the repository",
            ));
        }
        candidates.sort_by(|a, b| a.1.kdf.cost().cmp(&b.1.kdf.cost()).then(a.0.cmp(&b.0)));
        let mut found = None;
        for (name, kf) in candidates {
            tracing::debug!("trying key {name}");
            match kf.open(password) {
                Ok(m) => {
                    found = Some((name, m));
                    break;
                }
                Err(Error::WrongPassword) => continue,
                Err(e) => tracing::warn!("key {name} skipped: {e}"),
            }
        }
        let (key_name, secrets) = found.ok_or(Error::WrongPassword)?;
        let (config, keys, master) = match secrets {
            KeySecrets::Full(master) => {
                let config: Config = object::open_limited(
                    &SealKey::new(&master),
                    &object::read_capped(backend.as_ref(), FileKind::Config, "config", None)?,
                    "config",
                    object::max_size(FileKind::Config),
                )?;
                let keys = Keys::full(&master, config.id_key.0);
                (config, keys, Some(master))
            }
            // A write-only key carries the config (it cannot open the stored one) and starts a
            // session sealed to the repository's public key.
            KeySecrets::WriteOnly(w) => {
                let keys = Keys::write_only(w.config.id_key.0, &w.lock_key.0, &w.public_key.0);
                (w.config, keys, None)
            }
        };
        if config.version != FORMAT_VERSION {
            return Err(Error::InvalidInput(format!(
                "repository format version {} is not supported by this hydrabackup (knows {FORMAT_VERSION})",
                config.version
            )));
        }
        if !config.chunker.is_valid() {
            return Err(Error::corrupt("config", "invalid chunker parameters"));
        }
        if !hyd_chunking_is_valid(&config) {
            return Err(Error::corrupt("config", "invalid hyd_chunker parameters"));
        }
        if let Some(l) = &config.object_lock
            && let Err(e) = backend.set_object_lock(Some(l.lock()))
        {
            // A copy of the bucket on other storage stays readable; what is written there is
            // not locked (and `verify` lists it).
            tracing::warn!("{e}: objects written here are not locked");
        }
        Ok(Repository {
            keys,
            backend,
            config,
            key_name,
            master,
            pack_keys: Mutex::default(),
            damaged: Mutex::default(),
            cache_root: None,
            cache: None,
        })
    }

    /// Whether a write-only key opened the repository: it can back up (with the send log for
    /// a parent and deduplication) and nothing else.
    pub fn is_write_only(&self) -> bool {
        self.master.is_none()
    }

    /// Refuses with [`Error::WriteOnlyKey`] when a write-only key opened the repository: the
    /// one check of every command but `backup` and `watch`.
    pub fn require_full_key(&self) -> Result<()> {
        match self.is_write_only() {
            true => Err(Error::WriteOnlyKey(self.key_name[..12].to_string())),
            false => Ok(()),
        }
    }

    /// The send log of a write-only key (in the cache folder), if this is one and caching is on.
    pub fn send_log(&self) -> Option<SendLog> {
        match self.is_write_only() {
            true => self.cache_dir().map(|d| SendLog::new(d.join("write-only"))),
            false => None,
        }
    }

    /// The parent of a write-only backup: the snapshot `spec` names (an id prefix) or the newest
    /// one of `host` and `paths`, among those the send log recorded (with their root trees) and
    /// the repository lists.
    pub fn write_only_parent(
        &self,
        spec: Option<&str>,
        host: &str,
        paths: &[String],
    ) -> Result<Option<(Id, Snapshot)>> {
        let Some(log) = self.send_log() else {
            tracing::warn!(
                "no cache folder: a write-only backup has no parent and stores all data"
            );
            return Ok(None);
        };
        let listed: HashSet<String> = self
            .backend
            .list(FileKind::Snapshot)?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let mut snaps = log.snapshots(&listed);
        // A parent is only useful with its root tree at hand.
        snaps.retain(|(_, s)| log.tree(&self.keys, &s.tree).is_ok());
        match spec {
            Some(p) => {
                let p = p.to_ascii_lowercase();
                snaps.retain(|(id, _)| p == "latest" || id.to_hex().starts_with(&p));
                match snaps.len() {
                    0 => Err(Error::NotFound(format!(
                        "snapshot {p} among those this machine stored with the write-only key"
                    ))),
                    _ if p == "latest" => Ok(snaps.pop()),
                    1 => Ok(snaps.pop()),
                    n => Err(Error::InvalidInput(format!(
                        "snapshot prefix {p} is ambiguous ({n} matches)"
                    ))),
                }
            }
            None => Ok(snaps
                .into_iter()
                .rev()
                .find(|(_, s)| s.host == host && s.paths == paths)),
        }
    }

    /// Records a snapshot a write-only backup stored, and keeps the send log to the newest
    /// snapshot of each host and path set.
    pub fn record_write_only_snapshot(&self, id: &Id, snap: &Snapshot) -> Result<()> {
        let Some(log) = self.send_log() else {
            return Ok(());
        };
        log.record_snapshot(id, snap);
        let listed: HashSet<String> = self
            .backend
            .list(FileKind::Snapshot)?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        log.retain_latest(&self.keys, &log.snapshots(&listed));
        Ok(())
    }

    /// The storage backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The keys.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Lets this repository keep local, rebuildable caches under `root/<repository id>/`
    /// (`None`: no caches, as on a read-only or fresh machine). A cache is an optimisation
    /// only: what is read from it is checked against the repository, never trusted over it.
    pub fn with_cache_root(mut self, root: Option<PathBuf>) -> Self {
        self.cache_root = root;
        let remote = !self.backend.is_local();
        self.cache = self.cache_dir().map(|d| cache::Cache::new(d, remote));
        self
    }

    /// This repository's own cache folder (`<cache root>/<repository id>`), if caching is on.
    /// It may not exist yet; users create what they need inside it.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        self.cache_root
            .as_ref()
            .map(|r| r.join(self.config.id.to_string()))
    }

    /// Name of the key file that opened the repository.
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    /// Seals and stores an object under the hash of its bytes; returns that id.
    pub fn save_object<T: Serialize>(&self, kind: FileKind, value: &T) -> Result<Id> {
        let bytes = object::seal(&self.keys, value);
        let id = Id::of_stored(&bytes);
        self.backend.write(kind, &id.to_hex(), &bytes)?;
        Ok(id)
    }

    /// Reads, checks (size cap, name = hash of bytes) and opens an object.
    pub fn load_object<T: DeserializeOwned>(&self, kind: FileKind, name: &str) -> Result<T> {
        self.load_sized(kind, name, None)
    }

    /// [`Repository::load_object`] with the object's size from a listing, if known.
    fn load_sized<T: DeserializeOwned>(
        &self,
        kind: FileKind,
        name: &str,
        listed: Option<u64>,
    ) -> Result<T> {
        self.require_full_key()?;
        let cache = self.cache.as_ref().filter(|_| kind == FileKind::Index);
        if let Some(bytes) = cache.and_then(|c| c.index_file(name)) {
            return self.open_stored(kind, name, &bytes);
        }
        let bytes = self.fetch(kind, name, listed)?;
        let value = self.open_stored(kind, name, &bytes)?;
        if let Some(c) = cache {
            c.missed();
            c.save_index_file(name, &bytes);
        }
        Ok(value)
    }

    /// Reads an object from the repository and checks it against its name (size cap first).
    fn fetch(&self, kind: FileKind, name: &str, listed: Option<u64>) -> Result<Vec<u8>> {
        let bytes = object::read_capped(self.backend.as_ref(), kind, name, listed)?;
        if Id::of_stored(&bytes).to_hex() != name {
            return Err(Error::corrupt(
                format!("{} {name}", kind.label()),
                "content does not match its name",
            ));
        }
        Ok(bytes)
    }

    /// Opens the stored bytes of an object (already checked against its name).
    fn open_stored<T: DeserializeOwned>(&self, kind: FileKind, name: &str, b: &[u8]) -> Result<T> {
        let what = format!("{} {name}", kind.label());
        object::open_limited(&self.keys, b, &what, object::max_size(kind))
    }

    /// Loads every index file (in parallel) into the shared in-memory index readers use,
    /// superseded files as fallback copies and marked packs (repo-format.md §9a) last. A damaged
    /// index file (or one forged by a client with append-only access) is skipped with a
    /// warning: `verify` reports it, and prune stops at it. With a cache folder, the live
    /// tables are memory-mapped from the index map ([`index_map`]) made for exactly this set of
    /// index files (written after loading them when there is none, not when one was damaged),
    /// and the few records only readers use follow them as a heap fallback.
    ///
    /// With a write-only key it is the send log's index of what this machine stored, limited to
    /// the packs the repository lists (empty without a cache folder).
    pub fn load_index(&self) -> Result<Index> {
        if self.is_write_only() {
            return self.write_only_index();
        }
        let (index, _) = self.load_index_view(true)?;
        if let Some(c) = &self.cache {
            c.trim_trees(&index);
        }
        Ok(index)
    }

    /// The index a writer deduplicates against: only live packs (nothing a prune marked,
    /// repo-format.md §9a), so that no new snapshot comes to depend on a pack on its way out.
    /// Memory-mapped from the index map when there is a cache folder (without its fallback).
    pub fn load_live_index(&self) -> Result<Index> {
        if self.is_write_only() {
            return self.write_only_index();
        }
        Ok(self.load_live_index_named()?.0)
    }

    /// [`Repository::load_live_index`] with the names of the index files it was made from.
    pub fn load_live_index_named(&self) -> Result<(Index, Vec<String>)> {
        self.load_index_view(false)
    }

    /// The reader index (`reader`) or the live index, with the names of the index files it
    /// was made from: from the index map when it matches (or can be extended to match) the
    /// listed index files, else from the index files (then writing the map).
    fn load_index_view(&self, reader: bool) -> Result<(Index, Vec<String>)> {
        let names = self.backend.list(FileKind::Index)?;
        if let Some(c) = &self.cache {
            c.retain_index_files(&names);
        }
        let view = |live: Index, fallback: Vec<index::IndexPack>| match reader {
            true => live.with_fallback(Index::from_records(&fallback)),
            false => live,
        };
        let listed = || {
            names
                .iter()
                .map(|(n, _)| n.clone())
                .collect::<Vec<String>>()
        };
        let map = self
            .cache_dir()
            .map(|d| (index_map::path(&d), index_map::key(&names)));
        if let Some((path, key)) = &map {
            match index_map::open(path, key, &names) {
                index_map::Opened::Exact(ix, fallback) => {
                    tracing::info!(files = names.len(), "index mapped");
                    return Ok((view(ix, fallback), listed()));
                }
                index_map::Opened::Older(older, fallback, missing) => {
                    if let Some((ix, fallback)) =
                        self.extend_map(path, key, &names, &older, fallback, &missing)?
                    {
                        return Ok((view(ix, fallback), listed()));
                    }
                }
                index_map::Opened::None => {}
            }
        }
        let files = self.read_index_files(&names)?;
        let loaded: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
        if let Some((path, key)) = map
            && files.len() == names.len()
        {
            let live = index::live_index(&files);
            let fallback = index::reader_fallback(&files);
            if let Err(e) = index_map::save(&path, &key, &names, &live, &fallback) {
                tracing::debug!("index map not written: {e}");
            }
            if !reader {
                return Ok((live, loaded));
            }
        }
        let index = match reader {
            true => index::reader_index(&files),
            false => index::live_index(&files),
        };
        Ok((index, loaded))
    }

    /// Extends the index map of some of the index files (`older`, with the readers' `fallback`)
    /// with the `missing` ones and maps the result; `None` when it cannot be (a missing file
    /// supersedes or marks others, or does not load, or the map cannot be written): the index
    /// files are then loaded as usual.
    fn extend_map(
        &self,
        path: &std::path::Path,
        key: &Id,
        names: &[(String, u64)],
        older: &Index,
        fallback: Vec<index::IndexPack>,
        missing: &[(String, u64)],
    ) -> Result<Option<(Index, Vec<index::IndexPack>)>> {
        let loaded: Vec<Option<IndexFile>> = missing
            .par_iter()
            .map(
                |(n, size)| match self.load_sized::<IndexFile>(FileKind::Index, n, Some(*size)) {
                    Ok(f) => Ok(Some(f)),
                    Err(Error::Corrupt { .. }) => Ok(None),
                    Err(e) if is_not_found(&e) => Ok(None),
                    Err(e) => Err(e),
                },
            )
            .collect::<Result<_>>()?;
        let Some(files) = loaded
            .into_iter()
            .map(|f| f.filter(|f| f.supersedes.is_empty() && f.marked.is_empty()))
            .collect::<Option<Vec<IndexFile>>>()
        else {
            return Ok(None);
        };
        // None supersedes another, so they come in name order, as `by_priority` puts them; all
        // are effective, so their packs are live (a backup may have taken marked packs back:
        // those leave the readers' fallback).
        let mut named: Vec<(&String, &IndexFile)> =
            missing.iter().map(|(n, _)| n).zip(&files).collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        let newer = Index::from_files(named.into_iter().map(|(_, f)| f));
        let now_live: std::collections::HashSet<Id> = files
            .iter()
            .flat_map(|f| f.packs.iter().map(|p| p.id))
            .collect();
        let fallback: Vec<index::IndexPack> = fallback
            .into_iter()
            .filter(|p| !now_live.contains(&p.id))
            .collect();
        if let Err(e) = index_map::save_merged(path, key, names, older, &newer, &fallback) {
            tracing::debug!("index map not extended: {e}");
            return Ok(None);
        }
        Ok(match index_map::open(path, key, names) {
            index_map::Opened::Exact(ix, fallback) => {
                tracing::info!(files = names.len(), added = missing.len(), "index mapped");
                Some((ix, fallback))
            }
            _ => None,
        })
    }

    /// A write-only key's index: the send log's records of packs the repository still lists
    /// (empty without a cache folder). It cannot see a prune's marks (repo-format.md §2a).
    fn write_only_index(&self) -> Result<Index> {
        let Some(log) = self.send_log() else {
            return Ok(Index::default());
        };
        let packs: HashSet<Id> = self
            .backend
            .list(FileKind::Pack)?
            .into_iter()
            .filter_map(|(n, _)| Id::from_hex(&n))
            .collect();
        Ok(log.index(&packs))
    }

    /// Every index file that loads, with its name: damaged ones are skipped with a warning,
    /// and files a prune deleted since the listing are passed over (only superseded files are
    /// deleted, and only once no reader that listed them before can still be running).
    pub fn load_readable_index_files(&self) -> Result<Vec<(String, IndexFile)>> {
        let names = self.backend.list(FileKind::Index)?;
        if let Some(c) = &self.cache {
            c.retain_index_files(&names);
        }
        self.read_index_files(&names)
    }

    /// The listed index files that load (see [`Repository::load_readable_index_files`]).
    fn read_index_files(&self, names: &[(String, u64)]) -> Result<Vec<(String, IndexFile)>> {
        let loaded: Vec<Option<(String, IndexFile)>> = names
            .par_iter()
            .map(
                |(n, size)| match self.load_sized(FileKind::Index, n, Some(*size)) {
                    Ok(f) => Ok(Some((n.clone(), f))),
                    Err(e @ Error::Corrupt { .. }) => {
                        tracing::warn!("{e}; skipped");
                        Ok(None)
                    }
                    Err(e) if is_not_found(&e) => Ok(None),
                    Err(e) => Err(e),
                },
            )
            .collect::<Result<_>>()?;
        let files: Vec<(String, IndexFile)> = loaded.into_iter().flatten().collect();
        tracing::info!(files = files.len(), "index loaded");
        Ok(files)
    }

    /// Loads every index file with its name; a damaged one is an error (prune stops at it).
    /// A file deleted since the listing is passed over.
    pub fn load_index_files(&self) -> Result<Vec<(String, IndexFile)>> {
        let names = self.backend.list(FileKind::Index)?;
        if let Some(c) = &self.cache {
            c.retain_index_files(&names);
        }
        let loaded: Vec<Option<(String, IndexFile)>> = names
            .par_iter()
            .map(
                |(n, size)| match self.load_sized::<IndexFile>(FileKind::Index, n, Some(*size)) {
                    Ok(f) => Ok(Some((n.clone(), f))),
                    Err(e) if is_not_found(&e) => Ok(None),
                    Err(e) => Err(e),
                },
            )
            .collect::<Result<_>>()?;
        Ok(loaded.into_iter().flatten().collect())
    }

    /// All readable snapshots, oldest first. A snapshot file that does not open or decode is
    /// skipped and remembered (see [`Repository::damaged_snapshots`]): one bad object, which
    /// any append-only client can store, must not stop every command.
    pub fn snapshots(&self) -> Result<Vec<(Id, Snapshot)>> {
        self.require_full_key()?;
        let names = self.backend.list(FileKind::Snapshot)?;
        let key = self.keys.seal_key();
        let mut cached = self
            .cache
            .as_ref()
            .map(|c| c.snapshot_list(key))
            .unwrap_or_default();
        let listed_before = cached.len();
        // A cached snapshot counts only while the repository lists its name.
        let (mut hits, mut misses) = (Vec::new(), Vec::new());
        for (n, size) in names {
            match cached.remove(&n) {
                Some(plain) => hits.push((n, size, plain)),
                None => misses.push((n, size)),
            }
        }
        let decode = |n: &str, plain: &[u8]| -> Result<Snapshot> {
            let what = format!("snapshot {n}");
            object::decode_limited(plain, &what, object::max_size(FileKind::Snapshot))
        };
        let fetch = |n: &str, size: u64| -> Result<(Snapshot, Vec<u8>)> {
            let bytes = self.fetch(FileKind::Snapshot, n, Some(size))?;
            let plain = self
                .keys
                .open(&bytes)
                .map_err(|e| Error::corrupt(format!("snapshot {n}"), e.to_string()))?;
            Ok((decode(n, &plain)?, plain))
        };
        let loaded: Vec<LoadedSnapshot> = hits
            .into_par_iter()
            .map(|(n, size, plain)| match decode(&n, &plain) {
                Ok(s) => (n, Ok((s, plain)), true),
                Err(_) => {
                    let r = fetch(&n, size);
                    (n, r, false)
                }
            })
            .chain(misses.into_par_iter().map(|(n, size)| {
                let r = fetch(&n, size);
                (n, r, false)
            }))
            .collect();
        let fetched = loaded.iter().filter(|(_, _, hit)| !hit).count();
        let loaded_hits = loaded.len() - fetched;
        let mut v = Vec::new();
        let mut keep = Vec::new();
        let mut damaged = self.damaged.lock().expect("damaged snapshots");
        for (n, r, _) in loaded {
            match (r, Id::from_hex(&n)) {
                (Ok((s, b)), Some(id)) => {
                    keep.push((n, b));
                    v.push((id, s));
                }
                (Ok(_), None) => {
                    damaged.insert(n, "bad name".into());
                }
                (Err(Error::Corrupt { reason, .. }), _) => {
                    damaged.insert(n, reason);
                }
                (Err(e), _) if is_not_found(&e) => {}
                (Err(e), _) => return Err(e),
            }
        }
        if let Some(c) = &self.cache {
            c.snapshots_used(loaded_hits, fetched);
            if fetched > 0 || keep.len() != listed_before {
                c.save_snapshot_list(key, keep);
            }
        }
        v.sort_by_cached_key(|(id, s)| (s.timestamp(), *id));
        tracing::info!(
            snapshots = v.len(),
            fetched,
            damaged = damaged.len(),
            "snapshots read"
        );
        Ok(v)
    }

    /// The snapshots skipped so far by [`Repository::snapshots`] because they are damaged,
    /// sorted by name.
    pub fn damaged_snapshots(&self) -> Vec<DamagedSnapshot> {
        self.damaged
            .lock()
            .expect("damaged snapshots")
            .iter()
            .map(|(id, error)| DamagedSnapshot {
                id: id.clone(),
                error: error.clone(),
            })
            .collect()
    }

    /// Drops a removed snapshot from the damaged ones [`Repository::damaged_snapshots`] reports.
    pub fn forget_damaged(&self, name: &str) {
        self.damaged.lock().expect("damaged snapshots").remove(name);
    }

    /// Resolves `latest` or a unique id prefix to a snapshot.
    pub fn find_snapshot(&self, spec: &str) -> Result<(Id, Snapshot)> {
        if spec == "latest" {
            return self
                .snapshots()?
                .pop()
                .ok_or_else(|| Error::NotFound("snapshot (the repository has none)".into()));
        }
        if spec.is_empty() || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidInput(format!(
                "{spec:?} is not a snapshot id: give a hex id prefix or `latest`"
            )));
        }
        let spec = spec.to_ascii_lowercase();
        let matches: Vec<(String, u64)> = self
            .backend
            .list(FileKind::Snapshot)?
            .into_iter()
            .filter(|(n, _)| n.starts_with(&spec))
            .collect();
        match matches.as_slice() {
            [(one, size)] => {
                let id = Id::from_hex(one)
                    .ok_or_else(|| Error::corrupt(format!("snapshot {one}"), "bad name"))?;
                Ok((id, self.load_sized(FileKind::Snapshot, one, Some(*size))?))
            }
            [] => Err(Error::NotFound(format!("snapshot {spec}"))),
            _ => Err(Error::InvalidInput(format!(
                "snapshot prefix {spec} is ambiguous ({} matches)",
                matches.len()
            ))),
        }
    }

    /// The newest snapshot taken at or before `t`.
    pub fn find_snapshot_at(&self, t: jiff::Timestamp) -> Result<(Id, Snapshot)> {
        self.snapshots()?
            .into_iter()
            .rev()
            .find(|(_, s)| s.timestamp() <= t)
            .ok_or_else(|| Error::NotFound(format!("snapshot at or before {t}")))
    }

    /// Takes a shared or exclusive lock for the duration of an operation.
    pub fn lock(&self, exclusive: bool, purpose: &str) -> Result<lock::LockGuard> {
        let kind = if exclusive {
            lock::LockKind::Exclusive
        } else {
            lock::LockKind::Shared
        };
        self.lock_kind(kind, purpose)
    }

    /// Takes a lock of any [`lock::LockKind`] for the duration of an operation.
    pub fn lock_kind(&self, kind: lock::LockKind, purpose: &str) -> Result<lock::LockGuard> {
        lock::acquire(self.backend.clone(), &self.keys, kind, purpose)
    }

    /// Reads one blob through the index, checking its id; a copy that fails its check is
    /// passed over for the next copy the index lists.
    pub fn read_blob(&self, index: &Index, kind: BlobType, id: &Id) -> Result<Vec<u8>> {
        self.read_blob_copy(index, kind, id, None)
    }

    /// Reads a blob from any copy but the one in `skip` (which the caller found damaged).
    pub fn read_blob_copy(
        &self,
        index: &Index,
        kind: BlobType,
        id: &Id,
        skip: Option<&Id>,
    ) -> Result<Vec<u8>> {
        let cache = self
            .cache
            .as_ref()
            .filter(|_| kind == BlobType::Tree && skip.is_none());
        let mut first_error = None;
        for loc in index.copies(kind, id).filter(|l| Some(&l.pack) != skip) {
            if let Some(plain) = cache.and_then(|c| c.tree(&self.keys, id)) {
                return Ok(plain);
            }
            match self
                .read_sealed(&loc)
                .and_then(|s| Ok((self.open_blob_in(&loc.pack, &loc.entry, &s)?, s)))
            {
                Ok(((payload, plain), sealed)) => {
                    if let Some(c) = cache {
                        c.missed();
                        // The cache opens trees with the master key: one a write-only
                        // session sealed is sealed again for it.
                        let session = matches!(
                            self.pack_keys.lock().expect("pack keys").get(&loc.pack),
                            Some(Some(_))
                        );
                        match session {
                            true => c.save_tree(&loc.entry, &self.keys.seal_key().seal(&payload)),
                            false => c.save_tree(&loc.entry, &sealed),
                        }
                    }
                    return Ok(plain.unwrap_or(payload));
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| {
            let why = match skip {
                Some(_) => "no other copy is indexed",
                None => "it is in no index",
            };
            Error::corrupt(format!("blob {id}"), why)
        }))
    }

    /// Reads and checks the copy of a blob at `loc`.
    pub fn read_blob_at(&self, loc: &index::BlobLocation) -> Result<Vec<u8>> {
        let (payload, plain) = self.open_blob_in(&loc.pack, &loc.entry, &self.read_sealed(loc)?)?;
        Ok(plain.unwrap_or(payload))
    }

    /// Reads the sealed bytes of the copy of a blob at `loc` (refused with a write-only key).
    fn read_sealed(&self, loc: &index::BlobLocation) -> Result<Vec<u8>> {
        self.require_full_key()?;
        let e = loc.entry;
        self.backend
            .read_range(
                FileKind::Pack,
                &loc.pack.to_hex(),
                e.offset as u64,
                e.len as u64,
            )
            .map_err(|err| match err {
                Error::Backend { source, .. }
                    if source.kind() == std::io::ErrorKind::UnexpectedEof =>
                {
                    Error::corrupt(
                        format!("pack {}", loc.pack),
                        format!("truncated: it ends before blob {}", e.id),
                    )
                }
                other => other,
            })
    }

    /// Opens and checks a blob read from `pack` (see [`blob::open_checked`]): with the master
    /// key, or, in a pack a write-only session wrote, with that session's key, which the pack's
    /// header carries (read once per pack and remembered).
    pub fn open_blob_in(
        &self,
        pack: &Id,
        e: &pack::PackEntry,
        sealed: &[u8],
    ) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
        let known = self.pack_keys.lock().expect("pack keys").get(pack).cloned();
        match known {
            Some(Some(keys)) => blob::open_checked(&keys, e, sealed),
            Some(None) => blob::open_checked(&self.keys, e, sealed),
            None => match blob::open_checked(&self.keys, e, sealed) {
                Err(err @ Error::Corrupt { .. }) => match self.session_keys(pack) {
                    Some(keys) => blob::open_checked(&keys, e, sealed),
                    None => Err(err),
                },
                r => r,
            },
        }
    }

    /// The keys of a pack a write-only session wrote, from its sealed header (`None`: another
    /// pack, or a header that does not open, whose blobs then fail their own checks). What the
    /// header says is remembered; a read that failed is not (it may succeed later).
    fn session_keys(&self, pack: &Id) -> Option<Keys> {
        let name = pack.to_hex();
        let size = self.backend.size(FileKind::Pack, &name).ok()?;
        let tail = self
            .backend
            .read_range(FileKind::Pack, &name, size.checked_sub(4)?, 4)
            .ok()?;
        let hl = u32::from_le_bytes(tail[..4].try_into().ok()?) as u64;
        let sealed = match size.checked_sub(4 + hl) {
            Some(start) => self
                .backend
                .read_range(FileKind::Pack, &name, start, hl)
                .ok()?,
            None => Vec::new(),
        };
        let found = crypto::envelope::envelope_of(&sealed)
            .and_then(|_| pack::open_header(&self.keys, &sealed).ok()?.1);
        self.pack_keys
            .lock()
            .expect("pack keys")
            .insert(*pack, found.clone());
        found
    }

    /// Loads a tree blob (with a write-only key: from the send log, the only trees it can read).
    pub fn load_tree(&self, index: &Index, id: &Id) -> Result<Tree> {
        Tree::decode(&self.tree_blob(index, id)?)
    }

    /// The plaintext of a tree blob (trees, name index roots and pages): with a write-only key
    /// from the send log.
    pub fn tree_blob(&self, index: &Index, id: &Id) -> Result<Vec<u8>> {
        if let Some(log) = self.send_log() {
            return log.tree(&self.keys, id);
        }
        self.read_blob(index, BlobType::Tree, id)
    }

    /// Notes a tree blob of the snapshot being written, for the next backup's parent: with a
    /// write-only key in the send log; nothing otherwise.
    pub fn note_tree(&self, id: &Id, bytes: &[u8]) {
        if let Some(log) = self.send_log() {
            log.record_tree(id, bytes);
        }
    }

    /// Loads the root of a snapshot's name index.
    pub fn load_name_index(&self, index: &Index, id: &Id) -> Result<names::NameIndex> {
        names::NameIndex::decode(&self.tree_blob(index, id)?)
    }

    /// Loads one page of a name index.
    pub fn load_name_page(&self, index: &Index, id: &Id) -> Result<names::NamePage> {
        names::NamePage::decode(&self.tree_blob(index, id)?)
    }

    /// All key files that decode, with their names; the others are skipped with a warning
    /// (they open nothing, and `key remove` can still remove them by name).
    pub fn list_keys(&self) -> Result<Vec<(String, KeyFile)>> {
        let mut v = Vec::new();
        for (name, size) in self.backend.list(FileKind::Key)? {
            match object::read_capped(self.backend.as_ref(), FileKind::Key, &name, Some(size))
                .and_then(|b| KeyFile::decode(&b))
            {
                Ok(kf) => v.push((name, kf)),
                Err(e) if is_not_found(&e) => {}
                Err(e @ Error::Corrupt { .. }) => tracing::warn!("key {name} skipped: {e}"),
                Err(e) => return Err(e),
            }
        }
        Ok(v)
    }

    /// The names of all key files, readable or not.
    pub fn key_names(&self) -> Result<Vec<String>> {
        Ok(self
            .backend
            .list(FileKind::Key)?
            .into_iter()
            .map(|(n, _)| n)
            .collect())
    }

    /// Adds a key file for another password; returns its name.
    pub fn add_key(&self, password: &[u8], kdf: KdfParams) -> Result<String> {
        let master = self.full_master()?;
        write_key(self.backend.as_ref(), master, password, kdf)
    }

    /// Adds a write-only key for another password (repo-format.md §2a); returns its name.
    pub fn add_write_only_key(&self, password: &[u8], kdf: KdfParams) -> Result<String> {
        let master = self.full_master()?;
        let secrets = WriteOnlySecrets {
            config: self.config.clone(),
            public_key: Id(crypto::envelope::repository_public(master)),
            lock_key: Id(*crypto::envelope::lock_key(master)),
        };
        let bytes = KeyFile::create_write_only(&secrets, password, kdf)?.encode();
        let name = Id::of_stored(&bytes).to_hex();
        self.backend.write(FileKind::Key, &name, &bytes)?;
        Ok(name)
    }

    fn full_master(&self) -> Result<&[u8; 32]> {
        self.require_full_key()?;
        Ok(self
            .master
            .as_deref()
            .expect("a full key has the master key"))
    }

    /// Removes a key file (readable or not); the last readable full key cannot be removed.
    pub fn remove_key(&self, name: &str) -> Result<()> {
        self.require_full_key()?;
        if !self.key_names()?.iter().any(|n| n == name) {
            return Err(Error::NotFound(format!("key {name}")));
        }
        if !self
            .list_keys()?
            .iter()
            .any(|(n, k)| n != name && !k.is_write_only())
        {
            return Err(Error::InvalidInput(
                "refusing to remove the last full key: the repository could never be read again"
                    .into(),
            ));
        }
        self.backend.remove(FileKind::Key, name)
    }
}

fn write_key(
    backend: &dyn Backend,
    master: &[u8; 32],
    password: &[u8],
    kdf: KdfParams,
) -> Result<String> {
    let bytes = KeyFile::create(master, password, kdf)?.encode();
    let name = Id::of_stored(&bytes).to_hex();
    backend.write(FileKind::Key, &name, &bytes)?;
    Ok(name)
}
