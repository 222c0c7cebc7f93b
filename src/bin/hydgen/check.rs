//! Verifying a data root: every `.hyd` file must load (as HydrAIDE loads it) and
//! every V1 swamp's `meta` and chunk files must decode.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use hydrabackup::hyd::header::Version;
use hydrabackup::hyd::replay::replay_file;
use hydrabackup::hyd::scan::scan_file;
use hydrabackup::hyd::v1::{decode_chunk, read_meta};
use hydrabackup::hyd::walk::{Found, walk_root};

/// Counts and failures found by [`check`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// `.hyd` files seen.
    pub hyd_files: u64,
    /// Of which version 3.
    pub v3: u64,
    /// Of which version 2.
    pub v2: u64,
    /// Blocks in loadable files.
    pub blocks: u64,
    /// Entries in loadable files.
    pub entries: u64,
    /// Live keys in loadable files.
    pub live_keys: u64,
    /// Loadable files that carry no swamp name.
    pub nameless: u64,
    /// Bytes of `.hyd` files.
    pub hyd_bytes: u64,
    /// Loadable files whose header counts differ from their blocks.
    pub stale_headers: u64,
    /// V1 swamp folders.
    pub v1_swamps: u64,
    /// V1 chunk files.
    pub v1_chunks: u64,
    /// Bytes of V1 folders.
    pub v1_bytes: u64,
    /// Leftover `.hyd.compact` files.
    pub compact_temps: u64,
    /// Other files.
    pub others: u64,
    /// Files or folders that do not load, with the reason.
    pub failures: Vec<(PathBuf, String)>,
}

/// Checks every swamp under `root`.
pub fn check(root: &Path) -> io::Result<CheckReport> {
    let mut r = CheckReport::default();
    for found in walk_root(root)? {
        match found {
            Found::Hyd(p) => check_hyd(&p, &mut r),
            Found::V1(v1) => {
                r.v1_swamps += 1;
                r.v1_bytes += v1.meta_len;
                if read_meta(&v1.dir).is_none() {
                    r.failures
                        .push((v1.dir.join("meta"), "meta is not a HydrAIDE gob".into()));
                }
                for (name, len) in &v1.chunks {
                    r.v1_chunks += 1;
                    r.v1_bytes += len;
                    let p = v1.dir.join(name);
                    let res = fs::read(&p)
                        .map_err(|e| e.to_string())
                        .and_then(|d| decode_chunk(&d).map_err(|e| e.to_string()));
                    if let Err(e) = res {
                        r.failures.push((p, e));
                    }
                }
            }
            Found::CompactTemp(_) => r.compact_temps += 1,
            Found::Other(_) => r.others += 1,
        }
    }
    Ok(r)
}

fn check_hyd(p: &Path, r: &mut CheckReport) {
    r.hyd_files += 1;
    r.hyd_bytes += fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    match replay_file(p) {
        Ok(rep) => {
            match rep.header.version {
                Version::V3 => r.v3 += 1,
                Version::V2 => r.v2 += 1,
            }
            r.blocks += rep.blocks;
            r.entries += rep.entries;
            r.live_keys += rep.live.len() as u64;
            if rep.header.block_count != rep.blocks || rep.header.entry_count != rep.entries {
                r.stale_headers += 1;
            }
            if rep.name.is_none_or(|n| n.is_empty()) {
                r.nameless += 1;
            }
        }
        Err(e) => {
            let detail = scan_file(p)
                .ok()
                .and_then(|s| s.problem)
                .map(|pr| format!(" ({pr})"))
                .unwrap_or_default();
            r.failures.push((p.to_path_buf(), format!("{e}{detail}")));
        }
    }
}

/// Checks that every `.hyd` file under `root` holds a live set that `hydgen live`'s log at
/// `log` records for its path (a state the writer really had); returns how many matched and
/// the files that match none.
pub fn check_logged(root: &Path, log: &Path) -> io::Result<(u64, Vec<(PathBuf, String)>)> {
    let mut states: std::collections::HashMap<String, std::collections::HashSet<u64>> =
        std::collections::HashMap::new();
    for e in crate::livelog::read_log(log)? {
        states.entry(e.swamp).or_default().insert(e.digest);
    }
    let (mut matched, mut failures) = (0, Vec::new());
    for found in walk_root(root)? {
        let Found::Hyd(p) = found else { continue };
        let rel = p
            .strip_prefix(root)
            .unwrap_or(&p)
            .to_string_lossy()
            .into_owned();
        match replay_file(&p) {
            Ok(rep) => {
                let d = hydrabackup::hyd::live_digest(&rep.live);
                if states.get(&rel).is_some_and(|s| s.contains(&d)) {
                    matched += 1;
                } else {
                    failures.push((p, "in no state the live log records".into()));
                }
            }
            Err(e) => failures.push((p, e.to_string())),
        }
    }
    Ok((matched, failures))
}
