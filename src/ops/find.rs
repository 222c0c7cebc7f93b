//! `find PATTERN`: which snapshots hold a path or Swamp name matching a glob, newest first.
//! A pattern matches an entry's name, its whole path (`/` first) or the name of the Swamp it
//! stores (`users/*/*`).

use std::collections::HashMap;

use globset::{GlobBuilder, GlobMatcher};
use serde::Serialize;

use crate::ops::progress::Progress;
use crate::ops::walk::walk;
use crate::repo::Repository;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::NodeKind;
use crate::{Error, Id, Result};

/// Options of `find`: a `PATTERN` for entry names, paths and Swamp names, or `--key PATTERN`
/// for Treasure keys ([`crate::ops::find_key`]); one of the two.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["pattern", "key"])))]
pub struct FindOptions {
    /// Glob matched against entry names, whole paths (`/data/*.hyd`) and Swamp names
    /// (`users/*/*`); `*` does not cross `/`, `**` does.
    pub pattern: Option<String>,
    /// Search Treasure keys instead: records whose key matches this glob (`*`, `?`, `[...]`; a
    /// plain key matches itself), per Swamp and key the snapshots holding it, oldest first,
    /// marking where the value changed.
    #[arg(long, value_name = "PATTERN")]
    pub key: Option<String>,
    /// With --key: only Swamps whose name matches this glob.
    #[arg(long, value_name = "GLOB", requires = "key")]
    pub swamp: Option<String>,
    /// Only search these snapshots (id prefixes or `latest`; repeatable).
    #[arg(long = "snapshot")]
    pub snapshots: Vec<String>,
    /// Only snapshots of this host.
    #[arg(long)]
    pub host: Option<String>,
}

impl FindOptions {
    /// The record-key search these options ask for (`--key`), if they do.
    pub fn key_search(&self) -> Option<crate::ops::find_key::FindKeyOptions> {
        self.key
            .as_ref()
            .map(|key| crate::ops::find_key::FindKeyOptions {
                key: key.clone(),
                swamp: self.swamp.clone(),
                snapshots: self.snapshots.clone(),
                host: self.host.clone(),
            })
    }
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

/// The snapshots to search, oldest first: `snapshots` (id prefixes or `latest`; none: all),
/// of `host` only if given.
pub(crate) fn selected_snapshots(
    repo: &Repository,
    snapshots: &[String],
    host: Option<&str>,
) -> Result<Vec<(Id, Snapshot)>> {
    let mut snaps = if snapshots.is_empty() {
        repo.snapshots()?
    } else {
        let mut v = Vec::new();
        for s in snapshots {
            let found = repo.find_snapshot(s)?;
            if !v.iter().any(|(id, _)| *id == found.0) {
                v.push(found);
            }
        }
        v.sort_by(|a, b| a.1.timestamp().cmp(&b.1.timestamp()).then(a.0.cmp(&b.0)));
        v
    };
    snaps.retain(|(_, s)| host.is_none_or(|h| s.host == h));
    Ok(snaps)
}

/// Searches the snapshots (`find PATTERN`; `--key` is [`crate::ops::find_key::run`]).
pub fn run(repo: &Repository, opts: &FindOptions, _progress: &Progress) -> Result<Outcome> {
    let Some(pattern) = opts.pattern.as_deref() else {
        return Err(Error::InvalidInput(
            "find needs a PATTERN (names, paths, Swamp names) or --key PATTERN (Treasure keys)"
                .into(),
        ));
    };
    let glob: GlobMatcher = GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| Error::InvalidInput(format!("bad pattern {pattern:?}: {e}")))?
        .compile_matcher();
    let snaps = selected_snapshots(repo, &opts.snapshots, opts.host.as_deref())?;
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
