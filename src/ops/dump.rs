//! `dump`: one file of a snapshot to a writer (stdout), or a folder as a tar archive; and
//! [`lookup`], which finds a path in a snapshot (also for `restore SNAP:subpath`).

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::Serialize;

use crate::ops::progress::Progress;
use crate::repo::Repository;
use crate::repo::blob::BlobType;
use crate::repo::index::Index;
use crate::repo::tree::{Node, NodeKind};
use crate::{Error, Id, Result};

/// Options of `dump`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DumpOptions {
    /// Snapshot id (prefix) or `latest`.
    pub snapshot: String,
    /// Path of a file or folder in the snapshot (`/` is the snapshot's root); a folder is
    /// written as a tar archive.
    pub path: String,
}

/// What `dump` wrote (printed to stderr with `--json`; stdout holds the bytes).
#[derive(Debug, Clone, Serialize)]
pub struct DumpOutcome {
    /// The snapshot read.
    pub snapshot_id: Id,
    /// `file` or `tar`.
    pub format: &'static str,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// The node at `path` below the tree `root` (`/` or an empty path: the root itself, as a
/// folder node without a name). `..` is refused; a missing path is [`Error::NotFound`].
pub fn lookup(repo: &Repository, index: &Index, root: &Id, path: &str) -> Result<Node> {
    let mut node = Node {
        name: Vec::new(),
        kind: NodeKind::Dir,
        mode: 0o755,
        mtime_ns: 0,
        ctime_ns: 0,
        inode: 0,
        uid: 0,
        gid: 0,
        size: 0,
        content: Vec::new(),
        subtree: Some(*root),
        target: None,
        swamp: None,
    };
    for comp in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if comp == ".." {
            return Err(Error::InvalidInput(format!(
                "{path:?}: `..` is not allowed in a snapshot path"
            )));
        }
        let sub = match (node.kind, node.subtree) {
            (NodeKind::Dir, Some(sub)) => sub,
            _ => return Err(Error::NotFound(format!("path {path} in the snapshot"))),
        };
        let tree = repo.load_tree(index, &sub)?;
        node = tree
            .find(comp.as_bytes())
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("path {path} in the snapshot")))?;
    }
    Ok(node)
}

/// Writes a file's content, blob by blob (each checked against its id).
fn write_file(repo: &Repository, index: &Index, n: &Node, out: &mut dyn Write) -> Result<u64> {
    if n.logical().is_some() {
        let hyd = logical_file(repo, index, n)?;
        out.write_all(&hyd)
            .map_err(|e| Error::io("standard output", e))?;
        return Ok(hyd.len() as u64);
    }
    let mut bytes = 0;
    for id in &n.content {
        let b = repo.read_blob(index, BlobType::Data, id)?;
        out.write_all(&b)
            .map_err(|e| Error::io("standard output", e))?;
        bytes += b.len() as u64;
    }
    if bytes != n.size {
        return Err(Error::corrupt(
            format!("file {}", n.name_lossy()),
            "its blobs do not add up to its size",
        ));
    }
    Ok(bytes)
}

/// A logical Swamp's `.hyd` file, rebuilt from its record stream (as restore writes it).
fn logical_file(repo: &Repository, index: &Index, n: &Node) -> Result<Vec<u8>> {
    let mut data = Vec::with_capacity(n.content_len() as usize);
    for id in &n.content {
        data.extend_from_slice(&repo.read_blob(index, BlobType::Data, id)?);
    }
    crate::logical::rebuild::rebuild_node(n, &data, None)
        .map_err(|e| Error::corrupt(format!("logical Swamp {}", n.name_lossy()), e.to_string()))
}

/// Streams one file's content into a tar entry without holding it in memory.
struct BlobReader<'a> {
    repo: &'a Repository,
    index: &'a Index,
    ids: std::slice::Iter<'a, Id>,
    buf: Vec<u8>,
    pos: usize,
    error: Option<Error>,
}

impl std::io::Read for BlobReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            let Some(id) = self.ids.next() else {
                return Ok(0);
            };
            match self.repo.read_blob(self.index, BlobType::Data, id) {
                Ok(b) => (self.buf, self.pos) = (b, 0),
                Err(e) => {
                    let msg = e.to_string();
                    self.error = Some(e);
                    return Err(std::io::Error::other(msg));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Writes the folder `dir` (its subtree) as a tar archive, paths relative to it.
fn write_tar(repo: &Repository, index: &Index, dir: &Node, out: &mut dyn Write) -> Result<u64> {
    let mut tar = tar::Builder::new(out);
    let mut bytes = 0;
    let sub = dir.subtree.unwrap_or_default();
    crate::ops::restore::walk_tree(repo, index, &sub, Path::new(""), &mut |rel, n| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(n.mode);
        h.set_uid(u64::from(n.uid));
        h.set_gid(u64::from(n.gid));
        h.set_mtime(u64::try_from(n.mtime_ns / 1_000_000_000).unwrap_or(0));
        let io = |e: std::io::Error| Error::io("standard output", e);
        match n.kind {
            NodeKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                tar.append_data(&mut h, rel, std::io::empty()).map_err(io)?;
            }
            NodeKind::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                let to = std::ffi::OsStr::from_bytes(n.target.as_deref().unwrap_or_default());
                tar.append_link(&mut h, rel, to).map_err(io)?;
            }
            NodeKind::File if n.logical().is_some() => {
                let hyd = logical_file(repo, index, n)?;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(hyd.len() as u64);
                tar.append_data(&mut h, rel, &hyd[..]).map_err(io)?;
                bytes += hyd.len() as u64;
            }
            NodeKind::File => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(n.size);
                let mut r = BlobReader {
                    repo,
                    index,
                    ids: n.content.iter(),
                    buf: Vec::new(),
                    pos: 0,
                    error: None,
                };
                if let Err(e) = tar.append_data(&mut h, rel, &mut r) {
                    // A blob that does not read is the error, not the broken write it caused.
                    return Err(r.error.take().unwrap_or_else(|| io(e)));
                }
                bytes += n.size;
            }
        }
        Ok(())
    })?;
    tar.into_inner()
        .and_then(|o| o.flush())
        .map_err(|e| Error::io("standard output", e))?;
    Ok(bytes)
}

/// Writes the file or folder `opts.path` of the snapshot to `out`.
pub fn run(
    repo: &Repository,
    opts: &DumpOptions,
    _progress: &Progress,
    out: &mut dyn Write,
) -> Result<DumpOutcome> {
    let (id, snap) = repo.find_snapshot(&opts.snapshot)?;
    let index = repo.load_index()?;
    let node = lookup(repo, &index, &snap.tree, &opts.path)?;
    let (format, bytes) = match node.kind {
        NodeKind::File => ("file", write_file(repo, &index, &node, out)?),
        NodeKind::Dir => ("tar", write_tar(repo, &index, &node, out)?),
        NodeKind::Symlink => {
            return Err(Error::InvalidInput(format!(
                "{} is a symbolic link (to {}); dump its target instead",
                opts.path,
                String::from_utf8_lossy(node.target.as_deref().unwrap_or_default())
            )));
        }
    };
    out.flush().map_err(|e| Error::io("standard output", e))?;
    Ok(DumpOutcome {
        snapshot_id: id,
        format,
        bytes,
    })
}
