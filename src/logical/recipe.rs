//! The block recipe: when a Swamp's file holds each live record exactly once, as INSERTs (a
//! compacted file, or one only ever inserted into), its bytes are its header followed by blocks
//! built from its records in file order. The recipe records that order and the block cuts, so a
//! restore re-encodes the blocks and gives the file byte for byte. It is stored only when the
//! re-encoding, checked at backup, reproduces the captured bytes exactly (the same Snappy
//! encoder, the same framing). Layout (little-endian): `"HBRC" | version u8 = 1 | blocks u32 |
//! per block: count u16 | count × u32`, each u32 the record's position in key order, or
//! `u32::MAX` for a version-2 file's name entry (`__swamp_meta__`).

use std::collections::HashMap;

use super::RecordError;
use crate::hyd::block::{self, Entry, Op};
use crate::hyd::{BLOCK_HEADER_SIZE, BlockHeader, FILE_HEADER_SIZE, FileHeader, LiveSet};
use crate::hyd::{SWAMP_META_KEY, Version};

/// Magic of a recipe.
pub const RECIPE_MAGIC: &[u8; 4] = b"HBRC";
/// The position naming a version-2 file's name entry.
const NAME_ENTRY: u32 = u32::MAX;

/// The recipe of the captured file `bytes` (whose live set is `live` and version-2 name
/// `name`), if re-encoding reproduces it exactly. Checked block by block on the decompressed
/// bytes: a block re-encodes to itself when its entries fill it exactly (so encoding them again
/// gives the same bytes) and Snappy compresses those bytes to the stored payload.
pub fn derive(bytes: &[u8], live: &LiveSet, name: Option<&str>) -> Option<Vec<u8>> {
    let h = FileHeader::decode(bytes.get(..FILE_HEADER_SIZE)?).ok()?;
    let pos: HashMap<&[u8], u32> = live
        .keys()
        .enumerate()
        .map(|(i, k)| (&k[..], i as u32))
        .collect();
    let mut used = vec![false; live.len()];
    let mut recipe = Vec::new();
    recipe.extend_from_slice(RECIPE_MAGIC);
    recipe.push(1);
    recipe.extend_from_slice(&[0; 4]);
    let (mut blocks, mut first) = (0u32, true);
    let mut enc = snap::raw::Encoder::new();
    let mut again = Vec::new();
    let mut at = h.data_start() as usize;
    while at < bytes.len() {
        let hb: &[u8; BLOCK_HEADER_SIZE] =
            bytes.get(at..at + BLOCK_HEADER_SIZE)?.try_into().ok()?;
        let bh = BlockHeader::decode(hb);
        let start = at + BLOCK_HEADER_SIZE;
        let payload = bytes.get(start..start + bh.compressed_size as usize)?;
        let raw = block::decompress_block(&bh, payload).ok()?;
        let entries = block::parse_entries(&raw, bh.entry_count).ok()?;
        let filled: usize = entries.iter().map(|e| 7 + e.key.len() + e.data.len()).sum();
        if filled != raw.len() {
            return None;
        }
        recipe.extend_from_slice(&bh.entry_count.to_le_bytes());
        for e in &entries {
            let p = match e.op {
                Op::Insert => {
                    let &p = pos.get(e.key)?;
                    if used[p as usize] || live.get(e.key)?[..] != *e.data {
                        return None;
                    }
                    used[p as usize] = true;
                    p
                }
                Op::Metadata
                    if h.version == Version::V2
                        && first
                        && e.key == SWAMP_META_KEY
                        && Some(e.data) == name.map(str::as_bytes) =>
                {
                    NAME_ENTRY
                }
                _ => return None,
            };
            first = false;
            recipe.extend_from_slice(&p.to_le_bytes());
        }
        again.resize(snap::raw::max_compress_len(raw.len()), 0);
        let n = enc.compress(&raw, &mut again).ok()?;
        let rebuilt = BlockHeader {
            compressed_size: u32::try_from(n).ok()?,
            uncompressed_size: u32::try_from(raw.len()).ok()?,
            entry_count: bh.entry_count,
            checksum: bh.checksum,
            flags: 0,
        };
        if again[..n] != *payload || rebuilt.encode() != *hb {
            return None;
        }
        blocks += 1;
        at = start + payload.len();
    }
    if !used.iter().all(|&u| u) {
        return None;
    }
    recipe[5..9].copy_from_slice(&blocks.to_le_bytes());
    Some(recipe)
}

/// Re-encodes a file from its header bytes (header and name, as captured), its recipe and its
/// live set.
pub fn apply(
    header: &[u8],
    recipe: &[u8],
    live: &LiveSet,
    name: Option<&str>,
) -> Result<Vec<u8>, RecordError> {
    let bad = RecordError::BadRecipe;
    if recipe.len() < 9 || &recipe[..4] != RECIPE_MAGIC || recipe[4] != 1 {
        return Err(bad("no recipe header"));
    }
    let records: Vec<(&Vec<u8>, &Vec<u8>)> = live.iter().collect();
    let n = u32::from_le_bytes(recipe[5..9].try_into().expect("4")) as usize;
    let mut out = header.to_vec();
    let mut at = 9usize;
    for _ in 0..n {
        let c = recipe.get(at..at + 2).ok_or(bad("recipe cut short"))?;
        let c = u16::from_le_bytes([c[0], c[1]]) as usize;
        at += 2;
        let mut entries = Vec::with_capacity(c);
        for _ in 0..c {
            let p = recipe.get(at..at + 4).ok_or(bad("recipe cut short"))?;
            let p = u32::from_le_bytes(p.try_into().expect("4"));
            at += 4;
            if p == NAME_ENTRY {
                let name = name.unwrap_or_default().as_bytes().to_vec();
                entries.push(Entry::new(Op::Metadata, SWAMP_META_KEY, name));
            } else {
                let (k, v) = records
                    .get(p as usize)
                    .ok_or(bad("recipe names no record"))?;
                entries.push(Entry::new(Op::Insert, (*k).clone(), (*v).clone()));
            }
        }
        let (bh, payload) =
            block::build_block(&entries).map_err(|_| bad("recipe block does not encode"))?;
        out.extend_from_slice(&bh.encode());
        out.extend_from_slice(&payload);
    }
    if at != recipe.len() {
        return Err(bad("trailing bytes after the recipe"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hyd::{HydWriter, Rng, replay_bytes, writer::write_compacted};

    #[test]
    fn compacted_files_have_a_recipe_and_histories_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.hyd");
        let mut live = LiveSet::new();
        for i in 0..500u32 {
            live.insert(
                format!("k{i}").into_bytes(),
                vec![i as u8; 40 + i as usize % 90],
            );
        }
        write_compacted(&p, "a/b/c", &live, &mut Rng::new(4), 9).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let r = replay_bytes(&bytes).unwrap();
        let recipe = derive(&bytes, &r.live, r.name.as_deref()).expect("a recipe");
        let hb = &bytes[..r.header.data_start() as usize];
        assert_eq!(
            apply(hb, &recipe, &r.live, r.name.as_deref()).unwrap(),
            bytes
        );

        // A file with an update holds a dead record: no recipe.
        let mut w = HydWriter::create_in(std::io::Cursor::new(Vec::new()), "a/b/c", Version::V2, 1)
            .unwrap();
        w.append_block(&[Entry::new(Op::Insert, "a", "1")]).unwrap();
        w.append_block(&[Entry::new(Op::Update, "a", "2")]).unwrap();
        let b = w.finish(2).unwrap().into_inner();
        let r = replay_bytes(&b).unwrap();
        assert!(derive(&b, &r.live, r.name.as_deref()).is_none());
        // A version-2 file of inserts only has one (its name entry included).
        let mut w = HydWriter::create_in(std::io::Cursor::new(Vec::new()), "a/b/c", Version::V2, 1)
            .unwrap();
        w.add(Entry::new(Op::Insert, "b", "1")).unwrap();
        w.add(Entry::new(Op::Insert, "a", "2")).unwrap();
        let b = w.finish(2).unwrap().into_inner();
        let r = replay_bytes(&b).unwrap();
        let recipe = derive(&b, &r.live, r.name.as_deref()).expect("a recipe");
        let hb = &b[..r.header.data_start() as usize];
        assert_eq!(apply(hb, &recipe, &r.live, r.name.as_deref()).unwrap(), b);
    }
}
