//! The backup's tree building: as soon as the walk is done with a folder, its entries take
//! their read files' results, and the folder becomes a stored tree blob, with the per-Swamp
//! decision log, catalogue and name index entries.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::repo::Repository;
use crate::repo::blob::{BlobType, SealedBlob, seal_blob};
use crate::repo::names;
use crate::repo::tree::{Decision, SwampInfo, Tree};
use crate::source::report::{GONE, SourceError, SourceErrorKind, SwampDecision};
use crate::source::walk::{Draft, Walker};
use crate::{Error, Id};

impl Walker<'_> {
    /// Records a decision-log line: all of them for a dry run, else the quarantined ones (the
    /// quarantine report); the rest were logged and are not kept.
    pub(crate) fn decide(&mut self, d: SwampDecision) {
        if self.ctx.all_decisions || d.decision == Decision::Quarantined {
            self.res.built.push(d);
        }
    }

    pub(crate) fn note_swamp(&mut self, rel: &Path, info: &SwampInfo, unchanged: bool, read: u64) {
        if let Some(name) = &info.name {
            let mut names = self.ctx.names.lock().expect("name list");
            names.push(name, rel.as_os_str().as_bytes());
        }
        crate::source::reuse::catalogue_add(&mut self.res.catalogue, info);
        let decision = if unchanged {
            Decision::Unchanged
        } else {
            info.decision
        };
        let w = &mut self.res.work;
        match decision {
            Decision::Appended => w.bytes_appended += read,
            Decision::Rewritten => w.bytes_rewritten += read,
            Decision::New => w.bytes_new += read,
            _ => {}
        }
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
        let path = self.ctx.base.join(rel).display().to_string();
        // Swamp names only with --show-names: they are the user's data.
        let name = if self.ctx.show_names {
            info.name.as_deref()
        } else {
            None
        };
        tracing::info_span!("swamp", path = %path, name).in_scope(|| {
            tracing::info!(decision = decision.as_str(), bytes_read = read, "captured");
        });
        self.decide(SwampDecision {
            path,
            name: name.map(str::to_string),
            decision,
            reason: reason.to_string(),
            bytes_read: read,
        });
    }

    /// Builds and stores the tree of the folder walked at `path` (at `rel` in the snapshot)
    /// from its entries, waiting for the files still in the pipeline; returns its id and the
    /// bytes read under it.
    pub(crate) fn finish(&mut self, path: &Path, rel: &Path, entries: Vec<Draft>) -> (Id, u64) {
        let mut tree = Tree::default();
        let mut dir_read = 0;
        for d in entries {
            let mut node = d.node;
            let name = std::ffi::OsStr::from_bytes(&node.name);
            let rel = rel.join(name);
            let mut read = d.read;
            if let Some(idx) = d.pending {
                let display = d.display.as_deref();
                let path = || display.map_or_else(|| path.join(name), Path::to_path_buf);
                let path = || path().display().to_string();
                let (mut all, done) = self.ctx.results.take(idx);
                self.res.summary.bytes_read += done.read;
                read = done.read;
                all.sort_unstable_by_key(|c| c.0);
                if done.gone {
                    // Deleted between the walk and the read (a destroyed Swamp): not stored, not
                    // an error.
                    self.res.summary.files_gone += 1;
                    self.res.gone.push(path());
                    if node.name.ends_with(b".hyd") {
                        self.res.summary.swamps_gone += 1;
                        self.decide(SwampDecision {
                            path: self.ctx.base.join(&rel).display().to_string(),
                            name: None,
                            decision: Decision::Gone,
                            reason: GONE.into(),
                            bytes_read: done.read,
                        });
                    }
                    dir_read += read;
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
                        self.res.summary.swamps_quarantined += 1;
                        let what = if done.changed { "" } else { "unreadable, " };
                        self.decide(SwampDecision {
                            path: self.ctx.base.join(&rel).display().to_string(),
                            name: None,
                            decision: Decision::Quarantined,
                            reason: format!("{what}not stored: {e}"),
                            bytes_read: done.read,
                        });
                    }
                    self.res.read_errors.push(SourceError {
                        path: path(),
                        kind: if done.changed {
                            SourceErrorKind::Changed
                        } else {
                            SourceErrorKind::Unreadable
                        },
                        error: e,
                    });
                    dir_read += read;
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
                    let s = &mut self.res.summary;
                    match info.decision {
                        Decision::Appended => s.swamps_appended += 1,
                        Decision::Rewritten => s.swamps_rewritten += 1,
                        Decision::New => s.swamps_new += 1,
                        _ => {
                            s.swamps_quarantined += 1;
                            self.res.read_errors.push(SourceError {
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
            dir_read += read;
            if let Some(info) = node.swamp.take() {
                self.note_swamp(&rel, &info, d.unchanged, read);
                node.swamp = Some(info);
            }
            tree.nodes.push(node);
        }
        (self.store_tree(tree.encode()), dir_read)
    }

    /// Stores the name index of the Swamps noted (none when there are none).
    pub(crate) fn store_names(&mut self) -> Option<Id> {
        let list = std::mem::take(&mut *self.ctx.names.lock().expect("name list"));
        if list.is_empty() {
            return None;
        }
        let mut root = names::NameIndex::default();
        for p in list.into_pages() {
            let id = self.store_tree(p.encode());
            root.pages.extend(p.reference(id));
        }
        Some(self.store_tree(root.encode()))
    }

    /// Stores a tree blob unless the repository (or this run) has it; a failure (the pack writer stopped) is kept for the end of the run.
    fn store_tree(&mut self, bytes: Vec<u8>) -> Id {
        let id = self.ctx.repo.keys().blob_id(&bytes);
        if self.ctx.note_trees {
            self.ctx.repo.note_tree(&id, &bytes);
        }
        let new = {
            let mut seen = self.ctx.trees_seen.lock().expect("trees seen");
            let new = !self.ctx.index.contains(BlobType::Tree, &id) && seen.0.insert(id);
            seen.1 += u64::from(new);
            new
        };
        if new {
            let b = seal_tree(self.ctx.repo, id, &bytes);
            if self.ctx.trees.send(b).is_err() {
                let mut fatal = self.ctx.fatal.lock().expect("fatal");
                fatal.get_or_insert(Error::Internal("pack writer stopped".into()));
            }
        }
        id
    }
}

fn seal_tree(repo: &Repository, id: Id, bytes: &[u8]) -> SealedBlob {
    seal_blob(
        repo.keys(),
        BlobType::Tree,
        id,
        bytes,
        repo.config().compression.max(1),
    )
}
