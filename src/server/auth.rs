//! Users of the REST server: an htpasswd-style file of `user:$argon2id$...` lines (PHC strings),
//! checked against HTTP Basic credentials. A successful check is remembered (by a keyed hash
//! of the password, never the password) so that only a user's first request pays for Argon2.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;

use crate::{Error, Result};

/// The users file, loaded once.
pub struct Users {
    hashes: HashMap<String, String>,
    /// Keyed hashes of (user, password) pairs that passed, with the key below.
    passed: Mutex<HashSet<[u8; 32]>>,
    cache_key: [u8; 32],
}

impl Users {
    /// Loads `path` (`user:hash` lines; `#` comments and blank lines ignored).
    pub fn load(path: &Path) -> Result<Users> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut hashes = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line.split_once(':').ok_or_else(|| {
                Error::InvalidInput(format!("{}:{}: expected user:hash", path.display(), i + 1))
            })?;
            if !hash.starts_with("$argon2") {
                return Err(Error::InvalidInput(format!(
                    "{}:{}: not an Argon2 hash (create users with `hydrabackup serve-user`)",
                    path.display(),
                    i + 1
                )));
            }
            hashes.insert(user.to_string(), hash.to_string());
        }
        let mut cache_key = [0u8; 32];
        crate::crypto::fill_random(&mut cache_key);
        Ok(Users {
            hashes,
            passed: Mutex::new(HashSet::new()),
            cache_key,
        })
    }

    /// The user an `Authorization: Basic ...` header proves, if it does.
    pub fn check(&self, authorization: Option<&str>) -> Option<String> {
        let b64 = authorization?.trim().strip_prefix("Basic ")?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let (user, password) = raw.split_once(':')?;
        let hash = self.hashes.get(user)?;
        let mut h = blake3::Hasher::new_keyed(&self.cache_key);
        h.update(&(user.len() as u64).to_le_bytes());
        h.update(user.as_bytes());
        h.update(password.as_bytes());
        let token = *h.finalize().as_bytes();
        if self.passed.lock().expect("auth cache").contains(&token) {
            return Some(user.to_string());
        }
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), hash.as_str())
            .ok()?;
        self.passed.lock().expect("auth cache").insert(token);
        Some(user.to_string())
    }
}

/// A PHC string for `password` (Argon2id, default parameters, random salt).
pub fn hash_password(password: &[u8]) -> Result<String> {
    argon2::Argon2::default()
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| Error::InvalidInput(format!("cannot hash the password: {e}")))
}

/// Adds `user` to the users file (or replaces their password), creating the file if needed.
pub fn set_user(path: &PathBuf, user: &str, password: &[u8]) -> Result<()> {
    if user.is_empty() || user.contains([':', '\n', '/']) || user.trim() != user {
        return Err(Error::InvalidInput(format!(
            "user name {user:?} is not allowed (no ':', '/', newlines or surrounding spaces)"
        )));
    }
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut out: Vec<String> = old
        .lines()
        .filter(|l| l.split_once(':').is_none_or(|(u, _)| u != user))
        .map(String::from)
        .collect();
    out.push(format!("{user}:{}", hash_password(password)?));
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, out.join("\n") + "\n").map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pw: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
        )
    }

    #[test]
    fn users_are_checked_against_their_hash() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("users");
        set_user(&f, "alice", b"secret one").unwrap();
        set_user(&f, "bob", b"two").unwrap();
        set_user(&f, "alice", b"secret two").unwrap();
        let u = Users::load(&f).unwrap();
        assert_eq!(
            u.check(Some(&basic("alice", "secret two"))),
            Some("alice".into())
        );
        // Twice: the second answer comes from the cache and must agree.
        assert_eq!(
            u.check(Some(&basic("alice", "secret two"))),
            Some("alice".into())
        );
        assert_eq!(u.check(Some(&basic("alice", "secret one"))), None);
        assert_eq!(u.check(Some(&basic("bob", "two"))), Some("bob".into()));
        assert_eq!(u.check(Some(&basic("carol", "two"))), None);
        assert_eq!(u.check(Some("Basic !!!")), None);
        assert_eq!(u.check(Some("Bearer x")), None);
        assert_eq!(u.check(None), None);
        assert!(set_user(&f, "a:b", b"x").is_err());
        std::fs::write(&f, "eve:plaintext\n").unwrap();
        assert!(Users::load(&f).is_err());
    }
}
