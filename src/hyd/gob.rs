//! Just enough Go GOB to write and read a V1 `meta` file.
//!
//! A fresh Go `gob.Encoder` writing HydrAIDE's `Meta` struct always emits the
//! same three type-definition messages (the struct, `time.Time` as a
//! GobEncoder, `map[string]string`) followed by one value message. The type
//! part below was captured from Go 1.19's `encoding/gob`; the value message is
//! encoded field by field (zero fields omitted, as gob does).

use std::collections::BTreeMap;

use super::v1::V1Meta;

/// The type-definition messages of a `Meta` gob stream (type ids 65, 66, 67).
const TYPE_PREFIX: &[u8] = b"\x5f\xff\x81\x03\x01\x01\x04Meta\x01\xff\x82\x00\x01\x05\x01\x09SwampName\x01\x0c\x00\x01\x09CreatedAt\x01\xff\x84\x00\x01\x09UpdatedAt\x01\xff\x84\x00\x01\x08BackupAt\x01\xff\x84\x00\x01\x0dKeyValuePairs\x01\xff\x86\x00\x00\x00\x10\xff\x83\x05\x01\x01\x04Time\x01\xff\x84\x00\x00\x00\x21\xff\x85\x04\x01\x01\x11map[string]string\x01\xff\x86\x00\x01\x0c\x01\x0c\x00\x00";

/// Seconds from 0001-01-01 to 1970-01-01 (Go's internal time epoch).
const UNIX_TO_INTERNAL: i64 = 62_135_596_800;

fn put_uint(out: &mut Vec<u8>, v: u64) {
    if v < 128 {
        out.push(v as u8);
    } else {
        let b = v.to_be_bytes();
        let skip = b.iter().take_while(|&&x| x == 0).count();
        out.push(!((8 - skip) as u8 - 1));
        out.extend_from_slice(&b[skip..]);
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Go `time.Time.MarshalBinary` of a UTC time (version 1, offset -1).
fn time_binary(unix_ns: i64) -> [u8; 15] {
    let mut b = [0u8; 15];
    b[0] = 1;
    let sec = unix_ns.div_euclid(1_000_000_000) + UNIX_TO_INTERNAL;
    let nsec = unix_ns.rem_euclid(1_000_000_000) as u32;
    b[1..9].copy_from_slice(&sec.to_be_bytes());
    b[9..13].copy_from_slice(&nsec.to_be_bytes());
    b[13..15].copy_from_slice(&(-1i16).to_be_bytes());
    b
}

/// Encodes `meta` as Go's `gob.NewEncoder(f).Encode(meta)` does. A time of 0
/// stands for Go's zero time and is omitted.
pub fn encode_meta(meta: &V1Meta) -> Vec<u8> {
    let mut v = Vec::new();
    put_uint(&mut v, 65 << 1); // type id 65, as a gob int
    let mut last = 0u64;
    let mut field = |v: &mut Vec<u8>, n: u64| {
        put_uint(v, n - last);
        last = n;
    };
    if !meta.swamp_name.is_empty() {
        field(&mut v, 1);
        put_bytes(&mut v, meta.swamp_name.as_bytes());
    }
    for (n, t) in [
        (2, meta.created_at),
        (3, meta.updated_at),
        (4, meta.backup_at),
    ] {
        if t != 0 {
            field(&mut v, n);
            put_bytes(&mut v, &time_binary(t));
        }
    }
    field(&mut v, 5);
    put_uint(&mut v, meta.kv.len() as u64);
    for (k, val) in &meta.kv {
        put_bytes(&mut v, k.as_bytes());
        put_bytes(&mut v, val.as_bytes());
    }
    v.push(0); // end of struct
    let mut out = TYPE_PREFIX.to_vec();
    put_uint(&mut out, v.len() as u64);
    out.extend_from_slice(&v);
    out
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn uint(&mut self) -> Option<u64> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        if first < 128 {
            return Some(u64::from(first));
        }
        let n = usize::from(!first) + 1;
        if n > 8 || self.0.len() < n {
            return None;
        }
        let mut b = [0u8; 8];
        b[8 - n..].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Some(u64::from_be_bytes(b))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.uint()?).ok()?;
        let b = self.0.get(..n)?;
        self.0 = &self.0[n..];
        Some(b)
    }

    fn string(&mut self) -> Option<String> {
        self.bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

fn time_from_binary(b: &[u8]) -> Option<i64> {
    if b.len() < 15 || !(1..=2).contains(&b[0]) {
        return None;
    }
    let sec = i64::from_be_bytes(b[1..9].try_into().ok()?);
    let nsec = u32::from_be_bytes(b[9..13].try_into().ok()?);
    (sec - UNIX_TO_INTERNAL)
        .checked_mul(1_000_000_000)?
        .checked_add(i64::from(nsec))
}

/// Decodes a `meta` file written by HydrAIDE (or [`encode_meta`]). `None` if the
/// bytes are not such a stream.
pub fn decode_meta(data: &[u8]) -> Option<V1Meta> {
    let rest = data.strip_prefix(TYPE_PREFIX)?;
    let mut c = Cursor(rest);
    let msg = c.bytes()?;
    let mut c = Cursor(msg);
    if c.uint()? != 65 << 1 {
        return None;
    }
    let mut meta = V1Meta {
        swamp_name: String::new(),
        created_at: 0,
        updated_at: 0,
        backup_at: 0,
        kv: BTreeMap::new(),
    };
    let mut field = 0u64;
    loop {
        let delta = c.uint()?;
        if delta == 0 {
            return Some(meta);
        }
        field = field.checked_add(delta)?;
        match field {
            1 => meta.swamp_name = c.string()?,
            2..=4 => {
                let t = time_from_binary(c.bytes()?)?;
                match field {
                    2 => meta.created_at = t,
                    3 => meta.updated_at = t,
                    _ => meta.backup_at = t,
                }
            }
            5 => {
                let n = c.uint()?;
                for _ in 0..n {
                    let k = c.string()?;
                    let v = c.string()?;
                    meta.kv.insert(k, v);
                }
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Value messages produced by Go 1.19 encoding/gob for the same values.
    #[test]
    fn matches_go_output() {
        let mut kv = BTreeMap::new();
        kv.insert("actual".to_owned(), "x".to_owned());
        let m = V1Meta {
            swamp_name: "a/b/c".into(),
            created_at: 1_700_000_000_123_456_789,
            updated_at: 1_700_000_100_000_000_000,
            backup_at: 0,
            kv,
        };
        let go = "37ff820105612f622f63010f010000000edce5e800075bcd15ffff010f010000000edce5e86400000000ffff02010661637475616c017800";
        let enc = encode_meta(&m);
        assert_eq!(&enc[TYPE_PREFIX.len()..], &hex(go)[..]);
        let whole = "5fff81030101044d65746101ff8200010501095377616d704e616d65010c00010943726561746564417401ff8400010955706461746564417401ff840001084261636b7570417401ff8400010d4b657956616c7565506169727301ff8600000010ff830501010454696d6501ff8400000021ff85040101116d61705b737472696e675d737472696e6701ff8600010c010c000037ff820105612f622f63010f010000000edce5e800075bcd15ffff010f010000000edce5e86400000000ffff02010661637475616c017800";
        assert_eq!(enc, hex(whole));
        assert_eq!(decode_meta(&enc), Some(m.clone()));

        let mut kv = BTreeMap::new();
        kv.insert("k1".to_owned(), "v1".to_owned());
        kv.insert("k2".to_owned(), "v2".to_owned());
        let m2 = V1Meta {
            swamp_name: String::new(),
            created_at: 0,
            updated_at: 0,
            backup_at: 0,
            kv,
        };
        let go2 = "11ff820502026b31027631026b3202763200";
        assert_eq!(&encode_meta(&m2)[TYPE_PREFIX.len()..], &hex(go2)[..]);
        assert_eq!(TYPE_PREFIX.len(), 0x5f + 1 + 0x10 + 1 + 0x21 + 1);

        let mut long = m;
        long.swamp_name = "n".repeat(300);
        assert_eq!(decode_meta(&encode_meta(&long)), Some(long));
        for cut in 0..enc.len() {
            let _ = decode_meta(&enc[..cut]);
        }
    }
}
