//! Edge cases HydrAIDE can leave on disk, written on purpose for tests: a torn tail that stays
//! torn (a stalled writer), one Treasure larger than 512 MiB, a version-2 name that is not in
//! block 0, an entry with an empty key (HydrAIDE's writer does not refuse one; its reader does).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use hydrabackup::hyd::block::{BlockHeader, Entry, Op, build_block};
use hydrabackup::hyd::header::Version;
use hydrabackup::hyd::naming::{Layout, SwampName};
use hydrabackup::hyd::rng::Rng;
use hydrabackup::hyd::scan::scan_file;
use hydrabackup::hyd::writer::HydWriter;
use hydrabackup::hyd::{HydError, SWAMP_META_KEY};

/// Creation time of the files written here (2025-01-01T00:00:00Z), unix ns.
const CREATED: i64 = 1_735_689_600_000_000_000;

fn small_entries(rng: &mut Rng, tag: &str, n: usize) -> Vec<Entry> {
    (0..n)
        .map(|i| {
            let mut data = vec![0u8; 40 + rng.below(200) as usize];
            rng.fill(&mut data);
            Entry::new(Op::Insert, format!("{tag}-{i}").into_bytes(), data)
        })
        .collect()
}

/// Creates the `.hyd` file of `name` under `root` (folders included).
fn create(
    root: &Path,
    layout: &Layout,
    name: &str,
    version: Version,
) -> Result<(PathBuf, HydWriter), HydError> {
    let sn = SwampName::parse(name)
        .ok_or_else(|| HydError::Invalid(format!("not a sanctuary/realm/swamp name: {name}")))?;
    let path = sn.hyd_path(root, layout);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| HydError::from(e).at(dir))?;
    }
    // Version 2 without its METADATA entry queued: the callers place it themselves.
    let header_name = if version == Version::V3 { name } else { "" };
    let w = HydWriter::create(&path, header_name, version, CREATED)?;
    Ok((path, w))
}

/// A version-2 Swamp whose `__swamp_meta__` METADATA entry comes in block 1, after other
/// entries (HydrAIDE takes the first one in any block). Returns its path.
pub fn write_latemeta(
    root: &Path,
    layout: &Layout,
    name: &str,
    seed: u64,
) -> Result<PathBuf, HydError> {
    let mut rng = Rng::new(seed);
    let (path, mut w) = create(root, layout, name, Version::V2)?;
    w.append_block(&small_entries(&mut rng, "a", 20))?;
    let mut second = small_entries(&mut rng, "b", 10);
    second.insert(5, Entry::new(Op::Metadata, SWAMP_META_KEY, name.as_bytes()));
    w.append_block(&second)?;
    w.append_block(&small_entries(&mut rng, "c", 10))?;
    w.close(CREATED, false)?;
    Ok(path)
}

/// A version-3 Swamp whose block 1 holds an entry with an empty key between valid ones: every
/// CRC holds, but HydrAIDE's reader refuses the file. Returns its path.
pub fn write_emptykey(
    root: &Path,
    layout: &Layout,
    name: &str,
    seed: u64,
) -> Result<PathBuf, HydError> {
    let mut rng = Rng::new(seed);
    let (path, mut w) = create(root, layout, name, Version::V3)?;
    w.append_block(&small_entries(&mut rng, "a", 20))?;
    // HydrAIDE's entry encoding of an empty key: key length 0, no key bytes.
    let mut raw = Vec::new();
    hydrabackup::hyd::block::encode_entries(&small_entries(&mut rng, "b", 3), &mut raw)
        .map_err(|source| HydError::Block { offset: 0, source })?;
    raw.extend_from_slice(&[Op::Insert.as_u8(), 0, 0, 3, 0, 0, 0, 1, 2, 3]);
    let payload = snap::raw::Encoder::new()
        .compress_vec(&raw)
        .map_err(|e| HydError::Invalid(e.to_string()))?;
    let bh = BlockHeader {
        compressed_size: payload.len() as u32,
        uncompressed_size: raw.len() as u32,
        entry_count: 4,
        checksum: crc32fast::hash(&payload),
        flags: 0,
    };
    w.append_raw_block(&bh, &payload)?;
    w.append_block(&small_entries(&mut rng, "c", 10))?;
    w.close(CREATED, false)?;
    Ok(path)
}

/// A version-3 Swamp with one Treasure of `size` bytes (its own block) between two small
/// blocks. The Treasure repeats a 64-byte pattern, so the block is written straight as Snappy
/// (a literal, then 64-byte copies) in `size / 21` bytes, never held uncompressed. Returns its
/// path.
pub fn write_bigentry(
    root: &Path,
    layout: &Layout,
    name: &str,
    seed: u64,
    size: u32,
) -> Result<PathBuf, HydError> {
    let mut rng = Rng::new(seed);
    let (path, mut w) = create(root, layout, name, Version::V3)?;
    w.append_block(&small_entries(&mut rng, "a", 20))?;
    let key = b"big-treasure";
    let mut head = vec![Op::Insert.as_u8()];
    head.extend_from_slice(&(key.len() as u16).to_le_bytes());
    head.extend_from_slice(key);
    head.extend_from_slice(&size.to_le_bytes());
    let mut pattern = [0u8; 64];
    rng.fill(&mut pattern);
    let total = u32::try_from(head.len() as u64 + u64::from(size))
        .map_err(|_| HydError::Invalid(format!("treasure of {size} bytes")))?;
    let payload = snappy_repeat(&head, &pattern, size, total);
    let bh = BlockHeader {
        compressed_size: u32::try_from(payload.len())
            .map_err(|_| HydError::Invalid("block too large".into()))?,
        uncompressed_size: total,
        entry_count: 1,
        checksum: crc32fast::hash(&payload),
        flags: 0,
    };
    w.append_raw_block(&bh, &payload)?;
    w.append_block(&small_entries(&mut rng, "c", 20))?;
    w.close(CREATED, false)?;
    Ok(path)
}

/// Raw Snappy of `head` followed by `size` bytes of `pattern` repeated.
fn snappy_repeat(head: &[u8], pattern: &[u8; 64], size: u32, total: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(size as usize / 20 + 256);
    let mut v = total;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    let first = (size as usize).min(64);
    let mut lit = head.to_vec();
    lit.extend_from_slice(&pattern[..first]);
    // A literal of up to 256 bytes: tag 60 plus one length byte.
    out.push(60 << 2);
    out.push((lit.len() - 1) as u8);
    out.extend_from_slice(&lit);
    let mut left = size as usize - first;
    while left > 0 {
        // Copy with a 2-byte offset: length 1..=64, offset 64 (one pattern back).
        let n = left.min(64);
        out.push((((n - 1) as u8) << 2) | 2);
        out.extend_from_slice(&64u16.to_le_bytes());
        left -= n;
    }
    out
}

/// What [`stall`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    /// Length of the loadable prefix (the file before the stalled block).
    pub valid_len: u64,
    /// Length of the file with the partial block.
    pub torn_len: u64,
}

/// Appends the first half of a new block to a clean `.hyd` file and leaves it so: the state
/// a stalled writer leaves for as long as it stalls. With `until`, waits for that file to exist
/// and then writes the rest of the block (the writer resumes).
pub fn stall(path: &Path, seed: u64, until: Option<&Path>) -> Result<Stall, HydError> {
    let s = scan_file(path)?;
    if !s.is_clean() {
        return Err(HydError::Invalid(format!(
            "{} does not end on a complete block",
            path.display()
        )));
    }
    let mut rng = Rng::new(seed);
    let (bh, payload) =
        build_block(&small_entries(&mut rng, "stall", 30)).map_err(|source| HydError::Block {
            offset: s.valid_len,
            source,
        })?;
    let mut block = bh.encode().to_vec();
    block.extend_from_slice(&payload);
    let half = block.len() / 2;
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| HydError::from(e).at(path))?;
    f.set_len(s.valid_len)?;
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(s.valid_len))?;
    f.write_all(&block[..half])?;
    let torn_len = s.valid_len + half as u64;
    if let Some(until) = until {
        while !until.exists() {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        f.write_all(&block[half..])?;
    }
    Ok(Stall {
        valid_len: s.valid_len,
        torn_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hydrabackup::hyd::replay::replay_file;
    use hydrabackup::hyd::scan::scan_file;

    #[test]
    fn edge_cases_are_what_they_claim() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let l = Layout::default();
        let p = write_latemeta(root, &l, "s/r/late", 1).unwrap();
        let s = scan_file(&p).unwrap();
        assert!(s.is_clean());
        assert_eq!(s.name.as_deref(), Some("s/r/late"));
        assert_eq!(replay_file(&p).unwrap().name.as_deref(), Some("s/r/late"));

        let p = write_emptykey(root, &l, "s/r/empty", 2).unwrap();
        assert!(scan_file(&p).unwrap().is_clean(), "every CRC holds");
        assert!(replay_file(&p).is_err(), "but it does not load");

        let p = write_bigentry(root, &l, "s/r/big", 3, 3 << 20).unwrap();
        let r = replay_file(&p).unwrap();
        assert_eq!(r.live[&b"big-treasure".to_vec()].len(), 3 << 20);
        assert_eq!(r.blocks, 3);

        let before = fs::read(&p).unwrap();
        let st = stall(&p, 4, None).unwrap();
        assert_eq!(st.valid_len, before.len() as u64);
        let s = scan_file(&p).unwrap();
        assert!(s.problem.as_ref().is_some_and(|x| x.is_tail()));
        assert_eq!(s.valid_len, st.valid_len);
    }
}
