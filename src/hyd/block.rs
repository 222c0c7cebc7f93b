//! Blocks and entries.
//!
//! A block is a 16-byte little-endian header — CompressedSize u32,
//! UncompressedSize u32, EntryCount u16, Checksum u32 (CRC-32/IEEE of the
//! compressed bytes), Flags u16 — followed by CompressedSize bytes of raw
//! (unframed) Snappy data. Decompressed, it holds EntryCount entries, each
//! `Op u8 | KeyLen u16 | Key | DataLen u32 | Data`.

use super::BLOCK_HEADER_SIZE;

/// Smallest possible encoded entry: op, key length, a one-byte key, data length.
pub const MIN_ENTRY_LEN: u64 = 8;

/// Operation of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// 1: the key is created.
    Insert,
    /// 2: the key is overwritten.
    Update,
    /// 3: the key is removed.
    Delete,
    /// 4: swamp metadata (the swamp name in version-2 files); not a treasure.
    Metadata,
    /// Any other value: HydrAIDE parses and ignores it.
    Unknown(u8),
}

impl Op {
    /// The stored byte.
    pub fn as_u8(self) -> u8 {
        match self {
            Op::Insert => 1,
            Op::Update => 2,
            Op::Delete => 3,
            Op::Metadata => 4,
            Op::Unknown(b) => b,
        }
    }

    /// Parses a stored byte.
    pub fn from_u8(b: u8) -> Op {
        match b {
            1 => Op::Insert,
            2 => Op::Update,
            3 => Op::Delete,
            4 => Op::Metadata,
            b => Op::Unknown(b),
        }
    }
}

/// An owned entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Operation.
    pub op: Op,
    /// Key (1..=65535 bytes).
    pub key: Vec<u8>,
    /// Data: the encoded treasure (empty for deletes).
    pub data: Vec<u8>,
}

impl Entry {
    /// Shorthand for building an entry.
    pub fn new(op: Op, key: impl Into<Vec<u8>>, data: impl Into<Vec<u8>>) -> Entry {
        Entry {
            op,
            key: key.into(),
            data: data.into(),
        }
    }

    /// Encoded length: 1 + 2 + key + 4 + data.
    pub fn encoded_len(&self) -> usize {
        7 + self.key.len() + self.data.len()
    }
}

/// An entry borrowed from a decompressed block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// Operation.
    pub op: Op,
    /// Key.
    pub key: &'a [u8],
    /// Data.
    pub data: &'a [u8],
}

impl EntryRef<'_> {
    /// Copies into an owned [`Entry`].
    pub fn to_owned_entry(&self) -> Entry {
        Entry::new(self.op, self.key, self.data)
    }
}

/// Why an entry could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The block ended inside an entry.
    #[error("entry truncated at byte {at}")]
    Truncated {
        /// Offset in the decompressed block.
        at: usize,
    },
    /// The key is empty (HydrAIDE rejects such entries).
    #[error("empty key at byte {at}")]
    EmptyKey {
        /// Offset in the decompressed block.
        at: usize,
    },
}

/// Why a block could not be built or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// Checksum of the compressed bytes does not match the header.
    #[error("crc mismatch: header {expected:08x}, data {actual:08x}")]
    Checksum {
        /// CRC stored in the block header.
        expected: u32,
        /// CRC of the bytes found.
        actual: u32,
    },
    /// Header sizes cannot describe a real block.
    #[error(
        "implausible block header: compressed {compressed}, uncompressed {uncompressed}, entries {entries}"
    )]
    Implausible {
        /// CompressedSize field.
        compressed: u32,
        /// UncompressedSize field.
        uncompressed: u32,
        /// EntryCount field.
        entries: u16,
    },
    /// Snappy data is invalid or decodes to another length than the header says.
    #[error("bad snappy payload: {0}")]
    Snappy(String),
    /// An entry inside the block is malformed.
    #[error("entry {index}: {source}")]
    Entry {
        /// Index of the entry in the block.
        index: u16,
        /// What went wrong.
        #[source]
        source: EntryError,
    },
    /// The entries cannot be stored in one block (too many, too long a key, ...).
    #[error("cannot encode block: {0}")]
    Encode(String),
}

/// A decoded block header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockHeader {
    /// Bytes of Snappy data after the header.
    pub compressed_size: u32,
    /// Bytes of entries after decompression.
    pub uncompressed_size: u32,
    /// Number of entries.
    pub entry_count: u16,
    /// CRC-32/IEEE of the compressed bytes.
    pub checksum: u32,
    /// Flags (unused by HydrAIDE so far).
    pub flags: u16,
}

impl BlockHeader {
    /// Decodes 16 bytes.
    pub fn decode(b: &[u8; BLOCK_HEADER_SIZE]) -> BlockHeader {
        BlockHeader {
            compressed_size: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            uncompressed_size: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            entry_count: u16::from_le_bytes([b[8], b[9]]),
            checksum: u32::from_le_bytes([b[10], b[11], b[12], b[13]]),
            flags: u16::from_le_bytes([b[14], b[15]]),
        }
    }

    /// Encodes into 16 bytes.
    pub fn encode(&self) -> [u8; BLOCK_HEADER_SIZE] {
        let mut b = [0u8; BLOCK_HEADER_SIZE];
        b[0..4].copy_from_slice(&self.compressed_size.to_le_bytes());
        b[4..8].copy_from_slice(&self.uncompressed_size.to_le_bytes());
        b[8..10].copy_from_slice(&self.entry_count.to_le_bytes());
        b[10..14].copy_from_slice(&self.checksum.to_le_bytes());
        b[14..16].copy_from_slice(&self.flags.to_le_bytes());
        b
    }

    /// Checks that the sizes can describe a real block: a non-empty Snappy
    /// stream, an uncompressed size within what Snappy can expand `compressed_size`
    /// bytes to, and room for every entry. Any u32 size is accepted otherwise, as
    /// HydrAIDE does (one large Treasure is one large block).
    pub fn check_plausible(&self) -> Result<(), BlockError> {
        let c = u64::from(self.compressed_size);
        let u = u64::from(self.uncompressed_size);
        // A Snappy copy element expands at most 64 bytes out of 3; leave slack.
        let plausible = c > 0
            && u <= c * 24 + 16
            && c <= u * 2 + 64
            && u64::from(self.entry_count) * MIN_ENTRY_LEN <= u;
        if plausible {
            Ok(())
        } else {
            Err(BlockError::Implausible {
                compressed: self.compressed_size,
                uncompressed: self.uncompressed_size,
                entries: self.entry_count,
            })
        }
    }

    /// Total length of the block in the file, header included.
    pub fn total_len(&self) -> u64 {
        BLOCK_HEADER_SIZE as u64 + u64::from(self.compressed_size)
    }
}

/// Appends the encoding of `entries` to `out`.
pub fn encode_entries(entries: &[Entry], out: &mut Vec<u8>) -> Result<(), BlockError> {
    for e in entries {
        let klen = u16::try_from(e.key.len())
            .ok()
            .filter(|&k| k > 0)
            .ok_or_else(|| BlockError::Encode(format!("key length {}", e.key.len())))?;
        let dlen = u32::try_from(e.data.len())
            .map_err(|_| BlockError::Encode(format!("data length {}", e.data.len())))?;
        out.push(e.op.as_u8());
        out.extend_from_slice(&klen.to_le_bytes());
        out.extend_from_slice(&e.key);
        out.extend_from_slice(&dlen.to_le_bytes());
        out.extend_from_slice(&e.data);
    }
    Ok(())
}

/// Builds one block from `entries`: returns its header and compressed payload.
pub fn build_block(entries: &[Entry]) -> Result<(BlockHeader, Vec<u8>), BlockError> {
    let entry_count = u16::try_from(entries.len())
        .map_err(|_| BlockError::Encode(format!("{} entries in one block", entries.len())))?;
    let mut raw = Vec::with_capacity(entries.iter().map(Entry::encoded_len).sum());
    encode_entries(entries, &mut raw)?;
    let uncompressed_size = u32::try_from(raw.len())
        .ok()
        .ok_or_else(|| BlockError::Encode(format!("block of {} bytes", raw.len())))?;
    let payload = snap::raw::Encoder::new()
        .compress_vec(&raw)
        .map_err(|e| BlockError::Snappy(e.to_string()))?;
    let compressed_size = u32::try_from(payload.len())
        .map_err(|_| BlockError::Encode("compressed block too large".into()))?;
    let header = BlockHeader {
        compressed_size,
        uncompressed_size,
        entry_count,
        checksum: crc32fast::hash(&payload),
        flags: 0,
    };
    Ok((header, payload))
}

/// Verifies the payload's CRC against the header.
pub fn check_crc(header: &BlockHeader, payload: &[u8]) -> Result<(), BlockError> {
    let actual = crc32fast::hash(payload);
    if actual == header.checksum {
        Ok(())
    } else {
        Err(BlockError::Checksum {
            expected: header.checksum,
            actual,
        })
    }
}

/// Checks (without decompressing) that the Snappy stream announces the
/// uncompressed size the header records.
pub fn check_snappy_len(header: &BlockHeader, payload: &[u8]) -> Result<(), BlockError> {
    let n = snap::raw::decompress_len(payload).map_err(|e| BlockError::Snappy(e.to_string()))?;
    if n as u64 == u64::from(header.uncompressed_size) {
        Ok(())
    } else {
        Err(BlockError::Snappy(format!(
            "stream holds {n} bytes, header says {}",
            header.uncompressed_size
        )))
    }
}

/// Checks CRC and plausibility, then decompresses the payload.
pub fn decompress_block(header: &BlockHeader, payload: &[u8]) -> Result<Vec<u8>, BlockError> {
    header.check_plausible()?;
    check_crc(header, payload)?;
    check_snappy_len(header, payload)?;
    let raw = snap::raw::Decoder::new()
        .decompress_vec(payload)
        .map_err(|e| BlockError::Snappy(e.to_string()))?;
    if raw.len() as u64 != u64::from(header.uncompressed_size) {
        return Err(BlockError::Snappy(
            "length mismatch after decompression".into(),
        ));
    }
    Ok(raw)
}

/// Decodes exactly `count` entries from a decompressed block, as HydrAIDE does
/// (bytes after the last entry are ignored).
pub fn parse_entries(raw: &[u8], count: u16) -> Result<Vec<EntryRef<'_>>, BlockError> {
    // Every entry takes at least MIN_ENTRY_LEN bytes: bound the allocation by both.
    let cap = usize::from(count).min(raw.len() / MIN_ENTRY_LEN as usize);
    let mut out = Vec::with_capacity(cap);
    let mut at = 0usize;
    for index in 0..count {
        let (entry, used) =
            parse_entry(&raw[at..], at).map_err(|source| BlockError::Entry { index, source })?;
        out.push(entry);
        at += used;
    }
    Ok(out)
}

fn parse_entry(buf: &[u8], base: usize) -> Result<(EntryRef<'_>, usize), EntryError> {
    let truncated = |rel: usize| EntryError::Truncated { at: base + rel };
    if buf.len() < 7 {
        return Err(truncated(buf.len()));
    }
    let op = Op::from_u8(buf[0]);
    let klen = usize::from(u16::from_le_bytes([buf[1], buf[2]]));
    let key_end = 3 + klen;
    let dlen_end = key_end + 4;
    let dlen_bytes = buf.get(key_end..dlen_end).ok_or(truncated(buf.len()))?;
    if klen == 0 {
        return Err(EntryError::EmptyKey { at: base });
    }
    let dlen = u32::from_le_bytes([dlen_bytes[0], dlen_bytes[1], dlen_bytes[2], dlen_bytes[3]]);
    let data_end = usize::try_from(dlen)
        .ok()
        .and_then(|d| dlen_end.checked_add(d))
        .ok_or(truncated(buf.len()))?;
    let data = buf.get(dlen_end..data_end).ok_or(truncated(buf.len()))?;
    Ok((
        EntryRef {
            op,
            key: &buf[3..key_end],
            data,
        },
        data_end,
    ))
}

/// Decompresses a block and decodes its entries into owned values.
pub fn decode_block(header: &BlockHeader, payload: &[u8]) -> Result<Vec<Entry>, BlockError> {
    let raw = decompress_block(header, payload)?;
    Ok(parse_entries(&raw, header.entry_count)?
        .iter()
        .map(EntryRef::to_owned_entry)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_entry() -> impl Strategy<Value = Entry> {
        (
            1u8..=5,
            proptest::collection::vec(any::<u8>(), 1..40),
            proptest::collection::vec(any::<u8>(), 0..200),
        )
            .prop_map(|(op, k, d)| Entry::new(Op::from_u8(op), k, d))
    }

    proptest! {
        #[test]
        fn block_round_trip(entries in proptest::collection::vec(arb_entry(), 0..30)) {
            let (h, payload) = build_block(&entries).unwrap();
            prop_assert!(h.check_plausible().is_ok());
            prop_assert_eq!(BlockHeader::decode(&h.encode()), h);
            prop_assert_eq!(decode_block(&h, &payload).unwrap(), entries);
        }

        #[test]
        fn parse_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..300), n in any::<u16>()) {
            let _ = parse_entries(&raw, n);
        }

        #[test]
        fn decode_never_panics(hdr in any::<[u8; 16]>(), payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let h = BlockHeader::decode(&hdr);
            let _ = decode_block(&h, &payload);
        }
    }

    #[test]
    fn rejects_empty_key_and_zero_block() {
        assert!(build_block(&[Entry::new(Op::Insert, Vec::new(), b"x".to_vec())]).is_err());
        let raw = [1u8, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            parse_entries(&raw, 1),
            Err(BlockError::Entry {
                index: 0,
                source: EntryError::EmptyKey { at: 0 }
            })
        );
        assert!(BlockHeader::default().check_plausible().is_err());
    }
}
