//! Key files: the master AEAD key (version 1, a full key) or what a write-only key needs
//! (version 2), sealed with a password-derived key. Stored unencrypted (they are themselves the
//! envelope) as CBOR under `keys/<hash>`.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{KdfParams, SEAL_OVERHEAD, SealKey, derive_key, fill_random};
use crate::repo::config::Config;
use crate::repo::object::{from_cbor, to_cbor};
use crate::{Error, Id, Result};

/// Key file version of a full key.
pub const FULL_KEY: u32 = 1;
/// Key file version of a write-only key.
pub const WRITE_ONLY_KEY: u32 = 2;
/// Largest sealed write-only secrets accepted (they are about 200 bytes).
const MAX_WRITE_ONLY: usize = 4096;

/// What a write-only key holds (repo-format.md §2a): the config (blob-id key and chunker
/// parameters, for deduplication), the repository's public key and the lock key; never the
/// master key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteOnlySecrets {
    /// The repository's config.
    pub config: Config,
    /// The repository's X25519 public key, which sessions seal their content keys to.
    pub public_key: Id,
    /// The key locks are sealed with.
    pub lock_key: Id,
}

/// What a password opens.
pub enum KeySecrets {
    /// A full key: the master key.
    Full(Zeroizing<[u8; 32]>),
    /// A write-only key.
    WriteOnly(Box<WriteOnlySecrets>),
}

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
    /// The 32-byte master key, sealed with the derived key (full keys; empty in write-only
    /// ones).
    #[serde(with = "serde_bytes", default, skip_serializing_if = "Vec::is_empty")]
    pub sealed_master: Vec<u8>,
    /// The CBOR of [`WriteOnlySecrets`], sealed with the derived key (write-only keys only).
    #[serde(with = "serde_bytes", default, skip_serializing_if = "Option::is_none")]
    pub sealed_write_only: Option<Vec<u8>>,
}

impl KeyFile {
    /// Seals `master` under `password`; parameters beyond what readers accept are refused.
    pub fn create(master: &[u8; 32], password: &[u8], kdf: KdfParams) -> Result<Self> {
        Self::sealing(password, kdf, |k| (FULL_KEY, k.seal(master), None))
    }

    /// Seals `secrets` under `password` as a write-only key.
    pub fn create_write_only(
        secrets: &WriteOnlySecrets,
        password: &[u8],
        kdf: KdfParams,
    ) -> Result<Self> {
        let plain = Zeroizing::new(to_cbor(secrets));
        Self::sealing(password, kdf, |k| {
            (WRITE_ONLY_KEY, Vec::new(), Some(k.seal(&plain)))
        })
    }

    fn sealing(
        password: &[u8],
        kdf: KdfParams,
        seal: impl FnOnce(&SealKey) -> (u32, Vec<u8>, Option<Vec<u8>>),
    ) -> Result<Self> {
        kdf.check().map_err(Error::InvalidInput)?;
        let mut salt = vec![0u8; 32];
        fill_random(&mut salt);
        let k = derive_key(password, &salt, &kdf)?;
        let (version, sealed_master, sealed_write_only) = seal(&SealKey::new(&k));
        Ok(KeyFile {
            version,
            created: jiff::Timestamp::now().to_string(),
            host: crate::sys::hostname(),
            user: crate::sys::username(),
            kdf,
            salt,
            sealed_master,
            sealed_write_only,
        })
    }

    /// Whether this is a write-only key.
    pub fn is_write_only(&self) -> bool {
        self.version == WRITE_ONLY_KEY
    }

    /// Recovers what the key holds (wiped from memory when dropped), or
    /// [`Error::WrongPassword`].
    pub fn open(&self, password: &[u8]) -> Result<KeySecrets> {
        let k = SealKey::new(&*derive_key(password, &self.salt, &self.kdf)?);
        if let Some(sealed) = &self.sealed_write_only {
            let plain = Zeroizing::new(k.open(sealed).map_err(|_| Error::WrongPassword)?);
            let s: WriteOnlySecrets = from_cbor(&plain, "write-only key")?;
            return Ok(KeySecrets::WriteOnly(Box::new(s)));
        }
        let m = Zeroizing::new(
            k.open(&self.sealed_master)
                .map_err(|_| Error::WrongPassword)?,
        );
        <[u8; 32]>::try_from(m.as_slice())
            .map(|m| KeySecrets::Full(Zeroizing::new(m)))
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
        let sealed_ok = match (k.version, &k.sealed_write_only) {
            (FULL_KEY, None) => k.sealed_master.len() == 32 + SEAL_OVERHEAD,
            (WRITE_ONLY_KEY, Some(w)) => {
                k.sealed_master.is_empty() && (SEAL_OVERHEAD..=MAX_WRITE_ONLY).contains(&w.len())
            }
            (FULL_KEY | WRITE_ONLY_KEY, _) => false,
            _ => return Err(Error::corrupt("key file", "unsupported version")),
        };
        if !(8..=1024).contains(&k.salt.len()) || !sealed_ok {
            return Err(Error::corrupt("key file", "bad salt or sealed key length"));
        }
        k.kdf.check().map_err(|e| Error::corrupt("key file", e))?;
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> KdfParams {
        KdfParams {
            mem_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[test]
    fn a_write_only_key_file_round_trips_and_holds_no_master_key() {
        let secrets = WriteOnlySecrets {
            config: Config::new(),
            public_key: Id([1; 32]),
            lock_key: Id([2; 32]),
        };
        let kf = KeyFile::create_write_only(&secrets, b"pw", cheap()).unwrap();
        let back = KeyFile::decode(&kf.encode()).unwrap();
        assert!(back.is_write_only() && back.sealed_master.is_empty());
        match back.open(b"pw").unwrap() {
            KeySecrets::WriteOnly(w) => {
                assert_eq!((w.public_key, w.lock_key), (Id([1; 32]), Id([2; 32])));
                assert_eq!(w.config.id_key, secrets.config.id_key);
            }
            KeySecrets::Full(_) => panic!("opened as a full key"),
        }
        assert!(matches!(back.open(b"other"), Err(Error::WrongPassword)));
        // A version that does not match what the file holds is refused before any Argon2 run.
        let mut mixed = back.clone();
        mixed.version = FULL_KEY;
        assert!(KeyFile::decode(&mixed.encode()).is_err());
        let mut full = KeyFile::create(&[3; 32], b"pw", cheap()).unwrap();
        assert!(!full.is_write_only());
        assert!(matches!(full.open(b"pw").unwrap(), KeySecrets::Full(m) if *m == [3; 32]));
        full.version = WRITE_ONLY_KEY;
        assert!(KeyFile::decode(&full.encode()).is_err());
    }
}
