//! One pass of the backup's walk: walk the sources against an index and a parent tree, read
//! what cannot be reused through the bounded pipeline (readers → chunk workers → pack writer),
//! store the trees and the name index. A backup makes one pass; a second one only when a prune
//! deleted data the first relied on (repo-format.md §9a).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crossbeam_channel::bounded;

use super::{BackupOptions, count_sources, stream_node, walk_sources};
use crate::chunker::Chunker;
use crate::logical::capture::{LogicalCtx, group_seed};
use crate::ops::progress::Progress;
use crate::pattern::{PathPatterns, Pattern};
use crate::repo::Repository;
use crate::repo::index::Index;
use crate::repo::tree::Tree;
use crate::repo::writer::{PackWriter, WriterStats};
use crate::source::pipeline::{ChunkJob, Reader, Results, Workers};
use crate::source::walk::{Draft, FileJob, WalkCtx, WalkResult, Walker};
use crate::{Error, Id, Result};

/// What every pass of one backup shares.
pub(super) struct Plan<'a> {
    pub(super) repo: &'a Repository,
    pub(super) opts: &'a BackupOptions,
    pub(super) progress: &'a Progress,
    /// The sources, as resolved.
    pub(super) paths: &'a [PathBuf],
    pub(super) patterns: &'a [Pattern],
    pub(super) since_ns: Option<i64>,
    /// The snapshot's time (a stream's file node carries it).
    pub(super) time: jiff::Timestamp,
}

/// What one pass stored and found.
pub(super) struct Walked {
    /// The root tree.
    pub(super) root: Id,
    /// The name index, if any Swamp was found.
    pub(super) names: Option<Id>,
    /// What the walk found (its summary's file and byte counters filled in).
    pub(super) res: WalkResult,
    /// Exclude patterns that matched nothing.
    pub(super) unmatched_excludes: Vec<String>,
    /// The packs and index files written.
    pub(super) stats: WriterStats,
}

/// Walks the sources once against `index` (reuse from `parent` and deduplicate only against
/// what it lists) and stores what is new; `stream` is the standard input or command output of
/// a stream backup. `first` is the backup's first pass: it alone counts the sources ahead
/// (`progress.count_first`) and honours `--force` (a later pass reuses what the first read).
pub(super) fn walk(
    plan: &Plan<'_>,
    index: &Index,
    parent: Option<Tree>,
    stream: Option<Box<dyn std::io::Read + Send>>,
    first: bool,
) -> Result<Walked> {
    let (repo, opts, progress, paths) = (plan.repo, plan.opts, plan.progress, plan.paths);
    let excludes = PathPatterns::new(plan.patterns, "exclude")?;
    let count_first = first && progress.count_first;
    let chunker = Chunker::new(&repo.config().chunker);
    let hyd = repo.config().hyd_chunker;
    // The worker pool's size: one per core, or `--threads`.
    let cores = rayon::current_num_threads();
    let writer = PackWriter::new(repo, 2, opts.dry_run);
    let workers = Workers {
        repo,
        index,
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
            .num_threads(super::WALKERS.max(2 * cores))
            .thread_name(|i| format!("walk-{i}"))
    };
    let pool = walkers()
        .stack_size(super::WALK_STACK)
        .build()
        .or_else(|_| walkers().build())
        .map_err(|e| Error::Internal(format!("walker threads: {e}")))?;

    // With the totals counted up front, the walk only marks files taken unread as done; when it
    // is through, its own counts (exact) replace the estimate.
    let (walk_items, walk_bytes) = (AtomicU64::new(0), AtomicU64::new(0));
    let tally_walk = |items, bytes| {
        walk_items.fetch_add(items, Ordering::Relaxed);
        walk_bytes.fetch_add(bytes, Ordering::Relaxed);
        if !count_first {
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
    let walked = AtomicBool::new(false);
    let ((root, names), mut res, tree_added, fatal, unmatched_excludes) =
        std::thread::scope(|s| {
            if count_first && stream.is_none() {
                let walked = &walked;
                s.spawn(move || count_sources(paths, plan.patterns, progress, walked));
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
                index,
                excludes,
                exclude_caches: opts.exclude_caches,
                devices: opts.one_file_system.then(|| {
                    paths
                        .iter()
                        .filter_map(|p| std::fs::metadata(p).ok())
                        .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
                        .collect()
                }),
                force: first && opts.force,
                since_ns: plan.since_ns,
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
                // Only the first pass of a walk of one folder with a parent can be restricted
                // (a later pass must reach whatever lost its data).
                restrict: opts
                    .restrict
                    .as_deref()
                    .filter(|_| first && parent.is_some() && stream.is_none() && paths.len() == 1),
            };
            let mut walker = Walker {
                ctx: &ctx,
                res: WalkResult::default(),
            };
            let root = if let Some(src) = stream {
                let node = stream_node(&opts.stdin_filename, plan.time);
                let entry = Draft {
                    display: Some(paths[0].clone()),
                    ..walker.stream(node, &paths[0], src)
                };
                walker.finish(Path::new(""), Path::new(""), vec![entry]).0
            } else {
                pool.install(|| walk_sources(&mut walker, paths, parent.as_ref()))?
            };
            drop(parent);
            walked.store(true, Ordering::Relaxed);
            if count_first {
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
    for e in &res.errors {
        progress.error(&e.path, &e.error);
    }
    let stats = writer.finish(opts.dry_run)?;
    if let Some(e) = fatal {
        return Err(e);
    }
    res.summary.files_read = files_read.load(Ordering::Relaxed);
    res.summary.data_blobs_added = workers.blobs_added.load(Ordering::Relaxed);
    res.summary.bytes_added = workers.bytes_added.load(Ordering::Relaxed);
    res.summary.bytes_stored = stats.pack_bytes;
    res.summary.tree_blobs_added = tree_added;
    Ok(Walked {
        root,
        names,
        res,
        unmatched_excludes,
        stats,
    })
}
