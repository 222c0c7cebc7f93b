//! `snapshots`: the snapshots of a repository, filtered by host and tag.

use serde::Serialize;

use crate::ops::progress::Progress;
use crate::repo::Repository;
use crate::repo::snapshot::Snapshot;
use crate::{Id, Result};

/// Options of `snapshots`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SnapshotsOptions {
    /// Only snapshots of this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Only snapshots with this tag.
    #[arg(long)]
    pub tag: Option<String>,
}

/// One snapshot with its id: the snapshot's fields plus `id` and `short_id`.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotEntry {
    /// Its id.
    pub id: Id,
    /// The id's short form.
    pub short_id: String,
    /// The snapshot.
    #[serde(flatten)]
    pub snapshot: Snapshot,
}

/// The snapshots, oldest first (the `--json` document is this list).
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct SnapshotsOutcome(pub Vec<SnapshotEntry>);

/// Lists the snapshots that match `opts`.
pub fn run(
    repo: &Repository,
    opts: &SnapshotsOptions,
    _progress: &Progress,
) -> Result<SnapshotsOutcome> {
    Ok(SnapshotsOutcome(
        repo.snapshots()?
            .into_iter()
            .filter(|(_, s)| opts.host.as_ref().is_none_or(|h| &s.host == h))
            .filter(|(_, s)| opts.tag.as_ref().is_none_or(|t| s.tags.contains(t)))
            .map(|(id, snapshot)| SnapshotEntry {
                id,
                short_id: id.short(),
                snapshot,
            })
            .collect(),
    ))
}
