//! Restore of a logical Swamp: the record stream becomes a fresh, compacted `.hyd` of the
//! captured format version (the captured header's CreatedAt, ModifiedAt, flags-free defaults and
//! name; INSERT entries in key order, in blocks of HydrAIDE's default size). HydrAIDE loads it
//! with exactly the captured live set; it is equal in content, not in bytes, to the file that
//! was backed up.

use std::fs::File;
use std::io::{self, Cursor};
use std::os::unix::fs::FileExt;

use super::{RecordError, stream};
use crate::hyd::block::{Entry, Op};
use crate::hyd::{FILE_HEADER_SIZE, FileHeader, HydError, HydWriter, LiveSet, live_digest};
use crate::repo::tree::Node;

/// Writes the records `(key, value)` (ascending keys) as a `.hyd` file whose header is taken
/// from `header_blob` (the captured 64-byte header and, for version 3, the name); `name` is
/// the Swamp name for a version-2 file's METADATA entry.
pub fn rebuild<'a, I>(
    header_blob: &[u8],
    name: Option<&str>,
    records: I,
) -> Result<Vec<u8>, HydError>
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
{
    let h = FileHeader::decode(header_blob.get(..FILE_HEADER_SIZE).unwrap_or(header_blob))?;
    let v3_name = header_blob
        .get(FILE_HEADER_SIZE..FILE_HEADER_SIZE + h.name_len() as usize)
        .map(|n| String::from_utf8_lossy(n).into_owned());
    let name = v3_name
        .filter(|n| !n.is_empty())
        .or_else(|| name.map(str::to_string))
        .unwrap_or_default();
    let mut w = HydWriter::create_in(Cursor::new(Vec::new()), &name, h.version, h.created_at)?;
    for (k, v) in records {
        w.add(Entry::new(Op::Insert, k.to_vec(), v.to_vec()))?;
    }
    Ok(w.finish(h.modified_at)?.into_inner())
}

/// Chooses records by key and value (`restore --key`, time windows).
pub type Select<'a> = &'a (dyn Fn(&[u8], &[u8]) -> bool + Sync);

/// Decodes a logical Swamp's record stream and checks it against the node's facts: the live
/// set's digest, record count and stream length.
pub fn decode_checked(node: &Node, stream_bytes: &[u8]) -> Result<LiveSet, RecordError> {
    let l = node
        .logical()
        .ok_or_else(|| RecordError::Mismatch("not a logical capture".into()))?;
    if stream_bytes.len() as u64 != l.stream_size {
        return Err(RecordError::Mismatch(format!(
            "{} stream bytes, {} recorded",
            stream_bytes.len(),
            l.stream_size
        )));
    }
    let live = stream::decode_stream([stream_bytes])?;
    if live.len() as u64 != l.records {
        return Err(RecordError::Mismatch(format!(
            "{} records, {} recorded",
            live.len(),
            l.records
        )));
    }
    let found = live_digest(&live);
    if found != l.digest {
        return Err(RecordError::Digest {
            stored: l.digest,
            found,
        });
    }
    Ok(live)
}

/// Rewrites a restored logical Swamp in place: `file` holds its record stream and becomes a
/// `.hyd` file holding the records `select` keeps (all without it). Malformed or mismatching
/// records are `InvalidData` errors.
pub fn rebuild_file(file: &File, node: &Node, select: Option<Select<'_>>) -> io::Result<()> {
    let mut data = vec![0u8; node.content_len() as usize];
    file.read_exact_at(&mut data, 0)?;
    let out = rebuild_node(node, &data, select)?;
    drop(data);
    file.set_len(0)?;
    file.write_all_at(&out, 0)?;
    file.set_len(out.len() as u64)
}

/// The `.hyd` file of a logical Swamp from its content `data` (record stream, then block
/// recipe), holding the records `select` keeps (all without it: byte-identical where the
/// capture has a recipe). Malformed or mismatching records are `InvalidData` errors.
pub fn rebuild_node(node: &Node, data: &[u8], select: Option<Select<'_>>) -> io::Result<Vec<u8>> {
    let l = node
        .logical()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a logical capture"))?;
    let bad = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
    if data.len() as u64 != node.content_len() {
        return Err(bad(
            "the record stream's length differs from the capture's".into()
        ));
    }
    let (stream, recipe) = data.split_at(l.stream_size as usize);
    let live = decode_checked(node, stream).map_err(|e| bad(e.to_string()))?;
    let name = node.swamp.as_ref().and_then(|s| s.name.as_deref());
    if select.is_none() && !recipe.is_empty() {
        // Byte for byte: the recipe was checked against the captured file at backup.
        return super::recipe::apply(&l.header, recipe, &live, name)
            .map_err(|e| bad(e.to_string()));
    }
    let records = live
        .iter()
        .filter(|(k, v)| select.is_none_or(|f| f(k, v)))
        .map(|(k, v)| (&k[..], &v[..]));
    rebuild(&l.header, name, records).map_err(|e| bad(e.to_string()))
}

/// Rewrites a restored `.hyd` file (a file capture, `len` bytes) in place to hold only the live
/// records `select` keeps, compacted. A file that does not replay is `InvalidData`.
pub fn filter_file(file: &File, len: u64, select: Select<'_>) -> io::Result<()> {
    let mut data = vec![0u8; len as usize];
    file.read_exact_at(&mut data, 0)?;
    let bad = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
    let r = crate::hyd::replay_bytes(&data).map_err(|e| bad(e.to_string()))?;
    let header = &data[..(r.header.data_start() as usize).min(data.len())];
    let records = r
        .live
        .iter()
        .filter(|(k, v)| select(k, v))
        .map(|(k, v)| (&k[..], &v[..]));
    let out = rebuild(header, r.name.as_deref(), records).map_err(|e| bad(e.to_string()))?;
    file.set_len(0)?;
    file.write_all_at(&out, 0)?;
    file.set_len(out.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hyd::{Version, replay_bytes};

    #[test]
    fn rebuilt_file_replays_to_the_records() {
        for v in [Version::V2, Version::V3] {
            let mut w = HydWriter::create_in(Cursor::new(Vec::new()), "s/r/n", v, 11).unwrap();
            w.add(Entry::new(Op::Insert, b"b".to_vec(), b"1".to_vec()))
                .unwrap();
            w.add(Entry::new(Op::Insert, b"a".to_vec(), b"2".to_vec()))
                .unwrap();
            let src = w.finish(12).unwrap().into_inner();
            let r = replay_bytes(&src).unwrap();
            let hb = &src[..r.header.data_start() as usize];
            let out = rebuild(
                hb,
                r.name.as_deref(),
                r.live.iter().map(|(k, v)| (&k[..], &v[..])),
            )
            .unwrap();
            let back = replay_bytes(&out).unwrap();
            assert_eq!(back.live, r.live);
            assert_eq!(back.name, r.name);
            assert_eq!(back.header.version, v);
            assert_eq!(back.header.created_at, 11);
        }
    }
}
