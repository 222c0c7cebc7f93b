//! Consistent capture of live HydrAIDE `.hyd` files.
//!
//! A capture reads the header and then whole blocks while their CRC holds, and stores a header
//! rewritten to count exactly the captured blocks, so the stored copy is a complete, loadable
//! file even while the server appends. A file replaced during the read (compaction renames a new
//! file over the old one) is read again; a torn tail is re-read after a short back-off; what
//! stays broken is quarantined: stored raw, reported, never hidden.
//!
//! Data is cut only at block boundaries. A block ends a chunk when the chunk has reached `min`
//! bytes and a keyed hash of the block's CRC falls below `block_len / avg` — content-defined at
//! block granularity, at no scanning cost. A file that only grew since the parent snapshot
//! (same inode, longer, the last captured block still in place) keeps the parent's chunks and is
//! read only from where the parent's capture ended.

use std::fs;
use std::io::{self, BufReader, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Id;
use crate::hyd::scan::{read_full, v2_name};
use crate::hyd::{BLOCK_HEADER_SIZE, BlockHeader, FILE_HEADER_SIZE, FileHeader, block};
use crate::repo::tree::{BlockTail, SwampInfo};

/// Block-aligned chunking parameters for `.hyd` data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HydChunking {
    /// A chunk is not cut before this many bytes.
    pub min: u32,
    /// Extra bytes after `min` expected before a cut.
    pub avg: u32,
    /// A chunk is always cut once it reaches this many bytes.
    pub max: u32,
    /// Secret seed of the cut decision.
    pub seed: u64,
}

impl HydChunking {
    /// Defaults: 32 KiB minimum, 64 KiB average beyond it, 256 KiB maximum.
    pub fn with_seed(seed: u64) -> Self {
        HydChunking {
            min: 32 << 10,
            avg: 64 << 10,
            max: 256 << 10,
            seed,
        }
    }

    fn cut_after(&self, chunk_len: usize, block_len: usize, crc: u32) -> bool {
        if chunk_len >= self.max as usize {
            return true;
        }
        if chunk_len < self.min as usize {
            return false;
        }
        let mut h = self.seed ^ (u64::from(crc) << 20) ^ block_len as u64;
        // splitmix64 finaliser
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d049bb133111eb);
        h ^= h >> 31;
        h % u64::from(self.avg.max(1)) < block_len as u64
    }
}

/// What the parent snapshot knows about a `.hyd` file.
#[derive(Debug, Clone)]
pub struct HydParent {
    /// Inode at the parent's capture.
    pub inode: u64,
    /// Captured length.
    pub size: u64,
    /// Content blobs: the header blob first, then data chunks.
    pub content: Vec<Id>,
    /// The parent's Swamp facts.
    pub swamp: SwampInfo,
}

/// Where a capture sends new data chunks as it reads them, so memory does not grow with the
/// file. A capture that has to start over (the file was compacted under it, or its tail was
/// torn) calls `restart`: chunks sent before belong to an abandoned read and are not part of the
/// stored file.
pub trait ChunkSink {
    /// A (new) attempt begins.
    fn restart(&mut self);
    /// The next data chunk in file order; `false` stops the capture (the run is aborting).
    fn chunk(&mut self, data: Vec<u8>) -> bool;
}

/// A successful capture. Its new data chunks went to the [`ChunkSink`] since the last
/// `restart`; they follow the reused ones.
#[derive(Debug)]
pub struct HydCapture {
    /// The consistent header plus the name bytes: the first blob of the stored file.
    pub header_blob: Vec<u8>,
    /// Data chunk ids kept from the parent (they follow the header blob).
    pub reuse: Vec<Id>,
    /// Length of the stored file.
    pub size: u64,
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Swamp facts for the catalogue.
    pub swamp: SwampInfo,
}

/// The result of trying to capture a `.hyd` file.
#[derive(Debug)]
pub enum Capture {
    /// A consistent copy.
    Captured(HydCapture),
    /// No consistent copy could be made; the file is to be stored raw and reported.
    Quarantine {
        /// Why.
        reason: String,
        /// Whatever could be learned of the Swamp.
        swamp: SwampInfo,
    },
}

/// Attempts before giving up on a file that keeps changing.
const ATTEMPTS: u32 = 4;

enum Stop {
    Eof,
    /// Incomplete or unverifiable last block: what a reader racing the writer sees.
    Tail(String),
    /// Benign: a few bytes of a block header at end of file (HydrAIDE ignores them).
    PartialHeader,
    /// Damage before the end of the file.
    Corrupt(String),
}

/// Captures one `.hyd` file, incrementally from `parent` when it proves the file only grew.
pub fn capture(
    path: &Path,
    parent: Option<&HydParent>,
    ch: &HydChunking,
    sink: &mut dyn ChunkSink,
) -> io::Result<Capture> {
    let mut last_reason = String::new();
    let mut info = SwampInfo::default();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            // Give an appending writer time to finish its block; bounded, ~0.3 s in all.
            std::thread::sleep(Duration::from_millis(20 << attempt));
        }
        sink.restart();
        let f = crate::source::open_checked(path, None)?;
        let md = f.metadata()?;
        let mut bytes_read = 0u64;
        let mut r = BufReader::with_capacity(256 << 10, &f);
        let mut hb = [0u8; FILE_HEADER_SIZE];
        let n = read_full(&mut r, &mut hb)?;
        bytes_read += n as u64;
        let header = match FileHeader::decode(&hb[..n]) {
            Ok(h) => h,
            Err(_) if n < FILE_HEADER_SIZE => {
                last_reason = format!("file is {n} bytes, shorter than a .hyd header");
                continue;
            }
            Err(e) => {
                return Ok(Capture::Quarantine {
                    reason: format!("not a loadable .hyd file: {e}"),
                    swamp: info,
                });
            }
        };
        info.format = header.version.as_u16();
        info.created_ns = header.created_at;
        info.modified_ns = header.modified_at;
        let data_start = header.data_start();
        info.data_start = data_start;
        let mut name = vec![0u8; header.name_len() as usize];
        let got = read_full(&mut r, &mut name)?;
        bytes_read += got as u64;
        if got < name.len() {
            last_reason = "swamp name cut short".into();
            continue;
        }
        if !name.is_empty() {
            info.name = Some(String::from_utf8_lossy(&name).into_owned());
        }

        // Where to start: after the parent's capture when the file provably only grew.
        let mut decision = if parent.is_some() { "rewritten" } else { "new" };
        let (mut pos, mut reuse, mut blocks, mut entries, mut tail) =
            (data_start, Vec::new(), 0u64, 0u64, None);
        if let Some(p) = parent
            && p.inode == md.ino()
            && md.len() >= p.size
            && p.swamp.data_start == data_start
            && p.swamp.format == info.format
            && !p.content.is_empty()
            && p.swamp.problem.is_none()
        {
            let same_tail = match &p.swamp.tail {
                Some(t) => {
                    let mut b = [0u8; BLOCK_HEADER_SIZE];
                    let ok = f.read_exact_at(&mut b, t.offset).is_ok() && b[..] == t.header[..];
                    bytes_read += BLOCK_HEADER_SIZE as u64;
                    ok && t.offset + BlockHeader::decode(&b).total_len() == p.size
                }
                None => p.size == data_start,
            };
            if same_tail {
                decision = "appended";
                pos = p.size;
                reuse = p.content[1..].to_vec();
                blocks = p.swamp.blocks;
                entries = p.swamp.entries;
                tail = p.swamp.tail.clone();
                if info.name.is_none() {
                    info.name = p.swamp.name.clone();
                }
            }
        }
        r.seek(SeekFrom::Start(pos))?;

        let aborted = || io::Error::other("backup aborted");
        let mut cur: Vec<u8> = Vec::new();
        let mut payload = Vec::new();
        let stop = loop {
            let mut bb = [0u8; BLOCK_HEADER_SIZE];
            let n = read_full(&mut r, &mut bb)?;
            bytes_read += n as u64;
            if n == 0 {
                break Stop::Eof;
            }
            if n < BLOCK_HEADER_SIZE {
                break Stop::PartialHeader;
            }
            let bh = BlockHeader::decode(&bb);
            let file_len = f.metadata()?.len();
            if bh.check_plausible().is_err() {
                break if pos + bh.total_len() > file_len {
                    Stop::Tail(format!(
                        "block at offset {pos} runs past the end of the file"
                    ))
                } else {
                    Stop::Corrupt(format!("implausible block sizes at offset {pos}"))
                };
            }
            payload.resize(bh.compressed_size as usize, 0);
            let got = read_full(&mut r, &mut payload)?;
            bytes_read += got as u64;
            if got < payload.len() {
                break Stop::Tail(format!(
                    "block at offset {pos} is torn ({got} of {} payload bytes)",
                    payload.len()
                ));
            }
            if let Err(e) = block::check_crc(&bh, &payload)
                .and_then(|()| block::check_snappy_len(&bh, &payload))
            {
                let at_tail = pos + bh.total_len() >= f.metadata()?.len();
                let msg = format!("block at offset {pos}: {e}");
                break if at_tail {
                    Stop::Tail(msg)
                } else {
                    Stop::Corrupt(msg)
                };
            }
            // A valid block from here on: that is what HydrAIDE itself would load.
            if name.is_empty() && blocks == 0 && info.name.is_none() {
                info.name = v2_name(&bh, &payload);
            }
            cur.extend_from_slice(&bb);
            cur.extend_from_slice(&payload);
            blocks += 1;
            entries += u64::from(bh.entry_count);
            tail = Some(BlockTail {
                offset: pos,
                header: bb.to_vec(),
            });
            pos += bh.total_len();
            if ch.cut_after(cur.len(), bh.total_len() as usize, bh.checksum)
                && !sink.chunk(std::mem::take(&mut cur))
            {
                return Err(aborted());
            }
        };
        if !cur.is_empty() && !sink.chunk(cur) {
            return Err(aborted());
        }
        // A compaction renames a new file over the path: our copy is of a file that is gone.
        match fs::metadata(path) {
            Ok(m) if m.ino() == md.ino() => {}
            Ok(_) => {
                last_reason = "the file was replaced (compacted) on every attempt".into();
                continue;
            }
            Err(e) => return Err(e),
        }
        match stop {
            Stop::Eof | Stop::PartialHeader => {}
            Stop::Tail(msg) => {
                last_reason = format!("torn tail that stays torn: {msg}");
                continue;
            }
            Stop::Corrupt(msg) => {
                info.blocks = blocks;
                info.entries = entries;
                return Ok(Capture::Quarantine {
                    reason: format!("damaged before its tail: {msg}"),
                    swamp: info,
                });
            }
        }
        let mut h = header.clone();
        h.block_count = blocks;
        h.entry_count = entries;
        let mut header_blob = h.encode().to_vec();
        header_blob.extend_from_slice(&name);
        info.blocks = blocks;
        info.entries = entries;
        info.tail = tail;
        info.decision = decision.into();
        return Ok(Capture::Captured(HydCapture {
            header_blob,
            reuse,
            size: pos,
            bytes_read,
            swamp: info,
        }));
    }
    Ok(Capture::Quarantine {
        reason: last_reason,
        swamp: info,
    })
}
