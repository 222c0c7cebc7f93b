//! Treasure-level reads of a stored Swamp: its keys (with value sizes and modified times) and
//! the values of chosen keys. A logical capture is read through its record index, touching only
//! the record groups that hold the keys asked for; a file capture is read whole and replayed.

use std::collections::BTreeSet;

use super::index::{IndexEntry, decode_page};
use super::msgpack;
use super::stream::decode_group;
use crate::hyd::replay_bytes;
use crate::repo::Repository;
use crate::repo::blob::BlobType;
use crate::repo::index::Index;
use crate::repo::tree::Node;
use crate::{Error, Result};

/// A stored file capture, replayed.
fn replay_node(repo: &Repository, index: &Index, node: &Node) -> Result<crate::hyd::Replay> {
    let mut bytes = Vec::with_capacity(node.size as usize);
    for id in &node.content {
        bytes.extend_from_slice(&repo.read_blob(index, BlobType::Data, id)?);
    }
    replay_bytes(&bytes).map_err(|e| Error::corrupt("stored .hyd file", e.to_string()))
}

/// The record index of a logical node: each page's entries, in group order.
fn pages(repo: &Repository, index: &Index, node: &Node) -> Result<Vec<Vec<IndexEntry>>> {
    let l = node.logical().expect("a logical node");
    l.index
        .iter()
        .map(|id| {
            let p = repo.read_blob(index, BlobType::Data, id)?;
            decode_page(&p).map_err(|e| {
                Error::corrupt(format!("record index page {}", id.short()), e.to_string())
            })
        })
        .collect()
}

/// Every record of a stored Swamp: key, value size and modified time, in key order.
pub fn list(repo: &Repository, index: &Index, node: &Node) -> Result<Vec<IndexEntry>> {
    if node.logical().is_some() {
        return Ok(pages(repo, index, node)?.into_iter().flatten().collect());
    }
    let r = replay_node(repo, index, node)?;
    Ok(r.live
        .into_iter()
        .map(|(key, v)| IndexEntry {
            key,
            offset: 0,
            value_len: v.len() as u32,
            value_hash: xxhash_rust::xxh64::xxh64(&v, 0),
            modified_ns: msgpack::modified_ns(&v).ok().flatten(),
        })
        .collect())
}

/// The values of `keys` in a stored Swamp (keys it does not hold are left out), in key order.
pub fn values(
    repo: &Repository,
    index: &Index,
    node: &Node,
    keys: &BTreeSet<Vec<u8>>,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    if node.logical().is_none() {
        let r = replay_node(repo, index, node)?;
        return Ok(r
            .live
            .into_iter()
            .filter(|(k, _)| keys.contains(k))
            .collect());
    }
    let mut out = Vec::new();
    for (gi, page) in pages(repo, index, node)?.iter().enumerate() {
        let want: Vec<&IndexEntry> = page.iter().filter(|e| keys.contains(&e.key)).collect();
        if want.is_empty() {
            continue;
        }
        let gid = node.content.get(gi).ok_or_else(|| {
            Error::corrupt("logical Swamp", "more index pages than record groups")
        })?;
        let group = repo.read_blob(index, BlobType::Data, gid)?;
        let recs = decode_group(&group, None)
            .map_err(|e| Error::corrupt("record group", e.to_string()))?;
        for e in want {
            let r = recs
                .iter()
                .find(|r| r.offset == e.offset && r.key == e.key)
                .ok_or_else(|| {
                    Error::corrupt("record index page", "it names a record its group lacks")
                })?;
            out.push((r.key.to_vec(), r.value.to_vec()));
        }
    }
    Ok(out)
}
