//! The live writer's log: one JSON line per state a file was in ([`LiveEvent`]), and the
//! digest of a V1 Swamp folder ([`v1_digest`]). Shared by `hydgen live` (which writes it) and
//! the tests (which check copies against it): it depends on nothing but the standard library
//! and xxhash.

use std::path::Path;

use xxhash_rust::xxh64::Xxh64;

/// One line of the live log: a state a `.hyd` file was in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveEvent {
    /// Operation number (0 for states logged before the first operation).
    pub op: u64,
    /// `initial`, `append` or `compact`; for V1 folders `v1-initial` or `v1-write`.
    pub event: String,
    /// Path of the file relative to the data root, `/`-separated.
    pub swamp: String,
    /// File length in that state.
    pub len: u64,
    /// Number of live keys.
    pub live: u64,
    /// [`live_digest`] of the live set.
    pub digest: u64,
    /// Wall-clock time, unix milliseconds.
    pub unix_ms: u64,
}

impl LiveEvent {
    /// The event as one JSON object (no trailing newline).
    pub fn to_json(&self) -> String {
        format!(
            "{{\"op\":{},\"event\":{},\"swamp\":{},\"len\":{},\"live\":{},\"digest\":\"{:016x}\",\"unix_ms\":{}}}",
            self.op,
            json_str(&self.event),
            json_str(&self.swamp),
            self.len,
            self.live,
            self.digest,
            self.unix_ms
        )
    }

    /// Parses a line written by [`LiveEvent::to_json`].
    pub fn from_json(line: &str) -> Option<LiveEvent> {
        Some(LiveEvent {
            op: json_field(line, "op")?.parse().ok()?,
            event: json_unquote(json_field(line, "event")?)?,
            swamp: json_unquote(json_field(line, "swamp")?)?,
            len: json_field(line, "len")?.parse().ok()?,
            live: json_field(line, "live")?.parse().ok()?,
            digest: u64::from_str_radix(&json_unquote(json_field(line, "digest")?)?, 16).ok()?,
            unix_ms: json_field(line, "unix_ms")?.parse().ok()?,
        })
    }
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The raw text of `"key":value` in a flat JSON object written by this module.
fn json_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":");
    let start = line.find(&pat)? + pat.len();
    let rest = &line[start..];
    if rest.starts_with('"') {
        let mut esc = false;
        for (i, c) in rest.char_indices().skip(1) {
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => return Some(&rest[..=i]),
                _ => {}
            }
        }
        None
    } else {
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        Some(rest[..end].trim())
    }
}

fn json_unquote(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut it = inner.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next()? {
            'u' => {
                let hex: String = it.by_ref().take(4).collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            'n' => out.push('\n'),
            't' => out.push('\t'),
            c => out.push(c),
        }
    }
    Some(out)
}

/// Reads a live log into events (unparsable lines are skipped). Used by the tests, not by
/// `hydgen` itself.
#[cfg_attr(not(test), allow(dead_code))]
pub fn read_log(path: &Path) -> std::io::Result<Vec<LiveEvent>> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .filter_map(LiveEvent::from_json)
        .collect())
}

/// Digest of a V1 Swamp folder's files (names and contents, in name order) and their total
/// length. Equal folders give equal digests.
pub fn v1_digest(dir: &Path) -> std::io::Result<(u64, u64)> {
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    let mut h = Xxh64::new(0);
    let mut len = 0;
    for n in names {
        let data = std::fs::read(dir.join(&n))?;
        let name = n.to_string_lossy();
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(&(data.len() as u64).to_le_bytes());
        h.update(&data);
        len += data.len() as u64;
    }
    Ok((h.digest(), len))
}
