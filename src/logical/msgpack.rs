//! Just enough MessagePack to check a Treasure and read its modified time: a value that starts
//! like a MessagePack map must decode as exactly one complete value; its `updatedAt` field
//! (else `modifiedAt`, else `createdAt`) is the modified time, as an integer of unix
//! nanoseconds or a MessagePack timestamp. Values that do not start like a map (GOB, raw bytes)
//! carry no time and are not checked.

/// Fields read as the modified time, in order of preference.
const TIME_FIELDS: [&[u8]; 3] = [b"updatedAt", b"modifiedAt", b"createdAt"];
/// Nesting deeper than this is refused (no recursion without bound).
const MAX_DEPTH: u32 = 64;

/// Whether a value starts like a MessagePack map (a HydrAIDE Treasure).
pub fn looks_like_map(v: &[u8]) -> bool {
    matches!(v.first(), Some(0x80..=0x8f | 0xde | 0xdf))
}

/// The modified time of a Treasure, `Ok(None)` when the value is not a map or has no time
/// field, an error when it starts like a map but does not decode.
pub fn modified_ns(v: &[u8]) -> Result<Option<i64>, &'static str> {
    if !looks_like_map(v) {
        return Ok(None);
    }
    let mut r = Cursor { d: v, p: 0 };
    let n = r.map_len()?;
    let mut found: [Option<i64>; 3] = [None; 3];
    for _ in 0..n {
        let key = r.str_bytes();
        let slot = key
            .as_ref()
            .ok()
            .and_then(|k| TIME_FIELDS.iter().position(|f| f == k));
        if key.is_err() {
            r.skip(0)?;
        }
        match slot {
            Some(i) => {
                let start = r.p;
                found[i] = r.time();
                if found[i].is_none() {
                    r.p = start;
                    r.skip(0)?;
                }
            }
            None => r.skip(0)?,
        }
    }
    if r.p != v.len() {
        return Err("trailing bytes after the map");
    }
    Ok(found.into_iter().flatten().next())
}

struct Cursor<'a> {
    d: &'a [u8],
    p: usize,
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Result<u8, &'static str> {
        let b = *self.d.get(self.p).ok_or("truncated")?;
        self.p += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.p.checked_add(n).ok_or("truncated")?;
        let s = self.d.get(self.p..end).ok_or("truncated")?;
        self.p = end;
        Ok(s)
    }

    fn uint(&mut self, n: usize) -> Result<u64, &'static str> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |a, &b| a << 8 | u64::from(b)))
    }

    fn map_len(&mut self) -> Result<u64, &'static str> {
        match self.byte()? {
            b @ 0x80..=0x8f => Ok(u64::from(b & 0x0f)),
            0xde => self.uint(2),
            0xdf => self.uint(4),
            _ => Err("not a map"),
        }
    }

    /// A string's bytes (the cursor moves past it); an error leaves the cursor in place.
    fn str_bytes(&mut self) -> Result<&'a [u8], &'static str> {
        let start = self.p;
        let r = (|| {
            let n = match self.byte()? {
                b @ 0xa0..=0xbf => usize::from(b & 0x1f),
                0xd9 => self.uint(1)? as usize,
                0xda => self.uint(2)? as usize,
                0xdb => self.uint(4)? as usize,
                _ => return Err("not a string"),
            };
            self.take(n)
        })();
        if r.is_err() {
            self.p = start;
        }
        r
    }

    /// An integer or timestamp, as unix ns; `None` (cursor anywhere) for anything else.
    fn time(&mut self) -> Option<i64> {
        let b = self.byte().ok()?;
        match b {
            0x00..=0x7f => Some(i64::from(b)),
            0xcc..=0xcf => {
                let v = self.uint(1 << (b - 0xcc)).ok()?;
                i64::try_from(v).ok()
            }
            0xd0..=0xd3 => {
                let n = 1usize << (b - 0xd0);
                let v = self.uint(n).ok()?;
                let shift = 64 - 8 * n as u32;
                Some(((v << shift) as i64) >> shift)
            }
            0xd6 if self.byte().ok()? == 0xff => Some(self.uint(4).ok()? as i64 * 1_000_000_000),
            0xd7 if self.byte().ok()? == 0xff => {
                let v = self.uint(8).ok()?;
                let (ns, s) = ((v >> 34) as i64, (v & ((1 << 34) - 1)) as i64);
                Some(s * 1_000_000_000 + ns)
            }
            0xc7 if self.uint(1).ok()? == 12 && self.byte().ok()? == 0xff => {
                let ns = self.uint(4).ok()? as i64;
                let s = self.uint(8).ok()? as i64;
                s.checked_mul(1_000_000_000)?.checked_add(ns)
            }
            _ => None,
        }
    }

    /// Skips one complete value.
    fn skip(&mut self, depth: u32) -> Result<(), &'static str> {
        if depth > MAX_DEPTH {
            return Err("nested too deeply");
        }
        let b = self.byte()?;
        let (skip, items): (usize, u64) = match b {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * u64::from(b & 0x0f)),
            0x90..=0x9f => (0, u64::from(b & 0x0f)),
            0xa0..=0xbf => (usize::from(b & 0x1f), 0),
            0xc1 => return Err("reserved byte 0xc1"),
            0xc4 | 0xd9 => (self.uint(1)? as usize, 0),
            0xc5 | 0xda => (self.uint(2)? as usize, 0),
            0xc6 | 0xdb => (self.uint(4)? as usize, 0),
            0xc7 => (self.uint(1)? as usize + 1, 0),
            0xc8 => (self.uint(2)? as usize + 1, 0),
            0xc9 => (self.uint(4)? as usize + 1, 0),
            0xca => (4, 0),
            0xcb => (8, 0),
            0xcc..=0xcf => (1 << (b - 0xcc), 0),
            0xd0..=0xd3 => (1 << (b - 0xd0), 0),
            0xd4..=0xd8 => (1 + (1 << (b - 0xd4)), 0),
            0xdc => (0, self.uint(2)?),
            0xdd => (0, self.uint(4)?),
            0xde => (0, 2 * self.uint(2)?),
            0xdf => (0, 2 * self.uint(4)?),
        };
        self.take(skip)?;
        // Each item takes at least one byte: a count beyond the bytes left is truncation.
        if items > (self.d.len() - self.p) as u64 {
            return Err("truncated");
        }
        for _ in 0..items {
            self.skip(depth + 1)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_times_and_refuses_bad_maps() {
        // {"key": "a", "updatedAt": int64 5_000_000_000, "n": [1, 2]}
        let mut v = vec![0x83, 0xa3, b'k', b'e', b'y', 0xa1, b'a', 0xa9];
        v.extend_from_slice(b"updatedAt");
        v.push(0xd3);
        v.extend_from_slice(&5_000_000_000i64.to_be_bytes());
        v.extend_from_slice(&[0xa1, b'n', 0x92, 1, 2]);
        assert_eq!(modified_ns(&v), Ok(Some(5_000_000_000)));
        assert!(modified_ns(&v[..v.len() - 1]).is_err());
        let mut w = v.clone();
        w.push(0);
        assert!(modified_ns(&w).is_err());
        assert_eq!(modified_ns(b"plain bytes"), Ok(None));
        // A timestamp ext (32-bit seconds).
        let t = [
            0x81, 0xa9, b'c', b'r', b'e', b'a', b't', b'e', b'd', b'A', b't', 0xd6, 0xff, 0, 0, 0,
            2,
        ];
        assert_eq!(modified_ns(&t), Ok(Some(2_000_000_000)));
        // A map claiming more entries than there are bytes.
        assert!(modified_ns(&[0xdf, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
