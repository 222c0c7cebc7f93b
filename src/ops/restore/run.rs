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
    // `SNAPSHOT:PATH`: the folder PATH of the snapshot.
    let (spec, sub) = match opts.snapshot.as_deref().map(|s| s.split_once(':')) {
        Some(Some((s, p))) => (Some(s), Some(p)),
        _ => (opts.snapshot.as_deref(), None),
    };
    let (id, mut snap) = match (spec, &opts.at) {
        (_, Some(at)) => repo.find_snapshot_at(crate::timespec::parse(at)?)?,
        (Some(s), None) => repo.find_snapshot(s)?,
        (None, None) => {
            return Err(Error::InvalidInput(
                "give a snapshot id or --at TIME".into(),
            ));
        }
    };
    let index = repo.load_index()?;
    if let Some(path) = sub {
        let node = crate::ops::dump::lookup(repo, &index, &snap.tree, path)?;
        match (node.kind, node.subtree) {
            (crate::repo::tree::NodeKind::Dir, Some(tree)) => snap.tree = tree,
            _ => {
                return Err(Error::InvalidInput(format!(
                    "{path} is not a folder of the snapshot: restore a folder, or use `dump` for a file"
                )));
            }
        }
        // The name index holds paths from the snapshot root.
        snap.names = None;
    }
    let summary = restore(repo, &index, &snap, opts, progress)?;
    Ok(Outcome {
        summary,
        snapshot_id: id,
        dry_run: opts.dry_run,
        damaged_snapshots: repo.damaged_snapshots(),
    })
}
