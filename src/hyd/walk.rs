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

/// Walks with an explicit stack of sorted listings (pre-order, as a recursion would), so a deep
/// chain of folders costs heap, not stack.
fn walk_dir(root: &Path, out: &mut Vec<Found>) -> io::Result<()> {
    let mut stack = vec![sorted_entries(root)?.into_iter()];
    while let Some(top) = stack.last_mut() {
        let Some((path, ft)) = top.next() else {
            stack.pop();
            continue;
        };
        if ft.is_dir() {
            match detect_v1_swamp(&path)? {
                Some(v1) => out.push(Found::V1(v1)),
                None => stack.push(sorted_entries(&path)?.into_iter()),
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

fn sorted_entries(dir: &Path) -> io::Result<Vec<(PathBuf, fs::FileType)>> {
    let mut entries: Vec<(PathBuf, fs::FileType)> = fs::read_dir(dir)?
        .map(|e| e.and_then(|e| Ok((e.path(), e.file_type()?))))
        .collect::<io::Result<_>>()?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
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

/// Destroys a Swamp as HydrAIDE does: deletes its `.hyd` file (or V1 folder), then the parent
/// folders that became empty, up to `root` (never removed).
pub fn destroy(root: &Path, swamp: &Path) -> io::Result<()> {
    if fs::symlink_metadata(swamp)?.is_dir() {
        fs::remove_dir_all(swamp)?;
    } else {
        fs::remove_file(swamp)?;
    }
    remove_empty_dirs(swamp.parent().unwrap_or(root), root);
    Ok(())
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
