//! The backup's tree building: once the pipeline is drained, the walked folders become tree
//! blobs (children first), with the per-Swamp decision log, catalogue and name index.

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crossbeam_channel::Sender;

use crate::repo::Repository;
use crate::repo::blob::{BlobType, SealedBlob, seal_blob};
use crate::repo::index::Index;
use crate::repo::names::{self, NameEntry};
use crate::repo::snapshot::{CatalogueSummary, SnapshotSummary};
use crate::repo::tree::{Decision, SwampInfo, Tree};
use crate::source::pipeline::FileDone;
use crate::source::report::{GONE, SourceError, SourceErrorKind, SwampDecision};
use crate::source::walk::DirDraft;
use crate::{Error, Id, Result};

pub(crate) struct TreeBuilder<'a> {
    pub(crate) repo: &'a Repository,
    pub(crate) index: &'a Index,
    pub(crate) sender: Sender<SealedBlob>,
    pub(crate) contents: HashMap<usize, Vec<(u32, Id)>>,
    pub(crate) done: HashMap<usize, FileDone>,
    pub(crate) seen: HashSet<Id>,
    pub(crate) added: u64,
    pub(crate) errors: Vec<SourceError>,
    pub(crate) gone: Vec<String>,
    pub(crate) paths: &'a [PathBuf],
    pub(crate) summary: &'a mut SnapshotSummary,
    pub(crate) catalogue: CatalogueSummary,
    pub(crate) decisions: Vec<SwampDecision>,
    pub(crate) show_names: bool,
    /// Whether trees go to a write-only key's send log (not in a dry run).
    pub(crate) note_trees: bool,
    pub(crate) base: PathBuf,
    pub(crate) names: Vec<NameEntry>,
}

impl TreeBuilder<'_> {
    pub(crate) fn note_swamp(&mut self, rel: &Path, info: &SwampInfo, unchanged: bool, read: u64) {
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
            Decision::Unchanged
        } else {
            info.decision
        };
        let reason = match decision {
            Decision::Unchanged => "size, times and inode as in the parent snapshot",
            Decision::Appended => "same file, grown: read from where the parent's capture ended",
            Decision::Rewritten => "replaced or compacted since the parent snapshot: read whole",
            Decision::New => "not in the parent snapshot",
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
            tracing::info!(decision = decision.as_str(), bytes_read = read, "captured");
        });
        self.decisions.push(SwampDecision {
            path,
            name: name.map(str::to_string),
            decision,
            reason: reason.to_string(),
            bytes_read: read,
        });
    }

    pub(crate) fn store(&mut self, dir: DirDraft, prefix: &Path) -> Result<Id> {
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
                            decision: Decision::Gone,
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
                            decision: Decision::Quarantined,
                            reason: format!("{what}not stored: {e}"),
                            bytes_read: done.read,
                        });
                    }
                    self.errors.push(SourceError {
                        path: path(),
                        kind: if done.changed {
                            SourceErrorKind::Changed
                        } else {
                            SourceErrorKind::Unreadable
                        },
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
                    match info.decision {
                        Decision::Appended => self.summary.swamps_appended += 1,
                        Decision::Rewritten => self.summary.swamps_rewritten += 1,
                        Decision::New => self.summary.swamps_new += 1,
                        _ => {
                            self.summary.swamps_quarantined += 1;
                            self.errors.push(SourceError {
                                path: path(),
                                kind: SourceErrorKind::Unreadable,
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
    pub(crate) fn store_names(&mut self) -> Result<Option<Id>> {
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
    pub(crate) fn store_blob(&mut self, bytes: Vec<u8>) -> Result<Id> {
        let id = self.repo.keys().blob_id(&bytes);
        if self.note_trees {
            self.repo.note_tree(&id, &bytes);
        }
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
