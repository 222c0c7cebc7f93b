//! The repository format: config, key files, packs, index, trees, snapshots and locks on top of
//! a [`Backend`]. Only this layer knows byte layouts (see `repo-format.md`).

pub mod blob;
pub mod compress;
pub mod config;
pub mod filter;
pub mod index;
pub mod index_map;
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
}

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
fn is_not_found(e: &Error) -> bool {
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
        Ok(Repository {
            keys: Keys::new(seal, config.id_key.0),
            backend,
            config,
            key_name,
            master,
            damaged: Mutex::default(),
            cache_root: None,
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
        let bytes = object::read_capped(self.backend.as_ref(), kind, name, listed)?;
        let what = format!("{} {name}", kind.label());
        if Id::of_stored(&bytes).to_hex() != name {
            return Err(Error::corrupt(what, "content does not match its name"));
        }
        object::open_limited(self.keys.seal_key(), &bytes, &what, object::max_size(kind))
    }

    /// Loads every index file (in parallel) into the shared in-memory index, superseded files
    /// as fallback copies. A damaged index file (or one forged by a client with append-only
    /// access) is skipped with a warning: `verify` reports it, and prune stops at it. With a
    /// cache folder, the merged index is memory-mapped from the index map
    /// ([`index_map`]) made for exactly this set of index files, written after loading them
    /// when there is none (not when one was damaged).
    pub fn load_index(&self) -> Result<Index> {
        let names = self.backend.list(FileKind::Index)?;
        let map = self
            .cache_dir()
            .map(|d| (index_map::path(&d), index_map::key(&names)));
        if let Some((path, key)) = &map {
            match index_map::open(path, key, &names) {
                index_map::Opened::Exact(ix) => {
                    tracing::info!(files = names.len(), "index mapped");
                    return Ok(ix);
                }
                index_map::Opened::Older(older, missing) => {
                    if let Some(ix) = self.extend_map(path, key, &names, &older, &missing)? {
                        return Ok(ix);
                    }
                }
                index_map::Opened::None => {}
            }
        }
        let loaded: Vec<Option<(String, IndexFile)>> = names
            .par_iter()
            .map(|(n, _)| match self.load_object(FileKind::Index, n) {
                Ok(f) => Ok(Some((n.clone(), f))),
                Err(e @ Error::Corrupt { .. }) => {
                    tracing::warn!("{e}; skipped");
                    Ok(None)
                }
                Err(e) => Err(e),
            })
            .collect::<Result<_>>()?;
        let files: Vec<(String, IndexFile)> = loaded.into_iter().flatten().collect();
        tracing::info!(files = files.len(), "index loaded");
        let index = Index::from_files(index::by_priority(&files).map(|(_, f)| f));
        if let Some((path, key)) = map
            && files.len() == names.len()
            && let Err(e) = index_map::save(&path, &key, &names, &index)
        {
            tracing::debug!("index map not written: {e}");
        }
        Ok(index)
    }

    /// Extends the index map of some of the index files (`older`) with the `missing` ones and
    /// maps the result; `None` when it cannot be (a missing file supersedes others or does not
    /// load, or the map cannot be written): the index files are then loaded as usual.
    fn extend_map(
        &self,
        path: &std::path::Path,
        key: &Id,
        names: &[(String, u64)],
        older: &Index,
        missing: &[(String, u64)],
    ) -> Result<Option<Index>> {
        let loaded: Vec<Option<IndexFile>> = missing
            .par_iter()
            .map(
                |(n, size)| match self.load_sized::<IndexFile>(FileKind::Index, n, Some(*size)) {
                    Ok(f) => Ok(Some(f)),
                    Err(Error::Corrupt { .. }) => Ok(None),
                    Err(e) => Err(e),
                },
            )
            .collect::<Result<_>>()?;
        let Some(files) = loaded
            .into_iter()
            .map(|f| f.filter(|f| f.supersedes.is_empty()))
            .collect::<Option<Vec<IndexFile>>>()
        else {
            return Ok(None);
        };
        // None supersedes another, so they come in name order, as `by_priority` puts them.
        let mut named: Vec<(&String, &IndexFile)> =
            missing.iter().map(|(n, _)| n).zip(&files).collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        let newer = Index::from_files(named.into_iter().map(|(_, f)| f));
        if let Err(e) = index_map::save_merged(path, key, names, older, &newer) {
            tracing::debug!("index map not extended: {e}");
            return Ok(None);
        }
        Ok(match index_map::open(path, key, names) {
            index_map::Opened::Exact(ix) => {
                tracing::info!(files = names.len(), added = missing.len(), "index mapped");
                Some(ix)
            }
            _ => None,
        })
    }

    /// Loads every index file with its name.
    pub fn load_index_files(&self) -> Result<Vec<(String, IndexFile)>> {
        let names = self.backend.list(FileKind::Index)?;
        names
            .par_iter()
            .map(|(n, size)| {
                Ok((
                    n.clone(),
                    self.load_sized::<IndexFile>(FileKind::Index, n, Some(*size))?,
                ))
            })
            .collect()
    }

    /// All readable snapshots, oldest first. A snapshot file that does not open or decode is
    /// skipped and remembered (see [`Repository::damaged_snapshots`]): one bad object, which
    /// any append-only client can store, must not stop every command.
    pub fn snapshots(&self) -> Result<Vec<(Id, Snapshot)>> {
        let names = self.backend.list(FileKind::Snapshot)?;
        let loaded: Vec<(String, Result<Snapshot>)> = names
            .par_iter()
            .map(|(n, size)| {
                let s = self.load_sized::<Snapshot>(FileKind::Snapshot, n, Some(*size));
                (n.clone(), s)
            })
            .collect();
        let mut v = Vec::new();
        let mut damaged = self.damaged.lock().expect("damaged snapshots");
        for (n, r) in loaded {
            match (r, Id::from_hex(&n)) {
                (Ok(s), Some(id)) => v.push((id, s)),
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
        v.sort_by(|a, b| a.1.timestamp().cmp(&b.1.timestamp()).then(a.0.cmp(&b.0)));
        tracing::info!(
            snapshots = v.len(),
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
        lock::acquire(
            self.backend.clone(),
            self.keys.seal_key(),
            exclusive,
            purpose,
        )
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
        let mut first_error = None;
        for loc in index.copies(kind, id).filter(|l| Some(&l.pack) != skip) {
            match self.read_blob_at(&loc) {
                Ok(plain) => return Ok(plain),
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
        let e = loc.entry;
        let sealed = self
            .backend
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
            })?;
        blob::open_blob(&self.keys, &e, &sealed)
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
