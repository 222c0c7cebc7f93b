//! A walk restricted to dirty paths (`watch`): the entries of a folder that no dirty path is
//! in or under are taken from the parent snapshot as they are, unexamined; a folder among them
//! keeps its subtree id. The snapshot's counters, catalogue and name index still cover the
//! whole tree: a reused folder's share is computed from its stored trees (once per tree id
//! while it stays in use: the [`Restrict`]'s memo lives as long as the watcher).

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::Id;
use crate::repo::Repository;
use crate::repo::index::Index;
use crate::repo::names::NameEntry;
use crate::repo::snapshot::CatalogueSummary;
use crate::repo::tree::{Node, NodeKind, SwampInfo};
use crate::source::walk::{Draft, Walker};

/// What a stored folder holds, counted as a full walk counts it when nothing in it changed.
#[derive(Debug, Default)]
struct TreeStats {
    dirs: u64,
    files: u64,
    bytes: u64,
    /// `.hyd` files and V1 Swamp folders (the walk's `swamps_unchanged`).
    swamps: u64,
    /// Those with Swamp facts (matched against the parent's Swamps).
    swamps_seen: u64,
    catalogue: CatalogueSummary,
    /// Name index entries, paths relative to the folder.
    names: Vec<NameEntry>,
}

impl TreeStats {
    /// Counts `node` (a Swamp's facts included) and, for a folder, `sub` under it.
    fn add(&mut self, node: &Node, sub: Option<&TreeStats>) {
        let hyd =
            node.kind == NodeKind::File && node.name.ends_with(crate::hyd::HYD_SUFFIX.as_bytes());
        match node.kind {
            NodeKind::File => {
                self.files += 1;
                self.bytes += node.size;
            }
            NodeKind::Dir => self.dirs += 1,
            NodeKind::Symlink => {}
        }
        if hyd || (node.kind == NodeKind::Dir && node.swamp.is_some()) {
            self.swamps += 1;
        }
        if let Some(info) = &node.swamp {
            self.swamps_seen += 1;
            catalogue_add(&mut self.catalogue, info);
            if let Some(name) = &info.name {
                self.names.push(NameEntry {
                    name: name.clone(),
                    path: node.name.clone(),
                });
            }
        }
        if let Some(s) = sub {
            self.dirs += s.dirs;
            self.files += s.files;
            self.bytes += s.bytes;
            self.swamps += s.swamps;
            self.swamps_seen += s.swamps_seen;
            merge_catalogue(&mut self.catalogue, &s.catalogue);
            let prefix = Path::new(std::ffi::OsStr::from_bytes(&node.name));
            self.names.extend(s.names.iter().map(|e| {
                NameEntry {
                    name: e.name.clone(),
                    path: prefix
                        .join(std::ffi::OsStr::from_bytes(&e.path))
                        .as_os_str()
                        .as_bytes()
                        .to_vec(),
                }
            }));
        }
    }
}

/// Adds one Swamp's facts to a catalogue.
pub(crate) fn catalogue_add(c: &mut CatalogueSummary, info: &SwampInfo) {
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
}

/// Adds a catalogue to another (quarantine counts are the run's, not added).
pub(crate) fn merge_catalogue(c: &mut CatalogueSummary, o: &CatalogueSummary) {
    c.swamps += o.swamps;
    c.entries += o.entries;
    c.oldest_ns = c.oldest_ns.into_iter().chain(o.oldest_ns).min();
    c.newest_ns = c.newest_ns.into_iter().chain(o.newest_ns).max();
}

/// Counts the tree `id` and everything under it.
fn count(repo: &Repository, index: &Index, id: &Id) -> crate::Result<TreeStats> {
    let tree = repo.load_tree(index, id)?;
    let mut st = TreeStats::default();
    for n in &tree.nodes {
        let sub = match n.subtree {
            Some(s) if n.kind == NodeKind::Dir => Some(count(repo, index, &s)?),
            _ => None,
        };
        st.add(n, sub.as_ref());
    }
    Ok(st)
}

/// Counts of stored folders by tree id, kept across cycles while they are used.
#[derive(Debug, Default)]
pub struct Memo {
    stats: HashMap<Id, Arc<TreeStats>>,
    used: HashSet<Id>,
}

impl Memo {
    /// Forgets the folders the last cycle did not reuse (call after each cycle).
    pub fn sweep(&mut self) {
        let used = std::mem::take(&mut self.used);
        self.stats.retain(|id, _| used.contains(id));
    }
}

/// The paths (relative to the single source folder) that changed since the parent snapshot:
/// only they, their folders up to the root, and everything under them are walked.
#[derive(Debug, Clone, Default)]
pub struct Restrict {
    dirty: HashSet<PathBuf>,
    /// Every folder holding a dirty path (proper ancestors).
    above: HashSet<PathBuf>,
    memo: Arc<Mutex<Memo>>,
}

impl Restrict {
    /// A walk of `dirty` (relative paths) with counts memoized in `memo`.
    pub fn new(dirty: impl IntoIterator<Item = PathBuf>, memo: Arc<Mutex<Memo>>) -> Restrict {
        let dirty: HashSet<PathBuf> = dirty.into_iter().collect();
        let above = dirty
            .iter()
            .flat_map(|p| p.ancestors().skip(1).map(Path::to_path_buf))
            .collect();
        Restrict { dirty, above, memo }
    }

    /// The parent's node for the entry at `rel` when it can be taken unexamined.
    pub(crate) fn reusable<'t>(&self, rel: &Path, old: Option<&'t Node>) -> Option<&'t Node> {
        let old = old?;
        // A Swamp quarantined last time is captured again, as a full walk does.
        if old.swamp.as_ref().is_some_and(|s| s.problem.is_some())
            || self.above.contains(rel)
            || rel.ancestors().any(|a| self.dirty.contains(a))
        {
            return None;
        }
        Some(old)
    }

    fn stats(&self, repo: &Repository, index: &Index, id: &Id) -> crate::Result<Arc<TreeStats>> {
        if let Some(s) = {
            let mut m = self.memo.lock().expect("memo");
            m.used.insert(*id);
            m.stats.get(id).cloned()
        } {
            return Ok(s);
        }
        let s = Arc::new(count(repo, index, id)?);
        self.memo.lock().expect("memo").stats.insert(*id, s.clone());
        Ok(s)
    }
}

impl Walker<'_> {
    /// Takes the parent's node `old` for the entry at `rel` as it is, counting what it holds as
    /// a full walk of an unchanged entry would; `None` when its trees cannot be read (then it is
    /// walked).
    pub(crate) fn reuse(&mut self, restrict: &Restrict, rel: &Path, old: &Node) -> Option<Draft> {
        let sub = match (old.kind, old.subtree) {
            (NodeKind::Dir, Some(id)) => {
                Some(restrict.stats(self.ctx.repo, self.ctx.index, &id).ok()?)
            }
            (NodeKind::Dir, None) => return None,
            _ => None,
        };
        let mut st = TreeStats::default();
        // The node's own Swamp facts go to the catalogue as its folder is built (`finish`).
        let mut bare = old.clone();
        bare.swamp = None;
        st.add(&bare, sub.as_deref());
        let hyd_swamp = old.swamp.is_some()
            && (old.kind == NodeKind::Dir || old.name.ends_with(crate::hyd::HYD_SUFFIX.as_bytes()));
        let s = &mut self.res.summary;
        s.dirs += st.dirs;
        s.files_unchanged += st.files;
        s.total_bytes += st.bytes;
        s.swamps_unchanged +=
            st.swamps + u64::from(old.kind == NodeKind::Dir && old.swamp.is_some());
        self.res.parent_swamps_seen += st.swamps_seen + u64::from(hyd_swamp);
        merge_catalogue(&mut self.res.catalogue, &st.catalogue);
        let prefix = rel.parent().unwrap_or(Path::new(""));
        let mut names = self.ctx.names.lock().expect("name list");
        for e in st.names {
            let path = prefix.join(std::ffi::OsStr::from_bytes(&e.path));
            names.push(&e.name, path.as_os_str().as_bytes());
        }
        drop(names);
        (self.ctx.reused)(st.files, st.bytes);
        Some(Draft {
            unchanged: old.swamp.is_some(),
            ..Draft::of(old.clone())
        })
    }
}
