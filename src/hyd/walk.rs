//! Listing the swamps under a data root.
//!
//! Walks the tree in sorted order (so results are deterministic) and reports
//! `.hyd` files, V1 swamp folders (recognised by their `meta` file; not descended
//! into), leftover compaction temp files and anything else.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::v1::{V1Swamp, detect_v1_swamp};
use super::{COMPACT_SUFFIX, HYD_SUFFIX};

/// One thing found under a data root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A `.hyd` file.
    Hyd(PathBuf),
    /// A V1 swamp folder.
    V1(V1Swamp),
    /// A `<name>.hyd.compact` compaction temp file.
    CompactTemp(PathBuf),
    /// Any other file.
    Other(PathBuf),
}

/// Lists everything under `root`, sorted by path. Symlinks are reported as
/// [`Found::Other`] and not followed.
pub fn walk_root(root: &Path) -> io::Result<Vec<Found>> {
    let mut out = Vec::new();
    walk_dir(root, &mut out)?;
    Ok(out)
}

fn walk_dir(dir: &Path, out: &mut Vec<Found>) -> io::Result<()> {
    let mut entries: Vec<(PathBuf, fs::FileType)> = fs::read_dir(dir)?
        .map(|e| e.and_then(|e| Ok((e.path(), e.file_type()?))))
        .collect::<io::Result<_>>()?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, ft) in entries {
        if ft.is_dir() {
            match detect_v1_swamp(&path)? {
                Some(v1) => out.push(Found::V1(v1)),
                None => walk_dir(&path, out)?,
            }
        } else if ft.is_file() {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(HYD_SUFFIX) {
                out.push(Found::Hyd(path));
            } else if name.ends_with(&format!("{HYD_SUFFIX}{COMPACT_SUFFIX}")) {
                out.push(Found::CompactTemp(path));
            } else {
                out.push(Found::Other(path));
            }
        } else {
            out.push(Found::Other(path));
        }
    }
    Ok(())
}

/// Only the `.hyd` files under `root`, sorted.
pub fn hyd_files(root: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(walk_root(root)?
        .into_iter()
        .filter_map(|f| match f {
            Found::Hyd(p) => Some(p),
            _ => None,
        })
        .collect())
}

/// Removes `dir` and its empty ancestors, stopping at `root` (never removed).
pub fn remove_empty_dirs(mut dir: &Path, root: &Path) {
    while dir != root && dir.starts_with(root) {
        if fs::remove_dir(dir).is_err() {
            break;
        }
        match dir.parent() {
            Some(p) => dir = p,
            None => break,
        }
    }
}
