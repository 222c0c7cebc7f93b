//! HydrAIDE on-disk formats: reading, validating and writing `.hyd` files.
//!
//! A HydrAIDE V2-engine Swamp is one append-only `.hyd` file: a 64-byte header
//! ([`header`]), for version 3 the swamp name, then blocks ([`block`]) of
//! Snappy-compressed entries. [`scan`] finds the longest loadable prefix of a file
//! that may be growing while it is read, [`replay`] loads a file the way HydrAIDE
//! does, [`writer`] produces files the way HydrAIDE does. [`v1`] recognises legacy
//! V1 swamp folders, [`naming`] computes where a swamp lives under a data root,
//! [`walk`] lists the swamps under a root. [`gob`] reads and writes V1 `meta`. The test-data
//! generators (realistic data roots, churn, a live writer, edge cases) are the `hydgen`
//! binary's own modules, not part of this library.
//!
//! Nothing here panics or allocates without bound on malformed input: sizes read
//! from a file are checked against the bytes that are really there. [`stream`]
//! checks a block of any size in bounded memory.

pub mod block;
pub mod gob;
pub mod header;
pub mod naming;
pub mod replay;
pub mod rng;
pub mod scan;
pub mod stream;
pub mod v1;
pub mod walk;
pub mod writer;

pub use block::{BlockError, BlockHeader, Entry, EntryError, EntryRef, Op};
pub use header::{FileHeader, HeaderError, Version};
pub use naming::{Layout, SwampName};
pub use replay::{LiveSet, Replay, apply_entries, live_digest, replay, replay_bytes, replay_file};
pub use rng::Rng;
pub use scan::{BlockInfo, Scan, ScanProblem, consistent_header, scan, scan_bytes, scan_file};
pub use writer::{CompactInfo, HydWriter, compact};

use std::path::PathBuf;

/// Magic bytes at offset 0 of every `.hyd` file.
pub const MAGIC: [u8; 4] = *b"HYDR";
/// Size of the fixed file header.
pub const FILE_HEADER_SIZE: usize = 64;
/// Size of the fixed header in front of every block.
pub const BLOCK_HEADER_SIZE: usize = 16;
/// HydrAIDE's default uncompressed block size (a block is flushed once its
/// entries reach this many bytes).
pub const DEFAULT_BLOCK_SIZE: u32 = 16 * 1024;
/// Key of the METADATA entry that carries the swamp name in version-2 files.
pub const SWAMP_META_KEY: &[u8] = b"__swamp_meta__";
/// Largest V1 chunk file this crate decompresses (whole, in memory).
pub const MAX_V1_CHUNK: u32 = 512 * 1024 * 1024;
/// File name suffix of a `.hyd` file.
pub const HYD_SUFFIX: &str = ".hyd";
/// Suffix HydrAIDE appends to a `.hyd` path for the compaction temp file.
pub const COMPACT_SUFFIX: &str = ".compact";
/// Suffix `hydraidectl` appends to a `.hyd` path while it migrates the file's format (the
/// server is stopped meanwhile).
pub const FMTMIGRATE_SUFFIX: &str = ".fmtmigrate";

/// Errors of the `hyd` module's readers and writers.
#[derive(Debug, thiserror::Error)]
pub enum HydError {
    /// An I/O operation failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The file header is not a valid `.hyd` header.
    #[error("bad file header: {0}")]
    Header(#[from] HeaderError),
    /// A block could not be built or decoded.
    #[error("block at offset {offset}: {source}")]
    Block {
        /// Offset of the block's header in the file.
        offset: u64,
        /// What went wrong.
        #[source]
        source: BlockError,
    },
    /// The file is not loadable: the scan stopped on this problem.
    #[error("file not loadable: {0}")]
    Problem(ScanProblem),
    /// An argument was not acceptable (too long a name, an empty key, ...).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A path could not be used.
    #[error("{path}: {source}")]
    Path {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: Box<HydError>,
    },
}

impl HydError {
    /// Wraps this error with the path it concerns.
    pub fn at(self, path: impl Into<PathBuf>) -> HydError {
        HydError::Path {
            path: path.into(),
            source: Box::new(self),
        }
    }
}
