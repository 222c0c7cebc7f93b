//! Logical capture (Mode B) of HydrAIDE Swamps: a `.hyd` file is replayed to its live set, which
//! is stored as a **record stream** sorted by key and cut into content-defined record groups
//! ([`stream`]), with a **record index** page per group ([`index`]: key, offset, value size,
//! the Treasure's modified time) and a digest of the live set. Restore writes a fresh,
//! compacted `.hyd` of the same format version ([`rebuild`]). Unchanged records deduplicate
//! whatever the file layout, so a compaction costs only the records that changed.

pub(crate) mod capture;
pub mod index;
pub mod msgpack;
pub mod rebuild;
pub mod recipe;
pub mod stream;
pub mod treasure;

use serde::{Deserialize, Serialize};

/// How `backup` captures `.hyd` files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackupMode {
    /// Block-aligned copies of the files (byte-identical restore).
    File,
    /// The live set of every `.hyd` file as a record stream (equal in content on restore).
    Logical,
    /// Logical capture for Swamps rewritten by a compaction (each live record once), file
    /// capture for all others (the default).
    #[default]
    Auto,
}

impl BackupMode {
    /// The name used on the command line and in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupMode::File => "file",
            BackupMode::Logical => "logical",
            BackupMode::Auto => "auto",
        }
    }
}

/// Malformed record data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// A record stream or index page ends inside a record.
    #[error("truncated record at byte {0}")]
    Truncated(usize),
    /// Keys are empty, unsorted or repeated.
    #[error("record keys out of order at byte {0}")]
    Order(usize),
    /// An index page has a bad header.
    #[error("bad record index page: {0}")]
    BadPage(&'static str),
    /// A block recipe does not decode or does not fit the records.
    #[error("bad block recipe: {0}")]
    BadRecipe(&'static str),
    /// A value that starts like a MessagePack map does not decode as one.
    #[error("value of record {key:?} is not valid MessagePack: {why}")]
    MessagePack {
        /// The record's key (escaped, shortened).
        key: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The live set rebuilt from the stream does not match the digest stored at backup.
    #[error("live-set digest mismatch: stored {stored:016x}, found {found:016x}")]
    Digest {
        /// Digest stored at backup.
        stored: u64,
        /// Digest of what was read.
        found: u64,
    },
    /// The record stream disagrees with the Swamp's facts (record count, stream length).
    #[error("record stream disagrees with its catalogue entry: {0}")]
    Mismatch(String),
}

/// A key for messages: escaped and shortened.
pub(crate) fn shown_key(k: &[u8]) -> String {
    let s = k[..k.len().min(48)].escape_ascii().to_string();
    if k.len() > 48 { s + "..." } else { s }
}
