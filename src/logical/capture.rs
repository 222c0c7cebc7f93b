//! Logical capture in the backup pipeline: a consistent capture of a `.hyd` file (made by
//! [`crate::source::hydraide::capture`] into a [`Buffer`]) is replayed to its live set and
//! turned into record groups and index pages, or handed back for file capture.

use crate::Id;
use crate::crypto::Keys;
use crate::hyd::{live_digest, replay_bytes};
use crate::repo::tree::{Decision, LogicalInfo};
use crate::source::hydraide::{ChunkSink, HydCapture};

use super::BackupMode;
use super::{index, stream};

/// Files larger than this are captured as files: logical capture holds a Swamp in memory.
pub const MAX_LOGICAL_FILE: u64 = 256 << 20;

/// Collects a capture's chunks (the chunks since the last restart).
#[derive(Default)]
pub(crate) struct Buffer {
    pub(crate) chunks: Vec<Vec<u8>>,
}

impl ChunkSink for Buffer {
    fn restart(&mut self) {
        self.chunks.clear();
    }

    fn chunk(&mut self, data: Vec<u8>) -> bool {
        self.chunks.push(data);
        true
    }
}

/// What a reader needs for logical capture.
#[derive(Clone, Copy)]
pub(crate) struct LogicalCtx<'a> {
    pub(crate) mode: BackupMode,
    pub(crate) keys: &'a Keys,
    /// Seed of the record-group cut.
    pub(crate) seed: u64,
}

/// A Swamp as record groups, ready to store.
pub(crate) struct Stream {
    pub(crate) groups: Vec<Vec<u8>>,
    pub(crate) pages: Vec<Vec<u8>>,
    /// The block recipe, when re-encoding reproduces the file (stored after the groups).
    pub(crate) recipe: Option<Vec<u8>>,
    pub(crate) info: LogicalInfo,
}

/// What becomes of a captured file.
pub(crate) enum Converted {
    /// Store it as a file capture.
    File,
    /// Store its record stream.
    Stream(Stream),
    /// Its record data is malformed: quarantine it (why).
    Bad(String),
}

/// The seed of the record-group cut, derived from the repository's `.hyd` chunker seed.
pub(crate) fn group_seed(hyd_seed: u64) -> u64 {
    hyd_seed ^ 0x4c4f_4749_4341_4c00
}

impl LogicalCtx<'_> {
    /// Converts a capture whose data chunks are the first `c.chunks` of `chunks`.
    pub(crate) fn convert(&self, c: &HydCapture, chunks: &[Vec<u8>]) -> Converted {
        if self.mode == BackupMode::Auto && c.swamp.decision != Decision::Rewritten {
            // New and appended Swamps are cheap as files (appends reuse what is stored).
            return Converted::File;
        }
        let n = (c.chunks as usize).min(chunks.len());
        let mut bytes = Vec::with_capacity(c.size as usize);
        bytes.extend_from_slice(&c.header_blob);
        for ch in &chunks[..n] {
            bytes.extend_from_slice(ch);
        }
        let r = match replay_bytes(&bytes) {
            Ok(r) => r,
            // As in file mode: stored as captured.
            Err(_) if self.mode == BackupMode::Auto => return Converted::File,
            Err(e) => return Converted::Bad(format!("record data does not replay: {e}")),
        };
        // Only a file holding no dead entry can have a recipe (a version-2 name entry aside):
        // others are not re-encoded to find out.
        let compacted = r.entries <= r.live.len() as u64 + 1;
        if self.mode == BackupMode::Auto && !compacted {
            // Rewritten but holding dead entries: not a compaction's output (a file grown
            // since a logical capture, replaced or repaired). A file capture keeps it
            // byte-identical.
            return Converted::File;
        }
        let recipe = compacted
            .then(|| super::recipe::derive(&bytes, &r.live, r.name.as_deref()))
            .flatten();
        drop(bytes);
        let mut groups = Vec::new();
        let mut pages = Vec::new();
        let mut bad = None;
        stream::cut(self.seed, &r.live, |g, recs| {
            if bad.is_some() {
                return;
            }
            match index::encode_page(recs) {
                Ok(p) => {
                    groups.push(g);
                    pages.push(p);
                }
                Err(e) => bad = Some(e.to_string()),
            }
        });
        if let Some(why) = bad {
            return Converted::Bad(why);
        }
        let info = LogicalInfo {
            header: c.header_blob.clone(),
            records: r.live.len() as u64,
            digest: live_digest(&r.live),
            stream_size: groups.iter().map(|g| g.len() as u64).sum(),
            index: pages
                .iter()
                .map(|p| self.keys.blob_id(p))
                .collect::<Vec<Id>>(),
            recipe_len: recipe.as_ref().map_or(0, |r| r.len() as u64),
        };
        Converted::Stream(Stream {
            groups,
            pages,
            recipe,
            info,
        })
    }
}
