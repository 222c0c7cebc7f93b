//! Sealing to the repository's public key, for write-only keys (repo-format.md §2a).
//!
//! A write-only session seals everything with a random content key and puts an envelope in
//! front of each object and pack header: `"HBWO" || ephemeral X25519 public key (32) ||
//! seal_W(content key) (60)`, where `W = BLAKE3-derive_key(WRAP_CONTEXT, X25519(e, P) || e·G ||
//! P)`. Only the holder of the repository's X25519 secret (every full key: it is derived from
//! the master key) can compute `W` and so open the session's objects and blobs.

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::{SEAL_OVERHEAD, SealKey, fill_random};

/// Bytes of an envelope: magic, ephemeral public key, sealed content key.
pub const ENVELOPE_LEN: usize = 4 + 32 + 32 + SEAL_OVERHEAD;
const MAGIC: &[u8; 4] = b"HBWO";
const SECRET_CONTEXT: &str = "hydrabackup 2026-12-07 repository X25519 secret";
const LOCK_CONTEXT: &str = "hydrabackup 2026-12-07 lock key";
const WRAP_CONTEXT: &str = "hydrabackup 2026-12-07 write-only session key wrap";

/// The repository's X25519 secret, derived from the master key (so every full key has it).
pub fn repository_secret(master: &[u8; 32]) -> StaticSecret {
    StaticSecret::from(blake3::derive_key(SECRET_CONTEXT, master))
}

/// The repository's public key: what a write-only key seals to.
pub fn repository_public(master: &[u8; 32]) -> [u8; 32] {
    PublicKey::from(&repository_secret(master)).to_bytes()
}

/// The key that seals locks, derived from the master key and given to write-only keys too
/// (locks say who works on the repository, which a backup host needs to read).
pub fn lock_key(master: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(blake3::derive_key(LOCK_CONTEXT, master))
}

fn wrap_key(shared: &[u8; 32], ephemeral: &[u8; 32], public: &[u8; 32]) -> SealKey {
    let mut input = Zeroizing::new([0u8; 96]);
    input[..32].copy_from_slice(shared);
    input[32..64].copy_from_slice(ephemeral);
    input[64..].copy_from_slice(public);
    SealKey::new(&Zeroizing::new(blake3::derive_key(
        WRAP_CONTEXT,
        input.as_slice(),
    )))
}

/// A new session sealed to `public`: its random content key and the envelope that carries it.
pub fn new_session(public: &[u8; 32]) -> (SealKey, [u8; ENVELOPE_LEN]) {
    let mut content = Zeroizing::new([0u8; 32]);
    fill_random(content.as_mut());
    let mut e = Zeroizing::new([0u8; 32]);
    fill_random(e.as_mut());
    let ephemeral = StaticSecret::from(*e);
    let epk = PublicKey::from(&ephemeral).to_bytes();
    let shared = ephemeral.diffie_hellman(&PublicKey::from(*public));
    let mut env = [0u8; ENVELOPE_LEN];
    env[..4].copy_from_slice(MAGIC);
    env[4..36].copy_from_slice(&epk);
    let wrapped = wrap_key(shared.as_bytes(), &epk, public).seal(content.as_slice());
    env[36..].copy_from_slice(&wrapped);
    (SealKey::new(&content), env)
}

/// The envelope at the start of `bytes`, if they start with one.
pub fn envelope_of(bytes: &[u8]) -> Option<&[u8; ENVELOPE_LEN]> {
    bytes
        .get(..ENVELOPE_LEN)
        .filter(|b| b.starts_with(MAGIC))
        .map(|b| b.try_into().expect("envelope length"))
}

/// Opens an envelope with the repository's secret: the session's content key, or `None` when
/// the envelope was not sealed to this repository (or is damaged).
pub fn unwrap(secret: &StaticSecret, env: &[u8; ENVELOPE_LEN]) -> Option<SealKey> {
    let epk: [u8; 32] = env[4..36].try_into().expect("32 bytes");
    let shared = secret.diffie_hellman(&PublicKey::from(epk));
    if !shared.was_contributory() {
        return None;
    }
    let public = PublicKey::from(secret).to_bytes();
    let content = Zeroizing::new(
        wrap_key(shared.as_bytes(), &epk, &public)
            .open(&env[36..])
            .ok()?,
    );
    let key: &[u8; 32] = content.as_slice().try_into().ok()?;
    Some(SealKey::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_repository_secret_unwraps_a_session() {
        let master = [5u8; 32];
        let (content, env) = new_session(&repository_public(&master));
        let sealed = content.seal(b"snapshot");
        let k = unwrap(&repository_secret(&master), &env).expect("unwraps");
        assert_eq!(k.open(&sealed).unwrap(), b"snapshot");
        assert!(unwrap(&repository_secret(&[6u8; 32]), &env).is_none());
        for i in 4..ENVELOPE_LEN {
            let mut bad = env;
            bad[i] ^= 1;
            assert!(
                unwrap(&repository_secret(&master), &bad).is_none(),
                "flip at {i} not detected"
            );
        }
        assert!(envelope_of(&env).is_some());
        assert!(envelope_of(&sealed).is_none());
    }

    #[test]
    fn sessions_differ() {
        let p = repository_public(&[1u8; 32]);
        assert_ne!(new_session(&p).1, new_session(&p).1);
    }
}
