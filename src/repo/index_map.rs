//! The index map: a local, rebuildable copy of the merged in-memory [`Index`] as one file of
//! sorted fixed-width records that commands memory-map instead of loading every index file.
//!
//! It lives at `<cache dir>/index/merged` and is keyed by the set of index files (names and
//! sizes; an index file's name is the hash of its bytes): a map whose key differs is rebuilt
//! from the index files, one whose checksum or shape is wrong is ignored. It is only an
//! optimisation: without a cache folder, or where it cannot be written, commands load the index
//! files as before. Entries are checked when used, as any index entry is (a blob read is
//! authenticated and its id re-computed).
//!
//! Layout (little-endian): magic `HBIXMAP1`, the key (32 bytes), the BLAKE3 hash of everything
//! after the header (32 bytes), the counts of packs, data entries, tree entries and distinct
//! blobs (u64 each), 8 bytes of zero; then the pack ids (32 bytes each), the data entries and
//! the tree entries (48 bytes each: blob id, pack number, offset, stored length with the top
//! bit for "compressed", raw length; u32s), each table sorted by blob id.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::Id;
use crate::repo::index::{Entry, Index};

const MAGIC: &[u8; 8] = b"HBIXMAP1";
/// Header bytes: magic, key, checksum, four counts, padding (a multiple of 8, so the tables
/// after it are aligned for their u32 fields).
const HEADER: usize = 8 + 32 + 32 + 4 * 8 + 8;
const ENTRY: usize = std::mem::size_of::<Entry>();
const _: () = assert!(ENTRY == 48 && std::mem::align_of::<Entry>() <= 8);
const _: () = assert!(std::mem::size_of::<Id>() == 32 && std::mem::align_of::<Id>() == 1);

/// The key of a set of index files (name and size each): the map is valid for exactly this set.
pub fn key(files: &[(String, u64)]) -> Id {
    let mut sorted: Vec<&(String, u64)> = files.iter().collect();
    sorted.sort();
    let mut h = blake3::Hasher::new();
    h.update(b"hydrabackup index map v1\0");
    for (name, size) in sorted {
        h.update(name.as_bytes());
        h.update(b"\0");
        h.update(&size.to_le_bytes());
    }
    Id(*h.finalize().as_bytes())
}

/// Where the map of a repository's cache folder lives.
pub fn path(cache_dir: &Path) -> PathBuf {
    cache_dir.join("index").join("merged")
}

/// A memory-mapped index map file: its tables.
pub(crate) struct Mapped {
    map: Mmap,
    packs: usize,
    data: usize,
    tree: usize,
}

impl Mapped {
    fn at<T>(&self, offset: usize, count: usize) -> &[T] {
        let bytes = &self.map[offset..offset + count * std::mem::size_of::<T>()];
        assert_eq!(bytes.as_ptr() as usize % std::mem::align_of::<T>(), 0);
        // SAFETY: `T` is `Id` (a transparent [u8; 32]) or `Entry` (repr(C): an `Id` and four
        // u32s, no padding, asserted above): every bit pattern is a valid value. The range
        // lies within the mapping (sliced above, which panics otherwise) and is aligned for
        // `T` (asserted). The mapping is read-only and lives as long as `self`, which the
        // returned slice borrows. The file is never written in place: it is written under a
        // temporary name and renamed, so a rebuild by another process replaces it with a new
        // file and leaves this mapping's file unchanged.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), count) }
    }

    pub(crate) fn packs(&self) -> &[Id] {
        self.at(HEADER, self.packs)
    }

    pub(crate) fn data(&self) -> &[Entry] {
        self.at(HEADER + 32 * self.packs, self.data)
    }

    pub(crate) fn tree(&self) -> &[Entry] {
        self.at(HEADER + 32 * self.packs + ENTRY * self.data, self.tree)
    }
}

fn bytes_of<T>(v: &[T]) -> &[u8] {
    // SAFETY: `T` is `Id` or `Entry` (see `Mapped::at`): plain bytes and u32s without padding,
    // so every byte of the slice is initialised; the length is the slice's size in bytes.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// Opens the map at `path` if it is there, whole, and made for `key`; `None` otherwise (it is
/// then rebuilt).
pub fn open(path: &Path, key: &Id) -> Option<Index> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut header = [0u8; HEADER];
    file.read_exact(&mut header).ok()?;
    if &header[..8] != MAGIC || header[8..40] != key.0 {
        return None;
    }
    let count = |i: usize| {
        let at = 72 + 8 * i;
        usize::try_from(u64::from_le_bytes(
            header[at..at + 8].try_into().expect("8"),
        ))
    };
    let (packs, data) = (count(0).ok()?, count(1).ok()?);
    let (tree, distinct) = (count(2).ok()?, count(3).ok()?);
    let body = packs
        .checked_mul(32)?
        .checked_add(data.checked_add(tree)?.checked_mul(ENTRY)?)?;
    if file.metadata().ok()?.len() != (HEADER + body) as u64 {
        return None;
    }
    // The checksum is computed from reads, not through the mapping: only the pages lookups
    // touch become part of the process's memory.
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
            }
            Err(_) => return None,
        }
    }
    if h.finalize().as_bytes()[..] != header[40..72] {
        tracing::warn!("index map {} is damaged; rebuilding it", path.display());
        return None;
    }
    // SAFETY: the file is only ever replaced by rename, never written in place (see `save`), so
    // its bytes do not change while mapped.
    let map = unsafe { Mmap::map(&file) }.ok()?;
    if map.len() != HEADER + body {
        return None;
    }
    // The checksum shows these are the tables `save` wrote: sorted, pack numbers in range.
    let mapped = Mapped {
        map,
        packs,
        data,
        tree,
    };
    Some(Index::mapped(mapped, distinct))
}

/// Writes the map of `index` for `key` at `path` (a temporary file renamed into place).
pub fn save(path: &Path, key: &Id, index: &Index) -> std::io::Result<()> {
    let dir = path.parent().expect("map path has a folder");
    std::fs::create_dir_all(dir)?;
    let (packs, data, tree) = index.tables();
    let mut h = blake3::Hasher::new();
    for part in [bytes_of(packs), bytes_of(data), bytes_of(tree)] {
        h.update(part);
    }
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&key.0);
    header.extend_from_slice(h.finalize().as_bytes());
    for n in [packs.len(), data.len(), tree.len(), index.len()] {
        header.extend_from_slice(&(n as u64).to_le_bytes());
    }
    header.resize(HEADER, 0);
    let tmp = dir.join(format!(".merged.tmp.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        for part in [&header[..], bytes_of(packs), bytes_of(data), bytes_of(tree)] {
            f.write_all(part)?;
        }
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::blob::BlobType;
    use crate::repo::index::{IndexFile, IndexPack};
    use crate::repo::pack::PackEntry;

    fn index() -> Index {
        let entries: Vec<PackEntry> = (0..50u8)
            .map(|i| PackEntry {
                kind: if i % 3 == 0 {
                    BlobType::Tree
                } else {
                    BlobType::Data
                },
                id: Id([i.wrapping_mul(37); 32]),
                offset: u32::from(i) * 100,
                len: 100,
                raw_len: 150 + u32::from(i),
                compressed: i % 2 == 0,
            })
            .collect();
        let file = |pack: u8, e: &[PackEntry]| IndexFile {
            version: 1,
            supersedes: vec![],
            packs: vec![IndexPack::from_entries(Id([pack; 32]), e)],
        };
        // Blob 7 twice: both copies are kept, in order.
        Index::from_files(&[file(1, &entries[..30]), file(2, &entries[7..])])
    }

    #[test]
    fn a_saved_map_answers_as_the_index_it_was_made_from() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path());
        let ix = index();
        let k = key(&[("a".into(), 1), ("b".into(), 2)]);
        save(&path, &k, &ix).unwrap();
        let mapped = open(&path, &k).expect("the map opens");
        assert_eq!(mapped.heap_bytes(), 0);
        assert_eq!(mapped.len(), ix.len());
        assert_eq!(mapped.packs(), ix.packs());
        assert!(mapped.iter().eq(ix.iter()));
        assert_eq!(mapped.duplicates(), ix.duplicates());
        for i in 0..=255u8 {
            for kind in [BlobType::Data, BlobType::Tree] {
                let id = Id([i; 32]);
                assert!(mapped.copies(kind, &id).eq(ix.copies(kind, &id)));
            }
        }
        // The key is the set of files, in any order; another set does not open it.
        assert!(open(&path, &key(&[("b".into(), 2), ("a".into(), 1)])).is_some());
        assert!(open(&path, &key(&[("a".into(), 1), ("b".into(), 3)])).is_none());
        assert!(open(&path, &key(&[("a".into(), 1)])).is_none());
    }

    #[test]
    fn a_damaged_or_cut_map_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path());
        let k = key(&[]);
        save(&path, &k, &index()).unwrap();
        let good = std::fs::read(&path).unwrap();
        for at in [0, 50, 80, HEADER + 3, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            std::fs::write(&path, &bad).unwrap();
            assert!(open(&path, &k).is_none(), "byte {at} flipped");
        }
        for len in [0, HEADER - 1, HEADER, good.len() - 48, good.len() - 1] {
            std::fs::write(&path, &good[..len]).unwrap();
            assert!(open(&path, &k).is_none(), "cut to {len}");
        }
        let mut longer = good.clone();
        longer.extend_from_slice(&[0; 48]);
        std::fs::write(&path, &longer).unwrap();
        assert!(open(&path, &k).is_none());
        std::fs::write(&path, &good).unwrap();
        assert!(open(&path, &k).is_some());
    }
}
