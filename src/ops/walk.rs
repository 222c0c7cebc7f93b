//! The one walker over a snapshot's trees: depth first, parents before children, with an
//! explicit stack (a tree chain of any depth costs no call stack). Each node comes with its
//! path and the name of the Swamp it belongs to (its own, or its nearest enclosing folder's).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::repo::Repository;
use crate::repo::index::Index;
use crate::repo::tree::Node;
use crate::{Error, Id, Result};

/// One node met by [`walk`].
pub struct Visit<'a> {
    /// How deep the node is (0: an entry of the tree walked).
    pub depth: usize,
    /// Its path: the prefix given to [`walk`] joined with the names down to it.
    pub path: &'a Path,
    /// The node.
    pub node: &'a Node,
    /// The Swamp it belongs to: its own name or the nearest enclosing Swamp folder's.
    pub swamp: Option<&'a str>,
}

/// Walks the trees below `tree`, calling `visit` for every node; the walk goes into a node's
/// subtree when `visit` returns `true`. A tree that cannot be loaded goes to `unreadable`
/// (its path, its id, the error): an error it returns ends the walk, `Ok` skips the tree.
pub fn walk(
    repo: &Repository,
    index: &Index,
    tree: &Id,
    prefix: &Path,
    visit: &mut dyn FnMut(Visit<'_>) -> Result<bool>,
    unreadable: &mut dyn FnMut(&Path, &Id, Error) -> Result<()>,
) -> Result<()> {
    let mut path = prefix.to_path_buf();
    let root = match repo.load_tree(index, tree) {
        Ok(t) => t,
        Err(e) => return unreadable(&path, tree, e),
    };
    // Each level: its remaining nodes and the Swamp its folder belongs to.
    let mut stack = vec![(root.nodes.into_iter(), None::<String>)];
    while let Some((level, swamp)) = stack.last_mut() {
        let Some(n) = level.next() else {
            stack.pop();
            if !stack.is_empty() {
                path.pop();
            }
            continue;
        };
        // Names are single components (checked when the tree was decoded), so push and pop
        // stay in step.
        path.push(OsStr::from_bytes(&n.name));
        let own = n
            .swamp
            .as_ref()
            .and_then(|s| s.name.clone())
            .or_else(|| swamp.clone());
        let descend = visit(Visit {
            depth: stack.len() - 1,
            path: &path,
            node: &n,
            swamp: own.as_deref(),
        })?;
        let sub = n.subtree.filter(|_| descend);
        match sub.map(|sub| (sub, repo.load_tree(index, &sub))) {
            Some((_, Ok(t))) => stack.push((t.nodes.into_iter(), own)),
            Some((sub, Err(e))) => {
                unreadable(&path, &sub, e)?;
                path.pop();
            }
            None => {
                path.pop();
            }
        }
    }
    Ok(())
}
