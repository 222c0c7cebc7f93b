//! The backup's last check before it writes its snapshot (repo-format.md §9a): every blob the
//! snapshot references must be in the live index, since a prune may have marked packs this
//! backup deduplicated against (or its own packs, which no snapshot used yet) while it ran.
//! Such packs are still stored (a prune deletes nothing marked after a live lock was taken), so
//! the backup takes them back: it checks the blobs it needs from them and writes an index file
//! listing those packs as live. A blob in no stored pack (the prune deleted it: the backup ran
//! past the lock staleness window) is named with the paths that reference it, which the backup
//! then reads again from the source.

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::backend::FileKind;
use crate::repo::Repository;
use crate::repo::blob::BlobType;
use crate::repo::index::{self, INDEX_VERSION, Index, IndexFile, IndexPack};
use crate::repo::tree::Tree;
use crate::{Id, Result};

/// The last check of a write-only backup (repo-format.md §2a), which can read neither index
/// files nor a prune's marks: every blob the snapshot of `root` (and name index `names`)
/// references must be in a pack the repository still stores, as far as its send log knows
/// (what it deduplicated against and what it wrote). Takes nothing back; names the paths whose
/// blobs are in no stored pack.
pub(super) fn ensure_stored(repo: &Repository, root: Id, names: Option<Id>) -> Result<Check> {
    crate::failpoint::hook("backup-before-check", Path::new(""));
    if repo.send_log().is_none() {
        // No send log: it deduplicated against nothing it did not write in this run.
        return Ok(Check::default());
    }
    let index = repo.load_live_index()?;
    let mut check = Check::default();
    let mut lost: HashSet<(BlobType, Id)> = HashSet::new();
    not_live(repo, &index, &index, root, names, |kind, id, path| {
        check.blobs_lost += u64::from(lost.insert((kind, id)));
        check.note_lost(path);
    });
    Ok(check)
}

/// What the check before the snapshot found.
#[derive(Debug, Default)]
pub(super) struct Check {
    /// Packs taken back into the index.
    pub(super) recovered: u64,
    /// Blobs the snapshot references that are in no stored pack (a prune deleted them).
    pub(super) blobs_lost: u64,
    /// Where in the snapshot they are referenced (files, folders whose tree is lost; the
    /// first path of a tree met at several), each once, at most `LOST_PATHS` of them.
    pub(super) lost: Vec<PathBuf>,
}

/// Paths with lost blobs listed at most (each a file a further pass may find gone and report):
/// the list stays small however much a prune deleted; beyond it, files gone are not named.
const LOST_PATHS: usize = 10_000;

impl Check {
    /// Notes that `path` references a lost blob (the paths of one file come one after another).
    fn note_lost(&mut self, path: &Path) {
        if self.lost.len() < LOST_PATHS && self.lost.last().is_none_or(|p| p != path) {
            self.lost.push(path.to_path_buf());
        }
    }
}

/// Makes sure what the snapshot of `root` (and name index `names`) references is live; `start`
/// is the live index the backup read (from the index files named `start_files`), `own` the
/// index files it wrote. Takes back into the index the marked packs that hold what it
/// references, and names the paths whose blobs are in no stored pack.
pub(super) fn ensure_live(
    repo: &Repository,
    start: &Index,
    start_files: &HashSet<String>,
    own: &[Id],
    root: Id,
    names: Option<Id>,
) -> Result<Check> {
    crate::failpoint::hook("backup-before-check", Path::new(""));
    if nothing_left_the_index(repo, start_files, own)? {
        return Ok(Check::default());
    }
    let files = repo.load_readable_index_files()?;
    let live = index::live_packs(&files);
    let superseded = index::superseded(&files);
    let present: HashSet<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let own: HashSet<String> = own.iter().map(Id::to_hex).collect();
    // Nothing this backup may reference left the index: the common case costs one listing.
    if start.packs().iter().all(|p| live.contains(p))
        && own
            .iter()
            .all(|n| present.contains(n.as_str()) && !superseded.contains(n))
    {
        return Ok(Check::default());
    }
    let reader = index::reader_index(&files);
    let live_ix = index::live_index(&files);
    // Packs this run wrote were checked when stored; copies elsewhere are read and checked.
    let written: HashSet<Id> = files
        .iter()
        .filter(|(n, _)| own.contains(n))
        .flat_map(|(_, f)| f.packs.iter().map(|p| p.id))
        .collect();
    let mut stored: Option<HashSet<Id>> = None;
    let mut failed = None;
    let mut found: HashMap<(BlobType, Id), Option<Id>> = HashMap::new();
    let mut check = Check::default();
    not_live(repo, &reader, &live_ix, root, names, |kind, id, path| {
        let stored = match &stored {
            Some(s) => s,
            None => match repo.backend().list(FileKind::Pack) {
                Ok(l) => stored.insert(l.iter().filter_map(|(n, _)| Id::from_hex(n)).collect()),
                Err(e) => {
                    failed.get_or_insert(e);
                    return;
                }
            },
        };
        let pack = *found.entry((kind, id)).or_insert_with(|| {
            let pack = reader
                .copies(kind, &id)
                .filter(|l| stored.contains(&l.pack))
                .find(|l| written.contains(&l.pack) || repo.read_blob_at(l).is_ok())
                .map(|l| l.pack);
            check.blobs_lost += u64::from(pack.is_none());
            pack
        });
        if pack.is_none() {
            check.note_lost(path);
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let back: HashSet<Id> = found.into_values().flatten().collect();
    let mut records: HashMap<Id, IndexPack> = HashMap::new();
    for (_, f) in index::by_priority(&files) {
        for p in f.packs.iter().chain(f.marked.iter().map(|m| &m.pack)) {
            if back.contains(&p.id) && !p.blobs.is_empty() {
                records.entry(p.id).or_insert_with(|| p.clone());
            }
        }
    }
    check.recovered = records.len() as u64;
    if records.is_empty() {
        return Ok(check);
    }
    let mut packs: Vec<IndexPack> = records.into_values().collect();
    packs.sort_by_key(|p| p.id);
    repo.save_object(
        FileKind::Index,
        &IndexFile {
            version: INDEX_VERSION,
            packs,
            ..IndexFile::default()
        },
    )?;
    tracing::info!(
        packs = check.recovered,
        "packs a prune had marked were taken back into the index"
    );
    Ok(check)
}

/// Calls `visit` with each blob the snapshot of `root` (and name index `names`) references
/// that `live` does not list, and the snapshot path that references it (the root's for the
/// name index), its trees read through `reader`. A tree that cannot be read is visited, its
/// entries are not. Each tree is walked once (at the first path met).
fn not_live(
    repo: &Repository,
    reader: &Index,
    live: &Index,
    root: Id,
    names: Option<Id>,
    mut visit: impl FnMut(BlobType, Id, &Path),
) {
    let mut note = |kind, id: Id, path: &Path| {
        if !live.contains(kind, &id) {
            visit(kind, id, path);
        }
    };
    if let Some(n) = names {
        note(BlobType::Tree, n, Path::new(""));
        if let Ok(ix) = repo.load_name_index(reader, &n) {
            for p in ix.pages {
                note(BlobType::Tree, p.id, Path::new(""));
            }
        }
    }
    // Depth first, a few trees loaded in parallel at a time: memory holds the pending folders'
    // ids and a batch of trees, never a whole level of a wide tree.
    let mut seen: HashSet<Id> = HashSet::from([root]);
    let mut stack = vec![(root, PathBuf::new())];
    while !stack.is_empty() {
        let batch = stack.split_off(stack.len().saturating_sub(TREE_BATCH));
        let loaded: Vec<(Id, PathBuf, Option<Tree>)> = batch
            .into_par_iter()
            .map(|(id, path)| {
                let tree = repo.load_tree(reader, &id).ok();
                (id, path, tree)
            })
            .collect();
        for (id, path, tree) in loaded {
            note(BlobType::Tree, id, &path);
            for n in tree.iter().flat_map(|t| &t.nodes) {
                let at = path.join(std::ffi::OsStr::from_bytes(&n.name));
                for b in n.data_blobs() {
                    note(BlobType::Data, *b, &at);
                }
                if let Some(s) = n.subtree
                    && seen.insert(s)
                {
                    stack.push((s, at));
                }
            }
        }
    }
}

/// Trees the check loads at once (in parallel).
const TREE_BATCH: usize = 64;

/// Whether each of `paths` is in the snapshot tree `root` (read through the readers' index).
pub(super) fn present(repo: &Repository, root: Id, paths: &[PathBuf]) -> Result<Vec<bool>> {
    let index = repo.load_index()?;
    let mut trees: HashMap<Id, Tree> = HashMap::new();
    let mut load = |id: Id| -> Result<Tree> {
        if let Some(t) = trees.get(&id) {
            return Ok(t.clone());
        }
        let t = repo.load_tree(&index, &id)?;
        if trees.len() >= 256 {
            // The folders along the paths asked about: a few at a time, never the whole tree.
            trees.clear();
        }
        trees.insert(id, t.clone());
        Ok(t)
    };
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        let mut at = Some(root);
        let mut found = true;
        for c in p.components() {
            let Some(id) = at else {
                found = false;
                break;
            };
            let tree = load(id)?;
            match tree.find(c.as_os_str().as_bytes()) {
                Some(n) => at = n.subtree,
                None => {
                    found = false;
                    break;
                }
            }
        }
        out.push(found);
    }
    Ok(out)
}

/// The common case, cheaply: every index file the backup started from is still there, and no
/// file written since (but its own) supersedes or marks anything (only a prune writes such
/// files), so nothing it may reference left the index. Reads only the new files.
fn nothing_left_the_index(
    repo: &Repository,
    start_files: &HashSet<String>,
    own: &[Id],
) -> Result<bool> {
    let listed = repo.backend().list(FileKind::Index)?;
    let now: HashSet<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    if !start_files.iter().all(|n| now.contains(n.as_str())) {
        return Ok(false);
    }
    let own: HashSet<String> = own.iter().map(Id::to_hex).collect();
    for (name, _) in listed {
        if start_files.contains(&name) || own.contains(&name) {
            continue;
        }
        match repo.load_object::<IndexFile>(FileKind::Index, &name) {
            Ok(f) if f.supersedes.is_empty() && f.marked.is_empty() => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}
