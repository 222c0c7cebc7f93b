//! `restore`: rebuild a snapshot's files under a target folder. Packs are read in parallel,
//! each once, in offset order; every blob's id is checked before its bytes are written; files are
//! written under a temporary name and renamed only when complete.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use globset::{Glob, GlobSet, GlobSetBuilder};
use rayon::prelude::*;
use serde::Serialize;

use crate::backend::FileKind;
use crate::ops::progress::Progress;
use crate::repo::Repository;
use crate::repo::blob::{BlobType, open_blob};
use crate::repo::index::Index;
use crate::repo::pack::PackEntry;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::{Node, NodeKind};
use crate::{Error, Id, Result};

/// Options of a restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Folder to restore into.
    pub target: PathBuf,
    /// Only restore paths (relative to the snapshot root) matching one of these globs; a match
    /// on a directory restores everything below it.
    pub includes: Vec<String>,
    /// List what would be restored without writing.
    pub dry_run: bool,
    /// Allow a non-empty target; files of the snapshot replace existing ones.
    pub overwrite: bool,
    /// Only restore Swamps whose name matches one of these globs (`*` stays within one name
    /// part, `**` crosses them).
    pub swamps: Vec<String>,
    /// Restore a quarantined Swamp stored with its raw bytes as those bytes, not as its
    /// loadable prefix.
    pub raw_quarantined: bool,
}

/// Compiles Swamp-name globs (`*` does not cross `/`).
pub fn swamp_globs(pats: &[String]) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in pats {
        let g = globset::GlobBuilder::new(p)
            .literal_separator(true)
            .build()
            .map_err(|e| Error::InvalidInput(format!("bad Swamp pattern {p:?}: {e}")))?;
        b.add(g);
    }
    b.build()
        .map_err(|e| Error::InvalidInput(format!("bad Swamp pattern: {e}")))
}

/// What a restore did (or would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreSummary {
    /// Files restored.
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Packs read.
    pub packs_read: u64,
    /// Files not restored because their data is damaged (restore exits non-zero then).
    pub damaged: Vec<DamagedFile>,
    /// Paths (relative) of the files, for dry runs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

/// A blob to restore and the (file number, offset) places it goes.
type BlobTargets = (PackEntry, Vec<(usize, u64)>);

/// A file that could not be restored because its data is damaged or missing.
#[derive(Debug, Clone, Serialize)]
pub struct DamagedFile {
    /// Path relative to the snapshot root.
    pub path: String,
    /// What is wrong with its data.
    pub error: String,
}

/// Removes temporary files after a failed restore (best effort: the error that stopped the
/// restore is what gets reported).
fn remove_all(tmps: &[PathBuf]) {
    for t in tmps {
        let _ = fs::remove_file(t);
    }
}

/// A planned entry.
pub struct PlannedFile {
    /// Path relative to the snapshot root.
    pub rel: PathBuf,
    /// The node.
    pub node: Node,
}

/// Walks a snapshot tree, calling `f(relative path, node)` for every node, parents first.
pub fn walk_tree(
    repo: &Repository,
    index: &Index,
    tree: &Id,
    prefix: &Path,
    f: &mut dyn FnMut(&Path, &Node) -> Result<()>,
) -> Result<()> {
    let t = repo.load_tree(index, tree)?;
    for n in &t.nodes {
        let rel = prefix.join(OsStr::from_bytes(&n.name));
        f(&rel, n)?;
        if let Some(sub) = &n.subtree {
            walk_tree(repo, index, sub, &rel, f)?;
        }
    }
    Ok(())
}

fn build_globs(pats: &[String]) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in pats {
        let p = p.trim_start_matches('/');
        b.add(Glob::new(p).map_err(|e| Error::InvalidInput(format!("bad pattern {p:?}: {e}")))?);
    }
    b.build()
        .map_err(|e| Error::InvalidInput(format!("bad pattern: {e}")))
}

/// `.NAME.hydrabackup-tmp`, or with `.N` appended when `n > 0` (used when the snapshot itself
/// holds a path of the plain temporary name).
fn tmp_name(path: &Path, n: u32) -> PathBuf {
    let name = path.file_name().unwrap_or_default().as_bytes();
    let mut t = b".".to_vec();
    t.extend_from_slice(name);
    t.extend_from_slice(b".hydrabackup-tmp");
    if n > 0 {
        t.extend_from_slice(format!(".{n}").as_bytes());
    }
    path.with_file_name(OsStr::from_bytes(&t))
}

fn set_mtime(path: &Path, ns: i64, symlink: bool) -> std::io::Result<()> {
    let t = filetime::FileTime::from_unix_time(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    );
    if symlink {
        filetime::set_symlink_file_times(path, t, t)
    } else {
        filetime::set_file_times(path, t, t)
    }
}

/// What a restore writes: directories (parents before children), files and symlinks.
#[derive(Default)]
struct Plan {
    dirs: Vec<(PathBuf, Node)>,
    files: Vec<PlannedFile>,
    links: Vec<(PathBuf, Node)>,
}

impl Plan {
    /// Adds `n` at `rel`; a directory adds everything below it too.
    fn add_all(&mut self, repo: &Repository, index: &Index, rel: &Path, n: &Node) -> Result<()> {
        self.add(rel, n);
        if let Some(sub) = &n.subtree {
            walk_tree(repo, index, sub, rel, &mut |r, c| {
                self.add(r, c);
                Ok(())
            })?;
        }
        Ok(())
    }

    fn add(&mut self, rel: &Path, n: &Node) {
        match n.kind {
            NodeKind::Dir => self.dirs.push((rel.to_path_buf(), n.clone())),
            NodeKind::File => self.files.push(PlannedFile {
                rel: rel.to_path_buf(),
                node: n.clone(),
            }),
            NodeKind::Symlink => self.links.push((rel.to_path_buf(), n.clone())),
        }
    }

    fn append(&mut self, o: Plan) {
        self.dirs.extend(o.dirs);
        self.files.extend(o.files);
        self.links.extend(o.links);
    }
}

/// Plans by walking the whole snapshot tree and testing every node against the selection.
fn plan_by_walk(
    repo: &Repository,
    index: &Index,
    root: &Id,
    opts: &RestoreOptions,
) -> Result<Plan> {
    let globs = build_globs(&opts.includes)?;
    let swamps = swamp_globs(&opts.swamps)?;
    let select_all = opts.includes.is_empty() && opts.swamps.is_empty();
    let mut plan = Plan::default();
    // A selected directory selects everything below it.
    let mut selected_dirs: Vec<PathBuf> = Vec::new();
    walk_tree(repo, index, root, Path::new(""), &mut |rel, n| {
        let swamp_match = n
            .swamp
            .as_ref()
            .and_then(|s| s.name.as_deref())
            .is_some_and(|name| swamps.is_match(name));
        let chosen = select_all
            || (!opts.includes.is_empty() && globs.is_match(rel))
            || swamp_match
            || selected_dirs.iter().any(|d| rel.starts_with(d));
        if !chosen {
            return Ok(());
        }
        if n.kind == NodeKind::Dir && !select_all {
            selected_dirs.push(rel.to_path_buf());
        }
        plan.add(rel, n);
        Ok(())
    })?;
    Ok(plan)
}

/// A Swamp to reach: the remaining components of its path, and its name.
type Wanted<'a> = (Vec<&'a [u8]>, &'a str);

/// Plans a restore by Swamp name through the snapshot's name index: reads the index pages
/// that can match, then only the trees along the matching paths.
fn plan_by_names(
    repo: &Repository,
    index: &Index,
    root: &Id,
    names: &Id,
    patterns: &[String],
) -> Result<Plan> {
    let globs = swamp_globs(patterns)?;
    let name_index = repo.load_name_index(index, names)?;
    let pages = name_index.candidates(patterns);
    let found: Vec<Vec<crate::repo::names::NameEntry>> = pages
        .par_iter()
        .map(|p| {
            let page = repo.load_name_page(index, &p.id)?;
            Ok(page
                .entries
                .into_iter()
                .filter(|e| globs.is_match(&e.name))
                .collect())
        })
        .collect::<Result<_>>()?;
    let mut wanted: Vec<Wanted<'_>> = found
        .iter()
        .flatten()
        .map(|e| {
            let parts: Vec<&[u8]> = e.path.split(|&b| b == b'/').collect();
            (parts, e.name.as_str())
        })
        .collect();
    wanted.sort_unstable();
    wanted.dedup_by(|a, b| a.0 == b.0);
    descend(repo, index, root, Path::new(""), &wanted)
}

/// Loads tree `tree` (at `prefix`) and plans the entries `wanted` names by their remaining
/// path components (sorted), each ending at a Swamp of the given name.
fn descend(
    repo: &Repository,
    index: &Index,
    tree: &Id,
    prefix: &Path,
    wanted: &[Wanted<'_>],
) -> Result<Plan> {
    let t = repo.load_tree(index, tree)?;
    let bad = |what: String| Error::corrupt("name index", what);
    // Group by the first component (the list is sorted, so groups are runs).
    let mut groups: Vec<&[Wanted<'_>]> = Vec::new();
    let mut rest = wanted;
    while let Some(first) = rest.first() {
        let n = rest
            .iter()
            .take_while(|w| w.0.first() == first.0.first())
            .count();
        groups.push(&rest[..n]);
        rest = &rest[n..];
    }
    let plans: Vec<Plan> = groups
        .par_iter()
        .map(|g| -> Result<Plan> {
            let comp = g[0].0.first().copied().unwrap_or_default();
            let rel = prefix.join(OsStr::from_bytes(comp));
            let node = t
                .find(comp)
                .ok_or_else(|| bad(format!("{} is not in the snapshot", rel.display())))?;
            let mut plan = Plan::default();
            let (here, below): (Vec<_>, Vec<_>) = g.iter().partition(|w| w.0.len() == 1);
            if let Some((_, name)) = here.first() {
                if node.swamp.as_ref().and_then(|s| s.name.as_deref()) != Some(*name) {
                    return Err(bad(format!("{} is not Swamp {name}", rel.display())));
                }
                plan.add_all(repo, index, &rel, node)?;
                return Ok(plan);
            }
            let sub = node
                .subtree
                .as_ref()
                .ok_or_else(|| bad(format!("{} is not a directory", rel.display())))?;
            let below: Vec<Wanted<'_>> = below
                .into_iter()
                .map(|w| (w.0[1..].to_vec(), w.1))
                .collect();
            plan.append(descend(repo, index, sub, &rel, &below)?);
            Ok(plan)
        })
        .collect::<Result<_>>()?;
    let mut plan = Plan::default();
    for p in plans {
        plan.append(p);
    }
    Ok(plan)
}

/// Sets a restored file's or folder's permission bits and modification time through its handle.
fn set_meta(f: &File, n: &Node) -> std::io::Result<()> {
    f.set_permissions(fs::Permissions::from_mode(n.mode))?;
    let d = std::time::Duration::from_nanos(n.mtime_ns.unsigned_abs());
    let t = if n.mtime_ns >= 0 {
        std::time::UNIX_EPOCH.checked_add(d)
    } else {
        std::time::UNIX_EPOCH.checked_sub(d)
    }
    .unwrap_or(std::time::UNIX_EPOCH);
    f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
}

/// Finishes a completely written temporary file: metadata, then the rename to its real name.
fn finish(file: &File, f: &PlannedFile, tmp: &Path, dest: &Path) -> Result<()> {
    set_meta(file, &f.node).map_err(|e| Error::io(tmp, e))?;
    fs::rename(tmp, dest).map_err(|e| {
        if dest.is_dir() {
            Error::InvalidInput(format!(
                "{} is a directory in the target; not replacing it with a file",
                dest.display()
            ))
        } else {
            Error::io(dest, e)
        }
    })
}

/// Restores `snap` as `opts` say.
pub fn restore(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    opts: &RestoreOptions,
    progress: &Progress,
) -> Result<RestoreSummary> {
    let by_name = opts.includes.is_empty() && !opts.swamps.is_empty();
    let Plan {
        dirs,
        mut files,
        links,
    } = match &snap.names {
        Some(names) if by_name => plan_by_names(repo, index, &snap.tree, names, &opts.swamps)?,
        _ => plan_by_walk(repo, index, &snap.tree, opts)?,
    };
    if opts.raw_quarantined {
        for f in &mut files {
            if let Some(s) = f.node.swamp.as_mut().filter(|s| !s.raw.is_empty()) {
                f.node.content = std::mem::take(&mut s.raw);
                f.node.size = s.raw_size;
            }
        }
    }
    let mut summary = RestoreSummary::default();
    if !opts.swamps.is_empty() && files.is_empty() && dirs.is_empty() {
        return Err(Error::NotFound(format!(
            "Swamp matching {} in this snapshot",
            opts.swamps.join(" or ")
        )));
    }
    summary.files = files.len() as u64;
    summary.dirs = dirs.len() as u64;
    summary.symlinks = links.len() as u64;
    summary.bytes = files.iter().map(|f| f.node.size).sum();
    progress.total(files.len() as u64, summary.bytes);

    // Where each blob goes: pack → blob (by offset) → (file, offset) list.
    let mut by_pack: HashMap<Id, BTreeMap<u32, BlobTargets>> = HashMap::new();
    for (fi, f) in files.iter().enumerate() {
        let mut off = 0u64;
        for id in &f.node.content {
            let loc = index.get(BlobType::Data, id).ok_or_else(|| {
                Error::corrupt(
                    format!("file {}", f.rel.display()),
                    format!("blob {id} is not in the index"),
                )
            })?;
            by_pack
                .entry(loc.pack)
                .or_default()
                .entry(loc.entry.offset)
                .or_insert_with(|| (loc.entry, Vec::new()))
                .1
                .push((fi, off));
            off += loc.entry.raw_len as u64;
        }
        if off != f.node.size {
            return Err(Error::corrupt(
                format!("file {}", f.rel.display()),
                "blob sizes do not add up to the file size",
            ));
        }
    }
    summary.packs_read = by_pack.len() as u64;
    if opts.dry_run {
        summary.paths = files.iter().map(|f| f.rel.display().to_string()).collect();
        return Ok(summary);
    }

    let target = &opts.target;
    if target.exists() {
        let non_empty = fs::read_dir(target)
            .map_err(|e| Error::io(target, e))?
            .next()
            .is_some();
        if non_empty && !opts.overwrite {
            return Err(Error::InvalidInput(format!(
                "target {} is not empty; use --overwrite to restore into it",
                target.display()
            )));
        }
    }
    fs::create_dir_all(target).map_err(|e| Error::io(target, e))?;
    // Temporary names, chosen so that none is also a path this restore creates: otherwise a
    // file named like another's temporary file would be overwritten by it (or block it).
    let planned: HashSet<&Path> = dirs
        .iter()
        .map(|d| d.0.as_path())
        .chain(files.iter().map(|f| f.rel.as_path()))
        .chain(links.iter().map(|l| l.0.as_path()))
        .collect();
    let tmps: Vec<PathBuf> = files
        .iter()
        .map(|f| {
            let mut n = 0;
            let mut t = tmp_name(&f.rel, 0);
            while planned.contains(t.as_path()) {
                n += 1;
                t = tmp_name(&f.rel, n);
            }
            target.join(t)
        })
        .collect();
    // Folders once: the planned ones (parents first), then any other parent of a file or link
    // (a partial restore selects files without their folders).
    let mut made: HashSet<PathBuf> = HashSet::new();
    for (rel, _) in &dirs {
        let p = target.join(rel);
        fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
        made.insert(rel.clone());
    }
    let parents: std::collections::BTreeSet<&Path> = files
        .iter()
        .map(|f| f.rel.as_path())
        .chain(links.iter().map(|l| l.0.as_path()))
        .filter_map(Path::parent)
        .filter(|p| !p.as_os_str().is_empty() && !made.contains(*p))
        .collect();
    for rel in parents {
        let p = target.join(rel);
        fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
    }

    // Writes still to come per file; the write that brings it to zero finishes the file.
    let remaining: Vec<AtomicUsize> = files.iter().map(|_| AtomicUsize::new(0)).collect();
    for blobs in by_pack.values() {
        for (_, targets) in blobs.values() {
            for &(fi, _) in targets {
                remaining[fi].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    // Temporary files, sized up front (sparse where the content is zeros); files without
    // content are finished right away.
    files
        .par_iter()
        .zip(&tmps)
        .zip(&remaining)
        .try_for_each(|((f, tmp), left)| {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(tmp)
                .map_err(|e| Error::io(tmp, e))?;
            file.set_len(f.node.size).map_err(|e| Error::io(tmp, e))?;
            if left.load(Ordering::Relaxed) == 0 {
                finish(&file, f, tmp, &target.join(&f.rel))?;
                progress.done(1, 0);
            }
            Ok(())
        })
        .inspect_err(|_| remove_all(&tmps))?;

    // Blobs that cannot be read or do not verify mark their files as damaged; everything else
    // is still restored. Damaged files never appear under their real name.
    let damaged: Mutex<BTreeMap<usize, String>> = Mutex::new(BTreeMap::new());
    let mark = |targets: &[(usize, u64)], why: &str| {
        let mut d = damaged.lock().expect("damage list");
        for &(fi, _) in targets {
            d.entry(fi).or_insert_with(|| why.to_string());
        }
    };
    let packs: Vec<_> = by_pack.into_iter().collect();
    packs
        .par_iter()
        .try_for_each(|(pack, blobs)| -> Result<()> {
            let first = blobs.values().next().expect("non-empty").0.offset as u64;
            let last = blobs.values().next_back().expect("non-empty").0;
            let end = last.offset as u64 + last.len as u64;
            let bytes =
                match repo
                    .backend()
                    .read_range(FileKind::Pack, &pack.to_hex(), first, end - first)
                {
                    Ok(b) => b,
                    Err(e) => {
                        for (_, targets) in blobs.values() {
                            mark(targets, &format!("pack {pack}: {e}"));
                        }
                        return Ok(());
                    }
                };
            let mut open: HashMap<usize, File> = HashMap::new();
            let handle = |open: &mut HashMap<usize, File>, fi: usize| -> Result<()> {
                if let std::collections::hash_map::Entry::Vacant(v) = open.entry(fi) {
                    let tmp = &tmps[fi];
                    v.insert(
                        OpenOptions::new()
                            .write(true)
                            .open(tmp)
                            .map_err(|er| Error::io(tmp, er))?,
                    );
                }
                Ok(())
            };
            for (e, targets) in blobs.values() {
                let s = (e.offset as u64 - first) as usize;
                let plain = match open_blob(repo.keys(), e, &bytes[s..s + e.len as usize]) {
                    Ok(p) => p,
                    Err(er) => {
                        mark(targets, &format!("{er} (in pack {pack})"));
                        continue;
                    }
                };
                let zeros = plain.iter().all(|&b| b == 0);
                for &(fi, off) in targets {
                    // Zeros need no write: the file was created sparse.
                    if !zeros {
                        handle(&mut open, fi)?;
                        open[&fi]
                            .write_all_at(&plain, off)
                            .map_err(|er| Error::io(&files[fi].rel, er))?;
                    }
                    if remaining[fi].fetch_sub(1, Ordering::AcqRel) == 1 {
                        // The last write of this file: every other one is done.
                        handle(&mut open, fi)?;
                        let file = open.remove(&fi).expect("just opened");
                        finish(&file, &files[fi], &tmps[fi], &target.join(&files[fi].rel))?;
                        progress.done(1, 0);
                    }
                }
                progress.done(0, plain.len() as u64 * targets.len() as u64);
            }
            Ok(())
        })
        .inspect_err(|_| remove_all(&tmps))?;
    let damaged = damaged.into_inner().expect("damage list");
    for fi in damaged.keys() {
        let _ = fs::remove_file(&tmps[*fi]);
    }
    summary.damaged = damaged
        .into_iter()
        .map(|(fi, error)| DamagedFile {
            path: files[fi].rel.display().to_string(),
            error,
        })
        .collect();
    for (rel, n) in &links {
        let p = target.join(rel);
        if p.symlink_metadata().is_ok() {
            fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
        let t = OsStr::from_bytes(n.target.as_deref().unwrap_or_default());
        std::os::unix::fs::symlink(t, &p).map_err(|e| Error::io(&p, e))?;
        let _ = set_mtime(&p, n.mtime_ns, true);
    }
    // Directory metadata last, deepest first, so creating children does not disturb it.
    for (rel, n) in dirs.iter().rev() {
        let p = target.join(rel);
        let d = File::open(&p).map_err(|e| Error::io(&p, e))?;
        set_meta(&d, n).map_err(|e| Error::io(&p, e))?;
    }
    // No fsync per file (as restic and borg): a killed process never leaves a partial file
    // under a real name, since files are renamed only when complete; durability against power
    // loss is the page cache's, so run `sync` before pulling the plug.
    Ok(summary)
}
