//! `stats`: what the repository holds, from the index and the snapshot summaries alone.

use serde::Serialize;

use crate::Result;
use crate::backend::FileKind;
use crate::ops::progress::Progress;
use crate::repo::Repository;
use crate::repo::blob::BlobType;

/// Options of `stats` (none yet).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StatsOptions {}

/// The repository's statistics (the `--json` document).
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatsOutcome {
    /// Snapshots.
    pub snapshots: u64,
    /// Pack files.
    pub packs: u64,
    /// Bytes of all pack files.
    pub pack_bytes: u64,
    /// Distinct data blobs.
    pub data_blobs: u64,
    /// Distinct tree blobs.
    pub tree_blobs: u64,
    /// Plaintext bytes of the distinct blobs.
    pub unique_bytes: u64,
    /// Stored (compressed, sealed) bytes of the distinct blobs.
    pub stored_bytes: u64,
    /// Bytes of all files of all snapshots, as backed up.
    pub logical_bytes: u64,
    /// unique_bytes / stored_bytes.
    pub compression_ratio: f64,
    /// logical_bytes / unique data bytes.
    pub dedup_ratio: f64,
}

/// Computes the statistics.
pub fn run(repo: &Repository, _opts: &StatsOptions, _progress: &Progress) -> Result<StatsOutcome> {
    let index = repo.load_index()?;
    let snaps = repo.snapshots()?;
    let packs = repo.backend().list(FileKind::Pack)?;
    let mut s = StatsOutcome {
        snapshots: snaps.len() as u64,
        packs: packs.len() as u64,
        pack_bytes: packs.iter().map(|(_, n)| n).sum(),
        logical_bytes: snaps.iter().map(|(_, s)| s.summary.total_bytes).sum(),
        ..StatsOutcome::default()
    };
    let mut data_bytes = 0u64;
    for loc in index.iter() {
        let e = loc.entry;
        match e.kind {
            BlobType::Data => {
                s.data_blobs += 1;
                data_bytes += e.raw_len as u64;
            }
            BlobType::Tree => s.tree_blobs += 1,
        }
        s.unique_bytes += e.raw_len as u64;
        s.stored_bytes += e.len as u64;
    }
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    s.compression_ratio = ratio(s.unique_bytes, s.stored_bytes);
    s.dedup_ratio = ratio(s.logical_bytes, data_bytes);
    Ok(s)
}
