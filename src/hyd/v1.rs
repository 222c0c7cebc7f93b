//! Legacy V1 swamps: a folder holding a `meta` file (Go GOB of
//! `{SwampName, CreatedAt, UpdatedAt, BackupAt, KeyValuePairs}`) and chunk files
//! with UUID names, each the raw-Snappy compression of length-prefixed parts
//! (`len u32 LE | bytes`, one part per treasure).
//!
//! Only detection, listing and generation are provided: a backup copies these
//! folders as opaque files.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::rng::Rng;
use super::{HydError, MAX_V1_CHUNK};

/// Name of the metadata file inside a V1 swamp folder.
pub const META_FILE: &str = "meta";
/// Key in `KeyValuePairs` naming the chunk file currently appended to.
pub const ACTUAL_FILE_KEY: &str = "actual";

/// A V1 swamp folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Swamp {
    /// The folder.
    pub dir: PathBuf,
    /// Size of its `meta` file.
    pub meta_len: u64,
    /// Other regular files (chunks), sorted by name, with their sizes.
    pub chunks: Vec<(String, u64)>,
}

/// Returns the V1 swamp in `dir` if `dir` holds a regular file named `meta`.
pub fn detect_v1_swamp(dir: &Path) -> io::Result<Option<V1Swamp>> {
    let meta = dir.join(META_FILE);
    let meta_len = match fs::symlink_metadata(&meta) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut chunks = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let md = e.metadata()?;
        if name != META_FILE && md.is_file() {
            chunks.push((name, md.len()));
        }
    }
    chunks.sort();
    Ok(Some(V1Swamp {
        dir: dir.to_path_buf(),
        meta_len,
        chunks,
    }))
}

/// True if `s` looks like a lowercase UUID (`8-4-4-4-12` hex digits), the form
/// of V1 chunk file names.
pub fn is_uuid_name(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

/// A random version-4 UUID string from `rng`.
pub fn random_uuid(rng: &mut Rng) -> String {
    let mut b = [0u8; 16];
    rng.fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Encodes a chunk file: raw Snappy of length-prefixed parts.
pub fn encode_chunk(parts: &[Vec<u8>]) -> Result<Vec<u8>, HydError> {
    let mut raw = Vec::new();
    for p in parts {
        let n = u32::try_from(p.len())
            .map_err(|_| HydError::Invalid(format!("chunk part of {} bytes", p.len())))?;
        raw.extend_from_slice(&n.to_le_bytes());
        raw.extend_from_slice(p);
    }
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .map_err(|e| HydError::Invalid(e.to_string()))
}

/// Decodes a chunk file into its parts.
pub fn decode_chunk(data: &[u8]) -> Result<Vec<Vec<u8>>, HydError> {
    let bad = |m: String| HydError::Invalid(format!("v1 chunk: {m}"));
    let n = snap::raw::decompress_len(data).map_err(|e| bad(e.to_string()))?;
    if n as u64 > data.len() as u64 * 24 + 16 || n as u64 > u64::from(MAX_V1_CHUNK) {
        return Err(bad(format!("implausible size {n}")));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(data)
        .map_err(|e| bad(e.to_string()))?;
    let mut parts = Vec::new();
    let mut rest = &raw[..];
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("truncated length".into()))?;
        let len = u32::from_le_bytes(*len) as usize;
        if tail.len() < len {
            return Err(bad("truncated part".into()));
        }
        parts.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    Ok(parts)
}

/// Contents of a V1 `meta` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Meta {
    /// Full swamp name.
    pub swamp_name: String,
    /// Creation time, unix ns (UTC).
    pub created_at: i64,
    /// Last update, unix ns (UTC).
    pub updated_at: i64,
    /// Last backup, unix ns (UTC); 0 for never (Go's zero time is written then).
    pub backup_at: i64,
    /// Internal key-value pairs.
    pub kv: BTreeMap<String, String>,
}

/// Writes a V1 swamp folder: `meta` plus one chunk file per element of `chunks`.
/// The last chunk is recorded under the `actual` key, as HydrAIDE does.
pub fn write_v1_swamp(
    dir: &Path,
    meta: &V1Meta,
    chunks: &[Vec<Vec<u8>>],
    rng: &mut Rng,
) -> Result<V1Swamp, HydError> {
    fs::create_dir_all(dir).map_err(|e| HydError::from(e).at(dir))?;
    let mut meta = meta.clone();
    for parts in chunks {
        let name = random_uuid(rng);
        let p = dir.join(&name);
        fs::write(&p, encode_chunk(parts)?).map_err(|e| HydError::from(e).at(&p))?;
        meta.kv.insert(ACTUAL_FILE_KEY.to_owned(), name);
    }
    write_meta(dir, &meta)?;
    detect_v1_swamp(dir)
        .map_err(|e| HydError::from(e).at(dir))?
        .ok_or_else(|| HydError::Invalid("meta file vanished".into()))
}

/// (Re)writes the `meta` file of a V1 swamp folder.
pub fn write_meta(dir: &Path, meta: &V1Meta) -> Result<(), HydError> {
    let p = dir.join(META_FILE);
    fs::write(&p, super::gob::encode_meta(meta)).map_err(|e| HydError::from(e).at(&p))
}

/// Reads the swamp name out of a `meta` file, if it can be decoded.
pub fn read_meta(dir: &Path) -> Option<V1Meta> {
    let data = fs::read(dir.join(META_FILE)).ok()?;
    super::gob::decode_meta(&data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_round_trip_and_detection() {
        let parts = vec![b"one".to_vec(), Vec::new(), vec![7u8; 1000]];
        assert_eq!(decode_chunk(&encode_chunk(&parts).unwrap()).unwrap(), parts);
        assert!(decode_chunk(b"\xff\xff\xff\xff\x0f").is_err());
        let mut rng = Rng::new(3);
        let u = random_uuid(&mut rng);
        assert!(is_uuid_name(&u), "{u}");
        assert!(!is_uuid_name("meta"));

        let dir = tempfile::tempdir().unwrap();
        let sw = dir.path().join("abc");
        let meta = V1Meta {
            swamp_name: "a/b/c".into(),
            created_at: 1_700_000_000_123_456_789,
            updated_at: 1_700_000_100_000_000_000,
            backup_at: 0,
            kv: BTreeMap::new(),
        };
        let v1 = write_v1_swamp(&sw, &meta, &[parts.clone(), parts], &mut rng).unwrap();
        assert_eq!(v1.chunks.len(), 2);
        assert!(v1.chunks.iter().all(|(n, _)| is_uuid_name(n)));
        assert_eq!(detect_v1_swamp(dir.path()).unwrap(), None);
        let back = read_meta(&sw).unwrap();
        assert_eq!(back.swamp_name, "a/b/c");
        assert_eq!(back.created_at, meta.created_at);
        assert_eq!(
            back.kv.get(ACTUAL_FILE_KEY),
            v1.chunks
                .iter()
                .map(|c| &c.0)
                .find(|n| *n == &back.kv[ACTUAL_FILE_KEY])
        );
    }
}
