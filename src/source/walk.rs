//! The backup's walk of the sources: folders in parallel, each entry compared with the parent
//! snapshot, what must be read queued for the readers. A folder's tree is built and stored as
//! soon as its entries are done, so the walk holds only the folders it is in.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirEntryExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::Sender;
use rayon::prelude::*;

use crate::pattern::PathPatterns;
use crate::repo::Repository;
use crate::repo::blob::{BlobType, SealedBlob};
use crate::repo::idset::IdSet;
use crate::repo::index::Index;
use crate::repo::names::NameList;
use crate::repo::snapshot::{CatalogueSummary, SnapshotSummary};
use crate::repo::tree::{Decision, Node, NodeKind, SwampInfo, Tree};
use crate::source::dir::Dir;
use crate::source::hydraide::HydParent;
use crate::source::pipeline::Results;
use crate::source::report::{
    SourceError, SourceErrorKind, SpecialFile, SpecialKind, SwampDecision,
};
use crate::source::{Identity, Tally, Trouble, node_from_metadata, open_checked, trouble};
use crate::{Error, Id};

pub(crate) struct FileJob {
    pub(crate) idx: usize,
    /// The path it is opened by (through its folder's descriptor).
    pub(crate) path: PathBuf,
    /// The path reported.
    pub(crate) display: PathBuf,
    pub(crate) kind: JobKind,
    /// The file the walk saw (for plain files; a `.hyd` file may be compacted meanwhile).
    pub(crate) expect: Option<Identity>,
    /// Keeps the folder open until the file is read (none for a stream).
    pub(crate) _dir: Option<Dir>,
}

/// How a file is read.
pub(crate) enum JobKind {
    /// Whole, with the generic chunker.
    Plain,
    /// A `.hyd` file: consistent capture, incremental against the parent if possible.
    Hyd(Option<HydParent>),
    /// Bytes already read (members of a V1 Swamp folder, captured together).
    Bytes(Vec<u8>),
    /// A stream read to its end (`backup --stdin`, `--stdin-from-command`).
    Stream(Box<dyn std::io::Read + Send>),
}

/// An entry of a folder being walked: a file whose content may still be in the pipeline, or a
/// folder whose tree is stored already.
pub(crate) struct Draft {
    pub(crate) node: Node,
    pub(crate) pending: Option<usize>,
    /// Bytes read from the source under a folder.
    pub(crate) read: u64,
    /// Taken unread from the parent snapshot (its Swamp facts describe an earlier capture).
    pub(crate) unchanged: bool,
    /// The path it is reported by, when not its folder's path and its name (a source path
    /// that is an entry of the root tree).
    pub(crate) display: Option<PathBuf>,
}

impl Draft {
    pub(crate) fn of(node: Node) -> Draft {
        Draft {
            node,
            pending: None,
            read: 0,
            unchanged: false,
            display: None,
        }
    }
}

/// What every walker thread shares.
pub(crate) struct WalkCtx<'a> {
    pub(crate) repo: &'a Repository,
    pub(crate) index: &'a Index,
    pub(crate) excludes: PathPatterns,
    /// Skip folders tagged with a CACHEDIR.TAG (`--exclude-caches`).
    pub(crate) exclude_caches: bool,
    /// With `--one-file-system`: the devices of the source paths; folders elsewhere are
    /// stored empty.
    pub(crate) devices: Option<Vec<u64>>,
    pub(crate) force: bool,
    pub(crate) since_ns: Option<i64>,
    pub(crate) files_tx: Sender<FileJob>,
    pub(crate) next_file: AtomicUsize,
    /// Files and bytes found to be read.
    pub(crate) progress: Tally<'a>,
    /// Where read files' results wait for their folder.
    pub(crate) results: &'a Results,
    /// Where tree blobs go.
    pub(crate) trees: Sender<SealedBlob>,
    /// Tree blobs sent in this run, and how many.
    pub(crate) trees_seen: Mutex<(IdSet, u64)>,
    /// The name index's entries, one list for the whole walk (folders walked in parallel
    /// add to it, so nothing is copied from folder to parent).
    pub(crate) names: Mutex<NameList>,
    /// The first tree that could not be stored (the pack writer stopped).
    pub(crate) fatal: Mutex<Option<Error>>,
    /// Prefix of the root tree's paths in the decision log.
    pub(crate) base: PathBuf,
    pub(crate) show_names: bool,
    /// Whether trees go to a write-only key's send log (not in a dry run).
    pub(crate) note_trees: bool,
    /// Keep every decision (a dry run lists them), not only quarantined Swamps.
    pub(crate) all_decisions: bool,
    /// Files and bytes taken unread from the parent.
    pub(crate) reused: Tally<'a>,
    /// Walk only these dirty paths; the parent supplies the rest (`watch`).
    pub(crate) restrict: Option<&'a crate::source::reuse::Restrict>,
}

/// What a walk found, without the shared parts.
#[derive(Default)]
pub(crate) struct WalkResult {
    pub(crate) summary: SnapshotSummary,
    pub(crate) errors: Vec<SourceError>,
    pub(crate) gone: Vec<String>,
    /// V1 Swamp folders destroyed during the walk (for the decision log).
    pub(crate) gone_swamps: Vec<String>,
    pub(crate) special: Vec<SpecialFile>,
    /// Swamps of the parent matched by path (to count the ones gone).
    pub(crate) parent_swamps_seen: u64,
    /// Files the readers could not read (or read as quarantined Swamps): reported as they
    /// were read, unlike the walk's own `errors`.
    pub(crate) read_errors: Vec<SourceError>,
    /// Decision-log lines of files skipped on purpose (HydrAIDE's temporaries).
    pub(crate) decisions: Vec<SwampDecision>,
    /// Decision-log lines of Swamps stored (or not), made as their folders are built.
    pub(crate) built: Vec<SwampDecision>,
    pub(crate) catalogue: CatalogueSummary,
    /// How much the walk looked at and what it read, by kind.
    pub(crate) work: crate::source::report::WalkWork,
}

impl WalkResult {
    pub(crate) fn absorb(&mut self, other: WalkResult) {
        self.summary += &other.summary;
        self.errors.extend(other.errors);
        self.read_errors.extend(other.read_errors);
        self.gone.extend(other.gone);
        self.gone_swamps.extend(other.gone_swamps);
        self.special.extend(other.special);
        self.parent_swamps_seen += other.parent_swamps_seen;
        self.decisions.extend(other.decisions);
        self.built.extend(other.built);
        self.work += other.work;
        crate::source::reuse::merge_catalogue(&mut self.catalogue, &other.catalogue);
    }
}

/// Walks directories, in parallel across the entries of each directory (rayon), comparing with
/// the parent snapshot and queueing what must be read.
pub(crate) struct Walker<'a> {
    pub(crate) ctx: &'a WalkCtx<'a>,
    pub(crate) res: WalkResult,
}

/// The signature a CACHEDIR.TAG file starts with (<https://bford.info/cachedir/>).
const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// Whether the folder `dir` (holding `names`) is tagged as a cache: a regular CACHEDIR.TAG
/// file that starts with the standard signature.
fn is_cache_dir(dir: &Dir, names: &[Vec<u8>]) -> bool {
    if !names.iter().any(|n| n == b"CACHEDIR.TAG") {
        return false;
    }
    let Ok(mut f) = open_checked(&dir.entry(b"CACHEDIR.TAG"), None) else {
        return false;
    };
    let mut head = [0u8; CACHEDIR_SIGNATURE.len()];
    std::io::Read::read_exact(&mut f, &mut head).is_ok() && head == CACHEDIR_SIGNATURE
}

/// The entries of a folder as read from it.
#[derive(Default)]
pub(crate) struct Listing {
    /// The names, sorted (the order of the folder's tree).
    pub(crate) names: Vec<Vec<u8>>,
    /// The inode number of each name, as the folder listed it.
    inodes: Vec<u64>,
}

impl Listing {
    /// The listing of `(name, inode)` pairs in any order.
    fn new(mut entries: Vec<(Vec<u8>, u64)>) -> Listing {
        entries.sort_unstable();
        let (names, inodes) = entries.into_iter().unzip();
        Listing { names, inodes }
    }

    /// The positions of the names, by inode number.
    fn by_inode(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.names.len()).collect();
        order.sort_unstable_by_key(|&i| (self.inodes[i], i));
        order
    }
}

/// Whether a node of the parent snapshot still describes the file as it is now.
pub(crate) fn unchanged(old: &Node, node: &Node) -> bool {
    old.size == node.size
        && old.mtime_ns == node.mtime_ns
        && old.ctime_ns == node.ctime_ns
        && old.inode == node.inode
}

/// Whether a `.hyd` file is untouched since the parent captured it although it is longer than
/// the stored copy: the capture left out fewer than a block header's worth of trailing bytes
/// (a partial block header, which HydrAIDE ignores), and times and inode are unchanged.
pub(crate) fn unchanged_hyd_prefix(old: &Node, node: &Node) -> bool {
    old.mtime_ns == node.mtime_ns
        && old.ctime_ns == node.ctime_ns
        && old.inode == node.inode
        && node.size > old.size
        && node.size - old.size < crate::hyd::BLOCK_HEADER_SIZE as u64
        && old.swamp.as_ref().is_some_and(|s| s.problem.is_none())
}

impl Walker<'_> {
    pub(crate) fn parent_subtree(&mut self, parent: Option<&Tree>, name: &[u8]) -> Option<Tree> {
        let id = parent?.find(name)?.subtree?;
        self.ctx.repo.load_tree(self.ctx.index, &id).ok()
    }

    pub(crate) fn error(&mut self, path: &Path, e: impl ToString) {
        self.res.errors.push(SourceError {
            path: path.display().to_string(),
            kind: SourceErrorKind::Unreadable,
            error: e.to_string(),
        });
    }

    /// Records an error met while walking: a file or folder that vanished is gone, not an
    /// error (HydrAIDE deletes a destroyed Swamp's file and then its empty folders).
    pub(crate) fn trouble(&mut self, path: &Path, e: std::io::Error) {
        match trouble(&e) {
            Trouble::Gone => self.gone(path),
            Trouble::Changed => self.res.errors.push(SourceError {
                path: path.display().to_string(),
                kind: SourceErrorKind::Changed,
                error: e.to_string(),
            }),
            Trouble::Unreadable => self.error(path, e),
        }
    }

    pub(crate) fn gone(&mut self, path: &Path) {
        self.res.summary.files_gone += 1;
        self.res.gone.push(path.display().to_string());
    }

    /// Whether every one of `blobs` is a data blob of the index the walk reuses against.
    pub(crate) fn all_indexed<'i>(&self, blobs: impl IntoIterator<Item = &'i Id>) -> bool {
        blobs
            .into_iter()
            .all(|id| self.ctx.index.contains(BlobType::Data, id))
    }

    /// Queues the entry `name` of `dir` (reported as `path`) for reading.
    pub(crate) fn queue(
        &mut self,
        dir: &Dir,
        name: &[u8],
        path: &Path,
        size: u64,
        kind: JobKind,
        expect: Option<Identity>,
    ) -> usize {
        let idx = self.ctx.next_file.fetch_add(1, Ordering::Relaxed);
        (self.ctx.progress)(1, size);
        // A send fails only when every reader has stopped (writer failure); the file then stays
        // pending and the run reports the writer's error.
        let _ = self.ctx.files_tx.send(FileJob {
            idx,
            path: dir.entry(name),
            display: path.to_path_buf(),
            kind,
            expect,
            _dir: Some(dir.clone()),
        });
        idx
    }

    /// Queues `src` for reading as the file `node` (`backup --stdin`): the snapshot's only
    /// entry, reported as `path`.
    pub(crate) fn stream(
        &mut self,
        node: Node,
        path: &Path,
        src: Box<dyn std::io::Read + Send>,
    ) -> Draft {
        let idx = self.ctx.next_file.fetch_add(1, Ordering::Relaxed);
        self.res.summary.files_new += 1;
        (self.ctx.progress)(1, 0);
        let _ = self.ctx.files_tx.send(FileJob {
            idx,
            path: path.to_path_buf(),
            display: path.to_path_buf(),
            kind: JobKind::Stream(src),
            expect: None,
            _dir: None,
        });
        Draft {
            pending: Some(idx),
            ..Draft::of(node)
        }
    }

    /// The entry `name` of `dir`, reported as `path`, at `rel` in the snapshot.
    pub(crate) fn entry(
        &mut self,
        dir: &Dir,
        path: &Path,
        rel: &Path,
        name: &[u8],
        parent: Option<&Tree>,
    ) -> Option<Draft> {
        if self.ctx.excludes.is_match(path) {
            return None;
        }
        self.res.work.entries_examined += 1;
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
                kind: SpecialKind::of(md.file_type()),
            });
            return None;
        };
        let old = parent
            .and_then(|t| t.find(name))
            .filter(|o| o.kind == node.kind);
        match node.kind {
            NodeKind::Dir => self.entry_dir(dir, path, rel, name, parent, old, &md, node),
            NodeKind::Symlink => match std::fs::read_link(dir.entry(name)) {
                Ok(t) => {
                    node.target = Some(t.as_os_str().as_bytes().to_vec());
                    Some(Draft::of(node))
                }
                Err(e) => {
                    self.trouble(path, e);
                    None
                }
            },
            NodeKind::File => self.entry_file(dir, path, name, old, &md, node),
        }
    }

    /// A folder entry: walked, and its tree stored (its own function: the walk recurses
    /// through it, so its frame is kept small).
    #[allow(clippy::too_many_arguments)]
    fn entry_dir(
        &mut self,
        dir: &Dir,
        path: &Path,
        rel: &Path,
        name: &[u8],
        parent: Option<&Tree>,
        old: Option<&Node>,
        md: &std::fs::Metadata,
        mut node: Node,
    ) -> Option<Draft> {
        let sub = self.parent_subtree(parent, name);
        crate::failpoint::hook("list", path);
        let here = match dir.open_dir(name, Identity::of(md)) {
            Ok(d) => d,
            Err(e) => {
                self.trouble(path, e);
                return None;
            }
        };
        if self.other_file_system(md) {
            return Some(self.mount_point(path, rel, node));
        }
        let listing = self.list(&here, path)?;
        if self.ctx.exclude_caches && is_cache_dir(&here, &listing.names) {
            return None;
        }
        self.res.summary.dirs += 1;
        // Only a folder with a `meta` entry can be a V1 Swamp: no extra stat elsewhere.
        let v1 = listing.names.iter().any(|n| n == b"meta")
            && matches!(crate::hyd::v1::detect_v1_swamp(here.path()), Ok(Some(_)));
        let (entries, unchanged) = match v1 {
            true => {
                let (entries, info, unchanged) =
                    self.v1_swamp(&here, path, rel, old, sub.as_ref())?;
                node.swamp = Some(info);
                (entries, unchanged)
            }
            false => (self.dir_of(&here, path, rel, listing, sub.as_ref()), false),
        };
        drop((here, sub));
        let (id, read) = self.finish(path, rel, entries);
        node.subtree = Some(id);
        Some(Draft {
            read,
            unchanged,
            ..Draft::of(node)
        })
    }

    /// Whether a folder is on another file system than the sources (`--one-file-system`).
    fn other_file_system(&self, md: &std::fs::Metadata) -> bool {
        let dev = std::os::unix::fs::MetadataExt::dev(md);
        self.ctx.devices.as_ref().is_some_and(|d| !d.contains(&dev))
    }

    /// A mount point left out by `--one-file-system`: stored as an empty folder (out of line:
    /// `entry_dir`'s frame is on the walk's recursion path).
    #[inline(never)]
    fn mount_point(&mut self, path: &Path, rel: &Path, mut node: Node) -> Draft {
        self.res.summary.dirs += 1;
        let (id, read) = self.finish(path, rel, Vec::new());
        node.subtree = Some(id);
        Draft {
            read,
            ..Draft::of(node)
        }
    }

    /// A file entry: taken from the parent snapshot, or queued for reading.
    fn entry_file(
        &mut self,
        dir: &Dir,
        path: &Path,
        name: &[u8],
        old: Option<&Node>,
        md: &std::fs::Metadata,
        mut node: Node,
    ) -> Option<Draft> {
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
            // Kept for a dry run's decision log only.
            if self.ctx.all_decisions {
                self.res.decisions.push(SwampDecision {
                    path: path.display().to_string(),
                    name: None,
                    decision: Decision::Skipped,
                    reason: format!("temporary file: {why}"),
                    bytes_read: 0,
                });
            }
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
            && self.all_indexed(o.data_blobs())
            && o.swamp.as_ref().is_none_or(|s| s.problem.is_none())
            && (unchanged(o, &node)
                || (is_hyd && unchanged_hyd_prefix(o, &node))
                || (is_hyd && self.ctx.since_ns.is_some_and(|s| node.mtime_ns < s)))
        {
            self.res.summary.files_unchanged += 1;
            (self.ctx.reused)(1, o.size);
            node.content = o.content.clone();
            node.size = o.size;
            // The Swamp facts stay those of the capture that stored these bytes, so the
            // tree is byte-identical to the parent's and deduplicates.
            node.swamp = o.swamp.clone();
            if is_hyd {
                self.res.summary.swamps_unchanged += 1;
            }
            return Some(Draft {
                unchanged: true,
                ..Draft::of(node)
            });
        }
        if old.is_some() {
            self.res.summary.files_changed += 1;
        } else {
            self.res.summary.files_new += 1;
        }
        let kind = if is_hyd {
            let parent = old
                .filter(|o| !self.ctx.force && o.swamp.is_some() && self.all_indexed(&o.content))
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
        let expect = Some(Identity::of(md));
        let idx = self.queue(dir, name, path, node.size, kind, expect);
        Some(Draft {
            pending: Some(idx),
            ..Draft::of(node)
        })
    }

    /// The entries of the folder `dir`, reported as `path`, at `rel` in the snapshot.
    pub(crate) fn dir(
        &mut self,
        dir: &Dir,
        path: &Path,
        rel: &Path,
        parent: Option<&Tree>,
    ) -> Vec<Draft> {
        let listing = self.list(dir, path).unwrap_or_default();
        self.dir_of(dir, path, rel, listing, parent)
    }

    /// The entries of a directory; an unreadable directory is reported and empty, one that
    /// vanished is gone (`None`).
    pub(crate) fn list(&mut self, dir: &Dir, path: &Path) -> Option<Listing> {
        self.res.work.folders_listed += 1;
        let entries: Vec<(Vec<u8>, u64)> = match std::fs::read_dir(dir.path()) {
            Ok(rd) => rd
                .filter_map(|e| match e {
                    Ok(e) => Some((e.file_name().as_bytes().to_vec(), e.ino())),
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
        Some(Listing::new(entries))
    }

    /// The drafts of the entries `listing` holds, in name order (the tree's order).
    pub(crate) fn dir_of(
        &mut self,
        dir: &Dir,
        path: &Path,
        rel: &Path,
        listing: Listing,
        parent: Option<&Tree>,
    ) -> Vec<Draft> {
        // Entries are examined in parallel: stat calls and parent-tree loads overlap, and on a
        // data root of a thousand islands both cores walk. They are examined in inode order
        // (each thread a run of it), so a cold cache reads the inode table in sequence rather
        // than in the hash order of names; the drafts are put back in name order.
        let ctx = self.ctx;
        let names = &listing.names;
        let parts: Vec<(WalkResult, Vec<(usize, Draft)>)> = listing
            .by_inode()
            .par_iter()
            .fold(
                || (WalkResult::default(), Vec::new()),
                |(res, mut drafts), &i| {
                    let name = &names[i];
                    let mut w = Walker { ctx, res };
                    let name_os = std::ffi::OsStr::from_bytes(name);
                    let (p, r) = (path.join(name_os), rel.join(name_os));
                    let reused = ctx.restrict.and_then(|x| {
                        let old = x.reusable(&r, parent.and_then(|t| t.find(name)))?;
                        w.reuse(x, &r, old)
                    });
                    if let Some(d) = reused.or_else(|| w.entry(dir, &p, &r, name, parent)) {
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
        entries.into_iter().map(|e| e.1).collect()
    }

    /// A V1 Swamp folder is captured as one unit: its files are read together and read again
    /// if any of them changed meanwhile, so `meta` and chunks come from the same moment. A
    /// folder that vanishes meanwhile (the Swamp was destroyed) is gone: `None`.
    pub(crate) fn v1_swamp(
        &mut self,
        dir: &Dir,
        path: &Path,
        rel: &Path,
        old: Option<&Node>,
        parent: Option<&Tree>,
    ) -> Option<(Vec<Draft>, SwampInfo, bool)> {
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
                        kind: SpecialKind::of(md.file_type()),
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
                (self.ctx.reused)(1, n.size);
                entries.push(Draft::of(n));
            }
            return Some((entries, info, true));
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
        info.decision = if old.is_some() {
            Decision::Rewritten
        } else {
            Decision::New
        };
        let Some((nodes, datas)) = captured else {
            // Kept changing: fall back to reading each file on its own, and say so.
            info.decision = Decision::Quarantined;
            info.problem = Some("V1 Swamp folder kept changing while it was read".into());
            self.res.summary.swamps_quarantined += 1;
            self.error(
                path,
                "V1 Swamp folder kept changing while it was read; files stored one by one",
            );
            return Some((self.dir(dir, path, rel, parent), info, false));
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
                pending: Some(idx),
                ..Draft::of(n)
            });
        }
        Some((entries, info, false))
    }

    /// A V1 Swamp folder destroyed during the walk (counted with the parent's Swamps not seen).
    pub(crate) fn gone_swamp(&mut self, path: &Path) {
        self.gone(path);
        self.res.summary.swamps_gone += 1;
        self.res.gone_swamps.push(path.display().to_string());
    }
}
