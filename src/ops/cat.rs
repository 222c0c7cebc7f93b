//! `cat`: one repository object, decrypted, for debugging: `config`, `index ID`,
//! `snapshot ID`, `key ID`, `tree ID` and `pack ID` as JSON, `blob ID` as its raw bytes.

use serde_json::{Value, json};

use crate::backend::FileKind;
use crate::ops::progress::Progress;
use crate::repo::Repository;
use crate::repo::blob::BlobType;
use crate::repo::index::IndexFile;
use crate::repo::keyfile::KeyFile;
use crate::{Error, Id, Result};

/// What `cat` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ObjectKind {
    /// The repository config (secrets included: it is what the password protects).
    Config,
    /// An index file.
    Index,
    /// A snapshot.
    Snapshot,
    /// A key file (its sealed master key stays sealed).
    Key,
    /// A data blob's plaintext (raw bytes, not JSON).
    Blob,
    /// A tree blob.
    Tree,
    /// A pack's header: the blobs it holds.
    Pack,
}

/// Options of `cat`.
#[derive(Debug, Clone, clap::Args)]
pub struct CatOptions {
    /// What to print.
    #[arg(value_enum)]
    pub kind: ObjectKind,
    /// The object's id or a unique prefix (`latest` for a snapshot); not for `config`.
    pub id: Option<String>,
}

/// What `cat` found: a JSON document, or raw bytes (a data blob).
#[derive(Debug, Clone)]
pub enum CatOutcome {
    /// A decoded object.
    Json(Value),
    /// A data blob's plaintext.
    Bytes(Vec<u8>),
}

/// The one stored object of `kind` whose name starts with `prefix`.
fn resolve(repo: &Repository, kind: FileKind, prefix: &str) -> Result<String> {
    let p = prefix.to_ascii_lowercase();
    let names: Vec<String> = repo
        .backend()
        .list(kind)?
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with(&p))
        .collect();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::NotFound(format!("{} {prefix}", kind.label()))),
        _ => Err(Error::InvalidInput(format!(
            "{} prefix {prefix} is ambiguous ({} matches)",
            kind.label(),
            names.len()
        ))),
    }
}

/// A full blob id from the loaded index, by unique prefix.
fn blob_id(index: &crate::repo::index::Index, kind: BlobType, prefix: &str) -> Result<Id> {
    if let Some(id) = Id::from_hex(prefix) {
        return Ok(id);
    }
    let p = prefix.to_ascii_lowercase();
    let mut found: Vec<Id> = index
        .iter()
        .filter(|l| l.entry.kind == kind && l.entry.id.to_hex().starts_with(&p))
        .map(|l| l.entry.id)
        .collect();
    found.dedup();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::NotFound(format!("blob {prefix}"))),
        _ => Err(Error::InvalidInput(format!(
            "blob prefix {prefix} is ambiguous ({} matches)",
            found.len()
        ))),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| Error::Internal(format!("encoding JSON: {e}")))
}

/// Reads and decodes the object `opts` names.
pub fn run(repo: &Repository, opts: &CatOptions, _progress: &Progress) -> Result<CatOutcome> {
    let id = || {
        opts.id
            .as_deref()
            .ok_or_else(|| Error::InvalidInput(format!("cat {:?} needs an id", opts.kind)))
    };
    Ok(CatOutcome::Json(match opts.kind {
        ObjectKind::Config => to_json(repo.config())?,
        ObjectKind::Snapshot => {
            let (id, s) = repo.find_snapshot(id()?)?;
            let mut v = to_json(&s)?;
            v["id"] = json!(id);
            v
        }
        ObjectKind::Index => {
            let name = resolve(repo, FileKind::Index, id()?)?;
            to_json(&repo.load_object::<IndexFile>(FileKind::Index, &name)?)?
        }
        ObjectKind::Key => {
            let name = resolve(repo, FileKind::Key, id()?)?;
            let (_, k) = repo
                .list_keys()?
                .into_iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| Error::NotFound(format!("key {name}")))?;
            to_json::<KeyFile>(&k)?
        }
        ObjectKind::Blob | ObjectKind::Tree => {
            let index = repo.load_index()?;
            let kind = match opts.kind {
                ObjectKind::Tree => BlobType::Tree,
                _ => BlobType::Data,
            };
            let bid = blob_id(&index, kind, id()?)?;
            if kind == BlobType::Data {
                return Ok(CatOutcome::Bytes(repo.read_blob(&index, kind, &bid)?));
            }
            to_json(&repo.load_tree(&index, &bid)?)?
        }
        ObjectKind::Pack => {
            let name = resolve(repo, FileKind::Pack, id()?)?;
            let bytes = repo.backend().read(FileKind::Pack, &name)?;
            let entries = crate::repo::pack::read_header(repo.keys(), &bytes)?;
            json!({
                "id": name,
                "size": bytes.len(),
                "blobs": entries.iter().map(|e| json!({
                    "type": format!("{:?}", e.kind).to_lowercase(),
                    "id": e.id,
                    "offset": e.offset,
                    "length": e.len,
                    "raw_length": e.raw_len,
                    "compressed": e.compressed,
                })).collect::<Vec<_>>(),
            })
        }
    }))
}
