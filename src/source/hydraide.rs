//! Consistent capture of live HydrAIDE `.hyd` files.
//!
//! A capture reads the header and then whole blocks while their CRC holds, and stores a header
//! rewritten to count exactly the captured blocks, so the stored copy is a complete, loadable
//! file even while the server appends. A file replaced during the read (compaction renames a new
//! file over the old one) is read again; a torn tail is re-read after a short back-off; what
//! stays broken is quarantined and reported, never hidden: its loadable prefix (every complete
//! block before the damage, a state the server really had) is stored as the Swamp, and its bytes
//! as they were are kept as well ([`SwampInfo::raw`]).
//!
//! Every captured block is decompressed and its entries parsed as HydrAIDE's reader parses them
//! (an empty key, for one, makes the server refuse the file). A block of any size is accepted;
//! large ones are checked as they stream by ([`BlockCheck`]), never held whole.
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

use crate::Id;
use crate::hyd::block::{BlockError, Op};
use crate::hyd::scan::read_full;
use crate::hyd::stream::BlockCheck;
use crate::hyd::{
    BLOCK_HEADER_SIZE, BlockHeader, FILE_HEADER_SIZE, FileHeader, SWAMP_META_KEY, block,
};
use crate::repo::config::HydChunking;
use crate::repo::tree::{BlockTail, Decision, SwampInfo};

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
    /// New data chunks of the stored file: the first this many sent since the last `restart`
    /// (a block that failed its check after some of its chunks were sent leaves those out).
    pub chunks: u32,
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
    /// The file is not loadable as it is: it is to be stored raw and reported.
    Quarantine {
        /// Why.
        reason: String,
        /// Whatever could be learned of the Swamp.
        swamp: SwampInfo,
        /// Its loadable prefix (header rewritten to count it), when it has a valid header: what
        /// a restore gives, the raw bytes being kept beside it.
        prefix: Option<Box<HydCapture>>,
    },
}

/// Blocks larger than this (compressed plus uncompressed bytes) are checked as they stream.
const IN_MEMORY_BLOCK: u64 = 8 << 20;
/// Bytes read at a time from a streamed block.
const STREAM_PIECE: usize = 1 << 20;

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
    /// Complete, CRC-valid, but entries HydrAIDE's reader refuses (an empty key, ...).
    Refused(String),
}

/// Decompresses a block held in memory and parses its entries as HydrAIDE does; returns the
/// swamp name it carries, if any.
fn check_block(bh: &BlockHeader, payload: &[u8]) -> Result<Option<String>, BlockError> {
    let raw = block::decompress_block(bh, payload)?;
    let entries = block::parse_entries(&raw, bh.entry_count)?;
    Ok(entries
        .iter()
        .find(|e| e.op == Op::Metadata && e.key == SWAMP_META_KEY && !e.data.is_empty())
        .map(|e| String::from_utf8_lossy(e.data).into_owned()))
}

/// Counts the chunks a capture attempt sends.
struct Sent<'a> {
    sink: &'a mut dyn ChunkSink,
    n: u32,
}

impl Sent<'_> {
    fn send(&mut self, data: Vec<u8>) -> io::Result<()> {
        self.n += 1;
        if self.sink.chunk(data) {
            Ok(())
        } else {
            Err(io::Error::other("backup aborted"))
        }
    }
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
        // HydrAIDE sets the header's ModifiedAt only at creation and compaction.
        info.modified_ns = md.mtime() * 1_000_000_000 + md.mtime_nsec();
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
                    prefix: None,
                });
            }
        };
        info.format = header.version.as_u16();
        info.created_ns = header.created_at;
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
        let mut decision = if parent.is_some() {
            Decision::Rewritten
        } else {
            Decision::New
        };
        let (mut pos, mut reuse, mut blocks, mut entries, mut tail) =
            (data_start, Vec::new(), 0u64, 0u64, None);
        if let Some(p) = parent
            && p.inode == md.ino()
            && md.len() >= p.size
            && p.swamp.data_start == data_start
            && p.swamp.format == info.format
            && !p.content.is_empty()
            && p.swamp.problem.is_none()
            && p.swamp.logical.is_none()
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
                decision = Decision::Appended;
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

        let mut out = Sent {
            sink: &mut *sink,
            n: 0,
        };
        let mut cur: Vec<u8> = Vec::new();
        let mut payload = Vec::new();
        // What belongs to the stored file so far: chunks sent, and bytes of `cur`.
        let (mut valid_sent, mut valid_cur) = (0u32, 0usize);
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
            let need = u64::from(bh.compressed_size);
            let (got, checked) = if need + u64::from(bh.uncompressed_size) <= IN_MEMORY_BLOCK {
                payload.resize(bh.compressed_size as usize, 0);
                let got = read_full(&mut r, &mut payload)? as u64;
                let checked = (got == need).then(|| check_block(&bh, &payload));
                if let Some(Ok(_)) = checked {
                    cur.extend_from_slice(&bb);
                    cur.extend_from_slice(&payload);
                }
                (got, checked)
            } else {
                // Its own chunks, sent as they are read; kept only if the block checks out.
                if !cur.is_empty() {
                    out.send(std::mem::take(&mut cur))?;
                }
                (valid_sent, valid_cur) = (out.n, 0);
                cur.extend_from_slice(&bb);
                let mut check = BlockCheck::new(bh);
                let mut got = 0u64;
                while got < need {
                    let want = (need - got).min(STREAM_PIECE as u64) as usize;
                    payload.resize(want, 0);
                    let k = read_full(&mut r, &mut payload)?;
                    got += k as u64;
                    check.feed(&payload[..k]);
                    cur.extend_from_slice(&payload[..k]);
                    if cur.len() >= ch.max as usize {
                        out.send(std::mem::take(&mut cur))?;
                    }
                    if k < want {
                        break;
                    }
                }
                (got, (got == need).then(|| check.finish()))
            };
            bytes_read += got;
            let found_name = match checked {
                None => {
                    break Stop::Tail(format!(
                        "block at offset {pos} is torn ({got} of {need} payload bytes)"
                    ));
                }
                Some(Ok(found)) => found,
                Some(Err(e @ BlockError::Entry { .. })) => {
                    break Stop::Refused(format!("block at offset {pos}: {e}"));
                }
                Some(Err(e)) => {
                    let at_tail = pos + bh.total_len() >= f.metadata()?.len();
                    let msg = format!("block at offset {pos}: {e}");
                    break if at_tail {
                        Stop::Tail(msg)
                    } else {
                        Stop::Corrupt(msg)
                    };
                }
            };
            // A valid block from here on: that is what HydrAIDE itself would load.
            if name.is_empty() && info.name.is_none() {
                info.name = found_name;
            }
            blocks += 1;
            entries += u64::from(bh.entry_count);
            tail = Some(BlockTail {
                offset: pos,
                header: bb.to_vec(),
            });
            pos += bh.total_len();
            if ch.cut_after(cur.len(), bh.total_len() as usize, bh.checksum) {
                out.send(std::mem::take(&mut cur))?;
            }
            (valid_sent, valid_cur) = (out.n, cur.len());
        };
        // Bytes of a block that failed its check are not part of the stored file.
        cur.truncate(valid_cur);
        if !cur.is_empty() {
            out.send(cur)?;
            valid_sent = out.n;
        }
        let mut h = header.clone();
        h.block_count = blocks;
        h.entry_count = entries;
        let mut header_blob = h.encode().to_vec();
        header_blob.extend_from_slice(&name);
        info.blocks = blocks;
        info.entries = entries;
        info.tail = tail;
        info.decision = decision;
        let captured = HydCapture {
            header_blob,
            reuse,
            chunks: valid_sent,
            size: pos,
            bytes_read,
            swamp: info.clone(),
        };
        // A compaction renames a new file over the path: our copy is of a file that is gone.
        match fs::metadata(path) {
            Ok(m) if m.ino() == md.ino() => {}
            Ok(_) => {
                last_reason = "the file was replaced (compacted) on every attempt".into();
                continue;
            }
            Err(e) => return Err(e),
        }
        let reason = match stop {
            Stop::Eof | Stop::PartialHeader => return Ok(Capture::Captured(captured)),
            Stop::Tail(msg) if attempt + 1 < ATTEMPTS => {
                last_reason = format!("torn tail that stays torn: {msg}");
                continue;
            }
            Stop::Tail(msg) => format!("torn tail that stays torn: {msg}"),
            Stop::Corrupt(msg) => format!("damaged before its tail: {msg}"),
            Stop::Refused(msg) => format!("HydrAIDE would refuse to load it: {msg}"),
        };
        return Ok(Capture::Quarantine {
            reason,
            swamp: info,
            prefix: Some(Box::new(captured)),
        });
    }
    Ok(Capture::Quarantine {
        reason: last_reason,
        swamp: info,
        prefix: None,
    })
}
