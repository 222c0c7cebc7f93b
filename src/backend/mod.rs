//! Byte storage for a repository. One small trait addressed by (file kind, name); everything
//! above this layer speaks in those terms and never in paths.
//!
//! A backend is one folder (or file) here implementing [`Backend`] over its transport, taking
//! its settings in an options struct (never from the environment: the CLI reads that once) and
//! marking failures worth repeating as transient; [`open_with`] wraps it in the one retry layer
//! ([`Retry`]). Every backend passes the conformance suite in `tests/backend_conformance.rs`.

mod http;
mod limit;
mod local;
mod memory;
mod objlock;
mod rest;
mod retry;
pub mod s3;
pub mod sftp;

pub use limit::{Bucket, Limited, Limits};
pub use local::LocalBackend;
pub use memory::MemoryBackend;
pub use objlock::{LockMode, ObjectLock, Purged, parse_retention};
pub use rest::{RestBackend, RestOptions};
pub use retry::{Retry, RetryOptions};
pub use s3::{ObjectVersion, S3Backend, S3Options};
pub use sftp::{SftpBackend, SftpOptions};

use crate::{Error, Result};

/// The kinds of files a repository holds; each lives in its own namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileKind {
    /// The single `config` object.
    Config,
    /// `keys/<id>`: password-sealed copies of the master key.
    Key,
    /// `data/<2 hex>/<id>`: pack files.
    Pack,
    /// `index/<id>`.
    Index,
    /// `snapshots/<id>`.
    Snapshot,
    /// `locks/<id>`.
    Lock,
    /// `policy/<id>`: the stored retention policy (normally one object).
    Policy,
}

impl FileKind {
    /// The kinds listed by a full scan, in a stable order.
    pub const ALL: [FileKind; 7] = [
        FileKind::Config,
        FileKind::Key,
        FileKind::Pack,
        FileKind::Index,
        FileKind::Snapshot,
        FileKind::Lock,
        FileKind::Policy,
    ];

    /// The folder of this kind in the repository layout (`None` for the config at the root).
    pub fn dir(self) -> Option<&'static str> {
        Some(match self {
            FileKind::Config => return None,
            FileKind::Key => "keys",
            FileKind::Pack => "data",
            FileKind::Index => "index",
            FileKind::Snapshot => "snapshots",
            FileKind::Lock => "locks",
            FileKind::Policy => "policy",
        })
    }

    /// The kind whose folder is `dir`.
    pub fn from_dir(dir: &str) -> Option<FileKind> {
        FileKind::ALL.into_iter().find(|k| k.dir() == Some(dir))
    }

    /// Human name used in messages.
    pub fn label(self) -> &'static str {
        match self {
            FileKind::Config => "config",
            FileKind::Key => "key",
            FileKind::Pack => "pack",
            FileKind::Index => "index",
            FileKind::Snapshot => "snapshot",
            FileKind::Lock => "lock",
            FileKind::Policy => "policy",
        }
    }
}

/// A storage location for a repository.
///
/// Implementations must make `write` atomic (a reader sees the whole object or none) and must
/// never replace an existing object: writing a name that exists leaves the old bytes in place.
/// A name that is not a plain token ([`object_path`]) is refused with
/// [`Error::InvalidInput`] before anything is sent; a missing object is an [`Error::Backend`] of
/// kind `NotFound`, a range past the end one of kind `UnexpectedEof`. Failures worth repeating
/// are marked transient ([`Error::is_transient`]); the backend itself does not repeat them.
/// `tests/backend_conformance.rs` checks all of this.
pub trait Backend: Send + Sync {
    /// A description for messages (e.g. the path or URL).
    fn location(&self) -> String;
    /// Whether a repository exists here (its config is present).
    fn exists(&self) -> Result<bool>;
    /// Creates the empty layout for a new repository.
    fn create(&self) -> Result<()>;
    /// Lists the names and sizes of all files of `kind`, in no particular order.
    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>>;
    /// Reads a whole file.
    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>>;
    /// Reads `len` bytes at `offset`; fewer bytes than asked is an error.
    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// Writes a file atomically and durably; an existing file of that name is left untouched.
    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()>;
    /// Removes a file. Removing one that is not there succeeds or fails with `NotFound` (S3
    /// cannot tell the two apart without another request).
    fn remove(&self, kind: FileKind, name: &str) -> Result<()>;
    /// The size of a file.
    fn size(&self, kind: FileKind, name: &str) -> Result<u64>;
    /// Removes partial uploads left by writers that died; returns how many. Backends without
    /// such leftovers keep the default.
    fn remove_stale_temporaries(&self) -> Result<u64> {
        Ok(0)
    }
    /// Whether reads are local (a path on this machine, or memory): local caches then hold
    /// only what saves more than a read (README "Local cache"). Remote backends keep the default.
    fn is_local(&self) -> bool {
        false
    }
    /// Sets the object lock (WORM) that every later write of an object but a lock carries
    /// (`None`: unlocked). Only the S3 backend has object lock; the others refuse a lock.
    fn set_object_lock(&self, lock: Option<ObjectLock>) -> Result<()> {
        match lock {
            None => Ok(()),
            Some(_) => Err(no_object_lock(&self.location())),
        }
    }
    /// When the object lock of an object ends (`None`: not locked, or no object lock here).
    fn retention(&self, kind: FileKind, name: &str) -> Result<Option<jiff::Timestamp>> {
        let _ = (kind, name);
        Ok(None)
    }
    /// Locks an object until `until` (a lock is never shortened by the storage: S3 refuses).
    fn extend_retention(&self, kind: FileKind, name: &str, until: jiff::Timestamp) -> Result<()> {
        let _ = (kind, name, until);
        Err(no_object_lock(&self.location()))
    }
    /// With object lock, removing an object only hides it (the storage keeps the locked
    /// version); this removes for good the hidden versions whose lock has ended and says what
    /// stays. Backends without versions have nothing hidden.
    fn purge_hidden(&self) -> Result<Purged> {
        Ok(Purged::default())
    }
}

/// The refusal of object lock by a backend without it.
fn no_object_lock(location: &str) -> Error {
    Error::InvalidInput(format!(
        "{location}: object lock needs an S3 repository (s3:...) on a bucket with Object Lock"
    ))
}

/// Checks that an object name is a plain token (letters, digits, `-`, `_`; 1 to 128 bytes),
/// so it can never escape its namespace as a path or key.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!("invalid object name {name:?}")))
    }
}

/// The folders of a repository besides its kinds' (temporary files).
pub const TMP_DIR: &str = "tmp";

/// Where an object lives relative to the repository root, `/`-separated: `config`,
/// `keys/NAME`, `data/NA/NAME` (packs fan out by their first two characters), ...; the name is
/// checked first (a plain token: letters, digits, `-`, `_`; 1 to 128 bytes).
pub fn object_path(kind: FileKind, name: &str) -> Result<String> {
    check_name(name)?;
    Ok(match (kind.dir(), kind) {
        (None, _) => "config".to_string(),
        (Some(d), FileKind::Pack) if name.len() >= 2 => format!("{d}/{}/{name}", &name[..2]),
        (Some(d), _) => format!("{d}/{name}"),
    })
}

/// A secret setting (password, key, token): kept out of `Debug` output and wiped from memory
/// when dropped.
#[derive(Clone, Default)]
pub struct Secret(zeroize::Zeroizing<String>);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(zeroize::Zeroizing::new(value.into()))
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// What kind of storage a location names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// A path, optionally prefixed with `local:` (including SFTP- or NFS-mounted ones).
    Local,
    /// `rest:https://...`: a REST server (see [`RestBackend`]).
    Rest,
    /// `s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX]`: an S3 bucket (see [`S3Backend`]).
    S3,
    /// `sftp:USER@HOST:PATH` or `sftp://USER@HOST[:PORT]/PATH`: an SFTP server (see
    /// [`SftpBackend`]).
    Sftp,
}

impl Scheme {
    /// The scheme of `location`; a local path starting with `s3:` or `sftp:` is written
    /// `local:...`.
    pub fn of(location: &str) -> Scheme {
        if location.starts_with("s3:") {
            Scheme::S3
        } else if location.starts_with("rest:") {
            Scheme::Rest
        } else if location.starts_with("sftp:") {
            Scheme::Sftp
        } else {
            Scheme::Local
        }
    }
}

/// The scheme of a location that looks like `NAME:...` with a scheme hydrabackup does not know
/// (`b2:`, `gs:`, `https:`), unless a local path of that name exists.
fn unknown_scheme(location: &str) -> Option<&str> {
    let (scheme, _) = location.split_once(':')?;
    let looks = scheme.len() >= 2
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    (looks && scheme != "local" && !std::path::Path::new(location).exists()).then_some(scheme)
}

/// The settings of every backend that do not come from the location itself. The defaults use
/// no credentials and read nothing from the environment.
#[derive(Debug, Clone, Default)]
pub struct BackendOptions {
    /// How failed operations are repeated.
    pub retry: RetryOptions,
    /// For `rest:` locations.
    pub rest: RestOptions,
    /// For `s3:` locations.
    pub s3: S3Options,
    /// For `sftp:` locations.
    pub sftp: SftpOptions,
    /// Bandwidth limits (every location).
    pub limits: Limits,
}

/// Opens the backend for a repository location (see [`Scheme`]) with default options: right
/// for local paths; remote locations need credentials from [`open_with`].
pub fn open(location: &str) -> Result<Box<dyn Backend>> {
    open_with(location, &BackendOptions::default())
}

/// Opens the backend for a repository location (see [`Scheme`]), wrapped in the retry layer
/// and, with [`BackendOptions::limits`], the bandwidth limits.
pub fn open_with(location: &str, opts: &BackendOptions) -> Result<Box<dyn Backend>> {
    let retry = opts.retry;
    let b: Box<dyn Backend> = match Scheme::of(location) {
        Scheme::S3 => Box::new(Retry::new(S3Backend::open(location, &opts.s3)?, retry)),
        Scheme::Rest => Box::new(Retry::new(
            RestBackend::open(&location["rest:".len()..], &opts.rest)?,
            retry,
        )),
        Scheme::Sftp => Box::new(Retry::new(SftpBackend::open(location, &opts.sftp)?, retry)),
        Scheme::Local => {
            if let Some(scheme) = unknown_scheme(location) {
                return Err(crate::Error::UnknownScheme(scheme.to_string()));
            }
            let path = location.strip_prefix("local:").unwrap_or(location);
            Box::new(Retry::new(LocalBackend::new(path), retry))
        }
    };
    Ok(Limited::wrap(b, opts.limits))
}

#[cfg(test)]
mod wrapper_tests {
    //! The wrappers (`Retry`, `Limited`) must forward every method with a default, or a
    //! wrapped S3 backend would silently lose object lock (and a local one its `is_local`).
    use super::*;

    /// A backend whose every defaulted method answers differently from the default.
    struct Marked;

    fn until() -> jiff::Timestamp {
        jiff::Timestamp::from_second(2_000_000_000).unwrap()
    }

    impl Backend for Marked {
        fn location(&self) -> String {
            "marked".into()
        }
        fn exists(&self) -> Result<bool> {
            Ok(true)
        }
        fn create(&self) -> Result<()> {
            Ok(())
        }
        fn list(&self, _: FileKind) -> Result<Vec<(String, u64)>> {
            Ok(Vec::new())
        }
        fn read(&self, _: FileKind, _: &str) -> Result<Vec<u8>> {
            Ok(Vec::new())
        }
        fn read_range(&self, _: FileKind, _: &str, _: u64, _: u64) -> Result<Vec<u8>> {
            Ok(Vec::new())
        }
        fn write(&self, _: FileKind, _: &str, _: &[u8]) -> Result<()> {
            Ok(())
        }
        fn remove(&self, _: FileKind, _: &str) -> Result<()> {
            Ok(())
        }
        fn size(&self, _: FileKind, _: &str) -> Result<u64> {
            Ok(0)
        }
        fn remove_stale_temporaries(&self) -> Result<u64> {
            Ok(7)
        }
        fn is_local(&self) -> bool {
            true
        }
        fn set_object_lock(&self, _: Option<ObjectLock>) -> Result<()> {
            Ok(())
        }
        fn retention(&self, _: FileKind, _: &str) -> Result<Option<jiff::Timestamp>> {
            Ok(Some(until()))
        }
        fn extend_retention(&self, _: FileKind, _: &str, _: jiff::Timestamp) -> Result<()> {
            Ok(())
        }
        fn purge_hidden(&self) -> Result<Purged> {
            Ok(Purged {
                versions_removed: 3,
                ..Purged::default()
            })
        }
    }

    fn assert_forwards(b: &dyn Backend) {
        let lock = ObjectLock {
            mode: LockMode::Governance,
            retention: std::time::Duration::from_secs(86_400),
        };
        assert_eq!(b.remove_stale_temporaries().unwrap(), 7);
        assert!(b.is_local());
        b.set_object_lock(Some(lock)).unwrap();
        assert_eq!(b.retention(FileKind::Pack, "00").unwrap(), Some(until()));
        b.extend_retention(FileKind::Pack, "00", until()).unwrap();
        assert_eq!(b.purge_hidden().unwrap().versions_removed, 3);
    }

    #[test]
    fn wrappers_forward_every_defaulted_method() {
        // The test's own check: a backend with the defaults fails it.
        let forwarded = std::panic::catch_unwind(|| assert_forwards(&MemoryBackend::new()));
        assert!(forwarded.is_err(), "the defaults must fail the check");

        assert_forwards(&Marked);
        assert_forwards(&Retry::new(Marked, RetryOptions::default()));
        assert_forwards(&*Limited::wrap(
            Box::new(Marked),
            Limits {
                upload: Some(1 << 20),
                download: Some(1 << 20),
            },
        ));
        assert_forwards(&*Limited::wrap(
            Box::new(Retry::new(Marked, RetryOptions::default())),
            Limits {
                upload: None,
                download: None,
            },
        ));
    }
}
