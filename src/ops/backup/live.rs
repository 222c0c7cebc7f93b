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

use crate::backend::FileKind;
use crate::ops::reach::for_each_tree;
use crate::repo::Repository;
use crate::repo::blob::BlobType;
use crate::repo::index::{self, INDEX_VERSION, Index, IndexFile, IndexPack};
use crate::repo::tree::Tree;
use crate::{Error, Id, Result};

/// The last check of a write-only backup (repo-format.md §2a), which can read neither index
/// files nor a prune's marks: every blob the snapshot of `root` (and name index `names`)
/// references must be in a pack the repository still stores, as far as its send log knows
/// (what it deduplicated against and what it wrote). Takes nothing back; returns 0.
pub(super) fn ensure_stored(repo: &Repository, root: Id, names: Option<Id>) -> Result<u64> {
    crate::failpoint::hook("backup-before-check", Path::new(""));
    if repo.send_log().is_none() {
        // No send log: it deduplicated against nothing it did not write in this run.
        return Ok(0);
    }
    let index = repo.load_live_index()?;
    let need = referenced(repo, &index, root, names)?;
    let missing = need
        .iter()
        .filter(|(kind, id)| !index.contains(*kind, id))
        .count();
    match missing {
        0 => Ok(0),
        n => Err(Error::BackupLost(format!(
            "{n} blob(s) it uses are in no stored pack"
        ))),
    }
}

/// Every blob the snapshot of `root` (and name index `names`) references, its trees read
/// through `index`; a tree that cannot be read means the backup lost data it relied on.
fn referenced(
    repo: &Repository,
    index: &Index,
    root: Id,
    names: Option<Id>,
) -> Result<Vec<(BlobType, Id)>> {
    let lost = |e: Error| Error::BackupLost(e.to_string());
    let mut need: Vec<(BlobType, Id)> = Vec::new();
    if let Some(n) = names {
        need.push((BlobType::Tree, n));
        let pages = repo.load_name_index(index, &n).map_err(lost)?.pages;
        need.extend(pages.into_iter().map(|p| (BlobType::Tree, p.id)));
    }
    for_each_tree(repo, index, [root], |id, _, tree| {
        need.push((BlobType::Tree, id));
        need.extend(
            tree.nodes
                .iter()
                .flat_map(|n| n.data_blobs().map(|b| (BlobType::Data, *b))),
        );
    })
    .map_err(lost)?;
    Ok(need)
}

/// What the check before the snapshot found.
#[derive(Debug, Default)]
pub(super) struct Check {
    /// Packs taken back into the index.
    pub(super) recovered: u64,
    /// Blobs the snapshot references that are in no stored pack (a prune deleted them).
    pub(super) blobs_lost: u64,
    /// Where in the snapshot they are referenced (files, folders whose tree is lost; the
    /// first path of a tree met at several), each once: what a further pass reads again.
    pub(super) lost: Vec<PathBuf>,
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
    let need = not_live(repo, &reader, &live_ix, root, names);
    if need.is_empty() {
        return Ok(Check::default());
    }
    let stored: HashSet<Id> = repo
        .backend()
        .list(FileKind::Pack)?
        .into_iter()
        .filter_map(|(n, _)| Id::from_hex(&n))
        .collect();
    // Packs this run wrote were checked when stored; copies elsewhere are read and checked.
    let written: HashSet<Id> = files
        .iter()
        .filter(|(n, _)| own.contains(n))
        .flat_map(|(_, f)| f.packs.iter().map(|p| p.id))
        .collect();
    let mut found: HashMap<(BlobType, Id), Option<Id>> = HashMap::new();
    let mut check = Check::default();
    let mut lost_paths: HashSet<PathBuf> = HashSet::new();
    for (kind, id, path) in need {
        let pack = *found.entry((kind, id)).or_insert_with(|| {
            let pack = reader
                .copies(kind, &id)
                .filter(|l| stored.contains(&l.pack))
                .find(|l| written.contains(&l.pack) || repo.read_blob_at(l).is_ok())
                .map(|l| l.pack);
            check.blobs_lost += u64::from(pack.is_none());
            pack
        });
        if pack.is_none() && lost_paths.insert(path.clone()) {
            check.lost.push(path);
        }
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

/// The blobs the snapshot of `root` (and name index `names`) references that `live` does not
/// list, each with the snapshot path that references it (the root's for the name index), its
/// trees read through `reader`. A tree that cannot be read is listed, its entries are not.
fn not_live(
    repo: &Repository,
    reader: &Index,
    live: &Index,
    root: Id,
    names: Option<Id>,
) -> Vec<(BlobType, Id, PathBuf)> {
    let mut need = Vec::new();
    let mut note = |kind, id: Id, path: &Path| {
        if !live.contains(kind, &id) {
            need.push((kind, id, path.to_path_buf()));
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
    let mut seen: HashSet<Id> = HashSet::from([root]);
    let mut stack = vec![(root, PathBuf::new())];
    while let Some((id, path)) = stack.pop() {
        note(BlobType::Tree, id, &path);
        let Ok(tree) = repo.load_tree(reader, &id) else {
            continue;
        };
        for n in &tree.nodes {
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
    need
}

/// Whether each of `paths` is in the snapshot tree `root` (read through the readers' index).
pub(super) fn present(repo: &Repository, root: Id, paths: &[PathBuf]) -> Result<Vec<bool>> {
    let index = repo.load_index()?;
    let mut trees: HashMap<Id, Tree> = HashMap::new();
    let mut load = |id: Id| -> Result<Tree> {
        if let Some(t) = trees.get(&id) {
            return Ok(t.clone());
        }
        let t = repo.load_tree(&index, &id)?;
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
