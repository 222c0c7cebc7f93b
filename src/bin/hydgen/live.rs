//! A stand-in for a running HydrAIDE server: keeps appending blocks to `.hyd`
//! files and now and then compacts one (write `.compact`, rename over), and
//! rewrites V1 Swamp folders (a new chunk file, `meta` rewritten, old chunks
//! removed now and then), until a stop file appears or a number of operations is
//! done.
//!
//! Every state it leaves a file in is logged as one JSON line ([`LiveEvent`]):
//! the file's length and a digest of its live set. A copy taken while this runs
//! is correct if, cut to its loadable prefix, it matches one logged state. For a
//! V1 folder every state between two of its file operations is logged with
//! [`v1_digest`] of the folder; a copy of the folder is correct if its digest is
//! logged.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::churn::append_one_block;
use crate::datagen::{KeySet, SizeClass};
use crate::livelog::{LiveEvent, v1_digest};
use hydrabackup::hyd::HydError;
use hydrabackup::hyd::replay::{LiveSet, apply_entries, live_digest, replay_file};
use hydrabackup::hyd::rng::Rng;
use hydrabackup::hyd::v1::{ACTUAL_FILE_KEY, META_FILE, encode_chunk, random_uuid, read_meta};
use hydrabackup::hyd::walk::{Found, walk_root};
use hydrabackup::hyd::writer::{HydWriter, write_compacted};

/// Settings of [`live`].
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Seed for the choice of swamps and contents.
    pub seed: u64,
    /// Stop once this file exists.
    pub stop_file: Option<PathBuf>,
    /// Stop after this many operations.
    pub ops: Option<u64>,
    /// JSON-lines log to append to.
    pub log: Option<PathBuf>,
    /// Pause between operations.
    pub interval: Duration,
    /// Percentage of operations that compact a swamp instead of appending.
    pub compact_percent: f64,
    /// Most blocks appended by one operation.
    pub max_blocks_per_op: u64,
    /// Log the initial state of every `.hyd` file before starting (otherwise a
    /// file's initial state is logged when it is first touched).
    pub log_all_initial: bool,
    /// Percentage of operations that rewrite a V1 Swamp folder (when there are any).
    pub v1_percent: f64,
}

impl Default for LiveConfig {
    fn default() -> LiveConfig {
        LiveConfig {
            seed: 0,
            stop_file: None,
            ops: None,
            log: None,
            interval: Duration::from_millis(20),
            compact_percent: 3.0,
            max_blocks_per_op: 3,
            log_all_initial: false,
            v1_percent: 0.0,
        }
    }
}

/// What [`live`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveReport {
    /// Operations done.
    pub ops: u64,
    /// Blocks appended.
    pub blocks: u64,
    /// Compactions done.
    pub compactions: u64,
    /// Distinct swamps touched.
    pub swamps_touched: u64,
    /// V1 folder rewrites done.
    pub v1_rewrites: u64,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

struct Slot {
    name: String,
    keys: KeySet,
    live: LiveSet,
    class: SizeClass,
    writer: Option<HydWriter<File>>,
}

struct Logger {
    file: Option<File>,
    root: PathBuf,
}

impl Logger {
    fn log(
        &mut self,
        op: u64,
        event: &str,
        path: &Path,
        len: u64,
        live: &LiveSet,
    ) -> Result<(), HydError> {
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        let rel = path.strip_prefix(&self.root).unwrap_or(path);
        let swamp = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        let ev = LiveEvent {
            op,
            event: event.to_owned(),
            swamp,
            len,
            live: live.len() as u64,
            digest: live_digest(live),
            unix_ms: (now_ns() / 1_000_000) as u64,
        };
        let mut line = ev.to_json();
        line.push('\n');
        f.write_all(line.as_bytes())?;
        Ok(())
    }
}

const MAX_OPEN_WRITERS: usize = 64;

/// Runs the live writer on the `.hyd` files under `root`.
pub fn live(root: &Path, cfg: &LiveConfig) -> Result<LiveReport, HydError> {
    let found = walk_root(root).map_err(|e| HydError::from(e).at(root))?;
    let mut files = Vec::new();
    let mut v1_dirs = Vec::new();
    for f in found {
        match f {
            Found::Hyd(p) => files.push(p),
            Found::V1(v) => v1_dirs.push(v.dir),
            _ => {}
        }
    }
    if files.is_empty() {
        return Err(HydError::Invalid(format!(
            "no .hyd files under {}",
            root.display()
        )));
    }
    let file = match &cfg.log {
        Some(p) => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| HydError::from(e).at(p))?,
        ),
        None => None,
    };
    let mut logger = Logger {
        file,
        root: root.to_path_buf(),
    };
    let mut rng = Rng::new(cfg.seed);
    let tag = format!("live{:x}", cfg.seed);
    let mut slots: BTreeMap<PathBuf, Slot> = BTreeMap::new();
    if cfg.log_all_initial {
        for p in &files {
            if let Ok(rep) = replay_file(p) {
                logger.log(0, "initial", p, rep.len, &rep.live)?;
            }
        }
    }
    // V1 states are logged from the start: every later state follows from a logged one.
    for d in &v1_dirs {
        logger.log_v1(0, "v1-initial", d)?;
    }
    let v1 = V1Writer {
        dirs: v1_dirs,
        // Files are written here, then renamed into a folder: each step is atomic.
        staging: root.with_extension("live-staging"),
        percent: cfg.v1_percent,
    };
    let mut report = LiveReport::default();
    let result = run(
        cfg,
        &Targets { files, v1 },
        &mut rng,
        &tag,
        &mut slots,
        &mut logger,
        &mut report,
    );
    // Close every writer (flushes nothing new: blocks are written whole).
    let now = now_ns();
    for (p, slot) in slots.iter_mut() {
        if let Some(w) = slot.writer.take() {
            w.close(now, false).map_err(|e| e.at(p))?;
        }
    }
    report.swamps_touched = slots.len() as u64;
    result.map(|()| report)
}

/// What the live writer works on.
struct Targets {
    files: Vec<PathBuf>,
    v1: V1Writer,
}

fn run(
    cfg: &LiveConfig,
    Targets { files, v1 }: &Targets,
    rng: &mut Rng,
    tag: &str,
    slots: &mut BTreeMap<PathBuf, Slot>,
    logger: &mut Logger,
    report: &mut LiveReport,
) -> Result<(), HydError> {
    let mut op = 0u64;
    loop {
        if cfg.stop_file.as_deref().is_some_and(Path::exists) {
            return Ok(());
        }
        if cfg.ops.is_some_and(|n| op >= n) {
            return Ok(());
        }
        op += 1;
        if !v1.dirs.is_empty() && rng.percent(v1.percent) {
            v1.rewrite(op, rng, logger)?;
            report.v1_rewrites += 1;
            report.ops = op;
            std::thread::sleep(cfg.interval);
            continue;
        }
        let Some(path) = rng.pick(files).cloned() else {
            return Ok(());
        };
        if !slots.contains_key(&path) {
            // A file that does not load (e.g. damaged on purpose) is left alone.
            let Ok(rep) = replay_file(&path) else {
                continue;
            };
            if !cfg.log_all_initial {
                logger.log(op, "initial", &path, rep.len, &rep.live)?;
            }
            let class = match rep.len {
                0..100_000 => SizeClass::Small,
                100_000..5_000_000 => SizeClass::Medium,
                _ => SizeClass::Large,
            };
            slots.insert(
                path.clone(),
                Slot {
                    name: rep.name.clone().unwrap_or_default(),
                    keys: KeySet::existing(&rep.live, tag),
                    live: rep.live,
                    class,
                    writer: None,
                },
            );
        }
        let now = now_ns();
        let open = slots.values().filter(|s| s.writer.is_some()).count();
        if open >= MAX_OPEN_WRITERS
            && let Some((p, s)) = slots
                .iter_mut()
                .find(|(p, s)| s.writer.is_some() && **p != path)
            && let Some(w) = s.writer.take()
        {
            w.close(now, false).map_err(|e| e.at(p))?;
        }
        let Some(slot) = slots.get_mut(&path) else {
            continue;
        };
        if rng.percent(cfg.compact_percent) && !slot.live.is_empty() {
            if let Some(w) = slot.writer.take() {
                w.close(now, false).map_err(|e| e.at(&path))?;
            }
            let len = write_compacted(&path, &slot.name, &slot.live, rng, now)?;
            logger.log(op, "compact", &path, len, &slot.live)?;
            report.compactions += 1;
        } else {
            let w = match slot.writer.as_mut() {
                Some(w) => w,
                None => slot.writer.insert(HydWriter::open_append(&path)?),
            };
            for _ in 0..rng.range(1, cfg.max_blocks_per_op.max(1)) {
                let batch = append_one_block(w, &mut slot.keys, slot.class, rng, now)
                    .map_err(|e| e.at(&path))?;
                apply_entries(&mut slot.live, &batch);
                logger.log(op, "append", &path, w.len(), &slot.live)?;
                report.blocks += 1;
            }
        }
        report.ops = op;
        if !cfg.interval.is_zero() {
            std::thread::sleep(cfg.interval);
        }
    }
}

impl Logger {
    fn log_v1(&mut self, op: u64, event: &str, dir: &Path) -> Result<(), HydError> {
        let (digest, len) = v1_digest(dir).map_err(|e| HydError::from(e).at(dir))?;
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        let rel = dir.strip_prefix(&self.root).unwrap_or(dir);
        let ev = LiveEvent {
            op,
            event: event.to_owned(),
            swamp: rel.to_string_lossy().into_owned(),
            len,
            live: 0,
            digest,
            unix_ms: (now_ns() / 1_000_000) as u64,
        };
        let mut line = ev.to_json();
        line.push('\n');
        f.write_all(line.as_bytes())?;
        Ok(())
    }
}

/// Rewrites V1 Swamp folders the way HydrAIDE's V1 engine does, one atomic file step at a time.
struct V1Writer {
    dirs: Vec<PathBuf>,
    staging: PathBuf,
    percent: f64,
}

impl V1Writer {
    /// Puts `data` at `to` atomically (written in the staging folder, renamed).
    fn place(&self, to: &Path, data: &[u8]) -> Result<(), HydError> {
        std::fs::create_dir_all(&self.staging).map_err(|e| HydError::from(e).at(&self.staging))?;
        let tmp = self.staging.join("file");
        std::fs::write(&tmp, data).map_err(|e| HydError::from(e).at(&tmp))?;
        std::fs::rename(&tmp, to).map_err(|e| HydError::from(e).at(to))
    }

    /// One rewrite of a random folder: a new chunk file, `meta` pointing at it, and (one time in
    /// three) the removal of the older chunks. Every state in between is logged.
    fn rewrite(&self, op: u64, rng: &mut Rng, logger: &mut Logger) -> Result<(), HydError> {
        let Some(dir) = rng.pick(&self.dirs).cloned() else {
            return Ok(());
        };
        let Some(mut meta) = read_meta(&dir) else {
            return Ok(());
        };
        let parts: Vec<Vec<u8>> = (0..rng.range(1, 6))
            .map(|_| {
                let mut p = vec![0u8; rng.range(50, 2000) as usize];
                rng.fill(&mut p);
                p
            })
            .collect();
        let name = random_uuid(rng);
        self.place(&dir.join(&name), &encode_chunk(&parts)?)?;
        logger.log_v1(op, "v1-write", &dir)?;
        meta.kv.insert(ACTUAL_FILE_KEY.to_owned(), name.clone());
        meta.updated_at = now_ns();
        self.place(
            &dir.join(META_FILE),
            &hydrabackup::hyd::gob::encode_meta(&meta),
        )?;
        logger.log_v1(op, "v1-write", &dir)?;
        if rng.below(3) == 0 {
            let mut old: Vec<_> = std::fs::read_dir(&dir)
                .map_err(|e| HydError::from(e).at(&dir))?
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .filter(|n| *n != *META_FILE && *n != *name.as_str())
                .collect();
            old.sort();
            for n in old {
                let p = dir.join(n);
                std::fs::remove_file(&p).map_err(|e| HydError::from(e).at(&p))?;
                logger.log_v1(op, "v1-write", &dir)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datagen::{GenConfig, generate};
    use crate::livelog::read_log;
    use hydrabackup::hyd::naming::Layout;
    use hydrabackup::hyd::replay::replay_bytes;
    use hydrabackup::hyd::scan::{consistent_header, scan_bytes};
    use hydrabackup::hyd::walk::hyd_files;

    #[test]
    fn json_round_trip() {
        let e = LiveEvent {
            op: 3,
            event: "append".into(),
            swamp: "12/ab\"c\\d/x.hyd".into(),
            len: 99,
            live: 4,
            digest: 0xdead_beef,
            unix_ms: 1,
        };
        assert_eq!(LiveEvent::from_json(&e.to_json()), Some(e));
        assert_eq!(LiveEvent::from_json("{}"), None);
    }

    #[test]
    fn copies_taken_while_live_match_logged_states() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        generate(
            &root,
            &GenConfig {
                seed: 2,
                swamps: 6,
                total_size: Some(200_000),
                v2_percent: 30.0,
                v1_percent: 0.0,
                layout: Layout::default(),
            },
        )
        .unwrap();
        let log = dir.path().join("live.jsonl");
        let stop = dir.path().join("stop");
        let cfg = LiveConfig {
            seed: 5,
            stop_file: Some(stop.clone()),
            ops: Some(400),
            log: Some(log.clone()),
            interval: Duration::from_millis(1),
            compact_percent: 10.0,
            max_blocks_per_op: 3,
            log_all_initial: true,
            v1_percent: 0.0,
        };
        let r2 = root.clone();
        let h = std::thread::spawn(move || live(&r2, &cfg));
        // Copy files while the writer runs; every copy must cut to a logged state.
        let mut copies = Vec::new();
        for _ in 0..30 {
            for p in hyd_files(&root).unwrap() {
                if let Ok(bytes) = std::fs::read(&p) {
                    let rel = p
                        .strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/");
                    copies.push((rel, bytes));
                }
            }
            std::thread::sleep(Duration::from_millis(3));
        }
        std::fs::write(&stop, b"").unwrap();
        let rep = h.join().unwrap().unwrap();
        assert!(rep.blocks > 0);
        let events = read_log(&log).unwrap();
        assert!(events.iter().any(|e| e.event == "append"));
        let mut checked = 0;
        for (rel, bytes) in copies {
            let s = scan_bytes(&bytes);
            assert!(
                s.problem.as_ref().is_none_or(|p| p.is_tail()),
                "{rel}: {:?}",
                s.problem
            );
            let mut copy = bytes[..s.valid_len as usize].to_vec();
            copy[..64].copy_from_slice(&consistent_header(&s).unwrap());
            let r = replay_bytes(&copy).unwrap();
            let d = live_digest(&r.live);
            assert!(
                events
                    .iter()
                    .any(|e| e.swamp == rel && e.len == s.valid_len && e.digest == d),
                "{rel} at {} not a logged state",
                s.valid_len
            );
            checked += 1;
        }
        assert!(checked > 0);
    }
}
