//! Finding the loadable prefix of a `.hyd` file.
//!
//! [`scan`] walks the blocks of a file the way HydrAIDE's reader does — from the
//! first block to end of data, without trusting the header's counts — and stops at
//! the first block that is incomplete or damaged. The result tells how many bytes
//! form a loadable prefix ([`Scan::valid_len`]) and why the walk stopped
//! ([`Scan::problem`]). Written for files that grow while they are read: a block
//! still being appended shows up as [`ScanProblem::TornTail`] (or
//! [`ScanProblem::PartialBlockHeader`]) after the last complete block.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use super::block::{self, BlockHeader, Op};
use super::header::{FileHeader, HeaderError};
use super::{BLOCK_HEADER_SIZE, FILE_HEADER_SIZE, HydError, MAGIC, SWAMP_META_KEY};

/// One complete, CRC-valid block found by a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockInfo {
    /// Offset of the block header in the file.
    pub offset: u64,
    /// Length of the block including its 16-byte header.
    pub len: u64,
    /// Entries in the block.
    pub entry_count: u16,
    /// Size of the block's entries after decompression.
    pub uncompressed_size: u32,
}

impl BlockInfo {
    /// Offset just past the block.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// Why a scan stopped before end of data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanProblem {
    /// The file is shorter than the 64-byte header (e.g. caught just after creation).
    #[error("file holds {len} bytes, shorter than the 64-byte header")]
    ShortHeader {
        /// Bytes present.
        len: u64,
    },
    /// Not a `.hyd` file.
    #[error("bad magic {found:02x?}")]
    BadMagic {
        /// The first bytes found (fewer than 4 if the file is that short).
        found: Vec<u8>,
    },
    /// A `.hyd` file of a version this crate does not know.
    #[error("unsupported version {version}")]
    UnsupportedVersion {
        /// Version found.
        version: u16,
    },
    /// A version-3 file ends inside the swamp name.
    #[error("file ends inside the swamp name: need {need} bytes, have {have}")]
    ShortName {
        /// Name length from the header.
        need: u16,
        /// Name bytes present.
        have: u64,
    },
    /// Fewer than 16 bytes follow the last block: HydrAIDE treats this as end of
    /// data and loads the file; the bytes are not part of the loadable prefix.
    #[error("{have} bytes of a block header at offset {offset} (end of data)")]
    PartialBlockHeader {
        /// Offset of the partial header.
        offset: u64,
        /// Bytes present (1..=15).
        have: u64,
    },
    /// The file ends inside a block's payload: a block being appended, or a file
    /// cut short. HydrAIDE fails to load such a file; its prefix up to `offset` loads.
    #[error("torn block at offset {offset}: {have} of {need} bytes present")]
    TornTail {
        /// Offset of the torn block.
        offset: u64,
        /// Full length of the block, header included.
        need: u64,
        /// Bytes of it present, header included.
        have: u64,
    },
    /// A complete block whose payload does not match its CRC.
    #[error("crc mismatch in block at offset {offset} (last block in file: {at_tail})")]
    CrcMismatch {
        /// Offset of the block.
        offset: u64,
        /// CRC in the block header.
        expected: u32,
        /// CRC of the payload.
        actual: u32,
        /// True if the block ends exactly at end of file (maybe a write in
        /// progress); false if more data follows (corruption).
        at_tail: bool,
    },
    /// A block header whose sizes cannot be real.
    #[error(
        "implausible block header at offset {offset}: compressed {compressed}, uncompressed {uncompressed}, entries {entries}"
    )]
    ImplausibleSize {
        /// Offset of the block.
        offset: u64,
        /// CompressedSize field.
        compressed: u32,
        /// UncompressedSize field.
        uncompressed: u32,
        /// EntryCount field.
        entries: u16,
    },
    /// CRC matches but the Snappy stream disagrees with the header's size.
    #[error("bad payload in block at offset {offset}: {detail}")]
    BadPayload {
        /// Offset of the block.
        offset: u64,
        /// Description.
        detail: String,
        /// True if the block ends exactly at end of file.
        at_tail: bool,
    },
}

impl ScanProblem {
    /// True if HydrAIDE would still load the file (only trailing bytes of a block
    /// header follow the last block).
    pub fn is_benign(&self) -> bool {
        matches!(self, ScanProblem::PartialBlockHeader { .. })
    }

    /// True if the problem is what a reader racing an appending writer can see:
    /// an incomplete header, name or last block. Reading again later may succeed.
    pub fn is_tail(&self) -> bool {
        match self {
            ScanProblem::ShortHeader { .. }
            | ScanProblem::ShortName { .. }
            | ScanProblem::PartialBlockHeader { .. }
            | ScanProblem::TornTail { .. } => true,
            ScanProblem::CrcMismatch { at_tail, .. } | ScanProblem::BadPayload { at_tail, .. } => {
                *at_tail
            }
            _ => false,
        }
    }

    /// True if the data is not a `.hyd` file at all (bad magic or version).
    pub fn is_not_hyd(&self) -> bool {
        matches!(
            self,
            ScanProblem::BadMagic { .. } | ScanProblem::UnsupportedVersion { .. }
        )
    }
}

/// What a scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The file header, as stored (counts may be stale); `None` if there is no
    /// valid header.
    pub header: Option<FileHeader>,
    /// Swamp name: from after the header (v3), or else (v2, or v3 without a
    /// stored name) from the first `__swamp_meta__` METADATA entry, in any block.
    pub name: Option<String>,
    /// Offset of the first block.
    pub data_start: u64,
    /// Complete, CRC-valid blocks, in file order.
    pub blocks: Vec<BlockInfo>,
    /// Length of the loadable prefix: the end of the last valid block (or
    /// `data_start` if there is none; 0 if the header or name is incomplete).
    pub valid_len: u64,
    /// Sum of the entry counts of `blocks`.
    pub entries: u64,
    /// Why the scan stopped before end of data, if it did.
    pub problem: Option<ScanProblem>,
}

impl Scan {
    fn empty(problem: ScanProblem) -> Scan {
        Scan {
            header: None,
            name: None,
            data_start: 0,
            blocks: Vec::new(),
            valid_len: 0,
            entries: 0,
            problem: Some(problem),
        }
    }

    /// True if the whole input is loadable by HydrAIDE as it is (no problem, or
    /// only a partial block header at the end).
    pub fn is_clean(&self) -> bool {
        self.header.is_some() && self.problem.as_ref().is_none_or(ScanProblem::is_benign)
    }

    /// True if the header's BlockCount and EntryCount equal what was found.
    pub fn header_counts_match(&self) -> bool {
        self.header.as_ref().is_some_and(|h| {
            h.block_count == self.blocks.len() as u64 && h.entry_count == self.entries
        })
    }

    /// Total uncompressed size of the valid blocks.
    pub fn uncompressed_total(&self) -> u64 {
        self.blocks
            .iter()
            .map(|b| u64::from(b.uncompressed_size))
            .sum()
    }
}

/// The header of `scan` rewritten so that EntryCount and BlockCount match the
/// blocks found (other fields kept). `None` if the scan found no valid header.
/// Put in front of `valid_len` bytes of the file, it gives a self-consistent copy.
pub fn consistent_header(scan: &Scan) -> Option<[u8; FILE_HEADER_SIZE]> {
    let mut h = scan.header.clone()?;
    h.block_count = scan.blocks.len() as u64;
    h.entry_count = scan.entries;
    Some(h.encode())
}

/// Scans a `.hyd` byte stream. Only I/O errors are errors; format problems are
/// reported in [`Scan::problem`].
pub fn scan<R: Read>(r: R) -> io::Result<Scan> {
    let mut name_from_meta = None;
    let mut s = walk(r, |header, _index, _info, bh, payload| {
        if name_from_meta.is_none() && header.name_len() == 0 {
            name_from_meta = v2_name(bh, payload);
        }
        Ok::<(), io::Error>(())
    })?;
    if s.name.is_none() {
        s.name = name_from_meta;
    }
    Ok(s)
}

/// Scans a complete in-memory file (or a prefix of one).
pub fn scan_bytes(data: &[u8]) -> Scan {
    // Reading from a slice cannot fail.
    scan(data).unwrap_or_else(|_| Scan::empty(ScanProblem::ShortHeader { len: 0 }))
}

/// Opens and scans a file.
pub fn scan_file(path: &Path) -> Result<Scan, HydError> {
    let f = File::open(path).map_err(|e| HydError::from(e).at(path))?;
    scan(BufReader::with_capacity(1 << 16, f)).map_err(|e| HydError::from(e).at(path))
}

/// The swamp name carried by a block of a version-2 file (its `__swamp_meta__` METADATA entry).
pub(crate) fn v2_name(bh: &BlockHeader, payload: &[u8]) -> Option<String> {
    let raw = block::decompress_block(bh, payload).ok()?;
    let entries = block::parse_entries(&raw, bh.entry_count).ok()?;
    entries
        .iter()
        .find(|e| e.op == Op::Metadata && e.key == SWAMP_META_KEY && !e.data.is_empty())
        .map(|e| String::from_utf8_lossy(e.data).into_owned())
}

/// Reads until `buf` is full or end of stream; returns the bytes read.
pub(crate) fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads up to `n` bytes into `out` (cleared first), growing it only as data
/// arrives, so a lying size field cannot force a large allocation.
fn read_up_to<R: Read>(r: &mut R, n: u64, out: &mut Vec<u8>) -> io::Result<u64> {
    const CHUNK: usize = 1 << 16;
    out.clear();
    let mut chunk = [0u8; CHUNK];
    let mut left = n;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
        let got = read_full(r, &mut chunk[..want])?;
        out.extend_from_slice(&chunk[..got]);
        left -= got as u64;
        if got < want {
            break;
        }
    }
    Ok(n - left)
}

/// Walks the blocks of a stream, calling `on_block(header, index, info,
/// block_header, payload)` for every complete, CRC-valid block. An error from the
/// callback aborts the walk.
pub(crate) fn walk<R, E, F>(mut r: R, mut on_block: F) -> Result<Scan, E>
where
    R: Read,
    E: From<io::Error>,
    F: FnMut(&FileHeader, usize, &BlockInfo, &BlockHeader, &[u8]) -> Result<(), E>,
{
    let mut hb = [0u8; FILE_HEADER_SIZE];
    let n = read_full(&mut r, &mut hb)?;
    let header = match FileHeader::decode(&hb[..n]) {
        Ok(h) => h,
        Err(e) => {
            let k = n.min(4);
            let problem = if hb[..k] != MAGIC[..k] {
                ScanProblem::BadMagic {
                    found: hb[..k].to_vec(),
                }
            } else {
                match e {
                    HeaderError::UnsupportedVersion(version) if n >= 6 => {
                        ScanProblem::UnsupportedVersion { version }
                    }
                    HeaderError::BadMagic(found) => ScanProblem::BadMagic {
                        found: found.to_vec(),
                    },
                    _ => ScanProblem::ShortHeader { len: n as u64 },
                }
            };
            return Ok(Scan::empty(problem));
        }
    };
    let data_start = header.data_start();
    let mut s = Scan {
        header: Some(header.clone()),
        name: None,
        data_start,
        blocks: Vec::new(),
        valid_len: data_start,
        entries: 0,
        problem: None,
    };
    if header.name_len() > 0 {
        let mut nb = Vec::new();
        let got = read_up_to(&mut r, u64::from(header.name_len()), &mut nb)?;
        if got < u64::from(header.name_len()) {
            s.valid_len = 0;
            s.problem = Some(ScanProblem::ShortName {
                need: header.name_len(),
                have: got,
            });
            return Ok(s);
        }
        s.name = Some(String::from_utf8_lossy(&nb).into_owned());
    }

    let mut pos = data_start;
    let mut payload = Vec::new();
    loop {
        let mut bb = [0u8; BLOCK_HEADER_SIZE];
        let n = read_full(&mut r, &mut bb)?;
        if n == 0 {
            break;
        }
        if n < BLOCK_HEADER_SIZE {
            s.problem = Some(ScanProblem::PartialBlockHeader {
                offset: pos,
                have: n as u64,
            });
            break;
        }
        let bh = BlockHeader::decode(&bb);
        if bh.check_plausible().is_err() {
            s.problem = Some(ScanProblem::ImplausibleSize {
                offset: pos,
                compressed: bh.compressed_size,
                uncompressed: bh.uncompressed_size,
                entries: bh.entry_count,
            });
            break;
        }
        let got = read_up_to(&mut r, u64::from(bh.compressed_size), &mut payload)?;
        if got < u64::from(bh.compressed_size) {
            s.problem = Some(ScanProblem::TornTail {
                offset: pos,
                need: bh.total_len(),
                have: BLOCK_HEADER_SIZE as u64 + got,
            });
            break;
        }
        let checked =
            block::check_crc(&bh, &payload).and_then(|()| block::check_snappy_len(&bh, &payload));
        if let Err(e) = checked {
            let at_tail = read_full(&mut r, &mut [0u8; 1])? == 0;
            s.problem = Some(match e {
                block::BlockError::Checksum { expected, actual } => ScanProblem::CrcMismatch {
                    offset: pos,
                    expected,
                    actual,
                    at_tail,
                },
                other => ScanProblem::BadPayload {
                    offset: pos,
                    detail: other.to_string(),
                    at_tail,
                },
            });
            break;
        }
        let info = BlockInfo {
            offset: pos,
            len: bh.total_len(),
            entry_count: bh.entry_count,
            uncompressed_size: bh.uncompressed_size,
        };
        on_block(&header, s.blocks.len(), &info, &bh, &payload)?;
        s.blocks.push(info);
        s.entries += u64::from(bh.entry_count);
        pos = info.end();
        s.valid_len = pos;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hyd::block::Entry;
    use crate::hyd::header::Version;
    use crate::hyd::replay::{LiveSet, replay_bytes};
    use crate::hyd::writer::HydWriter;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::io::Cursor;

    /// Writes `batches` as one block each; returns the file and the live set
    /// after each block.
    fn build(
        version: Version,
        name: &str,
        batches: &[Vec<Entry>],
    ) -> (Vec<u8>, Vec<(u64, LiveSet)>) {
        let mut w = HydWriter::create_in(Cursor::new(Vec::new()), name, version, 7).unwrap();
        let mut model = BTreeMap::new();
        let mut states = vec![(w.len(), model.clone())];
        for b in batches {
            w.append_block(b).unwrap();
            for e in b {
                match e.op {
                    Op::Insert | Op::Update => {
                        model.insert(e.key.clone(), e.data.clone());
                    }
                    Op::Delete => {
                        model.remove(&e.key);
                    }
                    _ => {}
                }
            }
            states.push((w.len(), model.clone()));
        }
        // A version-2 file without batches still gets its METADATA block here.
        let file = w.finish(9).unwrap().into_inner();
        if states.last().map(|s| s.0) != Some(file.len() as u64) {
            states.push((file.len() as u64, model));
        }
        (file, states)
    }

    fn arb_batches() -> impl Strategy<Value = Vec<Vec<Entry>>> {
        let entry = (
            1u8..=3,
            0u8..12,
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(op, k, d)| Entry::new(Op::from_u8(op), format!("k{k}").into_bytes(), d));
        proptest::collection::vec(proptest::collection::vec(entry, 1..8), 0..5)
    }

    proptest! {
        #[test]
        fn write_then_scan(batches in arb_batches(), v3 in any::<bool>()) {
            let version = if v3 { Version::V3 } else { Version::V2 };
            let (file, states) = build(version, "s/r/swamp-1", &batches);
            let s = scan_bytes(&file);
            prop_assert!(s.problem.is_none(), "{:?}", s.problem);
            prop_assert!(s.header_counts_match());
            prop_assert_eq!(s.valid_len, file.len() as u64);
            prop_assert_eq!(s.name.as_deref(), Some("s/r/swamp-1"));
            let r = replay_bytes(&file).unwrap();
            prop_assert_eq!(&r.live, &states.last().map(|s| s.1.clone()).unwrap_or_default());
        }

        #[test]
        fn truncation_gives_prefix_or_torn_tail(batches in arb_batches(), v3 in any::<bool>()) {
            let version = if v3 { Version::V3 } else { Version::V2 };
            let (file, states) = build(version, "san/realm/sw", &batches);
            let bounds: BTreeMap<u64, &LiveSet> =
                states.iter().map(|(l, m)| (*l, m)).collect();
            for cut in 0..=file.len() {
                let s = scan_bytes(&file[..cut]);
                let cut = cut as u64;
                match &s.problem {
                    None => prop_assert_eq!(s.valid_len, cut),
                    Some(p) => {
                        prop_assert!(p.is_tail(), "cut {}: {:?}", cut, p);
                        prop_assert!(s.valid_len <= cut);
                    }
                }
                if s.valid_len == 0 {
                    let short_name = matches!(s.problem, Some(ScanProblem::ShortName { .. }));
                    prop_assert!(s.header.is_none() || short_name);
                    continue;
                }
                // The valid prefix, with a consistent header, loads and holds a
                // state the writer really had.
                let mut copy = file[..s.valid_len as usize].to_vec();
                copy[..64].copy_from_slice(&consistent_header(&s).unwrap());
                let again = scan_bytes(&copy);
                prop_assert!(again.problem.is_none());
                prop_assert!(again.header_counts_match());
                let r = replay_bytes(&copy).unwrap();
                let m = bounds.get(&s.valid_len);
                prop_assert!(m.is_some(), "cut {} gave unrecorded length {}", cut, s.valid_len);
                prop_assert_eq!(Some(&r.live), m.copied());
            }
        }

        #[test]
        fn byte_flips_never_panic(batches in arb_batches(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
            let (mut file, _) = build(Version::V3, "a/b/c", &batches);
            for (at, x) in flips {
                let n = file.len();
                file[at % n] ^= x | 1;
            }
            let s = scan_bytes(&file);
            prop_assert!(s.valid_len <= file.len() as u64);
            let _ = replay_bytes(&file);
            let _ = replay_bytes(&file[..s.valid_len as usize]);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400), v in 2u16..=3) {
            let mut data = data;
            if data.len() >= 6 {
                data[..4].copy_from_slice(&MAGIC);
                data[4..6].copy_from_slice(&v.to_le_bytes());
            }
            let s = scan_bytes(&data);
            prop_assert!(s.valid_len <= data.len() as u64);
            let _ = replay_bytes(&data);
        }
    }

    #[test]
    fn classifies_problems() {
        let batches = vec![
            vec![Entry::new(Op::Insert, b"a".to_vec(), b"1".to_vec())],
            vec![Entry::new(Op::Insert, b"b".to_vec(), b"2".to_vec())],
        ];
        let (file, _) = build(Version::V3, "x/y/z", &batches);
        let s = scan_bytes(&file);
        assert_eq!(s.blocks.len(), 2);
        let first = s.blocks[0];

        // Damaged payload in the first block: corruption, not a tail.
        let mut bad = file.clone();
        bad[first.offset as usize + 16] ^= 0xff;
        let s2 = scan_bytes(&bad);
        assert!(matches!(
            s2.problem,
            Some(ScanProblem::CrcMismatch { at_tail: false, .. })
        ));
        assert_eq!(s2.valid_len, first.offset);

        // Damaged payload in the last block: maybe a write in progress.
        let mut bad = file.clone();
        let n = bad.len();
        bad[n - 1] ^= 0xff;
        assert!(matches!(
            scan_bytes(&bad).problem,
            Some(ScanProblem::CrcMismatch { at_tail: true, .. })
        ));

        // Zeroed tail (preallocated space): implausible.
        let mut z = file.clone();
        z.extend_from_slice(&[0u8; 40]);
        let s3 = scan_bytes(&z);
        assert!(matches!(
            s3.problem,
            Some(ScanProblem::ImplausibleSize { .. })
        ));
        assert_eq!(s3.valid_len, file.len() as u64);

        // A few bytes of a block header: benign end of data.
        let mut p = file.clone();
        p.extend_from_slice(&[1, 2, 3]);
        let s4 = scan_bytes(&p);
        assert!(s4.is_clean());
        assert_eq!(s4.valid_len, file.len() as u64);
        assert!(replay_bytes(&p).is_ok());

        assert!(matches!(
            scan_bytes(b"PK\x03\x04 not a hyd file").problem,
            Some(ScanProblem::BadMagic { .. })
        ));
        let mut v9 = file.clone();
        v9[4] = 9;
        assert!(matches!(
            scan_bytes(&v9).problem,
            Some(ScanProblem::UnsupportedVersion { version: 9 })
        ));
        assert!(matches!(
            scan_bytes(b"HYD").problem,
            Some(ScanProblem::ShortHeader { len: 3 })
        ));
    }

    #[test]
    fn name_from_metadata_entry_when_header_has_none() {
        let mut w = HydWriter::create_in(Cursor::new(Vec::new()), "", Version::V3, 1).unwrap();
        w.append_block(&[
            Entry::new(Op::Metadata, SWAMP_META_KEY, "a/b/named"),
            Entry::new(Op::Insert, "k", "v"),
        ])
        .unwrap();
        let file = w.finish(2).unwrap().into_inner();
        let s = scan_bytes(&file);
        assert_eq!(s.data_start, 64);
        assert_eq!(s.name.as_deref(), Some("a/b/named"));
    }

    #[test]
    fn stale_header_is_fixed() {
        let batches = vec![vec![Entry::new(Op::Insert, b"a".to_vec(), b"1".to_vec())]];
        let (mut file, _) = build(Version::V3, "x/y/z", &batches);
        // A header rewritten for a block that is not in the copy.
        let mut h = FileHeader::decode(&file).unwrap();
        h.block_count = 5;
        h.entry_count = 99;
        file[..64].copy_from_slice(&h.encode());
        let s = scan_bytes(&file);
        assert!(s.is_clean() && !s.header_counts_match());
        let fixed = FileHeader::decode(&consistent_header(&s).unwrap()).unwrap();
        assert_eq!((fixed.block_count, fixed.entry_count), (1, 1));
        assert_eq!(fixed.created_at, h.created_at);
    }
}
