//! `backup`: walk the sources, reuse what the parent snapshot proves unchanged, read the rest
//! through a bounded pipeline (readers → chunk workers → pack writer), then store trees and one
//! snapshot.

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use crossbeam_channel::{bounded, unbounded};
use serde::Serialize;

use crate::backend::FileKind;
use crate::chunker::Chunker;
use crate::logical::capture::{LogicalCtx, group_seed};
use crate::ops::progress::Progress;
use crate::repo::Repository;
use crate::repo::snapshot::{CatalogueSummary, Snapshot, SnapshotSummary};
use crate::repo::tree::Decision;
use crate::repo::writer::PackWriter;
use crate::source::Excludes;
use crate::source::build::TreeBuilder;
use crate::source::dir::Dir;
use crate::source::pipeline::{ChunkJob, Event, FileDone, Reader, Workers};
use crate::source::report::GONE;
use crate::source::walk::{DirDraft, FileJob, WalkCtx, WalkResult, Walker};
use crate::{Error, Id, Result};

mod run;
pub use run::{Outcome, run};

pub use crate::source::report::{
    SourceError, SourceErrorKind, SpecialFile, SpecialKind, SwampDecision,
};

/// Options of one backup run.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BackupOptions {
    /// Files and directories to back up (a HydrAIDE data root, typically).
    #[arg(required_unless_present = "instance")]
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
    /// Skip paths matching this glob (repeatable); with a `/` it matches the whole path.
    #[arg(long = "exclude")]
    pub excludes: Vec<String>,
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
}

/// Resolves the parent snapshot for these options.
fn find_parent(
    repo: &Repository,
    opts: &BackupOptions,
    host: &str,
    paths: &[String],
) -> Result<Option<(Id, Snapshot)>> {
    if let Some(p) = &opts.parent {
        return repo.find_snapshot(p).map(Some);
    }
    if opts.force {
        return Ok(None);
    }
    Ok(repo
        .snapshots()?
        .into_iter()
        .rev()
        .find(|(_, s)| s.host == host && s.paths == paths))
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
    let mut sources = opts.paths.clone();
    if let Some(inst) = &opts.instance {
        sources.push(crate::source::instance_data_root(inst)?);
    }
    crate::source::dir::raise_open_file_limit();
    if sources.is_empty() {
        return Err(Error::InvalidInput(
            "nothing to back up: give at least one path".into(),
        ));
    }
    let mut paths = Vec::new();
    for p in &sources {
        let abs = std::path::absolute(p).map_err(|e| Error::io(p, e))?;
        std::fs::symlink_metadata(&abs).map_err(|e| Error::io(&abs, e))?;
        paths.push(abs);
    }
    paths.sort();
    paths.dedup();
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
    let index = repo.load_index()?;
    let parent_root = match &parent {
        Some((_, s)) => Some(repo.load_tree(&index, &s.tree)?),
        None => None,
    };

    let chunker = Chunker::new(&repo.config().chunker);
    let hyd = repo.config().hyd_chunker;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let writer = PackWriter::new(repo, 2, opts.dry_run);
    let workers = Workers {
        repo,
        index: &index,
        seen: Mutex::new(HashSet::new()),
        blobs_added: AtomicU64::new(0),
        bytes_added: AtomicU64::new(0),
        bytes_stored: AtomicU64::new(0),
    };
    let excludes = Excludes::new(&opts.excludes)?;
    let (files_tx, files_rx) = bounded::<FileJob>(1024);
    let (chunks_tx, chunks_rx) = bounded::<ChunkJob>(2 * cores);
    let (events_tx, events_rx) = unbounded::<Event>();
    let files_read = AtomicU64::new(0);

    let (read, found) = (
        |items, bytes| progress.done(items, bytes),
        |items, bytes| progress.total(items, bytes),
    );
    let mode = opts.mode.or(repo.config().backup_mode).unwrap_or_default();
    let logical = (mode != crate::logical::BackupMode::File).then(|| LogicalCtx {
        mode,
        keys: repo.keys(),
        seed: group_seed(repo.config().hyd_chunker.seed),
    });
    let (root, mut walker, queued) = std::thread::scope(|s| {
        for _ in 0..2 {
            let (rx, tx, ev) = (files_rx.clone(), chunks_tx.clone(), events_tx.clone());
            let (chunker, writer, files_read, read) = (&chunker, &writer, &files_read, &read);
            s.spawn(move || {
                let mut reader = Reader {
                    chunker,
                    hyd,
                    buf: Vec::new(),
                    chunks: tx,
                    progress: read,
                    logical,
                };
                for job in rx.iter() {
                    if writer.failed() {
                        break;
                    }
                    let file = job.idx;
                    let done = reader.read(job);
                    files_read.fetch_add(1, Ordering::Relaxed);
                    progress.done(1, 0);
                    let _ = ev.send(Event::FileDone {
                        file,
                        done: Box::new(done),
                    });
                }
            });
        }
        for _ in 0..cores {
            let (rx, ev, bl) = (chunks_rx.clone(), events_tx.clone(), writer.sender());
            let w = &workers;
            s.spawn(move || w.run(rx, ev, bl));
        }
        drop((chunks_tx, chunks_rx, events_tx, files_rx));
        let ctx = WalkCtx {
            repo,
            index: &index,
            excludes,
            force: opts.force,
            since_ns,
            files_tx,
            next_file: AtomicUsize::new(0),
            progress: &found,
        };
        let mut walker = Walker {
            ctx: &ctx,
            res: WalkResult::default(),
        };
        let root = if paths.len() == 1 && std::fs::metadata(&paths[0]).is_ok_and(|m| m.is_dir()) {
            match Dir::open(&paths[0]) {
                Ok(d) => walker.dir(&d, &paths[0], parent_root.as_ref()),
                Err(e) => {
                    walker.trouble(&paths[0], e);
                    DirDraft {
                        entries: Vec::new(),
                    }
                }
            }
        } else {
            let mut entries = Vec::new();
            let mut names = HashSet::new();
            for p in &paths {
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
                let d = match Dir::open(parent_dir) {
                    Ok(dir) => walker.entry(&dir, p, &name, parent_root.as_ref()),
                    Err(e) => {
                        walker.trouble(p, e);
                        None
                    }
                };
                entries.extend(d);
            }
            entries.sort_by(|a, b| a.node.name.cmp(&b.node.name));
            DirDraft { entries }
        };
        let res = walker.res;
        let queued = ctx.next_file.load(Ordering::Relaxed);
        // Dropping the context closes the file queue: readers, then workers, finish.
        drop(ctx);
        Ok((root, res, queued))
    })?;

    // Collect chunk ids per file.
    let mut contents: HashMap<usize, Vec<(u32, Id)>> = HashMap::new();
    let mut done: HashMap<usize, FileDone> = HashMap::new();
    for ev in events_rx.iter() {
        match ev {
            Event::Chunk { file, seq, id } => contents.entry(file).or_default().push((seq, id)),
            Event::FileDone { file, done: d } => {
                done.insert(file, *d);
            }
        }
    }
    walker.summary.files_read = files_read.load(Ordering::Relaxed);
    let mut queued_paths = vec![PathBuf::new(); queued];
    for (i, p) in std::mem::take(&mut walker.pending_paths) {
        queued_paths[i] = p;
    }
    let mut tb = TreeBuilder {
        repo,
        index: &index,
        sender: writer.sender(),
        contents,
        done,
        seen: HashSet::new(),
        added: 0,
        errors: Vec::new(),
        gone: Vec::new(),
        paths: &queued_paths,
        summary: &mut walker.summary,
        catalogue: CatalogueSummary::default(),
        decisions: Vec::new(),
        names: Vec::new(),
        show_names: opts.show_names,
        base: if paths.len() == 1 {
            paths[0].clone()
        } else {
            PathBuf::new()
        },
    };
    let root_id = tb.store(root, Path::new(""));
    let names_id = match &root_id {
        Ok(_) => tb.store_names(),
        Err(_) => Ok(None),
    };
    let (tree_added, file_errors, file_gone, mut catalogue, mut decisions) = (
        tb.added,
        std::mem::take(&mut tb.errors),
        std::mem::take(&mut tb.gone),
        std::mem::take(&mut tb.catalogue),
        std::mem::take(&mut tb.decisions),
    );
    decisions.append(&mut walker.decisions);
    drop(tb);
    decisions.extend(walker.gone_swamps.drain(..).map(|path| SwampDecision {
        path,
        name: None,
        decision: Decision::Gone,
        reason: GONE.into(),
        bytes_read: 0,
    }));
    let stats = writer.finish(opts.dry_run)?;
    let root_id = root_id?;
    let names_id = names_id?;

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
    errors.extend(file_errors);
    errors.sort_by(|a, b| a.path.cmp(&b.path));
    let mut gone = walker.gone;
    gone.extend(file_gone);
    gone.sort();
    let mut special = walker.special;
    special.sort_by(|a, b| a.path.cmp(&b.path));
    summary.errors = errors.len() as u64;
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
        excludes: opts.excludes.clone(),
        parent: parent.as_ref().map(|p| p.0),
        tree: root_id,
        summary: summary.clone(),
        catalogue: (catalogue.swamps > 0).then_some(catalogue),
        names: names_id,
        original: None,
        program: format!("hydrabackup {}", env!("CARGO_PKG_VERSION")),
    };
    let snapshot_id = if opts.dry_run {
        None
    } else {
        crate::failpoint::hit("before-snapshot");
        Some(repo.save_object(FileKind::Snapshot, &snap)?)
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
    })
}
