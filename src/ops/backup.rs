//! `backup`: walk the sources, reuse what the parent snapshot proves unchanged, read the rest
//! through a bounded pipeline (readers → chunk workers → pack writer), then store trees and one
//! snapshot.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use crossbeam_channel::bounded;
use serde::Serialize;

use crate::backend::FileKind;
use crate::chunker::Chunker;
use crate::logical::capture::{LogicalCtx, group_seed};
use crate::ops::progress::Progress;
use crate::pattern::{PathPatterns, Pattern};
use crate::repo::Repository;
use crate::repo::snapshot::{Snapshot, SnapshotSummary};
use crate::repo::tree::{Decision, Tree};
use crate::repo::writer::PackWriter;
use crate::source::dir::Dir;
use crate::source::pipeline::{ChunkJob, Reader, Results, Workers};
use crate::source::report::GONE;
use crate::source::walk::{Draft, FileJob, WalkCtx, WalkResult, Walker};
use crate::{Error, Id, Result};

mod live;
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
    /// `file`.
    #[arg(long, value_enum)]
    pub mode: Option<crate::logical::BackupMode>,
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
    let excludes = PathPatterns::new(&patterns, "exclude")?;
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

    let chunker = Chunker::new(&repo.config().chunker);
    let hyd = repo.config().hyd_chunker;
    // The worker pool's size: one per core, or `--threads`.
    let cores = rayon::current_num_threads();
    let writer = PackWriter::new(repo, 2, opts.dry_run);
    let workers = Workers {
        repo,
        index: &index,
        seen: Mutex::default(),
        blobs_added: AtomicU64::new(0),
        bytes_added: AtomicU64::new(0),
        bytes_stored: AtomicU64::new(0),
        level: opts
            .compression
            .map_or(repo.config().compression, |c| c.zstd_level()),
    };
    let (files_tx, files_rx) = bounded::<FileJob>(1024);
    let (chunks_tx, chunks_rx) = bounded::<ChunkJob>(2 * cores);
    let results = Results::default();
    let files_read = AtomicU64::new(0);
    // A walking thread waits at the end of each folder for its files to be read, so there are
    // more of them than cores: several folders are walked (and read) at once.
    // Folders are walked recursively: their stacks are `WALK_STACK`, or the usual size where
    // address space is short.
    let walkers = || {
        rayon::ThreadPoolBuilder::new()
            .num_threads(WALKERS.max(2 * cores))
            .thread_name(|i| format!("walk-{i}"))
    };
    let pool = walkers()
        .stack_size(WALK_STACK)
        .build()
        .or_else(|_| walkers().build())
        .map_err(|e| Error::Internal(format!("walker threads: {e}")))?;

    // With the totals counted up front, the walk only marks files taken unread as done; when it
    // is through, its own counts (exact) replace the estimate.
    let (walk_items, walk_bytes) = (AtomicU64::new(0), AtomicU64::new(0));
    let tally_walk = |items, bytes| {
        walk_items.fetch_add(items, Ordering::Relaxed);
        walk_bytes.fetch_add(bytes, Ordering::Relaxed);
        if !progress.count_first {
            progress.total(items, bytes)
        }
    };
    let (read, found, reused) = (
        |items, bytes| progress.done(items, bytes),
        |items, bytes| tally_walk(items, bytes),
        |items, bytes| {
            tally_walk(items, bytes);
            progress.done(items, bytes)
        },
    );
    let base = if paths.len() == 1 {
        paths[0].clone()
    } else {
        PathBuf::new()
    };
    let mode = opts.mode.or(repo.config().backup_mode).unwrap_or_default();
    let logical = (mode != crate::logical::BackupMode::File).then(|| LogicalCtx {
        mode,
        keys: repo.keys(),
        seed: group_seed(repo.config().hyd_chunker.seed),
    });
    // Started only now, with the lock held and the parent found: a command that fails here
    // has cost nothing.
    let mut stream = match streaming {
        true => Some(sources::stream(opts)?),
        false => None,
    };
    let walked = AtomicBool::new(false);
    let (root_id, mut walker, tree_added, fatal, unmatched_excludes) = std::thread::scope(|s| {
        if progress.count_first && !streaming {
            let (paths, patterns) = (&paths, &patterns);
            let walked = &walked;
            s.spawn(move || count_sources(paths, patterns, progress, walked));
        }
        for _ in 0..cores.min(2) {
            let (rx, tx, results) = (files_rx.clone(), chunks_tx.clone(), &results);
            let (chunker, writer, files_read, read) = (&chunker, &writer, &files_read, &read);
            s.spawn(move || {
                let mut reader = Reader {
                    chunker,
                    hyd,
                    buf: Vec::new(),
                    chunks: tx,
                    sent: Default::default(),
                    progress: read,
                    logical,
                };
                for job in rx.iter() {
                    if writer.failed() {
                        // No file queued from now on will be read.
                        results.close();
                        break;
                    }
                    let file = job.idx;
                    if opts.show_names {
                        progress.set_current(job.display.display());
                    }
                    let display = job.display.clone();
                    let done = reader.read(job);
                    files_read.fetch_add(1, Ordering::Relaxed);
                    // A grown Swamp is read from where its last capture ended: the bytes
                    // before count as done too.
                    progress.done(1, done.size.saturating_sub(done.read));
                    let quarantined = done.swamp.as_ref().and_then(|i| i.problem.as_ref());
                    match (&done.error, quarantined) {
                        (Some(e), _) if !done.gone => progress.error(display.display(), e),
                        (Some(_), _) => {}
                        (None, Some(p)) => {
                            progress.error(display.display(), format_args!("quarantined: {p}"))
                        }
                        (None, None) => progress.verbose("read", display.display(), done.read),
                    }
                    results.done(file, done);
                }
            });
        }
        for _ in 0..cores {
            let (rx, bl, results) = (chunks_rx.clone(), writer.sender(), &results);
            let w = &workers;
            s.spawn(move || w.run(rx, results, bl));
        }
        drop((chunks_tx, chunks_rx, files_rx));
        let ctx = WalkCtx {
            repo,
            index: &index,
            excludes,
            exclude_caches: opts.exclude_caches,
            devices: opts.one_file_system.then(|| {
                paths
                    .iter()
                    .filter_map(|p| std::fs::metadata(p).ok())
                    .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
                    .collect()
            }),
            force: opts.force,
            since_ns,
            files_tx,
            next_file: AtomicUsize::new(0),
            progress: &found,
            results: &results,
            trees: writer.sender(),
            trees_seen: Mutex::default(),
            names: Mutex::default(),
            fatal: Mutex::new(None),
            base,
            show_names: opts.show_names,
            all_decisions: opts.dry_run,
            note_trees: !opts.dry_run,
            reused: &reused,
        };
        let mut walker = Walker {
            ctx: &ctx,
            res: WalkResult::default(),
        };
        let root = if let Some((src, _)) = stream.as_mut() {
            let src = std::mem::replace(src, Box::new(std::io::empty()));
            let node = stream_node(&opts.stdin_filename, time);
            let entry = Draft {
                display: Some(paths[0].clone()),
                ..walker.stream(node, &paths[0], src)
            };
            walker.finish(Path::new(""), Path::new(""), vec![entry]).0
        } else {
            pool.install(|| walk_sources(&mut walker, &paths, parent_root.as_ref()))?
        };
        drop(parent_root);
        walked.store(true, Ordering::Relaxed);
        if progress.count_first {
            progress.set_total(
                walk_items.load(Ordering::Relaxed),
                walk_bytes.load(Ordering::Relaxed),
            );
        }
        let names_id = walker.store_names();
        let res = walker.res;
        let WalkCtx {
            trees_seen,
            fatal,
            excludes,
            ..
        } = ctx;
        // The context is gone: the file queue is closed, readers and then workers finish.
        let fatal = fatal.into_inner().expect("fatal");
        Ok::<_, Error>((
            (root, names_id),
            res,
            trees_seen.into_inner().expect("trees seen").1,
            fatal,
            excludes.unmatched(),
        ))
    })?;
    drop(pool);

    // What the walk could not read (the readers' failures were reported as they happened).
    for e in &walker.errors {
        progress.error(&e.path, &e.error);
    }
    walker.summary.files_read = files_read.load(Ordering::Relaxed);
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
    let stats = writer.finish(opts.dry_run)?;
    if let Some(e) = fatal {
        return Err(e);
    }
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
    let (root_id, names_id) = root_id;

    let mut summary = walker.summary;
    let parent_swamps = parent
        .as_ref()
        .and_then(|p| p.1.catalogue.as_ref())
        .map_or(0, |c| c.swamps);
    // Swamps of the parent not found, and those that vanished during this run.
    summary.swamps_gone += parent_swamps.saturating_sub(walker.parent_swamps_seen);
    summary.data_blobs_added = workers.blobs_added.load(Ordering::Relaxed);
    summary.bytes_added = workers.bytes_added.load(Ordering::Relaxed);
    summary.bytes_stored = stats.pack_bytes;
    summary.tree_blobs_added = tree_added;
    let mut errors = walker.errors;
    errors.extend(missing);
    errors.extend(file_errors);
    errors.sort_by(|a, b| a.path.cmp(&b.path));
    let mut gone = walker.gone;
    gone.sort();
    let mut special = walker.special;
    special.sort_by(|a, b| a.path.cmp(&b.path));
    summary.errors = errors.len() as u64;
    if opts.stdin || opts.stdin_from_command {
        // The stream's size is known only once it is read.
        summary.total_bytes = summary.bytes_read;
    }
    summary.duration_secs = started.elapsed().as_secs_f64();
    catalogue.quarantined = summary.swamps_quarantined;
    let quarantine: Vec<SwampDecision> = decisions
        .iter()
        .filter(|d| d.decision == Decision::Quarantined)
        .cloned()
        .collect();

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
    // Same tree as the parent: same files, same metadata, so a snapshot would add nothing.
    let unchanged = opts.skip_unchanged && parent.as_ref().is_some_and(|p| p.1.tree == root_id);
    let packs_recovered = if opts.dry_run || unchanged {
        0
    } else if repo.is_write_only() {
        live::ensure_stored(repo, root_id, names_id)?
    } else {
        live::ensure_live(
            repo,
            &index,
            &start_files,
            &stats.index_ids,
            root_id,
            names_id,
        )?
    };
    let snapshot_id = if opts.dry_run || unchanged {
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
    })
}
