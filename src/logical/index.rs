//! The record index: one page per record group, listing each record's key, offset in the
//! group, value size, a hash of the value and the Treasure's modified time, so that
//! `find --key`, `show --keys` and `restore --key` read pages, not values. Page layout
//! (little-endian): `"HBRI" | version u8 = 1 | count u32 | count × (key_len u16 | key |
//! offset u32 | value_len u32 | value_hash u64 | modified_ns i64)`; `value_hash` is xxh64
//! (seed 0) of the value, `modified_ns` = `i64::MIN` when the value does not decode as a
//! MessagePack Treasure with a time.

use super::RecordError;
use super::stream::Record;

/// Magic of a record index page.
pub const PAGE_MAGIC: &[u8; 4] = b"HBRI";
/// `modified_ns` of a record whose value carries no time.
pub const NO_TIME: i64 = i64::MIN;

/// One record in an index page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The key.
    pub key: Vec<u8>,
    /// Offset of the record in its group.
    pub offset: u32,
    /// Bytes of the value.
    pub value_len: u32,
    /// xxh64 of the value (tells whether a value changed between snapshots).
    pub value_hash: u64,
    /// The Treasure's modified time (unix ns), when its value carries one.
    pub modified_ns: Option<i64>,
}

/// Encodes the page of a group's records; a value that starts like a MessagePack map but does
/// not decode is refused.
pub fn encode_page(recs: &[Record<'_>]) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::with_capacity(9 + recs.iter().map(|r| r.key.len() + 26).sum::<usize>());
    out.extend_from_slice(PAGE_MAGIC);
    out.push(1);
    out.extend_from_slice(&(recs.len() as u32).to_le_bytes());
    for r in recs {
        out.extend_from_slice(&(r.key.len() as u16).to_le_bytes());
        out.extend_from_slice(r.key);
        out.extend_from_slice(&r.offset.to_le_bytes());
        out.extend_from_slice(&(r.value.len() as u32).to_le_bytes());
        out.extend_from_slice(&xxhash_rust::xxh64::xxh64(r.value, 0).to_le_bytes());
        let t = super::msgpack::modified_ns(r.value).map_err(|why| RecordError::MessagePack {
            key: super::shown_key(r.key),
            why,
        })?;
        out.extend_from_slice(&t.unwrap_or(NO_TIME).to_le_bytes());
    }
    Ok(out)
}

/// Decodes a page; keys must be non-empty and strictly ascending.
pub fn decode_page(data: &[u8]) -> Result<Vec<IndexEntry>, RecordError> {
    if data.len() < 9 || &data[..4] != PAGE_MAGIC {
        return Err(RecordError::BadPage("no page header"));
    }
    if data[4] != 1 {
        return Err(RecordError::BadPage("unknown version"));
    }
    let count = u32::from_le_bytes(data[5..9].try_into().expect("4 bytes")) as usize;
    // Every entry takes at least 27 bytes: no allocation beyond what the page holds.
    if count > (data.len() - 9) / 27 {
        return Err(RecordError::BadPage("count larger than the page"));
    }
    let mut out = Vec::with_capacity(count);
    let mut pos = 9usize;
    for _ in 0..count {
        let start = pos;
        let take = |pos: &mut usize, n: usize| -> Result<&[u8], RecordError> {
            let s = data
                .get(*pos..*pos + n)
                .ok_or(RecordError::Truncated(start))?;
            *pos += n;
            Ok(s)
        };
        let kl = u16::from_le_bytes(take(&mut pos, 2)?.try_into().expect("2")) as usize;
        let key = take(&mut pos, kl)?.to_vec();
        let offset = u32::from_le_bytes(take(&mut pos, 4)?.try_into().expect("4"));
        let value_len = u32::from_le_bytes(take(&mut pos, 4)?.try_into().expect("4"));
        let value_hash = u64::from_le_bytes(take(&mut pos, 8)?.try_into().expect("8"));
        let t = i64::from_le_bytes(take(&mut pos, 8)?.try_into().expect("8"));
        if key.is_empty() || out.last().is_some_and(|p: &IndexEntry| p.key >= key) {
            return Err(RecordError::Order(start));
        }
        out.push(IndexEntry {
            key,
            offset,
            value_len,
            value_hash,
            modified_ns: (t != NO_TIME).then_some(t),
        });
    }
    if pos != data.len() {
        return Err(RecordError::BadPage("trailing bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_round_trip_and_refusals() {
        let recs = [
            Record {
                offset: 0,
                key: b"a",
                value: b"x",
            },
            Record {
                offset: 9,
                key: b"b",
                value: b"yy",
            },
        ];
        let p = encode_page(&recs).unwrap();
        let d = decode_page(&p).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[1].key.as_slice(), d[1].offset, d[1].value_len),
            (&b"b"[..], 9, 2)
        );
        assert_eq!(d[0].modified_ns, None);
        assert!(decode_page(&p[..p.len() - 1]).is_err());
        let mut q = p.clone();
        q.push(0);
        assert!(decode_page(&q).is_err());
        let mut q = p.clone();
        q[5] = 0xff;
        assert!(decode_page(&q).is_err());
    }
}
