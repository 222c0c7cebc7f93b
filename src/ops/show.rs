//! `show`: a snapshot's HydrAIDE catalogue, totals and one row per Swamp.

use std::path::Path;

use serde::Serialize;

use crate::ops::progress::Progress;
use crate::ops::restore::walk_tree;
use crate::repo::Repository;
use crate::repo::filter::SwampFilter;
use crate::repo::tree::Decision;
use crate::{Id, Result};

/// Options of `show`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ShowOptions {
    /// Snapshot id (prefix) or `latest`.
    pub snapshot: String,
    /// Only Swamps whose name matches this glob (e.g. `users/profiles/*`).
    #[arg(long)]
    pub swamp: Option<String>,
    /// List each shown Swamp's keys with value sizes and modified times (needs --swamp).
    #[arg(long, requires = "swamp")]
    pub keys: bool,
}

/// One Treasure of a Swamp (`show --keys`).
#[derive(Debug, Clone, Serialize)]
pub struct ShowKey {
    /// The key (invalid UTF-8 replaced).
    pub key: String,
    /// Bytes of its value.
    pub size: u32,
    /// The Treasure's modified time (unix ns), when its value carries one.
    pub modified_ns: Option<i64>,
}

/// Totals over the Swamps shown.
#[derive(Debug, Clone, Serialize)]
pub struct ShowTotals {
    /// Swamps.
    pub swamps: usize,
    /// Entries of all of them.
    pub entries: u64,
    /// Bytes of all of them.
    pub bytes: u64,
    /// Quarantined Swamps.
    pub quarantined: usize,
}

/// One Swamp of the catalogue.
#[derive(Debug, Clone, Serialize)]
pub struct ShowSwamp {
    /// Path of its file or folder in the snapshot.
    pub path: String,
    /// Its name, when known.
    pub name: Option<String>,
    /// HydrAIDE format (1 or 2).
    pub format: u16,
    /// Bytes stored for it.
    pub size: u64,
    /// Entries.
    pub entries: u64,
    /// Blocks.
    pub blocks: u64,
    /// The header's CreatedAt (unix ns; 0 when unknown).
    pub created_ns: i64,
    /// The file's mtime: its last write (unix ns; 0 when unknown).
    pub modified_ns: i64,
    /// What the backup decided for it.
    pub decision: Decision,
    /// Why it was quarantined, if it was.
    pub problem: Option<String>,
    /// Live records, for a logical capture (stored as records, not as the file; absent for
    /// file captures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// For a logical capture: whether a block recipe restores it byte for byte.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub byte_identical: Option<bool>,
    /// With `--keys`: its Treasures in key order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<ShowKey>>,
}

/// A snapshot's catalogue (the `--json` document).
#[derive(Debug, Clone, Serialize)]
pub struct ShowOutcome {
    /// The snapshot.
    pub snapshot_id: Id,
    /// Its time.
    pub time: String,
    /// Totals.
    pub totals: ShowTotals,
    /// The Swamps, in tree order.
    pub swamps: Vec<ShowSwamp>,
}

/// Collects the catalogue of the snapshot `opts` names.
pub fn run(repo: &Repository, opts: &ShowOptions, _progress: &Progress) -> Result<ShowOutcome> {
    let (id, snap) = repo.find_snapshot(&opts.snapshot)?;
    let index = repo.load_index()?;
    let filter = SwampFilter::new(opts.swamp.as_slice())?;
    let mut swamps = Vec::new();
    let mut keyed = Vec::new();
    walk_tree(repo, &index, &snap.tree, Path::new(""), &mut |rel, n| {
        if let Some(s) = &n.swamp
            && filter.selects(n)
        {
            swamps.push(ShowSwamp {
                path: rel.display().to_string(),
                name: s.name.clone(),
                format: s.format,
                size: n.size,
                entries: s.entries,
                blocks: s.blocks,
                created_ns: s.created_ns,
                modified_ns: s.modified_ns,
                decision: s.decision,
                problem: s.problem.clone(),
                records: s.logical.as_ref().map(|l| l.records),
                byte_identical: s.logical.as_ref().map(|l| l.recipe_len > 0),
                keys: None,
            });
            if opts.keys && s.format >= 2 && s.problem.is_none() {
                keyed.push((swamps.len() - 1, n.clone()));
            }
        }
        Ok(())
    })?;
    for (i, n) in keyed {
        let list = crate::logical::treasure::list(repo, &index, &n)?;
        swamps[i].keys = Some(
            list.into_iter()
                .map(|e| ShowKey {
                    key: String::from_utf8_lossy(&e.key).into_owned(),
                    size: e.value_len,
                    modified_ns: e.modified_ns,
                })
                .collect(),
        );
    }
    let totals = ShowTotals {
        swamps: swamps.len(),
        entries: swamps.iter().map(|s| s.entries).sum(),
        bytes: swamps.iter().map(|s| s.size).sum(),
        quarantined: swamps
            .iter()
            .filter(|s| s.decision == Decision::Quarantined)
            .count(),
    };
    Ok(ShowOutcome {
        snapshot_id: id,
        time: snap.time,
        totals,
        swamps,
    })
}
