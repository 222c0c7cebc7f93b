//! `snapshots`: the snapshots of a repository, filtered by host and tag.

use serde::Serialize;

use crate::ops::progress::Progress;
use crate::repo::Repository;
use crate::repo::snapshot::Snapshot;
use crate::{Id, Result};

/// Options of `snapshots`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SnapshotsOptions {
    /// Only snapshots of this host (repeatable: any of them).
    #[arg(long)]
    pub host: Vec<String>,
    /// Only snapshots with these tags (`a,b`: both; repeatable: any of the lists).
    #[arg(long)]
    pub tag: Vec<String>,
    /// Only snapshots that include this backed-up path (repeatable: all of them).
    #[arg(long)]
    pub path: Vec<String>,
    /// Only the newest N snapshots of each host and set of paths.
    #[arg(long, value_name = "N")]
    pub latest: Option<usize>,
}

impl SnapshotsOptions {
    /// Whether `s` passes the host, tag and path filters.
    pub fn matches(&self, s: &Snapshot) -> bool {
        let tags_ok = |list: &String| list.split(',').all(|t| s.tags.iter().any(|x| x == t));
        (self.host.is_empty() || self.host.contains(&s.host))
            && (self.tag.is_empty() || self.tag.iter().any(tags_ok))
            && self.path.iter().all(|p| {
                let p = p.trim_end_matches('/');
                s.paths.iter().any(|x| x == p)
            })
    }
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
    let mut list: Vec<(Id, Snapshot)> = repo
        .snapshots()?
        .into_iter()
        .filter(|(_, s)| opts.matches(s))
        .collect();
    if let Some(n) = opts.latest {
        // Newest first per group, then back to oldest first.
        let mut seen: std::collections::HashMap<(String, Vec<String>), usize> = Default::default();
        list.reverse();
        list.retain(|(_, s)| {
            let c = seen.entry((s.host.clone(), s.paths.clone())).or_default();
            *c += 1;
            *c <= n
        });
        list.reverse();
    }
    Ok(SnapshotsOutcome(
        list.into_iter()
            .map(|(id, snapshot)| SnapshotEntry {
                id,
                short_id: id.short(),
                snapshot,
            })
            .collect(),
    ))
}
