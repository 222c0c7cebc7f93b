//! Tree blobs: one directory's entries, sorted by name, as CBOR. Trees are stored and
//! deduplicated like data blobs, so an unchanged directory costs nothing.

use serde::{Deserialize, Serialize};

use crate::Id;
use crate::repo::object::{from_cbor, to_cbor};

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
    /// How the capture was decided: new, unchanged, appended, rewritten, quarantined.
    pub decision: String,
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
        self.content.iter().chain(raw)
    }

    /// [`Node::data_blobs`], mutable (to rewrite ids).
    pub fn data_blobs_mut(&mut self) -> impl Iterator<Item = &mut Id> {
        let raw = self.swamp.as_mut().map_or(&mut [][..], |s| &mut s.raw[..]);
        self.content.iter_mut().chain(raw)
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

    /// Decodes a stored tree.
    pub fn decode(bytes: &[u8]) -> crate::Result<Tree> {
        from_cbor(bytes, "tree")
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
        fn tree_round_trip(names in prop::collection::btree_set(prop::collection::vec(any::<u8>(), 1..20), 0..20), size in any::<u64>()) {
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
    }
}
