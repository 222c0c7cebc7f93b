//! The index map: a local, rebuildable copy of the merged in-memory [`Index`] as one file of
//! sorted fixed-width records that commands memory-map instead of loading every index file.
//!
//! It holds the live index (what backups deduplicate against: the packs effective index files
//! list, repo-format.md §9a) as mapped tables, and beside them the few pack records readers use
//! only after those (superseded files' and marked packs no effective file lists as live,
//! [`crate::repo::index::reader_fallback`]), which [`crate::repo::Repository::load_index`]
//! decodes into a small heap fallback; `load_live_index` leaves them out.
//!
//! It lives at `<cache dir>/index/merged` and is keyed by the set of index files (names and
//! sizes; an index file's name is the hash of its bytes). A map made from some of the current
//! index files, when the others only add blobs (a backup ran since), is extended with them; any
//! other map whose key differs is rebuilt from the index files, and one whose checksum or shape
//! is wrong is ignored. It is only an optimisation: without a cache folder, or where it cannot
//! be written, commands load the index files as before. Entries are checked when used, as any
//! index entry is (a blob read is authenticated and its id re-computed).
//!
//! Layout (little-endian): magic `HBIXMAP2`, the key (32 bytes), a checksum (32 bytes: BLAKE3
//! of the rest of the header and of the BLAKE3 hash of everything after it), the counts of
//! index files, packs, data entries, tree entries and distinct blobs and the fallback's length
//! (u64 each); then per index file the BLAKE3 hash of its name and its size (u64), the pack ids
//! (32 bytes each), the data entries and the tree entries (48 bytes each: blob id, pack number,
//! offset, stored length with the top bit for "compressed", raw length; u32s), each table
//! sorted by blob id, then the fallback's pack records (CBOR, as in index files).

use std::collections::HashSet;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::Id;
use crate::repo::index::{Entry, Index, IndexPack};
use crate::repo::object::{from_cbor, to_cbor};

const MAGIC: &[u8; 8] = b"HBIXMAP2";
/// Header bytes: magic, key, checksum, six counts (a multiple of 8, so the tables after it
/// are aligned for their u32 fields).
const HEADER: usize = 8 + 32 + 32 + 6 * 8;
/// Bytes per index file listed: its name's hash and its size.
const FILE: usize = 40;
const ENTRY: usize = std::mem::size_of::<Entry>();
const _: () = assert!(ENTRY == 48 && std::mem::align_of::<Entry>() <= 8);
const _: () = assert!(std::mem::size_of::<Id>() == 32 && std::mem::align_of::<Id>() == 1);

/// How one index file is listed in the map.
fn file_record(name: &str, size: u64) -> [u8; FILE] {
    let mut r = [0u8; FILE];
    r[..32].copy_from_slice(blake3::hash(name.as_bytes()).as_bytes());
    r[32..].copy_from_slice(&size.to_le_bytes());
    r
}

/// The key of a set of index files (name and size each): the map is valid for exactly this set.
pub fn key(files: &[(String, u64)]) -> Id {
    let mut sorted: Vec<&(String, u64)> = files.iter().collect();
    sorted.sort();
    let mut h = blake3::Hasher::new();
    h.update(b"hydrabackup index map v2\0");
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
    files: usize,
    packs: usize,
    data: usize,
    tree: usize,
}

impl Mapped {
    fn at<T>(&self, offset: usize, count: usize) -> &[T] {
        let bytes = &self.map[offset..offset + count * std::mem::size_of::<T>()];
        assert_eq!(bytes.as_ptr() as usize % std::mem::align_of::<T>(), 0);
        // SAFETY: `T` is `u8`, `Id` (a transparent [u8; 32]) or `Entry` (repr(C): an `Id` and
        // four u32s, no padding, asserted above): every bit pattern is a valid value. The range
        // lies within the mapping (sliced above, which panics otherwise) and is aligned for
        // `T` (asserted). The mapping is read-only and lives as long as `self`, which the
        // returned slice borrows. The file is never written in place: it is written under a
        // temporary name and renamed, so a rebuild by another process replaces it with a new
        // file and leaves this mapping's file unchanged.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), count) }
    }

    fn files(&self) -> &[u8] {
        self.at(HEADER, self.files * FILE)
    }

    pub(crate) fn packs(&self) -> &[Id] {
        self.at(HEADER + FILE * self.files, self.packs)
    }

    pub(crate) fn data(&self) -> &[Entry] {
        self.at(HEADER + FILE * self.files + 32 * self.packs, self.data)
    }

    pub(crate) fn tree(&self) -> &[Entry] {
        let at = HEADER + FILE * self.files + 32 * self.packs + ENTRY * self.data;
        self.at(at, self.tree)
    }
}

fn bytes_of<T>(v: &[T]) -> &[u8] {
    // SAFETY: `T` is `Id` or `Entry` (see `Mapped::at`): plain bytes and u32s without padding,
    // so every byte of the slice is initialised; the length is the slice's size in bytes.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// The checksum of a map: over its header (but the checksum) and the hash of its body.
fn checksum(header: &[u8], body: blake3::Hash) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&header[..40]);
    h.update(&header[72..HEADER]);
    h.update(body.as_bytes());
    *h.finalize().as_bytes()
}

/// What [`open`] found.
pub enum Opened {
    /// A map of exactly the current index files: the live index and the readers' fallback.
    Exact(Index, Vec<IndexPack>),
    /// A map of some of them; the others (name and size) are to be added.
    Older(Index, Vec<IndexPack>, Vec<(String, u64)>),
    /// No usable map.
    None,
}

/// Opens the map at `path` for the current index `files` (whose key is `key`): exact, older (made
/// from some of them), or none when it is missing, damaged or made from files no longer there.
pub fn open(path: &Path, key: &Id, files: &[(String, u64)]) -> Opened {
    let Some((index, fallback, mapped_files)) = open_any(path) else {
        return Opened::None;
    };
    if mapped_files.key == *key {
        return Opened::Exact(index, fallback);
    }
    let current: Vec<[u8; FILE]> = files.iter().map(|(n, s)| file_record(n, *s)).collect();
    let have: HashSet<&[u8; FILE]> = current.iter().collect();
    let listed: HashSet<&[u8]> = mapped_files.records.chunks(FILE).collect();
    if !listed
        .iter()
        .all(|r| have.contains(&<&[u8; FILE]>::try_from(*r).expect("FILE")))
    {
        return Opened::None;
    }
    let missing = files
        .iter()
        .zip(&current)
        .filter(|(_, r)| !listed.contains(&r[..]))
        .map(|(f, _)| f.clone())
        .collect();
    Opened::Older(index, fallback, missing)
}

struct MapFiles {
    key: Id,
    records: Vec<u8>,
}

/// Opens and checks a map, whatever its key.
fn open_any(path: &Path) -> Option<(Index, Vec<IndexPack>, MapFiles)> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut header = [0u8; HEADER];
    file.read_exact(&mut header).ok()?;
    if &header[..8] != MAGIC {
        return None;
    }
    let count = |i: usize| {
        let at = 72 + 8 * i;
        usize::try_from(u64::from_le_bytes(
            header[at..at + 8].try_into().expect("8"),
        ))
    };
    let (files, packs, data) = (count(0).ok()?, count(1).ok()?, count(2).ok()?);
    let (tree, distinct, extra) = (count(3).ok()?, count(4).ok()?, count(5).ok()?);
    let tables = files
        .checked_mul(FILE)?
        .checked_add(packs.checked_mul(32)?)?
        .checked_add(data.checked_add(tree)?.checked_mul(ENTRY)?)?;
    let body = tables.checked_add(extra)?;
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
    if checksum(&header, h.finalize()) != header[40..72] {
        tracing::warn!("index map {} is damaged; rebuilding it", path.display());
        return None;
    }
    // SAFETY: the file is only ever replaced by rename, never written in place (see `write`),
    // so its bytes do not change while mapped.
    let map = unsafe { Mmap::map(&file) }.ok()?;
    if map.len() != HEADER + body {
        return None;
    }
    let fallback: Vec<IndexPack> = match extra {
        0 => Vec::new(),
        _ => from_cbor(&map[HEADER + tables..], "index map fallback").ok()?,
    };
    // The checksum shows these are the tables `write` wrote: sorted, pack numbers in range.
    let mapped = Mapped {
        map,
        files,
        packs,
        data,
        tree,
    };
    let listed = MapFiles {
        key: Id(header[8..40].try_into().expect("32")),
        records: mapped.files().to_vec(),
    };
    Some((Index::mapped(mapped, distinct), fallback, listed))
}

/// Writes the map of the live `index` and the readers' `fallback`, made from the index `files`
/// (key `key`), at `path`.
pub fn save(
    path: &Path,
    key: &Id,
    files: &[(String, u64)],
    index: &Index,
    fallback: &[IndexPack],
) -> std::io::Result<()> {
    let (packs, data, tree) = index.tables();
    write(
        path,
        key,
        files,
        packs,
        [data.iter().copied(), tree.iter().copied()],
        fallback,
    )
}

/// Writes the map of `older` extended with `newer` (made from the rest of the index `files`)
/// at `path`; see [`Index::merge_with`].
pub fn save_merged(
    path: &Path,
    key: &Id,
    files: &[(String, u64)],
    older: &Index,
    newer: &Index,
    fallback: &[IndexPack],
) -> std::io::Result<()> {
    let (packs, tables) = older.merge_with(newer);
    write(path, key, files, &packs, tables, fallback)
}

/// Writes a map (to a temporary file renamed into place), streaming the sorted tables.
fn write(
    path: &Path,
    key: &Id,
    files: &[(String, u64)],
    packs: &[Id],
    tables: [impl Iterator<Item = Entry>; 2],
    fallback: &[IndexPack],
) -> std::io::Result<()> {
    let dir = path.parent().expect("map path has a folder");
    std::fs::create_dir_all(dir)?;
    // Unique per process and call: threads of one process may write maps at once.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".merged.tmp.{}.{n}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        let mut h = blake3::Hasher::new();
        let mut put = |f: &mut std::io::BufWriter<std::fs::File>, b: &[u8]| {
            h.update(b);
            f.write_all(b)
        };
        f.write_all(&[0; HEADER])?;
        for (n, s) in files {
            put(&mut f, &file_record(n, *s))?;
        }
        put(&mut f, bytes_of(packs))?;
        let (mut counts, mut distinct) = ([0u64; 2], 0u64);
        for (t, entries) in tables.into_iter().enumerate() {
            let mut last = None;
            for e in entries {
                put(&mut f, bytes_of(std::slice::from_ref(&e)))?;
                counts[t] += 1;
                distinct += u64::from(last != Some(e.id));
                last = Some(e.id);
            }
        }
        let extra = match fallback.is_empty() {
            true => Vec::new(),
            false => to_cbor(&fallback),
        };
        put(&mut f, &extra)?;
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&key.0);
        header.extend_from_slice(&[0; 32]);
        let n = [
            files.len() as u64,
            packs.len() as u64,
            counts[0],
            counts[1],
            distinct,
            extra.len() as u64,
        ];
        for c in n {
            header.extend_from_slice(&c.to_le_bytes());
        }
        let sum = checksum(&header, h.finalize());
        header[40..72].copy_from_slice(&sum);
        let mut f = f.into_inner().map_err(|e| e.into_error())?;
        f.rewind()?;
        f.write_all(&header)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    remove_stale_temporaries(dir);
    Ok(())
}

/// Removes temporary maps a killed process left, once they are a day old.
fn remove_stale_temporaries(dir: &Path) {
    let day = std::time::Duration::from_secs(24 * 3600);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|a| a > day));
        if old
            && e.file_name()
                .as_encoded_bytes()
                .starts_with(b".merged.tmp.")
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::blob::BlobType;
    use crate::repo::index::IndexFile;
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
            ..Default::default()
        };
        // Blob 7 twice: both copies are kept, in order.
        Index::from_files(&[file(1, &entries[..30]), file(2, &entries[7..])])
    }

    #[test]
    fn a_saved_map_answers_as_the_index_it_was_made_from() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path());
        let ix = index();
        let files = [("a".to_string(), 1), ("b".to_string(), 2)];
        let k = key(&files);
        save(&path, &k, &files, &ix, &[]).unwrap();
        let Opened::Exact(mapped, _) = open(&path, &k, &files) else {
            panic!("the map opens")
        };
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
        // The key is the set of files, in any order; a set without one of them, or with a file
        // of another size, does not open it; a set with more files opens it as older.
        let set = |f: &[(&str, u64)]| -> Vec<(String, u64)> {
            f.iter().map(|(n, s)| (n.to_string(), *s)).collect()
        };
        let opens = |f: &[(String, u64)]| match open(&path, &key(f), f) {
            Opened::Exact(..) => "exact".to_string(),
            Opened::Older(_, _, missing) => format!("older {missing:?}"),
            Opened::None => "none".to_string(),
        };
        assert_eq!(opens(&set(&[("b", 2), ("a", 1)])), "exact");
        assert_eq!(opens(&set(&[("a", 1), ("b", 3)])), "none");
        assert_eq!(opens(&set(&[("a", 1)])), "none");
        assert_eq!(
            opens(&set(&[("c", 9), ("a", 1), ("b", 2)])),
            r#"older [("c", 9)]"#
        );
    }

    #[test]
    fn an_extended_map_answers_as_the_index_of_all_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path());
        let e = |i: u8, off: u32| PackEntry {
            kind: BlobType::Data,
            id: Id([i; 32]),
            offset: off,
            len: 100,
            raw_len: 100,
            compressed: false,
        };
        let file = |pack: u8, e: Vec<PackEntry>| IndexFile {
            version: 1,
            supersedes: vec![],
            packs: vec![IndexPack::from_entries(Id([pack; 32]), &e)],
            ..Default::default()
        };
        // Blob 5 in both (another copy), blob 3 listed twice in the same place (kept once).
        let f1 = file(1, vec![e(3, 0), e(5, 100), e(9, 200)]);
        let f2 = file(2, vec![e(1, 0), e(5, 100), e(7, 200)]);
        let f3 = file(1, vec![e(3, 0)]);
        let whole = Index::from_files([&f1, &f2, &f3]);
        let files = [("x".to_string(), 1)];
        save_merged(
            &path,
            &key(&files),
            &files,
            &Index::from_files([&f1]),
            &Index::from_files([&f2, &f3]),
            &[],
        )
        .unwrap();
        let Opened::Exact(merged, _) = open(&path, &key(&files), &files) else {
            panic!("the map opens")
        };
        assert_eq!(merged.len(), whole.len());
        assert_eq!(merged.packs(), whole.packs());
        assert!(merged.iter().eq(whole.iter()));
        assert_eq!(merged.duplicates(), whole.duplicates());
    }

    #[test]
    fn the_map_holds_the_live_index_and_readers_get_the_fallback_after_it() {
        use crate::repo::index::{self, MarkedPack};
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path());
        let e = |i: u8, off: u32| PackEntry {
            kind: BlobType::Data,
            id: Id([i; 32]),
            offset: off,
            len: 100,
            raw_len: 100,
            compressed: false,
        };
        let pack = |p: u8, e: Vec<PackEntry>| IndexPack::from_entries(Id([p; 32]), &e);
        // Pack 1 live; pack 2 marked (blob 5 also in pack 1, blob 6 only there); pack 3 only
        // in a superseded file.
        let old = IndexFile {
            version: 1,
            packs: vec![pack(3, vec![e(7, 0)]), pack(1, vec![e(5, 0)])],
            ..Default::default()
        };
        let old_name = crate::Id([9; 32]).to_hex();
        let new = IndexFile {
            version: 1,
            supersedes: vec![Id([9; 32])],
            packs: vec![pack(1, vec![e(5, 0)])],
            marked: vec![MarkedPack {
                pack: pack(2, vec![e(5, 100), e(6, 0)]),
                time: 1,
            }],
            ..Default::default()
        };
        let files = vec![(old_name, old), ("b".repeat(64), new)];
        let listed: Vec<(String, u64)> = files.iter().map(|(n, _)| (n.clone(), 1)).collect();
        let k = key(&listed);
        let fallback = index::reader_fallback(&files);
        save(&path, &k, &listed, &index::live_index(&files), &fallback).unwrap();
        let Opened::Exact(live, fb) = open(&path, &k, &listed) else {
            panic!("the map opens")
        };
        let reader = index::reader_index(&files);
        // The live view: pack 1 only.
        assert!(live.contains(BlobType::Data, &Id([5; 32])));
        assert!(!live.contains(BlobType::Data, &Id([6; 32])));
        assert!(!live.contains(BlobType::Data, &Id([7; 32])));
        assert_eq!(live.packs(), &[Id([1; 32])]);
        // The readers' view: the same copies, in the same order, as the reader index.
        let r = live.with_fallback(Index::from_records(&fb));
        assert_eq!(r.len(), reader.len());
        assert!(r.iter().eq(reader.iter()));
        assert_eq!(r.duplicates(), reader.duplicates());
        let mut packs = r.packs().to_vec();
        let mut want = reader.packs().to_vec();
        packs.sort();
        want.sort();
        assert_eq!(packs, want);
        for i in 0..10u8 {
            let id = Id([i; 32]);
            assert!(
                r.copies(BlobType::Data, &id)
                    .eq(reader.copies(BlobType::Data, &id))
            );
        }
    }

    #[test]
    fn writing_a_map_removes_day_old_temporaries_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let (old, fresh) = (
            path.with_file_name(".merged.tmp.1.0"),
            path.with_file_name(".merged.tmp.2.0"),
        );
        std::fs::write(&old, b"x").unwrap();
        std::fs::write(&fresh, b"x").unwrap();
        let two_days_ago = filetime::FileTime::from_unix_time(
            filetime::FileTime::now().unix_seconds() - 2 * 24 * 3600,
            0,
        );
        filetime::set_file_mtime(&old, two_days_ago).unwrap();
        save(&path, &key(&[]), &[], &index(), &[]).unwrap();
        assert!(!old.exists() && fresh.exists() && path.exists());
    }

    #[test]
    fn a_damaged_or_cut_map_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path());
        let k = key(&[]);
        save(&path, &k, &[], &index(), &[]).unwrap();
        let good = std::fs::read(&path).unwrap();
        for at in [0, 50, 80, HEADER + 3, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            std::fs::write(&path, &bad).unwrap();
            assert!(
                matches!(open(&path, &k, &[]), Opened::None),
                "byte {at} flipped"
            );
        }
        for len in [0, HEADER - 1, HEADER, good.len() - 48, good.len() - 1] {
            std::fs::write(&path, &good[..len]).unwrap();
            assert!(matches!(open(&path, &k, &[]), Opened::None), "cut to {len}");
        }
        let mut longer = good.clone();
        longer.extend_from_slice(&[0; 48]);
        std::fs::write(&path, &longer).unwrap();
        assert!(matches!(open(&path, &k, &[]), Opened::None));
        std::fs::write(&path, &good).unwrap();
        assert!(matches!(open(&path, &k, &[]), Opened::Exact(..)));
    }
}
