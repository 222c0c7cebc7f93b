//! The `backup` operation's entry point and its outcome (the `--json` document).

use serde::Serialize;

use super::{BackupOptions, SourceError, SpecialFile, SwampDecision, backup};
use crate::ops::progress::Progress;
use crate::repo::snapshot::SnapshotSummary;
use crate::repo::{DamagedSnapshot, Repository};
use crate::{Id, Result};

/// What a backup did: its summary's counters plus what is listed here.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Counters.
    #[serde(flatten)]
    pub summary: SnapshotSummary,
    /// The snapshot written (none for a dry run).
    pub snapshot_id: Option<Id>,
    /// The parent used.
    pub parent: Option<Id>,
    /// Whether nothing was written.
    pub dry_run: bool,
    /// Files that could not be read.
    pub source_errors: Vec<SourceError>,
    /// Files and folders that vanished during the backup (not an error).
    pub gone: Vec<String>,
    /// Special files found and not backed up.
    pub special: Vec<SpecialFile>,
    /// Swamps stored raw because no consistent copy could be made.
    pub quarantine: Vec<SwampDecision>,
    /// Per-Swamp decisions (dry runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decisions: Option<Vec<SwampDecision>>,
    /// Snapshots skipped because they are damaged (looking for the parent).
    pub damaged_snapshots: Vec<DamagedSnapshot>,
    /// Exclude patterns that matched nothing (each is warned about).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unmatched_excludes: Vec<String>,
    /// Packs a prune marked meanwhile that the snapshot uses, taken back into the index.
    #[serde(skip_serializing_if = "is_zero")]
    pub packs_recovered: u64,
    /// Files read again because a prune deleted stored data the backup relied on while it ran.
    #[serde(skip_serializing_if = "is_zero")]
    pub files_read_again: u64,
    /// Files and folders whose stored data a prune deleted while the backup ran and that were
    /// gone from the source when read again: not in the snapshot (also in `gone`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lost_gone: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl BackupOptions {
    /// Refuses options no backup can run with (an unreadable `since` or `time`, unusable stream
    /// options); `run` checks them too, a caller may check them before opening the repository.
    pub fn check(&self) -> Result<()> {
        for t in self.since.iter().chain(&self.time) {
            crate::timespec::parse(t)?;
        }
        if self.stdin || self.stdin_from_command {
            super::sources::check_stream(self)?;
        }
        Ok(())
    }
}

/// Backs up what `opts` names into a new snapshot (a dry run writes nothing). Takes a shared
/// lock unless a dry run.
pub fn run(repo: &Repository, opts: &BackupOptions, progress: &Progress) -> Result<Outcome> {
    let out = backup(repo, opts, progress)?;
    Ok(Outcome {
        summary: out.summary,
        snapshot_id: out.snapshot_id,
        parent: out.parent,
        dry_run: opts.dry_run,
        source_errors: out.errors,
        gone: out.gone,
        special: out.special,
        quarantine: out.quarantine,
        decisions: opts.dry_run.then_some(out.decisions),
        damaged_snapshots: repo.damaged_snapshots(),
        unmatched_excludes: out.unmatched_excludes,
        packs_recovered: out.packs_recovered,
        files_read_again: out.files_read_again,
        lost_gone: out.lost_gone,
    })
}
