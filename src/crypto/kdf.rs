//! Argon2id key derivation for key files.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Argon2id parameters, stored in every key file so each key can use its own cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub mem_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 19 MiB, 4 passes, 1 lane: stronger than OWASP's Argon2id baseline (19 MiB, 2 passes)
    /// while keeping the memory every command needs to open the repository low — it would
    /// otherwise set the peak memory of every small command.
    fn default() -> Self {
        KdfParams {
            mem_kib: 19 * 1024,
            iterations: 4,
            parallelism: 1,
        }
    }
}

/// Upper bounds accepted from a key file, so a forged key file cannot make us allocate
/// unbounded memory or spin forever.
const MAX_MEM_KIB: u32 = 4 * 1024 * 1024;
const MAX_ITERATIONS: u32 = 100;
const MAX_PARALLELISM: u32 = 64;

/// Derives a 32-byte key from `password` and `salt`.
pub fn derive_key(password: &[u8], salt: &[u8], p: &KdfParams) -> Result<[u8; 32]> {
    if p.mem_kib > MAX_MEM_KIB || p.iterations > MAX_ITERATIONS || p.parallelism > MAX_PARALLELISM {
        return Err(Error::corrupt("key file", "KDF parameters out of range"));
    }
    let params = argon2::Params::new(p.mem_kib, p.iterations, p.parallelism, Some(32))
        .map_err(|e| Error::corrupt("key file", format!("KDF parameters: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    a.hash_password_into(password, salt, &mut out)
        .map_err(|e| Error::corrupt("key file", format!("KDF: {e}")))?;
    Ok(out)
}
