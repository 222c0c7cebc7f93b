//! What a restore writes: numbered folders (each naming its parent; 0 is the target), files and
//! symlinks, found by walking the snapshot's trees (with an explicit stack, so depth costs no
//! call stack) or by following the name index to the selected Swamps.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::RestoreOptions;
use crate::pattern::{PathPatterns, Pattern};
use crate::repo::Repository;
use crate::repo::filter::SwampFilter;
use crate::repo::index::Index;
use crate::repo::names::NameEntry;
use crate::repo::tree::{Node, NodeKind, Tree};
use crate::{Error, Id, Result};

/// A folder to create: its parent folder, its name and, when it was selected (not only the
/// parent of something selected), its node, whose metadata it gets.
pub struct Folder {
    /// Number of the parent folder (0: the target).
    pub parent: usize,
    /// Name in the parent.
    pub name: Vec<u8>,
    /// The snapshot's node, when selected.
    pub node: Option<Node>,
}

/// A file or symlink to create in folder `dir`.
pub struct Entry {
    /// Number of the folder it goes in.
    pub dir: usize,
    /// The snapshot's node.
    pub node: Node,
}

/// Everything a restore creates; folders come before their children.
pub struct Plan {
    /// Folders; 0 is the target itself.
    pub folders: Vec<Folder>,
    /// Files.
    pub files: Vec<Entry>,
    /// Symlinks.
    pub links: Vec<Entry>,
    /// Entries of the snapshot left out by `--exclude` (folder, name): `--delete` keeps them.
    pub excluded: Vec<(usize, Vec<u8>)>,
    /// Whether the whole snapshot (or subtree) is restored, so `--delete` may clean the
    /// target folder itself.
    pub whole: bool,
    /// Include and exclude patterns that matched nothing.
    pub unmatched: Vec<String>,
}

/// Walks the trees below `tree` (see [`crate::ops::walk`]): calls `f(depth, relative path,
/// node)` for every node (depth 0: the entries of `tree`), descending into a folder when `f`
/// says so; a tree that cannot be read ends the walk with its error.
fn walk(
    repo: &Repository,
    index: &Index,
    tree: &Id,
    prefix: &Path,
    f: &mut dyn FnMut(usize, &Path, &Node) -> Result<bool>,
) -> Result<()> {
    crate::ops::walk::walk(
        repo,
        index,
        tree,
        prefix,
        &mut |v| Ok(f(v.depth, v.path, v.node)? && v.node.kind == NodeKind::Dir),
        &mut |_, _, e| Err(e),
    )
}

/// Walks a snapshot tree, calling `f(relative path, node)` for every node, parents first
/// (depth first, without recursion).
pub fn walk_tree(
    repo: &Repository,
    index: &Index,
    tree: &Id,
    prefix: &Path,
    f: &mut dyn FnMut(&Path, &Node) -> Result<()>,
) -> Result<()> {
    walk(repo, index, tree, prefix, &mut |_, rel, n| {
        f(rel, n).map(|()| true)
    })
}

impl Plan {
    fn new() -> Plan {
        Plan {
            folders: vec![Folder {
                parent: 0,
                name: Vec::new(),
                node: None,
            }],
            files: Vec::new(),
            links: Vec::new(),
            excluded: Vec::new(),
            whole: false,
            unmatched: Vec::new(),
        }
    }

    /// Selected folders (those restored with their metadata).
    pub fn dirs(&self) -> usize {
        self.folders.iter().filter(|f| f.node.is_some()).count()
    }

    /// The path of folder `i` relative to the target.
    pub fn folder_path(&self, mut i: usize) -> PathBuf {
        let mut names = Vec::new();
        while i != 0 {
            names.push(OsStr::from_bytes(&self.folders[i].name));
            i = self.folders[i].parent;
        }
        names.iter().rev().collect()
    }

    /// The path of an entry relative to the target.
    pub fn path(&self, e: &Entry) -> PathBuf {
        self.folder_path(e.dir)
            .join(OsStr::from_bytes(&e.node.name))
    }

    fn add_folder(&mut self, parent: usize, n: &Node, selected: bool) -> usize {
        self.folders.push(Folder {
            parent,
            name: n.name.clone(),
            node: selected.then(|| n.clone()),
        });
        self.folders.len() - 1
    }

    fn add_entry(&mut self, dir: usize, n: &Node) {
        let e = Entry {
            dir,
            node: n.clone(),
        };
        match n.kind {
            NodeKind::Symlink => self.links.push(e),
            _ => self.files.push(e),
        }
    }

    /// Adds the nodes below `tree` (the content of folder `base`, at `prefix`) that `chosen`
    /// picks (`Some(true)`), and everything below a picked folder, leaving out what it
    /// excludes (`None`) with everything below.
    fn add_tree(
        &mut self,
        repo: &Repository,
        index: &Index,
        tree: &Id,
        base: usize,
        prefix: &Path,
        chosen: &mut dyn FnMut(&Path, &Node) -> Option<bool>,
    ) -> Result<()> {
        // The folder each depth's nodes go in.
        let mut chain = vec![base];
        walk(repo, index, tree, prefix, &mut |depth, rel, n| {
            chain.truncate(depth + 1);
            let parent = chain[depth];
            let Some(chosen) = chosen(rel, n) else {
                self.excluded.push((parent, n.name.clone()));
                return Ok(false);
            };
            let pick = self.folders[parent].node.is_some() || chosen;
            if n.kind == NodeKind::Dir {
                chain.push(self.add_folder(parent, n, pick));
            } else if pick {
                self.add_entry(parent, n);
            }
            Ok(true)
        })
    }

    /// Adds `n` (at `rel`, in folder `at`) and everything below it.
    fn add_all(
        &mut self,
        repo: &Repository,
        index: &Index,
        at: usize,
        rel: &Path,
        n: &Node,
    ) -> Result<()> {
        if n.kind != NodeKind::Dir {
            self.add_entry(at, n);
            return Ok(());
        }
        let f = self.add_folder(at, n, true);
        match &n.subtree {
            Some(sub) => self.add_tree(repo, index, sub, f, rel, &mut |_, _| Some(true)),
            None => Ok(()),
        }
    }

    /// Drops the folders with nothing selected in or below them, renumbering the rest.
    fn keep_needed(self) -> Plan {
        let mut need: Vec<bool> = self.folders.iter().map(|f| f.node.is_some()).collect();
        need[0] = true;
        for e in self.files.iter().chain(&self.links) {
            need[e.dir] = true;
        }
        for i in (1..self.folders.len()).rev() {
            if need[i] {
                need[self.folders[i].parent] = true;
            }
        }
        let mut new = vec![0; need.len()];
        let mut folders = Vec::new();
        for (i, f) in self.folders.into_iter().enumerate() {
            if need[i] {
                new[i] = folders.len();
                folders.push(Folder {
                    parent: new[f.parent],
                    ..f
                });
            }
        }
        let excluded = self
            .excluded
            .into_iter()
            .filter(|e| need[e.0])
            .map(|(d, n)| (new[d], n))
            .collect();
        let renumber = |v: Vec<Entry>| -> Vec<Entry> {
            v.into_iter()
                .map(|e| Entry {
                    dir: new[e.dir],
                    ..e
                })
                .collect()
        };
        Plan {
            folders,
            files: renumber(self.files),
            links: renumber(self.links),
            excluded,
            whole: self.whole,
            unmatched: self.unmatched,
        }
    }
}

/// Plans by walking the whole snapshot tree and testing every node against the selection.
pub fn by_walk(repo: &Repository, index: &Index, root: &Id, opts: &RestoreOptions) -> Result<Plan> {
    let pats = |plain: &[String], icase: &[String]| -> Vec<Pattern> {
        let p = plain.iter().map(Pattern::new);
        p.chain(icase.iter().map(Pattern::ignoring_case)).collect()
    };
    let includes = PathPatterns::new(&pats(&opts.includes, &opts.iincludes), "include")?;
    let excludes = PathPatterns::new(&pats(&opts.excludes, &opts.iexcludes), "exclude")?;
    let swamps = SwampFilter::new(&opts.swamps)?;
    let select_all = includes.is_empty() && opts.swamps.is_empty();
    let abs = |rel: &Path| Path::new("/").join(rel);
    let mut plan = Plan::new();
    plan.whole = select_all;
    plan.add_tree(repo, index, root, 0, Path::new(""), &mut |rel, n| {
        let rel = abs(rel);
        (!excludes.is_match(&rel))
            .then(|| select_all || includes.is_match(&rel) || swamps.matches_node(n))
    })?;
    plan.unmatched = includes.unmatched();
    plan.unmatched.extend(excludes.unmatched());
    Ok(plan.keep_needed())
}

/// A Swamp to reach: the remaining components of its path, and its name.
type Wanted<'a> = (Vec<&'a [u8]>, &'a str);

/// One tree to look into: its id, its folder, its path and the Swamps wanted below it.
type Visit<'a> = (Id, usize, PathBuf, Vec<Wanted<'a>>);

/// Plans a restore by Swamp name through the snapshot's name index: reads the index pages
/// that can match, then only the trees along the matching paths, one level at a time.
pub fn by_names(
    repo: &Repository,
    index: &Index,
    root: &Id,
    names: &Id,
    patterns: &[String],
) -> Result<Plan> {
    let globs = SwampFilter::new(patterns)?;
    let name_index = repo.load_name_index(index, names)?;
    let pages = name_index.candidates(patterns);
    let found: Vec<Vec<NameEntry>> = pages
        .par_iter()
        .map(|p| {
            let page = repo.load_name_page(index, &p.id)?;
            Ok(page
                .entries
                .into_iter()
                .filter(|e| globs.matches(&e.name))
                .collect())
        })
        .collect::<Result<_>>()?;
    let mut wanted: Vec<Wanted<'_>> = found
        .iter()
        .flatten()
        .map(|e| {
            let parts: Vec<&[u8]> = e.path.split(|&b| b == b'/').collect();
            (parts, e.name.as_str())
        })
        .collect();
    wanted.sort_unstable();
    wanted.dedup_by(|a, b| a.0 == b.0);
    let bad = |what: String| Error::corrupt("name index", what);
    let mut plan = Plan::new();
    let mut level: Vec<Visit<'_>> = vec![(*root, 0, PathBuf::new(), wanted)];
    while !level.is_empty() {
        let trees: Vec<Tree> = level
            .par_iter()
            .map(|v| repo.load_tree(index, &v.0))
            .collect::<Result<_>>()?;
        let mut next = Vec::new();
        for ((_, at, prefix, wanted), t) in level.into_iter().zip(trees) {
            // Grouped by the first component (the list is sorted, so groups are runs).
            for g in wanted.chunk_by(|a, b| a.0.first() == b.0.first()) {
                let comp = g[0].0.first().copied().unwrap_or_default();
                let rel = prefix.join(OsStr::from_bytes(comp));
                let node = t
                    .find(comp)
                    .ok_or_else(|| bad(format!("{} is not in the snapshot", rel.display())))?;
                if let Some((_, name)) = g.iter().find(|w| w.0.len() == 1) {
                    if node.swamp.as_ref().and_then(|s| s.name.as_deref()) != Some(*name) {
                        return Err(bad(format!("{} is not Swamp {name}", rel.display())));
                    }
                    plan.add_all(repo, index, at, &rel, node)?;
                    continue;
                }
                let sub = match (&node.subtree, node.kind) {
                    (Some(sub), NodeKind::Dir) => *sub,
                    _ => return Err(bad(format!("{} is not a directory", rel.display()))),
                };
                let f = plan.add_folder(at, node, false);
                let below = g.iter().map(|w| (w.0[1..].to_vec(), w.1)).collect();
                next.push((sub, f, rel, below));
            }
        }
        level = next;
    }
    Ok(plan)
}
