//! Backups taken while `hydgen live` appends blocks and compacts Swamps and rewrites V1 Swamp
//! folders (a stand-in for a running HydrAIDE server): every restored Swamp loads, and its live
//! set is one the writer logged; every restored V1 folder is one state the writer logged (a folder
//! that kept changing through every retry is reported as quarantined instead).

mod hydcommon;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hydcommon::*;
#[path = "../src/bin/hydgen/livelog.rs"]
#[allow(dead_code)]
mod livelog;
use hydrabackup::hyd::{live_digest, replay_file};
use livelog::{LiveEvent, read_log, v1_digest};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Kills the writer if the test fails before stopping it.
struct Writer(Option<Child>);

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits (bounded) until the writer has logged a change, so the backups overlap its work.
fn wait_for_first_change(log: &Path, writer: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if read_log(log).is_ok_and(|ev| ev.iter().any(|e| e.event != "initial")) {
            return;
        }
        if let Some(st) = writer.try_wait().unwrap() {
            panic!("hydgen live exited early: {st}");
        }
        assert!(Instant::now() < deadline, "hydgen live logged no change");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn backups_during_live_writes_restore_to_logged_states() {
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 21, 80, "2M", 20, 5);
    let log = hb.path("live.jsonl");
    let stop = hb.path("stop");
    let child = Command::new(hydgen_bin())
        .args([
            "live".as_ref(),
            "--root".as_ref(),
            src.as_os_str(),
            "--seed".as_ref(),
            "7".as_ref(),
            "--stop-file".as_ref(),
            stop.as_os_str(),
            "--log".as_ref(),
            log.as_os_str(),
            "--log-all-initial".as_ref(),
            "--interval-ms".as_ref(),
            "10".as_ref(),
            "--compact-percent".as_ref(),
            "5".as_ref(),
            "--v1-percent".as_ref(),
            "25".as_ref(),
        ] as [&OsStr; 16])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hydgen live");
    let mut writer = Writer(Some(child));
    wait_for_first_change(&log, writer.0.as_mut().unwrap());

    // Two backups while it writes: a full one, then an incremental one (appended files are
    // read from where the first capture ended, compacted ones whole).
    let mut windows = Vec::new();
    let mut backups = Vec::new();
    // Per backup: V1 folders (relative paths) that kept changing through every retry.
    let mut unsettled: Vec<HashSet<String>> = Vec::new();
    for _ in 0..2 {
        let start = now_ms();
        let out = hb.backup_any(&src, &[]);
        windows.push((start, now_ms()));
        let b = out.json();
        let mut kept_changing = HashSet::new();
        for q in b["quarantine"].as_array().unwrap() {
            let reason = q["reason"].as_str().unwrap();
            assert!(reason.contains("V1 Swamp folder kept changing"), "{b:#}");
            let p = Path::new(q["path"].as_str().unwrap());
            kept_changing.insert(rel(&src, p));
        }
        out.expect(if kept_changing.is_empty() { 0 } else { 3 });
        unsettled.push(kept_changing);
        backups.push(b);
    }
    let snaps: Vec<String> = backups
        .iter()
        .map(|b| b["snapshot_id"].as_str().unwrap().to_string())
        .collect();
    std::fs::write(&stop, b"").unwrap();
    let out = writer.0.take().unwrap().wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "hydgen live failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());

    let events = read_log(&log).unwrap();
    let mut logged: HashMap<&str, HashSet<u64>> = HashMap::new();
    for e in &events {
        logged.entry(e.swamp.as_str()).or_default().insert(e.digest);
    }
    let during = |w: (u64, u64)| -> Vec<&LiveEvent> {
        events
            .iter()
            .filter(|e| e.event != "initial" && e.unix_ms >= w.0 && e.unix_ms <= w.1)
            .collect()
    };
    for (i, w) in windows.iter().enumerate() {
        let d = during(*w);
        let compactions = d.iter().filter(|e| e.event == "compact").count();
        if d.is_empty() {
            eprintln!(
                "note: backup {} did not overlap the live writer; it checks a quiet root only",
                i + 1
            );
        } else {
            eprintln!(
                "backup {}: the writer logged {} states ({} compactions) while it ran",
                i + 1,
                d.len(),
                compactions
            );
        }
    }
    // Blocks appended while the first backup ran are found by the second one as appended
    // (read from where the first capture ended), unless compacted meanwhile.
    if during(windows[0]).iter().any(|e| e.event == "append") {
        assert!(num(&backups[1], "swamps_appended") > 0, "{:#}", backups[1]);
    }

    let source_swamps = swamps(&src);
    for (i, id) in snaps.iter().enumerate() {
        let target = hb.path(&format!("restored{i}"));
        hb.restore(id, &target, &[]);
        assert_hydgen_check(&target);
        let restored = swamps(&target);
        assert_eq!(
            restored.keys().collect::<Vec<_>>(),
            source_swamps.keys().collect::<Vec<_>>(),
            "snapshot {id} holds other Swamps than the source"
        );
        let mut checked = 0;
        let mut v1_checked = 0;
        for s in restored.values() {
            match s {
                Swamp::Hyd(p) => {
                    let r = replay_file(&target.join(p))
                        .unwrap_or_else(|e| panic!("restored {p} does not load: {e}"));
                    let d = live_digest(&r.live);
                    assert!(
                        logged.get(p.as_str()).is_some_and(|set| set.contains(&d)),
                        "snapshot {id}: restored {p} ({} bytes, {} live keys) is in no state the writer logged",
                        r.len,
                        r.live.len()
                    );
                    checked += 1;
                }
                Swamp::V1(p, _) => {
                    if unsettled[i].contains(p) {
                        eprintln!("note: {p} kept changing through every retry (reported)");
                        continue;
                    }
                    let (d, _) = v1_digest(&target.join(p)).unwrap();
                    assert!(
                        logged.get(p.as_str()).is_some_and(|set| set.contains(&d)),
                        "snapshot {id}: restored V1 folder {p} is in no state the writer logged"
                    );
                    v1_checked += 1;
                }
            }
        }
        assert!(checked > 0 && v1_checked > 0);
    }
    let v1_writes = events.iter().filter(|e| e.event == "v1-write").count();
    assert!(v1_writes > 0, "the writer rewrote no V1 folder");
    for (i, w) in windows.iter().enumerate() {
        let n = during(*w).iter().filter(|e| e.event == "v1-write").count();
        eprintln!(
            "backup {}: {n} V1 folder states written while it ran",
            i + 1
        );
    }
}

/// A V1 folder rewritten while its files are being read (HydrAIDE writes a new chunk file and
/// points `meta` at it) is read again: what is stored is one state the folder really had, never
/// old chunks with the new `meta`. The backup pauses after reading the folder's first file.
#[test]
fn a_v1_folder_rewritten_mid_capture_is_read_again_as_one_state() {
    use hydrabackup::hyd::v1::{ACTUAL_FILE_KEY, encode_chunk, read_meta, write_meta};
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 59, 12, "300K", 0, 40);
    let sync = hb.path("sync");
    std::fs::create_dir_all(&sync).unwrap();
    let mut c = hb.command();
    // The first time the hook point is reached, the backup says where and waits for `go`.
    let (reached, go) = (sync.join("reached"), sync.join("go"));
    c.env(
        "HYDRABACKUP_TEST_HOOK",
        format!(
            "v1-mid-read:[ -e '{r}' ] || {{ printf %s \"$HYDRABACKUP_HOOK_PATH\" > '{r}.tmp' && mv '{r}.tmp' '{r}'; while [ ! -e '{g}' ]; do sleep 0.005; done; }}",
            r = reached.display(),
            g = go.display()
        ),
    )
    .args(["backup".as_ref(), "--json".as_ref(), src.as_os_str()] as [&OsStr; 3])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut backup = Writer(Some(c.spawn().expect("start backup")));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !sync.join("reached").exists() {
        if let Some(st) = backup.0.as_mut().unwrap().try_wait().unwrap() {
            panic!("backup ended before reading a V1 folder: {st}");
        }
        assert!(Instant::now() < deadline, "the backup never paused");
        std::thread::sleep(Duration::from_millis(5));
    }
    let dir = std::path::PathBuf::from(std::fs::read_to_string(sync.join("reached")).unwrap());
    let folder = rel(&src, &dir);
    let before = v1_digest(&dir).unwrap().0;
    // HydrAIDE's V1 write: a new chunk file, then `meta` naming it as the current one.
    let chunk = "0badc0de-0000-4000-8000-000000000001";
    std::fs::write(dir.join(chunk), encode_chunk(&[vec![7u8; 700]]).unwrap()).unwrap();
    let mut meta = read_meta(&dir).unwrap();
    meta.kv.insert(ACTUAL_FILE_KEY.into(), chunk.into());
    write_meta(&dir, &meta).unwrap();
    let after = v1_digest(&dir).unwrap().0;
    std::fs::write(sync.join("go"), b"").unwrap();
    let out = backup.0.take().unwrap().wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let target = hb.path("restored");
    hb.restore("latest", &target, &[]);
    let restored = v1_digest(&target.join(&folder)).unwrap().0;
    assert!(
        restored == after || restored == before,
        "{folder} was stored as a mix of two states"
    );
    assert_eq!(restored, after, "the retry reads the folder as it is now");
    assert_eq!(hb.show("latest")[&folder]["decision"], "new");
}
