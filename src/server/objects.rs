//! How the REST server touches its folder: never through a symlink (someone who can write
//! there could otherwise point a repository, a folder or an object anywhere), uploads streamed
//! to a temporary file and kept only when their bytes hash to their name, downloads streamed
//! from the file.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::backend::{FileKind, LocalBackend, object_path};
use crate::{Error, Result};

/// Whether `rel` (`/`-separated, below repository `repo` of `root`) passes through a symlink;
/// `repo` and every existing component are looked at, the server's root itself is trusted.
pub fn through_symlink(root: &Path, repo: &str, rel: &str) -> bool {
    let mut p = root.join(repo);
    let parts = std::iter::once("").chain(rel.split('/').filter(|c| !c.is_empty()));
    for part in parts {
        if !part.is_empty() {
            p.push(part);
        }
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => return true,
            Ok(_) => {}
            // What does not exist cannot lead anywhere; other errors show up when it is used.
            Err(_) => return false,
        }
    }
    false
}

/// Opens an object for reading without following a symlink in its last component; returns it
/// with its size.
pub fn open(repo_dir: &Path, kind: FileKind, name: &str) -> Result<(File, u64)> {
    let p = repo_dir.join(object_path(kind, name)?);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&p)
        .map_err(|e| Error::io(&p, e))?;
    let size = f.metadata().map_err(|e| Error::io(&p, e))?.len();
    Ok((f, size))
}

/// Why an upload was refused.
#[derive(Debug)]
pub enum Refused {
    /// The body ended before its Content-Length.
    Short,
    /// The bytes do not hash to the object's name.
    WrongName,
}

/// Reads a body, hashing and counting it.
struct Hashing<R> {
    inner: R,
    hasher: blake3::Hasher,
    count: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Whether `name` can be the name of an object of `kind`: `config`, or 64 lowercase hex digits.
pub fn plausible_name(kind: FileKind, name: &str) -> bool {
    match kind {
        FileKind::Config => name == "config",
        _ => name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
    }
}

/// Stores the `len` bytes of `body` as object `name` of `kind`, streamed through a temporary
/// file; every name but `config` must be the BLAKE3 hash of the bytes. `Ok(Err(_))`: refused,
/// nothing stored.
pub fn store<R: Read>(
    backend: &LocalBackend,
    kind: FileKind,
    name: &str,
    body: R,
    len: u64,
) -> Result<std::result::Result<(), Refused>> {
    let mut refused = None;
    let reader = Hashing {
        inner: body.take(len),
        hasher: blake3::Hasher::new(),
        count: 0,
    };
    let r = backend.write_from(kind, name, reader, |h| {
        refused = if h.count != len {
            Some(Refused::Short)
        } else if kind != FileKind::Config && h.hasher.finalize().to_hex().as_str() != name {
            Some(Refused::WrongName)
        } else {
            None
        };
        match refused {
            // Only aborts the write; the caller reports why.
            Some(_) => Err(Error::InvalidInput("upload refused".into())),
            None => Ok(()),
        }
    });
    match (r, refused) {
        (_, Some(why)) => Ok(Err(why)),
        (r, None) => r.map(Ok),
    }
}
