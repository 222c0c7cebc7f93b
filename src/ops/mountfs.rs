//! The read-only FUSE file system `mount` serves: `snapshots/<id>/`, `by-time/<time>/` (each
//! a snapshot's data root) and `latest` (a symlink to the newest). Inodes are made as folders
//! are first looked at; trees and file contents are read through the repository (and its local
//! cache) when the kernel asks for them.

use std::collections::{HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, Filesystem, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry};
use fuser::{ReplyOpen, Request};

use crate::repo::Repository;
use crate::repo::blob::BlobType;
use crate::repo::index::Index;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::{Node, NodeKind};
use crate::{Id, Result};

/// Everything is immutable: the kernel may keep what it learnt for long.
const TTL: Duration = Duration::from_secs(3600);
/// Data blobs kept decoded for sequential reads (the kernel reads 128 KiB at a time).
const BLOBS_KEPT: usize = 8;
/// Logical Swamps kept rebuilt as `.hyd` files (each is read whole to rebuild it).
const REBUILT_KEPT: usize = 2;

/// What an inode is.
enum Kind {
    /// A folder made by the mount (root, `snapshots`, `by-time`), with its entries.
    Fixed(Vec<(OsString, u64)>),
    /// A folder of a snapshot: its tree, read when first listed.
    Tree(Id),
    /// A file of a snapshot, with the offset where each of its blobs starts (computed on open).
    File(Box<Node>, Option<Vec<u64>>),
    /// A symbolic link.
    Link(Vec<u8>),
}

struct Inode {
    kind: Kind,
    /// Entries of a [`Kind::Tree`] once read.
    children: Option<Vec<(OsString, u64)>>,
    attr: FileAttr,
}

/// The file system over one repository's snapshots.
pub struct SnapshotFs<'a> {
    repo: &'a Repository,
    index: Index,
    inodes: Vec<Inode>,
    blobs: VecDeque<(Id, Vec<u8>)>,
    /// Logical Swamps (by inode) rebuilt as their `.hyd` files, most recent last.
    rebuilt: VecDeque<(u64, std::sync::Arc<Vec<u8>>)>,
}

fn time_of(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

fn attr(kind: FileType, perm: u16, size: u64, mtime: SystemTime) -> FileAttr {
    FileAttr {
        ino: 0,
        size,
        blocks: size.div_ceil(512),
        atime: mtime,
        mtime,
        ctime: mtime,
        crtime: mtime,
        kind,
        perm,
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// The name of a snapshot under `by-time/`: its time to the second (UTC, RFC 3339), with the
/// short id added when several snapshots share that second.
fn time_names(snaps: &[(Id, jiff::Timestamp)]) -> Vec<String> {
    let secs: Vec<String> = snaps
        .iter()
        .map(|(_, t)| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .collect();
    let mut count: HashMap<&str, usize> = HashMap::new();
    for s in &secs {
        *count.entry(s).or_default() += 1;
    }
    secs.iter()
        .zip(snaps)
        .map(|(s, (id, _))| match count[s.as_str()] {
            1 => s.clone(),
            _ => format!("{s}-{}", id.short()),
        })
        .collect()
}

impl<'a> SnapshotFs<'a> {
    /// The file system over `snaps` (oldest first) of `repo`.
    pub fn new(repo: &'a Repository, index: Index, snaps: &[(Id, Snapshot)]) -> SnapshotFs<'a> {
        let now = SystemTime::now();
        let mut fs = SnapshotFs {
            repo,
            index,
            inodes: Vec::new(),
            blobs: VecDeque::new(),
            rebuilt: VecDeque::new(),
        };
        // Inode 1 is the root; its entries are filled in below.
        fs.add(
            Kind::Fixed(Vec::new()),
            attr(FileType::Directory, 0o555, 0, now),
        );
        let mut by_id = Vec::new();
        let mut by_time = Vec::new();
        let times: Vec<(Id, jiff::Timestamp)> =
            snaps.iter().map(|(id, s)| (*id, s.timestamp())).collect();
        for ((id, s), tname) in snaps.iter().zip(time_names(&times)) {
            let t = s.timestamp();
            let mtime = time_of(t.as_nanosecond() as i64);
            let dir = attr(FileType::Directory, 0o555, 0, mtime);
            by_id.push((OsString::from(id.to_hex()), fs.add(Kind::Tree(s.tree), dir)));
            by_time.push((OsString::from(tname), fs.add(Kind::Tree(s.tree), dir)));
        }
        let snapshots = fs.add(Kind::Fixed(by_id), attr(FileType::Directory, 0o555, 0, now));
        let times = fs.add(
            Kind::Fixed(by_time),
            attr(FileType::Directory, 0o555, 0, now),
        );
        let mut root = vec![
            (OsString::from("by-time"), times),
            (OsString::from("snapshots"), snapshots),
        ];
        if let Some((id, _)) = snaps.last() {
            let target = format!("snapshots/{}", id.to_hex()).into_bytes();
            let len = target.len() as u64;
            let link = fs.add(Kind::Link(target), attr(FileType::Symlink, 0o777, len, now));
            root.push((OsString::from("latest"), link));
        }
        fs.inodes[0].kind = Kind::Fixed(root);
        fs
    }

    fn add(&mut self, kind: Kind, mut attr: FileAttr) -> u64 {
        let ino = self.inodes.len() as u64 + 1;
        attr.ino = ino;
        self.inodes.push(Inode {
            kind,
            children: None,
            attr,
        });
        ino
    }

    fn inode(&self, ino: u64) -> Option<&Inode> {
        self.inodes.get(usize::try_from(ino).ok()?.checked_sub(1)?)
    }

    /// The entries of folder `ino`, reading its tree the first time.
    fn children(&mut self, ino: u64) -> std::result::Result<Vec<(OsString, u64)>, i32> {
        let node = self.inode(ino).ok_or(libc::ENOENT)?;
        let tree = match &node.kind {
            Kind::Fixed(c) => return Ok(c.clone()),
            Kind::Tree(t) => *t,
            _ => return Err(libc::ENOTDIR),
        };
        if let Some(c) = &node.children {
            return Ok(c.clone());
        }
        let t = self.repo.load_tree(&self.index, &tree).map_err(|e| {
            tracing::warn!("tree {tree}: {e}");
            libc::EIO
        })?;
        let mut out = Vec::with_capacity(t.nodes.len());
        for n in t.nodes {
            let mtime = time_of(n.mtime_ns);
            let perm = (n.mode & 0o7777) as u16;
            let (kind, mut a) = match n.kind {
                NodeKind::Dir => (
                    Kind::Tree(n.subtree.unwrap_or_default()),
                    attr(FileType::Directory, perm, 0, mtime),
                ),
                NodeKind::Symlink => {
                    let target = n.target.clone().unwrap_or_default();
                    let len = target.len() as u64;
                    (
                        Kind::Link(target),
                        attr(FileType::Symlink, perm, len, mtime),
                    )
                }
                NodeKind::File => {
                    let a = attr(FileType::RegularFile, perm, n.size, mtime);
                    (Kind::File(Box::new(n.clone()), None), a)
                }
            };
            a.uid = n.uid;
            a.gid = n.gid;
            let name = OsString::from_vec(n.name);
            out.push((name, self.add(kind, a)));
        }
        let idx = ino as usize - 1;
        self.inodes[idx].children = Some(out.clone());
        Ok(out)
    }

    /// Where each blob of file `ino` starts (and, last, its end), from the index.
    fn offsets(&mut self, ino: u64) -> std::result::Result<Vec<u64>, i32> {
        let idx = ino as usize - 1;
        let Some(Inode {
            kind: Kind::File(node, offs),
            ..
        }) = self.inodes.get(idx)
        else {
            return Err(libc::EISDIR);
        };
        if let Some(o) = offs {
            return Ok(o.clone());
        }
        let mut o = Vec::with_capacity(node.content.len() + 1);
        let mut at = 0u64;
        for id in &node.content {
            o.push(at);
            let loc = self
                .index
                .copies(BlobType::Data, id)
                .next()
                .ok_or_else(|| {
                    tracing::warn!("blob {id} is in no index");
                    libc::EIO
                })?;
            at += u64::from(loc.entry.raw_len);
        }
        o.push(at);
        if let Some(Inode {
            kind: Kind::File(_, offs),
            ..
        }) = self.inodes.get_mut(idx)
        {
            *offs = Some(o.clone());
        }
        Ok(o)
    }

    fn blob(&mut self, id: &Id) -> Result<&[u8]> {
        if let Some(i) = self.blobs.iter().position(|(b, _)| b == id) {
            let hit = self.blobs.remove(i).expect("position is in range");
            self.blobs.push_back(hit);
        } else {
            let data = self.repo.read_blob(&self.index, BlobType::Data, id)?;
            if self.blobs.len() == BLOBS_KEPT {
                self.blobs.pop_front();
            }
            self.blobs.push_back((*id, data));
        }
        Ok(&self.blobs.back().expect("just pushed").1)
    }

    /// The `.hyd` file of logical Swamp `ino`, rebuilt from its record stream (as restore
    /// writes it); `None` for other inodes. Its size replaces the captured file's once known.
    fn logical(&mut self, ino: u64) -> std::result::Result<Option<std::sync::Arc<Vec<u8>>>, i32> {
        let idx = ino as usize - 1;
        let node = match self.inodes.get(idx).map(|n| &n.kind) {
            Some(Kind::File(node, _)) if node.logical().is_some() => node.clone(),
            _ => return Ok(None),
        };
        if let Some((_, b)) = self.rebuilt.iter().find(|(i, _)| *i == ino) {
            return Ok(Some(b.clone()));
        }
        let eio = |e: String| {
            tracing::warn!("logical Swamp {}: {e}", node.name_lossy());
            libc::EIO
        };
        let mut data = Vec::with_capacity(node.content_len() as usize);
        for id in &node.content {
            let b = self.repo.read_blob(&self.index, BlobType::Data, id);
            data.extend_from_slice(&b.map_err(|e| eio(e.to_string()))?);
        }
        let hyd = crate::logical::rebuild::rebuild_node(&node, &data, None)
            .map_err(|e| eio(e.to_string()))?;
        let hyd = std::sync::Arc::new(hyd);
        self.inodes[idx].attr.size = hyd.len() as u64;
        self.inodes[idx].attr.blocks = (hyd.len() as u64).div_ceil(512);
        if self.rebuilt.len() == REBUILT_KEPT {
            self.rebuilt.pop_front();
        }
        self.rebuilt.push_back((ino, hyd.clone()));
        Ok(Some(hyd))
    }

    fn read_at(&mut self, ino: u64, offset: u64, size: u64) -> std::result::Result<Vec<u8>, i32> {
        if let Some(hyd) = self.logical(ino)? {
            let from = offset.min(hyd.len() as u64) as usize;
            let to = offset.saturating_add(size).min(hyd.len() as u64) as usize;
            return Ok(hyd[from..to].to_vec());
        }
        let offs = self.offsets(ino)?;
        let content = match &self.inode(ino).map(|n| &n.kind) {
            Some(Kind::File(node, _)) => node.content.clone(),
            _ => return Err(libc::EISDIR),
        };
        let end = offs
            .last()
            .copied()
            .unwrap_or(0)
            .min(offset.saturating_add(size));
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut at = offset;
        while at < end {
            // The blob holding byte `at`: the last that starts at or before it.
            let i = offs.partition_point(|&o| o <= at) - 1;
            let data = self.blob(&content[i]).map_err(|e| {
                tracing::warn!("blob {}: {e}", content[i]);
                libc::EIO
            })?;
            let from = (at - offs[i]) as usize;
            let to = ((end - offs[i]) as usize).min(data.len());
            if from >= to {
                return Err(libc::EIO);
            }
            out.extend_from_slice(&data[from..to]);
            at += (to - from) as u64;
        }
        Ok(out)
    }
}

impl Filesystem for SnapshotFs<'_> {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        match self.children(parent) {
            Ok(c) => match c.iter().find(|(n, _)| n.as_bytes() == name.as_bytes()) {
                Some((_, ino)) => {
                    let a = self.inode(*ino).expect("child inode exists").attr;
                    reply.entry(&TTL, &a, 0);
                }
                None => reply.error(libc::ENOENT),
            },
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.inode(ino) {
            Some(n) => reply.attr(&TTL, &n.attr),
            None => reply.error(libc::ENOENT),
        }
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        match self.inode(ino).map(|n| &n.kind) {
            Some(Kind::Link(t)) => reply.data(t),
            Some(_) => reply.error(libc::EINVAL),
            None => reply.error(libc::ENOENT),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(libc::EROFS);
        }
        // A logical Swamp is served rebuilt, whose size may differ from the captured file's
        // (the kernel may have that one): direct I/O reads to the real end.
        match self.offsets(ino).and_then(|_| self.logical(ino)) {
            Ok(Some(_)) => reply.opened(0, fuser::consts::FOPEN_DIRECT_IO),
            Ok(None) => reply.opened(0, 0),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock: Option<u64>,
        reply: ReplyData,
    ) {
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(libc::EINVAL);
        };
        match self.read_at(ino, offset, u64::from(size)) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let children = match self.children(ino) {
            Ok(c) => c,
            Err(e) => return reply.error(e),
        };
        let dots = [(OsString::from("."), ino), (OsString::from(".."), ino)];
        let all = dots.iter().chain(children.iter());
        for (i, (name, child)) in all.enumerate().skip(offset.max(0) as usize) {
            let kind = self
                .inode(*child)
                .map_or(FileType::RegularFile, |n| n.attr.kind);
            if reply.add(*child, i as i64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_of_one_second_get_distinct_time_names() {
        let snap = |t: &str| t.parse::<jiff::Timestamp>().unwrap();
        let a = Id::of_stored(b"a");
        let b = Id::of_stored(b"b");
        let names = time_names(&[
            (a, snap("2026-01-01T10:00:00.1Z")),
            (b, snap("2026-01-01T10:00:00.9Z")),
            (b, snap("2026-01-01T10:00:01Z")),
        ]);
        assert_eq!(names[0], format!("2026-01-01T10:00:00Z-{}", a.short()));
        assert_eq!(names[1], format!("2026-01-01T10:00:00Z-{}", b.short()));
        assert_eq!(names[2], "2026-01-01T10:00:01Z");
    }
}
