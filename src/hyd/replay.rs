//! Loading a `.hyd` file as HydrAIDE does: decompress every block, decode its
//! entries, apply them in order (INSERT/UPDATE set a key, DELETE removes it,
//! last one wins). Used to prove that a file or a copy of it is loadable.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use xxhash_rust::xxh64::Xxh64;

use super::block::{self, Entry, Op};
use super::header::FileHeader;
use super::scan::{self, ScanProblem};
use super::{HydError, SWAMP_META_KEY};

/// Live keys of a swamp and their latest data.
pub type LiveSet = BTreeMap<Vec<u8>, Vec<u8>>;

/// The live state of a loaded file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// The file header as stored.
    pub header: FileHeader,
    /// Swamp name (v3: after the header; v2: first `__swamp_meta__` METADATA entry).
    pub name: Option<String>,
    /// Live keys and their latest data.
    pub live: LiveSet,
    /// Blocks read.
    pub blocks: u64,
    /// Entries read (all operations, METADATA included).
    pub entries: u64,
    /// Bytes of the file that were loaded (trailing bytes of a partial block header
    /// excluded).
    pub len: u64,
}

impl Replay {
    /// [`live_digest`] of the live set.
    pub fn digest(&self) -> u64 {
        live_digest(&self.live)
    }
}

/// Loads a `.hyd` stream. Fails where HydrAIDE's loader fails: bad header,
/// torn or damaged block, malformed entry. Trailing bytes shorter than a block
/// header are ignored, as HydrAIDE does.
pub fn replay<R: Read>(r: R) -> Result<Replay, HydError> {
    let mut live = BTreeMap::new();
    let mut meta_name = None;
    let s = scan::walk(r, |_h, _i, info, bh, payload| {
        let raw = block::decompress_block(bh, payload).map_err(|source| HydError::Block {
            offset: info.offset,
            source,
        })?;
        let entries =
            block::parse_entries(&raw, bh.entry_count).map_err(|source| HydError::Block {
                offset: info.offset,
                source,
            })?;
        for e in entries {
            match e.op {
                Op::Insert | Op::Update => {
                    live.insert(e.key.to_vec(), e.data.to_vec());
                }
                Op::Delete => {
                    live.remove(e.key);
                }
                Op::Metadata => {
                    if meta_name.is_none() && e.key == SWAMP_META_KEY && !e.data.is_empty() {
                        meta_name = Some(String::from_utf8_lossy(e.data).into_owned());
                    }
                }
                Op::Unknown(_) => {}
            }
        }
        Ok::<(), HydError>(())
    })?;
    match (s.header, s.problem) {
        (Some(header), p) if p.as_ref().is_none_or(ScanProblem::is_benign) => Ok(Replay {
            header,
            name: s.name.or(meta_name),
            live,
            blocks: s.blocks.len() as u64,
            entries: s.entries,
            len: s.valid_len,
        }),
        (_, Some(p)) => Err(HydError::Problem(p)),
        (_, None) => Err(HydError::Problem(ScanProblem::ShortHeader { len: 0 })),
    }
}

/// Loads an in-memory `.hyd` file.
pub fn replay_bytes(data: &[u8]) -> Result<Replay, HydError> {
    replay(data)
}

/// Opens and loads a `.hyd` file.
pub fn replay_file(path: &Path) -> Result<Replay, HydError> {
    let f = File::open(path).map_err(|e| HydError::from(e).at(path))?;
    replay(BufReader::with_capacity(1 << 16, f)).map_err(|e| e.at(path))
}

/// Applies entries to a live set with replay semantics (INSERT/UPDATE set,
/// DELETE removes, others ignored).
pub fn apply_entries(live: &mut LiveSet, entries: &[Entry]) {
    for e in entries {
        match e.op {
            Op::Insert | Op::Update => {
                live.insert(e.key.clone(), e.data.clone());
            }
            Op::Delete => {
                live.remove(&e.key);
            }
            Op::Metadata | Op::Unknown(_) => {}
        }
    }
}

/// A cheap digest of a live set: xxhash64 over every key and value in key
/// order, each preceded by its length. Equal live sets give equal digests.
pub fn live_digest(live: &LiveSet) -> u64 {
    let mut h = Xxh64::new(0);
    h.update(&(live.len() as u64).to_le_bytes());
    for (k, v) in live {
        h.update(&(k.len() as u64).to_le_bytes());
        h.update(k);
        h.update(&(v.len() as u64).to_le_bytes());
        h.update(v);
    }
    h.digest()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hyd::header::Version;
    use crate::hyd::writer::HydWriter;
    use std::io::Cursor;

    #[test]
    fn last_write_wins() {
        let mut w = HydWriter::create_in(Cursor::new(Vec::new()), "a/b/c", Version::V2, 1).unwrap();
        w.append_block(&[
            Entry::new(Op::Insert, b"k1".to_vec(), b"v1".to_vec()),
            Entry::new(Op::Insert, b"k2".to_vec(), b"v2".to_vec()),
        ])
        .unwrap();
        w.append_block(&[
            Entry::new(Op::Update, b"k1".to_vec(), b"v1b".to_vec()),
            Entry::new(Op::Delete, b"k2".to_vec(), Vec::new()),
            Entry::new(Op::Unknown(9), b"k3".to_vec(), b"x".to_vec()),
        ])
        .unwrap();
        let file = w.finish(2).unwrap().into_inner();
        let r = replay_bytes(&file).unwrap();
        assert_eq!(r.name.as_deref(), Some("a/b/c"));
        assert_eq!(r.live.len(), 1);
        assert_eq!(r.live[&b"k1".to_vec()], b"v1b");
        assert_eq!(r.entries, 6);
        assert_eq!(r.blocks, 2);
        let mut other = BTreeMap::new();
        other.insert(b"k1".to_vec(), b"v1b".to_vec());
        assert_eq!(r.digest(), live_digest(&other));
        other.insert(b"k1".to_vec(), b"v1c".to_vec());
        assert_ne!(r.digest(), live_digest(&other));

        // A torn last block makes the whole file unloadable, like upstream.
        assert!(matches!(
            replay_bytes(&file[..file.len() - 1]),
            Err(HydError::Problem(ScanProblem::TornTail { .. }))
        ));
    }
}
