//! The backup's last check before it writes its snapshot (repo-format.md §9a): every blob the
//! snapshot references must be in the live index, since a prune may have marked packs this
//! backup deduplicated against (or its own packs, which no snapshot used yet) while it ran.
//! Such packs are still stored (a prune deletes nothing marked after a live lock was taken), so
//! the backup takes them back: it checks the blobs it needs from them and writes an index file
//! listing those packs as live. A blob in no stored pack (the prune deleted it: the backup ran
//! past the lock staleness window) fails the backup before any snapshot is written.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::backend::FileKind;
use crate::ops::reach::for_each_tree;
use crate::repo::Repository;
use crate::repo::blob::BlobType;
use crate::repo::index::{self, INDEX_VERSION, Index, IndexFile, IndexPack};
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

/// Makes sure what the snapshot of `root` (and name index `names`) references is live; `start`
/// is the live index the backup read (from the index files named `start_files`), `own` the
/// index files it wrote. Returns the packs taken back into the index.
pub(super) fn ensure_live(
    repo: &Repository,
    start: &Index,
    start_files: &HashSet<String>,
    own: &[Id],
    root: Id,
    names: Option<Id>,
) -> Result<u64> {
    crate::failpoint::hook("backup-before-check", Path::new(""));
    if nothing_left_the_index(repo, start_files, own)? {
        return Ok(0);
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
        return Ok(0);
    }
    let reader = index::reader_index(&files);
    let live_ix = index::live_index(&files);
    let mut need = referenced(repo, &reader, root, names)?;
    need.retain(|(kind, id)| !live_ix.contains(*kind, id));
    need.sort_by_key(|(k, id)| (*k == BlobType::Tree, *id));
    need.dedup();
    if need.is_empty() {
        return Ok(0);
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
    let mut back: HashSet<Id> = HashSet::new();
    let mut missing = 0u64;
    for (kind, id) in &need {
        let found = reader
            .copies(*kind, id)
            .filter(|l| stored.contains(&l.pack))
            .find(|l| written.contains(&l.pack) || repo.read_blob_at(l).is_ok());
        match found {
            Some(l) => {
                back.insert(l.pack);
            }
            None => missing += 1,
        }
    }
    if missing > 0 {
        return Err(Error::BackupLost(format!(
            "{missing} blob(s) it uses are in no stored pack"
        )));
    }
    let mut records: HashMap<Id, IndexPack> = HashMap::new();
    for (_, f) in index::by_priority(&files) {
        for p in f.packs.iter().chain(f.marked.iter().map(|m| &m.pack)) {
            if back.contains(&p.id) && !p.blobs.is_empty() {
                records.entry(p.id).or_insert_with(|| p.clone());
            }
        }
    }
    let n = records.len() as u64;
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
        packs = n,
        "packs a prune had marked were taken back into the index"
    );
    Ok(n)
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
