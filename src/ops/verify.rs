//! `verify`: structural check of the whole repository, and with `read_data` a re-hash of every
//! selected blob. Damage is collected into a report that names the pack, the blobs, and the
//! snapshots and files that depend on them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use rayon::prelude::*;
use serde::Serialize;

use crate::backend::FileKind;
use crate::ops::copies::first_intact;
use crate::ops::progress::Progress;
use crate::ops::walk::{Visit, walk};
use crate::repo::Repository;
use crate::repo::blob::{BlobType, Scratch, check_blob};
use crate::repo::filter::SwampFilter;
use crate::repo::index::{self, Index, IndexFile, by_priority, effective};
use crate::repo::keyfile::KeyFile;
use crate::repo::pack::{PackEntry, decode_header, read_pack};
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::NodeKind;
use crate::{Error, Id, Result};

/// Which pack data to read and re-hash.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum ReadData {
    /// Structure only.
    #[default]
    None,
    /// Every pack.
    All,
    /// Packs in group `n` of `m` (1-based), by pack id; `m` runs cover everything.
    Subset(u32, u32),
    /// A random share of packs, in percent.
    Percent(f64),
}

impl ReadData {
    /// Parses `N/M` or `P%`.
    pub fn parse_subset(s: &str) -> Result<ReadData> {
        let bad = || {
            Error::InvalidInput(format!(
                "bad subset {s:?}: use N/M (e.g. 2/5) or P% (e.g. 10%)"
            ))
        };
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(bad());
            }
            return Ok(ReadData::Percent(p));
        }
        let (n, m) = s.split_once('/').ok_or_else(bad)?;
        let (n, m): (u32, u32) = (
            n.trim().parse().map_err(|_| bad())?,
            m.trim().parse().map_err(|_| bad())?,
        );
        if m == 0 || n == 0 || n > m {
            return Err(bad());
        }
        Ok(ReadData::Subset(n, m))
    }

    fn selects(&self, pack: &Id) -> bool {
        match *self {
            ReadData::None => false,
            ReadData::All => true,
            ReadData::Subset(n, m) => {
                u64::from_be_bytes(pack.0[..8].try_into().expect("8 bytes")) % m as u64
                    == (n - 1) as u64
            }
            ReadData::Percent(p) => {
                let mut b = [0u8; 8];
                crate::crypto::fill_random(&mut b);
                (u64::from_le_bytes(b) as f64 / u64::MAX as f64) * 100.0 < p
            }
        }
    }
}

/// Options of `verify`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct VerifyOptions {
    /// Read, decrypt and re-hash every blob.
    #[arg(long)]
    pub read_data: bool,
    /// Read only a subset: `N/M` (group N of M) or `P%`.
    #[arg(long, conflicts_with = "read_data")]
    pub read_data_subset: Option<String>,
    /// Check only the data of Swamps whose name matches this glob (repeatable).
    #[arg(long = "swamp")]
    pub swamps: Vec<String>,
}

impl VerifyOptions {
    /// Which pack data to read.
    pub fn read_data(&self) -> Result<ReadData> {
        match (self.read_data, &self.read_data_subset) {
            (true, _) => Ok(ReadData::All),
            (false, Some(s)) => ReadData::parse_subset(s),
            (false, None) => Ok(ReadData::None),
        }
    }
}

/// A snapshot file affected by damage.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Affected {
    /// Snapshot id.
    pub snapshot: String,
    /// Path in the snapshot.
    pub path: String,
}

/// What kind of problem `verify` found (serialised in kebab-case: `missing-pack`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// A key file cannot be read or decrypted.
    Key,
    /// An index file is damaged or disagrees with the packs.
    Index,
    /// A pack named by the index is not in the repository.
    MissingPack,
    /// A pack is damaged.
    Pack,
    /// A blob does not decrypt or hash to its id.
    Blob,
    /// A snapshot cannot be read.
    Snapshot,
    /// A tree (or a name-index page) cannot be read.
    Tree,
    /// A blob that a tree refers to is in no index.
    MissingBlob,
    /// A captured Swamp does not load.
    Swamp,
    /// The stored retention policy is damaged, or there are several.
    Policy,
}

/// One problem found.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// What kind of problem.
    pub kind: ProblemKind,
    /// The object concerned (e.g. `pack <id>`).
    pub object: String,
    /// What is wrong.
    pub detail: String,
    /// Blobs that are lost or damaged because of it.
    pub blobs: Vec<String>,
    /// Snapshot files that depend on those blobs.
    pub affected: Vec<Affected>,
}

/// The result of `verify`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Snapshots checked.
    pub snapshots: u64,
    /// Index files checked.
    pub index_files: u64,
    /// Packs checked (structure).
    pub packs: u64,
    /// Blobs in the index.
    pub blobs: u64,
    /// Packs read in full.
    pub packs_read: u64,
    /// Blobs decrypted and re-hashed.
    pub blobs_read: u64,
    /// Bytes read for the data check.
    pub bytes_read: u64,
    /// Packs present but in no index (left by an interrupted run; harmless).
    pub unreferenced_packs: Vec<String>,
    /// Problems found.
    pub problems: Vec<Problem>,
    /// With object lock: stored objects whose lock ends sooner than the configured period
    /// (not damage; `prune` extends them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub short_retention: Vec<super::objlock::ShortRetention>,
}

impl VerifyReport {
    /// Whether the repository is sound.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn problem(kind: ProblemKind, object: String, detail: String, blobs: &[Id]) -> Problem {
    Problem {
        kind,
        object,
        detail,
        blobs: blobs.iter().map(|b| b.to_hex()).collect(),
        affected: Vec::new(),
    }
}

/// The result of `verify` (the `--json` document): the report and whether it found nothing.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// What was checked and found.
    #[serde(flatten)]
    pub report: VerifyReport,
    /// Whether the repository is sound.
    pub ok: bool,
}

/// Checks the repository under a shared lock. Damage found is in the outcome, not an error.
pub fn run(repo: &Repository, opts: &VerifyOptions, progress: &Progress) -> Result<Outcome> {
    let read_data = opts.read_data()?;
    let only = SwampFilter::new(&opts.swamps)?;
    let mut report = verify(repo, read_data, &only, progress)?;
    report.short_retention = super::objlock::short_retention(repo)?;
    Ok(Outcome {
        ok: report.ok(),
        report,
    })
}

fn verify(
    repo: &Repository,
    read_data: ReadData,
    only: &SwampFilter,
    progress: &Progress,
) -> Result<VerifyReport> {
    let _lock = repo.lock(false, "verify")?;
    let mut report = VerifyReport::default();
    let backend = repo.backend();

    for (name, _) in backend.list(FileKind::Key)? {
        let r = backend.read(FileKind::Key, &name).and_then(|b| {
            if Id::of_stored(&b).to_hex() != name {
                return Err(Error::corrupt("key", "content does not match its name"));
            }
            KeyFile::decode(&b).map(|_| ())
        });
        if let Err(e) = r {
            report.problems.push(problem(
                ProblemKind::Key,
                format!("key {name}"),
                e.to_string(),
                &[],
            ));
        }
    }

    // Snapshots first: a snapshot is written after the index that covers it, so every
    // snapshot listed now is covered by the index files listed next, even if a backup
    // finishes meanwhile.
    let mut snapshots: Vec<(Id, Snapshot)> = Vec::new();
    for (name, _) in backend.list(FileKind::Snapshot)? {
        match repo.load_object::<Snapshot>(FileKind::Snapshot, &name) {
            Ok(s) => snapshots.push((Id::from_hex(&name).unwrap_or_default(), s)),
            Err(e) => report.problems.push(problem(
                ProblemKind::Snapshot,
                format!("snapshot {name}"),
                e.to_string(),
                &[],
            )),
        }
    }
    report.snapshots = snapshots.len() as u64;

    // The stored retention policy (repo-format.md §7c): each object whole, and only one.
    let policies = backend.list(FileKind::Policy)?;
    for (name, _) in &policies {
        if let Err(e) = repo.load_object::<crate::ops::policy::StoredPolicy>(FileKind::Policy, name)
        {
            let what = format!("policy {name}");
            report
                .problems
                .push(problem(ProblemKind::Policy, what, e.to_string(), &[]));
        }
    }
    if policies.len() > 1 {
        let detail = format!(
            "{} policies stored: run `policy set` to keep one",
            policies.len()
        );
        report
            .problems
            .push(problem(ProblemKind::Policy, "policy".into(), detail, &[]));
    }

    // Index files.
    let mut files: Vec<(String, IndexFile)> = Vec::new();
    for (name, _) in backend.list(FileKind::Index)? {
        match repo.load_object::<IndexFile>(FileKind::Index, &name) {
            Ok(f) => files.push((name, f)),
            Err(e) => report.problems.push(problem(
                ProblemKind::Index,
                format!("index {name}"),
                e.to_string(),
                &[],
            )),
        }
    }
    report.index_files = files.len() as u64;
    // Every index file counts, superseded ones as fallbacks: a superseding file may be forged.
    // Packs a prune marked for deletion come last (a snapshot written while the prune ran may
    // use them until a later prune takes them back); they count as covered.
    let index = index::reader_index(&files);
    report.blobs = index.len() as u64;
    let marked: HashSet<Id> = index::marks(&files).into_keys().collect();
    let effective_packs: HashSet<Id> = effective(&files)
        .flat_map(|(_, f)| f.packs.iter().map(|p| p.id))
        .chain(marked.iter().copied())
        .collect();
    // Per pack, the distinct entries all index files list, and which file listed what.
    let mut pack_entries: HashMap<Id, Vec<PackEntry>> = HashMap::new();
    let mut records: HashMap<Id, Vec<(&str, Vec<PackEntry>)>> = HashMap::new();
    for (name, f) in by_priority(&files) {
        for p in &f.packs {
            match p.entries() {
                Ok(e) => {
                    let listed = records.entry(p.id).or_default();
                    if !listed.iter().any(|(_, l)| *l == e) {
                        let all = pack_entries.entry(p.id).or_default();
                        all.extend(e.iter().filter(|x| !all.contains(x)).collect::<Vec<_>>());
                    }
                    listed.push((name, e));
                }
                Err(e) => report.problems.push(problem(
                    ProblemKind::Index,
                    format!("index {name}"),
                    e.to_string(),
                    &[],
                )),
            }
        }
    }
    let present: HashMap<Id, u64> = backend
        .list(FileKind::Pack)?
        .into_iter()
        .filter_map(|(n, s)| Id::from_hex(&n).map(|i| (i, s)))
        .collect();
    report.unreferenced_packs = present
        .keys()
        .filter(|p| !pack_entries.contains_key(p) && !marked.contains(p))
        .map(|p| p.to_hex())
        .collect();
    report.unreferenced_packs.sort();
    report.packs = pack_entries.len() as u64;

    // Pack structure: present, header matches the index, size adds up.
    let packs: Vec<(&Id, &Vec<PackEntry>)> = pack_entries.iter().collect();
    progress.total(packs.len() as u64, 0);
    let structural: Vec<Problem> = packs
        .par_iter()
        .filter_map(|(id, entries)| {
            let ids: Vec<Id> = entries.iter().map(|e| e.id).collect();
            let obj = format!("pack {id}");
            let r = (|| -> Result<Option<String>> {
                let Some(&size) = present.get(id) else {
                    return Ok(Some(
                        "missing: the index lists it but it is not stored".into(),
                    ));
                };
                if size < 4 {
                    return Ok(Some(format!("truncated to {size} bytes")));
                }
                let tail = backend.read_range(FileKind::Pack, &id.to_hex(), size - 4, 4)?;
                let hl = u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")) as u64;
                if hl + 4 > size {
                    return Ok(Some(format!(
                        "truncated or damaged: header length {hl} exceeds file size {size}"
                    )));
                }
                let sealed = backend.read_range(FileKind::Pack, &id.to_hex(), size - 4 - hl, hl)?;
                let plain = match repo.keys().open(&sealed) {
                    Ok(p) => p,
                    Err(_) => {
                        return Ok(Some(
                            "header does not authenticate (truncated or damaged)".into(),
                        ));
                    }
                };
                let header = decode_header(&plain)?;
                let body: u64 = header.iter().map(|e| e.len as u64).sum();
                if body + hl + 4 != size {
                    return Ok(Some(format!(
                        "size {size} differs from the {} its header describes",
                        body + hl + 4
                    )));
                }
                for (name, listed) in &records[*id] {
                    if !listed.iter().all(|e| header.contains(e)) {
                        return Ok(Some(format!("header does not match index file {name}")));
                    }
                }
                Ok(None)
            })();
            progress.done(1, 0);
            match r {
                Ok(None) => None,
                Ok(Some(d)) => Some(problem(
                    if present.contains_key(id) {
                        ProblemKind::Pack
                    } else {
                        ProblemKind::MissingPack
                    },
                    obj,
                    d,
                    &ids,
                )),
                Err(e) => Some(problem(ProblemKind::Pack, obj, e.to_string(), &ids)),
            }
        })
        .collect();
    let bad_packs: HashSet<String> = structural.iter().map(|p| p.object.clone()).collect();
    report.problems.extend(structural);

    // Trees of every snapshot.
    let mut wanted: HashSet<Id> = HashSet::new();
    let mut used_data: HashSet<Id> = HashSet::new();
    let mut checked_trees: HashSet<Id> = HashSet::new();
    for (sid, s) in &snapshots {
        let mut missing: BTreeSet<Id> = BTreeSet::new();
        let mut missing_files: Vec<Affected> = Vec::new();
        let mut tree_errors: Vec<Problem> = Vec::new();
        // Each distinct tree is checked once, except below a Swamp (whose name selects).
        let walk_root = checked_trees.insert(s.tree);
        let mut visit = |v: Visit<'_>| {
            let (rel, n, swamp) = (v.path, v.node, v.swamp);
            let descend = n
                .subtree
                .is_some_and(|sub| checked_trees.insert(sub) || swamp.is_some());
            if n.kind == NodeKind::File {
                let mut lost = false;
                let selected = only.is_all() || swamp.is_some_and(|s| only.matches(s));
                used_data.extend(n.data_blobs().copied());
                for id in n.data_blobs() {
                    if selected {
                        wanted.insert(*id);
                    }
                    if !index.contains(BlobType::Data, id) {
                        missing.insert(*id);
                        lost = true;
                    }
                }
                if lost {
                    missing_files.push(Affected {
                        snapshot: sid.short(),
                        path: rel.display().to_string(),
                    });
                }
            }
            Ok(descend)
        };
        let mut unreadable = |rel: &Path, tree: &Id, e: Error| {
            tree_errors.push(problem(
                ProblemKind::Tree,
                format!("tree {tree}"),
                format!(
                    "{} (at {:?} in snapshot {})",
                    e,
                    rel.display().to_string(),
                    sid.short()
                ),
                &[*tree],
            ));
            Ok(())
        };
        if walk_root {
            // Neither closure fails: unreadable trees are reported, the walk goes on.
            walk(
                repo,
                &index,
                &s.tree,
                Path::new(""),
                &mut visit,
                &mut unreadable,
            )?;
        }
        if let Some(names) = &s.names {
            checked_trees.insert(*names);
            let pages = match repo.load_name_index(&index, names) {
                Ok(root) => root.pages.into_iter().map(|p| p.id).collect(),
                Err(e) => {
                    tree_errors.push(name_index_problem(names, sid, e));
                    Vec::new()
                }
            };
            for page in pages {
                if checked_trees.insert(page)
                    && let Err(e) = repo.load_name_page(&index, &page)
                {
                    tree_errors.push(name_index_problem(&page, sid, e));
                }
            }
        }
        if !missing.is_empty() {
            let ids: Vec<Id> = missing.into_iter().collect();
            let mut p = problem(
                ProblemKind::MissingBlob,
                format!("snapshot {sid}"),
                format!("{} data blob(s) it references are in no index", ids.len()),
                &ids,
            );
            p.affected = missing_files;
            report.problems.push(p);
        }
        report.problems.extend(tree_errors);
    }

    if !only.is_all() && wanted.is_empty() {
        return Err(Error::NotFound(
            "Swamp matching --swamp in any snapshot".into(),
        ));
    }

    // Which copies readers use: a client with the password can add forged copies and index
    // files, though not remove the true ones.
    let (found, mut intact) = check_copies(
        repo,
        &index,
        [
            (BlobType::Data, &used_data),
            (BlobType::Tree, &checked_trees),
        ],
        &effective_packs,
        &present,
    );
    report.problems.extend(found);
    // The structure's problems are known now; those of the data as each pack is read.
    for p in &report.problems {
        progress.error(&p.object, &p.detail);
    }

    // Read data.
    if read_data != ReadData::None {
        let selected: Vec<(&Id, &Vec<PackEntry>)> = pack_entries
            .iter()
            .filter(|(id, _)| present.contains_key(id) && read_data.selects(id))
            .filter(|(_, es)| only.is_all() || es.iter().any(|e| wanted.contains(&e.id)))
            .collect();
        let counters = Mutex::new((0u64, 0u64, 0u64));
        let read_intact = Mutex::new(Vec::new());
        progress.total(0, selected.iter().map(|(id, _)| present[*id]).sum());
        let found: Vec<Problem> = selected
            .par_iter()
            .flat_map_iter(|(id, entries)| {
                let obj = format!("pack {id}");
                let all_ids: Vec<Id> = entries.iter().map(|e| e.id).collect();
                let bytes = match backend.read(FileKind::Pack, &id.to_hex()) {
                    Ok(b) => b,
                    Err(e) => {
                        return vec![problem(ProblemKind::Pack, obj, e.to_string(), &all_ids)];
                    }
                };
                progress.done(0, bytes.len() as u64);
                let mut out = Vec::new();
                let header = read_pack(repo.keys(), &bytes);
                if header.is_err() && !bad_packs.contains(&obj) {
                    out.push(problem(
                        ProblemKind::Pack,
                        obj.clone(),
                        "header unreadable".into(),
                        &[],
                    ));
                }
                // A pack a write-only session wrote: its blobs open with that session's key.
                let session = header.ok().and_then(|(_, k)| k);
                let keys = session.as_ref().unwrap_or(repo.keys());
                // One pass over the pack: each blob's bytes go into the pack's hash and are
                // checked right after, while they are in the CPU's cache.
                let mut order: Vec<&PackEntry> = entries.iter().collect();
                order.sort_by_key(|e| e.offset);
                let mut hash = blake3::Hasher::new();
                let mut hashed = 0;
                let mut scratch = Scratch::default();
                let (mut bad, mut good) = (Vec::new(), Vec::new());
                let mut n = 0;
                for e in order {
                    let (start, end) = (e.offset as usize, e.offset as usize + e.len as usize);
                    let r = if end <= bytes.len() {
                        if start >= hashed {
                            hash.update(&bytes[hashed..end]);
                            hashed = end;
                        }
                        check_blob(keys, e, &bytes[start..end], &mut scratch)
                    } else {
                        Err(Error::corrupt("blob", "beyond the end of the pack"))
                    };
                    n += 1;
                    match r {
                        Ok(()) => good.push(e.id),
                        Err(_) => bad.push(e.id),
                    }
                }
                hash.update(&bytes[hashed..]);
                if Id(*hash.finalize().as_bytes()) != **id && !bad_packs.contains(&obj) {
                    out.insert(
                        0,
                        problem(
                            ProblemKind::Pack,
                            obj.clone(),
                            "content does not match its name (bytes altered)".into(),
                            &[],
                        ),
                    );
                }
                if !bad.is_empty() {
                    out.push(problem(
                        ProblemKind::Blob,
                        obj,
                        format!(
                            "{} of {} blob(s) fail to decrypt or do not match their id",
                            bad.len(),
                            entries.len()
                        ),
                        &bad,
                    ));
                }
                read_intact.lock().expect("intact").extend(good);
                let mut c = counters.lock().expect("counters");
                c.0 += 1;
                c.1 += n;
                c.2 += bytes.len() as u64;
                out
            })
            .inspect(|p| progress.error(&p.object, &p.detail))
            .collect();
        let c = counters.into_inner().expect("counters");
        (report.packs_read, report.blobs_read, report.bytes_read) = c;
        report.problems.extend(found);
        intact.extend(read_intact.into_inner().expect("intact"));
    }

    // Name the files that depend on damaged blobs (of which no intact copy was seen).
    let attributed =
        |p: &Problem| p.kind != ProblemKind::MissingBlob && p.kind != ProblemKind::Index;
    let damaged: HashSet<Id> = report
        .problems
        .iter()
        .filter(|p| attributed(p))
        .flat_map(|p| p.blobs.iter().filter_map(|b| Id::from_hex(b)))
        .filter(|b| !intact.contains(b))
        .collect();
    if !damaged.is_empty() {
        let mut hits: HashMap<Id, Vec<Affected>> = HashMap::new();
        for (sid, s) in &snapshots {
            let mut seen = HashSet::from([s.tree]);
            let mut visit = |v: Visit<'_>| {
                let n = v.node;
                if n.kind == NodeKind::File {
                    for id in n.data_blobs().filter(|id| damaged.contains(*id)) {
                        hits.entry(*id).or_default().push(Affected {
                            snapshot: sid.short(),
                            path: v.path.display().to_string(),
                        });
                    }
                }
                let fresh = |sub: Id| seen.insert(sub) || v.swamp.is_some();
                Ok(n.subtree.is_some_and(fresh))
            };
            // Unreadable trees were reported above; the walk goes on past them.
            walk(
                repo,
                &index,
                &s.tree,
                Path::new(""),
                &mut visit,
                &mut |_, _, _| Ok(()),
            )?;
            if damaged.contains(&s.tree) {
                hits.entry(s.tree).or_default().push(Affected {
                    snapshot: sid.short(),
                    path: "/".into(),
                });
            }
        }
        for p in report.problems.iter_mut().filter(|p| attributed(p)) {
            let mut a: BTreeSet<Affected> = BTreeSet::new();
            for b in &p.blobs {
                if let Some(h) = Id::from_hex(b).and_then(|i| hits.get(&i)) {
                    a.extend(h.iter().cloned());
                }
            }
            p.affected = a.into_iter().collect();
        }
    }
    // Stored Swamps load as HydrAIDE loads them (every pack read, or the selected Swamps').
    if read_data == ReadData::All || (read_data != ReadData::None && !only.is_all()) {
        let found = crate::ops::swampcheck::check_swamps(repo, &index, &snapshots, only)?;
        report.problems.extend(found);
    }
    Ok(report)
}

/// Checks the copies readers use: used blobs must be listed by an index file no other file
/// supersedes (a superseding file that does not cover them is forged or damaged), and of a blob
/// with several copies the preferred one (or, when it fails, the next) is read and checked.
/// Returns the problems and the blobs seen intact.
fn check_copies(
    repo: &Repository,
    index: &Index,
    used: [(BlobType, &HashSet<Id>); 2],
    effective_packs: &HashSet<Id>,
    present: &HashMap<Id, u64>,
) -> (Vec<Problem>, HashSet<Id>) {
    let mut problems = Vec::new();
    let mut only_superseded: BTreeMap<Id, Vec<Id>> = BTreeMap::new();
    for (kind, ids) in used {
        for id in ids {
            if let Some(l) = index.get(kind, id)
                && !effective_packs.contains(&l.pack)
            {
                only_superseded.entry(l.pack).or_default().push(*id);
            }
        }
    }
    for (pack, ids) in only_superseded {
        problems.push(problem(
            ProblemKind::Index,
            format!("pack {pack}"),
            format!(
                "holds {} blob(s) snapshots use, but only index files another index file \
                 supersedes list it (the superseding file does not cover them)",
                ids.len()
            ),
            &ids,
        ));
    }
    let checked: Vec<_> = index
        .duplicates()
        .par_iter()
        .map(|copies| first_intact(repo, copies.iter().copied(), present))
        .collect();
    let mut intact = HashSet::new();
    let mut bad: BTreeMap<Id, (Vec<Id>, bool)> = BTreeMap::new();
    for c in checked {
        if let Some(g) = c.good {
            intact.insert(g.entry.id);
        }
        for f in c.failed.iter().filter(|f| present.contains_key(&f.pack)) {
            let b = bad.entry(f.pack).or_default();
            b.0.push(f.entry.id);
            b.1 |= c.good.is_none();
        }
    }
    for (pack, (ids, lost)) in bad {
        let fallback = if lost {
            ""
        } else {
            "; readers fall back to intact copies in other packs"
        };
        problems.push(problem(
            ProblemKind::Blob,
            format!("pack {pack}"),
            format!(
                "{} blob copies fail to decrypt or do not match their id{fallback}",
                ids.len()
            ),
            &ids,
        ));
    }
    (problems, intact)
}

fn name_index_problem(blob: &Id, sid: &Id, e: Error) -> Problem {
    problem(
        ProblemKind::Tree,
        format!("tree {blob}"),
        format!("{e} (name index of snapshot {})", sid.short()),
        &[*blob],
    )
}

#[cfg(test)]
mod tests {
    use super::ProblemKind;

    /// Scripts match on `verify --json` problem kinds: each variant keeps its string.
    #[test]
    fn problem_kinds_keep_their_strings() {
        use ProblemKind::*;
        let kinds = [
            Key,
            Index,
            MissingPack,
            Pack,
            Blob,
            Snapshot,
            Tree,
            MissingBlob,
            Swamp,
        ];
        let names: Vec<String> = kinds
            .iter()
            .map(|k| {
                serde_json::to_value(k)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            names.join(" "),
            "key index missing-pack pack blob snapshot tree missing-blob swamp"
        );
    }
}
