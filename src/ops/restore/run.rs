//! The `restore` operation's entry point and its outcome (the `--json` document).

use serde::Serialize;

use super::{RestoreOptions, RestoreSummary, restore};
use crate::ops::progress::Progress;
use crate::repo::{DamagedSnapshot, Repository};
use crate::{Error, Id, Result};

/// What a restore did (or would do): the summary's fields plus what is listed here.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Counters and the entries not restored.
    #[serde(flatten)]
    pub summary: RestoreSummary,
    /// The snapshot restored.
    pub snapshot_id: Id,
    /// Whether nothing was written.
    pub dry_run: bool,
    /// Snapshots skipped because they are damaged.
    pub damaged_snapshots: Vec<DamagedSnapshot>,
}

/// Restores the snapshot `opts` names (by id or `at` a time) under a shared lock.
pub fn run(repo: &Repository, opts: &RestoreOptions, progress: &Progress) -> Result<Outcome> {
    let _lock = repo.lock(false, "restore")?;
    let (id, snap) = match (&opts.snapshot, &opts.at) {
        (_, Some(at)) => repo.find_snapshot_at(crate::timespec::parse(at)?)?,
        (Some(s), None) => repo.find_snapshot(s)?,
        (None, None) => {
            return Err(Error::InvalidInput(
                "give a snapshot id or --at TIME".into(),
            ));
        }
    };
    let index = repo.load_index()?;
    let summary = restore(repo, &index, &snap, opts, progress)?;
    Ok(Outcome {
        summary,
        snapshot_id: id,
        dry_run: opts.dry_run,
        damaged_snapshots: repo.damaged_snapshots(),
    })
}
