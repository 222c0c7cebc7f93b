//! `backup`: walk the sources, reuse what the parent snapshot proves unchanged, read the rest
//! through a bounded pipeline (readers → chunk workers → pack writer), then store trees and one
//! snapshot.

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use rayon::prelude::*;
use serde::Serialize;

use crate::backend::FileKind;
use crate::chunker::{ChunkStream, Chunker};
use crate::ops::progress::Progress;
use crate::repo::Repository;
use crate::repo::blob::{BlobType, SealedBlob, seal_blob};
use crate::repo::config::HydChunking;
use crate::repo::index::Index;
use crate::repo::names::{self, NameEntry};
use crate::repo::snapshot::{CatalogueSummary, Snapshot, SnapshotSummary};
use crate::repo::tree::{Node, NodeKind, SwampInfo, Tree};
use crate::repo::writer::PackWriter;
use crate::source::dir::Dir;
use crate::source::hydraide::{Capture, ChunkSink, HydCapture, HydParent, capture};
use crate::source::open::type_name;
use crate::source::{Excludes, Identity, Trouble, node_from_metadata, open_checked, trouble};
use crate::{Error, Id, Result};

mod run;
pub use run::{Outcome, run};

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
}

/// What happened to one Swamp, for the decision log and the quarantine report.
#[derive(Debug, Clone, Serialize)]
pub struct SwampDecision {
    /// Path of the `.hyd` file or V1 folder.
    pub path: String,
    /// Swamp name, only with `show_names`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// new, unchanged, appended, rewritten or quarantined.
    pub decision: String,
    /// Why.
    pub reason: String,
    /// Bytes read from the source for it.
    pub bytes_read: u64,
}

/// Why a Swamp is in the decision log as gone.
const GONE: &str = "vanished during the backup (deleted or destroyed)";

/// A source file that could not be backed up.
#[derive(Debug, Clone, Serialize)]
pub struct SourceError {
    /// Path of the file.
    pub path: String,
    /// `unreadable`, or `changed` when it was replaced during the backup (a symlink, FIFO,
    /// device or other file swapped in between the walk and the open): it was not read.
    pub kind: String,
    /// What went wrong.
    pub error: String,
}

/// A FIFO, socket or device found by the walk: never opened, not backed up, reported.
#[derive(Debug, Clone, Serialize)]
pub struct SpecialFile {
    /// Path of the file.
    pub path: String,
    /// What it is: FIFO, socket, character device or block device.
    pub kind: String,
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

struct FileJob {
    idx: usize,
    /// The path it is opened by (through its folder's descriptor).
    path: PathBuf,
    /// The path reported.
    display: PathBuf,
    kind: JobKind,
    /// The file the walk saw (for plain files; a `.hyd` file may be compacted meanwhile).
    expect: Option<Identity>,
    /// Keeps the folder open until the file is read.
    _dir: Dir,
}

/// How a file is read.
enum JobKind {
    /// Whole, with the generic chunker.
    Plain,
    /// A `.hyd` file: consistent capture, incremental against the parent if possible.
    Hyd(Option<HydParent>),
    /// Bytes already read (members of a V1 Swamp folder, captured together).
    Bytes(Vec<u8>),
}

/// What a reader learned about one file.
#[derive(Default)]
struct FileDone {
    /// Chunks that make up the file: those numbered from `seq_base` on (lower numbers belong
    /// to an abandoned attempt).
    chunks: u32,
    seq_base: u32,
    /// Stored length.
    size: u64,
    /// Bytes read from the source.
    read: u64,
    /// Blob ids reused from the parent, inserted before the `reuse_at`-th kept chunk.
    reuse: Vec<Id>,
    reuse_at: u32,
    /// Swamp facts (for `.hyd` files).
    swamp: Option<SwampInfo>,
    /// A quarantined Swamp stored as its loadable prefix: its raw bytes, the `chunks` chunks
    /// numbered from `seq_base`, `size` bytes in all.
    raw: Option<RawDone>,
    error: Option<String>,
    /// The error is that the file was replaced during the backup.
    changed: bool,
    /// The file vanished before it could be read.
    gone: bool,
}

impl FileDone {
    /// Records a source error: a vanished file is gone, anything else an error.
    fn fail(&mut self, e: std::io::Error) {
        match trouble(&e) {
            Trouble::Gone => self.gone = true,
            t => {
                self.changed = t == Trouble::Changed;
                self.error = Some(e.to_string());
            }
        }
    }
}

/// Where the raw bytes of a quarantined Swamp went.
struct RawDone {
    seq_base: u32,
    chunks: u32,
    size: u64,
}

struct ChunkJob {
    file: usize,
    seq: u32,
    data: Vec<u8>,
}

enum Event {
    Chunk { file: usize, seq: u32, id: Id },
    FileDone { file: usize, done: Box<FileDone> },
}

/// A directory being assembled: nodes whose content may still be in the pipeline.
struct DirDraft {
    entries: Vec<Draft>,
}

struct Draft {
    node: Node,
    pending: Option<usize>,
    dir: Option<DirDraft>,
    /// Taken unread from the parent snapshot (its Swamp facts describe an earlier capture).
    unchanged: bool,
}

/// What every walker thread shares.
struct WalkCtx<'a> {
    repo: &'a Repository,
    index: &'a Index,
    excludes: Excludes,
    force: bool,
    since_ns: Option<i64>,
    files_tx: Sender<FileJob>,
    next_file: AtomicUsize,
    progress: &'a Progress,
}

/// What a walk found, without the shared parts.
#[derive(Default)]
struct WalkResult {
    /// Files queued for reading, by queue number.
    pending_paths: Vec<(usize, PathBuf)>,
    summary: SnapshotSummary,
    errors: Vec<SourceError>,
    gone: Vec<String>,
    /// V1 Swamp folders destroyed during the walk (for the decision log).
    gone_swamps: Vec<String>,
    special: Vec<SpecialFile>,
    /// Swamps of the parent matched by path (to count the ones gone).
    parent_swamps_seen: u64,
    /// Decision-log lines of files skipped on purpose (HydrAIDE's temporaries).
    decisions: Vec<SwampDecision>,
}

impl WalkResult {
    fn absorb(&mut self, other: WalkResult) {
        self.pending_paths.extend(other.pending_paths);
        self.summary += &other.summary;
        self.errors.extend(other.errors);
        self.gone.extend(other.gone);
        self.gone_swamps.extend(other.gone_swamps);
        self.special.extend(other.special);
        self.parent_swamps_seen += other.parent_swamps_seen;
        self.decisions.extend(other.decisions);
    }
}

/// Walks directories, in parallel across the entries of each directory (rayon), comparing with
/// the parent snapshot and queueing what must be read.
struct Walker<'a> {
    ctx: &'a WalkCtx<'a>,
    res: WalkResult,
}

/// Whether a node of the parent snapshot still describes the file as it is now.
fn unchanged(old: &Node, node: &Node) -> bool {
    old.size == node.size
        && old.mtime_ns == node.mtime_ns
        && old.ctime_ns == node.ctime_ns
        && old.inode == node.inode
}

/// Whether a `.hyd` file is untouched since the parent captured it although it is longer than
/// the stored copy: the capture left out fewer than a block header's worth of trailing bytes
/// (a partial block header, which HydrAIDE ignores), and times and inode are unchanged.
fn unchanged_hyd_prefix(old: &Node, node: &Node) -> bool {
    old.mtime_ns == node.mtime_ns
        && old.ctime_ns == node.ctime_ns
        && old.inode == node.inode
        && node.size > old.size
        && node.size - old.size < crate::hyd::BLOCK_HEADER_SIZE as u64
        && old.swamp.as_ref().is_some_and(|s| s.problem.is_none())
}

impl Walker<'_> {
    fn parent_subtree(&mut self, parent: Option<&Tree>, name: &[u8]) -> Option<Tree> {
        let id = parent?.find(name)?.subtree?;
        self.ctx.repo.load_tree(self.ctx.index, &id).ok()
    }

    fn error(&mut self, path: &Path, e: impl ToString) {
        self.res.errors.push(SourceError {
            path: path.display().to_string(),
            kind: "unreadable".into(),
            error: e.to_string(),
        });
    }

    /// Records an error met while walking: a file or folder that vanished is gone, not an
    /// error (HydrAIDE deletes a destroyed Swamp's file and then its empty folders).
    fn trouble(&mut self, path: &Path, e: std::io::Error) {
        match trouble(&e) {
            Trouble::Gone => self.gone(path),
            Trouble::Changed => self.res.errors.push(SourceError {
                path: path.display().to_string(),
                kind: "changed".into(),
                error: e.to_string(),
            }),
            Trouble::Unreadable => self.error(path, e),
        }
    }

    fn gone(&mut self, path: &Path) {
        self.res.summary.files_gone += 1;
        self.res.gone.push(path.display().to_string());
    }

    fn all_indexed(&self, content: &[Id]) -> bool {
        content
            .iter()
            .all(|id| self.ctx.index.contains(BlobType::Data, id))
    }

    /// Queues the entry `name` of `dir` (reported as `path`) for reading.
    fn queue(
        &mut self,
        dir: &Dir,
        name: &[u8],
        path: &Path,
        size: u64,
        kind: JobKind,
        expect: Option<Identity>,
    ) -> usize {
        let idx = self.ctx.next_file.fetch_add(1, Ordering::Relaxed);
        self.res.pending_paths.push((idx, path.to_path_buf()));
        self.ctx.progress.total(1, size);
        // A send fails only when every reader has stopped (writer failure); the file then stays
        // pending and the run reports the writer's error.
        let _ = self.ctx.files_tx.send(FileJob {
            idx,
            path: dir.entry(name),
            display: path.to_path_buf(),
            kind,
            expect,
            _dir: dir.clone(),
        });
        idx
    }

    /// The entry `name` of `dir`, reported as `path`.
    fn entry(
        &mut self,
        dir: &Dir,
        path: &Path,
        name: &[u8],
        parent: Option<&Tree>,
    ) -> Option<Draft> {
        if self.ctx.excludes.is_excluded(path) {
            return None;
        }
        crate::failpoint::hook("stat", path);
        let md = match std::fs::symlink_metadata(dir.entry(name)) {
            Ok(m) => m,
            Err(e) => {
                self.trouble(path, e);
                return None;
            }
        };
        let Some(mut node) = node_from_metadata(name, &md) else {
            // Never opened (a FIFO would block, a device could act on the open), but reported.
            self.res.summary.special_files += 1;
            self.res.special.push(SpecialFile {
                path: path.display().to_string(),
                kind: type_name(md.file_type()).into(),
            });
            return None;
        };
        let old = parent
            .and_then(|t| t.find(name))
            .filter(|o| o.kind == node.kind);
        match node.kind {
            NodeKind::Dir => {
                let sub = self.parent_subtree(parent, name);
                crate::failpoint::hook("list", path);
                let here = match dir.open_dir(name, Identity::of(&md)) {
                    Ok(d) => d,
                    Err(e) => {
                        self.trouble(path, e);
                        return None;
                    }
                };
                let names = self.list(&here, path)?;
                self.res.summary.dirs += 1;
                // Only a folder with a `meta` entry can be a V1 Swamp: no extra stat elsewhere.
                let v1 = names.iter().any(|n| n == b"meta")
                    && matches!(crate::hyd::v1::detect_v1_swamp(here.path()), Ok(Some(_)));
                match v1 {
                    true => {
                        let (dir, info, unchanged) =
                            self.v1_swamp(&here, path, old, sub.as_ref())?;
                        node.swamp = Some(info);
                        Some(Draft {
                            node,
                            pending: None,
                            dir: Some(dir),
                            unchanged,
                        })
                    }
                    false => {
                        let dir = self.dir_of(&here, path, names, sub.as_ref());
                        Some(Draft {
                            node,
                            pending: None,
                            dir: Some(dir),
                            unchanged: false,
                        })
                    }
                }
            }
            NodeKind::Symlink => match std::fs::read_link(dir.entry(name)) {
                Ok(t) => {
                    node.target = Some(t.as_os_str().as_bytes().to_vec());
                    Some(Draft {
                        node,
                        pending: None,
                        dir: None,
                        unchanged: false,
                    })
                }
                Err(e) => {
                    self.trouble(path, e);
                    None
                }
            },
            NodeKind::File => {
                // Temporaries of HydrAIDE's compaction (renamed over the Swamp a moment later)
                // and of `hydraidectl`'s format migration (run with the server stopped).
                let temp = [
                    (
                        crate::hyd::COMPACT_SUFFIX,
                        "compaction output, renamed over the Swamp when done",
                    ),
                    (
                        crate::hyd::FMTMIGRATE_SUFFIX,
                        "hydraidectl format migration in progress",
                    ),
                ]
                .into_iter()
                .find(|(suffix, _)| {
                    name.strip_suffix(suffix.as_bytes())
                        .is_some_and(|n| n.ends_with(crate::hyd::HYD_SUFFIX.as_bytes()))
                });
                if let Some((_, why)) = temp {
                    self.res.decisions.push(SwampDecision {
                        path: path.display().to_string(),
                        name: None,
                        decision: "skipped".into(),
                        reason: format!("temporary file: {why}"),
                        bytes_read: 0,
                    });
                    return None;
                }
                let is_hyd = name.ends_with(b".hyd");
                self.res.summary.total_bytes += node.size;
                if is_hyd && old.is_some_and(|o| o.swamp.is_some()) {
                    self.res.parent_swamps_seen += 1;
                }
                // A Swamp quarantined last time is captured again: still broken, it is reported
                // again (never hidden behind "unchanged"); repaired, it gets a consistent copy.
                if let Some(o) = old
                    && !self.ctx.force
                    && self.all_indexed(&o.content)
                    && o.swamp.as_ref().is_none_or(|s| s.problem.is_none())
                    && (unchanged(o, &node)
                        || (is_hyd && unchanged_hyd_prefix(o, &node))
                        || (is_hyd && self.ctx.since_ns.is_some_and(|s| node.mtime_ns < s)))
                {
                    self.res.summary.files_unchanged += 1;
                    node.content = o.content.clone();
                    node.size = o.size;
                    // The Swamp facts stay those of the capture that stored these bytes, so the
                    // tree is byte-identical to the parent's and deduplicates.
                    node.swamp = o.swamp.clone();
                    if is_hyd {
                        self.res.summary.swamps_unchanged += 1;
                    }
                    return Some(Draft {
                        node,
                        pending: None,
                        dir: None,
                        unchanged: true,
                    });
                }
                if old.is_some() {
                    self.res.summary.files_changed += 1;
                } else {
                    self.res.summary.files_new += 1;
                }
                let kind = if is_hyd {
                    let parent = old
                        .filter(|o| {
                            !self.ctx.force && o.swamp.is_some() && self.all_indexed(&o.content)
                        })
                        .map(|o| HydParent {
                            inode: o.inode,
                            size: o.size,
                            content: o.content.clone(),
                            swamp: o.swamp.clone().unwrap_or_default(),
                        });
                    JobKind::Hyd(parent)
                } else {
                    JobKind::Plain
                };
                let expect = Some(Identity::of(&md));
                let idx = self.queue(dir, name, path, node.size, kind, expect);
                Some(Draft {
                    node,
                    pending: Some(idx),
                    dir: None,
                    unchanged: false,
                })
            }
        }
    }

    /// The folder `dir`, reported as `path`.
    fn dir(&mut self, dir: &Dir, path: &Path, parent: Option<&Tree>) -> DirDraft {
        let names = self.list(dir, path).unwrap_or_default();
        self.dir_of(dir, path, names, parent)
    }

    /// The names in a directory, sorted; an unreadable directory is reported and empty, one
    /// that vanished is gone (`None`).
    fn list(&mut self, dir: &Dir, path: &Path) -> Option<Vec<Vec<u8>>> {
        let mut names: Vec<Vec<u8>> = match std::fs::read_dir(dir.path()) {
            Ok(rd) => rd
                .filter_map(|e| match e {
                    Ok(e) => Some(e.file_name().as_bytes().to_vec()),
                    Err(_) => None,
                })
                .collect(),
            Err(e) if trouble(&e) == Trouble::Gone => {
                self.gone(path);
                return None;
            }
            Err(e) => {
                self.trouble(path, e);
                Vec::new()
            }
        };
        if dir.vanished() {
            self.gone(path);
            return None;
        }
        names.sort();
        Some(names)
    }

    fn dir_of(
        &mut self,
        dir: &Dir,
        path: &Path,
        names: Vec<Vec<u8>>,
        parent: Option<&Tree>,
    ) -> DirDraft {
        // Entries are examined in parallel: stat calls and parent-tree loads overlap, and on a
        // data root of a thousand islands both cores walk.
        let ctx = self.ctx;
        let parts: Vec<(WalkResult, Vec<(usize, Draft)>)> = names
            .par_iter()
            .enumerate()
            .fold(
                || (WalkResult::default(), Vec::new()),
                |(res, mut drafts), (i, name)| {
                    let mut w = Walker { ctx, res };
                    let p = path.join(std::ffi::OsStr::from_bytes(name));
                    if let Some(d) = w.entry(dir, &p, name, parent) {
                        drafts.push((i, d));
                    }
                    (w.res, drafts)
                },
            )
            .collect();
        let mut entries = Vec::with_capacity(names.len());
        for (res, drafts) in parts {
            self.res.absorb(res);
            entries.extend(drafts);
        }
        entries.sort_unstable_by_key(|e| e.0);
        DirDraft {
            entries: entries.into_iter().map(|e| e.1).collect(),
        }
    }

    /// A V1 Swamp folder is captured as one unit: its files are read together and read again
    /// if any of them changed meanwhile, so `meta` and chunks come from the same moment. A
    /// folder that vanishes meanwhile (the Swamp was destroyed) is gone: `None`.
    fn v1_swamp(
        &mut self,
        dir: &Dir,
        path: &Path,
        old: Option<&Node>,
        parent: Option<&Tree>,
    ) -> Option<(DirDraft, SwampInfo, bool)> {
        if old.is_some_and(|o| o.swamp.is_some()) {
            self.res.parent_swamps_seen += 1;
        }
        let read = |name: &[u8], expect: Option<Identity>| -> std::io::Result<Vec<u8>> {
            crate::failpoint::hook("open", &path.join(std::ffi::OsStr::from_bytes(name)));
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut open_checked(&dir.entry(name), expect)?, &mut data)?;
            Ok(data)
        };
        let meta = read(crate::hyd::v1::META_FILE.as_bytes(), None)
            .ok()
            .and_then(|d| crate::hyd::gob::decode_meta(&d));
        let mut info = SwampInfo {
            name: meta.as_ref().map(|m| m.swamp_name.clone()),
            format: 1,
            created_ns: meta.as_ref().map_or(0, |m| m.created_at),
            modified_ns: meta.as_ref().map_or(0, |m| m.updated_at),
            ..SwampInfo::default()
        };
        // The regular files (what HydrAIDE writes there); anything else is left out, and
        // FIFOs, sockets and devices are reported once, below.
        let specials = std::cell::RefCell::new(Vec::new());
        let snapshot = |p: &Path| -> std::io::Result<Vec<(Vec<u8>, Node, Identity)>> {
            let mut v = Vec::new();
            specials.borrow_mut().clear();
            for e in std::fs::read_dir(p)? {
                let e = e?;
                let name = e.file_name().as_bytes().to_vec();
                let md = std::fs::symlink_metadata(e.path())?;
                match node_from_metadata(&name, &md) {
                    Some(n) if n.kind == NodeKind::File => v.push((name, n, Identity::of(&md))),
                    Some(_) => {}
                    None => specials.borrow_mut().push(SpecialFile {
                        path: path.join(e.file_name()).display().to_string(),
                        kind: type_name(md.file_type()).into(),
                    }),
                }
            }
            v.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(v)
        };
        let first = snapshot(dir.path());
        let found = specials.take();
        self.res.summary.special_files += found.len() as u64;
        self.res.special.extend(found);
        let first = match first {
            _ if dir.vanished() => {
                self.gone_swamp(path);
                return None;
            }
            Err(e) if trouble(&e) == Trouble::Gone => {
                self.gone_swamp(path);
                return None;
            }
            r => r,
        };
        let same = |a: &[(Vec<u8>, Node, Identity)], b: &[(Vec<u8>, Node, Identity)]| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(x, y)| x.0 == y.0 && unchanged(&x.1, &y.1))
        };
        // Everything as in the parent: reuse without reading.
        if let (Ok(before), Some(pt), false) = (first, parent, self.ctx.force)
            && before.len() == pt.nodes.iter().filter(|n| n.kind == NodeKind::File).count()
            && before.iter().all(|(name, n, _)| {
                pt.find(name).is_some_and(|o| {
                    o.kind == NodeKind::File && unchanged(o, n) && self.all_indexed(&o.content)
                })
            })
        {
            self.res.summary.swamps_unchanged += 1;
            if let Some(prev) = old.and_then(|o| o.swamp.clone()) {
                info = prev;
            }
            let mut entries = Vec::new();
            for (name, mut n, _) in before {
                let o = pt.find(&name).expect("checked above");
                n.content = o.content.clone();
                self.res.summary.files_unchanged += 1;
                self.res.summary.total_bytes += n.size;
                entries.push(Draft {
                    node: n,
                    pending: None,
                    dir: None,
                    unchanged: false,
                });
            }
            return Some((DirDraft { entries }, info, true));
        }
        let mut captured = None;
        for attempt in 0..4u32 {
            if attempt > 0 {
                std::thread::sleep(std::time::Duration::from_millis(20 << attempt));
            }
            let before = match snapshot(dir.path()) {
                _ if dir.vanished() => {
                    self.gone_swamp(path);
                    return None;
                }
                Ok(b) => b,
                Err(e) if trouble(&e) == Trouble::Gone => {
                    self.gone_swamp(path);
                    return None;
                }
                Err(_) => continue,
            };
            let mut datas = Vec::new();
            for (name, _, id) in &before {
                match read(name, Some(*id)) {
                    Ok(d) => datas.push(d),
                    Err(_) => break,
                }
                crate::failpoint::hook("v1-mid-read", path);
            }
            if datas.len() == before.len()
                && snapshot(dir.path()).is_ok_and(|after| same(&before, &after))
            {
                captured = Some((before, datas));
                break;
            }
        }
        info.decision = if old.is_some() { "rewritten" } else { "new" }.into();
        let Some((nodes, datas)) = captured else {
            // Kept changing: fall back to reading each file on its own, and say so.
            info.decision = "quarantined".into();
            info.problem = Some("V1 Swamp folder kept changing while it was read".into());
            self.res.summary.swamps_quarantined += 1;
            self.error(
                path,
                "V1 Swamp folder kept changing while it was read; files stored one by one",
            );
            return Some((self.dir(dir, path, parent), info, false));
        };
        if old.is_some() {
            self.res.summary.swamps_rewritten += 1;
        } else {
            self.res.summary.swamps_new += 1;
        }
        let mut entries = Vec::new();
        for ((name, n, _), data) in nodes.into_iter().zip(datas) {
            let p = path.join(std::ffi::OsStr::from_bytes(&name));
            self.res.summary.total_bytes += n.size;
            if parent.and_then(|t| t.find(&name)).is_some() {
                self.res.summary.files_changed += 1;
            } else {
                self.res.summary.files_new += 1;
            }
            let idx = self.queue(dir, &name, &p, n.size, JobKind::Bytes(data), None);
            entries.push(Draft {
                node: n,
                pending: Some(idx),
                dir: None,
                unchanged: false,
            });
        }
        Some((DirDraft { entries }, info, false))
    }

    /// A V1 Swamp folder destroyed during the walk (counted with the parent's Swamps not seen).
    fn gone_swamp(&mut self, path: &Path) {
        self.gone(path);
        self.res.summary.swamps_gone += 1;
        self.res.gone_swamps.push(path.display().to_string());
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
                self.bytes_added
                    .fetch_add(job.data.len() as u64, Ordering::Relaxed);
                self.bytes_stored
                    .fetch_add(b.sealed.len() as u64, Ordering::Relaxed);
                if blobs.send(b).is_err() {
                    return;
                }
            }
            let _ = events.send(Event::Chunk {
                file: job.file,
                seq: job.seq,
                id,
            });
        }
    }
}

/// One reader thread's tools.
struct Reader<'a> {
    chunker: &'a Chunker,
    hyd: HydChunking,
    buf: Vec<u8>,
    chunks: Sender<ChunkJob>,
    progress: &'a Progress,
}

/// Sends one file's chunks to the workers, numbering them; an attempt that starts over gets a
/// fresh range of numbers, with the first one kept for the header blob.
struct FileSink<'r> {
    chunks: &'r Sender<ChunkJob>,
    progress: &'r Progress,
    file: usize,
    next: u32,
    base: u32,
}

impl FileSink<'_> {
    fn send(&mut self, seq: u32, data: Vec<u8>) -> bool {
        self.progress.done(0, data.len() as u64);
        self.chunks
            .send(ChunkJob {
                file: self.file,
                seq,
                data,
            })
            .is_ok()
    }
}

impl ChunkSink for FileSink<'_> {
    fn restart(&mut self) {
        self.base = self.next;
        self.next += 1;
    }

    fn chunk(&mut self, data: Vec<u8>) -> bool {
        let seq = self.next;
        self.next += 1;
        self.send(seq, data)
    }
}

impl Reader<'_> {
    fn read(&mut self, job: FileJob) -> FileDone {
        crate::failpoint::hook("open", &job.display);
        let mut done = FileDone::default();
        match job.kind {
            JobKind::Plain => self.read_plain(job.idx, &job.path, job.expect, 0, &mut done),
            JobKind::Bytes(data) => {
                let mut sink = self.sink(job.idx);
                let mut pos = 0;
                done.size = data.len() as u64;
                done.read = data.len() as u64;
                for n in self.chunker.cut_all(&data) {
                    if !sink.chunk(data[pos..pos + n].to_vec()) {
                        done.error = Some("backup aborted".into());
                        break;
                    }
                    pos += n;
                }
                done.chunks = sink.next;
            }
            JobKind::Hyd(parent) => {
                let (chunks, progress) = (self.chunks.clone(), self.progress);
                let mut sink = FileSink {
                    chunks: &chunks,
                    progress,
                    file: job.idx,
                    next: 0,
                    base: 0,
                };
                match capture(&job.path, parent.as_ref(), &self.hyd, &mut sink) {
                    Ok(Capture::Captured(c)) => {
                        done.read = c.bytes_read;
                        Self::captured(&mut sink, c, &mut done);
                    }
                    Ok(Capture::Quarantine {
                        reason,
                        mut swamp,
                        prefix,
                    }) => {
                        // Never lose data: store the bytes as they are, and report the file.
                        let first = sink.next;
                        let mut raw = FileDone::default();
                        self.read_plain(job.idx, &job.path, None, first, &mut raw);
                        swamp.decision = "quarantined".into();
                        swamp.problem = Some(reason);
                        swamp.tail = None;
                        match prefix {
                            // The loadable prefix is the Swamp; the raw bytes are kept beside it.
                            Some(c) if raw.error.is_none() && !raw.gone => {
                                done.read = c.bytes_read + raw.read;
                                Self::captured(&mut sink, *c, &mut done);
                                done.raw = Some(RawDone {
                                    seq_base: first,
                                    chunks: raw.chunks,
                                    size: raw.size,
                                });
                            }
                            _ => done = raw,
                        }
                        done.swamp = Some(swamp);
                    }
                    Err(e) => done.fail(e),
                }
            }
        }
        done
    }

    /// Records a consistent capture: the header blob (sent now, numbered first) and the chunks
    /// sent since the attempt began.
    fn captured(sink: &mut FileSink<'_>, c: HydCapture, done: &mut FileDone) {
        done.size = c.size;
        done.reuse = c.reuse;
        done.reuse_at = 1;
        done.swamp = Some(c.swamp);
        done.seq_base = sink.base;
        done.chunks = c.chunks + 1;
        let base = sink.base;
        if !sink.send(base, c.header_blob) {
            done.error = Some("backup aborted".into());
        }
    }

    fn sink(&self, file: usize) -> FileSink<'_> {
        FileSink {
            chunks: &self.chunks,
            progress: self.progress,
            file,
            next: 0,
            base: 0,
        }
    }

    /// Reads a whole file with the generic chunker, numbering chunks from `first`; the file
    /// must be the one the walk saw (`expect`).
    fn read_plain(
        &mut self,
        file: usize,
        path: &Path,
        expect: Option<Identity>,
        first: u32,
        done: &mut FileDone,
    ) {
        done.seq_base = first;
        let f = match open_checked(path, expect) {
            Ok(f) => f,
            Err(e) => return done.fail(e),
        };
        let mut stream = ChunkStream::new(self.chunker, f, &mut self.buf);
        let mut seq = first;
        loop {
            match stream.next_chunk() {
                Ok(Some(c)) => {
                    done.size += c.len() as u64;
                    self.progress.done(0, c.len() as u64);
                    let cj = ChunkJob {
                        file,
                        seq,
                        data: c.to_vec(),
                    };
                    seq += 1;
                    if self.chunks.send(cj).is_err() {
                        done.error = Some("backup aborted".into());
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    done.error = Some(e.to_string());
                    break;
                }
            }
        }
        done.chunks = seq - first;
        done.read = done.size;
    }
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

    let (root, mut walker, queued) = std::thread::scope(|s| {
        for _ in 0..2 {
            let (rx, tx, ev) = (files_rx.clone(), chunks_tx.clone(), events_tx.clone());
            let (chunker, writer, files_read) = (&chunker, &writer, &files_read);
            s.spawn(move || {
                let mut reader = Reader {
                    chunker,
                    hyd,
                    buf: Vec::new(),
                    chunks: tx,
                    progress,
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
            progress,
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
        decision: "gone".into(),
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
        .filter(|d| d.decision == "quarantined")
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

struct TreeBuilder<'a> {
    repo: &'a Repository,
    index: &'a Index,
    sender: Sender<SealedBlob>,
    contents: HashMap<usize, Vec<(u32, Id)>>,
    done: HashMap<usize, FileDone>,
    seen: HashSet<Id>,
    added: u64,
    errors: Vec<SourceError>,
    gone: Vec<String>,
    paths: &'a [PathBuf],
    summary: &'a mut SnapshotSummary,
    catalogue: CatalogueSummary,
    decisions: Vec<SwampDecision>,
    show_names: bool,
    base: PathBuf,
    names: Vec<NameEntry>,
}

impl TreeBuilder<'_> {
    fn note_swamp(&mut self, rel: &Path, info: &SwampInfo, unchanged: bool, read: u64) {
        if let Some(name) = &info.name {
            self.names.push(NameEntry {
                name: name.clone(),
                path: rel.as_os_str().as_bytes().to_vec(),
            });
        }
        let c = &mut self.catalogue;
        c.swamps += 1;
        c.entries += info.entries;
        if info.created_ns != 0 {
            c.oldest_ns = Some(
                c.oldest_ns
                    .map_or(info.created_ns, |o| o.min(info.created_ns)),
            );
        }
        if info.modified_ns != 0 {
            c.newest_ns = Some(
                c.newest_ns
                    .map_or(info.modified_ns, |o| o.max(info.modified_ns)),
            );
        }
        let decision = if unchanged {
            "unchanged"
        } else {
            info.decision.as_str()
        };
        let reason = match decision {
            "unchanged" => "size, times and inode as in the parent snapshot",
            "appended" => "same file, grown: read from where the parent's capture ended",
            "rewritten" => "replaced or compacted since the parent snapshot: read whole",
            "new" => "not in the parent snapshot",
            _ => info
                .problem
                .as_deref()
                .unwrap_or("no consistent copy could be made"),
        };
        let path = self.base.join(rel).display().to_string();
        // Swamp names only with --show-names: they are the user's data.
        let name = if self.show_names {
            info.name.as_deref()
        } else {
            None
        };
        tracing::info_span!("swamp", path = %path, name).in_scope(|| {
            tracing::info!(decision, bytes_read = read, "captured");
        });
        self.decisions.push(SwampDecision {
            path,
            name: name.map(str::to_string),
            decision: decision.to_string(),
            reason: reason.to_string(),
            bytes_read: read,
        });
    }

    fn store(&mut self, dir: DirDraft, prefix: &Path) -> Result<Id> {
        let mut tree = Tree::default();
        for d in dir.entries {
            let mut node = d.node;
            let rel = prefix.join(std::ffi::OsStr::from_bytes(&node.name));
            let mut read = 0;
            if let Some(sub) = d.dir {
                // A V1 Swamp folder's bytes read are those of its files.
                let before = self.summary.bytes_read;
                node.subtree = Some(self.store(sub, &rel)?);
                read = self.summary.bytes_read - before;
            }
            if let Some(idx) = d.pending {
                let path = || self.paths[idx].display().to_string();
                let done = self.done.remove(&idx).unwrap_or_else(|| FileDone {
                    error: Some("not read (backup aborted)".into()),
                    ..FileDone::default()
                });
                self.summary.bytes_read += done.read;
                read = done.read;
                let mut all = self.contents.remove(&idx).unwrap_or_default();
                all.sort_unstable_by_key(|c| c.0);
                if done.gone {
                    // Deleted between the walk and the read (a destroyed Swamp): not stored, not
                    // an error.
                    self.summary.files_gone += 1;
                    self.gone.push(path());
                    if node.name.ends_with(b".hyd") {
                        self.summary.swamps_gone += 1;
                        self.decisions.push(SwampDecision {
                            path: self.base.join(&rel).display().to_string(),
                            name: None,
                            decision: "gone".into(),
                            reason: GONE.into(),
                            bytes_read: done.read,
                        });
                    }
                    continue;
                }
                // Chunks of an abandoned attempt were stored but are not part of the file.
                let range = |first: u32, n: u32| -> Vec<(u32, Id)> {
                    let end = first.saturating_add(n);
                    all.iter()
                        .filter(|c| (first..end).contains(&c.0))
                        .copied()
                        .collect()
                };
                let ids = range(done.seq_base, done.chunks);
                let raw = done
                    .raw
                    .as_ref()
                    .map(|r| (range(r.seq_base, r.chunks), r.chunks, r.size));
                let lost = ids.len() != done.chunks as usize
                    || raw.as_ref().is_some_and(|r| r.0.len() != r.1 as usize);
                let error = done
                    .error
                    .or_else(|| lost.then(|| "chunks lost in the pipeline".to_string()));
                if let Some(e) = error {
                    if node.name.ends_with(b".hyd") {
                        // Nothing could be read, so nothing is stored, but the Swamp is reported
                        // with the others that could not be captured.
                        self.summary.swamps_quarantined += 1;
                        let what = if done.changed { "" } else { "unreadable, " };
                        self.decisions.push(SwampDecision {
                            path: self.base.join(&rel).display().to_string(),
                            name: None,
                            decision: "quarantined".into(),
                            reason: format!("{what}not stored: {e}"),
                            bytes_read: done.read,
                        });
                    }
                    self.errors.push(SourceError {
                        path: path(),
                        kind: if done.changed {
                            "changed"
                        } else {
                            "unreadable"
                        }
                        .into(),
                        error: e,
                    });
                    continue;
                }
                let mut content: Vec<Id> = Vec::with_capacity(ids.len() + done.reuse.len());
                let at = (done.reuse_at as usize).min(ids.len());
                content.extend(ids[..at].iter().map(|c| c.1));
                content.extend(done.reuse);
                content.extend(ids[at..].iter().map(|c| c.1));
                node.size = done.size;
                node.content = content;
                if let Some(mut info) = done.swamp {
                    if let Some((ids, _, size)) = raw {
                        info.raw = ids.into_iter().map(|c| c.1).collect();
                        info.raw_size = size;
                    }
                    match info.decision.as_str() {
                        "appended" => self.summary.swamps_appended += 1,
                        "rewritten" => self.summary.swamps_rewritten += 1,
                        "new" => self.summary.swamps_new += 1,
                        _ => {
                            self.summary.swamps_quarantined += 1;
                            self.errors.push(SourceError {
                                path: path(),
                                kind: "unreadable".into(),
                                error: format!(
                                    "quarantined: {}",
                                    info.problem.as_deref().unwrap_or("unknown problem")
                                ),
                            });
                        }
                    }
                    node.swamp = Some(info);
                }
            }
            if let Some(info) = node.swamp.clone() {
                self.note_swamp(&rel, &info, d.unchanged, read);
            }
            tree.nodes.push(node);
        }
        self.store_blob(tree.encode())
    }

    /// Stores the name index of the Swamps noted so far (none when there are none).
    fn store_names(&mut self) -> Result<Option<Id>> {
        let pages = names::paginate(std::mem::take(&mut self.names));
        if pages.is_empty() {
            return Ok(None);
        }
        let mut root = names::NameIndex::default();
        for p in pages {
            let id = self.store_blob(p.encode())?;
            root.pages.extend(p.reference(id));
        }
        self.store_blob(root.encode()).map(Some)
    }

    /// Stores a tree blob unless the repository (or this run) has it already.
    fn store_blob(&mut self, bytes: Vec<u8>) -> Result<Id> {
        let id = self.repo.keys().blob_id(&bytes);
        if !self.index.contains(BlobType::Tree, &id) && self.seen.insert(id) {
            self.added += 1;
            let b = seal_blob(
                self.repo.keys(),
                BlobType::Tree,
                id,
                &bytes,
                self.repo.config().compression.max(1),
            );
            self.sender
                .send(b)
                .map_err(|_| Error::Internal("pack writer stopped".into()))?;
        }
        Ok(id)
    }
}
