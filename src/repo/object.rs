//! Sealed CBOR objects: config, index files, snapshots and locks are stored as
//! `seal(format byte || payload)` where format 0 is raw CBOR and 1 is zstd-compressed CBOR.

use serde::{Serialize, de::DeserializeOwned};

use crate::backend::{Backend, FileKind};
use crate::crypto::SealKey;
use crate::{Error, Result};

const RAW: u8 = 0;
const ZSTD: u8 = 1;
/// Largest decompressed object accepted (index files of tens of millions of blobs fit).
pub const MAX_OBJECT: usize = 1 << 30;

/// Largest object of `kind` accepted on read, stored and decompressed alike, so a planted
/// object cannot make a reader allocate more. Far above what hydrabackup writes: config, key
/// and lock objects are under 1 KiB; a snapshot is about 1 KiB plus its paths, tags and
/// excludes; an index file holds at most 50 000 blobs plus one pack's worth (a default 16 MiB
/// pack of the smallest, 64-byte blobs adds 182 000), about 35 bytes a blob sealed, so 8 MB —
/// the unit test `index_cap_holds_the_largest_index_file` measures it. Packs are read by
/// range, never whole through this cap.
pub fn max_size(kind: FileKind) -> usize {
    match kind {
        FileKind::Config | FileKind::Key | FileKind::Lock | FileKind::Policy => 64 << 10,
        FileKind::Snapshot => 16 << 20,
        FileKind::Index => 256 << 20,
        FileKind::Pack => MAX_OBJECT,
    }
}

/// Reads a whole object of `kind`, refusing one larger than [`max_size`] before reading it:
/// `listed` is its size from a listing, otherwise the backend is asked.
pub fn read_capped(
    backend: &dyn Backend,
    kind: FileKind,
    name: &str,
    listed: Option<u64>,
) -> Result<Vec<u8>> {
    let cap = max_size(kind);
    let too_big = |size: u64| {
        Error::corrupt(
            format!("{} {name}", kind.label()),
            format!(
                "{size} bytes, over the {cap}-byte limit for {} objects",
                kind.label()
            ),
        )
    };
    let size = match listed {
        Some(s) => s,
        None => backend.size(kind, name)?,
    };
    if size > cap as u64 {
        return Err(too_big(size));
    }
    let bytes = backend.read(kind, name)?;
    if bytes.len() > cap {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Encodes `value` as CBOR (no sealing); the shared encoder for every CBOR structure.
pub fn to_cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("CBOR encoding into a Vec cannot fail");
    out
}

/// Decodes CBOR bytes of untrusted origin; malformed input is an error, never a panic.
pub fn from_cbor<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    ciborium::from_reader(bytes).map_err(|e| Error::corrupt(what, format!("does not decode: {e}")))
}

/// Serializes, compresses (when that helps) and seals an object.
pub fn seal<T: Serialize>(key: &SealKey, value: &T) -> Vec<u8> {
    let cbor = to_cbor(value);
    let mut plain = Vec::with_capacity(cbor.len() + 1);
    match crate::repo::compress::compress(&cbor, 3) {
        Ok(z) if z.len() + 16 < cbor.len() => {
            plain.push(ZSTD);
            plain.extend_from_slice(&z);
        }
        _ => {
            plain.push(RAW);
            plain.extend_from_slice(&cbor);
        }
    }
    key.seal(&plain)
}

/// Opens and decodes a sealed object; `what` names it in errors.
pub fn open<T: DeserializeOwned>(key: &SealKey, sealed: &[u8], what: &str) -> Result<T> {
    open_limited(key, sealed, what, MAX_OBJECT)
}

/// [`open`] with decompression refused beyond `limit` bytes (see [`max_size`]).
pub fn open_limited<T: DeserializeOwned>(
    key: &SealKey,
    sealed: &[u8],
    what: &str,
    limit: usize,
) -> Result<T> {
    let plain = key
        .open(sealed)
        .map_err(|e| Error::corrupt(what, e.to_string()))?;
    decode_limited(&plain, what, limit)
}

/// Decodes the plaintext of a sealed object (format byte and payload).
pub fn decode_plain<T: DeserializeOwned>(plain: &[u8], what: &str) -> Result<T> {
    decode_limited(plain, what, MAX_OBJECT)
}

/// Decodes the plaintext of a sealed object, refusing decompression beyond `limit` bytes.
pub fn decode_limited<T: DeserializeOwned>(plain: &[u8], what: &str, limit: usize) -> Result<T> {
    match plain.split_first() {
        Some((&RAW, body)) => from_cbor(body, what),
        Some((&ZSTD, body)) => {
            let cbor = decompress_bounded(body, limit)
                .map_err(|e| Error::corrupt(what, format!("decompression: {e}")))?;
            from_cbor(&cbor, what)
        }
        _ => Err(Error::corrupt(what, "unknown object format")),
    }
}

/// Decompresses a zstd frame, refusing output beyond `limit` bytes.
pub fn decompress_bounded(data: &[u8], limit: usize) -> std::io::Result<Vec<u8>> {
    crate::repo::compress::decompress(data, limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Id;
    use crate::crypto::SEAL_OVERHEAD;
    use crate::repo::config::Config;
    use crate::repo::index::{INDEX_VERSION, IndexFile, IndexPack};
    use crate::repo::writer::INDEX_FLUSH_BLOBS;

    /// The largest index file a backup writes: the blobs it flushes at, plus one more pack of
    /// the smallest blobs (64-byte `.hyd` headers, sealed) at the default pack size; random ids
    /// do not compress. The cap leaves ten times that.
    #[test]
    fn index_cap_holds_the_largest_index_file() {
        let per_pack = Config::new().pack_size as usize / (64 + SEAL_OVERHEAD);
        let n = INDEX_FLUSH_BLOBS + per_pack;
        let blobs = (0..n as u32)
            .map(|i| (0x80, Id::of_stored(&i.to_le_bytes()), i * 92, 92, 64))
            .collect();
        let f = IndexFile {
            version: INDEX_VERSION,
            supersedes: Vec::new(),
            packs: vec![IndexPack {
                id: Id::of_stored(b"pack"),
                blobs,
            }],
            ..Default::default()
        };
        let sealed = seal(&SealKey::new(&[3; 32]), &f);
        assert!(sealed.len() > 4 << 20, "{} bytes", sealed.len());
        assert!(
            sealed.len() * 10 < max_size(FileKind::Index),
            "{} bytes",
            sealed.len()
        );
        let back: IndexFile = open_limited(
            &SealKey::new(&[3; 32]),
            &sealed,
            "index",
            max_size(FileKind::Index),
        )
        .unwrap();
        assert_eq!(back, f);
    }
}
