//! Writing `.hyd` files the way HydrAIDE does.
//!
//! Entries are buffered until they reach the block size, then written as one
//! block (block header and payload as two writes), after which the 64-byte file
//! header is rewritten in place with the new counts — no fsync, not atomic with
//! the block, exactly the window a live backup has to cope with. Compaction
//! writes the live set as INSERTs in random key order to `<file>.compact` and
//! renames it over the original.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::block::{self, Entry, Op};
use super::header::{FileHeader, Version};
use super::replay::{LiveSet, replay_file};
use super::rng::Rng;
use super::scan::{BlockInfo, Scan, scan_file};
use super::{COMPACT_SUFFIX, DEFAULT_BLOCK_SIZE, HydError, SWAMP_META_KEY};

/// Appends blocks to a `.hyd` file (or any seekable byte sink).
#[derive(Debug)]
pub struct HydWriter<W: Write + Seek = File> {
    out: W,
    header: FileHeader,
    block_size: usize,
    pending: Vec<Entry>,
    pending_size: usize,
    len: u64,
}

impl HydWriter<File> {
    /// Creates (or truncates) `path` as a new, empty swamp file. For version 2
    /// the `__swamp_meta__` METADATA entry is queued as the first entry of the
    /// first block.
    pub fn create(
        path: &Path,
        name: &str,
        version: Version,
        created_at: i64,
    ) -> Result<HydWriter<File>, HydError> {
        let f = File::create(path).map_err(|e| HydError::from(e).at(path))?;
        HydWriter::create_in(f, name, version, created_at).map_err(|e| e.at(path))
    }

    /// Opens an existing file for appending. The file is scanned first and must
    /// be clean (no torn or damaged tail); counts are taken from the scan, not
    /// from the possibly stale header.
    pub fn open_append(path: &Path) -> Result<HydWriter<File>, HydError> {
        let s = scan_file(path)?;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| HydError::from(e).at(path))?;
        HydWriter::resume_in(f, &s).map_err(|e| e.at(path))
    }

    /// Flushes pending entries, rewrites the header with `modified_at`, optionally
    /// fsyncs, and returns the file length.
    pub fn close(mut self, modified_at: i64, sync: bool) -> Result<u64, HydError> {
        self.flush()?;
        let len = self.len;
        let f = self.finish(modified_at)?;
        if sync {
            f.sync_all()?;
        }
        Ok(len)
    }
}

impl<W: Write + Seek> HydWriter<W> {
    /// Starts a new file in `out` (which must be empty): writes the header and,
    /// for version 3, the name.
    pub fn create_in(
        mut out: W,
        name: &str,
        version: Version,
        created_at: i64,
    ) -> Result<HydWriter<W>, HydError> {
        let name_len = u16::try_from(name.len())
            .map_err(|_| HydError::Invalid(format!("swamp name of {} bytes", name.len())))?;
        let header = FileHeader::new(version, name_len, created_at);
        out.seek(SeekFrom::Start(0))?;
        out.write_all(&header.encode())?;
        let mut w = HydWriter {
            out,
            len: header.data_start(),
            header,
            block_size: DEFAULT_BLOCK_SIZE as usize,
            pending: Vec::new(),
            pending_size: 0,
        };
        match version {
            Version::V3 => w.out.write_all(name.as_bytes())?,
            Version::V2 => {
                if !name.is_empty() {
                    w.push(Entry::new(Op::Metadata, SWAMP_META_KEY, name.as_bytes()));
                }
            }
        }
        Ok(w)
    }

    /// Continues a file whose scan is `scan` (of the same bytes as `out`). The
    /// scan must have found a header and no problem.
    pub fn resume_in(mut out: W, scan: &Scan) -> Result<HydWriter<W>, HydError> {
        if let Some(p) = &scan.problem {
            return Err(HydError::Problem(p.clone()));
        }
        let mut header = scan
            .header
            .clone()
            .ok_or_else(|| HydError::Invalid("no header".into()))?;
        header.block_count = scan.blocks.len() as u64;
        header.entry_count = scan.entries;
        out.seek(SeekFrom::Start(scan.valid_len))?;
        Ok(HydWriter {
            out,
            block_size: (header.block_size as usize).clamp(1, 64 << 20),
            header,
            pending: Vec::new(),
            pending_size: 0,
            len: scan.valid_len,
        })
    }

    /// Sets the uncompressed size at which buffered entries are flushed.
    pub fn set_block_size(&mut self, bytes: usize) {
        self.block_size = bytes.max(1);
    }

    /// The header as last written (counts are current after every flush).
    pub fn header(&self) -> &FileHeader {
        &self.header
    }

    /// Length of the file: everything flushed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True if no block has been written yet.
    pub fn is_empty(&self) -> bool {
        self.header.block_count == 0
    }

    /// Buffered entries not yet written.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn push(&mut self, e: Entry) {
        self.pending_size += e.encoded_len();
        self.pending.push(e);
    }

    /// Buffers an entry; writes a block when the buffer reaches the block size.
    /// Returns the block written, if any.
    pub fn add(&mut self, e: Entry) -> Result<Option<BlockInfo>, HydError> {
        self.push(e);
        if self.pending_size >= self.block_size || self.pending.len() >= usize::from(u16::MAX) {
            return self.flush();
        }
        Ok(None)
    }

    /// Writes buffered entries as one block, if there are any.
    pub fn flush(&mut self) -> Result<Option<BlockInfo>, HydError> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let entries = std::mem::take(&mut self.pending);
        self.pending_size = 0;
        self.write_block(&entries).map(Some)
    }

    /// Writes buffered entries followed by `entries` as exactly one block.
    pub fn append_block(&mut self, entries: &[Entry]) -> Result<BlockInfo, HydError> {
        let mut all = std::mem::take(&mut self.pending);
        self.pending_size = 0;
        all.extend_from_slice(entries);
        self.write_block(&all)
    }

    fn write_block(&mut self, entries: &[Entry]) -> Result<BlockInfo, HydError> {
        let offset = self.len;
        let (bh, payload) =
            block::build_block(entries).map_err(|source| HydError::Block { offset, source })?;
        self.append_raw_block(&bh, &payload)
    }

    /// Writes a block built elsewhere (buffered entries are flushed first), as it is: for
    /// blocks [`block::build_block`] cannot or would not make.
    pub fn append_raw_block(
        &mut self,
        bh: &block::BlockHeader,
        payload: &[u8],
    ) -> Result<BlockInfo, HydError> {
        self.flush()?;
        let offset = self.len;
        self.out.write_all(&bh.encode())?;
        self.out.write_all(payload)?;
        self.len += bh.total_len();
        self.header.block_count += 1;
        self.header.entry_count += u64::from(bh.entry_count);
        self.rewrite_header()?;
        Ok(BlockInfo {
            offset,
            len: bh.total_len(),
            entry_count: bh.entry_count,
            uncompressed_size: bh.uncompressed_size,
        })
    }

    fn rewrite_header(&mut self) -> Result<(), HydError> {
        self.out.seek(SeekFrom::Start(0))?;
        self.out.write_all(&self.header.encode())?;
        self.out.seek(SeekFrom::Start(self.len))?;
        Ok(())
    }

    /// Flushes pending entries, records `modified_at`, rewrites the header and
    /// returns the sink.
    pub fn finish(mut self, modified_at: i64) -> Result<W, HydError> {
        self.flush()?;
        self.header.modified_at = modified_at;
        self.rewrite_header()?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Outcome of [`compact`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactInfo {
    /// File length before.
    pub old_len: u64,
    /// File length after (0 if the file was removed).
    pub new_len: u64,
    /// Live entries written.
    pub live: u64,
    /// True if no key was live and the file was removed (as HydrAIDE does).
    pub removed: bool,
}

/// Path of the compaction temp file for `path`.
pub fn compact_temp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(COMPACT_SUFFIX);
    PathBuf::from(s)
}

/// Writes `live` as INSERT entries in an order shuffled by `rng` into a new
/// version-3 file at `<path>.compact`, then renames it over `path`. Returns the
/// new length.
pub fn write_compacted(
    path: &Path,
    name: &str,
    live: &LiveSet,
    rng: &mut Rng,
    now: i64,
) -> Result<u64, HydError> {
    let tmp = compact_temp_path(path);
    let mut order: Vec<(&Vec<u8>, &Vec<u8>)> = live.iter().collect();
    rng.shuffle(&mut order);
    let mut w = HydWriter::create(&tmp, name, Version::V3, now)?;
    for (k, v) in order {
        w.add(Entry::new(Op::Insert, k.clone(), v.clone()))
            .map_err(|e| e.at(&tmp))?;
    }
    let len = w.close(now, false).map_err(|e| e.at(&tmp))?;
    fs::rename(&tmp, path).map_err(|e| HydError::from(e).at(path))?;
    Ok(len)
}

/// Compacts `path` as HydrAIDE does: loads it, writes the live set (as a version-3
/// file named after the swamp) via [`write_compacted`], or removes the file if
/// nothing is live.
pub fn compact(path: &Path, rng: &mut Rng, now: i64) -> Result<CompactInfo, HydError> {
    let old_len = fs::metadata(path)
        .map_err(|e| HydError::from(e).at(path))?
        .len();
    let r = replay_file(path)?;
    if r.live.is_empty() {
        fs::remove_file(path).map_err(|e| HydError::from(e).at(path))?;
        return Ok(CompactInfo {
            old_len,
            new_len: 0,
            live: 0,
            removed: true,
        });
    }
    let name = r.name.clone().unwrap_or_default();
    let new_len = write_compacted(path, &name, &r.live, rng, now)?;
    Ok(CompactInfo {
        old_len,
        new_len,
        live: r.live.len() as u64,
        removed: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hyd::scan::scan_file;

    #[test]
    fn file_writer_compact_and_append() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc.hyd");
        let mut w = HydWriter::create(&p, "s/r/w", Version::V2, 5).unwrap();
        w.set_block_size(200);
        for i in 0..100u32 {
            let op = if i % 3 == 0 { Op::Delete } else { Op::Insert };
            let key = format!("key-{}", i % 17);
            w.add(Entry::new(op, key, vec![i as u8; 30])).unwrap();
        }
        let len = w.close(6, true).unwrap();
        let s = scan_file(&p).unwrap();
        assert!(s.problem.is_none() && s.header_counts_match());
        assert_eq!(s.valid_len, len);
        assert!(s.blocks.len() > 5);
        assert_eq!(s.name.as_deref(), Some("s/r/w"));
        let before = replay_file(&p).unwrap();

        let mut rng = Rng::new(1);
        let info = compact(&p, &mut rng, 7).unwrap();
        assert!(!info.removed && info.new_len < info.old_len);
        assert!(!compact_temp_path(&p).exists());
        let after = replay_file(&p).unwrap();
        assert_eq!(after.live, before.live);
        assert_eq!(after.header.version, Version::V3);
        assert_eq!(after.name.as_deref(), Some("s/r/w"));

        let mut w = HydWriter::open_append(&p).unwrap();
        w.append_block(&[Entry::new(Op::Insert, "new", "v")])
            .unwrap();
        w.close(8, false).unwrap();
        let again = replay_file(&p).unwrap();
        assert_eq!(again.live.len(), before.live.len() + 1);
        assert!(scan_file(&p).unwrap().header_counts_match());

        // Deleting everything and compacting removes the file.
        let mut w = HydWriter::open_append(&p).unwrap();
        for k in again.live.keys() {
            w.add(Entry::new(Op::Delete, k.clone(), Vec::new()))
                .unwrap();
        }
        w.close(9, false).unwrap();
        assert!(compact(&p, &mut rng, 10).unwrap().removed);
        assert!(!p.exists());
    }

    #[test]
    fn refuses_to_append_after_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.hyd");
        let mut w = HydWriter::create(&p, "a/b/c", Version::V3, 1).unwrap();
        w.append_block(&[Entry::new(Op::Insert, "k", "v")]).unwrap();
        let len = w.close(2, false).unwrap();
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(len - 2).unwrap();
        assert!(matches!(
            HydWriter::open_append(&p),
            Err(HydError::Path { .. })
        ));
    }
}
