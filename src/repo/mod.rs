//! The repository format: config, key files, packs, index, trees, snapshots and locks on top of
//! a [`Backend`]. Only this layer knows byte layouts (see `repo-format.md`).

pub mod blob;
pub mod cache;
pub mod compress;
pub mod config;
pub mod filter;
pub mod index;
pub mod keyfile;
pub mod lock;
pub mod names;
pub mod object;
pub mod pack;
pub mod snapshot;
pub mod tree;
pub mod writer;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use serde::{Serialize, de::DeserializeOwned};
use zeroize::Zeroizing;

use crate::backend::{Backend, FileKind};
use crate::crypto::{KdfParams, Keys, SealKey, fill_random};
use crate::{Error, Id, Result};
use blob::BlobType;
use config::{Config, FORMAT_VERSION};
use index::{Index, IndexFile};
use keyfile::KeyFile;
use snapshot::Snapshot;
use tree::Tree;

/// An open repository: backend, keys and config.
pub struct Repository {
    backend: Arc<dyn Backend>,
    keys: Keys,
    config: Config,
    key_name: String,
    master: Zeroizing<[u8; 32]>,
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
            keys: Keys::new(seal, config.id_key.0),
            backend,
            config,
            key_name,
            master,
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
        let (key_name, master) = found.ok_or(Error::WrongPassword)?;
        let seal = SealKey::new(&master);
        let config: Config = object::open_limited(
            &seal,
            &object::read_capped(backend.as_ref(), FileKind::Config, "config", None)?,
            "config",
            object::max_size(FileKind::Config),
        )?;
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
            keys: Keys::new(seal, config.id_key.0),
            backend,
            config,
            key_name,
            master,
            damaged: Mutex::default(),
            cache_root: None,
            cache: None,
        })
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
        let bytes = object::seal(self.keys.seal_key(), value);
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
        object::open_limited(self.keys.seal_key(), b, &what, object::max_size(kind))
    }

    /// Loads every index file (in parallel) into the shared in-memory index, superseded files
    /// as fallback copies. A damaged index file (or one forged by a client with append-only
    /// access) is skipped with a warning: `verify` reports it, and prune stops at it.
    /// Marked packs (repo-format.md §9a) come last, as a fallback.
    pub fn load_index(&self) -> Result<Index> {
        let index = index::reader_index(&self.load_readable_index_files()?);
        if let Some(c) = &self.cache {
            c.trim_trees(&index);
        }
        Ok(index)
    }

    /// The index a writer deduplicates against: only live packs (nothing a prune marked,
    /// repo-format.md §9a), so that no new snapshot comes to depend on a pack on its way out.
    pub fn load_live_index(&self) -> Result<Index> {
        Ok(index::live_index(&self.load_readable_index_files()?))
    }

    /// Every index file that loads, with its name: damaged ones are skipped with a warning,
    /// and files a prune deleted since the listing are passed over (only superseded files are
    /// deleted, and only once no reader that listed them before can still be running).
    pub fn load_readable_index_files(&self) -> Result<Vec<(String, IndexFile)>> {
        let names = self.backend.list(FileKind::Index)?;
        if let Some(c) = &self.cache {
            c.retain_index_files(&names);
        }
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
            let plain = key
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
        lock::acquire(self.backend.clone(), self.keys.seal_key(), kind, purpose)
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
                .and_then(|s| Ok((blob::open_blob(&self.keys, &loc.entry, &s)?, s)))
            {
                Ok((plain, sealed)) => {
                    if let Some(c) = cache {
                        c.missed();
                        c.save_tree(&loc.entry, &sealed);
                    }
                    return Ok(plain);
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
        blob::open_blob(&self.keys, &loc.entry, &self.read_sealed(loc)?)
    }

    /// Reads the sealed bytes of the copy of a blob at `loc`.
    fn read_sealed(&self, loc: &index::BlobLocation) -> Result<Vec<u8>> {
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

    /// Loads a tree blob.
    pub fn load_tree(&self, index: &Index, id: &Id) -> Result<Tree> {
        Tree::decode(&self.read_blob(index, BlobType::Tree, id)?)
    }

    /// Loads the root of a snapshot's name index.
    pub fn load_name_index(&self, index: &Index, id: &Id) -> Result<names::NameIndex> {
        names::NameIndex::decode(&self.read_blob(index, BlobType::Tree, id)?)
    }

    /// Loads one page of a name index.
    pub fn load_name_page(&self, index: &Index, id: &Id) -> Result<names::NamePage> {
        names::NamePage::decode(&self.read_blob(index, BlobType::Tree, id)?)
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
        write_key(self.backend.as_ref(), &self.master, password, kdf)
    }

    /// Removes a key file (readable or not); the last readable key cannot be removed.
    pub fn remove_key(&self, name: &str) -> Result<()> {
        if !self.key_names()?.iter().any(|n| n == name) {
            return Err(Error::NotFound(format!("key {name}")));
        }
        if !self.list_keys()?.iter().any(|(n, _)| n != name) {
            return Err(Error::InvalidInput(
                "refusing to remove the last key: the repository could never be opened again"
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
