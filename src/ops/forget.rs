//! `forget`: removes snapshots, named or by a retention policy applied per group of snapshots.
//! Only snapshot files are deleted, under a shared lock: backups, and other forgets, run beside
//! it (a snapshot already removed by another forget is simply gone). `prune` frees the data no
//! remaining snapshot uses.

use jiff::tz::TimeZone;
use serde::Serialize;

use crate::backend::FileKind;
use crate::ops::progress::Progress;
use crate::ops::prune::{self, PruneOptions};
use crate::repo::lock::LockKind;
use crate::repo::snapshot::Snapshot;
use crate::repo::{DamagedSnapshot, Repository};
use crate::retention::{Policy, Verdict, parse_span};
use crate::{Error, Id, Result};

/// Options of a forget.
#[derive(Debug, Clone, clap::Args)]
pub struct ForgetOptions {
    /// Snapshot ids (or prefixes) to remove; without them, the policy decides.
    pub snapshots: Vec<String>,
    /// Compact policy: e.g. `7d,4w,12m` (units l=last, h, d, w, m, y).
    #[arg(long)]
    pub policy: Option<String>,
    /// Keep the newest N snapshots.
    #[arg(long)]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours that have one.
    #[arg(long)]
    pub keep_hourly: Option<u32>,
    /// ... of each of the last N days.
    #[arg(long)]
    pub keep_daily: Option<u32>,
    /// ... of each of the last N weeks.
    #[arg(long)]
    pub keep_weekly: Option<u32>,
    /// ... of each of the last N months.
    #[arg(long)]
    pub keep_monthly: Option<u32>,
    /// ... of each of the last N years.
    #[arg(long)]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot within this span of the newest one (e.g. `30d`, `1y6m`).
    #[arg(long)]
    pub keep_within: Option<String>,
    /// Keep snapshots with this tag (repeatable).
    #[arg(long = "keep-tag")]
    pub keep_tags: Vec<String>,
    /// Only consider snapshots of this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Only consider snapshots with this tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// Apply the policy per group of snapshots sharing these (comma-separated: host, paths,
    /// tags; empty: one group).
    #[arg(long, default_value = "host,paths")]
    pub group_by: String,
    /// Prune afterwards (with the options below).
    #[arg(long)]
    pub prune: bool,
    /// `--dry-run` for both; the rest for `--prune`.
    #[command(flatten)]
    pub prune_options: PruneOptions,
}

impl Default for ForgetOptions {
    fn default() -> Self {
        ForgetOptions {
            snapshots: Vec::new(),
            policy: None,
            keep_last: None,
            keep_hourly: None,
            keep_daily: None,
            keep_weekly: None,
            keep_monthly: None,
            keep_yearly: None,
            keep_within: None,
            keep_tags: Vec::new(),
            host: None,
            tag: None,
            group_by: "host,paths".into(),
            prune: false,
            prune_options: PruneOptions::default(),
        }
    }
}

impl ForgetOptions {
    /// The retention policy: `policy` merged with the `keep_*` options.
    pub fn retention(&self) -> Result<Policy> {
        let mut p = match &self.policy {
            Some(s) => Policy::parse(s)?,
            None => Policy::default(),
        };
        p.merge(Policy {
            last: self.keep_last.unwrap_or(0),
            hourly: self.keep_hourly.unwrap_or(0),
            daily: self.keep_daily.unwrap_or(0),
            weekly: self.keep_weekly.unwrap_or(0),
            monthly: self.keep_monthly.unwrap_or(0),
            yearly: self.keep_yearly.unwrap_or(0),
            within: self.keep_within.as_deref().map(parse_span).transpose()?,
            tags: self.keep_tags.clone(),
        });
        Ok(p)
    }

    /// Refuses options no forget can run with (a bad policy or `--max-unused`); `run` checks
    /// them too, a caller may check them before opening the repository.
    pub fn check(&self) -> Result<()> {
        self.prune_options.check()?;
        self.retention().map(|_| ())
    }

    /// The keys of `group_by`.
    pub fn group_keys(&self) -> Vec<String> {
        self.group_by
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }
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
    /// With object lock: the removed snapshot files are hidden at once but stay stored until
    /// their lock ends, the latest at this time (a `prune` after it frees them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<jiff::Timestamp>,
}

const GROUP_KEYS: [&str; 3] = ["host", "paths", "tags"];

/// Decides which snapshots go, and (unless a dry run) deletes them. The caller holds a lock.
fn forget(repo: &Repository, opts: &ForgetOptions, tz: &TimeZone) -> Result<ForgetSummary> {
    let policy = opts.retention()?;
    let group_by = opts.group_keys();
    let ids = &opts.snapshots;
    let dry_run = opts.prune_options.dry_run;
    for g in &group_by {
        if !GROUP_KEYS.contains(&g.as_str()) {
            return Err(Error::InvalidInput(format!(
                "cannot group by {g:?}: use host, paths and/or tags"
            )));
        }
    }
    if ids.is_empty() && policy.is_empty() {
        return Err(Error::InvalidInput(
            "no snapshots and no policy given: name snapshots or give --keep-* / --policy (forget never removes everything by default)".into(),
        ));
    }
    if !ids.is_empty() && !policy.is_empty() {
        return Err(Error::InvalidInput(
            "give either snapshot ids or a policy, not both".into(),
        ));
    }
    let all = repo.snapshots()?;
    let mut summary = ForgetSummary {
        dry_run,
        ..ForgetSummary::default()
    };
    let mut remove: Vec<Id> = Vec::new();
    if !ids.is_empty() {
        let mut group = ForgetGroup {
            host: None,
            paths: None,
            tags: None,
            keep: Vec::new(),
            remove: Vec::new(),
        };
        let damaged = repo.damaged_snapshots();
        for spec in ids {
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
        let by = |k: &str| group_by.iter().any(|g| g == k);
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
            let verdicts = policy.apply(&input, tz);
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
    let names: Vec<String> = remove.iter().map(Id::to_hex).collect();
    summary.locked_until = super::objlock::locked_until(repo, FileKind::Snapshot, &names)?;
    if !dry_run {
        for id in &remove {
            match repo.backend().remove(FileKind::Snapshot, &id.to_hex()) {
                // Another forget removed it meanwhile: it is gone, as asked.
                Err(e) if !crate::repo::is_not_found(&e) => return Err(e),
                _ => repo.forget_damaged(&id.to_hex()),
            }
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

/// What `forget [--prune]` did (the `--json` document): the summary's fields, the prune's
/// summary under `prune`, and the damaged snapshots skipped.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// What forget decided and did.
    #[serde(flatten)]
    pub summary: ForgetSummary,
    /// What the prune did, with `--prune`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune: Option<prune::PruneSummary>,
    /// Snapshots skipped because they are damaged.
    pub damaged_snapshots: Vec<DamagedSnapshot>,
}

/// Forgets snapshots (and prunes, with `opts.prune`) under one lock: shared, or the prune's
/// (see [`PruneOptions::lock_kind`]) with `opts.prune`. Periods of the policy are calendar
/// periods of the system time zone.
pub fn run(repo: &Repository, opts: &ForgetOptions, progress: &Progress) -> Result<Outcome> {
    opts.check()?;
    let kind = if opts.prune {
        opts.prune_options.lock_kind()
    } else {
        LockKind::Shared
    };
    let _lock = repo.lock_kind(kind, "forget")?;
    let summary = forget(repo, opts, &TimeZone::system())?;
    let prune = if opts.prune {
        Some(prune::prune(repo, &opts.prune_options, progress)?)
    } else {
        None
    };
    Ok(Outcome {
        summary,
        prune,
        damaged_snapshots: repo.damaged_snapshots(),
    })
}
