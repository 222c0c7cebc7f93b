//! Sealed CBOR objects: config, index files, snapshots and locks are stored as
//! `seal(format byte || payload)` where format 0 is raw CBOR and 1 is zstd-compressed CBOR.

use serde::{Serialize, de::DeserializeOwned};

use crate::crypto::SealKey;
use crate::{Error, Result};

const RAW: u8 = 0;
const ZSTD: u8 = 1;
/// Largest decompressed object accepted (index files of tens of millions of blobs fit).
pub const MAX_OBJECT: usize = 1 << 30;

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
    let plain = key
        .open(sealed)
        .map_err(|e| Error::corrupt(what, e.to_string()))?;
    decode_plain(&plain, what)
}

/// Decodes the plaintext of a sealed object (format byte and payload).
pub fn decode_plain<T: DeserializeOwned>(plain: &[u8], what: &str) -> Result<T> {
    match plain.split_first() {
        Some((&RAW, body)) => from_cbor(body, what),
        Some((&ZSTD, body)) => {
            let cbor = decompress_bounded(body, MAX_OBJECT)
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
