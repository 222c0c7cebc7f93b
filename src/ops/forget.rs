//! `forget`: removes snapshots, named or by a retention policy applied per group of snapshots.
//! Only snapshot files are deleted; `prune` frees the data no remaining snapshot uses.

use jiff::tz::TimeZone;
use serde::Serialize;

use crate::backend::FileKind;
use crate::repo::Repository;
use crate::repo::snapshot::Snapshot;
use crate::retention::{Policy, Verdict};
use crate::{Error, Id, Result};

/// Options of a forget.
#[derive(Debug, Clone, Default)]
pub struct ForgetOptions {
    /// Snapshots to remove by id or prefix (no policy then).
    pub ids: Vec<String>,
    /// The retention policy.
    pub policy: Policy,
    /// Only consider snapshots of this host.
    pub host: Option<String>,
    /// Only consider snapshots with this tag.
    pub tag: Option<String>,
    /// What makes a group: any of `host`, `paths`, `tags`.
    pub group_by: Vec<String>,
    /// Decide and report, delete nothing.
    pub dry_run: bool,
}

/// One snapshot's fate.
#[derive(Debug, Clone, Serialize)]
pub struct Decided {
    /// Snapshot id.
    pub id: String,
    /// Its time.
    pub time: String,
    /// Why it is kept (empty when removed).
    pub reasons: Vec<String>,
}

/// One group of snapshots and what happens to them.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetGroup {
    /// Host of the group, when grouping by host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Paths of the group, when grouping by paths.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    /// Tags of the group, when grouping by tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Kept, newest first.
    pub keep: Vec<Decided>,
    /// Removed, newest first.
    pub remove: Vec<Decided>,
}

/// What a forget did (or would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ForgetSummary {
    /// Per group.
    pub groups: Vec<ForgetGroup>,
    /// Snapshots kept.
    pub kept: u64,
    /// Snapshots removed.
    pub removed: u64,
    /// Whether nothing was deleted.
    pub dry_run: bool,
}

const GROUP_KEYS: [&str; 3] = ["host", "paths", "tags"];

/// Decides which snapshots go, and (unless a dry run) deletes them. The caller holds an
/// exclusive lock.
pub fn forget(repo: &Repository, opts: &ForgetOptions, tz: &TimeZone) -> Result<ForgetSummary> {
    for g in &opts.group_by {
        if !GROUP_KEYS.contains(&g.as_str()) {
            return Err(Error::InvalidInput(format!(
                "cannot group by {g:?}: use host, paths and/or tags"
            )));
        }
    }
    if opts.ids.is_empty() && opts.policy.is_empty() {
        return Err(Error::InvalidInput(
            "no snapshots and no policy given: name snapshots or give --keep-* / --policy (forget never removes everything by default)".into(),
        ));
    }
    if !opts.ids.is_empty() && !opts.policy.is_empty() {
        return Err(Error::InvalidInput(
            "give either snapshot ids or a policy, not both".into(),
        ));
    }
    let all = repo.snapshots()?;
    let mut summary = ForgetSummary {
        dry_run: opts.dry_run,
        ..ForgetSummary::default()
    };
    let mut remove: Vec<Id> = Vec::new();
    if !opts.ids.is_empty() {
        let mut group = ForgetGroup {
            host: None,
            paths: None,
            tags: None,
            keep: Vec::new(),
            remove: Vec::new(),
        };
        let damaged = repo.damaged_snapshots();
        for spec in &opts.ids {
            let (id, time) = match repo.find_snapshot(spec) {
                Ok((id, snap)) => (id, snap.time),
                // A damaged snapshot named explicitly can be removed (it opens nothing).
                Err(e @ Error::Corrupt { .. }) => {
                    let spec = spec.to_ascii_lowercase();
                    match damaged
                        .iter()
                        .find(|d| d.id.starts_with(&spec))
                        .and_then(|d| Id::from_hex(&d.id))
                    {
                        Some(id) => (id, "(damaged)".to_string()),
                        None => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            };
            if !remove.contains(&id) {
                remove.push(id);
                group.remove.push(Decided {
                    id: id.to_hex(),
                    time,
                    reasons: Vec::new(),
                });
            }
        }
        summary.removed = remove.len() as u64;
        summary.kept = all.iter().filter(|(id, _)| !remove.contains(id)).count() as u64;
        summary.groups.push(group);
    } else {
        let by = |k: &str| opts.group_by.iter().any(|g| g == k);
        type Key = (Option<String>, Option<Vec<String>>, Option<Vec<String>>);
        let mut groups: Vec<(Key, Vec<&(Id, Snapshot)>)> = Vec::new();
        for s in all.iter().filter(|(_, s)| {
            opts.host.as_ref().is_none_or(|h| &s.host == h)
                && opts.tag.as_ref().is_none_or(|t| s.tags.contains(t))
        }) {
            let key: Key = (
                by("host").then(|| s.1.host.clone()),
                by("paths").then(|| s.1.paths.clone()),
                by("tags").then(|| {
                    let mut t = s.1.tags.clone();
                    t.sort();
                    t
                }),
            );
            match groups.iter_mut().find(|g| g.0 == key) {
                Some(g) => g.1.push(s),
                None => groups.push((key, vec![s])),
            }
        }
        for ((host, paths, tags), members) in groups {
            let input: Vec<(jiff::Timestamp, &[String])> = members
                .iter()
                .map(|(_, s)| (s.timestamp(), s.tags.as_slice()))
                .collect();
            let verdicts = opts.policy.apply(&input, tz);
            let mut g = ForgetGroup {
                host,
                paths,
                tags,
                keep: Vec::new(),
                remove: Vec::new(),
            };
            // Newest first in the report.
            for ((id, s), v) in members.iter().zip(&verdicts).rev() {
                if v.keep() {
                    g.keep.push(decided(id, s, v));
                } else {
                    remove.push(*id);
                    g.remove.push(decided(id, s, v));
                }
            }
            summary.kept += g.keep.len() as u64;
            summary.removed += g.remove.len() as u64;
            summary.groups.push(g);
        }
    }
    if !opts.dry_run {
        for id in &remove {
            repo.backend().remove(FileKind::Snapshot, &id.to_hex())?;
            repo.forget_damaged(&id.to_hex());
        }
    }
    Ok(summary)
}

fn decided(id: &Id, s: &Snapshot, v: &Verdict) -> Decided {
    Decided {
        id: id.to_hex(),
        time: s.time.clone(),
        reasons: v.reasons.clone(),
    }
}
