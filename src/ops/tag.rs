//! `tag`: changes the tags of existing snapshots. Snapshots are immutable, so each changed one
//! is written anew (same time, tree and everything else; `original` names the snapshot it
//! replaces, or keeps the first one's id) and the old file removed, as restic does.

use serde::Serialize;

use crate::backend::FileKind;
use crate::ops::progress::Progress;
use crate::repo::Repository;
use crate::{Error, Id, Result};

/// Options of `tag`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TagOptions {
    /// Snapshots to change (id prefixes or `latest`).
    #[arg(required = true)]
    pub snapshots: Vec<String>,
    /// Add this tag (repeatable).
    #[arg(long = "add")]
    pub add: Vec<String>,
    /// Remove this tag (repeatable).
    #[arg(long = "remove")]
    pub remove: Vec<String>,
    /// Replace all tags with these (repeatable; `--set ''` removes every tag).
    #[arg(long = "set", conflicts_with_all = ["add", "remove"])]
    pub set: Vec<String>,
}

/// One snapshot rewritten.
#[derive(Debug, Clone, Serialize)]
pub struct Retagged {
    /// The snapshot replaced (removed).
    pub old: Id,
    /// Its replacement.
    pub new: Id,
    /// The new tags.
    pub tags: Vec<String>,
}

/// What `tag` did (the `--json` document).
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Snapshots rewritten.
    pub changed: Vec<Retagged>,
    /// Snapshots whose tags were already as asked (left alone).
    pub unchanged: Vec<Id>,
}

/// Applies the tag changes.
pub fn run(repo: &Repository, opts: &TagOptions, _progress: &Progress) -> Result<Outcome> {
    if opts.add.is_empty() && opts.remove.is_empty() && opts.set.is_empty() {
        return Err(Error::InvalidInput(
            "nothing to do: give --add, --remove or --set".into(),
        ));
    }
    let _lock = repo.lock(true, "tag")?;
    let mut out = Outcome {
        changed: Vec::new(),
        unchanged: Vec::new(),
    };
    let mut seen: Vec<Id> = Vec::new();
    for spec in &opts.snapshots {
        let (id, snap) = repo.find_snapshot(spec)?;
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        let mut tags: Vec<String> = if opts.set.is_empty() {
            snap.tags.clone()
        } else {
            opts.set.iter().filter(|t| !t.is_empty()).cloned().collect()
        };
        tags.retain(|t| !opts.remove.contains(t));
        for t in &opts.add {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        tags.sort();
        tags.dedup();
        let mut before = snap.tags.clone();
        before.sort();
        if tags == before {
            out.unchanged.push(id);
            continue;
        }
        let mut new = snap.clone();
        new.tags = tags.clone();
        new.original = Some(snap.original.unwrap_or(id));
        // The new snapshot first: a kill in between leaves both, never neither.
        let new_id = repo.save_object(FileKind::Snapshot, &new)?;
        crate::failpoint::hit("tag-after-save");
        repo.backend().remove(FileKind::Snapshot, &id.to_hex())?;
        out.changed.push(Retagged {
            old: id,
            new: new_id,
            tags,
        });
    }
    Ok(out)
}
