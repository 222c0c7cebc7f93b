//! The repository format: config, key files, packs, index, trees, snapshots and locks on top of
//! a [`Backend`]. Only this layer knows byte layouts (see `repo-format.md`).

pub mod blob;
pub mod compress;
pub mod config;
pub mod index;
pub mod keyfile;
pub mod lock;
pub mod names;
pub mod object;
pub mod pack;
pub mod snapshot;
pub mod tree;
pub mod writer;

use std::sync::Arc;

use rayon::prelude::*;
use serde::{Serialize, de::DeserializeOwned};

use crate::backend::{Backend, FileKind};
use crate::crypto::{KdfParams, Keys, SealKey, fill_random};
use crate::{Error, Id, Result};
use blob::BlobType;
use config::{Config, FORMAT_VERSION};
use index::{Index, IndexFile};
use keyfile::KeyFile;
use snapshot::Snapshot;
use tree::Tree;

/// This machine's host name.
pub fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// The current user's name.
pub fn username() -> String {
    std::env::var("USER").unwrap_or_else(|_| {
        // SAFETY: getuid has no preconditions.
        format!("uid{}", unsafe { libc::getuid() })
    })
}

/// An open repository: backend, keys and config.
pub struct Repository {
    backend: Arc<dyn Backend>,
    keys: Keys,
    config: Config,
    key_name: String,
    master: [u8; 32],
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
        if !config.chunker.is_valid() || config.pack_size < 1 << 16 || config.pack_size > 1 << 30 {
            return Err(Error::InvalidInput(
                "invalid chunker or pack parameters".into(),
            ));
        }
        backend.create()?;
        let mut master = [0u8; 32];
        fill_random(&mut master);
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
        })
    }

    /// Opens a repository with `password`, trying every key file.
    pub fn open(backend: Arc<dyn Backend>, password: &[u8]) -> Result<Repository> {
        if !backend.exists()? {
            return Err(Error::RepoNotFound(backend.location()));
        }
        let mut found = None;
        for (name, _) in backend.list(FileKind::Key)? {
            let Ok(kf) = backend
                .read(FileKind::Key, &name)
                .and_then(|b| KeyFile::decode(&b))
            else {
                continue;
            };
            match kf.open(password) {
                Ok(m) => {
                    found = Some((name, m));
                    break;
                }
                Err(Error::WrongPassword) => continue,
                Err(e) => return Err(e),
            }
        }
        let (key_name, master) = found.ok_or(Error::WrongPassword)?;
        let seal = SealKey::new(&master);
        let config: Config =
            object::open(&seal, &backend.read(FileKind::Config, "config")?, "config")?;
        if config.version != FORMAT_VERSION {
            return Err(Error::InvalidInput(format!(
                "repository format version {} is not supported by this hydrabackup (knows {FORMAT_VERSION})",
                config.version
            )));
        }
        if !config.chunker.is_valid() {
            return Err(Error::corrupt("config", "invalid chunker parameters"));
        }
        Ok(Repository {
            keys: Keys::new(seal, config.id_key.0),
            backend,
            config,
            key_name,
            master,
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

    /// Reads, checks (name = hash of bytes) and opens an object.
    pub fn load_object<T: DeserializeOwned>(&self, kind: FileKind, name: &str) -> Result<T> {
        let bytes = self.backend.read(kind, name)?;
        let what = format!("{} {name}", kind.label());
        if Id::of_stored(&bytes).to_hex() != name {
            return Err(Error::corrupt(what, "content does not match its name"));
        }
        object::open(self.keys.seal_key(), &bytes, &what)
    }

    /// Loads every index file (in parallel) into the shared in-memory index, superseded files
    /// as fallback copies. A damaged index file (or one forged by a client with append-only
    /// access) is skipped with a warning: `verify` reports it, and prune stops at it.
    pub fn load_index(&self) -> Result<Index> {
        let names = self.backend.list(FileKind::Index)?;
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
        Ok(Index::from_files(
            index::by_priority(&files).map(|(_, f)| f),
        ))
    }

    /// Loads every index file with its name.
    pub fn load_index_files(&self) -> Result<Vec<(String, IndexFile)>> {
        let names = self.backend.list(FileKind::Index)?;
        names
            .par_iter()
            .map(|(n, _)| {
                Ok((
                    n.clone(),
                    self.load_object::<IndexFile>(FileKind::Index, n)?,
                ))
            })
            .collect()
    }

    /// All snapshots, oldest first.
    pub fn snapshots(&self) -> Result<Vec<(Id, Snapshot)>> {
        let names = self.backend.list(FileKind::Snapshot)?;
        let mut v: Vec<(Id, Snapshot)> = names
            .par_iter()
            .map(|(n, _)| {
                let id = Id::from_hex(n)
                    .ok_or_else(|| Error::corrupt(format!("snapshot {n}"), "bad name"))?;
                Ok((id, self.load_object::<Snapshot>(FileKind::Snapshot, n)?))
            })
            .collect::<Result<_>>()?;
        v.sort_by(|a, b| a.1.timestamp().cmp(&b.1.timestamp()).then(a.0.cmp(&b.0)));
        Ok(v)
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
        let matches: Vec<String> = self
            .backend
            .list(FileKind::Snapshot)?
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| n.starts_with(&spec))
            .collect();
        match matches.as_slice() {
            [one] => {
                let id = Id::from_hex(one)
                    .ok_or_else(|| Error::corrupt(format!("snapshot {one}"), "bad name"))?;
                Ok((id, self.load_object(FileKind::Snapshot, one)?))
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
        let sealed = self.backend.read_range(
            FileKind::Pack,
            &loc.pack.to_hex(),
            e.offset as u64,
            e.len as u64,
        )?;
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

    /// All key files with their names.
    pub fn list_keys(&self) -> Result<Vec<(String, KeyFile)>> {
        let mut v = Vec::new();
        for (name, _) in self.backend.list(FileKind::Key)? {
            let kf = KeyFile::decode(&self.backend.read(FileKind::Key, &name)?)
                .map_err(|_| Error::corrupt(format!("key {name}"), "does not decode"))?;
            v.push((name, kf));
        }
        Ok(v)
    }

    /// Adds a key file for another password; returns its name.
    pub fn add_key(&self, password: &[u8], kdf: KdfParams) -> Result<String> {
        write_key(self.backend.as_ref(), &self.master, password, kdf)
    }

    /// Removes a key file; the last key cannot be removed.
    pub fn remove_key(&self, name: &str) -> Result<()> {
        let keys = self.list_keys()?;
        if !keys.iter().any(|(n, _)| n == name) {
            return Err(Error::NotFound(format!("key {name}")));
        }
        if keys.len() <= 1 {
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
