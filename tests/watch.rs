//! `hydrabackup watch`: the real binary watching a data root that `hydgen live` writes to.
//! Every wait here is on observable state (a cycle line on the `--json` stream, a process
//! exit) with a generous deadline; instants that must be exact use test hooks and crash points.

mod hydcommon;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hydcommon::*;
#[path = "../src/bin/hydgen/livelog.rs"]
#[allow(dead_code)]
mod livelog;
use hydrabackup::hyd::{live_digest, replay_file};
use serde_json::Value;

/// Deadline of every wait (a safety net on a loaded machine, never what makes a test pass).
const WAIT: Duration = Duration::from_secs(180);

/// A running `watch --json`, its lines read on a thread; killed on drop.
struct Watch {
    child: Child,
    lines: Receiver<Value>,
    seen: Vec<Value>,
    stderr: PathBuf,
}

impl Watch {
    /// Starts `watch --json ARGS...` from `cmd` (its repository and password already set).
    fn start(mut cmd: Command, args: &[&OsStr], stderr: PathBuf) -> Watch {
        cmd.arg("watch")
            .arg("--json")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap());
        let mut child = cmd.spawn().expect("start watch");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { return };
                let v: Value = serde_json::from_str(&l)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        Watch {
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The next cycle line for which `pred` holds (earlier lines are kept in `seen`).
    #[track_caller]
    fn cycle(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if v["message_type"] == "cycle" && pred(&v) {
                        return v;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no cycle {what} within {WAIT:?}; lines: {:#?}\n{}",
                    self.seen,
                    self.log()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "watch ended before a cycle {what}: {:?}; lines: {:#?}\n{}",
                    self.child.try_wait(),
                    self.seen,
                    self.log()
                ),
            }
        }
    }

    /// Sends SIGTERM, waits for the exit; returns its status and the lines not seen yet.
    fn term(&mut self) -> (ExitStatus, Vec<Value>) {
        // SAFETY: kill(2) on our own child's pid with a valid signal.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.finish()
    }

    /// Waits for the exit; returns its status and the lines not seen yet.
    fn finish(&mut self) -> (ExitStatus, Vec<Value>) {
        let st = self.child.wait().unwrap();
        let rest: Vec<Value> = self.lines.iter().collect();
        self.seen.extend(rest.iter().cloned());
        (st, rest)
    }

    /// Snapshot ids of every cycle that wrote one, in order.
    fn written(&self) -> Vec<String> {
        self.seen
            .iter()
            .filter_map(|v| v["snapshot_id"].as_str().map(str::to_string))
            .collect()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `hydgen live` for `ops` operations (appends, and compactions at `compact` percent).
fn live(root: &Path, seed: u64, ops: u32, compact: u32, log: Option<&Path>) {
    let mut c = Command::new(hydgen_bin());
    c.args(["live", "--root"])
        .arg(root)
        .args(["--seed", &seed.to_string(), "--ops", &ops.to_string()])
        .args([
            "--interval-ms",
            "20",
            "--compact-percent",
            &compact.to_string(),
        ]);
    if let Some(l) = log {
        c.arg("--log").arg(l).arg("--log-all-initial");
    }
    run_command(c).expect(0);
}

/// The live set digest of every `.hyd` Swamp under `root`, by relative path.
fn digests(root: &Path) -> BTreeMap<String, u64> {
    swamps(root)
        .into_values()
        .filter_map(|s| match s {
            Swamp::Hyd(p) => {
                let r = replay_file(&root.join(&p))
                    .unwrap_or_else(|e| panic!("{p} does not load: {e}"));
                Some((p, live_digest(&r.live)))
            }
            Swamp::V1(..) => None,
        })
        .collect()
}

/// Restores `snap` and asserts its Swamps hold exactly what `root` holds now.
#[track_caller]
fn assert_restores_to(hb_cmd: impl Fn() -> Command, snap: &str, root: &Path, target: &Path) {
    let mut c = hb_cmd();
    c.args(["restore", snap, "--json", "--target"]).arg(target);
    run_command(c).expect(0);
    assert_hydgen_check(target);
    assert_eq!(digests(target), digests(root), "snapshot {snap}");
}

/// A cycle's end as unix milliseconds minus its duration: when it started.
fn started_ms(c: &Value) -> u64 {
    let end: jiff::Timestamp = c["time"].as_str().unwrap().parse().unwrap();
    (end.as_millisecond() as f64 - c["duration_secs"].as_f64().unwrap() * 1000.0) as u64
}

/// With the writer stopped at `quiet_since` (unix ms), waits for a cycle that started later
/// and found nothing to write: everything written before is in the last snapshot.
#[track_caller]
fn wait_all_captured(w: &mut Watch, quiet_since: u64) -> Value {
    w.cycle("that found nothing new after the writer stopped", |c| {
        c["error"].is_null() && c["snapshot_id"].is_null() && started_ms(c) > quiet_since
    })
}

/// Every change `hydgen live` makes (appends and compactions) is in a snapshot within two
/// intervals (plus the cycles' own time), every snapshot the watcher wrote restores to states
/// the writer logged, and the last one equals the root.
#[test]
fn live_changes_are_captured_within_two_intervals_and_restore_to_logged_states() {
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 41, 60, "2M", 20, 0);
    let log = hb.path("live.jsonl");
    let interval = 1.0;
    let mut w = Watch::start(
        hb.command(),
        &[
            os("--interval"),
            os("1s"),
            os("--rescan"),
            os("2s"),
            src.as_os_str(),
        ],
        hb.path("watch.err"),
    );
    let first = w.cycle("writing the first snapshot", |c| {
        c["snapshot_id"].is_string()
    });
    assert_eq!(first["trigger"], "start");
    assert_eq!(num(&first, "swamps_captured"), 60);
    live(&src, 5, 150, 15, Some(&log));
    let quiet = now_ms();
    wait_all_captured(&mut w, quiet);
    let (st, rest) = w.term();
    assert!(st.success(), "{st}");
    let summary = rest.last().expect("a summary line");
    assert_eq!(summary["message_type"], "summary");
    assert_eq!(num(summary, "failed_cycles"), 0);

    // The RPO: a change waits for the next tick (one interval, or the end of a running cycle
    // plus one interval), then for the cycle that captures it.
    let cycles: Vec<&Value> = w
        .seen
        .iter()
        .filter(|v| v["message_type"] == "cycle")
        .collect();
    let mut captured = 0;
    for pair in cycles.windows(2) {
        let (prev, c) = (pair[0], pair[1]);
        if c["snapshot_id"].is_null() {
            continue;
        }
        captured += num(c, "swamps_captured");
        let bound = 2.0 * interval
            + c["duration_secs"].as_f64().unwrap()
            + prev["duration_secs"].as_f64().unwrap()
            + 0.5;
        let lag = c["captured_lag_secs"].as_f64().unwrap();
        assert!(lag <= bound, "cycle lag {lag} s over {bound} s: {c:#}");
    }
    assert!(captured > 0, "no cycle captured the writer's changes");

    let events = livelog::read_log(&log).unwrap();
    let compactions = events.iter().filter(|e| e.event == "compact").count();
    assert!(compactions > 0, "the writer compacted nothing");
    let mut logged: HashMap<&str, HashSet<u64>> = HashMap::new();
    for e in &events {
        logged.entry(e.swamp.as_str()).or_default().insert(e.digest);
    }
    let snaps = w.written();
    assert!(snaps.len() >= 2, "{snaps:?}");
    for (i, id) in snaps.iter().enumerate() {
        let target = hb.path(&format!("restored{i}"));
        hb.restore(id, &target, &[]);
        assert_hydgen_check(&target);
        for (p, d) in digests(&target) {
            assert!(
                logged.get(p.as_str()).is_some_and(|s| s.contains(&d)),
                "snapshot {id}: {p} is in no state the writer logged"
            );
        }
    }
    assert_restores_to(
        || hb.command(),
        snaps.last().unwrap(),
        &src,
        &hb.path("last"),
    );
    // Each snapshot's parent is the one before it.
    let listed = hb.json(&["snapshots"]);
    let parents: HashMap<&str, &str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| Some((s["id"].as_str()?, s["parent"].as_str()?)))
        .collect();
    for pair in snaps.windows(2) {
        assert_eq!(parents.get(pair[1].as_str()), Some(&pair[0].as_str()));
    }
}

/// Nothing changed: rescans write nothing. A Swamp deleted is gone from the next snapshot, and
/// recreated it is back in the one after.
#[test]
fn idle_rescans_write_nothing_and_a_swamp_deleted_and_recreated_is_followed() {
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 43, 20, "500K", 0, 0);
    let mut w = Watch::start(
        hb.command(),
        &[
            os("--interval"),
            os("1s"),
            os("--rescan"),
            os("1s"),
            os("--lag"),
            src.as_os_str(),
        ],
        hb.path("watch.err"),
    );
    let first = w.cycle("writing the first snapshot", |c| {
        c["snapshot_id"].is_string()
    });
    for _ in 0..2 {
        let c = w.cycle("rescanning", |c| c["trigger"] == "rescan");
        assert_eq!(c["walk"], "full", "{c:#}");
        assert!(c["snapshot_id"].is_null(), "{c:#}");
        assert!(c["error"].is_null(), "{c:#}");
    }
    assert_eq!(hb.json(&["snapshots"]).as_array().unwrap().len(), 1);

    let (rel, _) = swamps(&src).into_iter().next().unwrap();
    let file = src.join(&rel);
    let kept = hb.path("kept.hyd");
    std::fs::rename(&file, &kept).unwrap();
    let gone = w.cycle("noting the deleted Swamp", |c| c["snapshot_id"].is_string());
    assert_eq!(num(&gone, "swamps_gone"), 1, "{gone:#}");

    // An event on the root itself (its times changed) walks everything, and says so.
    std::fs::File::open(&src)
        .unwrap()
        .set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    let root = w.cycle("walking after an event on the root", |c| {
        c["error"].is_null() && lag_paths(c).contains(&PathBuf::new())
    });
    assert_eq!(root["walk"], "full", "{root:#}");
    // `--lag` names the deleted file, captured by this cycle.
    let lag = gone["lag"].as_array().unwrap();
    assert!(
        lag.iter()
            .any(|l| l["path"] == rel.as_str() && l["captured"] == true),
        "{gone:#}"
    );
    assert_eq!(gone["parent"], first["snapshot_id"]);
    std::fs::copy(&kept, &file).unwrap();
    let back = w.cycle("capturing the recreated Swamp", |c| {
        c["snapshot_id"].is_string()
    });
    assert_eq!(num(&back, "swamps_captured"), 1, "{back:#}");
    let (st, _) = w.term();
    assert!(st.success(), "{st}");
    assert_restores_to(
        || hb.command(),
        back["snapshot_id"].as_str().unwrap(),
        &src,
        &hb.path("r"),
    );
    let mid = hb.path("mid");
    hb.restore(gone["snapshot_id"].as_str().unwrap(), &mid, &[]);
    assert!(!mid.join(&rel).exists());
}

/// SIGTERM in the middle of a cycle (sent by a hook at its start): the cycle finishes and
/// writes its snapshot, then the watcher exits 0.
#[test]
fn sigterm_finishes_the_cycle_in_progress_then_exits_0() {
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 47, 10, "300K", 0, 0);
    let mut c = hb.command();
    c.env("HYDRABACKUP_TEST_HOOK", "watch-cycle:kill -TERM $PPID");
    let metrics = hb.path("watch.prom");
    let mut w = Watch::start(
        c,
        &[
            os("--interval"),
            os("1s"),
            os("--metrics-file"),
            metrics.as_os_str(),
            src.as_os_str(),
        ],
        hb.path("watch.err"),
    );
    let first = w.cycle("during which SIGTERM came", |_| true);
    let id = first["snapshot_id"]
        .as_str()
        .expect("the cycle wrote its snapshot");
    let (st, rest) = w.finish();
    assert_eq!(st.code(), Some(0), "{st}");
    assert_eq!(rest.len(), 1, "one more line, the summary: {rest:#?}");
    assert_eq!(num(&rest[0], "snapshots"), 1);
    // The metrics file shows the cycle (written after each cycle, and at exit).
    let text = std::fs::read_to_string(&metrics).unwrap();
    let sample = |name: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        assert!(line.contains("command=\"watch\""), "{line}");
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(sample("hydrabackup_watch_cycles_total"), 1.0);
    assert_eq!(sample("hydrabackup_watch_snapshots_total"), 1.0);
    assert_eq!(
        sample("hydrabackup_watch_swamps_captured"),
        num(&first, "swamps_captured") as f64
    );
    assert_eq!(
        sample("hydrabackup_watch_bytes_stored"),
        num(&first, "bytes_stored") as f64
    );
    assert_eq!(sample("hydrabackup_watch_pending_paths"), 0.0);
    assert_eq!(sample("hydrabackup_success"), 1.0);
    let listed = hb.json(&["snapshots"]);
    assert_eq!(listed[0]["id"], id);
    assert_restores_to(|| hb.command(), id, &src, &hb.path("r"));
}

/// Killed (-9) just before storing a snapshot: the next start captures what was missed, with
/// the last stored snapshot as parent, and the repository verifies.
#[test]
fn killed_watcher_resumes_from_the_last_snapshot() {
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 53, 30, "1M", 20, 0);
    let mut c = hb.command();
    c.env("HYDRABACKUP_FAILPOINT", "before-snapshot:2");
    let mut w = Watch::start(
        c,
        &[os("--interval"), os("1s"), src.as_os_str()],
        hb.path("watch.err"),
    );
    let first = w.cycle("writing the first snapshot", |c| {
        c["snapshot_id"].is_string()
    });
    live(&src, 9, 20, 20, None);
    let (st, _) = w.finish();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(libc::SIGKILL), "{st}");
    assert_eq!(hb.json(&["snapshots"]).as_array().unwrap().len(), 1);

    let mut w = Watch::start(
        hb.command(),
        &[os("--interval"), os("1s"), src.as_os_str()],
        hb.path("watch2.err"),
    );
    let again = w.cycle("after the restart", |_| true);
    assert_eq!(again["trigger"], "start");
    assert_eq!(again["parent"], first["snapshot_id"]);
    assert!(num(&again, "swamps_captured") > 0, "{again:#}");
    let (st, _) = w.term();
    assert!(st.success());
    hb.run(&["verify"]).expect(0);
    assert_restores_to(
        || hb.command(),
        again["snapshot_id"].as_str().unwrap(),
        &src,
        &hb.path("r"),
    );
}

/// Every folder under `dir` (itself included) set to `mode`.
fn chmod_dirs(dir: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            chmod_dirs(&e.path(), mode);
        }
    }
}

/// The repository unwritable: cycles fail, say so and back off, the changes stay owed (and
/// their age grows); writable again, the next cycle stores them.
#[test]
fn unwritable_repository_is_retried_with_back_off_and_nothing_is_lost() {
    // Permission bits do not stop root: the watcher runs as `nobody` when we are root.
    let hb = match Hb::unprivileged() {
        Some(hb) => hb,
        None if !is_root() => Hb::new(),
        None => {
            eprintln!("skipped: root cannot switch to nobody here, and bits do not stop root");
            return;
        }
    };
    let src = hb.path("data");
    gen_root(&src, 59, 30, "1M", 20, 0);
    let mut w = Watch::start(
        hb.command(),
        &[os("--interval"), os("1s"), src.as_os_str()],
        hb.path("watch.err"),
    );
    let first = w.cycle("writing the first snapshot", |c| {
        c["snapshot_id"].is_string()
    });
    chmod_dirs(&hb.repo, 0o555);
    live(&src, 11, 10, 0, None);
    let f1 = w.cycle("failing", |c| c["error"].is_string());
    let f2 = w.cycle("failing again", |c| c["error"].is_string());
    let (r1, r2) = (
        f1["retry_in_secs"].as_f64().unwrap(),
        f2["retry_in_secs"].as_f64().unwrap(),
    );
    assert!(r2 > r1, "back-off grows: {r1} then {r2}");
    assert!(num(&f2, "pending_paths") > 0, "{f2:#}");
    assert!(
        f2["oldest_uncaptured_secs"].as_f64().unwrap()
            > f1["oldest_uncaptured_secs"].as_f64().unwrap()
    );
    assert!(
        w.log()
            .contains("cycle failed; its changes are kept and retried")
    );
    assert_eq!(hb.json(&["snapshots"]).as_array().unwrap().len(), 1);
    chmod_dirs(&hb.repo, 0o755);
    let ok = w.cycle("storing what was owed", |c| c["snapshot_id"].is_string());
    assert_eq!(ok["parent"], first["snapshot_id"]);
    assert_eq!(num(&ok, "pending_paths"), 0);
    let (st, _) = w.term();
    assert!(st.success());
    hb.run(&["verify"]).expect(0);
    assert_restores_to(
        || hb.command(),
        ok["snapshot_id"].as_str().unwrap(),
        &src,
        &hb.path("r"),
    );
}

/// A cycle whose lock could not be removed (the lock folder turned read-only mid-cycle, by a
/// hook) leaves a lock of the live watcher; once the repository is writable again the watcher
/// removes it, so a `prune` between cycles is not refused.
#[test]
fn a_lock_left_by_a_failed_cycle_is_removed_and_never_blocks_a_prune() {
    let hb = match Hb::unprivileged() {
        Some(hb) => hb,
        None if !is_root() => Hb::new(),
        None => {
            eprintln!("skipped: root cannot switch to nobody here, and bits do not stop root");
            return;
        }
    };
    let src = hb.path("data");
    gen_root(&src, 73, 10, "300K", 0, 0);
    let locks = hb.repo.join("locks");
    let marker = hb.path("chmodded");
    let mut c = hb.command();
    c.env(
        "HYDRABACKUP_TEST_HOOK",
        format!(
            "open:[ -e '{m}' ] || {{ chmod 555 '{l}' && touch '{m}'; }}",
            m = marker.display(),
            l = locks.display()
        ),
    );
    let mut w = Watch::start(
        c,
        &[os("--interval"), os("1s"), src.as_os_str()],
        hb.path("watch.err"),
    );
    w.cycle("writing the first snapshot", |c| {
        c["snapshot_id"].is_string()
    });
    assert!(marker.exists());
    assert_eq!(
        std::fs::read_dir(&locks).unwrap().count(),
        1,
        "the lock stayed"
    );
    live(&src, 19, 5, 0, None);
    w.cycle("failing to lock", |c| c["error"].is_string());
    chmod_dirs(&locks, 0o755);
    w.cycle("storing what was owed", |c| c["snapshot_id"].is_string());
    // Between cycles (nothing changes now) the watcher holds no lock and left none.
    let pruned = hb.run(&["prune", "--yes"]);
    assert_eq!(pruned.code, 0, "{pruned:?}");
    let (st, _) = w.term();
    assert!(st.success());
    assert_eq!(std::fs::read_dir(&locks).unwrap().count(), 0);
}

/// `hydrabackup serve --no-auth` on `listen`; returns it and its `http://ADDR`.
fn serve(hb: &Hb, listen: &str) -> (Child, String) {
    let mut c = hb.command();
    c.args(["serve", "--no-auth", "--listen", listen, "--path"])
        .arg(hb.path("srv"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = c.spawn().expect("serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, base)
}

/// A REST server stopped under the watcher and started again on the same address: cycles
/// fail meanwhile, then the owed changes are stored.
#[test]
fn rest_server_stopped_and_restarted() {
    let hb = Hb::new();
    std::fs::create_dir_all(hb.path("srv")).unwrap();
    let src = hb.path("data");
    gen_root(&src, 61, 20, "500K", 20, 0);
    let (mut server, base) = serve(&hb, "127.0.0.1:0");
    let loc = format!("rest:{base}/repo");
    let cmd = || {
        let mut c = hb.command();
        c.env("HYDRABACKUP_REPOSITORY", &loc);
        c
    };
    run_command({
        let mut c = cmd();
        c.arg("init");
        c
    })
    .expect(0);
    let mut w = Watch::start(
        cmd(),
        &[os("--interval"), os("1s"), src.as_os_str()],
        hb.path("watch.err"),
    );
    let first = w.cycle("writing the first snapshot", |c| {
        c["snapshot_id"].is_string()
    });
    server.kill().unwrap();
    server.wait().unwrap();
    live(&src, 13, 10, 0, None);
    let failed = w.cycle("failing while the server is down", |c| {
        c["error"].is_string()
    });
    assert!(num(&failed, "pending_paths") > 0);
    let addr = base.split_once("://").unwrap().1.to_string();
    let (mut server, _) = serve(&hb, &addr);
    let ok = w.cycle("storing what was owed", |c| c["snapshot_id"].is_string());
    assert_eq!(ok["parent"], first["snapshot_id"]);
    let (st, _) = w.term();
    assert!(st.success());
    assert_restores_to(
        cmd,
        ok["snapshot_id"].as_str().unwrap(),
        &src,
        &hb.path("r"),
    );
    let _ = server.kill();
    let _ = server.wait();
}

/// `forget --prune` run again and again while the watcher captures a live writer: neither
/// stops the other for good, the repository verifies and the last snapshot equals the root.
#[test]
fn forget_and_prune_run_meanwhile() {
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 67, 40, "1M", 20, 0);
    let mut w = Watch::start(
        hb.command(),
        &[
            os("--interval"),
            os("1s"),
            os("--rescan"),
            os("2s"),
            src.as_os_str(),
        ],
        hb.path("watch.err"),
    );
    w.cycle("writing the first snapshot", |c| {
        c["snapshot_id"].is_string()
    });
    let mut writer = Command::new(hydgen_bin())
        .args(["live", "--root"])
        .arg(&src)
        .args(["--seed", "17", "--ops", "400", "--interval-ms", "10"])
        .args(["--compact-percent", "10"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut pruned = 0;
    let mut refused = 0;
    loop {
        let done = writer.try_wait().unwrap().is_some();
        let out = hb.run(&["forget", "--keep-last", "2", "--prune", "--yes", "--json"]);
        match out.code {
            0 => pruned += 1,
            // The watcher's shared lock while a cycle writes.
            11 => refused += 1,
            c => panic!("forget --prune exited {c}: {out:?}"),
        }
        if done {
            break;
        }
    }
    assert!(writer.wait().unwrap().success());
    let quiet = now_ms();
    let last = wait_all_captured(&mut w, quiet);
    let (st, _) = w.term();
    assert!(st.success(), "{st}");
    eprintln!("forget --prune: {pruned} ran, {refused} refused by a cycle's lock");
    assert!(pruned > 0);
    hb.run(&["verify", "--read-data"]).expect(0);
    let latest = last["parent"].as_str().expect("the last snapshot");
    assert_restores_to(|| hb.command(), latest, &src, &hb.path("r"));
}

/// `forget --policy` tiers thin a history of snapshots taken every 10 s: everything within a
/// minute of the newest, then one per minute for five minutes.
#[test]
fn forget_policy_tiers_thin_ten_second_snapshots() {
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 71, 3, "50K", 0, 0);
    let newest: jiff::Timestamp = "2026-11-20T12:00:00Z".parse().unwrap();
    for k in 0..30 {
        let t = newest
            .checked_sub(jiff::SignedDuration::from_secs(10 * k))
            .unwrap();
        hb.backup(&src, &["--time", &t.to_string()]);
    }
    let mut c = hb.command();
    c.env("TZ", "UTC").args([
        "forget",
        "--policy",
        "1min:all,5min:1min",
        "--yes",
        "--json",
    ]);
    let v = run_command(c).expect(0).json();
    // 12:00:00 back to 11:59:00 (7), then the newest of 11:58, 11:57, 11:56 and 11:55.
    assert_eq!((num(&v, "kept"), num(&v, "removed")), (11, 19), "{v:#}");
    let mut kept: Vec<String> = hb
        .json(&["snapshots"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["time"].as_str().unwrap()[11..19].to_string())
        .collect();
    kept.sort();
    assert_eq!(
        kept,
        [
            "11:55:50", "11:56:50", "11:57:50", "11:58:50", "11:59:00", "11:59:10", "11:59:20",
            "11:59:30", "11:59:40", "11:59:50", "12:00:00"
        ]
    );
    let bad = hb.run(&["forget", "--policy", "1d:1m", "--yes"]);
    assert!(
        bad.code == 1 && bad.stderr.contains("minutes are `min`"),
        "{bad:?}"
    );
}

/// More events than the kernel queues while the watcher is stopped (SIGSTOP): the queue
/// overflows, the watcher says so and walks everything, and the next snapshot holds every
/// file made meanwhile.
#[test]
fn event_queue_overflow_falls_back_to_a_scan() {
    let max: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .map_or(usize::MAX, |s| s.trim().parse().unwrap_or(usize::MAX));
    if max > 200_000 {
        eprintln!("skipped: the kernel queues {max} events; too many to overflow here");
        return;
    }
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 79, 5, "100K", 0, 0);
    let mut w = Watch::start(
        hb.command(),
        &[
            os("--interval"),
            os("1s"),
            os("--rescan"),
            os("1h"),
            src.as_os_str(),
        ],
        hb.path("watch.err"),
    );
    w.cycle("writing the first snapshot", |c| {
        c["snapshot_id"].is_string()
    });
    let pid = w.child.id() as i32;
    // SAFETY: kill(2) on our own child's pid with valid signals.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let n = max + 1000;
    for i in 0..n {
        std::fs::write(src.join(format!("flood-{i}")), b"").unwrap();
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    // No rescan is due (--rescan 1h): the overflow alone makes a cycle walk everything; after
    // it the last snapshot holds the whole flood.
    let full = w.cycle("walking everything after the overflow", |c| {
        c["walk"] == "full" && c["trigger"] != "start"
    });
    assert!(full["error"].is_null(), "{full:#}");
    assert!(
        w.log()
            .contains("file-system event queue overflowed; scanning everything"),
        "{}",
        w.log()
    );
    let (st, _) = w.term();
    assert!(st.success());
    let listed = hb.json(&["ls", "latest"]);
    let text = listed.to_string();
    assert!(text.contains(&format!("flood-{}", n - 1)));
}

/// The paths a cycle's `--lag` list names (captured ones).
fn lag_paths(c: &Value) -> Vec<PathBuf> {
    c["lag"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["captured"] == true)
        .map(|l| PathBuf::from(l["path"].as_str().unwrap()))
        .collect()
}

/// Between rescans a cycle walks only what events named: a grown Swamp costs its folders'
/// listings and one stat per path component, not a walk of the root; a folder moved in with
/// Swamps inside and a Swamp deleted are followed the same way. After these changes, the
/// watcher's snapshot is exactly what a full `backup` of the unchanged root writes against it:
/// same tree, same name index, same catalogue, same totals.
#[test]
fn a_cycle_walks_only_the_paths_events_named_and_equals_a_full_backup() {
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 83, 60, "600K", 20, 10);
    let mut w = Watch::start(
        hb.command(),
        &[
            os("--interval"),
            os("1s"),
            os("--rescan"),
            os("1h"),
            os("--lag"),
            src.as_os_str(),
        ],
        hb.path("watch.err"),
    );
    let first = w.cycle("writing the first snapshot", |c| {
        c["snapshot_id"].is_string()
    });
    assert_eq!(first["walk"], "full", "{first:#}");
    let full = num(&first, "entries_examined");
    assert!(full > 60, "{first:#}");

    // One grown Swamp (a .hyd file, three levels down): its path is all the walk examines.
    let (grown, _) = swamps(&src)
        .into_iter()
        .find(|(p, s)| matches!(s, Swamp::Hyd(_)) && p.ends_with(".hyd"))
        .unwrap();
    let file = src.join(&grown);
    // Touching it is a change (new times): it is read again against its parent copy.
    let t = std::fs::File::options().append(true).open(&file).unwrap();
    t.set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    drop(t);
    let one = w.cycle("capturing the touched Swamp", |c| {
        c["error"].is_null() && !lag_paths(c).is_empty()
    });
    assert_eq!(one["walk"], "dirty", "{one:#}");
    let named = lag_paths(&one);
    assert_eq!(named, vec![PathBuf::from(&grown)], "{one:#}");
    let depth = Path::new(&grown).components().count() as u64;
    assert_eq!(num(&one, "entries_examined"), depth, "{one:#}");
    assert_eq!(num(&one, "folders_listed"), depth, "{one:#}");

    // A folder made elsewhere, two Swamps inside, moved in: one event names it, and it is
    // walked whole.
    let staging = hb.path("staging");
    std::fs::create_dir_all(staging.join("inner")).unwrap();
    let two: Vec<String> = swamps(&src)
        .into_iter()
        .filter(|(p, s)| matches!(s, Swamp::Hyd(_)) && *p != grown)
        .map(|(p, _)| p)
        .take(2)
        .collect();
    for (i, p) in two.iter().enumerate() {
        std::fs::copy(src.join(p), staging.join("inner").join(format!("s{i}.hyd"))).unwrap();
    }
    std::fs::rename(&staging, src.join("moved-in")).unwrap();
    let moved = w.cycle("capturing the folder moved in", |c| {
        c["error"].is_null() && lag_paths(c).contains(&PathBuf::from("moved-in"))
    });
    assert_eq!(moved["walk"], "dirty", "{moved:#}");
    assert_eq!(num(&moved, "swamps_captured"), 2, "{moved:#}");
    assert!(num(&moved, "entries_examined") < full / 4, "{moved:#}");

    // A Swamp deleted.
    std::fs::remove_file(src.join(&two[0])).unwrap();
    let gone = w.cycle("noting the deleted Swamp", |c| {
        c["error"].is_null() && lag_paths(c).contains(&PathBuf::from(&two[0]))
    });
    assert_eq!(gone["walk"], "dirty", "{gone:#}");
    assert_eq!(num(&gone, "swamps_gone"), 1, "{gone:#}");
    let (st, _) = w.term();
    assert!(st.success(), "{st}");

    // The last snapshot against a full backup of the same root with it as parent.
    let last = w.written().last().unwrap().clone();
    let fresh = hb.backup(&src, &["--parent", &last]);
    let fresh_id = fresh["snapshot_id"].as_str().unwrap();
    let (a, b) = (
        hb.json(&["cat", "snapshot", &last]),
        hb.json(&["cat", "snapshot", fresh_id]),
    );
    assert_eq!(a["tree"], b["tree"]);
    assert_eq!(a["names"], b["names"]);
    assert_eq!(a["catalogue"], b["catalogue"]);
    for k in ["total_bytes", "dirs"] {
        assert_eq!(a["summary"][k], b["summary"][k], "{k}");
    }
    let files = |s: &Value| {
        ["files_new", "files_changed", "files_unchanged"]
            .iter()
            .map(|k| num(&s["summary"], k))
            .sum::<u64>()
    };
    assert_eq!(files(&a), files(&b));
    assert_eq!(num(&b["summary"], "files_read"), 0, "{b:#}");
    assert_restores_to(|| hb.command(), &last, &src, &hb.path("r"));
}
