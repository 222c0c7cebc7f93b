//! Cryptography: the repository's master key, AEAD sealing of every stored object and blob,
//! keyed BLAKE3 blob ids, Argon2id key derivation for key files, and sealing to the
//! repository's public key for write-only keys.

pub mod envelope;
mod kdf;

pub use kdf::{KdfParams, derive_key};

use envelope::ENVELOPE_LEN;
use x25519_dalek::StaticSecret;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use crate::Id;

/// Bytes a sealed message adds: 12-byte nonce in front, 16-byte tag behind.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Bytes of the nonce in front of a sealed message (room [`SealKey::seal_in_place`] fills).
pub const NONCE_LEN: usize = 12;
/// Bytes of the tag behind a sealed message.
pub const TAG_LEN: usize = 16;

/// Fills `buf` from the operating system's random source.
pub fn fill_random(buf: &mut [u8]) {
    // The OS RNG failing is not recoverable; there is no safe fallback for key material.
    getrandom::fill(buf).expect("operating system random source failed");
}

/// An AES-256-GCM key that seals and opens messages as `nonce || ciphertext || tag`. Its key
/// schedule is wiped from memory when dropped (aes-gcm's `zeroize` feature).
#[derive(Clone)]
pub struct SealKey {
    cipher: Aes256Gcm,
}

/// Opening a sealed message failed: it was altered, truncated, or sealed with another key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed (wrong key or damaged data)")]
pub struct OpenError;

impl SealKey {
    /// Builds a key from 32 raw bytes.
    pub fn new(key: &[u8; 32]) -> Self {
        SealKey {
            cipher: Aes256Gcm::new_from_slice(key).expect("32-byte key"),
        }
    }

    /// Seals `plain` with a fresh random nonce; appends the result to `out`.
    pub fn seal_into(&self, plain: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.reserve(plain.len() + SEAL_OVERHEAD);
        out.extend_from_slice(&[0; NONCE_LEN]);
        out.extend_from_slice(plain);
        self.seal_in_place(out, start);
    }

    /// Seals in place the message that starts at `start` in `buf`: the first [`NONCE_LEN`]
    /// bytes from there are room for the nonce (overwritten), the rest is the plaintext, which
    /// is encrypted where it lies; the tag is appended. No byte is copied, so a buffer that
    /// already has room for the tag is not reallocated either.
    pub fn seal_in_place(&self, buf: &mut Vec<u8>, start: usize) {
        assert!(buf.len() >= start + NONCE_LEN, "no room for the nonce");
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        buf[start..start + NONCE_LEN].copy_from_slice(&nonce);
        let n = Nonce::try_from(&nonce[..]).expect("12-byte nonce");
        let tag = self
            .cipher
            .encrypt_inout_detached(&n, b"", (&mut buf[start + NONCE_LEN..]).into())
            .expect("message within AES-GCM limits");
        buf.extend_from_slice(&tag);
    }

    /// Seals `plain` into a new buffer.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plain.len() + SEAL_OVERHEAD);
        self.seal_into(plain, &mut out);
        out
    }

    /// Opens a sealed message, returning the plaintext.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        let mut out = Vec::new();
        let n = self.open_to(sealed, &mut out)?.len();
        out.truncate(n);
        Ok(out)
    }

    /// Opens a sealed message into `out`, a buffer reused from call to call: decrypts from
    /// `sealed` straight into it (the ciphertext is not copied first) and returns the plaintext,
    /// its first bytes. `out` only grows (zero-filled) when the message is longer than any
    /// before; on failure its content is unspecified.
    pub fn open_to<'o>(&self, sealed: &[u8], out: &'o mut Vec<u8>) -> Result<&'o [u8], OpenError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(OpenError);
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        if out.len() < ct.len() {
            out.resize(ct.len(), 0);
        }
        let plain = &mut out[..ct.len()];
        let n = Nonce::try_from(nonce).map_err(|_| OpenError)?;
        let t = aes_gcm::Tag::try_from(tag).map_err(|_| OpenError)?;
        let buf = aes_gcm::aead::inout::InOutBuf::new(ct, plain).map_err(|_| OpenError)?;
        self.cipher
            .decrypt_inout_detached(&n, b"", buf, &t)
            .map_err(|_| OpenError)?;
        Ok(&out[..ct.len()])
    }
}

/// The secrets that open a repository: the AEAD key sealed in every key file, and the keyed-hash
/// secret (from the config) that names blobs. Both are wiped from memory when dropped.
///
/// A full key also holds the repository's X25519 secret (to open what write-only keys sealed)
/// and the lock key. A write-only session holds instead a random content key, the envelope that
/// carries it to the repository's public key, and the lock key (repo-format.md §2a).
#[derive(Clone)]
pub struct Keys {
    seal: SealKey,
    id_key: Zeroizing<[u8; 32]>,
    lock: SealKey,
    secret: Option<StaticSecret>,
    envelope: Option<[u8; ENVELOPE_LEN]>,
}

impl Keys {
    /// Combines an AEAD key and an id key (locks are sealed with the AEAD key too; nothing
    /// sealed to a public key opens): for tests and benchmarks of the layers below.
    pub fn new(seal: SealKey, id_key: [u8; 32]) -> Self {
        Keys {
            lock: seal.clone(),
            seal,
            id_key: Zeroizing::new(id_key),
            secret: None,
            envelope: None,
        }
    }

    /// The keys of a full key: everything derives from the master key.
    pub fn full(master: &[u8; 32], id_key: [u8; 32]) -> Self {
        Keys {
            seal: SealKey::new(master),
            id_key: Zeroizing::new(id_key),
            lock: SealKey::new(&envelope::lock_key(master)),
            secret: Some(envelope::repository_secret(master)),
            envelope: None,
        }
    }

    /// The keys of a new write-only session: a fresh content key sealed to `public`.
    pub fn write_only(id_key: [u8; 32], lock_key: &[u8; 32], public: &[u8; 32]) -> Self {
        let (seal, env) = envelope::new_session(public);
        Keys {
            seal,
            id_key: Zeroizing::new(id_key),
            lock: SealKey::new(lock_key),
            secret: None,
            envelope: Some(env),
        }
    }

    /// The AEAD key blobs are sealed with (a write-only session's content key).
    pub fn seal_key(&self) -> &SealKey {
        &self.seal
    }

    /// Seals an object or a pack header: with a write-only session's envelope in front.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let env = self.envelope.as_ref().map_or(&[][..], |e| &e[..]);
        let mut out = Vec::with_capacity(env.len() + plain.len() + SEAL_OVERHEAD);
        out.extend_from_slice(env);
        self.seal.seal_into(plain, &mut out);
        out
    }

    /// Opens what [`Keys::seal`] sealed, by this key or by a write-only session (a full key
    /// opens those too).
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        let (session, rest) = self.session_for(sealed)?;
        session.as_ref().unwrap_or(self).seal.open(rest)
    }

    /// Reads the envelope in front of `sealed` (an object or a pack's sealed header): the keys
    /// of the write-only session that sealed it and the blobs stored with it (`None`: these
    /// keys), and the sealed bytes after the envelope.
    pub fn session_for<'a>(&self, sealed: &'a [u8]) -> Result<(Option<Keys>, &'a [u8]), OpenError> {
        let Some(env) = envelope::envelope_of(sealed) else {
            return Ok((None, sealed));
        };
        // A message sealed without an envelope starts with a random nonce, so it can start
        // with the envelope's magic: the plain reading is tried first.
        if self.seal.open(sealed).is_ok() {
            return Ok((None, sealed));
        }
        let rest = &sealed[ENVELOPE_LEN..];
        if self.envelope.as_ref() == Some(env) {
            return Ok((None, rest));
        }
        let secret = self.secret.as_ref().ok_or(OpenError)?;
        let seal = envelope::unwrap(secret, env).ok_or(OpenError)?;
        let session = Keys {
            seal,
            envelope: Some(*env),
            ..self.clone()
        };
        Ok((Some(session), rest))
    }

    /// Seals a lock.
    pub fn seal_lock(&self, plain: &[u8]) -> Vec<u8> {
        self.lock.seal(plain)
    }

    /// Opens a lock: sealed with the lock key, or (written by an earlier version) the master
    /// key.
    pub fn open_lock(&self, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        self.lock.open(sealed).or_else(|_| self.seal.open(sealed))
    }

    /// The id of a blob with plaintext `data`: BLAKE3 keyed with the repository secret, so ids
    /// reveal nothing about content to anyone without the key.
    pub fn blob_id(&self, data: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.id_key, data).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let k = SealKey::new(&[7u8; 32]);
        let s = k.seal(b"hello");
        assert_eq!(s.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(k.open(&s).unwrap(), b"hello");
        for i in 0..s.len() {
            let mut t = s.clone();
            t[i] ^= 1;
            assert!(k.open(&t).is_err(), "flip at {i} not detected");
        }
        assert!(SealKey::new(&[8u8; 32]).open(&s).is_err());
        assert!(k.open(&s[..10]).is_err());
    }

    #[test]
    fn nonces_differ() {
        let k = SealKey::new(&[1u8; 32]);
        assert_ne!(k.seal(b"x"), k.seal(b"x"));
    }

    #[test]
    fn blob_ids_are_keyed() {
        let a = Keys::new(SealKey::new(&[0; 32]), [1; 32]);
        let b = Keys::new(SealKey::new(&[0; 32]), [2; 32]);
        assert_eq!(a.blob_id(b"x"), a.blob_id(b"x"));
        assert_ne!(a.blob_id(b"x"), b.blob_id(b"x"));
        assert_ne!(a.blob_id(b"x"), Id::of_stored(b"x"));
    }
}
