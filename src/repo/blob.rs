//! Blob encoding: plaintext → (zstd when it shrinks) → AES-256-GCM, and back with the id checked.

use crate::crypto::{Keys, NONCE_LEN, TAG_LEN};
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
/// The payload is built where it is sealed: zstd writes its frame after the nonce's room and
/// AES-GCM encrypts it in place, so a compressed blob is never copied (a raw one once).
pub fn seal_blob(keys: &Keys, kind: BlobType, id: Id, plain: &[u8], level: i32) -> SealedBlob {
    let try_z = level != 0 && plain.len() >= 64;
    let room = if try_z {
        crate::repo::compress::bound(plain.len()).max(plain.len())
    } else {
        plain.len()
    };
    let mut sealed = Vec::with_capacity(NONCE_LEN + room + TAG_LEN);
    sealed.resize(NONCE_LEN, 0);
    let compressed = try_z
        && crate::repo::compress::compress_append(plain, level, &mut sealed)
            .is_ok_and(|n| n < plain.len() - plain.len() / 64);
    if !compressed {
        sealed.truncate(NONCE_LEN);
        sealed.extend_from_slice(plain);
    }
    keys.seal_key().seal_in_place(&mut sealed, 0);
    if sealed.capacity() - sealed.len() > sealed.len() / 16 {
        // The blob waits in a pack for a while: do not hold zstd's worst case for it.
        sealed.shrink_to_fit();
    }
    SealedBlob {
        kind,
        id,
        sealed,
        raw_len: plain.len() as u32,
        compressed,
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

/// Buffers reused by [`check_blob`] from blob to blob (one per thread).
#[derive(Default)]
pub struct Scratch {
    payload: Vec<u8>,
    plain: Vec<u8>,
}

/// Checks a stored blob as [`open_checked`] does (it opens, decompresses to its length and
/// hashes to its id) without keeping it: decrypted and decompressed into `scratch`, so
/// nothing is allocated or copied per blob.
pub fn check_blob(keys: &Keys, e: &PackEntry, sealed: &[u8], scratch: &mut Scratch) -> Result<()> {
    let what = || format!("blob {}", e.id);
    if e.raw_len > MAX_BLOB {
        return Err(Error::corrupt(what(), "implausible length in the index"));
    }
    let payload = keys
        .seal_key()
        .open_to(sealed, &mut scratch.payload)
        .map_err(|er| Error::corrupt(what(), er.to_string()))?;
    let p = if e.compressed {
        crate::repo::compress::decompress_into(payload, e.raw_len as usize, &mut scratch.plain)
            .map_err(|er| Error::corrupt(what(), format!("decompression: {er}")))?;
        &scratch.plain[..]
    } else {
        payload
    };
    if p.len() != e.raw_len as usize {
        return Err(Error::corrupt(what(), "length differs from the index"));
    }
    if keys.blob_id(p) != e.id {
        return Err(Error::corrupt(what(), "content does not match its id"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SealKey;

    fn entry(b: &SealedBlob) -> PackEntry {
        PackEntry {
            kind: b.kind,
            id: b.id,
            offset: 0,
            len: b.sealed.len() as u32,
            raw_len: b.raw_len,
            compressed: b.compressed,
        }
    }

    #[test]
    fn sealed_in_place_opens_and_checks() {
        let keys = Keys::new(SealKey::new(&[3; 32]), [4; 32]);
        let text = b"swamp treasure realm ".repeat(400);
        let mut noise = vec![0u8; 5000];
        blake3::Hasher::new().finalize_xof().fill(&mut noise);
        let mut scratch = Scratch::default();
        for (plain, level, z) in [
            (&text[..], 1, true),
            (&noise[..], 1, false),
            (&text[..], 0, false),
            (&b"tiny"[..], 1, false),
        ] {
            let id = keys.blob_id(plain);
            let b = seal_blob(&keys, BlobType::Data, id, plain, level);
            assert_eq!(b.compressed, z);
            let e = entry(&b);
            assert_eq!(open_blob(&keys, &e, &b.sealed).unwrap(), plain);
            check_blob(&keys, &e, &b.sealed, &mut scratch).unwrap();
            // The scratch buffers keep whatever came before: a shorter blob still checks,
            // and any flipped bit fails.
            for i in [0, b.sealed.len() / 2, b.sealed.len() - 1] {
                let mut t = b.sealed.clone();
                t[i] ^= 4;
                assert!(
                    check_blob(&keys, &e, &t, &mut scratch).is_err(),
                    "flip at {i}"
                );
            }
            let wrong = PackEntry {
                raw_len: e.raw_len + 1,
                ..e
            };
            assert!(check_blob(&keys, &wrong, &b.sealed, &mut scratch).is_err());
            let other = PackEntry {
                id: Id([9; 32]),
                ..e
            };
            assert!(check_blob(&keys, &other, &b.sealed, &mut scratch).is_err());
        }
    }
}
