//! The index: which pack holds which blob.
//!
//! On disk, index files are sealed CBOR [`IndexFile`]s. In memory, one [`Index`] is shared by
//! every operation: two sorted tables (data and tree blobs) of fixed 48-byte entries searched by
//! binary search — 48 bytes of heap per stored copy of a blob, plus 32 bytes per pack.
//!
//! Index files may come from a client that has the password but not the right to delete
//! (append-only storage), so nothing listed is trusted blindly: every copy of a blob that any
//! index file lists is kept, in priority order (files no other file supersedes first, then the
//! superseded ones), and readers fall back to the next copy when one fails its check.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::crypto::SEAL_OVERHEAD;
use crate::repo::blob::BlobType;
use crate::repo::pack::{MAX_BLOB, PackEntry};
use crate::{Error, Id, Result};

/// Index file format version.
pub const INDEX_VERSION: u32 = 1;

/// An index file as stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IndexFile {
    /// Format version.
    pub version: u32,
    /// Index files whose content this one replaces (written by prune).
    pub supersedes: Vec<Id>,
    /// Packs and their blobs.
    pub packs: Vec<IndexPack>,
    /// Packs a two-phase prune took out of the index, to be deleted by a later prune
    /// (repo-format.md §9a). Readers use them only as a last fallback; backups never
    /// deduplicate against them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marked: Vec<MarkedPack>,
    /// When a prune wrote this file (unix seconds; 0 when unknown): the time from which the
    /// files it supersedes count as superseded.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub time: i64,
}

fn is_zero(t: &i64) -> bool {
    *t == 0
}

/// A pack marked for deletion: its record and when it was marked (unix seconds).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MarkedPack {
    /// The pack's record (empty `blobs` for a pack no index listed when it was marked).
    pub pack: IndexPack,
    /// When it was marked.
    pub time: i64,
}

/// One pack in an index file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexPack {
    /// Pack name.
    pub id: Id,
    /// Blobs: (flags, id, offset, stored length, raw length); flags as in the pack header.
    pub blobs: Vec<(u8, Id, u32, u32, u32)>,
}

impl IndexPack {
    /// Builds the index record of a pack from its header entries.
    pub fn from_entries(id: Id, entries: &[PackEntry]) -> Self {
        IndexPack {
            id,
            blobs: entries
                .iter()
                .map(|e| {
                    let flags =
                        (e.kind == BlobType::Tree) as u8 | if e.compressed { 0x80 } else { 0 };
                    (flags, e.id, e.offset, e.len, e.raw_len)
                })
                .collect(),
        }
    }

    /// The pack's blobs as header entries; unknown flags or implausible lengths are damage.
    pub fn entries(&self) -> Result<Vec<PackEntry>> {
        let bad = |why: &str| Error::corrupt(format!("index record of pack {}", self.id), why);
        self.blobs
            .iter()
            .map(|&(flags, id, offset, len, raw_len)| {
                if flags & !0x81 != 0 {
                    return Err(bad("unknown blob flags"));
                }
                if !(SEAL_OVERHEAD as u32..=MAX_BLOB).contains(&len) || raw_len > MAX_BLOB {
                    return Err(bad("implausible blob length"));
                }
                Ok(PackEntry {
                    kind: if flags & 1 != 0 {
                        BlobType::Tree
                    } else {
                        BlobType::Data
                    },
                    id,
                    offset,
                    len,
                    raw_len,
                    compressed: flags & 0x80 != 0,
                })
            })
            .collect()
    }
}

/// One in-memory entry: exactly 48 bytes.
#[derive(Clone, Copy)]
struct Entry {
    id: Id,
    pack: u32,
    offset: u32,
    /// Stored length; the top bit says "compressed".
    len_flags: u32,
    raw_len: u32,
}

impl Entry {
    fn same_place(&self, o: &Entry) -> bool {
        (self.pack, self.offset, self.len_flags, self.raw_len)
            == (o.pack, o.offset, o.len_flags, o.raw_len)
    }
}

const COMPRESSED: u32 = 1 << 31;
const _: () = assert!(std::mem::size_of::<Entry>() == 48);

/// Where a blob is: its pack and its header entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack holding it.
    pub pack: Id,
    /// The blob's entry.
    pub entry: PackEntry,
}

/// Names of the index files that another present file supersedes.
pub fn superseded(files: &[(String, IndexFile)]) -> HashSet<String> {
    files
        .iter()
        .flat_map(|(_, f)| f.supersedes.iter().map(Id::to_hex))
        .collect()
}

/// The index files that count first: those no other present file supersedes (prune writes the
/// superseding file only after everything it replaces is stored, then deletes the old ones).
pub fn effective(files: &[(String, IndexFile)]) -> impl Iterator<Item = &(String, IndexFile)> {
    let gone = superseded(files);
    files.iter().filter(move |(n, _)| !gone.contains(n))
}

/// Every index file in priority order: the effective ones, then the superseded ones. A
/// superseding file may be forged, so what it replaces stays a fallback until a prune has
/// checked that its content is covered by intact copies and deleted it.
pub fn by_priority(files: &[(String, IndexFile)]) -> impl Iterator<Item = &(String, IndexFile)> {
    let gone = superseded(files);
    let (first, rest): (Vec<_>, Vec<_>) = files.iter().partition(|(n, _)| !gone.contains(n));
    first.into_iter().chain(rest)
}

/// Packs some effective index file lists as live: they are in the index, whatever marks say.
pub fn live_packs(files: &[(String, IndexFile)]) -> HashSet<Id> {
    effective(files)
        .flat_map(|(_, f)| f.packs.iter().map(|p| p.id))
        .collect()
}

/// Packs marked for deletion by an effective index file and listed live by none, with the
/// earliest time they were marked and their record.
pub fn marks(files: &[(String, IndexFile)]) -> HashMap<Id, &MarkedPack> {
    let live = live_packs(files);
    let mut out: HashMap<Id, &MarkedPack> = HashMap::new();
    for m in effective(files).flat_map(|(_, f)| &f.marked) {
        if live.contains(&m.pack.id) {
            continue;
        }
        let e = out.entry(m.pack.id).or_insert(m);
        if m.time < e.time {
            *e = m;
        }
    }
    out
}

/// The index readers use: every pack record in priority order (effective files, then
/// superseded ones), then the records of marked packs as a last fallback (a snapshot written
/// while a prune ran may use them until a later prune takes them back).
pub fn reader_index(files: &[(String, IndexFile)]) -> Index {
    let marked: Vec<&IndexPack> = files
        .iter()
        .flat_map(|(_, f)| f.marked.iter().map(|m| &m.pack))
        .collect();
    Index::from_records(by_priority(files).flat_map(|(_, f)| &f.packs).chain(marked))
}

/// The index a backup deduplicates against: only packs effective files list as live, so that
/// nothing a prune marked (or a superseded file lists) is used again.
pub fn live_index(files: &[(String, IndexFile)]) -> Index {
    Index::from_records(effective(files).flat_map(|(_, f)| &f.packs))
}

/// The in-memory index of a repository.
#[derive(Default)]
pub struct Index {
    packs: Vec<Id>,
    data: Vec<Entry>,
    tree: Vec<Entry>,
    distinct: usize,
}

impl Index {
    /// Builds the index from index files, in priority order: a blob listed in several places
    /// keeps every distinct location, the first-loaded first. A pack record that does not
    /// decode is left out (`verify` reports it, prune stops at it).
    pub fn from_files<'a>(files: impl IntoIterator<Item = &'a IndexFile>) -> Index {
        Self::from_records(files.into_iter().flat_map(|f| &f.packs))
    }

    /// Builds the index from pack records in priority order (see [`Index::from_files`]).
    pub fn from_records<'a>(packs: impl IntoIterator<Item = &'a IndexPack>) -> Index {
        let mut ix = Index::default();
        let mut pack_no: HashMap<Id, u32> = HashMap::new();
        for p in packs {
            if let Ok(entries) = p.entries() {
                ix.add_pack(&mut pack_no, p.id, &entries);
            }
        }
        ix.seal();
        ix
    }

    fn add_pack(&mut self, pack_no: &mut HashMap<Id, u32>, pack: Id, entries: &[PackEntry]) {
        let n = *pack_no.entry(pack).or_insert_with(|| {
            self.packs.push(pack);
            (self.packs.len() - 1) as u32
        });
        for e in entries {
            let entry = Entry {
                id: e.id,
                pack: n,
                offset: e.offset,
                len_flags: e.len | if e.compressed { COMPRESSED } else { 0 },
                raw_len: e.raw_len,
            };
            match e.kind {
                BlobType::Data => self.data.push(entry),
                BlobType::Tree => self.tree.push(entry),
            }
        }
    }

    fn seal(&mut self) {
        self.distinct = 0;
        for t in [&mut self.data, &mut self.tree] {
            // Stable sort keeps the first-loaded location of a blob first; a location listed
            // twice (the same pack record in two files) is kept once.
            t.sort_by_key(|e| e.id);
            let mut run_start = 0;
            let mut w = 0;
            for r in 0..t.len() {
                let e = t[r];
                if r == 0 || t[w - 1].id != e.id {
                    run_start = w;
                    self.distinct += 1;
                } else if t[run_start..w].iter().any(|k| k.same_place(&e)) {
                    continue;
                }
                t[w] = e;
                w += 1;
            }
            t.truncate(w);
            t.shrink_to_fit();
        }
        self.packs.shrink_to_fit();
    }

    fn table(&self, kind: BlobType) -> &[Entry] {
        match kind {
            BlobType::Data => &self.data,
            BlobType::Tree => &self.tree,
        }
    }

    fn location(&self, kind: BlobType, e: &Entry) -> BlobLocation {
        BlobLocation {
            pack: self.packs[e.pack as usize],
            entry: PackEntry {
                kind,
                id: e.id,
                offset: e.offset,
                len: e.len_flags & !COMPRESSED,
                raw_len: e.raw_len,
                compressed: e.len_flags & COMPRESSED != 0,
            },
        }
    }

    /// The entries of one blob, first-loaded first.
    fn run(&self, kind: BlobType, id: &Id) -> &[Entry] {
        let t = self.table(kind);
        let start = t.partition_point(|e| e.id < *id);
        let len = t[start..].iter().take_while(|e| e.id == *id).count();
        &t[start..start + len]
    }

    /// Looks a blob up: its preferred copy (the first loaded).
    pub fn get(&self, kind: BlobType, id: &Id) -> Option<BlobLocation> {
        self.run(kind, id).first().map(|e| self.location(kind, e))
    }

    /// Every distinct copy of a blob, preferred copy first.
    pub fn copies(&self, kind: BlobType, id: &Id) -> impl Iterator<Item = BlobLocation> + '_ {
        self.run(kind, id)
            .iter()
            .map(move |e| self.location(kind, e))
    }

    /// Whether a blob is indexed.
    pub fn contains(&self, kind: BlobType, id: &Id) -> bool {
        !self.run(kind, id).is_empty()
    }

    /// Number of distinct blobs.
    pub fn len(&self) -> usize {
        self.distinct
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All indexed packs.
    pub fn packs(&self) -> &[Id] {
        &self.packs
    }

    /// The preferred location of every blob, in id order per type.
    pub fn iter(&self) -> impl Iterator<Item = BlobLocation> + '_ {
        let data = self.data.chunk_by(|a, b| a.id == b.id);
        let tree = self.tree.chunk_by(|a, b| a.id == b.id);
        data.map(|run| self.location(BlobType::Data, &run[0]))
            .chain(tree.map(|run| self.location(BlobType::Tree, &run[0])))
    }

    /// Blobs listed in more than one distinct place, with every copy (preferred first).
    pub fn duplicates(&self) -> Vec<Vec<BlobLocation>> {
        let mut out = Vec::new();
        for (kind, t) in [(BlobType::Data, &self.data), (BlobType::Tree, &self.tree)] {
            for run in t.chunk_by(|a, b| a.id == b.id).filter(|r| r.len() > 1) {
                out.push(run.iter().map(|e| self.location(kind, e)).collect());
            }
        }
        out
    }

    /// Heap bytes used by the tables (for the memory figure in the docs).
    pub fn heap_bytes(&self) -> usize {
        (self.data.capacity() + self.tree.capacity()) * std::mem::size_of::<Entry>()
            + self.packs.capacity() * 32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::object::{from_cbor, to_cbor};
    use proptest::prelude::*;

    fn pe(kind: BlobType, id: u8, offset: u32) -> PackEntry {
        PackEntry {
            kind,
            id: Id([id; 32]),
            offset,
            len: 100,
            raw_len: 200,
            compressed: id.is_multiple_of(2),
        }
    }

    #[test]
    fn lookup_and_duplicates() {
        let f1 = IndexFile {
            version: 1,
            supersedes: vec![],
            packs: vec![IndexPack::from_entries(
                Id([1; 32]),
                &[pe(BlobType::Data, 5, 0), pe(BlobType::Tree, 6, 100)],
            )],
            ..Default::default()
        };
        let f2 = IndexFile {
            version: 1,
            supersedes: vec![],
            packs: vec![IndexPack::from_entries(
                Id([2; 32]),
                &[pe(BlobType::Data, 5, 0), pe(BlobType::Data, 7, 100)],
            )],
            ..Default::default()
        };
        let ix = Index::from_files([&f1, &f2, &f1]);
        assert_eq!(ix.len(), 3);
        assert_eq!(ix.iter().count(), 3);
        assert_eq!(
            ix.get(BlobType::Data, &Id([5; 32])).unwrap().pack,
            Id([1; 32])
        );
        // Both copies of a duplicated blob stay, first-loaded first; a record listed twice
        // adds nothing.
        let packs: Vec<Id> = ix
            .copies(BlobType::Data, &Id([5; 32]))
            .map(|l| l.pack)
            .collect();
        assert_eq!(packs, [Id([1; 32]), Id([2; 32])]);
        assert_eq!(ix.duplicates().len(), 1);
        assert_eq!(ix.copies(BlobType::Data, &Id([8; 32])).count(), 0);
        assert!(ix.contains(BlobType::Tree, &Id([6; 32])));
        assert!(!ix.contains(BlobType::Data, &Id([6; 32])));
        let l = ix.get(BlobType::Data, &Id([7; 32])).unwrap();
        assert_eq!(
            (l.pack, l.entry.offset, l.entry.compressed),
            (Id([2; 32]), 100, false)
        );
    }

    #[test]
    fn superseded_files_come_last() {
        let file = |n: u8, sup: Vec<Id>| {
            (
                Id([n; 32]).to_hex(),
                IndexFile {
                    version: 1,
                    supersedes: sup,
                    packs: vec![IndexPack::from_entries(
                        Id([n; 32]),
                        &[pe(BlobType::Data, 5, 0)],
                    )],
                    ..Default::default()
                },
            )
        };
        let files = vec![file(1, vec![]), file(2, vec![Id([1; 32])])];
        let order: Vec<Id> = by_priority(&files).map(|(_, f)| f.packs[0].id).collect();
        assert_eq!(order, [Id([2; 32]), Id([1; 32])]);
        assert_eq!(effective(&files).count(), 1);
    }

    proptest! {
        #[test]
        fn index_file_round_trip(blobs in prop::collection::vec((any::<u8>(), any::<[u8; 32]>(), any::<u32>(), any::<u32>(), any::<u32>()), 0..40)) {
            let f = IndexFile {
                version: 1,
                supersedes: vec![Id([9; 32])],
                packs: vec![IndexPack { id: Id([3; 32]), blobs: blobs.into_iter().map(|(f, i, o, l, r)| (f, Id(i), o, l, r)).collect() }],
                ..Default::default()
            };
            let back: IndexFile = from_cbor(&to_cbor(&f), "index").unwrap();
            prop_assert_eq!(back, f);
        }

        #[test]
        fn index_decoder_never_panics(b in prop::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(f) = from_cbor::<IndexFile>(&b, "index") {
                let _ = Index::from_files([&f]);
            }
        }
    }
}
