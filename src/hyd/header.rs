//! The 64-byte little-endian file header of a `.hyd` file.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `HYDR` |
//! | 4 | 2 | version (2 or 3) |
//! | 6 | 2 | flags |
//! | 8 | 8 | CreatedAt (unix ns) |
//! | 16 | 8 | ModifiedAt (unix ns) |
//! | 24 | 4 | BlockSize |
//! | 28 | 8 | EntryCount |
//! | 36 | 8 | BlockCount |
//! | 44 | 2 | NameLength (v3; reserved in v2) |
//! | 46 | 18 | reserved |

use super::{FILE_HEADER_SIZE, MAGIC};

/// Format version of a `.hyd` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    /// Legacy: the swamp name is a METADATA entry in the first block.
    V2,
    /// Current: the swamp name follows the 64-byte header.
    V3,
}

impl Version {
    /// The version number as stored in the header.
    pub fn as_u16(self) -> u16 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }

    /// Parses a stored version number; `None` for anything but 2 and 3.
    pub fn from_u16(v: u16) -> Option<Version> {
        match v {
            2 => Some(Version::V2),
            3 => Some(Version::V3),
            _ => None,
        }
    }
}

/// Why 64 bytes are not a `.hyd` header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Fewer than 64 bytes were given.
    #[error("header needs 64 bytes, got {0}")]
    Short(usize),
    /// The first four bytes are not `HYDR`.
    #[error("bad magic {0:02x?}")]
    BadMagic([u8; 4]),
    /// The version is neither 2 nor 3.
    #[error("unsupported version {0}")]
    UnsupportedVersion(u16),
}

/// A decoded file header. Encoding a decoded header gives back the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHeader {
    /// Format version.
    pub version: Version,
    /// Flags (unused by HydrAIDE so far, kept verbatim).
    pub flags: u16,
    /// Creation time, unix nanoseconds.
    pub created_at: i64,
    /// Last modification time, unix nanoseconds.
    pub modified_at: i64,
    /// Maximum uncompressed block size the writer used.
    pub block_size: u32,
    /// Entries written, as last recorded by the writer (may be stale).
    pub entry_count: u64,
    /// Blocks written, as last recorded by the writer (may be stale).
    pub block_count: u64,
    /// Bytes 44..46: NameLength in version 3; reserved (kept verbatim) in version 2.
    /// Use [`FileHeader::name_len`] for the effective name length.
    pub name_len_raw: u16,
    /// Bytes 46..64, reserved, kept verbatim.
    pub reserved: [u8; 18],
}

impl FileHeader {
    /// A fresh header with zero counts and HydrAIDE's default block size.
    pub fn new(version: Version, name_len: u16, created_at: i64) -> FileHeader {
        FileHeader {
            version,
            flags: 0,
            created_at,
            modified_at: created_at,
            block_size: super::DEFAULT_BLOCK_SIZE,
            entry_count: 0,
            block_count: 0,
            name_len_raw: if version == Version::V3 { name_len } else { 0 },
            reserved: [0; 18],
        }
    }

    /// Decodes the first 64 bytes of `buf`.
    pub fn decode(buf: &[u8]) -> Result<FileHeader, HeaderError> {
        let b: &[u8; FILE_HEADER_SIZE] = buf
            .get(..FILE_HEADER_SIZE)
            .and_then(|s| s.try_into().ok())
            .ok_or(HeaderError::Short(buf.len()))?;
        let magic = [b[0], b[1], b[2], b[3]];
        if magic != MAGIC {
            return Err(HeaderError::BadMagic(magic));
        }
        let raw_version = u16::from_le_bytes([b[4], b[5]]);
        let version =
            Version::from_u16(raw_version).ok_or(HeaderError::UnsupportedVersion(raw_version))?;
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(a)
        };
        let mut reserved = [0u8; 18];
        reserved.copy_from_slice(&b[46..64]);
        Ok(FileHeader {
            version,
            flags: u16_at(6),
            created_at: u64_at(8) as i64,
            modified_at: u64_at(16) as i64,
            block_size: u32_at(24),
            entry_count: u64_at(28),
            block_count: u64_at(36),
            name_len_raw: u16_at(44),
            reserved,
        })
    }

    /// Encodes the header into its 64 bytes.
    pub fn encode(&self) -> [u8; FILE_HEADER_SIZE] {
        let mut b = [0u8; FILE_HEADER_SIZE];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&self.version.as_u16().to_le_bytes());
        b[6..8].copy_from_slice(&self.flags.to_le_bytes());
        b[8..16].copy_from_slice(&self.created_at.to_le_bytes());
        b[16..24].copy_from_slice(&self.modified_at.to_le_bytes());
        b[24..28].copy_from_slice(&self.block_size.to_le_bytes());
        b[28..36].copy_from_slice(&self.entry_count.to_le_bytes());
        b[36..44].copy_from_slice(&self.block_count.to_le_bytes());
        b[44..46].copy_from_slice(&self.name_len_raw.to_le_bytes());
        b[46..64].copy_from_slice(&self.reserved);
        b
    }

    /// Length of the swamp name stored after the header (0 for version 2).
    pub fn name_len(&self) -> u16 {
        match self.version {
            Version::V3 => self.name_len_raw,
            Version::V2 => 0,
        }
    }

    /// Offset of the first block: 64, plus the name length for version 3.
    pub fn data_start(&self) -> u64 {
        FILE_HEADER_SIZE as u64 + u64::from(self.name_len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_header() -> impl Strategy<Value = FileHeader> {
        (
            prop_oneof![Just(Version::V2), Just(Version::V3)],
            any::<u16>(),
            any::<i64>(),
            any::<i64>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            any::<u16>(),
            any::<[u8; 18]>(),
        )
            .prop_map(
                |(version, flags, c, m, bs, ec, bc, nl, reserved)| FileHeader {
                    version,
                    flags,
                    created_at: c,
                    modified_at: m,
                    block_size: bs,
                    entry_count: ec,
                    block_count: bc,
                    name_len_raw: nl,
                    reserved,
                },
            )
    }

    proptest! {
        #[test]
        fn header_round_trip(h in arb_header()) {
            let bytes = h.encode();
            prop_assert_eq!(FileHeader::decode(&bytes).unwrap(), h);
        }

        #[test]
        fn bytes_round_trip(mut raw in proptest::collection::vec(any::<u8>(), 64), v3 in any::<bool>()) {
            raw[0..4].copy_from_slice(&MAGIC);
            raw[4..6].copy_from_slice(&(if v3 { 3u16 } else { 2 }).to_le_bytes());
            let h = FileHeader::decode(&raw).unwrap();
            prop_assert_eq!(&h.encode()[..], &raw[..]);
        }

        #[test]
        fn decode_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = FileHeader::decode(&raw);
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(FileHeader::decode(&[0; 10]), Err(HeaderError::Short(10)));
        let mut b = FileHeader::new(Version::V3, 5, 1).encode();
        assert_eq!(FileHeader::decode(&b).unwrap().data_start(), 69);
        b[4] = 4;
        assert_eq!(
            FileHeader::decode(&b),
            Err(HeaderError::UnsupportedVersion(4))
        );
        b[0] = b'X';
        assert!(matches!(
            FileHeader::decode(&b),
            Err(HeaderError::BadMagic(_))
        ));
        let v2 = FileHeader {
            name_len_raw: 7,
            ..FileHeader::new(Version::V2, 0, 1)
        };
        assert_eq!(v2.data_start(), 64);
    }
}
