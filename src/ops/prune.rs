//! `prune`: frees the space of blobs no snapshot uses.
//!
//! Under an exclusive lock: mark every blob reachable from a snapshot (trees, data, name
//! indexes); delete packs with nothing used; rewrite packs that hold mostly unused blobs, copying
//! their used blobs (each opened and checked first) into new packs; then replace the index.
//! The write order keeps every instant consistent, so a kill at any point leaves a repository
//! that verifies and a later prune finishes the job:
//!
//! 1. new packs, then the index files that list them (the pack writer's order);
//! 2. index files for the packs that stay, the last of them naming every old index file in
//!    `supersedes` (readers skip superseded files only once that last file exists);
//! 3. the old index files are deleted; only then
//! 4. the packs nothing indexes any more (unused, rewritten, or left by killed runs).
//!
//! Nothing referenced is ever deleted: a snapshot whose blobs are not all indexed, or a used
//! blob that does not open, stops the prune before it deletes anything.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;
use serde::Serialize;

use crate::backend::FileKind;
use crate::ops::progress::Progress;
use crate::ops::reach::for_each_tree;
use crate::repo::Repository;
use crate::repo::blob::{BlobType, SealedBlob, open_blob};
use crate::repo::index::{INDEX_VERSION, Index, IndexFile, IndexPack, effective};
use crate::repo::pack::PackEntry;
use crate::repo::snapshot::Snapshot;
use crate::repo::writer::PackWriter;
use crate::{Error, Id, Result};

/// Blobs per index file written by prune.
const INDEX_FILE_BLOBS: usize = 50_000;

/// Options of a prune.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Report what would be done, change nothing.
    pub dry_run: bool,
    /// Unused space (percent of the used bytes) left in partly used packs rather than rewriting
    /// them; 0 rewrites every partly used pack.
    pub max_unused_percent: f64,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            dry_run: false,
            max_unused_percent: 5.0,
        }
    }
}

/// What a prune did (or would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneSummary {
    /// Snapshots whose blobs were kept.
    pub snapshots: u64,
    /// Blobs used by some snapshot.
    pub blobs_used: u64,
    /// Indexed blobs no snapshot uses (including second copies).
    pub blobs_unused: u64,
    /// Stored bytes of used blobs.
    pub bytes_used: u64,
    /// Stored bytes of unused blobs.
    pub bytes_unused: u64,
    /// Packs before the prune (indexed or not).
    pub packs_before: u64,
    /// Packs deleted because nothing in them is used.
    pub packs_deleted: u64,
    /// Packs whose used blobs were copied to new packs, then deleted.
    pub packs_rewritten: u64,
    /// Packs no index listed (left by killed runs), deleted.
    pub packs_unindexed: u64,
    /// Packs written by the rewrite.
    pub packs_written: u64,
    /// Bytes copied into new packs.
    pub bytes_rewritten: u64,
    /// Bytes of the packs deleted.
    pub bytes_deleted: u64,
    /// Unused bytes left in packs that were kept.
    pub bytes_unused_left: u64,
    /// Repository pack bytes before and after.
    pub pack_bytes_before: u64,
    /// Repository pack bytes after (as planned, for a dry run).
    pub pack_bytes_after: u64,
    /// Index files written and deleted.
    pub index_files_written: u64,
    /// Index files deleted.
    pub index_files_deleted: u64,
    /// Whether nothing was changed.
    pub dry_run: bool,
}

/// The blobs some snapshot uses.
#[derive(Default)]
pub struct Used {
    /// Data blobs.
    pub data: HashSet<Id>,
    /// Tree blobs (trees, name index roots and pages).
    pub tree: HashSet<Id>,
}

impl Used {
    /// Whether the copy of blob `e` in `pack` is the used one: some snapshot uses the blob and
    /// the index finds it there (of a blob stored twice, the other copy is unused).
    fn uses(&self, index: &Index, pack: &Id, e: &PackEntry) -> bool {
        self.contains(e.kind, &e.id) && index.get(e.kind, &e.id).is_some_and(|l| l.pack == *pack)
    }

    /// Whether the blob is used.
    pub fn contains(&self, kind: BlobType, id: &Id) -> bool {
        match kind {
            BlobType::Data => self.data.contains(id),
            BlobType::Tree => self.tree.contains(id),
        }
    }
}

/// Marks every blob reachable from `snapshots`, loading trees level by level in parallel.
/// Fails when a tree cannot be read or a referenced blob is in no index: the repository is
/// damaged and nothing may be deleted on its account.
pub fn mark_used(repo: &Repository, index: &Index, snapshots: &[(Id, Snapshot)]) -> Result<Used> {
    let mut used = Used::default();
    let name_roots: Vec<Id> = snapshots.iter().filter_map(|(_, s)| s.names).collect();
    let pages: Vec<Vec<Id>> = name_roots
        .par_iter()
        .map(|r| {
            Ok(repo
                .load_name_index(index, r)?
                .pages
                .into_iter()
                .map(|p| p.id)
                .collect())
        })
        .collect::<Result<_>>()?;
    used.tree.extend(name_roots);
    used.tree.extend(pages.into_iter().flatten());
    let roots = snapshots.iter().map(|(_, s)| s.tree);
    for_each_tree(repo, index, roots, |id, _, tree| {
        used.tree.insert(id);
        used.data
            .extend(tree.nodes.iter().flat_map(|n| n.data_blobs().copied()));
    })?;
    let missing = used
        .data
        .iter()
        .filter(|id| !index.contains(BlobType::Data, id))
        .count()
        + used
            .tree
            .iter()
            .filter(|id| !index.contains(BlobType::Tree, id))
            .count();
    if missing > 0 {
        return Err(Error::corrupt(
            "repository",
            format!("{missing} blob(s) used by snapshots are in no index; nothing was pruned"),
        ));
    }
    Ok(used)
}

/// What happens to one indexed pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    Delete,
    Rewrite,
}

/// Per-pack accounting.
struct PackPlan<'a> {
    record: &'a IndexPack,
    size: u64,
    used_bytes: u64,
    unused_bytes: u64,
    used_blobs: u64,
    unused_blobs: u64,
    fate: Fate,
}

/// Prunes the repository. The caller holds an exclusive lock.
pub fn prune(repo: &Repository, opts: &PruneOptions, progress: &Progress) -> Result<PruneSummary> {
    let files = repo.load_index_files()?;
    let index = Index::from_files(effective(&files).map(|(_, f)| f))?;
    let snapshots = repo.snapshots()?;
    let used = mark_used(repo, &index, &snapshots)?;
    let mut s = PruneSummary {
        snapshots: snapshots.len() as u64,
        dry_run: opts.dry_run,
        ..PruneSummary::default()
    };

    let stored: HashMap<Id, u64> = repo
        .backend()
        .list(FileKind::Pack)?
        .into_iter()
        .filter_map(|(n, size)| Some((Id::from_hex(&n)?, size)))
        .collect();
    s.packs_before = stored.len() as u64;
    s.pack_bytes_before = stored.values().sum();

    // One record per indexed pack (the first index file naming it wins, as in the index).
    let mut seen: HashSet<Id> = HashSet::new();
    let mut plans: Vec<PackPlan> = Vec::new();
    for (_, f) in effective(&files) {
        for p in &f.packs {
            if !seen.insert(p.id) {
                continue;
            }
            let mut plan = PackPlan {
                record: p,
                size: stored.get(&p.id).copied().unwrap_or(0),
                used_bytes: 0,
                unused_bytes: 0,
                used_blobs: 0,
                unused_blobs: 0,
                fate: Fate::Keep,
            };
            for e in p.entries()? {
                if used.uses(&index, &p.id, &e) {
                    plan.used_bytes += e.len as u64;
                    plan.used_blobs += 1;
                } else {
                    plan.unused_bytes += e.len as u64;
                    plan.unused_blobs += 1;
                }
            }
            if !stored.contains_key(&p.id) && plan.used_blobs > 0 {
                return Err(Error::corrupt(
                    format!("pack {}", p.id),
                    "it is missing but holds blobs snapshots use; nothing was pruned",
                ));
            }
            plans.push(plan);
        }
    }
    for p in &plans {
        s.blobs_used += p.used_blobs;
        s.blobs_unused += p.unused_blobs;
        s.bytes_used += p.used_bytes;
        s.bytes_unused += p.unused_bytes;
    }

    // Packs with nothing used go; partly used packs are rewritten, most wasteful first, until
    // the unused bytes left are within the allowance.
    let mut unused_left = 0u64;
    let mut partial: Vec<usize> = Vec::new();
    for (i, p) in plans.iter_mut().enumerate() {
        if p.used_blobs == 0 {
            p.fate = Fate::Delete;
        } else if p.unused_blobs > 0 {
            unused_left += p.unused_bytes;
            partial.push(i);
        }
    }
    partial.sort_by(|&a, &b| {
        let f = |p: &PackPlan| p.unused_bytes as f64 / (p.used_bytes + p.unused_bytes) as f64;
        f(&plans[b]).total_cmp(&f(&plans[a])).then(a.cmp(&b))
    });
    let allowance = (s.bytes_used as f64 * opts.max_unused_percent.max(0.0) / 100.0) as u64;
    for i in partial {
        if unused_left <= allowance {
            break;
        }
        plans[i].fate = Fate::Rewrite;
        unused_left -= plans[i].unused_bytes;
    }
    s.bytes_unused_left = unused_left;
    let indexed: HashSet<Id> = plans.iter().map(|p| p.record.id).collect();
    let unindexed: Vec<Id> = stored
        .keys()
        .filter(|id| !indexed.contains(id))
        .copied()
        .collect();
    s.packs_unindexed = unindexed.len() as u64;
    for p in &plans {
        match p.fate {
            Fate::Delete => s.packs_deleted += 1,
            Fate::Rewrite => {
                s.packs_rewritten += 1;
                s.bytes_rewritten += p.used_bytes;
            }
            Fate::Keep => {}
        }
        if p.fate != Fate::Keep {
            s.bytes_deleted += p.size;
        }
    }
    s.bytes_deleted += unindexed.iter().map(|id| stored[id]).sum::<u64>();
    let doomed: Vec<Id> = plans
        .iter()
        .filter(|p| p.fate != Fate::Keep && stored.contains_key(&p.record.id))
        .map(|p| p.record.id)
        .chain(unindexed)
        .collect();
    // Index files superseded by a prune that was killed before deleting them are garbage too.
    let superseded = files.len() - effective(&files).count();
    let nothing_to_do = doomed.is_empty()
        && superseded == 0
        && plans.iter().all(|p| stored.contains_key(&p.record.id));
    if opts.dry_run || nothing_to_do {
        s.pack_bytes_after = s.pack_bytes_before - s.bytes_deleted + s.bytes_rewritten;
        return Ok(s);
    }

    // 1. Rewrite: used blobs of the packs to rewrite go to new packs.
    let rewrite: Vec<&PackPlan> = plans.iter().filter(|p| p.fate == Fate::Rewrite).collect();
    progress.total(rewrite.len() as u64, s.bytes_rewritten);
    let writer = PackWriter::new(repo, 2, false);
    let copied: Result<()> = rewrite.par_iter().try_for_each(|p| {
        let tx = writer.sender();
        let bytes = repo.backend().read(FileKind::Pack, &p.record.id.to_hex())?;
        for e in p.record.entries()? {
            if !used.uses(&index, &p.record.id, &e) {
                continue;
            }
            let (at, len) = (e.offset as usize, e.len as usize);
            let sealed = bytes.get(at..at + len).ok_or_else(|| {
                Error::corrupt(
                    format!("pack {}", p.record.id),
                    "shorter than its index says",
                )
            })?;
            open_blob(repo.keys(), &e, sealed)
                .map_err(|er| Error::corrupt(format!("pack {}", p.record.id), er.to_string()))?;
            let blob = SealedBlob {
                kind: e.kind,
                id: e.id,
                sealed: sealed.to_vec(),
                raw_len: e.raw_len,
                compressed: e.compressed,
            };
            if tx.send(blob).is_err() {
                return Err(Error::InvalidInput("pack writer stopped".into()));
            }
        }
        progress.done(1, p.used_bytes);
        Ok(())
    });
    let stats = writer.finish(false);
    copied?;
    let stats = stats?;
    s.packs_written = stats.packs;
    s.index_files_written = stats.index_files;
    crate::failpoint::hit("prune-after-rewrite");

    // 2. Index files for the packs that stay; the last one supersedes every old file.
    let keep: Vec<IndexPack> = plans
        .iter()
        .filter(|p| p.fate == Fate::Keep && stored.contains_key(&p.record.id))
        .map(|p| p.record.clone())
        .collect();
    let mut batches: Vec<Vec<IndexPack>> = vec![Vec::new()];
    let mut n = 0;
    for p in keep {
        n += p.blobs.len();
        batches.last_mut().expect("one batch").push(p);
        if n >= INDEX_FILE_BLOBS {
            batches.push(Vec::new());
            n = 0;
        }
    }
    let old: Vec<Id> = files.iter().filter_map(|(n, _)| Id::from_hex(n)).collect();
    let last = batches.len() - 1;
    for (i, packs) in batches.into_iter().enumerate() {
        if packs.is_empty() && i != last {
            continue;
        }
        let f = IndexFile {
            version: INDEX_VERSION,
            supersedes: if i == last { old.clone() } else { Vec::new() },
            packs,
        };
        repo.save_object(FileKind::Index, &f)?;
        s.index_files_written += 1;
        crate::failpoint::hit("prune-after-index");
    }

    // 3. Old index files, then 4. the packs nothing lists any more.
    for (name, _) in &files {
        repo.backend().remove(FileKind::Index, name)?;
        s.index_files_deleted += 1;
    }
    crate::failpoint::hit("prune-before-delete");
    for id in &doomed {
        repo.backend().remove(FileKind::Pack, &id.to_hex())?;
        crate::failpoint::hit("prune-mid-delete");
    }
    repo.backend().remove_stale_temporaries()?;
    s.pack_bytes_after = repo
        .backend()
        .list(FileKind::Pack)?
        .iter()
        .map(|(_, size)| size)
        .sum();
    Ok(s)
}
