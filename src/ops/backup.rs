//! `backup`: walk the sources, reuse what the parent snapshot proves unchanged, read the rest
//! through a bounded pipeline (readers → chunk workers → pack writer), then store trees and one
//! snapshot.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::backend::FileKind;
use crate::ops::progress::Progress;
use crate::pattern::{PathPatterns, Pattern};
use crate::repo::Repository;
use crate::repo::snapshot::{Snapshot, SnapshotSummary};
use crate::repo::tree::{Decision, Tree};
use crate::source::dir::Dir;
use crate::source::report::GONE;
use crate::source::walk::{Draft, Walker};
use crate::{Error, Id, Result};

mod live;
mod pass;
mod run;
mod sources;
pub use run::{Outcome, run};

pub use crate::source::report::{
    SourceError, SourceErrorKind, SpecialFile, SpecialKind, SwampDecision,
};

/// Options of one backup run.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BackupOptions {
    /// Files and directories to back up (a HydrAIDE data root, typically); with
    /// --stdin-from-command, the command and its arguments (after `--`).
    #[arg(required_unless_present_any = ["instance", "files_from", "files_from_verbatim", "files_from_raw", "stdin"])]
    pub paths: Vec<PathBuf>,
    /// Back up the data root of this HydrAIDE instance (from ~/.hydraide/metadata.json).
    #[arg(long)]
    pub instance: Option<String>,
    /// Only capture Swamps modified since this time; older ones are taken from the parent.
    #[arg(long)]
    pub since: Option<String>,
    /// Show Swamp names in the decision log (they may be confidential).
    #[arg(long)]
    pub show_names: bool,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Host name to record instead of this machine's.
    #[arg(long)]
    pub host: Option<String>,
    /// Skip paths matching this glob (repeatable): without a leading `/` it matches a name or
    /// path at any depth (`cache`, `logs/*.gz`), with one the absolute path; `*` stays within
    /// a name, `**` crosses folders.
    #[arg(long = "exclude", value_name = "PATTERN")]
    pub excludes: Vec<String>,
    /// Like --exclude, ignoring case (repeatable).
    #[arg(long = "iexclude", value_name = "PATTERN")]
    pub iexcludes: Vec<String>,
    /// Read exclude patterns from this file (one per line, `#` comments; repeatable).
    #[arg(long = "exclude-file", value_name = "FILE")]
    pub exclude_files: Vec<PathBuf>,
    /// Read case-insensitive exclude patterns from this file (repeatable).
    #[arg(long = "iexclude-file", value_name = "FILE")]
    pub iexclude_files: Vec<PathBuf>,
    /// Skip folders holding a CACHEDIR.TAG file with the standard signature.
    #[arg(long)]
    pub exclude_caches: bool,
    /// Do not cross file systems: folders on another device than the source paths (mount
    /// points) are stored empty.
    #[arg(short = 'x', long)]
    pub one_file_system: bool,
    /// Read the paths to back up from this file (one per line, `#` comments; repeatable).
    #[arg(long, value_name = "FILE")]
    pub files_from: Vec<PathBuf>,
    /// Read paths from this file, one per line exactly as written (no comments, no trimming).
    #[arg(long, value_name = "FILE")]
    pub files_from_verbatim: Vec<PathBuf>,
    /// Read NUL-separated paths from this file (as `find -print0` writes them).
    #[arg(long, value_name = "FILE")]
    pub files_from_raw: Vec<PathBuf>,
    /// Back up standard input as one file (named by --stdin-filename).
    #[arg(long, conflicts_with_all = ["instance", "files_from", "files_from_verbatim", "files_from_raw"])]
    pub stdin: bool,
    /// The file name standard input is stored under.
    #[arg(long, default_value = "stdin", value_name = "NAME")]
    pub stdin_filename: String,
    /// Run the command given as the paths (after `--`) and back up its output as one file; a
    /// command that fails writes no snapshot.
    #[arg(long, requires = "paths", conflicts_with_all = ["stdin", "instance", "files_from", "files_from_verbatim", "files_from_raw"])]
    pub stdin_from_command: bool,
    /// Compression of the data added by this run: auto, off, fastest, better, max or a zstd
    /// level 0-19 (default: the repository's).
    #[arg(long, value_parser = crate::repo::config::Compression::parse)]
    pub compression: Option<crate::repo::config::Compression>,
    /// Read and chunk everything, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Compare with this snapshot instead of the latest of the same host and paths.
    #[arg(long)]
    pub parent: Option<String>,
    /// Re-read every file.
    #[arg(long)]
    pub force: bool,
    /// Record this time as the snapshot's instead of now (e.g. "2026-11-20 14:00").
    #[arg(long)]
    pub time: Option<String>,
    /// Write no snapshot when the tree equals the parent's (nothing changed); `watch` sets it.
    #[arg(skip)]
    pub skip_unchanged: bool,
    /// How `.hyd` files are captured: `file` (block-aligned copies), `logical` (records) or
    /// `auto` (records for rewritten Swamps); default: the repository's (`init --mode`), else
    /// `auto`.
    #[arg(long, value_enum)]
    pub mode: Option<crate::logical::BackupMode>,
    /// Walk only these changed paths of the single source folder, taking everything else
    /// from the parent snapshot unexamined; `watch` sets it.
    #[arg(skip)]
    pub restrict: Option<std::sync::Arc<crate::source::reuse::Restrict>>,
}

/// What a backup did.
#[derive(Debug, Clone, Serialize)]
pub struct BackupOutcome {
    /// The snapshot written (none for a dry run).
    pub snapshot_id: Option<Id>,
    /// The parent used.
    pub parent: Option<Id>,
    /// Counters.
    pub summary: SnapshotSummary,
    /// Files that could not be read.
    pub errors: Vec<SourceError>,
    /// Files and folders that vanished during the backup (not an error).
    pub gone: Vec<String>,
    /// Special files found and not backed up.
    pub special: Vec<SpecialFile>,
    /// Swamps stored raw because no consistent copy could be made.
    pub quarantine: Vec<SwampDecision>,
    /// Per-Swamp decisions (filled for dry runs).
    pub decisions: Vec<SwampDecision>,
    /// Exclude patterns that matched nothing.
    pub unmatched_excludes: Vec<String>,
    /// Packs a prune marked while this backup ran that its snapshot uses, taken back into the
    /// index before the snapshot was written.
    pub packs_recovered: u64,
    /// Files read again by a further pass of the walk because a prune deleted stored data the
    /// first pass relied on (repo-format.md §9a 3).
    pub files_read_again: u64,
    /// Files and folders whose stored data a prune deleted while this backup ran and that were
    /// gone from the source when read again (also in `gone`; not in the snapshot).
    pub lost_gone: Vec<String>,
    /// What the walk examined and what it read, by kind (`watch` reports it).
    #[serde(skip)]
    pub work: crate::source::report::WalkWork,
}

/// The file node `backup --stdin` stores the stream as (its size is set once it is read).
fn stream_node(name: &str, time: jiff::Timestamp) -> crate::repo::tree::Node {
    let ns = time.as_nanosecond() as i64;
    // SAFETY: getuid and getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    crate::repo::tree::Node {
        name: name.as_bytes().to_vec(),
        kind: crate::repo::tree::NodeKind::File,
        mode: 0o600,
        mtime_ns: ns,
        ctime_ns: ns,
        inode: 0,
        uid,
        gid,
        size: 0,
        content: Vec::new(),
        subtree: None,
        target: None,
        swamp: None,
    }
}

/// Resolves the parent snapshot for these options.
fn find_parent(
    repo: &Repository,
    opts: &BackupOptions,
    host: &str,
    paths: &[String],
) -> Result<Option<(Id, Snapshot)>> {
    if opts.force && opts.parent.is_none() {
        return Ok(None);
    }
    if repo.is_write_only() {
        return repo.write_only_parent(opts.parent.as_deref(), host, paths);
    }
    if let Some(p) = &opts.parent {
        return repo.find_snapshot(p).map(Some);
    }
    Ok(repo
        .snapshots()?
        .into_iter()
        .rev()
        .find(|(_, s)| s.host == host && s.paths == paths))
}

/// Passes of the walk at most: a further pass stores again what a prune deleted while the
/// last one ran (repo-format.md §9a 3); a prune deleting it again each time fails the backup.
const PASSES: u32 = 3;

/// Walking threads at least (see `backup`).
const WALKERS: usize = 8;

/// Stack size of the walking threads: a few KiB per folder level in a release build (about
/// 25 KiB in a debug build, whose rayon frames are big), so that a chain of tens of thousands
/// of folders does not overflow. Only touched pages are committed.
const WALK_STACK: usize = 512 << 20;

/// Walks the sources and stores their trees; returns the root tree's id. One folder is the
/// root tree itself; anything else becomes the root tree's entries, by name.
fn walk_sources(walker: &mut Walker<'_>, paths: &[PathBuf], parent: Option<&Tree>) -> Result<Id> {
    let root = Path::new("");
    if paths.len() == 1 && std::fs::metadata(&paths[0]).is_ok_and(|m| m.is_dir()) {
        let entries = match Dir::open(&paths[0]) {
            Ok(d) => walker.dir(&d, &paths[0], root, parent),
            Err(e) => {
                walker.trouble(&paths[0], e);
                Vec::new()
            }
        };
        Ok(walker.finish(&paths[0], root, entries).0)
    } else {
        let mut entries = Vec::new();
        let mut names = HashSet::new();
        for p in paths {
            let (Some(parent_dir), Some(name)) = (p.parent(), p.file_name()) else {
                return Err(Error::InvalidInput(format!(
                    "{} can only be backed up on its own",
                    p.display()
                )));
            };
            let name = name.as_bytes().to_vec();
            if !names.insert(name.clone()) {
                return Err(Error::InvalidInput(format!(
                    "two paths share the name {:?}; back them up separately",
                    String::from_utf8_lossy(&name)
                )));
            }
            let rel = Path::new(std::ffi::OsStr::from_bytes(&name));
            let d = match Dir::open(parent_dir) {
                Ok(dir) => walker.entry(&dir, p, rel, &name, parent),
                Err(e) => {
                    walker.trouble(p, e);
                    None
                }
            };
            entries.extend(d.map(|d| Draft {
                display: Some(p.clone()),
                ..d
            }));
        }
        entries.sort_by(|a, b| a.node.name.cmp(&b.node.name));
        Ok(walker.finish(root, root, entries).0)
    }
}

/// Whether `p` is one of HydrAIDE's temporaries, which the walk skips.
fn hyd_temporary(p: &Path) -> bool {
    let name = p.as_os_str().as_bytes();
    [crate::hyd::COMPACT_SUFFIX, crate::hyd::FMTMIGRATE_SUFFIX]
        .iter()
        .any(|s| {
            name.strip_suffix(s.as_bytes())
                .is_some_and(|n| n.ends_with(crate::hyd::HYD_SUFFIX.as_bytes()))
        })
}

/// Counts the regular files and their bytes under `paths` (not following symlinks, leaving out
/// what `excludes` matches) into `progress`'s totals: a metadata walk, much faster than the
/// backup's reads, so a display knows the totals early. An estimate: whatever changes meanwhile
/// is counted by the backup itself. Stops early once `walked` is set (the walk is through: its
/// own counts are complete then).
fn count_sources(
    paths: &[PathBuf],
    patterns: &[Pattern],
    progress: &Progress,
    walked: &AtomicBool,
) {
    let Ok(excludes) = PathPatterns::new(patterns, "exclude") else {
        return;
    };
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = stack.pop() {
        if walked.load(Ordering::Relaxed) {
            return;
        }
        if excludes.is_match(&p) {
            continue;
        }
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if md.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if md.is_file() && !hyd_temporary(&p) {
            files += 1;
            bytes += md.len();
        }
    }
    if !walked.load(Ordering::Relaxed) {
        progress.total_at_least(files, bytes);
    }
}

/// Adds what a further pass of the walk read and stored to the first pass's counters (which
/// compare with the parent snapshot; the further pass compares with the first).
fn add_pass(summary: &mut SnapshotSummary, more: &SnapshotSummary) {
    summary.files_read += more.files_read;
    summary.bytes_read += more.bytes_read;
    summary.files_gone += more.files_gone;
    summary.data_blobs_added += more.data_blobs_added;
    summary.bytes_added += more.bytes_added;
    summary.bytes_stored += more.bytes_stored;
    summary.tree_blobs_added += more.tree_blobs_added;
}

/// Runs a backup.
pub fn backup(
    repo: &Repository,
    opts: &BackupOptions,
    progress: &Progress,
) -> Result<BackupOutcome> {
    let started = Instant::now();
    let time = match &opts.time {
        Some(t) => crate::timespec::parse(t)?,
        None => jiff::Timestamp::now(),
    };
    let since_ns = match &opts.since {
        Some(t) => Some(crate::timespec::parse(t)?.as_nanosecond() as i64),
        None => None,
    };
    crate::source::dir::raise_open_file_limit();
    let patterns = sources::excludes(opts)?;
    // Refused before anything is locked; each pass of the walk builds its own.
    PathPatterns::new(&patterns, "exclude")?;
    let streaming = opts.stdin || opts.stdin_from_command;
    if streaming {
        sources::check_stream(opts)?;
    }
    let (paths, missing) = match streaming {
        true => (vec![Path::new("/").join(&opts.stdin_filename)], Vec::new()),
        false => {
            let s = sources::resolve(opts)?;
            (s.paths, s.missing)
        }
    };
    // Recorded without a trailing `/`, so `dir/` and `dir` find the same parent snapshot.
    let path_strings: Vec<String> = paths
        .iter()
        .map(|p| p.components().collect::<PathBuf>().display().to_string())
        .collect();
    let host = opts.host.clone().unwrap_or_else(crate::sys::hostname);
    let _lock = if opts.dry_run {
        None
    } else {
        Some(repo.lock(false, "backup")?)
    };
    // The parent first: its index was written before it, so the index loaded next covers it
    // even when another backup finishes in between.
    let parent = find_parent(repo, opts, &host, &path_strings)?;
    // Deduplicate only against live packs (nothing a prune marked); the parent's root may be
    // read from any copy (the readers' index is loaded only when the live one has none). With
    // a cache folder the live index is memory-mapped (repo-format.md §5). A write-only key
    // has the send log's index and trees instead (repo-format.md §2a).
    let (index, start_files) = if repo.is_write_only() {
        (repo.load_live_index()?, HashSet::new())
    } else {
        let (index, names) = repo.load_live_index_named()?;
        (index, names.into_iter().collect::<HashSet<String>>())
    };
    let parent_root = match &parent {
        Some((_, s)) => Some(
            repo.load_tree(&index, &s.tree)
                .or_else(|_| repo.load_tree(&repo.load_index()?, &s.tree))?,
        ),
        None => None,
    };
    crate::failpoint::hook("backup-after-index", Path::new(""));

    let plan = pass::Plan {
        repo,
        opts,
        progress,
        paths: &paths,
        patterns: &patterns,
        since_ns,
        time,
    };
    // Started only now, with the lock held and the parent found: a command that fails here
    // has cost nothing.
    let mut stream = match streaming {
        true => Some(sources::stream(opts)?),
        false => None,
    };
    let src = stream
        .as_mut()
        .map(|(s, _)| std::mem::replace(s, Box::new(std::io::empty())));
    let pass::Walked {
        root: root_id,
        names: names_id,
        res: mut walker,
        unmatched_excludes,
        stats,
    } = pass::walk(&plan, &index, parent_root, src, true)?;
    let mut decisions = std::mem::take(&mut walker.built);
    // Depth-first by name, as the snapshot's trees are ordered.
    decisions.sort_by(|a, b| Path::new(&a.path).cmp(Path::new(&b.path)));
    decisions.append(&mut walker.decisions);
    decisions.extend(walker.gone_swamps.drain(..).map(|path| SwampDecision {
        path,
        name: None,
        decision: Decision::Gone,
        reason: GONE.into(),
        bytes_read: 0,
    }));
    let mut catalogue = std::mem::take(&mut walker.catalogue);
    let file_errors = std::mem::take(&mut walker.read_errors);
    if let Some((_, child)) = stream {
        sources::finish_command(child, opts)?;
        if let Some(e) = file_errors.first() {
            return Err(Error::InvalidInput(format!(
                "reading {}: {}; no snapshot was written",
                e.path, e.error
            )));
        }
    }

    let mut summary = walker.summary;
    let parent_swamps = parent
        .as_ref()
        .and_then(|p| p.1.catalogue.as_ref())
        .map_or(0, |c| c.swamps);
    // Swamps of the parent not found, and those that vanished during this run.
    summary.swamps_gone += parent_swamps.saturating_sub(walker.parent_swamps_seen);
    let mut errors = walker.errors;
    errors.extend(missing);
    errors.extend(file_errors);
    let mut gone = walker.gone;
    let mut special = walker.special;
    special.sort_by(|a, b| a.path.cmp(&b.path));
    let mut quarantine: Vec<SwampDecision> = decisions
        .iter()
        .filter(|d| d.decision == Decision::Quarantined)
        .cloned()
        .collect();
    let (mut root_id, mut names_id) = (root_id, names_id);
    // Same tree as the parent: same files, same metadata, so a snapshot would add nothing.
    let unchanged =
        |root: Id| opts.skip_unchanged && parent.as_ref().is_some_and(|p| p.1.tree == root);
    let (mut packs_recovered, mut files_read_again, mut lost_gone) = (0, 0, Vec::new());
    if !opts.dry_run && !unchanged(root_id) {
        // The check before the snapshot (repo-format.md §9a 3); when a prune deleted data the
        // tree references, a further pass of the walk stores it again from the source.
        let (mut start, mut start_files, mut own) = (index, start_files, stats.index_ids);
        for walk_pass in 1.. {
            let check = match repo.is_write_only() {
                true => live::ensure_stored(repo, root_id, names_id)?,
                false => live::ensure_live(repo, &start, &start_files, &own, root_id, names_id)?,
            };
            packs_recovered += check.recovered;
            if check.blobs_lost == 0 {
                break;
            }
            if streaming || walk_pass == PASSES {
                return Err(Error::BackupLost(format!(
                    "{} blob(s) it uses are in no stored pack",
                    check.blobs_lost
                )));
            }
            tracing::warn!(
                blobs = check.blobs_lost,
                "a prune deleted data this backup uses: reading it again from the source"
            );
            let (ix, ix_files) = match repo.is_write_only() {
                true => (repo.load_live_index()?, Vec::new()),
                false => repo.load_live_index_named()?,
            };
            crate::failpoint::hook("backup-after-index", Path::new(""));
            // What the last pass stored is its parent; what it cannot reuse is read again.
            let prev = repo.load_tree(&ix, &root_id).or_else(|e| match &parent {
                Some((_, s)) => repo.load_tree(&ix, &s.tree),
                None => Err(e),
            });
            let again = pass::walk(&plan, &ix, prev.ok(), None, false)?;
            let present = live::present(repo, again.root, &check.lost)?;
            for (rel, here) in check.lost.iter().zip(present) {
                if !here {
                    let p = sources::display(&paths, rel).display().to_string();
                    summary.files_gone += 1;
                    gone.push(p.clone());
                    lost_gone.push(p);
                }
            }
            let mut res = again.res;
            files_read_again += res.summary.files_read;
            add_pass(&mut summary, &res.summary);
            let known: HashSet<String> = errors.iter().map(|e| e.path.clone()).collect();
            errors.extend(
                res.errors
                    .into_iter()
                    .chain(res.read_errors)
                    .filter(|e| !known.contains(&e.path)),
            );
            gone.append(&mut res.gone);
            let known: HashSet<String> = quarantine.iter().map(|d| d.path.clone()).collect();
            quarantine.extend(
                res.built
                    .into_iter()
                    .filter(|d| d.decision == Decision::Quarantined && !known.contains(&d.path)),
            );
            catalogue = res.catalogue;
            (root_id, names_id) = (again.root, again.names);
            (start, own) = (ix, again.stats.index_ids);
            start_files = ix_files.into_iter().collect();
        }
    }
    errors.sort_by(|a, b| a.path.cmp(&b.path));
    gone.sort();
    gone.dedup();
    quarantine.sort_by(|a, b| Path::new(&a.path).cmp(Path::new(&b.path)));
    summary.errors = errors.len() as u64;
    if opts.stdin || opts.stdin_from_command {
        // The stream's size is known only once it is read.
        summary.total_bytes = summary.bytes_read;
    }
    summary.duration_secs = started.elapsed().as_secs_f64();
    catalogue.quarantined = summary.swamps_quarantined;

    let snap = Snapshot {
        time: time.to_string(),
        host,
        user: crate::sys::username(),
        paths: path_strings,
        tags: opts.tags.clone(),
        excludes: patterns.iter().map(|p| p.text.clone()).collect(),
        parent: parent.as_ref().map(|p| p.0),
        tree: root_id,
        summary: summary.clone(),
        catalogue: (catalogue.swamps > 0).then_some(catalogue),
        names: names_id,
        original: None,
        program: format!("hydrabackup {}", env!("CARGO_PKG_VERSION")),
    };
    let snapshot_id = if opts.dry_run || unchanged(root_id) {
        None
    } else {
        crate::failpoint::hit("before-snapshot");
        let id = repo.save_object(FileKind::Snapshot, &snap)?;
        repo.record_write_only_snapshot(&id, &snap)?;
        Some(id)
    };
    Ok(BackupOutcome {
        snapshot_id,
        parent: snap.parent,
        summary,
        errors,
        gone,
        special,
        quarantine,
        decisions: if opts.dry_run { decisions } else { Vec::new() },
        unmatched_excludes,
        packs_recovered,
        work: walker.work,
        files_read_again,
        lost_gone,
    })
}
