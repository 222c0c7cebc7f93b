//! `verify --read-data` for Swamps: every stored `.hyd` file is read back through its blobs and
//! checked as HydrAIDE's loader would load it ([`check_stream`]): CRCs, Snappy, entries.

use std::collections::HashSet;
use std::io::{self, Read};
use std::path::Path;

use crate::hyd::HydError;
use crate::hyd::stream::check_stream;
use crate::ops::restore::walk_tree;
use crate::ops::verify::{Affected, Problem, ProblemKind};
use crate::repo::Repository;
use crate::repo::blob::BlobType;
use crate::repo::filter::SwampFilter;
use crate::repo::index::Index;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::Node;
use crate::{Id, Result};

/// A stored file's bytes, read blob by blob.
struct BlobReader<'a> {
    repo: &'a Repository,
    index: &'a Index,
    ids: std::slice::Iter<'a, Id>,
    cur: Vec<u8>,
    at: usize,
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.cur.len() {
            let Some(id) = self.ids.next() else {
                return Ok(0);
            };
            self.cur = self
                .repo
                .read_blob(self.index, BlobType::Data, id)
                .map_err(io::Error::other)?;
            self.at = 0;
        }
        let n = buf.len().min(self.cur.len() - self.at);
        buf[..n].copy_from_slice(&self.cur[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Whether the node's content is meant to load: a `.hyd` capture, or the loadable prefix of a
/// quarantined one (older snapshots stored quarantined files raw, without a `raw` list).
fn meant_to_load(n: &Node) -> bool {
    n.swamp
        .as_ref()
        .is_some_and(|s| s.format >= 2 && (s.problem.is_none() || !s.raw.is_empty()))
        && !n.content.is_empty()
}

/// Checks a logical Swamp: its record stream decodes, matches the live-set digest, record count
/// and length stored at backup, and its index pages decode and list exactly its records.
/// `Ok(Some(why))` is damage; `Err` a blob that cannot be read.
fn check_logical(repo: &Repository, index: &Index, n: &Node) -> Result<Option<String>> {
    let Some(l) = n.logical() else {
        return Ok(None);
    };
    let with_recipe = usize::from(l.recipe_len > 0);
    if l.index.len() + with_recipe != n.content.len() {
        return Ok(Some(format!(
            "{} index pages for {} content blobs",
            l.index.len(),
            n.content.len()
        )));
    }
    let mut stream = Vec::new();
    let mut groups = Vec::new();
    for id in &n.content[..l.index.len()] {
        let b = repo.read_blob(index, BlobType::Data, id)?;
        groups.push(b.len());
        stream.extend_from_slice(&b);
    }
    let live = match crate::logical::rebuild::decode_checked(n, &stream) {
        Ok(live) => live,
        Err(e) => return Ok(Some(e.to_string())),
    };
    if let Some(id) = n.content.get(l.index.len()) {
        let recipe = repo.read_blob(index, BlobType::Data, id)?;
        let name = n.swamp.as_ref().and_then(|s| s.name.as_deref());
        let file = crate::logical::recipe::apply(&l.header, &recipe, &live, name);
        let loads = file.as_ref().is_ok_and(|f| {
            recipe.len() as u64 == l.recipe_len
                && crate::hyd::replay_bytes(f).is_ok_and(|r| r.live == live)
        });
        if !loads {
            return Ok(Some("its block recipe does not rebuild the records".into()));
        }
    }
    let mut at = 0usize;
    for (page, len) in l.index.iter().zip(groups) {
        let p = repo.read_blob(index, BlobType::Data, page)?;
        let entries = match crate::logical::index::decode_page(&p) {
            Ok(e) => e,
            Err(e) => return Ok(Some(format!("index page {}: {e}", page.short()))),
        };
        let recs = match crate::logical::stream::decode_group(&stream[at..at + len], None) {
            Ok(r) => r,
            Err(e) => return Ok(Some(e.to_string())),
        };
        let agree = entries.len() == recs.len()
            && entries.iter().zip(&recs).all(|(e, r)| {
                e.key == r.key
                    && e.offset == r.offset
                    && e.value_len as usize == r.value.len()
                    && e.value_hash == xxhash_rust::xxh64::xxh64(r.value, 0)
            });
        if !agree {
            return Ok(Some(format!(
                "index page {} does not list its group's records",
                page.short()
            )));
        }
        at += len;
    }
    Ok(None)
}

/// Checks every stored `.hyd` file of `snapshots` selected by `only`
/// once per distinct content. Files whose blobs cannot be read are left to the blob check.
pub fn check_swamps(
    repo: &Repository,
    index: &Index,
    snapshots: &[(Id, Snapshot)],
    only: &SwampFilter,
) -> Result<Vec<Problem>> {
    let mut seen: HashSet<Vec<Id>> = HashSet::new();
    // A logical Swamp is checked once per record stream and facts (digest, count, pages).
    let mut seen_logical: HashSet<(Vec<Id>, crate::repo::tree::LogicalInfo)> = HashSet::new();
    let mut problems = Vec::new();
    for (sid, s) in snapshots {
        let mut found = Vec::new();
        let mut logical = Vec::new();
        let walked = walk_tree(repo, index, &s.tree, Path::new(""), &mut |rel, n| {
            if only.selects(n) && n.logical().is_some() {
                logical.push((rel.to_path_buf(), n.clone()));
            } else if only.selects(n) && meant_to_load(n) && !seen.contains(&n.content) {
                found.push((rel.to_path_buf(), n.content.clone()));
            }
            Ok(())
        });
        // Unreadable trees are reported by the structural check.
        if walked.is_err() {
            continue;
        }
        for (rel, node) in logical {
            let facts = node.logical().cloned().unwrap_or_default();
            if !seen_logical.insert((node.content.clone(), facts)) {
                continue;
            }
            let _span = tracing::info_span!("swamp", path = %rel.display()).entered();
            tracing::debug!(snapshot = %sid.short(), "checking the stored record stream");
            match check_logical(repo, index, &node) {
                Ok(None) => {}
                Ok(Some(why)) => problems.push(Problem {
                    kind: ProblemKind::Swamp,
                    object: format!("file {} in snapshot {}", rel.display(), sid.short()),
                    detail: format!("stored records of a logical Swamp: {why}"),
                    blobs: Vec::new(),
                    affected: vec![Affected {
                        snapshot: sid.short(),
                        path: rel.display().to_string(),
                    }],
                }),
                // Unreadable blobs are reported by the blob check.
                Err(_) => {}
            }
        }
        for (rel, content) in found {
            if !seen.insert(content.clone()) {
                continue;
            }
            let r = BlobReader {
                repo,
                index,
                ids: content.iter(),
                cur: Vec::new(),
                at: 0,
            };
            let _span = tracing::info_span!("swamp", path = %rel.display()).entered();
            tracing::debug!(snapshot = %sid.short(), "checking the stored .hyd file");
            match check_stream(r) {
                Ok(_) | Err(HydError::Io(_)) => {}
                Err(e) => problems.push(Problem {
                    kind: ProblemKind::Swamp,
                    object: format!("file {} in snapshot {}", rel.display(), sid.short()),
                    detail: format!("stored .hyd file would not load in HydrAIDE: {e}"),
                    blobs: Vec::new(),
                    affected: vec![Affected {
                        snapshot: sid.short(),
                        path: rel.display().to_string(),
                    }],
                }),
            }
        }
    }
    Ok(problems)
}
