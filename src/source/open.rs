//! Opening a source file the walk has seen, without trusting that it is still the same file.
//!
//! Between the walk's `lstat` and the open, a local user who can write inside the backed-up tree
//! may swap the file for a symlink (to a file only root can read), a FIFO (an open that never
//! returns), a device or another file. [`open_checked`] opens with `O_NOFOLLOW | O_NONBLOCK |
//! O_CLOEXEC`, then `fstat`s the handle: anything but a regular file, or one whose device and
//! inode differ from what the walk saw, is refused as [`Changed`], never read.

use std::fs::{File, FileType, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// The file changed between the walk and the open; it is not read.
#[derive(Debug, thiserror::Error)]
#[error("changed during backup: {0}")]
pub struct Changed(pub String);

/// What the walk saw of a file: its device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

impl Identity {
    /// The identity recorded in `lstat` metadata.
    pub fn of(md: &std::fs::Metadata) -> Identity {
        Identity {
            dev: md.dev(),
            ino: md.ino(),
        }
    }
}

/// What a source problem means for the backup.
#[derive(Debug, PartialEq, Eq)]
pub enum Trouble {
    /// The file (or a folder above it) vanished: it is gone, not an error.
    Gone,
    /// The file was replaced or changed type during the backup.
    Changed,
    /// The file exists but cannot be read.
    Unreadable,
}

/// Classifies an error met while walking or reading the source.
pub fn trouble(e: &io::Error) -> Trouble {
    if e.kind() == io::ErrorKind::NotFound {
        Trouble::Gone
    } else if e.get_ref().is_some_and(|i| i.is::<Changed>()) {
        Trouble::Changed
    } else {
        Trouble::Unreadable
    }
}

/// A name for a file type, for reports ("FIFO", "socket", ...).
pub fn type_name(ft: FileType) -> &'static str {
    if ft.is_file() {
        "regular file"
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_symlink() {
        "symbolic link"
    } else {
        crate::source::report::SpecialKind::of(ft).as_str()
    }
}

fn changed(what: String) -> io::Error {
    io::Error::other(Changed(what))
}

/// Opens the regular file at `path` for reading, checking that it is (still) a regular file
/// and, when `expect` is given, the very file the walk saw. Errors: `NotFound` when it vanished,
/// [`Changed`] (inside an `io::Error`, see [`trouble`]) when it was replaced, others as they come.
pub fn open_checked(path: &Path, expect: Option<Identity>) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => changed("replaced by a symbolic link".into()),
            _ => e,
        })?;
    let md = f.metadata()?;
    if !md.file_type().is_file() {
        return Err(changed(format!(
            "replaced by a {}",
            type_name(md.file_type())
        )));
    }
    if let Some(want) = expect
        && Identity::of(&md) != want
    {
        return Err(changed("replaced by another file".into()));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_fifos_and_other_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let id = Identity::of(&std::fs::symlink_metadata(&file).unwrap());
        assert!(open_checked(&file, Some(id)).is_ok());

        let other = dir.path().join("g");
        std::fs::write(&other, b"y").unwrap();
        let e = open_checked(&other, Some(id)).unwrap_err();
        assert_eq!(trouble(&e), Trouble::Changed);

        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let e = open_checked(&link, None).unwrap_err();
        assert_eq!(trouble(&e), Trouble::Changed, "{e}");

        let fifo = dir.path().join("p");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = open_checked(&fifo, None).unwrap_err();
        assert_eq!(e.to_string(), "changed during backup: replaced by a FIFO");

        let e = open_checked(&dir.path().join("missing"), None).unwrap_err();
        assert_eq!(trouble(&e), Trouble::Gone);
    }
}
