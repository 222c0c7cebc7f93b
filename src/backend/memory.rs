//! A backend in memory: a repository that lives as long as the value, for tests and for
//! library callers that want a scratch repository. It keeps the same rules as the others
//! (checked names, write-once objects, exact ranges).

use std::collections::BTreeMap;
use std::io::{self, ErrorKind};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Backend, FileKind};
use crate::{Error, Result};

/// Objects held in memory, keyed by kind and name.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    objects: Mutex<Objects>,
}

type Objects = BTreeMap<(FileKind, String), Arc<Vec<u8>>>;

/// The map key of an object, once its name is checked as every backend checks it.
fn key(kind: FileKind, name: &str) -> Result<(FileKind, String)> {
    super::check_name(name)?;
    // As on disk, the config has one place whatever it is called.
    let name = if kind == FileKind::Config {
        "config"
    } else {
        name
    };
    Ok((kind, name.to_string()))
}

fn missing(op: &'static str, kind: FileKind, name: &str) -> Error {
    Error::backend(
        op,
        format!("memory:{} {name}", kind.label()),
        io::Error::new(ErrorKind::NotFound, "no such object"),
    )
}

impl MemoryBackend {
    /// An empty backend (no repository yet).
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    fn objects(&self) -> MutexGuard<'_, Objects> {
        // Every change is one insert or remove, so a panic elsewhere cannot leave the map torn.
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, op: &'static str, kind: FileKind, name: &str) -> Result<Arc<Vec<u8>>> {
        let k = key(kind, name)?;
        self.objects()
            .get(&k)
            .cloned()
            .ok_or_else(|| missing(op, kind, name))
    }
}

impl Backend for MemoryBackend {
    fn is_local(&self) -> bool {
        true
    }

    fn location(&self) -> String {
        "memory:".into()
    }

    fn exists(&self) -> Result<bool> {
        Ok(self
            .objects()
            .contains_key(&key(FileKind::Config, "config")?))
    }

    fn create(&self) -> Result<()> {
        Ok(())
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        Ok(self
            .objects()
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, name), data)| (name.clone(), data.len() as u64))
            .collect())
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        Ok(self.get("read", kind, name)?.to_vec())
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let data = self.get("read", kind, name)?;
        let size = data.len() as u64;
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(data[offset as usize..end as usize].to_vec()),
            _ => Err(Error::backend(
                "read",
                format!("memory:{} {name}", kind.label()),
                io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("range {offset}+{len} beyond object size {size}"),
                ),
            )),
        }
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        self.objects()
            .entry(key(kind, name)?)
            .or_insert_with(|| Arc::new(data.to_vec()));
        Ok(())
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<()> {
        let k = key(kind, name)?;
        match self.objects().remove(&k) {
            Some(_) => Ok(()),
            None => Err(missing("remove", kind, name)),
        }
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        Ok(self.get("stat", kind, name)?.len() as u64)
    }
}
