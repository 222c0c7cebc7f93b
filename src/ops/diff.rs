//! `diff`: what changed between two snapshots. Both trees are walked side by side (with an
//! explicit stack); a subtree with the same id in both is identical and skipped unread.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use serde::Serialize;

use crate::ops::progress::Progress;
use crate::repo::Repository;
use crate::repo::index::Index;
use crate::repo::tree::{Node, NodeKind, Tree};
use crate::{Id, Result};

/// Options of `diff`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DiffOptions {
    /// The older snapshot (id prefix or `latest`).
    pub from: String,
    /// The newer snapshot (id prefix or `latest`).
    pub to: String,
    /// Also list entries whose metadata (mode, times) changed but not their content.
    #[arg(long)]
    pub metadata: bool,
}

/// How an entry changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Only in the newer snapshot.
    Added,
    /// Only in the older snapshot.
    Removed,
    /// Content (or symlink target, or kind) differs.
    Modified,
    /// Only mode or modification time differ (listed with `--metadata`).
    Metadata,
}

/// One changed entry.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Path in the snapshot, starting with `/`.
    pub path: String,
    /// What happened.
    pub change: Change,
    /// `file`, `dir` or `symlink` (the newer kind when both exist).
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// Size in the older snapshot (absent when added).
    pub size_before: Option<u64>,
    /// Size in the newer snapshot (absent when removed).
    pub size_after: Option<u64>,
}

/// One changed Swamp (a `.hyd` file or V1 folder carrying a name).
#[derive(Debug, Clone, Serialize)]
pub struct SwampChange {
    /// The Swamp's name.
    pub name: String,
    /// Added, removed or modified.
    pub change: Change,
    /// Its stored size before (bytes; absent when added).
    pub size_before: Option<u64>,
    /// Its stored size after (absent when removed).
    pub size_after: Option<u64>,
}

/// Counts of a diff.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Files and symlinks added.
    pub files_added: u64,
    /// Files and symlinks removed.
    pub files_removed: u64,
    /// Files and symlinks modified.
    pub files_modified: u64,
    /// Folders added.
    pub dirs_added: u64,
    /// Folders removed.
    pub dirs_removed: u64,
    /// Bytes of the added files.
    pub bytes_added: u64,
    /// Bytes of the removed files.
    pub bytes_removed: u64,
    /// Swamps only in the newer snapshot.
    pub swamps_added: u64,
    /// Swamps only in the older snapshot.
    pub swamps_removed: u64,
    /// Swamps in both whose stored bytes differ.
    pub swamps_modified: u64,
}

/// What `diff` found (the `--json` document).
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The older snapshot.
    pub from: Id,
    /// The newer snapshot.
    pub to: Id,
    /// Changed entries, in path order.
    pub changes: Vec<Entry>,
    /// Changed Swamps, in path order of their files.
    pub swamps: Vec<SwampChange>,
    /// Counts.
    pub totals: Totals,
}

fn load(repo: &Repository, index: &Index, id: Option<Id>) -> Result<Tree> {
    match id {
        Some(id) => repo.load_tree(index, &id),
        None => Ok(Tree::default()),
    }
}

fn swamp_name(n: &Node) -> Option<&str> {
    n.swamp.as_ref().and_then(|s| s.name.as_deref())
}

fn same_content(a: &Node, b: &Node) -> bool {
    a.kind == b.kind && a.content == b.content && a.target == b.target && a.size == b.size
}

/// Compares the snapshots `opts` names.
pub fn run(repo: &Repository, opts: &DiffOptions, _progress: &Progress) -> Result<Outcome> {
    let (from, a) = repo.find_snapshot(&opts.from)?;
    let (to, b) = repo.find_snapshot(&opts.to)?;
    let index = repo.load_index()?;
    let mut out = Outcome {
        from,
        to,
        changes: Vec::new(),
        swamps: Vec::new(),
        totals: Totals::default(),
    };
    let mut stack: Vec<(PathBuf, Option<Id>, Option<Id>)> =
        vec![(PathBuf::from("/"), Some(a.tree), Some(b.tree))];
    while let Some((dir, ta, tb)) = stack.pop() {
        if ta == tb {
            continue;
        }
        let (ta, tb) = (load(repo, &index, ta)?, load(repo, &index, tb)?);
        let mut level: Vec<(Option<&Node>, Option<&Node>)> = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < ta.nodes.len() || j < tb.nodes.len() {
            let (x, y) = (ta.nodes.get(i), tb.nodes.get(j));
            match (x, y) {
                (Some(x), Some(y)) if x.name == y.name => {
                    level.push((Some(x), Some(y)));
                    i += 1;
                    j += 1;
                }
                (Some(x), Some(y)) if x.name < y.name => {
                    level.push((Some(x), None));
                    i += 1;
                }
                (Some(x), None) => {
                    level.push((Some(x), None));
                    i += 1;
                }
                (_, Some(y)) => {
                    level.push((None, Some(y)));
                    j += 1;
                }
                (None, None) => unreachable!("loop condition"),
            }
        }
        // Pushed in reverse so that the stack pops in path order.
        let mut sub = Vec::new();
        for (x, y) in level {
            let name = x.or(y).expect("one side").name.clone();
            let path = dir.join(OsStr::from_bytes(&name));
            let change = match (x, y) {
                (Some(_), None) => Change::Removed,
                (None, Some(_)) => Change::Added,
                (Some(x), Some(y)) if x.kind != y.kind => Change::Modified,
                (Some(x), Some(y)) if x.kind == NodeKind::Dir => {
                    if x.subtree != y.subtree {
                        sub.push((path.clone(), x.subtree, y.subtree));
                        if let Some(n) = swamp_name(y) {
                            note_swamp(&mut out, n, Change::Modified, x, y);
                        }
                    }
                    if opts.metadata && (x.mode != y.mode || x.mtime_ns != y.mtime_ns) {
                        push(&mut out, &path, Change::Metadata, Some(x), Some(y));
                    }
                    continue;
                }
                (Some(x), Some(y)) if !same_content(x, y) => Change::Modified,
                (Some(x), Some(y)) => {
                    if opts.metadata && (x.mode != y.mode || x.mtime_ns != y.mtime_ns) {
                        push(&mut out, &path, Change::Metadata, Some(x), Some(y));
                    }
                    continue;
                }
                (None, None) => unreachable!("one side"),
            };
            push(&mut out, &path, change, x, y);
            let (sa, sb) = (
                x.filter(|n| n.kind == NodeKind::Dir)
                    .and_then(|n| n.subtree),
                y.filter(|n| n.kind == NodeKind::Dir)
                    .and_then(|n| n.subtree),
            );
            if sa.is_some() || sb.is_some() {
                sub.push((path.clone(), sa, sb));
            }
            match (x.and_then(swamp_name), y.and_then(swamp_name)) {
                (Some(n), Some(m)) if n == m => {
                    note_swamp(&mut out, n, Change::Modified, x.expect("x"), y.expect("y"))
                }
                (a, b) => {
                    if let Some(n) = a {
                        note_one(&mut out, n, Change::Removed, x.map(|n| n.size), None);
                    }
                    if let Some(n) = b {
                        note_one(&mut out, n, Change::Added, None, y.map(|n| n.size));
                    }
                }
            }
        }
        stack.extend(sub.into_iter().rev());
    }
    Ok(out)
}

fn push(
    out: &mut Outcome,
    path: &std::path::Path,
    change: Change,
    x: Option<&Node>,
    y: Option<&Node>,
) {
    let kind = y.or(x).expect("one side").kind;
    let t = &mut out.totals;
    let is_dir = kind == NodeKind::Dir;
    match change {
        Change::Added if is_dir => t.dirs_added += 1,
        Change::Removed if is_dir => t.dirs_removed += 1,
        Change::Added => {
            t.files_added += 1;
            t.bytes_added += y.map_or(0, |n| n.size);
        }
        Change::Removed => {
            t.files_removed += 1;
            t.bytes_removed += x.map_or(0, |n| n.size);
        }
        Change::Modified => t.files_modified += 1,
        Change::Metadata => {}
    }
    out.changes.push(Entry {
        path: path.display().to_string(),
        change,
        kind,
        size_before: x.map(|n| n.size),
        size_after: y.map(|n| n.size),
    });
}

fn note_swamp(out: &mut Outcome, name: &str, change: Change, x: &Node, y: &Node) {
    note_one(out, name, change, Some(x.size), Some(y.size));
}

fn note_one(
    out: &mut Outcome,
    name: &str,
    change: Change,
    before: Option<u64>,
    after: Option<u64>,
) {
    let t = &mut out.totals;
    match change {
        Change::Added => t.swamps_added += 1,
        Change::Removed => t.swamps_removed += 1,
        _ => t.swamps_modified += 1,
    }
    out.swamps.push(SwampChange {
        name: name.to_string(),
        change,
        size_before: before,
        size_after: after,
    });
}
