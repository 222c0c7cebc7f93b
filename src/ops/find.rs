//! `find PATTERN`: which snapshots hold a path or Swamp name matching a glob, newest first.
//! A pattern matches an entry's name, its whole path (`/` first) or the name of the Swamp it
//! stores (`users/*/*`).

use std::collections::HashMap;

use globset::{GlobBuilder, GlobMatcher};
use serde::Serialize;

use crate::ops::progress::Progress;
use crate::ops::walk::walk;
use crate::repo::Repository;
use crate::repo::tree::NodeKind;
use crate::{Error, Id, Result};

/// Options of `find`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FindOptions {
    /// Glob matched against entry names, whole paths (`/data/*.hyd`) and Swamp names
    /// (`users/*/*`); `*` does not cross `/`, `**` does.
    pub pattern: String,
    /// Only search these snapshots (id prefixes or `latest`; repeatable).
    #[arg(long = "snapshot")]
    pub snapshots: Vec<String>,
    /// Only snapshots of this host.
    #[arg(long)]
    pub host: Option<String>,
}

/// One matching entry.
#[derive(Debug, Clone, Serialize)]
pub struct Match {
    /// Path relative to the snapshot root, starting with `/`.
    pub path: String,
    /// `file`, `dir` or `symlink`.
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// Size in bytes.
    pub size: u64,
    /// Modification time (unix ns).
    pub mtime_ns: i64,
    /// The Swamp it stores, when the pattern matched that name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swamp: Option<String>,
}

/// The matches in one snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    /// The snapshot.
    pub snapshot: Id,
    /// Its time.
    pub time: String,
    /// Its host.
    pub host: String,
    /// What matched, in tree order.
    pub matches: Vec<Match>,
}

/// Every snapshot with a match, newest first (the `--json` document is this list).
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Outcome(pub Vec<Found>);

/// Searches the snapshots.
pub fn run(repo: &Repository, opts: &FindOptions, _progress: &Progress) -> Result<Outcome> {
    let glob: GlobMatcher = GlobBuilder::new(&opts.pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| Error::InvalidInput(format!("bad pattern {:?}: {e}", opts.pattern)))?
        .compile_matcher();
    let mut snaps = if opts.snapshots.is_empty() {
        repo.snapshots()?
    } else {
        let mut v = Vec::new();
        for s in &opts.snapshots {
            let found = repo.find_snapshot(s)?;
            if !v.iter().any(|(id, _)| *id == found.0) {
                v.push(found);
            }
        }
        v.sort_by(|a, b| a.1.timestamp().cmp(&b.1.timestamp()).then(a.0.cmp(&b.0)));
        v
    };
    snaps.retain(|(_, s)| opts.host.as_ref().is_none_or(|h| &s.host == h));
    let index = repo.load_index()?;
    // Snapshots share most trees: the matches below a tree are computed once per tree id.
    let mut out = Vec::new();
    let mut memo: HashMap<Id, Vec<Match>> = HashMap::new();
    for (id, s) in snaps.iter().rev() {
        let matches = match memo.get(&s.tree) {
            Some(m) => m.clone(),
            None => {
                let mut m = Vec::new();
                walk(
                    repo,
                    &index,
                    &s.tree,
                    std::path::Path::new("/"),
                    &mut |v| {
                        let own = v.node.swamp.as_ref().and_then(|x| x.name.as_deref());
                        let by_swamp = own.filter(|n| glob.is_match(n));
                        if by_swamp.is_some()
                            || glob.is_match(std::ffi::OsStr::new(&v.node.name_lossy()))
                            || glob.is_match(v.path)
                        {
                            m.push(Match {
                                path: v.path.display().to_string(),
                                kind: v.node.kind,
                                size: v.node.size,
                                mtime_ns: v.node.mtime_ns,
                                swamp: by_swamp.map(String::from),
                            });
                        }
                        Ok(true)
                    },
                    &mut |_, _, e| Err(e),
                )?;
                memo.insert(s.tree, m.clone());
                m
            }
        };
        if !matches.is_empty() {
            out.push(Found {
                snapshot: *id,
                time: s.time.clone(),
                host: s.host.clone(),
                matches,
            });
        }
    }
    Ok(Outcome(out))
}
