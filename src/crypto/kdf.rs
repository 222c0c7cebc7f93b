//! Argon2id key derivation for key files.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

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

/// Most memory a key file may ask for (1 GiB): `init` and `key add` never write more, so a
/// forged key file cannot make opening the repository cost more than a real one could.
pub const MAX_MEM_KIB: u32 = 1024 * 1024;
/// Most passes a key file may ask for (and `init` / `key add` write).
pub const MAX_ITERATIONS: u32 = 16;
/// Most lanes a key file may ask for (and `init` / `key add` write).
pub const MAX_PARALLELISM: u32 = 16;

impl KdfParams {
    /// Checks the parameters against the bounds `init` and `key add` respect (and Argon2's own
    /// minimums); says what is wrong otherwise.
    pub fn check(&self) -> std::result::Result<(), String> {
        let ok = (1..=MAX_PARALLELISM).contains(&self.parallelism)
            && (1..=MAX_ITERATIONS).contains(&self.iterations)
            && (8 * self.parallelism..=MAX_MEM_KIB).contains(&self.mem_kib);
        if ok {
            Ok(())
        } else {
            Err(format!(
                "Argon2id parameters {} KiB, {} passes, {} lanes are out of range \
                 (at most {MAX_MEM_KIB} KiB, {MAX_ITERATIONS} passes, {MAX_PARALLELISM} lanes)",
                self.mem_kib, self.iterations, self.parallelism
            ))
        }
    }

    /// The relative cost of deriving a key (memory × passes), to try cheap key files first.
    pub fn cost(&self) -> u64 {
        u64::from(self.mem_kib) * u64::from(self.iterations)
    }
}

/// Derives a 32-byte key from `password` and `salt`; the key is wiped from memory when dropped.
pub fn derive_key(password: &[u8], salt: &[u8], p: &KdfParams) -> Result<Zeroizing<[u8; 32]>> {
    p.check().map_err(|e| Error::corrupt("key file", e))?;
    let params = argon2::Params::new(p.mem_kib, p.iterations, p.parallelism, Some(32))
        .map_err(|e| Error::corrupt("key file", format!("KDF parameters: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    a.hash_password_into(password, salt, out.as_mut())
        .map_err(|e| Error::corrupt("key file", format!("KDF: {e}")))?;
    Ok(out)
}
