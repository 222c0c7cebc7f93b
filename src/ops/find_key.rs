//! `find --key`: which snapshots and Swamps hold Treasures whose key matches a pattern, and
//! when each value changed. Each distinct tree is loaded once, whatever the number of snapshots
//! sharing it; logical captures are searched through their record index pages (each distinct
//! page read once); file captures are replayed, once per distinct content.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

use globset::{Glob, GlobMatcher};
use serde::Serialize;

use crate::logical::index::IndexEntry;
use crate::ops::progress::Progress;
use crate::repo::filter::SwampFilter;
use crate::repo::index::Index;
use crate::repo::tree::{Node, Tree};
use crate::repo::{DamagedSnapshot, Repository};
use crate::{Error, Id, Result};

/// Options of `find --key` (on the command line: [`crate::ops::find::FindOptions`] with
/// `--key`).
#[derive(Debug, Clone, Default)]
pub struct FindKeyOptions {
    /// Treasure keys matching this glob (`*`, `?`, `[...]`; a plain key matches itself).
    pub key: String,
    /// Only Swamps whose name matches this glob.
    pub swamp: Option<String>,
    /// Only these snapshots (id prefixes or `latest`; none: all).
    pub snapshots: Vec<String>,
    /// Only snapshots of this host.
    pub host: Option<String>,
}

/// One snapshot holding a matching Treasure.
#[derive(Debug, Clone, Serialize)]
pub struct Seen {
    /// The snapshot (short id).
    pub snapshot: String,
    /// Its time.
    pub time: String,
    /// Bytes of the value.
    pub size: u32,
    /// The Treasure's modified time (unix ns), when its value carries one.
    pub modified_ns: Option<i64>,
    /// Whether the value differs from the one in the previous snapshot listed (true for the
    /// first).
    pub changed: bool,
}

/// A matching Treasure of one Swamp across snapshots.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    /// The Swamp's name (or, if unknown, its path).
    pub swamp: String,
    /// The key (invalid UTF-8 replaced).
    pub key: String,
    /// Snapshots holding it, oldest first.
    pub seen: Vec<Seen>,
}

/// The `--json` document of `find`.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Snapshots searched.
    pub snapshots: usize,
    /// Matches, by Swamp and key.
    pub found: Vec<Found>,
    /// Snapshots skipped because they are damaged.
    pub damaged_snapshots: Vec<DamagedSnapshot>,
}

/// Matching records of one stored Swamp: (key, size, value hash, modified).
type Hits = Vec<(Vec<u8>, u32, u64, Option<i64>)>;

/// Sightings of each (Swamp, key), with the value hash of each.
type Sightings = BTreeMap<(String, Vec<u8>), Vec<(Seen, u64)>>;

/// The `.hyd` Swamps below a tree: (path relative to it, node).
type Below = Vec<(PathBuf, Node)>;

/// The `.hyd` Swamps below tree `id`, from `memo` for every subtree seen before (snapshots share
/// unchanged subtrees, so each distinct tree is loaded once); children first, without recursion.
fn swamps_below(
    repo: &Repository,
    index: &Index,
    id: &Id,
    memo: &mut HashMap<Id, Arc<Below>>,
) -> Result<Arc<Below>> {
    let mut stack: Vec<(Id, Option<Tree>)> = vec![(*id, None)];
    while let Some((tid, tree)) = stack.pop() {
        if memo.contains_key(&tid) {
            continue;
        }
        match tree {
            None => {
                let t = repo.load_tree(index, &tid)?;
                let missing: Vec<Id> = t
                    .nodes
                    .iter()
                    .filter_map(|n| n.subtree)
                    .filter(|s| !memo.contains_key(s))
                    .collect();
                stack.push((tid, Some(t)));
                stack.extend(missing.into_iter().map(|m| (m, None)));
            }
            Some(t) => {
                let mut list = Below::new();
                for n in t.nodes {
                    let name = PathBuf::from(std::ffi::OsStr::from_bytes(&n.name));
                    if let Some(sub) = n.subtree.and_then(|s| memo.get(&s)) {
                        list.extend(sub.iter().map(|(p, m)| (name.join(p), m.clone())));
                    }
                    if n.swamp
                        .as_ref()
                        .is_some_and(|s| s.format >= 2 && s.problem.is_none())
                    {
                        list.push((name, n));
                    }
                }
                memo.insert(tid, Arc::new(list));
            }
        }
    }
    Ok(memo[id].clone())
}

/// Searches every snapshot, oldest first.
pub fn run(repo: &Repository, opts: &FindKeyOptions, _progress: &Progress) -> Result<Outcome> {
    let glob: GlobMatcher = Glob::new(&opts.key)
        .map_err(|e| Error::InvalidInput(format!("bad key pattern {:?}: {e}", opts.key)))?
        .compile_matcher();
    let filter = SwampFilter::new(opts.swamp.as_slice())?;
    let index = repo.load_index()?;
    let snaps = crate::ops::find::selected_snapshots(repo, &opts.snapshots, opts.host.as_deref())?;
    let keep = |e: &IndexEntry| glob.is_match(String::from_utf8_lossy(&e.key).as_ref());
    let mut by_page: HashMap<Id, Hits> = HashMap::new();
    let mut by_content: HashMap<Vec<Id>, Hits> = HashMap::new();
    let mut trees: HashMap<Id, Arc<Below>> = HashMap::new();
    let mut found: Sightings = BTreeMap::new();
    for (sid, snap) in &snaps {
        let below = swamps_below(repo, &index, &snap.tree, &mut trees)?;
        let nodes = below.iter().filter(|(_, n)| filter.selects(n));
        for (path, n) in nodes {
            let path = path.display().to_string();
            let mut hits: Hits = Vec::new();
            let hit = |e: IndexEntry| (e.key, e.value_len, e.value_hash, e.modified_ns);
            match n.logical() {
                Some(l) => {
                    for page in &l.index {
                        if !by_page.contains_key(page) {
                            let bytes =
                                repo.read_blob(&index, crate::repo::blob::BlobType::Data, page)?;
                            let entries =
                                crate::logical::index::decode_page(&bytes).map_err(|e| {
                                    Error::corrupt(
                                        format!("record index page {}", page.short()),
                                        e.to_string(),
                                    )
                                })?;
                            let h = entries.into_iter().filter(|e| keep(e)).map(hit).collect();
                            by_page.insert(*page, h);
                        }
                        hits.extend(by_page[page].iter().cloned());
                    }
                }
                None => {
                    if !by_content.contains_key(&n.content) {
                        let all = crate::logical::treasure::list(repo, &index, n)?;
                        let h = all.into_iter().filter(|e| keep(e)).map(hit).collect();
                        by_content.insert(n.content.clone(), h);
                    }
                    hits = by_content[&n.content].clone();
                }
            }
            let swamp = n
                .swamp
                .as_ref()
                .and_then(|s| s.name.clone())
                .unwrap_or(path);
            for (key, size, hash, modified_ns) in hits {
                let list = found.entry((swamp.clone(), key)).or_default();
                let changed = list.last().is_none_or(|(_, h)| *h != hash);
                list.push((
                    Seen {
                        snapshot: sid.short(),
                        time: snap.time.clone(),
                        size,
                        modified_ns,
                        changed,
                    },
                    hash,
                ));
            }
        }
    }
    Ok(Outcome {
        snapshots: snaps.len(),
        found: found
            .into_iter()
            .map(|((swamp, key), seen)| Found {
                swamp,
                key: String::from_utf8_lossy(&key).into_owned(),
                seen: seen.into_iter().map(|s| s.0).collect(),
            })
            .collect(),
        damaged_snapshots: repo.damaged_snapshots(),
    })
}
