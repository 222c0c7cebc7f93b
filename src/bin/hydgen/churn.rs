//! One day of activity on a data root: some swamps get appended blocks, some are
//! compacted, some deleted, and a few new ones appear.

use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use xxhash_rust::xxh64::xxh64;

use crate::datagen::{DAY_NS, EPOCH_NS, KeySet, SizeClass, swamp_name, write_hyd_swamp};
use hydrabackup::hyd::block::Entry;
use hydrabackup::hyd::header::Version;
use hydrabackup::hyd::naming::Layout;
use hydrabackup::hyd::replay::replay_file;
use hydrabackup::hyd::rng::Rng;
use hydrabackup::hyd::scan::scan;
use hydrabackup::hyd::v1::{
    self, V1Swamp, decode_chunk, encode_chunk, random_uuid, read_meta, write_meta,
};
use hydrabackup::hyd::walk::{Found, remove_empty_dirs, walk_root};
use hydrabackup::hyd::writer::{HydWriter, compact};
use hydrabackup::hyd::{DEFAULT_BLOCK_SIZE, HydError};

/// Settings of [`churn`]; percentages are of the existing swamps.
#[derive(Debug, Clone)]
pub struct ChurnConfig {
    /// Seed: the same root and seed give the same result.
    pub seed: u64,
    /// Swamps that get new blocks.
    pub append_percent: f64,
    /// Swamps that are compacted.
    pub compact_percent: f64,
    /// New swamps, relative to the existing count.
    pub new_percent: f64,
    /// Swamps that are deleted.
    pub delete_percent: f64,
    /// Folder layout for new swamps.
    pub layout: Layout,
}

impl Default for ChurnConfig {
    fn default() -> ChurnConfig {
        ChurnConfig {
            seed: 0,
            append_percent: 10.0,
            compact_percent: 2.0,
            new_percent: 1.0,
            delete_percent: 0.5,
            layout: Layout::default(),
        }
    }
}

/// What [`churn`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChurnReport {
    /// Swamps found before the day.
    pub existing: u64,
    /// Swamps that got new blocks (or chunks).
    pub appended: u64,
    /// Blocks appended.
    pub blocks_appended: u64,
    /// Swamps compacted.
    pub compacted: u64,
    /// Swamps deleted (including compactions that found nothing live).
    pub deleted: u64,
    /// Swamps created.
    pub created: u64,
    /// `.hyd` files left alone because they do not load.
    pub skipped: Vec<PathBuf>,
}

enum Swamp {
    Hyd(PathBuf),
    V1(V1Swamp),
}

/// Applies one day of activity to the data root `root`.
pub fn churn(root: &Path, cfg: &ChurnConfig) -> Result<ChurnReport, HydError> {
    let swamps: Vec<Swamp> = walk_root(root)
        .map_err(|e| HydError::from(e).at(root))?
        .into_iter()
        .filter_map(|f| match f {
            Found::Hyd(p) => Some(Swamp::Hyd(p)),
            Found::V1(v) => Some(Swamp::V1(v)),
            _ => None,
        })
        .collect();
    let now = EPOCH_NS + DAY_NS * (1 + (cfg.seed % 3650) as i64);
    let tag = format!("{:x}", cfg.seed);
    let mut report = ChurnReport {
        existing: swamps.len() as u64,
        ..ChurnReport::default()
    };
    let mut max_index = None::<u64>;
    for s in &swamps {
        let (path, name) = match s {
            Swamp::Hyd(p) => (p.as_path(), peek_name(p)),
            Swamp::V1(v) => (v.dir.as_path(), read_meta(&v.dir).map(|m| m.swamp_name)),
        };
        if let Some(i) = name.as_deref().and_then(swamp_index) {
            max_index = Some(max_index.map_or(i, |m| m.max(i)));
        }
        let rel = path.strip_prefix(root).unwrap_or(path);
        let mut rng = Rng::new(cfg.seed ^ xxh64(rel.as_os_str().as_encoded_bytes(), 0));
        let roll = rng.f64() * 100.0;
        let (d, c, a) = (cfg.delete_percent, cfg.compact_percent, cfg.append_percent);
        match s {
            Swamp::Hyd(p) if roll < d => {
                fs::remove_file(p).map_err(|e| HydError::from(e).at(p))?;
                remove_empty_dirs(p.parent().unwrap_or(root), root);
                report.deleted += 1;
            }
            Swamp::Hyd(p) if roll < d + c => match compact(p, &mut rng, now) {
                Ok(info) => {
                    if info.removed {
                        remove_empty_dirs(p.parent().unwrap_or(root), root);
                        report.deleted += 1;
                    }
                    report.compacted += 1;
                }
                Err(HydError::Path { source, .. }) if matches!(*source, HydError::Problem(_)) => {
                    report.skipped.push(p.clone());
                }
                Err(e) => return Err(e),
            },
            Swamp::Hyd(p) if roll < d + c + a => match append_hyd(p, &mut rng, now, &tag)? {
                Some(n) => {
                    report.appended += 1;
                    report.blocks_appended += n;
                }
                None => report.skipped.push(p.clone()),
            },
            Swamp::V1(v) if roll < d => {
                fs::remove_dir_all(&v.dir).map_err(|e| HydError::from(e).at(&v.dir))?;
                remove_empty_dirs(v.dir.parent().unwrap_or(root), root);
                report.deleted += 1;
            }
            Swamp::V1(v) if roll < d + c => {
                compact_v1(v, &mut rng, now)?;
                report.compacted += 1;
            }
            Swamp::V1(v) if roll < d + c + a => {
                append_v1(v, &mut rng, now, &tag)?;
                report.appended += 1;
                report.blocks_appended += 1;
            }
            _ => {}
        }
    }

    let mut rng = Rng::new(cfg.seed ^ 0x6e65_7773_7761_6d70);
    let want = swamps.len() as f64 * cfg.new_percent / 100.0;
    let count = want.floor() as u64 + u64::from(rng.f64() < want.fract());
    let first = max_index.map_or(0, |m| m + 1);
    for i in first..first + count {
        let mut r = rng.fork(i);
        let name = swamp_name(&mut r, i);
        let class = if r.percent(90.0) {
            SizeClass::Small
        } else {
            SizeClass::Medium
        };
        let target = match class {
            SizeClass::Small => r.range(1_000, 50_000),
            _ => r.range(100_000, 2_000_000),
        };
        let path = name.hyd_path(root, &cfg.layout);
        write_hyd_swamp(&path, &name, Version::V3, class, target, &mut r, now)?;
        report.created += 1;
    }
    Ok(report)
}

/// Reads the swamp name from the first MiB of a `.hyd` file.
pub fn peek_name(path: &Path) -> Option<String> {
    let f = File::open(path).ok()?;
    scan(BufReader::new(f).take(1 << 20)).ok()?.name
}

/// The `N` of a name ending in `-N`.
pub fn swamp_index(name: &str) -> Option<u64> {
    name.rsplit_once('-')?.1.parse().ok()
}

fn class_for(len: u64) -> SizeClass {
    match len {
        0..100_000 => SizeClass::Small,
        100_000..5_000_000 => SizeClass::Medium,
        _ => SizeClass::Large,
    }
}

/// Appends a day's blocks: mostly updates, some inserts and deletes. Returns the
/// number of blocks, or `None` if the file does not load.
fn append_hyd(path: &Path, rng: &mut Rng, now: i64, tag: &str) -> Result<Option<u64>, HydError> {
    let Ok(rep) = replay_file(path) else {
        return Ok(None);
    };
    let mut w = HydWriter::open_append(path)?;
    let class = class_for(rep.len);
    let mut keys = KeySet::existing(&rep.live, tag);
    let max_blocks = (1 + rep.blocks / 5).min(20);
    let blocks = rng.range(1, max_blocks);
    for _ in 0..blocks {
        append_one_block(&mut w, &mut keys, class, rng, now).map_err(|e| e.at(path))?;
    }
    w.close(now, false).map_err(|e| e.at(path))?;
    Ok(Some(blocks))
}

/// Appends one block of about [`DEFAULT_BLOCK_SIZE`] uncompressed bytes to `w`,
/// updating `keys`. Returns the entries written.
pub fn append_one_block<W: std::io::Write + std::io::Seek>(
    w: &mut HydWriter<W>,
    keys: &mut KeySet,
    class: SizeClass,
    rng: &mut Rng,
    now: i64,
) -> Result<Vec<Entry>, HydError> {
    let mut batch = Vec::new();
    let mut size = 0usize;
    while size < DEFAULT_BLOCK_SIZE as usize {
        let tsize = class.treasure_size(rng);
        let e = keys.next_entry(rng, 70.0, 10.0, tsize, now);
        size += e.encoded_len();
        batch.push(e);
    }
    w.append_block(&batch)?;
    Ok(batch)
}

fn append_v1(v: &V1Swamp, rng: &mut Rng, now: i64, tag: &str) -> Result<(), HydError> {
    let mut meta = read_meta(&v.dir).ok_or_else(|| HydError::Invalid("bad v1 meta".into()))?;
    let mut keys = KeySet::existing(&Default::default(), tag);
    let parts: Vec<Vec<u8>> = (0..rng.range(5, 40))
        .map(|_| keys.next_entry(rng, 0.0, 0.0, 600, now).data)
        .collect();
    let name = random_uuid(rng);
    let p = v.dir.join(&name);
    fs::write(&p, encode_chunk(&parts)?).map_err(|e| HydError::from(e).at(&p))?;
    meta.updated_at = now;
    meta.kv.insert(v1::ACTUAL_FILE_KEY.into(), name);
    write_meta(&v.dir, &meta)
}

fn compact_v1(v: &V1Swamp, rng: &mut Rng, now: i64) -> Result<(), HydError> {
    let mut meta = read_meta(&v.dir).ok_or_else(|| HydError::Invalid("bad v1 meta".into()))?;
    let mut parts = Vec::new();
    for (name, _) in &v.chunks {
        let p = v.dir.join(name);
        let data = fs::read(&p).map_err(|e| HydError::from(e).at(&p))?;
        parts.extend(decode_chunk(&data).map_err(|e| e.at(&p))?);
    }
    let name = random_uuid(rng);
    let p = v.dir.join(&name);
    fs::write(&p, encode_chunk(&parts)?).map_err(|e| HydError::from(e).at(&p))?;
    for (old, _) in &v.chunks {
        let op = v.dir.join(old);
        fs::remove_file(&op).map_err(|e| HydError::from(e).at(&op))?;
    }
    meta.updated_at = now;
    meta.kv.insert(v1::ACTUAL_FILE_KEY.into(), name);
    write_meta(&v.dir, &meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::check;
    use crate::datagen::{GenConfig, generate};

    #[test]
    fn a_day_of_churn_keeps_everything_loadable() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let gen_cfg = GenConfig {
            seed: 4,
            swamps: 60,
            total_size: Some(2 << 20),
            v2_percent: 20.0,
            v1_percent: 10.0,
            layout: Layout::default(),
        };
        generate(root, &gen_cfg).unwrap();
        let before = check(root).unwrap();
        let cfg = ChurnConfig {
            seed: 11,
            append_percent: 30.0,
            compact_percent: 10.0,
            new_percent: 5.0,
            delete_percent: 5.0,
            layout: Layout::default(),
        };
        let rep = churn(root, &cfg).unwrap();
        assert_eq!(rep.existing, 60);
        assert!(
            rep.appended > 0 && rep.compacted > 0 && rep.created > 0,
            "{rep:?}"
        );
        assert!(rep.skipped.is_empty());
        let after = check(root).unwrap();
        assert!(after.failures.is_empty(), "{:?}", after.failures);
        assert_eq!(
            after.hyd_files + after.v1_swamps,
            before.hyd_files + before.v1_swamps + rep.created - rep.deleted
        );
        assert_eq!(after.compact_temps, 0);
        assert_eq!(swamp_index("users/x/swamp-42"), Some(42));
    }
}
