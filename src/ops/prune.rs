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
//! Nothing referenced is ever deleted: a snapshot whose blobs are not all indexed, a used
//! blob that does not open, or a pack whose header disagrees with an index file, stops the prune
//! before it deletes anything.
//!
//! Index files may be forged by a client with the password on append-only storage, so every
//! copy any index file lists (superseded files included) is a candidate, and a copy is dropped
//! only once the copy that is kept has been read and checked: a used blob with a copy in a pack
//! about to go has its kept copy opened and hashed first, and a kept copy that fails is replaced
//! by the next one that checks out. Honest repositories rarely hold two copies of a blob, so this
//! costs next to nothing there.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;
use serde::Serialize;

use crate::backend::FileKind;
use crate::ops::copies::first_intact;
use crate::ops::progress::Progress;
use crate::ops::reach::for_each_tree;
use crate::repo::blob::{BlobType, SealedBlob, open_checked};
use crate::repo::index::{
    BlobLocation, INDEX_VERSION, Index, IndexFile, IndexPack, by_priority, effective,
};
use crate::repo::pack::{PackEntry, read_header, read_pack};
use crate::repo::snapshot::Snapshot;
use crate::repo::writer::PackWriter;
use crate::repo::{DamagedSnapshot, Repository};
use crate::{Error, Id, Result};

/// Blobs per index file written by prune.
const INDEX_FILE_BLOBS: usize = 50_000;

/// Options of a prune.
#[derive(Debug, Clone, clap::Args)]
pub struct PruneOptions {
    /// Show what would be done, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Unused space (percent of the used bytes) to leave in partly used packs rather than
    /// rewrite them; 0 rewrites every partly used pack.
    #[arg(long = "max-unused", value_name = "MAX_UNUSED", default_value_t = 5.0)]
    pub max_unused_percent: f64,
    /// Prune even though some snapshots are damaged (do not decode): the data only they use
    /// counts as unused and is deleted. Without it prune refuses (exit 13).
    #[arg(long)]
    pub ignore_damaged_snapshots: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            dry_run: false,
            max_unused_percent: 5.0,
            ignore_damaged_snapshots: false,
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
    /// Kept copies of used blobs read and checked because another copy was to be dropped.
    pub copies_checked: u64,
    /// Copies that failed that check (missing, damaged or forged); an intact one was kept.
    pub copies_damaged: u64,
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// Object lock maintenance (repositories with object lock; not in a dry run): locks
    /// extended, and what removed objects still hold until their lock ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<super::objlock::LockMaintenance>,
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
    /// Whether the blob is used.
    pub fn contains(&self, kind: BlobType, id: &Id) -> bool {
        match kind {
            BlobType::Data => self.data.contains(id),
            BlobType::Tree => self.tree.contains(id),
        }
    }
}

/// Which copy of each used blob is kept: the index's preferred copy unless a check replaced it.
struct Kept<'a> {
    index: &'a Index,
    used: &'a Used,
    chosen: HashMap<(BlobType, Id), BlobLocation>,
}

impl Kept<'_> {
    /// The kept copy of a blob.
    fn copy(&self, kind: BlobType, id: &Id) -> Option<BlobLocation> {
        self.chosen
            .get(&(kind, *id))
            .copied()
            .or_else(|| self.index.get(kind, id))
    }

    /// Whether the copy of blob `e` in `pack` is the used one: some snapshot uses the blob and
    /// it is the copy kept (of a blob stored twice, the other copy is unused).
    fn uses(&self, pack: &Id, e: &PackEntry) -> bool {
        self.used.contains(e.kind, &e.id)
            && self.copy(e.kind, &e.id)
                == Some(BlobLocation {
                    pack: *pack,
                    entry: *e,
                })
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

/// One record per indexed pack, from every index file that lists it. Records of one pack that
/// differ (never written by hydrabackup) are checked against the pack's header, which then
/// stands for them; a record the header does not contain is damage.
fn pack_records(
    repo: &Repository,
    files: &[(String, IndexFile)],
    stored: &HashMap<Id, u64>,
) -> Result<Vec<IndexPack>> {
    let mut by_pack: HashMap<Id, Vec<(&String, &IndexPack)>> = HashMap::new();
    let mut order: Vec<Id> = Vec::new();
    for (name, f) in by_priority(files) {
        for p in &f.packs {
            let v = by_pack.entry(p.id).or_default();
            if v.is_empty() {
                order.push(p.id);
            }
            v.push((name, p));
        }
    }
    order
        .into_iter()
        .map(|id| {
            let recs = &by_pack[&id];
            if recs.iter().all(|(_, r)| r.blobs == recs[0].1.blobs) || !stored.contains_key(&id) {
                return Ok(recs[0].1.clone());
            }
            let bytes = repo.backend().read(FileKind::Pack, &id.to_hex())?;
            let header = read_header(repo.keys(), &bytes)
                .map_err(|er| Error::corrupt(format!("pack {id}"), er.to_string()))?;
            for (name, r) in recs {
                if !r.entries()?.iter().all(|e| header.contains(e)) {
                    return Err(header_mismatch(&id, Some(name)));
                }
            }
            Ok(IndexPack::from_entries(id, &header))
        })
        .collect()
}

/// The error for a pack whose header lacks entries an index file (named when known) lists.
fn header_mismatch(pack: &Id, index_file: Option<&str>) -> Error {
    let file = index_file.map_or("the index".into(), |n| format!("index file {n}"));
    Error::corrupt(
        format!("pack {pack}"),
        format!("its header does not match {file}; nothing was pruned"),
    )
}

/// Counts used and unused blobs of every pack and decides its fate: packs with nothing used
/// go; partly used packs are rewritten, most wasteful first, until the unused bytes left are
/// within `max_unused_percent` of the used bytes.
fn plan<'a>(
    records: &'a [IndexPack],
    stored: &HashMap<Id, u64>,
    kept: &Kept,
    max_unused_percent: f64,
) -> Result<(Vec<PackPlan<'a>>, u64)> {
    let mut plans: Vec<PackPlan> = Vec::new();
    for p in records {
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
            if kept.uses(&p.id, &e) {
                plan.used_bytes += e.len as u64;
                plan.used_blobs += 1;
            } else {
                plan.unused_bytes += e.len as u64;
                plan.unused_blobs += 1;
            }
        }
        plans.push(plan);
    }
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
    let bytes_used: u64 = plans.iter().map(|p| p.used_bytes).sum();
    let allowance = (bytes_used as f64 * max_unused_percent.max(0.0) / 100.0) as u64;
    for i in partial {
        if unused_left <= allowance {
            break;
        }
        plans[i].fate = Fate::Rewrite;
        unused_left -= plans[i].unused_bytes;
    }
    Ok((plans, unused_left))
}

/// Plans the prune so that no copy of a used blob is dropped before the copy kept has been
/// read and checked: until nothing changes, every used blob with another copy in a pack that
/// is to go (or is missing) has its kept copy checked, and a copy that fails is replaced by the
/// next copy the index lists that checks out. Returns the plans, the unused bytes left, and
/// (copies checked, copies damaged).
fn plan_verified<'a>(
    repo: &Repository,
    records: &'a [IndexPack],
    stored: &HashMap<Id, u64>,
    kept: &mut Kept,
    max_unused_percent: f64,
) -> Result<(Vec<PackPlan<'a>>, u64, u64, u64)> {
    let mut checked: HashSet<(BlobType, Id)> = HashSet::new();
    let (mut n_checked, mut n_damaged) = (0u64, 0u64);
    loop {
        let (plans, left) = plan(records, stored, kept, max_unused_percent)?;
        let mut todo: Vec<(BlobType, Id)> = Vec::new();
        for p in plans
            .iter()
            .filter(|p| p.fate != Fate::Keep || !stored.contains_key(&p.record.id))
        {
            for e in p.record.entries()? {
                let key = (e.kind, e.id);
                if kept.used.contains(e.kind, &e.id)
                    && kept.index.copies(e.kind, &e.id).nth(1).is_some()
                    && checked.insert(key)
                {
                    todo.push(key);
                }
            }
        }
        if todo.is_empty() {
            return Ok((plans, left, n_checked, n_damaged));
        }
        let results: Vec<(BlobType, Id, Option<BlobLocation>, u64)> = todo
            .par_iter()
            .map(|&(kind, id)| {
                let first = kept.copy(kind, &id);
                let candidates = first
                    .into_iter()
                    .chain(kept.index.copies(kind, &id).filter(|l| Some(*l) != first));
                let c = first_intact(repo, candidates, stored);
                (kind, id, c.good, c.failed.len() as u64)
            })
            .collect();
        for (kind, id, good, failed) in results {
            n_checked += failed + good.is_some() as u64;
            n_damaged += failed;
            match good {
                Some(loc) => {
                    kept.chosen.insert((kind, id), loc);
                }
                None => {
                    return Err(Error::corrupt(
                        format!("blob {id}"),
                        "snapshots use it but no copy of it checks out; nothing was pruned",
                    ));
                }
            }
        }
    }
}

impl PruneOptions {
    /// Refuses options no prune can run with (a `max_unused_percent` outside 0..=100); `run`
    /// checks them too, a caller may check them before opening the repository.
    pub fn check(&self) -> Result<()> {
        let v = self.max_unused_percent;
        if !(0.0..=100.0).contains(&v) {
            return Err(Error::InvalidInput(format!(
                "--max-unused {v} is not a percentage between 0 and 100"
            )));
        }
        Ok(())
    }
}

/// What a prune did (or would do), the `--json` document: the summary's fields and the
/// damaged snapshots skipped.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// What was (or would be) deleted and rewritten.
    #[serde(flatten)]
    pub summary: PruneSummary,
    /// Snapshots skipped because they are damaged.
    pub damaged_snapshots: Vec<DamagedSnapshot>,
}

/// Prunes the repository under an exclusive lock (shared for a dry run).
pub fn run(repo: &Repository, opts: &PruneOptions, progress: &Progress) -> Result<Outcome> {
    opts.check()?;
    let _lock = repo.lock(!opts.dry_run, "prune")?;
    let summary = prune(repo, opts, progress)?;
    Ok(Outcome {
        summary,
        damaged_snapshots: repo.damaged_snapshots(),
    })
}

/// Prunes the repository, then (unless a dry run) maintains its object lock
/// ([`super::objlock::maintain`]). The caller holds an exclusive lock.
pub(crate) fn prune(
    repo: &Repository,
    opts: &PruneOptions,
    progress: &Progress,
) -> Result<PruneSummary> {
    let mut s = prune_packs(repo, opts, progress)?;
    if !opts.dry_run {
        s.object_lock = super::objlock::maintain(repo)?;
    }
    Ok(s)
}

/// Deletes and rewrites packs and index files.
fn prune_packs(
    repo: &Repository,
    opts: &PruneOptions,
    progress: &Progress,
) -> Result<PruneSummary> {
    let files = repo.load_index_files()?;
    let index = Index::from_files(by_priority(&files).map(|(_, f)| f));
    let snapshots = repo.snapshots()?;
    // A damaged snapshot may be real: treating its data as unused would lose it for good.
    let damaged = repo.damaged_snapshots().len();
    if damaged > 0 && !opts.ignore_damaged_snapshots {
        return Err(Error::PruneDamaged(damaged));
    }
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

    let records = pack_records(repo, &files, &stored)?;
    let mut kept = Kept {
        index: &index,
        used: &used,
        chosen: HashMap::new(),
    };
    let (plans, unused_left, checked, damaged) =
        plan_verified(repo, &records, &stored, &mut kept, opts.max_unused_percent)?;
    s.copies_checked = checked;
    s.copies_damaged = damaged;
    for p in &plans {
        if !stored.contains_key(&p.record.id) && p.used_blobs > 0 {
            return Err(Error::corrupt(
                format!("pack {}", p.record.id),
                "it is missing but holds blobs snapshots use; nothing was pruned",
            ));
        }
        s.blobs_used += p.used_blobs;
        s.blobs_unused += p.unused_blobs;
        s.bytes_used += p.used_bytes;
        s.bytes_unused += p.unused_bytes;
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
        let entries = p.record.entries()?;
        let (header, session) = read_pack(repo.keys(), &bytes)
            .map_err(|er| Error::corrupt(format!("pack {}", p.record.id), er.to_string()))?;
        if !entries.iter().all(|e| header.contains(e)) {
            return Err(header_mismatch(&p.record.id, None));
        }
        for e in entries {
            if !kept.uses(&p.record.id, &e) {
                continue;
            }
            let (at, len) = (e.offset as usize, e.len as usize);
            let sealed = bytes.get(at..at + len).ok_or_else(|| {
                Error::corrupt(
                    format!("pack {}", p.record.id),
                    "shorter than its index says",
                )
            })?;
            let keys = session.as_ref().unwrap_or(repo.keys());
            let (payload, _) = open_checked(keys, &e, sealed)
                .map_err(|er| Error::corrupt(format!("pack {}", p.record.id), er.to_string()))?;
            // A blob a write-only session sealed is sealed again with the master key.
            let sealed = match session {
                None => sealed.to_vec(),
                Some(_) => repo.keys().seal_key().seal(&payload),
            };
            let blob = SealedBlob {
                kind: e.kind,
                id: e.id,
                sealed,
                raw_len: e.raw_len,
                compressed: e.compressed,
            };
            if tx.send(blob).is_err() {
                return Err(Error::Internal("pack writer stopped".into()));
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
