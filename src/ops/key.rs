//! `key`: list, add, remove and change the passwords (key files) that open a repository.
//! Passwords are arguments, never options: where they come from is the caller's business.

use serde::Serialize;

use crate::crypto::KdfParams;
use crate::repo::Repository;
use crate::repo::lock::LockKind;
use crate::{Error, Result};

/// One key file.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    /// Its id (file name).
    pub id: String,
    /// Whether it opened the repository now.
    pub current: bool,
    /// User who created it.
    pub user: String,
    /// Host it was created on.
    pub host: String,
    /// When it was created.
    pub created: String,
}

/// The keys (the `--json` document of `key list` is this list).
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct KeyList(pub Vec<KeyInfo>);

/// Keys added and removed (the `--json` document of `key add`, `remove` and `passwd`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct KeyChange {
    /// The key added.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added: Option<String>,
    /// The key removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<String>,
}

/// Lists the keys.
pub fn list(repo: &Repository) -> Result<KeyList> {
    Ok(KeyList(
        repo.list_keys()?
            .into_iter()
            .map(|(id, kf)| KeyInfo {
                current: id == repo.key_name(),
                id,
                user: kf.user,
                host: kf.host,
                created: kf.created,
            })
            .collect(),
    ))
}

/// Adds a key for `password`.
pub fn add(repo: &Repository, password: &[u8], kdf: KdfParams) -> Result<KeyChange> {
    Ok(KeyChange {
        added: Some(repo.add_key(password, kdf)?),
        removed: None,
    })
}

/// The key whose id starts with `prefix`, if it may be removed (not the key in use).
pub fn resolve(repo: &Repository, prefix: &str) -> Result<String> {
    let names = repo.key_names()?;
    let m: Vec<_> = names.iter().filter(|n| n.starts_with(prefix)).collect();
    let name = match m.as_slice() {
        [one] => (*one).clone(),
        [] => return Err(Error::NotFound(format!("key {prefix}"))),
        _ => {
            return Err(Error::InvalidInput(format!(
                "key prefix {prefix} is ambiguous"
            )));
        }
    };
    if name == repo.key_name() {
        return Err(Error::InvalidInput("refusing to remove the key in use; open the repository with another password to remove it".into()));
    }
    Ok(name)
}

/// Removes the key whose id starts with `prefix`; never the key in use, never the last one.
/// Takes a deleting lock (backups run beside it; two key removals cannot race past the
/// last-key guard).
pub fn remove(repo: &Repository, prefix: &str) -> Result<KeyChange> {
    let _lock = repo.lock_kind(LockKind::Deleting, "key remove")?;
    let name = resolve(repo, prefix)?;
    repo.remove_key(&name)?;
    Ok(KeyChange {
        added: None,
        removed: Some(name),
    })
}

/// Replaces the key in use by one for `password`.
pub fn passwd(repo: &Repository, password: &[u8], kdf: KdfParams) -> Result<KeyChange> {
    let _lock = repo.lock_kind(LockKind::Deleting, "key passwd")?;
    let name = repo.add_key(password, kdf)?;
    repo.remove_key(repo.key_name())?;
    Ok(KeyChange {
        added: Some(name),
        removed: Some(repo.key_name().to_string()),
    })
}
