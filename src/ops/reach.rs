//! Every tree reachable from a set of root trees, each loaded once, level by level in
//! parallel (used by prune to mark what is used and by copy to carry it over).

use std::collections::HashSet;

use rayon::prelude::*;

use crate::repo::Repository;
use crate::repo::index::Index;
use crate::repo::tree::Tree;
use crate::{Id, Result};

/// Calls `visit(id, stored bytes, tree)` once for every distinct tree reachable from `roots`.
/// Fails on the first tree that cannot be read.
pub fn for_each_tree(
    repo: &Repository,
    index: &Index,
    roots: impl IntoIterator<Item = Id>,
    mut visit: impl FnMut(Id, Vec<u8>, Tree),
) -> Result<()> {
    let mut queued: HashSet<Id> = HashSet::new();
    let mut frontier: Vec<Id> = roots.into_iter().filter(|id| queued.insert(*id)).collect();
    while !frontier.is_empty() {
        let level: Vec<(Id, Vec<u8>, Tree)> = frontier
            .par_iter()
            .map(|id| {
                let bytes = repo.tree_blob(index, id)?;
                let tree = Tree::decode(&bytes)?;
                Ok((*id, bytes, tree))
            })
            .collect::<Result<_>>()?;
        frontier = Vec::new();
        for (id, bytes, tree) in level {
            frontier.extend(
                tree.nodes
                    .iter()
                    .filter_map(|n| n.subtree)
                    .filter(|s| queued.insert(*s)),
            );
            visit(id, bytes, tree);
        }
    }
    Ok(())
}
