//! What is backed up: file-system metadata (and the HydrAIDE-aware source); exclude patterns are
//! [`crate::pattern`]'s.

pub(crate) mod build;
pub mod dir;
pub mod hydraide;
pub mod open;
pub(crate) mod pipeline;
pub mod report;
pub mod reuse;
pub(crate) mod walk;

pub use open::{Identity, Trouble, open_checked, trouble};

/// How the backup's walk and readers report progress without knowing the display: called
/// with (items, bytes) to add (found by the walk; read by the readers).
pub(crate) type Tally<'a> = &'a (dyn Fn(u64, u64) + Sync);

use crate::repo::tree::{Node, NodeKind};
use crate::{Error, Result};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

/// Builds a tree node (without content) from `lstat` metadata; `None` for special files
/// (sockets, FIFOs, devices), which are not backed up.
pub fn node_from_metadata(name: &[u8], md: &Metadata) -> Option<Node> {
    let ft = md.file_type();
    let kind = if ft.is_file() {
        NodeKind::File
    } else if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_symlink() {
        NodeKind::Symlink
    } else {
        return None;
    };
    Some(Node {
        name: name.to_vec(),
        kind,
        mode: md.mode() & 0o7777,
        mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
        inode: md.ino(),
        uid: md.uid(),
        gid: md.gid(),
        size: if kind == NodeKind::File { md.len() } else { 0 },
        content: Vec::new(),
        subtree: None,
        target: None,
        swamp: None,
    })
}

/// The data root of a HydrAIDE instance, from the operator CLI's instance list
/// (`~/.hydraide/metadata.json`: `{"<instance>": {"base_path": "..."}}`): `<base_path>/data`.
pub fn instance_data_root(instance: &str) -> Result<std::path::PathBuf> {
    let home = std::env::var_os("HOME").ok_or_else(|| {
        Error::InvalidInput("HOME is not set; cannot find ~/.hydraide/metadata.json".into())
    })?;
    let path = std::path::Path::new(&home)
        .join(".hydraide")
        .join("metadata.json");
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::InvalidInput(format!("{}: not valid JSON: {e}", path.display())))?;
    let base = v
        .get(instance)
        .and_then(|i| i.get("base_path"))
        .and_then(|b| b.as_str())
        .ok_or_else(|| {
            Error::InvalidInput(format!(
                "instance {instance:?} is not in {}",
                path.display()
            ))
        })?;
    Ok(std::path::Path::new(base).join("data"))
}
