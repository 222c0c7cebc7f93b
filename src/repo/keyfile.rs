//! Key files: the master AEAD key sealed with a password-derived key. Stored unencrypted (they
//! are themselves the envelope) as CBOR under `keys/<hash>`.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{KdfParams, SEAL_OVERHEAD, SealKey, derive_key, fill_random};
use crate::repo::object::{from_cbor, to_cbor};
use crate::{Error, Result};

/// A key file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    /// Key file format version (1).
    pub version: u32,
    /// When the key was added, RFC 3339.
    pub created: String,
    /// Host that added it.
    pub host: String,
    /// User that added it.
    pub user: String,
    /// Argon2id parameters.
    pub kdf: KdfParams,
    /// Argon2id salt.
    #[serde(with = "serde_bytes")]
    pub salt: Vec<u8>,
    /// The 32-byte master key, sealed with the derived key.
    #[serde(with = "serde_bytes")]
    pub sealed_master: Vec<u8>,
}

impl KeyFile {
    /// Seals `master` under `password`; parameters beyond what readers accept are refused.
    pub fn create(master: &[u8; 32], password: &[u8], kdf: KdfParams) -> Result<Self> {
        kdf.check().map_err(Error::InvalidInput)?;
        let mut salt = vec![0u8; 32];
        fill_random(&mut salt);
        let k = derive_key(password, &salt, &kdf)?;
        Ok(KeyFile {
            version: 1,
            created: jiff::Timestamp::now().to_string(),
            host: crate::sys::hostname(),
            user: crate::sys::username(),
            kdf,
            salt,
            sealed_master: SealKey::new(&k).seal(master),
        })
    }

    /// Recovers the master key (wiped from memory when dropped), or [`Error::WrongPassword`].
    pub fn open(&self, password: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
        let k = derive_key(password, &self.salt, &self.kdf)?;
        let m = Zeroizing::new(
            SealKey::new(&k)
                .open(&self.sealed_master)
                .map_err(|_| Error::WrongPassword)?,
        );
        <[u8; 32]>::try_from(m.as_slice())
            .map(Zeroizing::new)
            .map_err(|_| Error::corrupt("key file", "bad length"))
    }

    /// Encodes as stored.
    pub fn encode(&self) -> Vec<u8> {
        to_cbor(self)
    }

    /// Decodes stored bytes, checking everything that is cheap to check (version, salt and
    /// sealed key lengths, Argon2 parameters) so a forged key file is refused before any
    /// expensive key derivation.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let k: KeyFile = from_cbor(bytes, "key file")?;
        if k.version != 1 {
            return Err(Error::corrupt("key file", "unsupported version"));
        }
        if !(8..=1024).contains(&k.salt.len()) || k.sealed_master.len() != 32 + SEAL_OVERHEAD {
            return Err(Error::corrupt("key file", "bad salt or sealed key length"));
        }
        k.kdf.check().map_err(|e| Error::corrupt("key file", e))?;
        Ok(k)
    }
}
