//! S3 Object Lock maintenance (repo-format.md §1a): extending the lock of every stored object
//! before less than the configured period is left (run by `prune`), removing for good the
//! hidden versions whose lock has ended, and finding objects protected for less than the
//! configured period (`verify`).

use std::collections::HashSet;

use jiff::Timestamp;
use rayon::prelude::*;
use serde::Serialize;

use crate::Result;
use crate::backend::{FileKind, ObjectLock, Purged};
use crate::repo::Repository;

/// The kinds whose objects are locked: everything but the locks.
const LOCKED_KINDS: [FileKind; 5] = [
    FileKind::Config,
    FileKind::Key,
    FileKind::Index,
    FileKind::Snapshot,
    FileKind::Pack,
];

/// What lock maintenance did (part of `prune`'s outcome).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LockMaintenance {
    /// Stored objects whose lock was checked.
    pub objects: u64,
    /// Of them, those whose lock was extended.
    pub extended: u64,
    /// Removed objects (hidden versions): what was freed and what stays locked, until when.
    pub hidden: Purged,
}

/// An object protected for less than the configured period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShortRetention {
    /// Its kind (`config`, `key`, `index`, `snapshot`, `pack`).
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// When its lock ends (`null`: not locked).
    pub until: Option<Timestamp>,
}

/// The repository's object lock, if it has one.
fn lock_of(repo: &Repository) -> Option<ObjectLock> {
    repo.config().object_lock.map(|l| l.lock())
}

/// Every stored object that must be locked, with its lock's end.
fn retentions(repo: &Repository) -> Result<Vec<(FileKind, String, Option<Timestamp>)>> {
    let backend = repo.backend();
    let mut names = Vec::new();
    for kind in LOCKED_KINDS {
        names.extend(backend.list(kind)?.into_iter().map(|(n, _)| (kind, n)));
    }
    names
        .into_par_iter()
        .map(|(kind, name)| {
            let until = backend.retention(kind, &name)?;
            Ok((kind, name, until))
        })
        .collect()
}

/// What a two-phase prune has taken out of the index (marked packs, superseded index files,
/// repo-format.md §9a): their locks are left to run out so that a later prune can free them. A
/// marked pack taken back into the index is extended again by the next maintenance.
fn on_the_way_out(repo: &Repository) -> Result<HashSet<(FileKind, String)>> {
    let mut out = HashSet::new();
    for (_, f) in repo.load_index_files()? {
        out.extend(
            f.marked
                .iter()
                .map(|m| (FileKind::Pack, m.pack.id.to_hex())),
        );
        out.extend(f.supersedes.iter().map(|id| (FileKind::Index, id.to_hex())));
    }
    Ok(out)
}

/// Extends the lock of every stored object but the locks that has less than the configured
/// period left to `now + retention + renewal`, then removes for good the hidden versions whose
/// lock has ended. Run by `prune` after its deletions, so what is stored then is what kept
/// snapshots use. `None` for a repository without object lock.
pub fn maintain(repo: &Repository) -> Result<Option<LockMaintenance>> {
    let Some(lock) = lock_of(repo) else {
        return Ok(None);
    };
    let now = Timestamp::now();
    let objects = retentions(repo)?;
    let until = lock.until(now);
    let leaving = on_the_way_out(repo)?;
    let short: Vec<_> = objects
        .iter()
        .filter(|(kind, name, u)| {
            lock.is_short(*u, now) && !leaving.contains(&(*kind, name.clone()))
        })
        .collect();
    short
        .par_iter()
        .try_for_each(|(kind, name, _)| repo.backend().extend_retention(*kind, name, until))?;
    tracing::info!(
        objects = objects.len(),
        extended = short.len(),
        "object locks extended"
    );
    let hidden = repo.backend().purge_hidden()?;
    Ok(Some(LockMaintenance {
        objects: objects.len() as u64,
        extended: short.len() as u64,
        hidden,
    }))
}

/// The stored objects (but locks) whose lock ends sooner than the configured period from now,
/// unlocked ones included; empty for a repository without object lock.
pub fn short_retention(repo: &Repository) -> Result<Vec<ShortRetention>> {
    let Some(lock) = lock_of(repo) else {
        return Ok(Vec::new());
    };
    let now = Timestamp::now();
    let mut out: Vec<ShortRetention> = retentions(repo)?
        .into_iter()
        .filter(|(_, _, u)| lock.is_short(*u, now))
        .map(|(kind, name, until)| ShortRetention {
            kind: kind.label(),
            name,
            until,
        })
        .collect();
    out.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    Ok(out)
}

/// When the locks of removed objects end, for commands that remove (`forget`): the latest
/// retain-until date of the given objects, read before they are removed. `None` without
/// object lock or when none is locked.
pub fn locked_until(
    repo: &Repository,
    kind: FileKind,
    names: &[String],
) -> Result<Option<Timestamp>> {
    if lock_of(repo).is_none() {
        return Ok(None);
    }
    let now = Timestamp::now();
    let mut latest = None;
    for name in names {
        if let Some(u) = repo.backend().retention(kind, name)?
            && u > now
        {
            latest = latest.max(Some(u));
        }
    }
    Ok(latest)
}
