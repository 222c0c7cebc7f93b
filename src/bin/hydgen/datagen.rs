//! Realistic data roots from a seed: many small swamps, some medium, a few large,
//! a mix of V3, V2 and V1, with treasures shaped like MessagePack documents that
//! compress moderately.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use hydrabackup::hyd::HydError;
use hydrabackup::hyd::block::{Entry, Op};
use hydrabackup::hyd::header::Version;
use hydrabackup::hyd::naming::{Layout, SwampName};
use hydrabackup::hyd::replay::LiveSet;
use hydrabackup::hyd::rng::Rng;
use hydrabackup::hyd::v1::{V1Meta, write_v1_swamp};
use hydrabackup::hyd::writer::HydWriter;

/// 2026-01-01T00:00:00Z in unix nanoseconds: the generators' clock origin.
pub const EPOCH_NS: i64 = 1_767_225_600 * 1_000_000_000;
/// One day in nanoseconds.
pub const DAY_NS: i64 = 86_400 * 1_000_000_000;

const SANCTUARIES: &[&str] = &[
    "users",
    "orders",
    "catalog",
    "sessions",
    "analytics",
    "messages",
    "billing",
    "search",
];
const REALMS: &[&str] = &[
    "profiles", "settings", "events", "index", "inbox", "daily", "items", "audit", "cache",
    "counters",
];
const KEY_PREFIXES: &[&str] = &["user", "order", "item", "session", "msg", "event", "doc"];
const STATUSES: &[&str] = &["active", "pending", "archived", "new", "blocked", "done"];
const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "for",
    "on",
    "with",
    "as",
    "order",
    "shipped",
    "user",
    "payment",
    "received",
    "invoice",
    "customer",
    "account",
    "profile",
    "updated",
    "created",
    "deleted",
    "message",
    "thread",
    "reply",
    "status",
    "pending",
    "active",
    "budapest",
    "london",
    "berlin",
    "paris",
    "warsaw",
    "vienna",
    "product",
    "catalog",
    "price",
    "discount",
    "currency",
    "EUR",
    "HUF",
    "USD",
    "quantity",
    "warehouse",
    "delivery",
    "address",
    "street",
    "city",
    "country",
    "postal",
    "code",
    "phone",
    "email",
    "verified",
    "session",
    "token",
    "expired",
    "device",
    "android",
    "ios",
    "browser",
    "chrome",
    "firefox",
    "safari",
    "search",
    "query",
    "result",
    "click",
    "view",
    "cart",
    "checkout",
    "refund",
    "return",
    "review",
    "rating",
    "stars",
    "comment",
    "like",
    "share",
    "follow",
    "notification",
    "sent",
    "opened",
    "bounced",
    "campaign",
    "segment",
    "cohort",
    "retention",
    "daily",
    "weekly",
    "monthly",
    "report",
    "metric",
    "counter",
    "gauge",
    "latency",
    "error",
    "warning",
    "info",
    "debug",
    "trace",
    "swamp",
    "treasure",
    "hydra",
    "beacon",
    "island",
    "realm",
    "sanctuary",
    "index",
    "key",
    "value",
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
];

/// Size class of a generated swamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeClass {
    /// 1-50 KB.
    Small,
    /// 0.1-2 MB.
    Medium,
    /// 10-60 MB (scaled down to fit a total size).
    Large,
}

impl SizeClass {
    /// A random target file size for this class.
    pub fn target(self, rng: &mut Rng) -> u64 {
        match self {
            SizeClass::Small => log_uniform(rng, 1_000, 50_000),
            SizeClass::Medium => log_uniform(rng, 100_000, 2_000_000),
            SizeClass::Large => log_uniform(rng, 10_000_000, 60_000_000),
        }
    }

    /// A random treasure size for swamps of this class.
    pub fn treasure_size(self, rng: &mut Rng) -> usize {
        let (lo, hi) = match self {
            SizeClass::Small => (40, 1_500),
            SizeClass::Medium => (150, 4_000),
            SizeClass::Large => (400, 8_000),
        };
        log_uniform(rng, lo, hi) as usize
    }
}

fn log_uniform(rng: &mut Rng, lo: u64, hi: u64) -> u64 {
    let (l, h) = ((lo.max(1)) as f64, (hi.max(lo + 1)) as f64);
    (l * (h / l).powf(rng.f64())) as u64
}

/// Parses sizes like `200M`, `1.5G`, `64k`, `1000` (binary units, optional `B`/`iB`).
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .or_else(|| t.strip_suffix('b'))
        .unwrap_or(t);
    let (num, mult) = match t.chars().last()? {
        'k' | 'K' => (&t[..t.len() - 1], 1u64 << 10),
        'm' | 'M' => (&t[..t.len() - 1], 1 << 20),
        'g' | 'G' => (&t[..t.len() - 1], 1 << 30),
        't' | 'T' => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some((v * mult as f64) as u64)
}

/// Builds treasures: MessagePack maps with a few scalar fields and a text body
/// drawn from a small vocabulary, sprinkled with ids and numbers.
pub fn treasure(rng: &mut Rng, key: &[u8], size: usize, now: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 64);
    out.push(0x87); // fixmap, 7 pairs
    mp_str(&mut out, b"key");
    mp_str(&mut out, key);
    mp_str(&mut out, b"createdAt");
    out.push(0xd3);
    out.extend_from_slice(&(now - rng.below(DAY_NS as u64 * 30) as i64).to_be_bytes());
    mp_str(&mut out, b"updatedAt");
    out.push(0xd3);
    out.extend_from_slice(&now.to_be_bytes());
    mp_str(&mut out, b"status");
    mp_str(&mut out, rng.pick(STATUSES).unwrap_or(&"new").as_bytes());
    mp_str(&mut out, b"count");
    out.push(0xce);
    out.extend_from_slice(&(rng.below(100_000) as u32).to_be_bytes());
    mp_str(&mut out, b"score");
    out.push(0xcb);
    out.extend_from_slice(&(rng.f64() * 5.0).to_be_bytes());
    mp_str(&mut out, b"content");
    let body_len = size.saturating_sub(out.len() + 5).max(1);
    let mut body = Vec::with_capacity(body_len + 16);
    while body.len() < body_len {
        let r = rng.next_u64();
        if r.is_multiple_of(13) {
            body.extend_from_slice(format!("{:08x}", r >> 32).as_bytes());
        } else if r.is_multiple_of(7) {
            body.extend_from_slice((r % 10_000).to_string().as_bytes());
        } else {
            body.extend_from_slice(WORDS[(r >> 8) as usize % WORDS.len()].as_bytes());
        }
        body.push(if r.is_multiple_of(11) { b'.' } else { b' ' });
    }
    body.truncate(body_len);
    mp_str(&mut out, &body);
    out
}

fn mp_str(out: &mut Vec<u8>, s: &[u8]) {
    let n = s.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n < 256 {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if n < 65_536 {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(s);
}

/// The keys of a swamp being generated, with a counter for new ones.
#[derive(Debug, Clone)]
pub struct KeySet {
    prefix: String,
    next: u64,
    /// Live keys, in no particular order.
    pub keys: Vec<Vec<u8>>,
}

impl KeySet {
    /// A key set for a new swamp.
    pub fn new(rng: &mut Rng) -> KeySet {
        KeySet {
            prefix: (*rng.pick(KEY_PREFIXES).unwrap_or(&"key")).to_owned(),
            next: 0,
            keys: Vec::new(),
        }
    }

    /// A key set continuing the live keys of an existing swamp; new keys get
    /// `tag` in their name so they cannot collide with old ones.
    pub fn existing(live: &LiveSet, tag: &str) -> KeySet {
        KeySet {
            prefix: format!("k{tag}"),
            next: 0,
            keys: live.keys().cloned().collect(),
        }
    }

    /// Next entry of a history: mostly inserts of new keys when the set is young,
    /// with `update_pct` updates and `delete_pct` deletes of live keys.
    pub fn next_entry(
        &mut self,
        rng: &mut Rng,
        update_pct: f64,
        delete_pct: f64,
        size: usize,
        now: i64,
    ) -> Entry {
        let roll = rng.f64() * 100.0;
        if !self.keys.is_empty() && roll < delete_pct {
            let i = rng.below(self.keys.len() as u64) as usize;
            let k = self.keys.swap_remove(i);
            return Entry::new(Op::Delete, k, Vec::new());
        }
        if !self.keys.is_empty() && roll < delete_pct + update_pct {
            let k = self.keys[rng.below(self.keys.len() as u64) as usize].clone();
            let data = treasure(rng, &k, size, now);
            return Entry::new(Op::Update, k, data);
        }
        let k = format!("{}-{:08}", self.prefix, self.next).into_bytes();
        self.next += 1;
        let data = treasure(rng, &k, size, now);
        self.keys.push(k.clone());
        Entry::new(Op::Insert, k, data)
    }
}

/// Writes a new `.hyd` swamp of about `target` bytes at `path`. Returns its length.
pub fn write_hyd_swamp(
    path: &Path,
    name: &SwampName,
    version: Version,
    class: SizeClass,
    target: u64,
    rng: &mut Rng,
    created_at: i64,
) -> Result<u64, HydError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| HydError::from(e).at(dir))?;
    }
    let mut w = HydWriter::create(path, &name.full(), version, created_at)?;
    let mut keys = KeySet::new(rng);
    let mut pending = 0u64;
    let now = created_at + rng.below(DAY_NS as u64 * 60) as i64;
    // Snappy shrinks these treasures to roughly half: estimate the file size
    // from flushed bytes plus half the buffered ones.
    while w.len() + pending / 2 < target {
        let size = class.treasure_size(rng);
        let e = keys.next_entry(rng, 12.0, 4.0, size, now);
        pending += e.encoded_len() as u64;
        if w.add(e).map_err(|e| e.at(path))?.is_some() {
            pending = 0;
        }
    }
    w.close(now, false).map_err(|e| e.at(path))
}

/// Writes a new V1 swamp folder of about `target` bytes. Returns its size.
pub fn write_v1(
    dir: &Path,
    name: &SwampName,
    class: SizeClass,
    target: u64,
    rng: &mut Rng,
    created_at: i64,
) -> Result<u64, HydError> {
    let now = created_at + rng.below(DAY_NS as u64 * 60) as i64;
    let mut chunks: Vec<Vec<Vec<u8>>> = vec![Vec::new()];
    let (mut total, mut in_chunk) = (0u64, 0u64);
    let mut keys = KeySet::new(rng);
    while total / 2 < target {
        let size = class.treasure_size(rng);
        let e = keys.next_entry(rng, 0.0, 0.0, size, now);
        total += e.data.len() as u64 + 4;
        in_chunk += e.data.len() as u64;
        if let Some(c) = chunks.last_mut() {
            c.push(e.data);
        }
        if in_chunk > 256 * 1024 {
            chunks.push(Vec::new());
            in_chunk = 0;
        }
    }
    let meta = V1Meta {
        swamp_name: name.full(),
        created_at,
        updated_at: now,
        backup_at: 0,
        kv: BTreeMap::new(),
    };
    let v1 = write_v1_swamp(dir, &meta, &chunks, rng)?;
    Ok(v1.meta_len + v1.chunks.iter().map(|c| c.1).sum::<u64>())
}

/// Settings of [`generate`].
#[derive(Debug, Clone)]
pub struct GenConfig {
    /// Seed: equal seeds give byte-identical roots.
    pub seed: u64,
    /// Number of swamps.
    pub swamps: u64,
    /// Approximate total size; large (then all) swamps are scaled down to fit.
    pub total_size: Option<u64>,
    /// Percentage of swamps written as version-2 `.hyd` files.
    pub v2_percent: f64,
    /// Percentage of swamps written as V1 folders.
    pub v1_percent: f64,
    /// Folder layout.
    pub layout: Layout,
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenReport {
    /// Version-3 files.
    pub v3: u64,
    /// Version-2 files.
    pub v2: u64,
    /// V1 folders.
    pub v1: u64,
    /// Small / medium / large swamps.
    pub classes: [u64; 3],
    /// Bytes written.
    pub bytes: u64,
}

/// A generated swamp name: `<sanctuary>/<realm>/swamp-<index>`.
pub fn swamp_name(rng: &mut Rng, index: u64) -> SwampName {
    SwampName::new(
        rng.pick(SANCTUARIES).unwrap_or(&"s"),
        rng.pick(REALMS).unwrap_or(&"r"),
        &format!("swamp-{index}"),
    )
}

/// Chooses a size class for each of `n` swamps (about 1% large, 9% medium),
/// and a target size for each, scaled to fit `total` if given.
pub fn plan_sizes(rng: &mut Rng, n: u64, total: Option<u64>) -> Vec<(SizeClass, u64)> {
    let large = if n >= 10 { (n / 100).max(1) } else { 0 };
    let medium = (n * 9).div_ceil(100).min(n - large);
    let mut classes: Vec<SizeClass> = (0..n)
        .map(|i| match i {
            i if i < large => SizeClass::Large,
            i if i < large + medium => SizeClass::Medium,
            _ => SizeClass::Small,
        })
        .collect();
    rng.shuffle(&mut classes);
    let mut plan: Vec<(SizeClass, u64)> = classes.into_iter().map(|c| (c, c.target(rng))).collect();
    if let Some(total) = total {
        let sum = |p: &[(SizeClass, u64)], want: Option<SizeClass>| -> u64 {
            p.iter()
                .filter(|(c, _)| want.is_none_or(|w| w == *c))
                .map(|x| x.1)
                .sum()
        };
        let all = sum(&plan, None);
        if all > total {
            let big = sum(&plan, Some(SizeClass::Large));
            let rest = all - big;
            if big > 0 && rest < total {
                let f = (total - rest) as f64 / big as f64;
                for p in plan.iter_mut().filter(|p| p.0 == SizeClass::Large) {
                    p.1 = ((p.1 as f64 * f) as u64).max(1 << 20);
                }
            }
            let all = sum(&plan, None);
            if all > total {
                let f = total as f64 / all as f64;
                for p in &mut plan {
                    p.1 = ((p.1 as f64 * f) as u64).max(1_000);
                }
            }
        }
    }
    plan
}

/// Writes a data root under `root` (which should be empty).
pub fn generate(root: &Path, cfg: &GenConfig) -> Result<GenReport, HydError> {
    fs::create_dir_all(root).map_err(|e| HydError::from(e).at(root))?;
    let mut master = Rng::new(cfg.seed);
    let plan = plan_sizes(&mut master, cfg.swamps, cfg.total_size);
    let mut report = GenReport::default();
    for (i, (class, target)) in plan.into_iter().enumerate() {
        let mut rng = master.fork(i as u64);
        let name = swamp_name(&mut rng, i as u64);
        let created_at = EPOCH_NS - rng.below(DAY_NS as u64 * 365) as i64;
        let roll = rng.f64() * 100.0;
        report.classes[class as usize] += 1;
        if roll < cfg.v1_percent {
            let dir = name.base_path(root, &cfg.layout);
            report.bytes += write_v1(&dir, &name, class, target, &mut rng, created_at)?;
            report.v1 += 1;
        } else {
            let version = if roll < cfg.v1_percent + cfg.v2_percent {
                report.v2 += 1;
                Version::V2
            } else {
                report.v3 += 1;
                Version::V3
            };
            let path = name.hyd_path(root, &cfg.layout);
            report.bytes +=
                write_hyd_swamp(&path, &name, version, class, target, &mut rng, created_at)?;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::check;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("200M"), Some(200 << 20));
        assert_eq!(parse_size("1.5k"), Some(1536));
        assert_eq!(parse_size("64KiB"), Some(64 << 10));
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn treasures_compress_moderately() {
        let mut rng = Rng::new(5);
        let mut raw = Vec::new();
        for i in 0..40 {
            raw.extend(treasure(
                &mut rng,
                format!("k{i}").as_bytes(),
                800,
                EPOCH_NS,
            ));
        }
        let c = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
        let ratio = c.len() as f64 / raw.len() as f64;
        assert!((0.3..0.85).contains(&ratio), "ratio {ratio}");
    }

    #[test]
    fn plan_fits_total() {
        let mut rng = Rng::new(1);
        let plan = plan_sizes(&mut rng, 200, Some(20 << 20));
        let sum: u64 = plan.iter().map(|p| p.1).sum();
        assert!(sum <= 21 << 20, "{sum}");
        assert!(plan.iter().any(|p| p.0 == SizeClass::Large));
        assert!(plan.iter().filter(|p| p.0 == SizeClass::Small).count() > 150);
    }

    #[test]
    fn generate_is_deterministic_and_loadable() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let cfg = GenConfig {
            seed: 9,
            swamps: 30,
            total_size: Some(3 << 20),
            v2_percent: 20.0,
            v1_percent: 10.0,
            layout: Layout::default(),
        };
        let ra = generate(a.path(), &cfg).unwrap();
        let rb = generate(b.path(), &cfg).unwrap();
        assert_eq!(ra, rb);
        assert_eq!(ra.v1 + ra.v2 + ra.v3, 30);
        let ca = check(a.path()).unwrap();
        assert!(ca.failures.is_empty(), "{:?}", ca.failures);
        assert_eq!(ca.hyd_files, ra.v2 + ra.v3);
        assert_eq!(ca.v1_swamps, ra.v1);
        let fa = hydrabackup::hyd::walk::hyd_files(a.path()).unwrap();
        let fb = hydrabackup::hyd::walk::hyd_files(b.path()).unwrap();
        assert_eq!(fa.len(), fb.len());
        for (x, y) in fa.iter().zip(&fb) {
            assert_eq!(
                x.strip_prefix(a.path()).unwrap(),
                y.strip_prefix(b.path()).unwrap()
            );
            assert_eq!(fs::read(x).unwrap(), fs::read(y).unwrap());
        }
    }
}
