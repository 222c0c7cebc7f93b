//! `prune`: frees the space of blobs no snapshot uses.
//!
//! Mark every blob reachable from a snapshot (trees, data, name indexes); packs with nothing
//! used, and packs that hold mostly unused blobs once their used blobs are copied (each opened
//! and checked first) into new packs, leave the index.
//!
//! By default in two phases (repo-format.md §9a), under a *deleting* lock that backups run
//! beside: packs leaving the index are **marked** (with the time) in the new index file, and a
//! later prune deletes a marked pack once it has been marked longer than `--keep-delete`, no live
//! lock of another process was taken before the mark, and no snapshot uses it again (then it is
//! taken back into the index). Index files it supersedes wait the same way.
//! `--instant-delete` deletes at once under an exclusive lock.
//!
//! The write order keeps every instant consistent, so a kill at any point leaves a repository
//! that verifies and a later prune finishes the job:
//!
//! 1. new packs, then the index files that list them (the pack writer's order);
//! 2. index files for the packs that stay, the last of them naming every old index file in
//!    `supersedes` (and carrying the marks);
//! 3. the old index files whose time has come are deleted; only then
//! 4. the packs whose time has come.
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
    self, BlobLocation, INDEX_VERSION, Index, IndexFile, IndexPack, MarkedPack, by_priority,
    effective,
};
use crate::repo::lock::{self, LockKind};
use crate::repo::pack::{PackEntry, read_header, read_pack};
use crate::repo::snapshot::Snapshot;
use crate::repo::writer::PackWriter;
use crate::repo::{DamagedSnapshot, Repository};
use crate::{Error, Id, Result};

/// The time of a mark made by this run, until the file carrying it is written.
const NEW_MARK: i64 = i64::MIN;

/// Blobs per index file written by prune.
const INDEX_FILE_BLOBS: usize = 50_000;

/// How long after a mark a lock still counts as taken before it (repo-format.md §9a): covers
/// the time to write the index file that carries the mark and the clock difference between
/// hosts.
pub const MARK_MARGIN_SECS: i64 = 5 * 60;

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
    /// Delete at once under an exclusive lock (no backup may run meanwhile), packs marked by
    /// earlier prunes included, instead of marking packs for a later prune.
    #[arg(long)]
    pub instant_delete: bool,
    /// How long a marked pack (or superseded index file) waits before a later prune may delete
    /// it: e.g. 23h, 90m, 0s.
    #[arg(long, value_name = "DURATION", default_value = "23h")]
    pub keep_delete: String,
    /// CPU and I/O priority: `low` (nice 10, idle I/O class) lets backups running beside the
    /// prune keep their speed; `normal` keeps the priority the prune was started with.
    #[arg(long, value_enum, default_value_t = Priority::Low)]
    pub priority: Priority,
}

/// The scheduling priority a prune runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Priority {
    /// Background: CPU niceness 10 and the idle I/O class (the default).
    Low,
    /// As started.
    Normal,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            dry_run: false,
            max_unused_percent: 5.0,
            ignore_damaged_snapshots: false,
            instant_delete: false,
            keep_delete: "23h".into(),
            priority: Priority::Low,
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
    /// Whether packs were deleted at once (`--instant-delete`) rather than marked.
    pub instant_delete: bool,
    /// Packs newly marked for deletion by a later prune.
    pub packs_marked: u64,
    /// Their bytes.
    pub bytes_marked: u64,
    /// Marked packs taken back into the index because a snapshot uses them again.
    pub packs_recovered: u64,
    /// Packs deleted from storage by this run (for a dry run: that would be).
    pub packs_removed: u64,
    /// Their bytes.
    pub bytes_removed: u64,
    /// Marked packs left for a later prune (new marks included).
    pub packs_waiting: u64,
    /// Their bytes.
    pub bytes_waiting: u64,
    /// Marked packs whose time has come but that a live lock taken before their mark keeps.
    pub packs_held_by_locks: u64,
    /// Superseded index files left for a later prune.
    pub index_files_waiting: u64,
    /// From when a prune may delete everything left waiting (RFC 3339; none when nothing
    /// waits), provided no backup that started before it still runs.
    pub waiting_until: Option<String>,
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
    marked: &[&MarkedPack],
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
    // A marked pack only the mark lists (its old index files are gone) keeps its marked record.
    let mark_name = String::from("(marked)");
    for m in marked {
        if let std::collections::hash_map::Entry::Vacant(v) = by_pack.entry(m.pack.id) {
            v.insert(vec![(&mark_name, &m.pack)]);
            order.push(m.pack.id);
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
    /// `keep_delete` in seconds.
    pub fn keep_delete_secs(&self) -> Result<i64> {
        crate::timespec::parse_duration(&self.keep_delete)
            .map_err(|e| Error::InvalidInput(format!("--keep-delete: {e}")))
    }

    /// The lock a prune with these options takes: shared for a dry run, exclusive with
    /// `instant_delete`, otherwise a deleting lock that backups run beside.
    pub fn lock_kind(&self) -> LockKind {
        if self.dry_run {
            LockKind::Shared
        } else if self.instant_delete {
            LockKind::Exclusive
        } else {
            LockKind::Deleting
        }
    }

    /// Refuses options no prune can run with (a `max_unused_percent` outside 0..=100, an
    /// unreadable `keep_delete`); `run` checks them too, a caller may check them before opening
    /// the repository.
    pub fn check(&self) -> Result<()> {
        self.keep_delete_secs()?;
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

/// Prunes the repository under the lock [`PruneOptions::lock_kind`] names.
pub fn run(repo: &Repository, opts: &PruneOptions, progress: &Progress) -> Result<Outcome> {
    opts.check()?;
    let _lock = repo.lock_kind(opts.lock_kind(), "prune")?;
    let summary = prune(repo, opts, progress)?;
    Ok(Outcome {
        summary,
        damaged_snapshots: repo.damaged_snapshots(),
    })
}

/// When the things a prune leaves the index may be deleted (repo-format.md §9a).
struct Grace {
    now: i64,
    keep_delete: i64,
    instant: bool,
    /// Creation time of the oldest live lock another process holds.
    oldest_lock: Option<i64>,
}

impl Grace {
    /// Whether something marked (or superseded) at `t` by an earlier prune may go now: it has
    /// waited `keep_delete`, and every live lock of another process was taken after the mark
    /// (with a margin), so no running backup can have read the index before it.
    fn due(&self, t: i64) -> bool {
        self.instant || (self.waited(t) && self.unlocked(t))
    }

    fn waited(&self, t: i64) -> bool {
        t <= self.now - self.keep_delete
    }

    fn unlocked(&self, t: i64) -> bool {
        self.oldest_lock
            .is_none_or(|o| o > t.saturating_add(MARK_MARGIN_SECS))
    }
}

/// For each superseded index file, the earliest time a present file that supersedes it was
/// written (0 when that file carries no time: an instant prune wrote it).
fn superseded_since(files: &[(String, IndexFile)]) -> HashMap<String, i64> {
    let mut out: HashMap<String, i64> = HashMap::new();
    for (_, f) in files {
        for old in &f.supersedes {
            let e = out.entry(old.to_hex()).or_insert(f.time);
            *e = (*e).min(f.time);
        }
    }
    out
}

/// Prunes the repository, then (unless a dry run) maintains its object lock
/// ([`super::objlock::maintain`]). The caller holds the lock [`PruneOptions::lock_kind`] names.
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

/// Marks, deletes and rewrites packs and index files.
fn prune_packs(
    repo: &Repository,
    opts: &PruneOptions,
    progress: &Progress,
) -> Result<PruneSummary> {
    let grace = Grace {
        now: jiff::Timestamp::now().as_second(),
        keep_delete: opts.keep_delete_secs()?,
        instant: opts.instant_delete,
        oldest_lock: if opts.instant_delete {
            None
        } else {
            lock::oldest_other(repo.backend().as_ref(), repo.keys())?
        },
    };
    // Locks (above), then snapshots, then the index: a snapshot is written after the index
    // files that cover it, so backups that finish meanwhile cannot leave a listed snapshot
    // uncovered; one that finishes later still holds its lock (§9a (b)).
    let snapshots = repo.snapshots()?;
    let files = repo.load_index_files()?;
    // A damaged snapshot may be real: treating its data as unused would lose it for good.
    let damaged = repo.damaged_snapshots().len();
    if damaged > 0 && !opts.ignore_damaged_snapshots {
        return Err(Error::PruneDamaged(damaged));
    }
    let stored: HashMap<Id, u64> = repo
        .backend()
        .list(FileKind::Pack)?
        .into_iter()
        .filter_map(|(n, size)| Some((Id::from_hex(&n)?, size)))
        .collect();
    // Marks of packs already deleted are stale: they are dropped.
    let marks: HashMap<Id, &MarkedPack> = index::marks(&files)
        .into_iter()
        .filter(|(id, _)| stored.contains_key(id))
        .collect();
    let marked: Vec<&MarkedPack> = marks.values().copied().collect();
    let index = Index::from_records(
        by_priority(&files)
            .flat_map(|(_, f)| &f.packs)
            .chain(marked.iter().map(|m| &m.pack)),
    );
    let used = mark_used(repo, &index, &snapshots)?;
    let mut s = PruneSummary {
        snapshots: snapshots.len() as u64,
        dry_run: opts.dry_run,
        instant_delete: opts.instant_delete,
        ..PruneSummary::default()
    };
    s.packs_before = stored.len() as u64;
    s.pack_bytes_before = stored.values().sum();

    let records = pack_records(repo, &files, &marked, &stored)?;
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
    let was_marked = |id: &Id| marks.contains_key(id) && !opts.instant_delete;
    s.packs_unindexed = unindexed.iter().filter(|id| !was_marked(id)).count() as u64;
    for p in &plans {
        match p.fate {
            Fate::Delete if !was_marked(&p.record.id) => s.packs_deleted += 1,
            Fate::Rewrite => {
                s.packs_rewritten += 1;
                s.bytes_rewritten += p.used_bytes;
            }
            Fate::Keep if marks.contains_key(&p.record.id) => s.packs_recovered += 1,
            _ => {}
        }
        if p.fate != Fate::Keep && !was_marked(&p.record.id) {
            s.bytes_deleted += p.size;
        }
    }
    s.bytes_deleted += unindexed
        .iter()
        .filter(|id| !was_marked(id))
        .map(|id| stored[id])
        .sum::<u64>();
    // Packs leaving the index, with their records (empty for unindexed ones).
    let empty = |id: Id| IndexPack {
        id,
        blobs: Vec::new(),
    };
    let doomed: Vec<IndexPack> = plans
        .iter()
        .filter(|p| p.fate != Fate::Keep && stored.contains_key(&p.record.id))
        .map(|p| p.record.clone())
        .chain(unindexed.into_iter().map(empty))
        .collect();

    // Which old index files go now: those an earlier prune superseded whose time has come
    // (when instant, every old file once this run has superseded them: see below).
    let since = superseded_since(&files);
    let mut files_going: HashSet<&str> = files
        .iter()
        .filter(|(n, _)| since.get(n).is_some_and(|&t| grace.due(t)))
        .map(|(n, _)| n.as_str())
        .collect();
    // Where each pack is listed as live: a pack goes only with every file that lists it.
    let mut listed_by: HashMap<Id, Vec<&str>> = HashMap::new();
    for (n, f) in &files {
        for p in &f.packs {
            listed_by.entry(p.id).or_default().push(n);
        }
    }
    let mut remove: Vec<Id> = Vec::new();
    let mut new_marks: Vec<MarkedPack> = Vec::new();
    for r in doomed {
        let size = stored[&r.id];
        let mark = marks.get(&r.id).map(|m| m.time);
        let free = opts.instant_delete
            || (mark.is_some_and(|t| grace.due(t))
                && listed_by
                    .get(&r.id)
                    .is_none_or(|v| v.iter().all(|n| files_going.contains(n))));
        if free {
            s.packs_removed += 1;
            s.bytes_removed += size;
            remove.push(r.id);
            continue;
        }
        if mark.is_some_and(|t| grace.waited(t) && !grace.unlocked(t)) {
            s.packs_held_by_locks += 1;
        }
        if mark.is_none() {
            s.packs_marked += 1;
            s.bytes_marked += size;
        }
        s.packs_waiting += 1;
        s.bytes_waiting += size;
        // A new mark gets its time when the file that carries it is written (below).
        new_marks.push(MarkedPack {
            pack: r,
            time: mark.unwrap_or(NEW_MARK),
        });
    }
    let live_before: HashSet<Id> = index::live_packs(&files);
    let live_after: HashSet<Id> = plans
        .iter()
        .filter(|p| p.fate == Fate::Keep && stored.contains_key(&p.record.id))
        .map(|p| p.record.id)
        .collect();
    let marks_changed = s.packs_marked > 0
        || new_marks.len() + s.packs_removed as usize != marks.len()
        || s.packs_recovered > 0;
    let superseded = files.len() - effective(&files).count();
    let write = s.packs_rewritten > 0
        || live_before != live_after
        || marks_changed
        || (opts.instant_delete && superseded > 0);
    if opts.instant_delete && write {
        files_going = files.iter().map(|(n, _)| n.as_str()).collect();
    }
    let waiting_files = files
        .iter()
        .filter(|(n, _)| !files_going.contains(n.as_str()))
        .filter(|(n, _)| write || since.contains_key(n))
        .count() as u64;
    s.index_files_waiting = if opts.instant_delete {
        0
    } else {
        waiting_files
    };
    let latest = new_marks
        .iter()
        .map(|m| {
            if m.time == NEW_MARK {
                grace.now
            } else {
                m.time
            }
        })
        .chain(
            files
                .iter()
                .filter(|(n, _)| !files_going.contains(n.as_str()))
                .filter_map(|(n, _)| match since.get(n) {
                    Some(&t) => Some(t),
                    None => write.then_some(grace.now),
                }),
        )
        .max();
    s.waiting_until = latest
        .filter(|_| !opts.instant_delete)
        .and_then(|t| jiff::Timestamp::from_second(t.saturating_add(grace.keep_delete)).ok())
        .map(|t| t.to_string());
    s.pack_bytes_after = s.pack_bytes_before - s.bytes_removed;
    if opts.dry_run || (!write && remove.is_empty() && files_going.is_empty()) {
        s.pack_bytes_after += s.bytes_rewritten;
        return Ok(s);
    }

    if write {
        // 1. Rewrite: used blobs of the packs to rewrite go to new packs.
        let rewrite: Vec<&PackPlan> = plans.iter().filter(|p| p.fate == Fate::Rewrite).collect();
        let (packs, index_files) =
            rewrite_packs(repo, &rewrite, &kept, s.bytes_rewritten, progress)?;
        s.packs_written = packs;
        s.index_files_written = index_files;
        crate::failpoint::hit("prune-after-rewrite");

        // 2. Index files for the packs that stay; the last one supersedes every old file and
        // carries the marks.
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
        // Marks are timed when they are about to become visible: a backup that reads the
        // index before this file exists took its lock before this time (§9a (b)).
        let stamp = jiff::Timestamp::now().as_second();
        for m in &mut new_marks {
            if m.time == NEW_MARK {
                m.time = stamp;
            }
        }
        for (i, packs) in batches.into_iter().enumerate() {
            if packs.is_empty() && i != last {
                continue;
            }
            let f = IndexFile {
                version: INDEX_VERSION,
                supersedes: if i == last { old.clone() } else { Vec::new() },
                packs,
                marked: if i == last {
                    std::mem::take(&mut new_marks)
                } else {
                    Vec::new()
                },
                time: if opts.instant_delete { 0 } else { stamp },
            };
            repo.save_object(FileKind::Index, &f)?;
            s.index_files_written += 1;
            crate::failpoint::hit("prune-after-index");
        }
    }

    crate::failpoint::hook("prune-deleting", std::path::Path::new(""));
    // 3. Old index files whose time has come, then 4. the packs whose time has come.
    for (name, _) in files
        .iter()
        .filter(|(n, _)| files_going.contains(n.as_str()))
    {
        match repo.backend().remove(FileKind::Index, name) {
            Err(e) if !crate::repo::is_not_found(&e) => return Err(e),
            _ => s.index_files_deleted += 1,
        }
    }
    crate::failpoint::hit("prune-before-delete");
    for id in &remove {
        match repo.backend().remove(FileKind::Pack, &id.to_hex()) {
            Err(e) if !crate::repo::is_not_found(&e) => return Err(e),
            _ => {}
        }
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

/// Copies the used blobs of `rewrite` (each opened and checked) into new packs; returns the
/// packs and index files written.
fn rewrite_packs(
    repo: &Repository,
    rewrite: &[&PackPlan],
    kept: &Kept,
    bytes: u64,
    progress: &Progress,
) -> Result<(u64, u64)> {
    progress.total(rewrite.len() as u64, bytes);
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
    Ok((stats.packs, stats.index_files))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_is_due_after_the_grace_period_and_the_older_locks() {
        let g = |keep_delete, oldest_lock| Grace {
            now: 10_000,
            keep_delete,
            instant: false,
            oldest_lock,
        };
        // Waited long enough, no other lock.
        assert!(g(100, None).due(9_900));
        assert!(!g(100, None).due(9_901));
        // A lock taken before the mark (or within the margin after it) holds it back.
        assert!(!g(0, Some(9_000)).due(9_000));
        assert!(!g(0, Some(9_000 + MARK_MARGIN_SECS)).due(9_000));
        assert!(g(0, Some(9_001 + MARK_MARGIN_SECS)).due(9_000));
        // A lock of unknown age (0) holds everything back; instant ignores all of it.
        assert!(!g(0, Some(0)).due(1));
        let instant = Grace {
            instant: true,
            ..g(1_000_000, Some(0))
        };
        assert!(instant.due(10_000));
    }

    #[test]
    fn superseded_files_count_from_the_earliest_present_superseding_file() {
        let f = |time, sup: &[u8]| IndexFile {
            supersedes: sup.iter().map(|&n| Id([n; 32])).collect(),
            time,
            ..IndexFile::default()
        };
        let files = vec![
            (Id([1; 32]).to_hex(), f(0, &[])),
            (Id([2; 32]).to_hex(), f(500, &[1])),
            (Id([3; 32]).to_hex(), f(900, &[1, 2])),
        ];
        let since = superseded_since(&files);
        assert_eq!(since[&Id([1; 32]).to_hex()], 500);
        assert_eq!(since[&Id([2; 32]).to_hex()], 900);
        assert!(!since.contains_key(&Id([3; 32]).to_hex()));
    }
}
