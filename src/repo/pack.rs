//! Pack files: sealed blobs back to back, then a sealed header listing them, then the header's
//! length as a little-endian u32.
//!
//! Header plaintext: magic `HBPK`, version byte 1, blob count u32, then per blob 41 bytes:
//! flags u8 (bit 0: tree blob, bit 7: zstd-compressed) | stored length u32 | raw length u32 | id.
//! Blob offsets are implicit: blobs are stored in header order from offset 0. A pack written
//! with a write-only key has its session's envelope in front of the sealed header.

use crate::crypto::{Keys, SEAL_OVERHEAD};
use crate::repo::blob::{BlobType, Scratch, check_blob};
use crate::{Error, Id, Result};

const MAGIC: &[u8; 4] = b"HBPK";
const ENTRY_LEN: usize = 41;
const HEADER_FIXED: usize = 9;
const FLAG_TREE: u8 = 1;
const FLAG_ZSTD: u8 = 0x80;
/// Largest blob accepted anywhere (stored length).
pub const MAX_BLOB: u32 = 1 << 30;

/// One blob as listed in a pack header, with its offset made explicit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    /// Data or tree.
    pub kind: BlobType,
    /// Keyed id of the plaintext.
    pub id: Id,
    /// Offset in the pack.
    pub offset: u32,
    /// Stored (sealed) length.
    pub len: u32,
    /// Plaintext length.
    pub raw_len: u32,
    /// Whether the sealed payload is zstd-compressed.
    pub compressed: bool,
}

/// Encodes the plaintext of a pack header.
pub fn encode_header(entries: &[PackEntry]) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_FIXED + entries.len() * ENTRY_LEN);
    h.extend_from_slice(MAGIC);
    h.push(1);
    h.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        let mut flags = 0;
        if e.kind == BlobType::Tree {
            flags |= FLAG_TREE;
        }
        if e.compressed {
            flags |= FLAG_ZSTD;
        }
        h.push(flags);
        h.extend_from_slice(&e.len.to_le_bytes());
        h.extend_from_slice(&e.raw_len.to_le_bytes());
        h.extend_from_slice(&e.id.0);
    }
    h
}

/// Decodes a pack header's plaintext; offsets are computed from the lengths.
pub fn decode_header(h: &[u8]) -> Result<Vec<PackEntry>> {
    let bad = |r: &str| Error::corrupt("pack header", r.to_string());
    if h.len() < HEADER_FIXED || &h[..4] != MAGIC {
        return Err(bad("bad magic"));
    }
    if h[4] != 1 {
        return Err(bad("unsupported version"));
    }
    let n = u32::from_le_bytes(h[5..9].try_into().expect("4 bytes")) as usize;
    if (h.len() - HEADER_FIXED) / ENTRY_LEN != n
        || !(h.len() - HEADER_FIXED).is_multiple_of(ENTRY_LEN)
    {
        return Err(bad("length does not match blob count"));
    }
    let mut offset: u64 = 0;
    let mut out = Vec::with_capacity(n);
    for r in h[HEADER_FIXED..].chunks_exact(ENTRY_LEN) {
        let flags = r[0];
        if flags & !(FLAG_TREE | FLAG_ZSTD) != 0 {
            return Err(bad("unknown flags"));
        }
        let len = u32::from_le_bytes(r[1..5].try_into().expect("4 bytes"));
        let raw_len = u32::from_le_bytes(r[5..9].try_into().expect("4 bytes"));
        if !(SEAL_OVERHEAD as u32..=MAX_BLOB).contains(&len) || raw_len > MAX_BLOB {
            return Err(bad("implausible blob length"));
        }
        let off = u32::try_from(offset).map_err(|_| bad("pack too large"))?;
        out.push(PackEntry {
            kind: if flags & FLAG_TREE != 0 {
                BlobType::Tree
            } else {
                BlobType::Data
            },
            id: Id(r[9..41].try_into().expect("32 bytes")),
            offset: off,
            len,
            raw_len,
            compressed: flags & FLAG_ZSTD != 0,
        });
        offset += len as u64;
    }
    Ok(out)
}

/// The size a pack with these entries and a sealed header of `header_len` bytes must have.
pub fn expected_size(entries: &[PackEntry], sealed_header_len: usize) -> u64 {
    entries.iter().map(|e| e.len as u64).sum::<u64>() + sealed_header_len as u64 + 4
}

/// Splits a whole pack into (blob area, sealed header), checking the trailer.
pub fn split_pack(pack: &[u8]) -> Result<(&[u8], &[u8])> {
    if pack.len() < 4 {
        return Err(Error::corrupt("pack", "shorter than its trailer"));
    }
    let hl = u32::from_le_bytes(pack[pack.len() - 4..].try_into().expect("4 bytes")) as usize;
    if hl + 4 > pack.len() {
        return Err(Error::corrupt("pack", "header length beyond file start"));
    }
    let body_end = pack.len() - 4 - hl;
    Ok((&pack[..body_end], &pack[body_end..pack.len() - 4]))
}

/// Reads and authenticates the header of a whole pack held in memory.
pub fn read_header(keys: &Keys, pack: &[u8]) -> Result<Vec<PackEntry>> {
    read_pack(keys, pack).map(|(entries, _)| entries)
}

/// Opens the sealed header of a pack (the `header_len` bytes before the trailer): its entries
/// and, when a write-only session wrote the pack (its envelope starts the header), that
/// session's keys, which open the pack's blobs.
pub fn open_header(keys: &Keys, sealed: &[u8]) -> Result<(Vec<PackEntry>, Option<Keys>)> {
    let bad = |e: crate::crypto::OpenError| Error::corrupt("pack header", e.to_string());
    let (session, rest) = keys.session_for(sealed).map_err(bad)?;
    let plain = session
        .as_ref()
        .unwrap_or(keys)
        .seal_key()
        .open(rest)
        .map_err(bad)?;
    Ok((decode_header(&plain)?, session))
}

/// [`read_header`], also giving a write-only session's keys (see [`open_header`]).
pub fn read_pack(keys: &Keys, pack: &[u8]) -> Result<(Vec<PackEntry>, Option<Keys>)> {
    let (body, sealed) = split_pack(pack)?;
    let (entries, session) = open_header(keys, sealed)?;
    if expected_size(&entries, sealed.len()) != pack.len() as u64 {
        return Err(Error::corrupt(
            "pack",
            format!(
                "blob area is {} bytes but the header lists {}",
                body.len(),
                entries.iter().map(|e| e.len as u64).sum::<u64>()
            ),
        ));
    }
    Ok((entries, session))
}

/// Accumulates sealed blobs into one pack in memory.
#[derive(Default)]
pub struct PackBuilder {
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
    /// Bytes reserved at a pack's first blob, so the buffer never doubles past its target.
    reserve: usize,
}

/// A pack with its header sealed, not yet named nor checked.
pub struct SealedPack {
    /// The bytes to store.
    pub bytes: Vec<u8>,
    /// The blobs in it.
    pub entries: Vec<PackEntry>,
}

/// A finished pack: its bytes, its name and what it holds.
pub struct FinishedPack {
    /// The pack's name: BLAKE3 of its bytes.
    pub id: Id,
    /// The bytes to store.
    pub bytes: Vec<u8>,
    /// The blobs in it.
    pub entries: Vec<PackEntry>,
}

impl PackBuilder {
    /// A builder that reserves `bytes` for each pack up front (target size plus one blob and
    /// the header), instead of letting the buffer double.
    pub fn with_reserve(bytes: usize) -> Self {
        PackBuilder {
            reserve: bytes,
            ..Default::default()
        }
    }

    /// Appends a sealed blob.
    pub fn add(&mut self, kind: BlobType, id: Id, sealed: &[u8], raw_len: u32, compressed: bool) {
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(self.reserve.max(sealed.len()));
        }
        self.entries.push(PackEntry {
            kind,
            id,
            offset: self.buf.len() as u32,
            len: sealed.len() as u32,
            raw_len,
            compressed,
        });
        self.buf.extend_from_slice(sealed);
    }

    /// Bytes of blobs so far.
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    /// Whether no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Seals the header; the builder is left empty. The pack still has to be named (and,
    /// before it is stored, checked: [`SealedPack::check`]).
    pub fn seal(&mut self, keys: &Keys) -> SealedPack {
        let mut bytes = std::mem::take(&mut self.buf);
        let entries = std::mem::take(&mut self.entries);
        let header = keys.seal(&encode_header(&entries));
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        SealedPack { bytes, entries }
    }

    /// Seals the header and names the pack, unchecked; the builder is left empty.
    pub fn finish(&mut self, keys: &Keys) -> FinishedPack {
        let p = self.seal(keys);
        let id = Id::of_stored(&p.bytes);
        p.named(id)
    }
}

impl SealedPack {
    /// Checks the pack end to end from the bytes that will be stored, and names it, in one
    /// pass: the header must authenticate and equal what was written, the sizes add up, and
    /// every blob must open, decompress and hash to its id; each blob is hashed into the
    /// pack's name right before it is checked, while its bytes are in the CPU's cache. Catches
    /// memory or CPU faults between sealing and storing before they reach the repository.
    /// Returns the name.
    pub fn check(&self, keys: &Keys, scratch: &mut Scratch) -> Result<Id> {
        let (entries, session) = read_pack(keys, &self.bytes)?;
        if entries != self.entries {
            return Err(Error::corrupt(
                "new pack",
                "header differs from what was written",
            ));
        }
        let keys = session.as_ref().unwrap_or(keys);
        let mut h = blake3::Hasher::new();
        // The offsets are consecutive from 0 (decoded so) and the sizes add up (read_pack).
        for e in &entries {
            let blob = &self.bytes[e.offset as usize..(e.offset + e.len) as usize];
            h.update(blob);
            check_blob(keys, e, blob, scratch)?;
        }
        let end = entries.last().map_or(0, |e| (e.offset + e.len) as usize);
        h.update(&self.bytes[end..]);
        Ok(Id(*h.finalize().as_bytes()))
    }

    /// The pack under its name (from [`SealedPack::check`], or `Id::of_stored` of its bytes).
    pub fn named(self, id: Id) -> FinishedPack {
        FinishedPack {
            id,
            bytes: self.bytes,
            entries: self.entries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(kind: BlobType, id: u8, len: u32, raw: u32, c: bool) -> PackEntry {
        PackEntry {
            kind,
            id: Id([id; 32]),
            offset: 0,
            len,
            raw_len: raw,
            compressed: c,
        }
    }

    #[test]
    fn check_names_the_pack_and_catches_any_flipped_bit() {
        use crate::crypto::SealKey;
        use crate::repo::blob::seal_blob;
        let keys = Keys::new(SealKey::new(&[5; 32]), [6; 32]);
        let mut b = PackBuilder::default();
        for i in 0..5u32 {
            let plain = format!("blob {i} ").repeat(50 + 100 * i as usize);
            let id = keys.blob_id(plain.as_bytes());
            let s = seal_blob(&keys, BlobType::Data, id, plain.as_bytes(), (i % 2) as i32);
            b.add(s.kind, s.id, &s.sealed, s.raw_len, s.compressed);
        }
        let pack = b.seal(&keys);
        assert!(b.is_empty() && b.size() == 0);
        let mut scratch = Scratch::default();
        let id = pack.check(&keys, &mut scratch).unwrap();
        assert_eq!(id, Id::of_stored(&pack.bytes));
        // A bit flipped anywhere (blobs, header, trailer) is caught before the pack is stored.
        for i in (0..pack.bytes.len())
            .step_by(97)
            .chain([pack.bytes.len() - 1])
        {
            let mut bytes = pack.bytes.clone();
            bytes[i] ^= 0x10;
            let bad = SealedPack {
                bytes,
                entries: pack.entries.clone(),
            };
            assert!(bad.check(&keys, &mut scratch).is_err(), "byte {i}");
        }
        // So is a header that lists other blobs than the builder wrote.
        let mut entries = pack.entries.clone();
        entries[1].raw_len += 1;
        let other = SealedPack {
            bytes: pack.bytes.clone(),
            entries,
        };
        assert!(other.check(&keys, &mut scratch).is_err());
        assert_eq!(pack.named(id).id, id);
    }

    proptest! {
        #[test]
        fn header_round_trip(v in prop::collection::vec((any::<bool>(), any::<u8>(), 28u32..100_000, 0u32..200_000, any::<bool>()), 0..50)) {
            let mut off = 0;
            let entries: Vec<_> = v.iter().map(|&(t, id, len, raw, c)| {
                let mut e = entry(if t { BlobType::Tree } else { BlobType::Data }, id, len, raw, c);
                e.offset = off;
                off += len;
                e
            }).collect();
            prop_assert_eq!(decode_header(&encode_header(&entries)).unwrap(), entries);
        }

        #[test]
        fn header_decoder_never_panics(b in prop::collection::vec(any::<u8>(), 0..500)) {
            let _ = decode_header(&b);
            let mut h = b"HBPK\x01".to_vec();
            h.extend_from_slice(&b);
            let _ = decode_header(&h);
        }
    }
}
