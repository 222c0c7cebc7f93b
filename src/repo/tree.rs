//! Tree blobs: one directory's entries, sorted by name, as CBOR. Trees are stored and
//! deduplicated like data blobs, so an unchanged directory costs nothing. Decoding checks that
//! every name is one safe path component and that names are sorted and unique, so no reader
//! (restore above all) ever sees a name that could lead outside its folder.

use serde::{Deserialize, Serialize};

use crate::repo::object::{from_cbor, to_cbor};
use crate::{Error, Id};

/// Why `name` cannot name a tree entry, if it cannot: a name is one non-empty path component,
/// without `/` or NUL, and neither `.` nor `..`.
pub fn name_problem(name: &[u8]) -> Option<&'static str> {
    match name {
        b"" => Some("it is empty"),
        b"." | b".." => Some("it names a folder itself or its parent"),
        _ if name.contains(&b'/') => Some("it contains '/'"),
        _ if name.contains(&0) => Some("it contains a NUL byte"),
        _ => None,
    }
}

/// A name for an error message: escaped, and shortened when long.
fn shown(name: &[u8]) -> String {
    let s = name[..name.len().min(64)].escape_ascii().to_string();
    if name.len() > 64 { s + "..." } else { s }
}

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
}

/// How a Swamp's capture was decided (stored in [`SwampInfo::decision`]) or, in a backup's
/// decision log, what happened to it. Serialised as the lowercase variant name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Not in the parent snapshot: read whole.
    #[default]
    New,
    /// Size, times and inode as in the parent snapshot: taken from it unread.
    Unchanged,
    /// Same file, grown: read from where the parent's capture ended.
    Appended,
    /// Replaced or compacted since the parent snapshot: read whole.
    Rewritten,
    /// No consistent copy could be made: stored as found and reported.
    Quarantined,
    /// Vanished during the backup (decision log only).
    Gone,
    /// Left out on purpose, e.g. HydrAIDE's temporaries (decision log only).
    Skipped,
}

impl Decision {
    /// The serialised name (`new`, `unchanged`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::New => "new",
            Decision::Unchanged => "unchanged",
            Decision::Appended => "appended",
            Decision::Rewritten => "rewritten",
            Decision::Quarantined => "quarantined",
            Decision::Gone => "gone",
            Decision::Skipped => "skipped",
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// HydrAIDE facts about a captured `.hyd` file (filled by the HydrAIDE source).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwampInfo {
    /// Swamp name `sanctuary/realm/swamp`, when known.
    pub name: Option<String>,
    /// File format version (1 for V1 folders, 2 or 3 for `.hyd`).
    pub format: u16,
    /// Live entries according to the captured header.
    pub entries: u64,
    /// Blocks captured.
    pub blocks: u64,
    /// Header CreatedAt, unix ns.
    pub created_ns: i64,
    /// Last write: the file's mtime, unix ns (HydrAIDE's header ModifiedAt only changes when
    /// the file is created or compacted). Snapshots of earlier versions hold the header value.
    pub modified_ns: i64,
    /// How the capture was decided: new, appended, rewritten or quarantined.
    pub decision: Decision,
    /// Why the file was quarantined, if it was.
    pub problem: Option<String>,
    /// Offset of the first block (64 + name length); the stored header blob covers the bytes
    /// before it.
    #[serde(default)]
    pub data_start: u64,
    /// The last captured block, used to prove on the next run that a grown file only had
    /// blocks appended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<BlockTail>,
    /// A quarantined `.hyd` file whose loadable prefix is the node's content: the file's bytes
    /// as they were on disk (`restore --raw-quarantined`). Empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub raw: Vec<Id>,
    /// Length of the bytes in `raw`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub raw_size: u64,
    /// A logical capture (repo-format.md §6c): the node's content is the record stream, not
    /// the file's bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logical: Option<Box<LogicalInfo>>,
}

/// What a logical capture of a `.hyd` file stores beside its record stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LogicalInfo {
    /// The captured 64-byte file header and, for version 3, the name bytes.
    #[serde(with = "serde_bytes")]
    pub header: Vec<u8>,
    /// Live records.
    pub records: u64,
    /// [`crate::hyd::live_digest`] of the live set.
    pub digest: u64,
    /// Bytes of the record stream (the sum of the content blobs' lengths).
    pub stream_size: u64,
    /// Record index pages, one per record group of the content, in the same order (data blobs).
    pub index: Vec<Id>,
    /// Length of the block recipe (the content's last blob, after the record groups) that
    /// re-encodes the captured file byte for byte; 0 when there is none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub recipe_len: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Position and 16-byte header of the last block captured from a `.hyd` file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockTail {
    /// Offset of the block in the file.
    pub offset: u64,
    /// Its header bytes (sizes, entry count, CRC of the payload).
    #[serde(with = "serde_bytes")]
    pub header: Vec<u8>,
}

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// File name (raw bytes on Unix).
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    /// File, directory or symlink.
    pub kind: NodeKind,
    /// Permission bits.
    pub mode: u32,
    /// Modification time, unix ns.
    pub mtime_ns: i64,
    /// Status change time, unix ns (change detection only).
    pub ctime_ns: i64,
    /// Inode number (change detection only).
    pub inode: u64,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (files).
    pub size: u64,
    /// Content blobs in order (files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<Id>,
    /// The directory's tree (directories).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<Id>,
    /// Link target (symlinks).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    pub target: Option<Vec<u8>>,
    /// HydrAIDE Swamp facts (`.hyd` files and V1 Swamp folders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swamp: Option<SwampInfo>,
}

impl Node {
    /// Every data blob the node refers to: its content, then the raw bytes of a quarantined
    /// Swamp.
    pub fn data_blobs(&self) -> impl Iterator<Item = &Id> {
        let raw = self.swamp.as_ref().map_or(&[][..], |s| &s.raw[..]);
        let pages = self.logical().map_or(&[][..], |l| &l.index[..]);
        self.content.iter().chain(raw).chain(pages)
    }

    /// The logical capture facts, when the node's content is a record stream.
    pub fn logical(&self) -> Option<&LogicalInfo> {
        self.swamp.as_ref().and_then(|s| s.logical.as_deref())
    }

    /// Bytes of the node's content blobs: the record stream's length for a logical capture,
    /// else the file size.
    pub fn content_len(&self) -> u64 {
        self.logical()
            .map_or(self.size, |l| l.stream_size + l.recipe_len)
    }

    /// [`Node::data_blobs`], mutable (to rewrite ids).
    pub fn data_blobs_mut(&mut self) -> impl Iterator<Item = &mut Id> {
        let (raw, pages) = match self.swamp.as_mut() {
            Some(s) => (
                &mut s.raw[..],
                s.logical.as_mut().map_or(&mut [][..], |l| &mut l.index[..]),
            ),
            None => (&mut [][..], &mut [][..]),
        };
        self.content.iter_mut().chain(raw).chain(pages)
    }

    /// The name as a (lossy) string for display.
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// A directory listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// Entries sorted by name.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Sorts the entries by name (the stored order).
    pub fn sort(&mut self) {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// Encodes as stored (before sealing).
    pub fn encode(&self) -> Vec<u8> {
        to_cbor(self)
    }

    /// Decodes a stored tree and checks its entries: safe names (see [`name_problem`]), sorted
    /// and unique, and a subtree only on folders.
    pub fn decode(bytes: &[u8]) -> crate::Result<Tree> {
        let t: Tree = from_cbor(bytes, "tree")?;
        t.check().map_err(|why| Error::corrupt("tree", why))?;
        Ok(t)
    }

    fn check(&self) -> Result<(), String> {
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(why) = name_problem(&n.name) {
                return Err(format!(
                    "entry {i} has the unsafe name \"{}\": {why}",
                    shown(&n.name)
                ));
            }
            if i > 0 && self.nodes[i - 1].name >= n.name {
                return Err(format!(
                    "entry {i} (\"{}\") is out of order or repeats a name",
                    shown(&n.name)
                ));
            }
            if n.subtree.is_some() && n.kind != NodeKind::Dir {
                return Err(format!(
                    "entry {i} (\"{}\") is not a folder but has a subtree",
                    shown(&n.name)
                ));
            }
        }
        Ok(())
    }

    /// Finds an entry by name.
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn tree_round_trip(names in prop::collection::btree_set(prop::collection::vec(any::<u8>(), 1..20).prop_filter("safe name", |n| name_problem(n).is_none()), 0..20), size in any::<u64>()) {
            let mut t = Tree::default();
            for n in names {
                t.nodes.push(Node {
                    name: n, kind: NodeKind::File, mode: 0o644, mtime_ns: -5, ctime_ns: 7, inode: 9,
                    uid: 1, gid: 2, size, content: vec![Id([1; 32])], subtree: None, target: None, swamp: None,
                });
            }
            t.sort();
            let back = Tree::decode(&t.encode()).unwrap();
            prop_assert_eq!(&back, &t);
            for n in &t.nodes { prop_assert!(back.find(&n.name).is_some()); }
        }

        #[test]
        fn tree_decoder_never_panics(b in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = Tree::decode(&b);
        }

        #[test]
        fn decoded_names_are_single_components(names in prop::collection::vec(prop::collection::vec(prop::sample::select(b"./\0ab".to_vec()), 0..4), 0..5)) {
            let t = Tree { nodes: names.iter().map(|n| file(n)).collect() };
            let ok = names.iter().all(|n| name_problem(n).is_none())
                && names.windows(2).all(|w| w[0] < w[1]);
            match Tree::decode(&t.encode()) {
                Ok(back) => {
                    prop_assert!(ok, "{names:?} decoded");
                    for n in &back.nodes {
                        let p = std::path::Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&n.name));
                        prop_assert_eq!(p.components().count(), 1);
                        prop_assert!(matches!(p.components().next(), Some(std::path::Component::Normal(_))));
                    }
                }
                Err(e) => prop_assert!(!ok && e.exit_code() == 13, "{names:?}: {e}"),
            }
        }
    }

    fn file(name: &[u8]) -> Node {
        Node {
            name: name.to_vec(),
            kind: NodeKind::File,
            mode: 0o644,
            mtime_ns: 0,
            ctime_ns: 0,
            inode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            content: Vec::new(),
            subtree: None,
            target: None,
            swamp: None,
        }
    }

    #[test]
    fn unsafe_names_and_orders_are_refused() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"/abs", b"a\0"] {
            let t = Tree {
                nodes: vec![file(bad)],
            };
            let e = Tree::decode(&t.encode()).unwrap_err().to_string();
            assert!(e.contains("unsafe name"), "{e}");
        }
        for names in [[&b"b"[..], b"a"], [b"a", b"a"]] {
            let t = Tree {
                nodes: names.iter().map(|n| file(n)).collect(),
            };
            assert!(Tree::decode(&t.encode()).is_err(), "{names:?}");
        }
        let mut link = file(b"l");
        link.kind = NodeKind::Symlink;
        link.subtree = Some(Id([3; 32]));
        assert!(Tree::decode(&Tree { nodes: vec![link] }.encode()).is_err());
        for good in [&b"..."[..], b".a", b"a..", b"\xff"] {
            assert!(
                Tree::decode(
                    &Tree {
                        nodes: vec![file(good)]
                    }
                    .encode()
                )
                .is_ok()
            );
        }
    }

    /// The decision strings are part of the format (stored in trees) and of `--json`: each
    /// variant keeps its name, in trees and in JSON, and a stored one decodes back.
    #[test]
    fn decisions_keep_their_strings() {
        let all = [
            (Decision::New, "new"),
            (Decision::Unchanged, "unchanged"),
            (Decision::Appended, "appended"),
            (Decision::Rewritten, "rewritten"),
            (Decision::Quarantined, "quarantined"),
            (Decision::Gone, "gone"),
            (Decision::Skipped, "skipped"),
        ];
        for (d, s) in all {
            assert_eq!(serde_json::to_value(d).unwrap(), s);
            assert_eq!(format!("{d:<12}|"), format!("{s:<12}|"));
            let mut n = file(b"x");
            n.swamp = Some(SwampInfo {
                decision: d,
                ..SwampInfo::default()
            });
            let back = Tree::decode(&Tree { nodes: vec![n] }.encode()).unwrap();
            assert_eq!(back.nodes[0].swamp.as_ref().unwrap().decision, d);
            assert_eq!(from_cbor::<String>(&to_cbor(&d), "decision").unwrap(), s);
        }
    }
}
