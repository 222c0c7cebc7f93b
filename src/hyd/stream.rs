//! Checking one block as it streams by, in bounded memory.
//!
//! A block may be as large as its u32 size fields allow (one Treasure is one block). HydrAIDE
//! decompresses it whole; a backup of a live server must not have to. [`BlockCheck`] is fed the
//! compressed payload piece by piece and checks what [`super::block::decode_block`] checks — CRC,
//! a valid raw Snappy stream of exactly `UncompressedSize` bytes, `EntryCount` well-formed
//! entries (no empty key) — keeping only the last [`WINDOW`] bytes of output (and the entry being
//! parsed). It also picks up the swamp name from a `__swamp_meta__` METADATA entry.
//!
//! Snappy encoders compress in 64 KiB fragments, so their back-references never reach further
//! than 64 KiB. A stream that refers back further than [`WINDOW`] bytes (legal, written by no
//! known encoder) is reported as [`BlockError::Snappy`] once the block outgrows the window.

use std::io::Read;

use super::block::{BlockError, BlockHeader, EntryError, Op};
use super::header::FileHeader;
use super::scan::read_full;
use super::{BLOCK_HEADER_SIZE, FILE_HEADER_SIZE, HydError, SWAMP_META_KEY};

/// Output bytes kept for back-references.
pub const WINDOW: usize = 1 << 20;
/// Longest `__swamp_meta__` data read for a name.
const MAX_NAME: u32 = 1 << 16;

/// Where the Snappy decoder is between two feeds.
#[derive(Debug, Clone, Copy)]
enum State {
    /// Reading the varint of the uncompressed length.
    Length { value: u64, shift: u32 },
    /// At an element tag.
    Tag,
    /// Inside a literal: this many bytes left.
    Literal(u64),
}

/// Streaming check of one block; see the module documentation.
#[derive(Debug)]
pub struct BlockCheck {
    header: BlockHeader,
    crc: crc32fast::Hasher,
    state: State,
    /// Bytes of an element tag and its extra bytes, when a feed ended inside them.
    partial: Vec<u8>,
    /// Output kept: `out[0]` is output byte `out_base`.
    out: Vec<u8>,
    out_base: u64,
    /// Output produced so far.
    produced: u64,
    /// Entry parser: next unparsed output byte, entries parsed, data bytes still to skip.
    parsed_at: u64,
    entries: u16,
    skip: u64,
    name: Option<String>,
    err: Option<BlockError>,
}

impl BlockCheck {
    /// Starts checking a block with this header (whose sizes are plausible).
    pub fn new(header: BlockHeader) -> BlockCheck {
        BlockCheck {
            header,
            crc: crc32fast::Hasher::new(),
            state: State::Length { value: 0, shift: 0 },
            partial: Vec::new(),
            out: Vec::new(),
            out_base: 0,
            produced: 0,
            parsed_at: 0,
            entries: 0,
            skip: 0,
            name: None,
            err: None,
        }
    }

    /// The next piece of the compressed payload.
    pub fn feed(&mut self, data: &[u8]) {
        self.crc.update(data);
        if self.err.is_none()
            && let Err(e) = self.decode(data)
        {
            self.err = Some(e);
        }
    }

    /// Ends the check: the swamp name found (if any), or what is wrong with the block. A CRC
    /// mismatch is reported before anything else, as HydrAIDE's reader does.
    pub fn finish(self) -> Result<Option<String>, BlockError> {
        let actual = self.crc.finalize();
        if actual != self.header.checksum {
            return Err(BlockError::Checksum {
                expected: self.header.checksum,
                actual,
            });
        }
        if let Some(e) = self.err {
            return Err(e);
        }
        let complete = matches!(self.state, State::Tag) && self.partial.is_empty();
        if !complete || self.produced != u64::from(self.header.uncompressed_size) {
            return Err(snappy("stream ends early"));
        }
        if self.entries < self.header.entry_count {
            return Err(BlockError::Entry {
                index: self.entries,
                source: EntryError::Truncated {
                    at: usize::try_from(self.parsed_at).unwrap_or(usize::MAX),
                },
            });
        }
        Ok(self.name)
    }

    fn decode(&mut self, mut data: &[u8]) -> Result<(), BlockError> {
        while !data.is_empty() {
            match self.state {
                State::Length { value, shift } => {
                    let b = data[0];
                    data = &data[1..];
                    let value = value | (u64::from(b & 0x7f) << shift);
                    if b & 0x80 == 0 {
                        if value != u64::from(self.header.uncompressed_size) {
                            return Err(snappy(&format!(
                                "stream holds {value} bytes, header says {}",
                                self.header.uncompressed_size
                            )));
                        }
                        self.state = State::Tag;
                    } else if shift >= 28 {
                        return Err(snappy("length varint too long"));
                    } else {
                        self.state = State::Length {
                            value,
                            shift: shift + 7,
                        };
                    }
                }
                State::Literal(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
                    self.emit(&data[..n])?;
                    data = &data[n..];
                    self.state = if left == n as u64 {
                        State::Tag
                    } else {
                        State::Literal(left - n as u64)
                    };
                }
                State::Tag => {
                    let tag = *self.partial.first().unwrap_or(&data[0]);
                    let need = 1 + match (tag & 3, tag >> 2) {
                        (0, l) if l >= 60 => usize::from(l - 59),
                        (0, _) => 0,
                        (1, _) => 1,
                        (2, _) => 2,
                        _ => 4,
                    };
                    let take = (need - self.partial.len()).min(data.len());
                    self.partial.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.partial.len() < need {
                        continue;
                    }
                    let el = std::mem::take(&mut self.partial);
                    let le = |b: &[u8]| {
                        b.iter()
                            .rev()
                            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
                    };
                    match tag & 3 {
                        0 => {
                            let len = if need == 1 {
                                u64::from(tag >> 2) + 1
                            } else {
                                le(&el[1..]) + 1
                            };
                            self.state = State::Literal(len);
                        }
                        1 => {
                            let len = u64::from((tag >> 2) & 7) + 4;
                            let off = (u64::from(tag >> 5) << 8) | u64::from(el[1]);
                            self.copy(off, len)?;
                        }
                        _ => self.copy(le(&el[1..]), u64::from(tag >> 2) + 1)?,
                    }
                    self.partial = el;
                    self.partial.clear();
                }
            }
        }
        Ok(())
    }

    fn room(&self, n: u64) -> Result<(), BlockError> {
        if self.produced + n > u64::from(self.header.uncompressed_size) {
            return Err(snappy("stream decodes to more bytes than it announces"));
        }
        Ok(())
    }

    fn emit(&mut self, bytes: &[u8]) -> Result<(), BlockError> {
        self.room(bytes.len() as u64)?;
        self.out.extend_from_slice(bytes);
        self.produced += bytes.len() as u64;
        self.parse()
    }

    fn copy(&mut self, off: u64, len: u64) -> Result<(), BlockError> {
        if off == 0 || off > self.produced {
            return Err(snappy("back-reference before the start of the block"));
        }
        if self.produced - off < self.out_base {
            return Err(snappy(&format!(
                "back-reference of {off} bytes in a block over {WINDOW} bytes"
            )));
        }
        self.room(len)?;
        // The source may overlap the bytes being written: copy in runs of at most `off`.
        let mut left = len as usize;
        let off = off as usize;
        while left > 0 {
            let start = self.out.len() - off;
            let n = left.min(off);
            self.out.extend_from_within(start..start + n);
            left -= n;
        }
        self.produced += len;
        self.parse()
    }

    /// Parses the entries whose bytes are now available, then forgets output no longer needed.
    fn parse(&mut self) -> Result<(), BlockError> {
        while self.entries < self.header.entry_count {
            let avail = self.produced - self.parsed_at;
            if self.skip > 0 {
                let n = self.skip.min(avail);
                self.skip -= n;
                self.parsed_at += n;
                if self.skip > 0 {
                    break;
                }
                self.entries += 1;
                continue;
            }
            let at = (self.parsed_at - self.out_base) as usize;
            let buf = &self.out[at..];
            if buf.len() < 7 {
                break;
            }
            let op = Op::from_u8(buf[0]);
            let klen = usize::from(u16::from_le_bytes([buf[1], buf[2]]));
            let Some(d) = buf.get(3 + klen..7 + klen) else {
                break;
            };
            if klen == 0 {
                return Err(BlockError::Entry {
                    index: self.entries,
                    source: EntryError::EmptyKey {
                        at: usize::try_from(self.parsed_at).unwrap_or(usize::MAX),
                    },
                });
            }
            let dlen = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
            let key = &buf[3..3 + klen];
            let wants_name = self.name.is_none()
                && op == Op::Metadata
                && key == SWAMP_META_KEY
                && (1..=MAX_NAME).contains(&dlen);
            if wants_name {
                let Some(v) = buf.get(7 + klen..7 + klen + dlen as usize) else {
                    break;
                };
                self.name = Some(String::from_utf8_lossy(v).into_owned());
            }
            self.parsed_at += 7 + klen as u64;
            self.skip = u64::from(dlen);
            if self.skip == 0 {
                self.entries += 1;
            }
        }
        // Bytes after the last entry are ignored (as HydrAIDE does) and need not be kept.
        let window_start = self.produced.saturating_sub(WINDOW as u64);
        let keep_from = if self.entries < self.header.entry_count {
            self.parsed_at.min(window_start)
        } else {
            window_start
        };
        if self.out.len() > 2 * WINDOW && keep_from > self.out_base {
            self.out.drain(..(keep_from - self.out_base) as usize);
            self.out_base = keep_from;
        }
        Ok(())
    }
}

/// Checks a whole `.hyd` stream as HydrAIDE's loader would, block by block in bounded memory:
/// header, name, then every block to end of data (a few trailing bytes of a block header are
/// ignored, as HydrAIDE does). Returns the number of blocks.
pub fn check_stream<R: Read>(mut r: R) -> Result<u64, HydError> {
    let mut hb = [0u8; FILE_HEADER_SIZE];
    let n = read_full(&mut r, &mut hb)?;
    let header = FileHeader::decode(&hb[..n])?;
    let name_len = u64::from(header.name_len());
    if std::io::copy(&mut (&mut r).take(name_len), &mut std::io::sink())? < name_len {
        return Err(HydError::Invalid("file ends inside the swamp name".into()));
    }
    let mut offset = header.data_start();
    let mut piece = vec![0u8; 1 << 20];
    let mut blocks = 0;
    loop {
        let mut bb = [0u8; BLOCK_HEADER_SIZE];
        if read_full(&mut r, &mut bb)? < BLOCK_HEADER_SIZE {
            return Ok(blocks);
        }
        let bh = BlockHeader::decode(&bb);
        let at = |source| HydError::Block { offset, source };
        bh.check_plausible().map_err(at)?;
        let mut check = BlockCheck::new(bh);
        let mut left = u64::from(bh.compressed_size);
        while left > 0 {
            let want = left.min(piece.len() as u64) as usize;
            let got = read_full(&mut r, &mut piece[..want])?;
            check.feed(&piece[..got]);
            left -= got as u64;
            if got < want {
                return Err(at(snappy("block cut short (torn)")));
            }
        }
        check.finish().map_err(at)?;
        blocks += 1;
        offset += bh.total_len();
    }
}

fn snappy(msg: &str) -> BlockError {
    BlockError::Snappy(msg.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hyd::block::{Entry, build_block, decode_block};
    use proptest::prelude::*;

    fn check_in_pieces(
        h: BlockHeader,
        payload: &[u8],
        piece: usize,
    ) -> Result<Option<String>, BlockError> {
        let mut c = BlockCheck::new(h);
        for p in payload.chunks(piece.max(1)) {
            c.feed(p);
        }
        c.finish()
    }

    proptest! {
        #[test]
        fn agrees_with_the_in_memory_decoder(
            entries in proptest::collection::vec(
                (1u8..=4, proptest::collection::vec(any::<u8>(), 1..20), proptest::collection::vec(0u8..3, 0..300)),
                0..20),
            piece in 1usize..50,
            flip in proptest::option::of((any::<usize>(), 1u8..=255)),
            fix_crc in any::<bool>(),
        ) {
            let entries: Vec<Entry> = entries.into_iter().map(|(o, k, d)| Entry::new(Op::from_u8(o), k, d)).collect();
            let (mut h, mut payload) = build_block(&entries).unwrap();
            if let Some((at, x)) = flip && !payload.is_empty() {
                let n = payload.len();
                payload[at % n] ^= x;
                if fix_crc {
                    h.checksum = crc32fast::hash(&payload);
                }
            }
            let whole = decode_block(&h, &payload);
            let streamed = check_in_pieces(h, &payload, piece);
            prop_assert_eq!(whole.is_ok(), streamed.is_ok(), "{:?} vs {:?}", whole, streamed);
            if let Err(BlockError::Checksum { .. }) = whole {
                let crc = matches!(streamed, Err(BlockError::Checksum { .. }));
                prop_assert!(crc);
            }
        }
    }

    #[test]
    fn large_block_in_small_memory_and_its_name() {
        let big = vec![7u8; 5 * WINDOW];
        let entries = vec![
            Entry::new(Op::Insert, b"big".to_vec(), big),
            Entry::new(Op::Metadata, SWAMP_META_KEY, b"a/b/c".to_vec()),
        ];
        let (h, payload) = build_block(&entries).unwrap();
        assert_eq!(
            check_in_pieces(h, &payload, 4096).unwrap().as_deref(),
            Some("a/b/c")
        );

        // An empty key, as HydrAIDE's writer can produce it.
        let mut raw = vec![1u8, 0, 0, 1, 0, 0, 0, b'x'];
        raw.extend_from_slice(&[1, 1, 0, b'k', 0, 0, 0, 0]);
        let payload = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
        let h = BlockHeader {
            compressed_size: payload.len() as u32,
            uncompressed_size: raw.len() as u32,
            entry_count: 2,
            checksum: crc32fast::hash(&payload),
            flags: 0,
        };
        assert!(matches!(
            check_in_pieces(h, &payload, 3),
            Err(BlockError::Entry {
                index: 0,
                source: EntryError::EmptyKey { .. }
            })
        ));
    }
}
