//! Users of the REST server: an htpasswd-style file of `user:$argon2id$...` lines (PHC strings),
//! checked against HTTP Basic credentials. A successful check is remembered (by a keyed hash
//! of the password, never the password) so that only a user's first request pays for Argon2.
//! An unknown user costs the same Argon2 work as a known one (a dummy hash with the same
//! parameters), failures are logged (user and address, never the password) and repeated
//! failures are slowed ([`super::throttle`]).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;

use super::throttle::Throttle;
use crate::{Error, Result};

/// The users file, loaded once.
pub struct Users {
    hashes: HashMap<String, String>,
    /// Checked for unknown users, so that they cost what known ones do.
    dummy: String,
    /// Keyed hashes of (user, password) pairs that passed, with the key below.
    passed: Mutex<HashSet<[u8; 32]>>,
    cache_key: [u8; 32],
    throttle: Throttle,
}

/// The outcome of a login.
#[derive(Debug, PartialEq, Eq)]
pub enum Login {
    /// These credentials prove this user.
    Passed(String),
    /// No (valid) credentials.
    Failed,
    /// Too many failures from this address: not checked; retry after this long.
    Slowed(Duration),
}

impl Users {
    /// Loads `path` (`user:hash` lines; `#` comments and blank lines ignored).
    pub fn load(path: &Path) -> Result<Users> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        if let Ok(m) = std::fs::metadata(path)
            && m.permissions().mode() & 0o004 != 0
        {
            tracing::warn!(
                "{}: readable by every local user (chmod 600)",
                path.display()
            );
        }
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
        let dummy = dummy_hash(hashes.values().next().map(String::as_str))?;
        Ok(Users {
            hashes,
            dummy,
            passed: Mutex::new(HashSet::new()),
            cache_key,
            throttle: Throttle::default(),
        })
    }

    /// Checks an `Authorization: Basic ...` header sent from `peer`.
    pub fn check(&self, authorization: Option<&str>, peer: IpAddr) -> Login {
        let Some((user, password)) = authorization.and_then(decode_basic) else {
            return Login::Failed;
        };
        let mut h = blake3::Hasher::new_keyed(&self.cache_key);
        h.update(&(user.len() as u64).to_le_bytes());
        h.update(user.as_bytes());
        h.update(password.as_bytes());
        let token = *h.finalize().as_bytes();
        if self.passed.lock().expect("auth cache").contains(&token) {
            return Login::Passed(user);
        }
        if let Some(wait) = self.throttle.wait(peer, &user) {
            return Login::Slowed(wait);
        }
        let (hash, known) = match self.hashes.get(&user) {
            Some(h) => (h.as_str(), true),
            None => (self.dummy.as_str(), false),
        };
        let verified = argon2::Argon2::default()
            .verify_password(password.as_bytes(), hash)
            .is_ok();
        if verified && known {
            self.throttle.passed(peer, &user);
            self.passed.lock().expect("auth cache").insert(token);
            return Login::Passed(user);
        }
        self.throttle.failed(peer, &user);
        let shown: String = user.chars().take(64).collect();
        tracing::warn!("login failed for user {shown:?} from {peer}");
        Login::Failed
    }
}

/// User and password of an `Authorization: Basic ...` header.
fn decode_basic(authorization: &str) -> Option<(String, String)> {
    let b64 = authorization.trim().strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (user, password) = raw.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// A hash of a random password with the parameters of `like` (default ones without it).
fn dummy_hash(like: Option<&str>) -> Result<String> {
    let mut pw = [0u8; 32];
    crate::crypto::fill_random(&mut pw);
    let params = like
        .and_then(|h| argon2::PasswordHash::new(h).ok())
        .and_then(|h| argon2::Params::try_from(&h).ok())
        .unwrap_or_default();
    argon2::Argon2::from(params)
        .hash_password(&pw)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("cannot hash a password: {e}")))
}

/// A PHC string for `password` (Argon2id, default parameters, random salt).
pub fn hash_password(password: &[u8]) -> Result<String> {
    argon2::Argon2::default()
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("cannot hash the password: {e}")))
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
    // Readable by the owner only; an existing file keeps its group's access at most.
    let mode = match std::fs::metadata(path) {
        Ok(m) => m.permissions().mode() & 0o660,
        Err(_) => 0o600,
    };
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, e))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| f.write_all((out.join("\n") + "\n").as_bytes()))
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
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
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let passed = |n: &str| Login::Passed(n.to_string());
        assert_eq!(
            u.check(Some(&basic("alice", "secret two")), ip),
            passed("alice")
        );
        // Twice: the second answer comes from the cache and must agree.
        assert_eq!(
            u.check(Some(&basic("alice", "secret two")), ip),
            passed("alice")
        );
        assert_eq!(
            u.check(Some(&basic("alice", "secret one")), ip),
            Login::Failed
        );
        assert_eq!(u.check(Some(&basic("bob", "two")), ip), passed("bob"));
        assert_eq!(u.check(Some(&basic("carol", "two")), ip), Login::Failed);
        assert_eq!(u.check(Some("Basic !!!"), ip), Login::Failed);
        assert_eq!(u.check(Some("Bearer x"), ip), Login::Failed);
        assert_eq!(u.check(None, ip), Login::Failed);
        assert!(set_user(&f, "a:b", b"x").is_err());
        std::fs::write(&f, "eve:plaintext\n").unwrap();
        assert!(Users::load(&f).is_err());
    }

    #[test]
    fn the_dummy_hash_has_the_users_parameters() {
        let params = argon2::Params::new(8 * 1024, 3, 1, None).unwrap();
        let real = argon2::Argon2::from(params)
            .hash_password(b"pw")
            .unwrap()
            .to_string();
        let dummy = dummy_hash(Some(&real)).unwrap();
        let p = |h: &str| argon2::Params::try_from(&argon2::PasswordHash::new(h).unwrap()).unwrap();
        assert_eq!(p(&dummy), p(&real));
        assert_ne!(dummy, real);
    }
}
