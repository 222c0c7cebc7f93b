//! Source folders held open while they are walked.
//!
//! Each entry is reached through its folder's descriptor (`/proc/self/fd/N/NAME`), never
//! through the full path again: a symlink swapped in for a folder above cannot redirect the walk
//! (the last component is never followed either, see [`open_checked`](super::open_checked)), and
//! paths stay short however deep the tree is. Where `/proc` is not mounted, plain paths are used.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::open::{Changed, Identity, type_name};

/// A folder of the source, open for as long as a clone of it lives.
#[derive(Debug, Clone)]
pub struct Dir {
    access: PathBuf,
    _fd: Option<Arc<OwnedFd>>,
}

fn proc_fds() -> bool {
    static PROC: OnceLock<bool> = OnceLock::new();
    *PROC.get_or_init(|| Path::new("/proc/self/fd").is_dir())
}

fn open_dir_fd(path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    Ok(OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC | flags)
        .open(path)?
        .into())
}

impl Dir {
    fn held(fd: OwnedFd, fallback: PathBuf) -> Dir {
        if proc_fds() {
            Dir {
                access: PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
                _fd: Some(Arc::new(fd)),
            }
        } else {
            Dir {
                access: fallback,
                _fd: None,
            }
        }
    }

    /// Opens a folder the user named (symlinks in its path are followed, as named).
    pub fn open(path: &Path) -> io::Result<Dir> {
        Ok(Dir::held(open_dir_fd(path, 0)?, path.to_path_buf()))
    }

    /// The path through which this folder is listed.
    pub fn path(&self) -> &Path {
        &self.access
    }

    /// Whether the folder was deleted since it was opened (an open folder that was deleted
    /// lists as empty).
    pub fn vanished(&self) -> bool {
        std::fs::metadata(&self.access).map_or(true, |m| m.nlink() == 0)
    }

    /// The path through which the entry `name` is reached.
    pub fn entry(&self, name: &[u8]) -> PathBuf {
        self.access.join(std::ffi::OsStr::from_bytes(name))
    }

    /// Opens the sub-folder `name`: not through a symlink, and only the folder the walk saw
    /// (`expect`); anything else is [`Changed`].
    pub fn open_dir(&self, name: &[u8], expect: Identity) -> io::Result<Dir> {
        let path = self.entry(name);
        let fd = open_dir_fd(&path, libc::O_NOFOLLOW).map_err(|e| match e.raw_os_error() {
            // What is there now: a symlink (not followed), a file, or nothing (gone).
            Some(libc::ELOOP | libc::ENOTDIR) => match std::fs::symlink_metadata(&path) {
                Ok(md) => io::Error::other(Changed(format!(
                    "replaced by a {}",
                    type_name(md.file_type())
                ))),
                Err(e) => e,
            },
            _ => e,
        })?;
        let md = std::fs::File::from(fd.try_clone()?).metadata()?;
        if !md.is_dir() {
            let what = format!("replaced by a {}", type_name(md.file_type()));
            return Err(io::Error::other(Changed(what)));
        }
        if Identity::of(&md) != expect {
            return Err(io::Error::other(Changed(
                "replaced by another directory".into(),
            )));
        }
        Ok(Dir::held(fd, path))
    }
}

/// Raises the soft limit on open files to the hard limit (as Go programs such as restic do):
/// a walk holds one descriptor per folder level it is inside, and queued files hold theirs.
pub fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a valid, exclusive pointer; setrlimit reads
    // one. Neither touches other memory.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_folders_open_only_as_the_walk_saw_them() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/b")).unwrap();
        std::fs::write(t.path().join("a/b/f"), b"x").unwrap();
        let root = Dir::open(t.path()).unwrap();
        let id = |p: &str| Identity::of(&std::fs::symlink_metadata(t.path().join(p)).unwrap());
        let a = root.open_dir(b"a", id("a")).unwrap();
        let b = a.open_dir(b"b", id("a/b")).unwrap();
        assert_eq!(std::fs::read(b.entry(b"f")).unwrap(), b"x");
        // Renamed away and replaced by a symlink: the held folder is still the one walked.
        std::fs::rename(t.path().join("a"), t.path().join("moved")).unwrap();
        std::os::unix::fs::symlink("/", t.path().join("a")).unwrap();
        assert_eq!(std::fs::read(b.entry(b"f")).unwrap(), b"x");
        let e = root.open_dir(b"a", id("moved")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "changed during backup: replaced by a symbolic link"
        );
        assert!(!b.vanished());
        std::fs::remove_file(t.path().join("moved/b/f")).unwrap();
        std::fs::remove_dir(t.path().join("moved/b")).unwrap();
        assert!(b.vanished());
        std::fs::create_dir(t.path().join("c")).unwrap();
        let e = root.open_dir(b"c", id("moved")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "changed during backup: replaced by another directory"
        );
    }
}
