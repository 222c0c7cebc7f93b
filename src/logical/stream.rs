//! The record stream: a Swamp's live set as records `key_len u16 | key | value_len u32 | value`
//! (little-endian), strictly ascending by key, cut into record groups (chunks) at record
//! boundaries chosen by the keys: a group ends after a record once it holds at least
//! [`MIN_GROUP`] bytes and a keyed hash of the record's key, modulo [`AVG_GROUP`], is below the
//! record's length — or once it reaches [`MAX_GROUP`]. Boundaries depend only on the records
//! near them, so an update, insert or delete changes the group holding it and rarely its
//! neighbour; file layout, order and block packing change nothing.

use xxhash_rust::xxh64::xxh64;

use super::RecordError;
use crate::hyd::LiveSet;

/// A group is not cut before this many bytes.
pub const MIN_GROUP: usize = 1 << 10;
/// Expected bytes of a group beyond the minimum.
pub const AVG_GROUP: u64 = 4 << 10;
/// A group is always cut once it reaches this many bytes.
pub const MAX_GROUP: usize = 64 << 10;

/// Bytes of a record's framing (key and value lengths).
pub const RECORD_OVERHEAD: usize = 6;

/// One record of a decoded group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Offset of the record in its group.
    pub offset: u32,
    /// The key.
    pub key: &'a [u8],
    /// The value (the Treasure's bytes).
    pub value: &'a [u8],
}

/// Whether a group of `group_len` bytes ends after a record of `rec_len` bytes with this key.
pub fn cut_after(seed: u64, group_len: usize, key: &[u8], rec_len: usize) -> bool {
    if group_len >= MAX_GROUP {
        return true;
    }
    if group_len < MIN_GROUP {
        return false;
    }
    let mut h = xxh64(key, seed);
    // splitmix64 finaliser
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d049bb133111eb);
    h ^= h >> 31;
    h % AVG_GROUP < rec_len as u64
}

/// Appends one record to `out`.
pub fn push_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

/// Cuts a live set into groups; `f` gets each group's bytes and its records' (key, offset,
/// value) in order. Keys longer than `u16::MAX` cannot occur (HydrAIDE's key length is a u16).
pub fn cut<'a, F>(seed: u64, live: &'a LiveSet, mut f: F)
where
    F: FnMut(Vec<u8>, &[Record<'a>]),
{
    let mut cur = Vec::new();
    let mut recs: Vec<Record<'a>> = Vec::new();
    for (k, v) in live {
        let offset = cur.len() as u32;
        push_record(&mut cur, k, v);
        recs.push(Record {
            offset,
            key: k,
            value: v,
        });
        if cut_after(seed, cur.len(), k, k.len() + v.len() + RECORD_OVERHEAD) {
            f(std::mem::take(&mut cur), &recs);
            recs.clear();
        }
    }
    if !cur.is_empty() {
        f(cur, &recs);
    }
}

/// Decodes one group: whole records, keys non-empty and strictly ascending after `after`
/// (the last key of the previous group, if any).
pub fn decode_group<'a>(
    data: &'a [u8],
    after: Option<&[u8]>,
) -> Result<Vec<Record<'a>>, RecordError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut last: Option<&[u8]> = after;
    while pos < data.len() {
        let start = pos;
        let kl = data
            .get(pos..pos + 2)
            .ok_or(RecordError::Truncated(start))?;
        let kl = u16::from_le_bytes([kl[0], kl[1]]) as usize;
        pos += 2;
        let key = data
            .get(pos..pos + kl)
            .ok_or(RecordError::Truncated(start))?;
        pos += kl;
        let vl = data
            .get(pos..pos + 4)
            .ok_or(RecordError::Truncated(start))?;
        let vl = u32::from_le_bytes([vl[0], vl[1], vl[2], vl[3]]) as usize;
        pos += 4;
        let end = pos.checked_add(vl).ok_or(RecordError::Truncated(start))?;
        let value = data.get(pos..end).ok_or(RecordError::Truncated(start))?;
        pos = end;
        if key.is_empty() || last.is_some_and(|l| l >= key) {
            return Err(RecordError::Order(start));
        }
        last = Some(key);
        out.push(Record {
            offset: start as u32,
            key,
            value,
        });
    }
    Ok(out)
}

/// Decodes a whole stream (its groups in order) into a live set.
pub fn decode_stream<'a, I>(groups: I) -> Result<LiveSet, RecordError>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut live = LiveSet::new();
    let mut last: Option<Vec<u8>> = None;
    for g in groups {
        let recs = decode_group(g, last.as_deref())?;
        if let Some(r) = recs.last() {
            last = Some(r.key.to_vec());
        }
        for r in recs {
            live.insert(r.key.to_vec(), r.value.to_vec());
        }
    }
    Ok(live)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(n: usize) -> LiveSet {
        (0..n)
            .map(|i| {
                (
                    format!("key-{i:06}").into_bytes(),
                    vec![i as u8; 100 + i % 300],
                )
            })
            .collect()
    }

    fn groups(l: &LiveSet) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        cut(7, l, |g, _| out.push(g));
        out
    }

    #[test]
    fn round_trip_and_local_change() {
        let a = live(2000);
        let ga = groups(&a);
        assert!(ga.len() > 20, "{} groups", ga.len());
        assert!(ga.iter().all(|g| g.len() <= MAX_GROUP + 500));
        assert_eq!(decode_stream(ga.iter().map(|g| &g[..])).unwrap(), a);
        // One changed value changes at most two groups.
        let mut b = a.clone();
        b.insert(b"key-001000".to_vec(), b"changed".to_vec());
        let gb = groups(&b);
        let changed = gb.iter().filter(|g| !ga.contains(g)).count();
        assert!((1..=2).contains(&changed), "{changed} groups changed");
    }

    #[test]
    fn refuses_malformed_groups() {
        let mut g = Vec::new();
        push_record(&mut g, b"b", b"1");
        push_record(&mut g, b"a", b"2");
        assert_eq!(decode_group(&g, None), Err(RecordError::Order(8)));
        let mut g = Vec::new();
        push_record(&mut g, b"a", b"value");
        assert!(matches!(
            decode_group(&g[..g.len() - 1], None),
            Err(RecordError::Truncated(0))
        ));
        assert_eq!(decode_group(&g, Some(b"a")), Err(RecordError::Order(0)));
        let mut g = Vec::new();
        push_record(&mut g, b"", b"v");
        assert_eq!(decode_group(&g, None), Err(RecordError::Order(0)));
    }
}
