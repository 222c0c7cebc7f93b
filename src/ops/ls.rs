//! `ls`: the entries of a snapshot, optionally below one path.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::Result;
use crate::ops::progress::Progress;
use crate::ops::restore::walk_tree;
use crate::repo::Repository;
use crate::repo::tree::NodeKind;

/// Options of `ls`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LsOptions {
    /// Snapshot id (prefix) or `latest`.
    pub snapshot: String,
    /// Only list below this path of the snapshot.
    pub path: Option<String>,
    /// Long listing: permissions, owner, size, modification time and symlink targets.
    #[arg(short = 'l', long = "long")]
    pub long: bool,
}

/// One entry of the snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct LsEntry {
    /// Path relative to the snapshot root.
    pub path: String,
    /// dir, file or symlink.
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Modification time (unix ns).
    pub mtime_ns: i64,
    /// Owner's user id (in `ls -l`).
    #[serde(skip)]
    pub uid: u32,
    /// Owner's group id (in `ls -l`).
    #[serde(skip)]
    pub gid: u32,
    /// A symlink's target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// The entries in tree order (the `--json` document is this list).
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct LsOutcome(pub Vec<LsEntry>);

/// Lists the entries of the snapshot `opts` names.
pub fn run(repo: &Repository, opts: &LsOptions, _progress: &Progress) -> Result<LsOutcome> {
    let (_, snap) = repo.find_snapshot(&opts.snapshot)?;
    let index = repo.load_index()?;
    let prefix = opts
        .path
        .as_deref()
        .map(|p| PathBuf::from(p.trim_start_matches('/')));
    let mut rows = Vec::new();
    walk_tree(repo, &index, &snap.tree, Path::new(""), &mut |rel, n| {
        if prefix.as_ref().is_none_or(|p| rel.starts_with(p)) {
            rows.push(LsEntry {
                path: rel.display().to_string(),
                kind: n.kind,
                size: n.size,
                mode: n.mode,
                mtime_ns: n.mtime_ns,
                uid: n.uid,
                gid: n.gid,
                target: n
                    .target
                    .as_ref()
                    .map(|t| String::from_utf8_lossy(t).into_owned()),
            });
        }
        Ok(())
    })?;
    Ok(LsOutcome(rows))
}
