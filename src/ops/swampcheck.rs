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

/// Checks every stored `.hyd` file of `snapshots` selected by `only`
/// once per distinct content. Files whose blobs cannot be read are left to the blob check.
pub fn check_swamps(
    repo: &Repository,
    index: &Index,
    snapshots: &[(Id, Snapshot)],
    only: &SwampFilter,
) -> Result<Vec<Problem>> {
    let mut seen: HashSet<Vec<Id>> = HashSet::new();
    let mut problems = Vec::new();
    for (sid, s) in snapshots {
        let mut found = Vec::new();
        let walked = walk_tree(repo, index, &s.tree, Path::new(""), &mut |rel, n| {
            if only.selects(n) && meant_to_load(n) && !seen.contains(&n.content) {
                found.push((rel.to_path_buf(), n.content.clone()));
            }
            Ok(())
        });
        // Unreadable trees are reported by the structural check.
        if walked.is_err() {
            continue;
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
