//! `repair index` (index files rebuilt from the pack headers) and `repair snapshots` (new
//! snapshots without the files whose data is missing), both under an exclusive lock.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::backend::FileKind;
use crate::crypto::Keys;
use crate::ops::progress::Progress;
use crate::repo::Repository;
use crate::repo::blob::{BlobType, seal_blob};
use crate::repo::index::{INDEX_VERSION, Index, IndexFile, IndexPack};
use crate::repo::pack::{PackEntry, decode_header};
use crate::repo::tree::{NodeKind, Tree};
use crate::repo::writer::PackWriter;
use crate::{Error, Id, Result};

/// Blobs per index file written by `repair index` (as a backup's).
const INDEX_FILE_BLOBS: usize = 50_000;

/// The tag every snapshot written by `repair snapshots` carries.
pub const REPAIRED_TAG: &str = "repaired";

/// Options of `repair index`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RepairIndexOptions {
    /// Show what would be done, write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// A pack that could not be indexed.
#[derive(Debug, Clone, Serialize)]
pub struct BadPack {
    /// The pack.
    pub id: String,
    /// Why.
    pub error: String,
}

/// What `repair index` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IndexOutcome {
    /// Packs whose header was read and indexed.
    pub packs: u64,
    /// Blobs indexed.
    pub blobs: u64,
    /// Packs indexed that no index file listed before.
    pub packs_added: u64,
    /// Packs the old index listed that are missing or damaged (no longer listed).
    pub packs_dropped: u64,
    /// Packs whose header does not read (left out; `prune` removes unlisted packs).
    pub damaged_packs: Vec<BadPack>,
    /// Index files written.
    pub index_files_written: u64,
    /// Old index files removed.
    pub index_files_removed: u64,
    /// Whether nothing was written.
    pub dry_run: bool,
}

/// Reads and authenticates the header of stored pack `id` of `size` bytes.
fn pack_header(repo: &Repository, keys: &Keys, id: &str, size: u64) -> Result<Vec<PackEntry>> {
    let damaged = |why: String| Error::corrupt(format!("pack {id}"), why);
    let backend = repo.backend();
    if size < 4 {
        return Err(damaged(format!("truncated to {size} bytes")));
    }
    let tail = backend.read_range(FileKind::Pack, id, size - 4, 4)?;
    let hl = u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")) as u64;
    if hl + 4 > size {
        return Err(damaged(format!(
            "header length {hl} exceeds file size {size}"
        )));
    }
    let sealed = backend.read_range(FileKind::Pack, id, size - 4 - hl, hl)?;
    let plain = keys
        .seal_key()
        .open(&sealed)
        .map_err(|_| damaged("header does not authenticate".into()))?;
    let header = decode_header(&plain)?;
    let body: u64 = header.iter().map(|e| e.len as u64).sum();
    if body + hl + 4 != size {
        return Err(damaged(format!(
            "size {size} differs from the {} its header describes",
            body + hl + 4
        )));
    }
    Ok(header)
}

/// Rebuilds the index from the headers of every stored pack: new index files (the last
/// superseding every old one), then the old ones are removed, as prune does (repo-format.md §9).
pub fn index(
    repo: &Repository,
    opts: &RepairIndexOptions,
    progress: &Progress,
) -> Result<IndexOutcome> {
    let _lock = repo.lock(!opts.dry_run, "repair index")?;
    let old_files = repo.backend().list(FileKind::Index)?;
    let old_packs: HashSet<Id> = repo.load_index()?.packs().iter().copied().collect();
    let packs = repo.backend().list(FileKind::Pack)?;
    progress.total(packs.len() as u64, 0);
    let read: Vec<(String, Result<Vec<PackEntry>>)> = packs
        .par_iter()
        .map(|(name, size)| {
            let r = pack_header(repo, repo.keys(), name, *size);
            progress.done(1, 0);
            (name.clone(), r)
        })
        .collect();
    let mut out = IndexOutcome {
        dry_run: opts.dry_run,
        ..IndexOutcome::default()
    };
    let mut records = Vec::new();
    for (name, r) in read {
        match (r, Id::from_hex(&name)) {
            (Ok(entries), Some(id)) => {
                out.packs += 1;
                out.blobs += entries.len() as u64;
                out.packs_added += !old_packs.contains(&id) as u64;
                records.push(IndexPack::from_entries(id, &entries));
            }
            (Ok(_), None) => out.damaged_packs.push(BadPack {
                id: name,
                error: "bad name".into(),
            }),
            (Err(e @ Error::Corrupt { .. }), _) => out.damaged_packs.push(BadPack {
                id: name,
                error: e.to_string(),
            }),
            (Err(e), _) => return Err(e),
        }
    }
    let indexed: HashSet<Id> = records.iter().map(|p| p.id).collect();
    out.packs_dropped = old_packs.difference(&indexed).count() as u64;
    records.sort_by_key(|p| p.id);
    let mut batches: Vec<Vec<IndexPack>> = vec![Vec::new()];
    let mut n = 0;
    for p in records {
        n += p.blobs.len();
        batches.last_mut().expect("one batch").push(p);
        if n >= INDEX_FILE_BLOBS {
            batches.push(Vec::new());
            n = 0;
        }
    }
    if opts.dry_run {
        out.index_files_written = batches.iter().filter(|b| !b.is_empty()).count().max(1) as u64;
        out.index_files_removed = old_files.len() as u64;
        return Ok(out);
    }
    let old: Vec<Id> = old_files
        .iter()
        .filter_map(|(n, _)| Id::from_hex(n))
        .collect();
    let last = batches.len() - 1;
    for (i, packs) in batches.into_iter().enumerate() {
        if packs.is_empty() && i != last {
            continue;
        }
        let f = IndexFile {
            version: INDEX_VERSION,
            supersedes: if i == last { old.clone() } else { Vec::new() },
            packs,
            // Every pack found is live again (a prune marks anew); the old files go at once,
            // under the exclusive lock.
            marked: Vec::new(),
            time: 0,
        };
        repo.save_object(FileKind::Index, &f)?;
        out.index_files_written += 1;
    }
    crate::failpoint::hit("repair-index-before-delete");
    for (name, _) in &old_files {
        repo.backend().remove(FileKind::Index, name)?;
        out.index_files_removed += 1;
    }
    Ok(out)
}

/// Options of `repair snapshots`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RepairSnapshotsOptions {
    /// Snapshots to repair (id prefixes or `latest`; default: all).
    pub snapshots: Vec<String>,
    /// Remove each repaired snapshot's original.
    #[arg(long)]
    pub forget: bool,
    /// Show what would be done, write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// One snapshot that needed repair.
#[derive(Debug, Clone, Serialize)]
pub struct Repaired {
    /// The damaged snapshot.
    pub old: Id,
    /// Its repaired replacement (absent in a dry run).
    pub new: Option<Id>,
    /// Whether the original was removed (`--forget`).
    pub forgotten: bool,
    /// Entries left out (their data or tree is missing), relative to the root.
    pub removed: Vec<String>,
}

/// What `repair snapshots` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SnapshotsOutcome {
    /// Snapshots checked.
    pub checked: u64,
    /// Snapshots that lost entries.
    pub repaired: Vec<Repaired>,
    /// Whether nothing was written.
    pub dry_run: bool,
}

/// The walk state of one repair: what is available and what was rewritten.
struct Fixer<'a> {
    repo: &'a Repository,
    index: &'a Index,
    packs: HashSet<Id>,
    /// Rewritten trees: old id → new id (`None`: unreadable, the folder is dropped) and the
    /// paths below it that were dropped (relative to the tree).
    done: HashMap<Id, (Option<Id>, Vec<PathBuf>)>,
    writer: &'a PackWriter,
    stored: HashSet<Id>,
}

impl Fixer<'_> {
    fn have(&self, kind: BlobType, id: &Id) -> bool {
        self.index
            .copies(kind, id)
            .any(|l| self.packs.contains(&l.pack))
    }

    /// The repaired id of tree `id` (the same id when nothing is missing below it).
    fn tree(&mut self, id: Id) -> Result<(Option<Id>, Vec<PathBuf>)> {
        if let Some(r) = self.done.get(&id) {
            return Ok(r.clone());
        }
        let loaded = if self.have(BlobType::Tree, &id) {
            match self.repo.load_tree(self.index, &id) {
                Ok(t) => Some(t),
                Err(Error::Corrupt { .. }) => None,
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        let Some(tree) = loaded else {
            self.done.insert(id, (None, Vec::new()));
            return Ok((None, Vec::new()));
        };
        let mut removed = Vec::new();
        let mut changed = false;
        let mut nodes = Vec::with_capacity(tree.nodes.len());
        for mut n in tree.nodes {
            let name = PathBuf::from(OsStr::from_bytes(&n.name));
            match n.kind {
                NodeKind::Dir => {
                    if let Some(sub) = n.subtree {
                        let (new, below) = self.tree(sub)?;
                        removed.extend(below.into_iter().map(|p| name.join(p)));
                        match new {
                            Some(new) => {
                                changed |= new != sub;
                                n.subtree = Some(new);
                            }
                            None => {
                                removed.push(name);
                                changed = true;
                                continue;
                            }
                        }
                    }
                }
                NodeKind::File => {
                    if !n.content.iter().all(|b| self.have(BlobType::Data, b)) {
                        removed.push(name);
                        changed = true;
                        continue;
                    }
                    let raw_lost = n
                        .swamp
                        .as_ref()
                        .is_some_and(|s| !s.raw.iter().all(|b| self.have(BlobType::Data, b)));
                    if let Some(s) = n.swamp.as_mut().filter(|_| raw_lost) {
                        s.raw.clear();
                        s.raw_size = 0;
                        changed = true;
                    }
                }
                NodeKind::Symlink => {}
            }
            nodes.push(n);
        }
        // An unchanged tree keeps its id (and its bytes, whatever version wrote them).
        let new_id = if changed {
            self.store(Tree { nodes })?
        } else {
            id
        };
        let r = (Some(new_id), removed);
        self.done.insert(id, r.clone());
        Ok(r)
    }

    fn store(&mut self, tree: Tree) -> Result<Id> {
        let bytes = tree.encode();
        let id = self.repo.keys().blob_id(&bytes);
        if !self.have(BlobType::Tree, &id) && self.stored.insert(id) {
            let level = self.repo.config().compression.max(1);
            self.writer
                .sender()
                .send(seal_blob(
                    self.repo.keys(),
                    BlobType::Tree,
                    id,
                    &bytes,
                    level,
                ))
                .map_err(|_| Error::Internal("pack writer stopped".into()))?;
        }
        Ok(id)
    }
}

/// Writes, for each snapshot with entries whose data or tree is missing (not stored, or in no
/// index), a new snapshot without them, tagged `repaired` (its `original` names the damaged
/// one); with `forget`, the damaged one is removed. Run `repair index` first when index files
/// were lost or packs deleted.
pub fn snapshots(
    repo: &Repository,
    opts: &RepairSnapshotsOptions,
    progress: &Progress,
) -> Result<SnapshotsOutcome> {
    let _lock = repo.lock(!opts.dry_run, "repair snapshots")?;
    let snaps = if opts.snapshots.is_empty() {
        repo.snapshots()?
    } else {
        opts.snapshots
            .iter()
            .map(|s| repo.find_snapshot(s))
            .collect::<Result<_>>()?
    };
    let index = repo.load_index()?;
    let packs = repo
        .backend()
        .list(FileKind::Pack)?
        .into_iter()
        .filter_map(|(n, _)| Id::from_hex(&n))
        .collect();
    let writer = PackWriter::new(repo, 1, opts.dry_run);
    let mut fixer = Fixer {
        repo,
        index: &index,
        packs,
        done: HashMap::new(),
        writer: &writer,
        stored: HashSet::new(),
    };
    let mut out = SnapshotsOutcome {
        dry_run: opts.dry_run,
        ..SnapshotsOutcome::default()
    };
    progress.total(snaps.len() as u64, 0);
    let mut pending = Vec::new();
    let mut failed = None;
    for (id, snap) in snaps {
        out.checked += 1;
        progress.done(1, 0);
        let (root, removed) = match fixer.tree(snap.tree) {
            Ok(r) => r,
            Err(e) => {
                failed = Some(e);
                break;
            }
        };
        if root == Some(snap.tree) {
            continue;
        }
        let mut new = snap.clone();
        // An unreadable root becomes an empty one.
        new.tree = match root {
            Some(r) => r,
            None => match fixer.store(Tree::default()) {
                Ok(r) => r,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            },
        };
        new.names = None;
        if !new.tags.iter().any(|t| t == REPAIRED_TAG) {
            new.tags.push(REPAIRED_TAG.into());
        }
        new.original = Some(snap.original.unwrap_or(id));
        let mut removed: Vec<String> = removed
            .iter()
            .map(|p| Path::new("/").join(p).display().to_string())
            .collect();
        if root.is_none() {
            removed.push("/".into());
        }
        pending.push((id, new, removed));
    }
    drop(fixer);
    // Trees before the snapshots that name them.
    let stats = writer.finish(opts.dry_run);
    if let Some(e) = failed {
        return Err(e);
    }
    stats?;
    for (old, new, removed) in pending {
        let mut r = Repaired {
            old,
            new: None,
            forgotten: false,
            removed,
        };
        if !opts.dry_run {
            r.new = Some(repo.save_object(FileKind::Snapshot, &new)?);
            if opts.forget {
                repo.backend().remove(FileKind::Snapshot, &old.to_hex())?;
                r.forgotten = true;
            }
        }
        out.repaired.push(r);
    }
    Ok(out)
}
