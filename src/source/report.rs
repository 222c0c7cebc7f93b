//! What a backup reports about its sources: per-Swamp decisions, files it could not read and
//! special files it left out.

use std::fs::FileType;
use std::os::unix::fs::FileTypeExt;

use serde::Serialize;

use crate::repo::tree::Decision;

/// What happened to one Swamp, for the decision log and the quarantine report.
#[derive(Debug, Clone, Serialize)]
pub struct SwampDecision {
    /// Path of the `.hyd` file or V1 folder.
    pub path: String,
    /// Swamp name, only with `show_names`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What happened to it.
    pub decision: Decision,
    /// Why.
    pub reason: String,
    /// Bytes read from the source for it.
    pub bytes_read: u64,
}

/// Why a Swamp is in the decision log as gone.
pub const GONE: &str = "vanished during the backup (deleted or destroyed)";

/// A source file that could not be backed up.
#[derive(Debug, Clone, Serialize)]
pub struct SourceError {
    /// Path of the file.
    pub path: String,
    /// Why it was not backed up.
    pub kind: SourceErrorKind,
    /// What went wrong.
    pub error: String,
}

/// Why a source file could not be backed up (serialised in lowercase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceErrorKind {
    /// It could not be read.
    Unreadable,
    /// It was replaced during the backup (a symlink, FIFO, device or other file swapped in
    /// between the walk and the open): it was not read.
    Changed,
    /// A source path given on the command line does not exist: it was skipped.
    Missing,
}

/// What a special file is (serialised as reports name it: `FIFO`, `socket`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SpecialKind {
    /// A named pipe.
    #[serde(rename = "FIFO")]
    Fifo,
    /// A Unix socket.
    #[serde(rename = "socket")]
    Socket,
    /// A character device.
    #[serde(rename = "character device")]
    CharDevice,
    /// A block device.
    #[serde(rename = "block device")]
    BlockDevice,
    /// Any other type that is not a file, folder or symlink.
    #[serde(rename = "special file")]
    Other,
}

impl SpecialKind {
    /// The kind of a file type that is not a file, folder or symlink.
    pub fn of(ft: FileType) -> SpecialKind {
        if ft.is_fifo() {
            SpecialKind::Fifo
        } else if ft.is_socket() {
            SpecialKind::Socket
        } else if ft.is_char_device() {
            SpecialKind::CharDevice
        } else if ft.is_block_device() {
            SpecialKind::BlockDevice
        } else {
            SpecialKind::Other
        }
    }

    /// Its name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            SpecialKind::Fifo => "FIFO",
            SpecialKind::Socket => "socket",
            SpecialKind::CharDevice => "character device",
            SpecialKind::BlockDevice => "block device",
            SpecialKind::Other => "special file",
        }
    }
}

impl std::fmt::Display for SpecialKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A FIFO, socket or device found by the walk: never opened, not backed up, reported.
#[derive(Debug, Clone, Serialize)]
pub struct SpecialFile {
    /// Path of the file.
    pub path: String,
    /// What it is.
    pub kind: SpecialKind,
}

/// What a walk examined (a walk restricted to dirty paths examines little) and what its
/// captured Swamps read, by decision.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct WalkWork {
    /// Folders listed.
    pub folders_listed: u64,
    /// Entries examined (stat'ed); entries taken unexamined from the parent are not.
    pub entries_examined: u64,
    /// Bytes read of Swamps that only grew (appended blocks).
    pub bytes_appended: u64,
    /// Bytes read of Swamps read whole: rewritten (compacted, replaced).
    pub bytes_rewritten: u64,
    /// Bytes read of Swamps new since the parent.
    pub bytes_new: u64,
}

impl std::ops::AddAssign for WalkWork {
    fn add_assign(&mut self, o: WalkWork) {
        self.folders_listed += o.folders_listed;
        self.entries_examined += o.entries_examined;
        self.bytes_appended += o.bytes_appended;
        self.bytes_rewritten += o.bytes_rewritten;
        self.bytes_new += o.bytes_new;
    }
}
