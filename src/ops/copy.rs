//! `copy`: copies snapshots, with everything they use, from one repository into another (a
//! second copy for 3-2-1). Snapshots already copied (same original) are skipped; blobs the
//! destination has are not copied again.
//!
//! Every blob read from the source is opened and checked against its id before it is stored
//! again, sealed with the destination's key. When both repositories share the id key (the
//! destination was made with `init --copy-params-from`), blob ids are the same in both, so only
//! missing blobs are read. Otherwise every data blob of the copied snapshots is read to compute
//! its id in the destination, and trees are rewritten with the new ids. Write order is a
//! backup's: packs, index, then the snapshots.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use serde::Serialize;

use crate::backend::FileKind;
use crate::ops::packread::{PackReads, Read};
use crate::ops::progress::Progress;
use crate::ops::reach::for_each_tree;
use crate::repo::blob::{BlobType, SealedBlob, seal_blob};
use crate::repo::index::Index;
use crate::repo::names::NameIndex;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::Tree;
use crate::repo::writer::PackWriter;
use crate::repo::{DamagedSnapshot, Repository};
use crate::{Error, Id, Result};

/// Options of a copy.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CopyOptions {
    /// Snapshots of the source to copy (ids, prefixes or `latest`); default: all.
    pub snapshots: Vec<String>,
    /// Only snapshots of this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Only snapshots with this tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// Count what would be copied, write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// One snapshot copied.
#[derive(Debug, Clone, Serialize)]
pub struct Copied {
    /// Its id in the source.
    pub source: String,
    /// Its id in the destination (none for a dry run).
    pub target: Option<String>,
    /// Its time.
    pub time: String,
}

/// What a copy did (or would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CopySummary {
    /// Snapshots copied.
    pub copied: Vec<Copied>,
    /// Source snapshots skipped because the destination has them already.
    pub already_there: u64,
    /// Whether both repositories share blob ids (only missing blobs are read).
    pub same_ids: bool,
    /// Data blobs stored in the destination.
    pub data_blobs_added: u64,
    /// Tree blobs stored in the destination.
    pub tree_blobs_added: u64,
    /// Plaintext bytes of the blobs stored.
    pub bytes_added: u64,
    /// Bytes read from the source's packs.
    pub bytes_read: u64,
    /// Pack bytes written.
    pub bytes_stored: u64,
    /// Whether nothing was written.
    pub dry_run: bool,
}

/// The snapshot's identity across copies: its original's id, or its own.
fn origin(id: &Id, s: &Snapshot) -> Id {
    s.original.unwrap_or(*id)
}

/// State shared by the parts of one copy.
struct Ctx<'a> {
    src: &'a Repository,
    dst: &'a Repository,
    src_index: &'a Index,
    dst_index: &'a Index,
    same: bool,
    tx: crossbeam_channel::Sender<SealedBlob>,
    /// Blobs sent to the writer in this run.
    sent: Mutex<HashSet<(bool, Id)>>,
    /// Source data id → destination data id (only when ids differ).
    data_ids: Mutex<HashMap<Id, Id>>,
    added: Mutex<CopySummary>,
}

impl Ctx<'_> {
    /// Sends a blob to the writer unless the destination has it or it was sent already.
    fn store(&self, blob: SealedBlob) -> Result<()> {
        let tree = blob.kind == BlobType::Tree;
        if self.dst_index.contains(blob.kind, &blob.id)
            || !self.sent.lock().expect("sent").insert((tree, blob.id))
        {
            return Ok(());
        }
        {
            let mut a = self.added.lock().expect("summary");
            if tree {
                a.tree_blobs_added += 1;
            } else {
                a.data_blobs_added += 1;
            }
            a.bytes_added += blob.raw_len as u64;
        }
        self.tx
            .send(blob)
            .map_err(|_| Error::Internal("pack writer stopped".into()))
    }

    /// Stores a tree blob given its plaintext; returns its destination id.
    fn store_tree(&self, bytes: &[u8]) -> Result<Id> {
        let id = self.dst.keys().blob_id(bytes);
        if !self.dst_index.contains(BlobType::Tree, &id) {
            let level = self.dst.config().compression.max(1);
            self.store(seal_blob(self.dst.keys(), BlobType::Tree, id, bytes, level))?;
        }
        Ok(id)
    }

    /// Copies the data blobs `ids` (those the destination lacks, or all when ids differ),
    /// reading each source pack once.
    fn copy_data(&self, ids: &HashSet<Id>, progress: &Progress) -> Result<()> {
        let mut reads: PackReads<()> = PackReads::default();
        for id in ids {
            if self.same && self.dst_index.contains(BlobType::Data, id) {
                continue;
            }
            let loc = self.src_index.get(BlobType::Data, id).ok_or_else(|| {
                Error::corrupt(format!("blob {id}"), "it is in no index of the source")
            })?;
            reads.at(&loc, || ());
        }
        let total: u64 = reads.blobs().map(|(e, _)| e.raw_len as u64).sum();
        progress.total(reads.blobs().count() as u64, total);
        reads.read(
            self.src,
            self.src_index,
            BlobType::Data,
            |pack, span, blobs| {
                self.added.lock().expect("summary").bytes_read += span?;
                for Read { blob, .. } in blobs {
                    // A copy that fails was passed over for another copy the source index lists.
                    let blob =
                        blob.map_err(|why| Error::corrupt(format!("source pack {pack}"), why))?;
                    let (e, plain) = (&blob.entry, blob.plain());
                    let id = if self.same {
                        e.id
                    } else {
                        let id = self.dst.keys().blob_id(plain);
                        self.data_ids.lock().expect("ids").insert(e.id, id);
                        id
                    };
                    self.store(SealedBlob {
                        kind: BlobType::Data,
                        id,
                        sealed: self.dst.keys().seal_key().seal(&blob.payload),
                        raw_len: e.raw_len,
                        compressed: e.compressed,
                    })?;
                    progress.done(1, e.raw_len as u64);
                }
                Ok(())
            },
        )
    }

    /// Stores tree `root` of the source and everything below it, children first (an explicit
    /// stack: depth costs no call stack); returns its destination id. With shared ids the
    /// stored bytes are copied as they are; otherwise the tree is rewritten with the
    /// destination's ids.
    fn copy_tree(
        &self,
        trees: &HashMap<Id, (Tree, Vec<u8>)>,
        root: &Id,
        memo: &mut HashMap<Id, Id>,
    ) -> Result<Id> {
        let mut stack = vec![*root];
        while let Some(&id) = stack.last() {
            if memo.contains_key(&id) {
                stack.pop();
                continue;
            }
            let (tree, bytes) = trees.get(&id).expect("every tree was loaded");
            let before = stack.len();
            stack.extend(
                tree.nodes
                    .iter()
                    .filter_map(|n| n.subtree)
                    .filter(|s| !memo.contains_key(s)),
            );
            if stack.len() > before {
                continue;
            }
            stack.pop();
            let mut t = tree.clone();
            for n in &mut t.nodes {
                if let Some(sub) = &mut n.subtree {
                    *sub = memo[sub];
                }
                if !self.same {
                    let map = self.data_ids.lock().expect("ids");
                    for c in n.data_blobs_mut() {
                        *c = *map.get(c).expect("every data blob was copied");
                    }
                }
            }
            let d = if self.same {
                self.store_tree(bytes)?
            } else {
                self.store_tree(&t.encode())?
            };
            memo.insert(id, d);
        }
        Ok(memo[root])
    }

    /// Stores a snapshot's name index (root and pages); returns the new root's id.
    fn copy_names(&self, root: &Id) -> Result<Id> {
        let mut index: NameIndex = self.src.load_name_index(self.src_index, root)?;
        for p in &mut index.pages {
            let bytes = self.src.read_blob(self.src_index, BlobType::Tree, &p.id)?;
            p.id = self.store_tree(&bytes)?;
        }
        self.store_tree(&index.encode())
    }
}

/// Loads every tree reachable from `roots`, parsed and as stored.
fn load_trees(
    repo: &Repository,
    index: &Index,
    roots: &[Id],
) -> Result<HashMap<Id, (Tree, Vec<u8>)>> {
    let mut trees = HashMap::new();
    for_each_tree(repo, index, roots.iter().copied(), |id, bytes, tree| {
        trees.insert(id, (tree, bytes));
    })?;
    Ok(trees)
}

/// What a copy did (or would do), the `--json` document: the summary's fields and the damaged
/// snapshots both repositories skipped.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// What was copied.
    #[serde(flatten)]
    pub summary: CopySummary,
    /// Snapshots of either repository skipped because they are damaged.
    pub damaged_snapshots: Vec<DamagedSnapshot>,
}

/// Copies snapshots from `src` into `dst` under shared locks on both.
pub fn run(
    dst: &Repository,
    src: &Repository,
    opts: &CopyOptions,
    progress: &Progress,
) -> Result<Outcome> {
    let _src_lock = src.lock(false, "copy (source)")?;
    let _dst_lock = dst.lock(false, "copy")?;
    let summary = copy(src, dst, opts, progress)?;
    let mut damaged_snapshots = src.damaged_snapshots();
    damaged_snapshots.extend(dst.damaged_snapshots());
    Ok(Outcome {
        summary,
        damaged_snapshots,
    })
}

/// Copies snapshots from `src` into `dst`. The caller holds shared locks on both.
fn copy(
    src: &Repository,
    dst: &Repository,
    opts: &CopyOptions,
    progress: &Progress,
) -> Result<CopySummary> {
    if src.config().id == dst.config().id {
        return Err(Error::InvalidInput(
            "source and destination are the same repository".into(),
        ));
    }
    let all_src = src.snapshots()?;
    let src_origin: HashMap<Id, Id> = all_src.iter().map(|(id, s)| (*id, origin(id, s))).collect();
    let mut chosen: Vec<(Id, Snapshot)> = if opts.snapshots.is_empty() {
        all_src
    } else {
        let mut v = Vec::new();
        for spec in &opts.snapshots {
            let s = src.find_snapshot(spec)?;
            if !v.iter().any(|(id, _)| *id == s.0) {
                v.push(s);
            }
        }
        v
    };
    chosen.retain(|(_, s)| {
        opts.host.as_ref().is_none_or(|h| &s.host == h)
            && opts.tag.as_ref().is_none_or(|t| s.tags.contains(t))
    });
    chosen.sort_by_key(|(_, s)| s.timestamp());
    // Origin → destination snapshot id, for skipping and for mapping parents.
    let mut in_dst: HashMap<Id, Id> = dst
        .snapshots()?
        .iter()
        .map(|(id, s)| (origin(id, s), *id))
        .collect();
    let before = chosen.len();
    chosen.retain(|(id, s)| !in_dst.contains_key(&origin(id, s)));
    let mut summary = CopySummary {
        already_there: (before - chosen.len()) as u64,
        same_ids: src.config().id_key == dst.config().id_key,
        dry_run: opts.dry_run,
        ..CopySummary::default()
    };
    if chosen.is_empty() {
        return Ok(summary);
    }

    let src_index = src.load_index()?;
    // Deduplicate only against live packs: a marked one may be deleted by a later prune.
    let dst_index = dst.load_live_index()?;
    let roots: Vec<Id> = chosen.iter().map(|(_, s)| s.tree).collect();
    let trees = load_trees(src, &src_index, &roots)?;
    let data: HashSet<Id> = trees
        .values()
        .flat_map(|(t, _)| t.nodes.iter().flat_map(|n| n.data_blobs().copied()))
        .collect();

    let writer = PackWriter::new(dst, 2, opts.dry_run);
    let ctx = Ctx {
        src,
        dst,
        src_index: &src_index,
        dst_index: &dst_index,
        same: summary.same_ids,
        tx: writer.sender(),
        sent: Mutex::new(HashSet::new()),
        data_ids: Mutex::new(HashMap::new()),
        added: Mutex::new(CopySummary::default()),
    };
    let stored = (|| -> Result<Vec<(Id, Snapshot)>> {
        ctx.copy_data(&data, progress)?;
        let mut memo = HashMap::new();
        let mut out = Vec::new();
        for (id, s) in &chosen {
            let mut c = s.clone();
            c.tree = ctx.copy_tree(&trees, &s.tree, &mut memo)?;
            c.names = s.names.as_ref().map(|n| ctx.copy_names(n)).transpose()?;
            c.original = Some(origin(id, s));
            out.push((*id, c));
        }
        Ok(out)
    })();
    let added = std::mem::take(&mut *ctx.added.lock().expect("summary"));
    drop(ctx);
    let stats = writer.finish(opts.dry_run);
    let stored = stored?;
    let stats = stats?;
    summary.data_blobs_added = added.data_blobs_added;
    summary.tree_blobs_added = added.tree_blobs_added;
    summary.bytes_added = added.bytes_added;
    summary.bytes_read = added.bytes_read;
    summary.bytes_stored = stats.pack_bytes;

    // Snapshots last, oldest first, each pointing at its parent's copy when there is one.
    for (src_id, mut s) in stored {
        s.parent = s
            .parent
            .and_then(|p| in_dst.get(src_origin.get(&p).unwrap_or(&p)).copied());
        let target = if opts.dry_run {
            None
        } else {
            let id = dst.save_object(FileKind::Snapshot, &s)?;
            in_dst.insert(src_origin.get(&src_id).copied().unwrap_or(src_id), id);
            Some(id.to_hex())
        };
        summary.copied.push(Copied {
            source: src_id.to_hex(),
            target,
            time: s.time.clone(),
        });
    }
    Ok(summary)
}
