//! `backup`: walk the sources, reuse what the parent snapshot proves unchanged, read the rest
//! through a bounded pipeline (readers → chunk workers → pack writer), then store trees and one
//! snapshot.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use serde::Serialize;

use crate::backend::FileKind;
use crate::chunker::{ChunkStream, Chunker};
use crate::ops::progress::Progress;
use crate::repo::Repository;
use crate::repo::blob::{BlobType, SealedBlob, seal_blob};
use crate::repo::index::Index;
use crate::repo::snapshot::{Snapshot, SnapshotSummary};
use crate::repo::tree::{Node, NodeKind, Tree};
use crate::repo::writer::PackWriter;
use crate::source::{Excludes, node_from_metadata};
use crate::{Error, Id, Result};

/// Options of one backup run.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Paths to back up.
    pub paths: Vec<PathBuf>,
    /// Tags for the snapshot.
    pub tags: Vec<String>,
    /// Host name to record (default: this host).
    pub host: Option<String>,
    /// Exclude patterns.
    pub excludes: Vec<String>,
    /// Read and chunk but write nothing.
    pub dry_run: bool,
    /// Parent snapshot to compare with (default: latest with the same host and paths).
    pub parent: Option<String>,
    /// Re-read every file even if the parent says it is unchanged.
    pub force: bool,
}

/// A source file that could not be backed up.
#[derive(Debug, Clone, Serialize)]
pub struct SourceError {
    /// Path of the file.
    pub path: String,
    /// What went wrong.
    pub error: String,
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
}

struct FileJob {
    idx: usize,
    path: PathBuf,
}

struct ChunkJob {
    file: usize,
    seq: u32,
    data: Vec<u8>,
}

enum Event {
    Chunk { file: usize, seq: u32, id: Id },
    FileDone { file: usize, chunks: u32, size: u64, error: Option<String> },
}

/// A directory being assembled: nodes whose content may still be in the pipeline.
struct DirDraft {
    entries: Vec<Draft>,
}

struct Draft {
    node: Node,
    pending: Option<usize>,
    dir: Option<DirDraft>,
}

struct Walker<'a> {
    repo: &'a Repository,
    index: &'a Index,
    excludes: Excludes,
    force: bool,
    files_tx: Sender<FileJob>,
    next_file: usize,
    pending_paths: Vec<PathBuf>,
    summary: SnapshotSummary,
    errors: Vec<SourceError>,
    progress: &'a Progress,
}

impl Walker<'_> {
    fn parent_subtree(&mut self, parent: Option<&Tree>, name: &[u8]) -> Option<Tree> {
        let id = parent?.find(name)?.subtree?;
        self.repo.load_tree(self.index, &id).ok()
    }

    fn error(&mut self, path: &Path, e: impl ToString) {
        self.errors.push(SourceError {
            path: path.display().to_string(),
            error: e.to_string(),
        });
    }

    fn entry(&mut self, path: &Path, name: &[u8], parent: Option<&Tree>) -> Option<Draft> {
        if self.excludes.is_excluded(path) {
            return None;
        }
        let md = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) => {
                self.error(path, e);
                return None;
            }
        };
        let mut node = node_from_metadata(name, &md)?;
        match node.kind {
            NodeKind::Dir => {
                self.summary.dirs += 1;
                let sub = self.parent_subtree(parent, name);
                let dir = self.dir(path, sub.as_ref());
                Some(Draft { node, pending: None, dir: Some(dir) })
            }
            NodeKind::Symlink => match std::fs::read_link(path) {
                Ok(t) => {
                    node.target = Some(t.as_os_str().as_bytes().to_vec());
                    Some(Draft { node, pending: None, dir: None })
                }
                Err(e) => {
                    self.error(path, e);
                    None
                }
            },
            NodeKind::File => {
                let old = parent.and_then(|t| t.find(name)).filter(|o| o.kind == NodeKind::File);
                self.summary.total_bytes += node.size;
                if let Some(o) = old
                    && !self.force
                    && o.size == node.size
                    && o.mtime_ns == node.mtime_ns
                    && o.ctime_ns == node.ctime_ns
                    && o.inode == node.inode
                    && o.content.iter().all(|id| self.index.contains(BlobType::Data, id))
                {
                    self.summary.files_unchanged += 1;
                    node.content = o.content.clone();
                    return Some(Draft { node, pending: None, dir: None });
                }
                if old.is_some() {
                    self.summary.files_changed += 1;
                } else {
                    self.summary.files_new += 1;
                }
                let idx = self.next_file;
                self.next_file += 1;
                self.pending_paths.push(path.to_path_buf());
                self.progress.total(1, node.size);
                // A send fails only when every reader has stopped (writer failure); the file
                // then stays pending and the run reports the writer's error.
                let _ = self.files_tx.send(FileJob { idx, path: path.to_path_buf() });
                Some(Draft { node, pending: Some(idx), dir: None })
            }
        }
    }

    fn dir(&mut self, path: &Path, parent: Option<&Tree>) -> DirDraft {
        let mut names: Vec<Vec<u8>> = match std::fs::read_dir(path) {
            Ok(rd) => rd
                .filter_map(|e| match e {
                    Ok(e) => Some(e.file_name().as_bytes().to_vec()),
                    Err(_) => None,
                })
                .collect(),
            Err(e) => {
                self.error(path, e);
                Vec::new()
            }
        };
        names.sort();
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            let p = path.join(std::ffi::OsStr::from_bytes(&name));
            if let Some(d) = self.entry(&p, &name, parent) {
                entries.push(d);
            }
        }
        DirDraft { entries }
    }
}

/// Shared state of the chunk workers.
struct Workers<'a> {
    repo: &'a Repository,
    index: &'a Index,
    seen: Mutex<HashSet<Id>>,
    blobs_added: AtomicU64,
    bytes_added: AtomicU64,
    bytes_stored: AtomicU64,
}

impl Workers<'_> {
    fn run(&self, rx: Receiver<ChunkJob>, events: Sender<Event>, blobs: Sender<SealedBlob>) {
        let level = self.repo.config().compression;
        for job in rx.iter() {
            let id = self.repo.keys().blob_id(&job.data);
            let new = !self.index.contains(BlobType::Data, &id)
                && self.seen.lock().expect("dedup set").insert(id);
            if new {
                let b = seal_blob(self.repo.keys(), BlobType::Data, id, &job.data, level);
                self.blobs_added.fetch_add(1, Ordering::Relaxed);
                self.bytes_added.fetch_add(job.data.len() as u64, Ordering::Relaxed);
                self.bytes_stored.fetch_add(b.sealed.len() as u64, Ordering::Relaxed);
                if blobs.send(b).is_err() {
                    return;
                }
            }
            let _ = events.send(Event::Chunk { file: job.file, seq: job.seq, id });
        }
    }
}

fn read_file(
    job: &FileJob,
    chunker: &Chunker,
    buf: &mut Vec<u8>,
    chunks: &Sender<ChunkJob>,
    progress: &Progress,
) -> (u32, u64, Option<String>) {
    let f = match File::open(&job.path) {
        Ok(f) => f,
        Err(e) => return (0, 0, Some(e.to_string())),
    };
    let mut stream = ChunkStream::new(chunker, f, buf);
    let (mut seq, mut size) = (0u32, 0u64);
    loop {
        match stream.next_chunk() {
            Ok(Some(c)) => {
                size += c.len() as u64;
                progress.done(0, c.len() as u64);
                let job = ChunkJob { file: job.idx, seq, data: c.to_vec() };
                seq += 1;
                if chunks.send(job).is_err() {
                    return (seq, size, Some("backup aborted".into()));
                }
            }
            Ok(None) => return (seq, size, None),
            Err(e) => return (seq, size, Some(e.to_string())),
        }
    }
}

/// Resolves the parent snapshot for these options.
fn find_parent(repo: &Repository, opts: &BackupOptions, host: &str, paths: &[String]) -> Result<Option<(Id, Snapshot)>> {
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
pub fn backup(repo: &Repository, opts: &BackupOptions, progress: &Progress) -> Result<BackupOutcome> {
    let started = Instant::now();
    let time = jiff::Timestamp::now();
    if opts.paths.is_empty() {
        return Err(Error::InvalidInput("nothing to back up: give at least one path".into()));
    }
    let mut paths = Vec::new();
    for p in &opts.paths {
        let abs = std::path::absolute(p).map_err(|e| Error::io(p, e))?;
        std::fs::symlink_metadata(&abs).map_err(|e| Error::io(&abs, e))?;
        paths.push(abs);
    }
    paths.sort();
    paths.dedup();
    let path_strings: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let host = opts.host.clone().unwrap_or_else(crate::repo::hostname);
    let _lock = if opts.dry_run { None } else { Some(repo.lock(false, "backup")?) };
    let index = repo.load_index()?;
    let parent = find_parent(repo, opts, &host, &path_strings)?;
    let parent_root = match &parent {
        Some((_, s)) => Some(repo.load_tree(&index, &s.tree)?),
        None => None,
    };

    let chunker = Chunker::new(&repo.config().chunker);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let writer = PackWriter::new(repo, 2, opts.dry_run);
    let workers = Workers {
        repo,
        index: &index,
        seen: Mutex::new(HashSet::new()),
        blobs_added: AtomicU64::new(0),
        bytes_added: AtomicU64::new(0),
        bytes_stored: AtomicU64::new(0),
    };
    let (files_tx, files_rx) = bounded::<FileJob>(1024);
    let (chunks_tx, chunks_rx) = bounded::<ChunkJob>(4 * cores);
    let (events_tx, events_rx) = unbounded::<Event>();
    let files_read = AtomicU64::new(0);

    let (root, mut walker) = std::thread::scope(|s| {
        for _ in 0..2 {
            let (rx, tx, ev) = (files_rx.clone(), chunks_tx.clone(), events_tx.clone());
            let (chunker, progress, writer, files_read) = (&chunker, progress, &writer, &files_read);
            s.spawn(move || {
                let mut buf = Vec::new();
                for job in rx.iter() {
                    if writer.failed() {
                        break;
                    }
                    let (chunks, size, error) = read_file(&job, chunker, &mut buf, &tx, progress);
                    files_read.fetch_add(1, Ordering::Relaxed);
                    progress.done(1, 0);
                    let _ = ev.send(Event::FileDone { file: job.idx, chunks, size, error });
                }
            });
        }
        for _ in 0..cores {
            let (rx, ev, bl) = (chunks_rx.clone(), events_tx.clone(), writer.sender());
            let w = &workers;
            s.spawn(move || w.run(rx, ev, bl));
        }
        drop((chunks_tx, chunks_rx, events_tx, files_rx));
        let mut walker = Walker {
            repo,
            index: &index,
            excludes: match Excludes::new(&opts.excludes) {
                Ok(e) => e,
                Err(e) => return Err(e),
            },
            force: opts.force,
            files_tx,
            next_file: 0,
            pending_paths: Vec::new(),
            summary: SnapshotSummary::default(),
            errors: Vec::new(),
            progress,
        };
        let root = if paths.len() == 1 && std::fs::metadata(&paths[0]).is_ok_and(|m| m.is_dir()) {
            walker.dir(&paths[0], parent_root.as_ref())
        } else {
            let mut entries = Vec::new();
            let mut names = HashSet::new();
            for p in &paths {
                let name = p.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_else(|| b"root".to_vec());
                if !names.insert(name.clone()) {
                    return Err(Error::InvalidInput(format!(
                        "two paths share the name {:?}; back them up separately",
                        String::from_utf8_lossy(&name)
                    )));
                }
                if let Some(d) = walker.entry(p, &name, parent_root.as_ref()) {
                    entries.push(d);
                }
            }
            entries.sort_by(|a, b| a.node.name.cmp(&b.node.name));
            DirDraft { entries }
        };
        // Closing the file queue lets readers, then workers, finish.
        let (tx, _) = bounded(0);
        drop(std::mem::replace(&mut walker.files_tx, tx));
        Ok((root, walker))
    })?;

    // Collect chunk ids per file.
    let mut contents: HashMap<usize, Vec<(u32, Id)>> = HashMap::new();
    let mut done: HashMap<usize, (u32, u64, Option<String>)> = HashMap::new();
    for ev in events_rx.iter() {
        match ev {
            Event::Chunk { file, seq, id } => contents.entry(file).or_default().push((seq, id)),
            Event::FileDone { file, chunks, size, error } => {
                done.insert(file, (chunks, size, error));
            }
        }
    }
    walker.summary.files_read = files_read.load(Ordering::Relaxed);
    let mut tb = TreeBuilder {
        repo,
        index: &index,
        sender: writer.sender(),
        contents,
        done,
        seen: HashSet::new(),
        added: 0,
        errors: Vec::new(),
        paths: &walker.pending_paths,
        bytes_read: 0,
    };
    let root_id = tb.store(root);
    let (tree_added, file_errors, bytes_read) = (tb.added, std::mem::take(&mut tb.errors), tb.bytes_read);
    drop(tb);
    let stats = writer.finish(opts.dry_run)?;
    let root_id = root_id?;

    let mut summary = walker.summary;
    summary.bytes_read = bytes_read;
    summary.data_blobs_added = workers.blobs_added.load(Ordering::Relaxed);
    summary.bytes_added = workers.bytes_added.load(Ordering::Relaxed);
    summary.bytes_stored = stats.pack_bytes;
    summary.tree_blobs_added = tree_added;
    let mut errors = walker.errors;
    errors.extend(file_errors);
    summary.errors = errors.len() as u64;
    summary.duration_secs = started.elapsed().as_secs_f64();

    let snap = Snapshot {
        time: time.to_string(),
        host,
        user: crate::repo::username(),
        paths: path_strings,
        tags: opts.tags.clone(),
        excludes: opts.excludes.clone(),
        parent: parent.as_ref().map(|p| p.0),
        tree: root_id,
        summary: summary.clone(),
        catalogue: None,
        program: format!("hydrabackup {}", env!("CARGO_PKG_VERSION")),
    };
    let snapshot_id = if opts.dry_run {
        None
    } else {
        crate::failpoint::hit("before-snapshot");
        Some(repo.save_object(FileKind::Snapshot, &snap)?)
    };
    Ok(BackupOutcome { snapshot_id, parent: snap.parent, summary, errors })
}

struct TreeBuilder<'a> {
    repo: &'a Repository,
    index: &'a Index,
    sender: Sender<SealedBlob>,
    contents: HashMap<usize, Vec<(u32, Id)>>,
    done: HashMap<usize, (u32, u64, Option<String>)>,
    seen: HashSet<Id>,
    added: u64,
    errors: Vec<SourceError>,
    paths: &'a [PathBuf],
    bytes_read: u64,
}

impl TreeBuilder<'_> {
    fn store(&mut self, dir: DirDraft) -> Result<Id> {
        let mut tree = Tree::default();
        for d in dir.entries {
            let mut node = d.node;
            if let Some(sub) = d.dir {
                node.subtree = Some(self.store(sub)?);
            }
            if let Some(idx) = d.pending {
                let path = || self.paths[idx].display().to_string();
                let (chunks, size, error) = self.done.remove(&idx).unwrap_or((0, 0, Some("not read (backup aborted)".into())));
                self.bytes_read += size;
                let mut ids = self.contents.remove(&idx).unwrap_or_default();
                ids.sort_unstable_by_key(|c| c.0);
                let error = error.or_else(|| (ids.len() != chunks as usize).then(|| "chunks lost in the pipeline".to_string()));
                if let Some(e) = error {
                    self.errors.push(SourceError { path: path(), error: e });
                    continue;
                }
                node.size = size;
                node.content = ids.into_iter().map(|c| c.1).collect();
            }
            tree.nodes.push(node);
        }
        let bytes = tree.encode();
        let id = self.repo.keys().blob_id(&bytes);
        if !self.index.contains(BlobType::Tree, &id) && self.seen.insert(id) {
            self.added += 1;
            let b = seal_blob(self.repo.keys(), BlobType::Tree, id, &bytes, self.repo.config().compression.max(1));
            self.sender
                .send(b)
                .map_err(|_| Error::InvalidInput("pack writer stopped".into()))?;
        }
        Ok(id)
    }
}
