//! Blob encoding: plaintext → (zstd when it shrinks) → AES-256-GCM, and back with the id checked.

use crate::crypto::Keys;
use crate::repo::object::decompress_bounded;
use crate::repo::pack::{MAX_BLOB, PackEntry};
use crate::{Error, Id, Result};

/// What a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlobType {
    /// File content.
    Data,
    /// A directory listing.
    Tree,
}

/// A blob ready for a pack.
pub struct SealedBlob {
    /// Data or tree.
    pub kind: BlobType,
    /// Keyed id of the plaintext.
    pub id: Id,
    /// Sealed bytes.
    pub sealed: Vec<u8>,
    /// Plaintext length.
    pub raw_len: u32,
    /// Whether compression was applied.
    pub compressed: bool,
}

/// Compresses (at `level`, skipped when 0 or when it does not shrink by at least 1/64) and seals.
pub fn seal_blob(keys: &Keys, kind: BlobType, id: Id, plain: &[u8], level: i32) -> SealedBlob {
    let compressed = if level != 0 && plain.len() >= 64 {
        crate::repo::compress::compress(plain, level)
            .ok()
            .filter(|z| z.len() < plain.len() - plain.len() / 64)
    } else {
        None
    };
    let (payload, is_z) = match &compressed {
        Some(z) => (z.as_slice(), true),
        None => (plain, false),
    };
    SealedBlob {
        kind,
        id,
        sealed: keys.seal_key().seal(payload),
        raw_len: plain.len() as u32,
        compressed: is_z,
    }
}

/// Opens a stored blob, decompresses it and checks that its plaintext hashes to its id.
pub fn open_blob(keys: &Keys, e: &PackEntry, sealed: &[u8]) -> Result<Vec<u8>> {
    let (payload, plain) = open_checked(keys, e, sealed)?;
    Ok(plain.unwrap_or(payload))
}

/// Opens and checks a blob: `(payload as stored, plaintext)`, the plaintext `None` when it is
/// the payload itself (an uncompressed blob).
pub fn open_checked(
    keys: &Keys,
    e: &PackEntry,
    sealed: &[u8],
) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
    let what = || format!("blob {}", e.id);
    // Index entries are not range-checked when loaded; without this a frame declaring up to
    // 4 GiB would be allocated for before the length check below.
    if e.raw_len > MAX_BLOB {
        return Err(Error::corrupt(what(), "implausible length in the index"));
    }
    let payload = keys
        .seal_key()
        .open(sealed)
        .map_err(|er| Error::corrupt(what(), er.to_string()))?;
    let plain = if e.compressed {
        Some(
            decompress_bounded(&payload, e.raw_len as usize)
                .map_err(|er| Error::corrupt(what(), format!("decompression: {er}")))?,
        )
    } else {
        None
    };
    let p = plain.as_deref().unwrap_or(&payload);
    if p.len() != e.raw_len as usize {
        return Err(Error::corrupt(what(), "length differs from the index"));
    }
    if keys.blob_id(p) != e.id {
        return Err(Error::corrupt(what(), "content does not match its id"));
    }
    Ok((payload, plain))
}
