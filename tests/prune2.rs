//! Two-phase prune (repo-format.md §9a): prunes run while backups run and start, and no backup
//! is refused or left with a snapshot that references deleted data.
//!
//! - Seeded schedules of backups (changing data) and prunes (`--keep-delete 0s`, some with
//!   `forget`) started at random offsets, with and without prunes killed by SIGKILL at random
//!   instants: afterwards `verify --read-data` passes and every snapshot restores byte-identical.
//!   100 schedules each on a local repository, fewer over REST, SFTP and S3 (their runs cost
//!   more; `HB_SCHEDULES` overrides every count).
//! - Exact instants through test hooks: a backup that read the index before a prune marked packs
//!   takes the packs it uses back; one whose lock was lost (the timing assumption broken) and
//!   whose parent's data or deduplicated chunks a prune deleted meanwhile stores them again from
//!   the source (a file gone by then is reported, never referenced); a prune's deleting lock
//!   refuses another prune, not a backup.
//! - Eight backups into one repository at once; forget beside a backup; the confirmation rule.

mod common;
mod restcommon;
mod s3common;
mod sshcommon;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A small deterministic generator (xorshift64*) for schedules.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Source `k` of schedule `seed`: four 120 kB files drawn from a pool of eight contents (so
/// backups share data, and dedup against packs a prune may mark) plus a file of its own.
fn source(t: &TestRepo, seed: u64, k: u64, rng: &mut Rng) -> PathBuf {
    let dir = t.path(&format!("src/{k}"));
    for i in 0..4 {
        let pick = rng.below(8);
        write(
            &dir.join(format!("f{i}")),
            &random_bytes(seed * 100 + pick, 120_000),
        );
    }
    write(
        &dir.join("own"),
        &random_bytes(seed * 1000 + k + 500, 40_000),
    );
    dir
}

/// The prune commands a schedule runs.
fn prune_args(rng: &mut Rng) -> Vec<&'static str> {
    let mut a = match rng.below(3) {
        0 => vec![
            "forget",
            "--keep-last",
            "2",
            "--group-by",
            "host",
            "--prune",
        ],
        _ => vec!["prune"],
    };
    a.extend(["--yes", "-q", "--keep-delete", "0s", "--max-unused", "0"]);
    a
}

/// Every remaining snapshot restores byte-identical to its source, and everything verifies.
fn assert_all_restore(t: &TestRepo, sources: &BTreeMap<String, PathBuf>, what: &str) {
    t.assert_verify_ok(&["--read-data"]);
    for (i, s) in t.snapshots().iter().enumerate() {
        let path = s["paths"][0].as_str().unwrap();
        let src = sources
            .get(path)
            .unwrap_or_else(|| panic!("{what}: a snapshot of an unknown path {path}"));
        let out = t.path(&format!("out/{i}"));
        t.restore(s["id"].as_str().unwrap(), &out, &[]);
        assert_same_dir(src, &out);
    }
}

/// Spawns `args` on `t` with stdout dropped and stderr in `log`.
fn spawn(t: &TestRepo, args: &[&str], log: &Path) -> Child {
    let mut c = t.command();
    c.args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    c.spawn().expect("the binary starts")
}

/// One seeded schedule: two backups first, then `backups` backups of new sources and `prunes`
/// prunes started at random offsets within 0.4 s; with `kill`, each prune is killed (SIGKILL)
/// a random 0–0.3 s after its start unless it finished.
fn schedule(t: &TestRepo, seed: u64, backups: u64, prunes: u64, kill: bool) {
    let what = format!("schedule {seed} (kill: {kill})");
    let mut rng = Rng::new(seed);
    let mut sources = BTreeMap::new();
    for k in 0..2 {
        let src = source(t, seed, k, &mut rng);
        t.backup(&[&src]);
        sources.insert(src.display().to_string(), src);
    }
    // (start offset ms, kill offset ms, args, is a backup)
    let mut events: Vec<(u64, Option<u64>, Vec<String>, bool)> = Vec::new();
    for k in 2..2 + backups {
        let src = source(t, seed, k, &mut rng);
        let args = vec!["backup".into(), "-q".into(), src.display().to_string()];
        sources.insert(src.display().to_string(), src);
        events.push((rng.below(400), None, args, true));
    }
    for _ in 0..prunes {
        let args = prune_args(&mut rng).into_iter().map(String::from).collect();
        let at = rng.below(400);
        let kill_at = kill.then(|| at + rng.below(300));
        events.push((at, kill_at, args, false));
    }
    events.sort_by_key(|e| e.0);
    std::fs::create_dir_all(t.path("logs")).unwrap();
    let start = Instant::now();
    let mut running: Vec<(Child, Option<u64>, bool, PathBuf, String)> = Vec::new();
    for (i, (at, kill_at, args, backup)) in events.into_iter().enumerate() {
        let wait = Duration::from_millis(at).saturating_sub(start.elapsed());
        std::thread::sleep(wait);
        let log = t.path(&format!("logs/{seed}-{i}"));
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        running.push((spawn(t, &a, &log), kill_at, backup, log, args.join(" ")));
    }
    // Kills at their instants, then every process to its end.
    let mut kills: Vec<(u64, usize)> = running
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.1.map(|k| (k, i)))
        .collect();
    kills.sort();
    for (at, i) in kills {
        std::thread::sleep(Duration::from_millis(at).saturating_sub(start.elapsed()));
        let _ = running[i].0.kill();
    }
    for (mut child, killable, backup, log, args) in running {
        let status = child.wait().unwrap();
        let err = std::fs::read_to_string(&log).unwrap_or_default();
        if backup {
            assert_eq!(status.code(), Some(0), "{what}: `{args}` failed: {err}");
        } else if !(killable.is_some() && status.code().is_none()) {
            // A prune ends well, or finds another prune's deleting lock (exit 11).
            assert!(
                matches!(status.code(), Some(0 | 11)),
                "{what}: `{args}` exited {status:?}: {err}"
            );
        }
    }
    // Two prunes after the grace period clean up; everything left restores.
    for _ in 0..2 {
        t.run(&["prune", "--yes", "-q", "--keep-delete", "0s"])
            .expect_code(0);
    }
    assert_all_restore(t, &sources, &what);
}

/// Schedule count: `HB_SCHEDULES` if set, else `default`.
fn schedules(default: u64) -> u64 {
    std::env::var("HB_SCHEDULES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `n` schedules from `first_seed`, each in a fresh repository from `repo`.
fn run_schedules(repo: &dyn Fn(u64) -> TestRepo, first_seed: u64, n: u64, kill: bool) {
    for seed in first_seed..first_seed + n {
        let t = repo(seed);
        schedule(&t, seed, 3, 2, kill);
    }
}

fn local_repo(_: u64) -> TestRepo {
    TestRepo::init_with(&["--pack-size", "1", "--chunk-avg", "64"])
}

#[test]
fn interleaved_backups_and_prunes_local() {
    run_schedules(&local_repo, 1, schedules(100), false);
}

#[test]
fn interleaved_backups_and_killed_prunes_local() {
    run_schedules(&local_repo, 1001, schedules(100), true);
}

#[test]
fn interleaved_backups_and_prunes_rest() {
    let t0 = TestRepo::new();
    let server = restcommon::Server::start(&t0, &["--no-auth"]);
    let repo = |seed: u64| {
        let mut t = TestRepo::new();
        t.repo = PathBuf::from(server.location(None, &format!("r{seed}")));
        t.run(&["init", "-q", "--pack-size", "1", "--chunk-avg", "64"])
            .expect_code(0);
        t
    };
    run_schedules(&repo, 2001, schedules(4), false);
    run_schedules(&repo, 3001, schedules(2), true);
}

#[test]
fn interleaved_backups_and_prunes_sftp() {
    let sshd = sshcommon::Sshd::start();
    let repo = |_: u64| {
        let mut t = TestRepo::new();
        t.repo = PathBuf::from(sshd.url(&t.path("repo")));
        t.env = vec![
            (
                "HYDRABACKUP_SFTP_KEY".into(),
                sshd.path("user_key").display().to_string(),
            ),
            (
                "HYDRABACKUP_SFTP_KNOWN_HOSTS".into(),
                sshd.known_hosts().display().to_string(),
            ),
        ];
        t.run(&["init", "-q", "--pack-size", "1", "--chunk-avg", "64"])
            .expect_code(0);
        t
    };
    run_schedules(&repo, 4001, schedules(3), false);
    run_schedules(&repo, 5001, schedules(2), true);
}

#[test]
fn interleaved_backups_and_prunes_s3() {
    let s3 = s3common::S3Server::start();
    let repo = |seed: u64| {
        s3.init(
            &format!("b{seed}"),
            &["--pack-size", "1", "--chunk-avg", "64"],
        )
    };
    run_schedules(&repo, 6001, schedules(3), false);
    run_schedules(&repo, 7001, schedules(2), true);
}

/// A repository with one snapshot of `src`, forgotten: its packs are unused.
/// `verify --read-data` passes and the latest snapshot restores byte-identical to `src`.
fn assert_latest_whole(t: &TestRepo, src: &Path) {
    t.assert_verify_ok(&["--read-data"]);
    let out = t.path("out");
    t.restore("latest", &out, &[]);
    assert_same_dir(src, &out);
}

fn forgotten(t: &TestRepo) -> PathBuf {
    let src = t.path("src");
    random_files(&src, 5, 6, 200_000);
    let id = t.backup(&[&src])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    t.json(&["forget", "--yes", &id]);
    src
}

#[test]
fn a_backup_that_read_the_index_before_a_prune_marked_takes_its_packs_back() {
    let t = TestRepo::init();
    let src = forgotten(&t);
    let packs_before = packs(&t.repo);
    // The backup pauses after reading the index while a prune marks every pack (no snapshot
    // uses them), then deduplicates against them and writes its snapshot after the prune.
    let mut c = t.command();
    c.env(
        "HYDRABACKUP_TEST_HOOK",
        format!("backup-after-index:{BIN} prune --yes -q --keep-delete 0s"),
    )
    .args(["backup", "--json", src.to_str().unwrap()]);
    let b = run_cmd(c).expect_code(0).json();
    assert_eq!(b["data_blobs_added"], 0, "it deduplicated: {b:#}");
    assert_eq!(
        b["packs_recovered"].as_u64(),
        Some(packs_before.len() as u64),
        "the marked packs it uses came back: {b:#}"
    );
    // A prune after the grace period deletes nothing: the packs are live again.
    let p = t.json(&["prune", "--yes", "--keep-delete", "0s"]);
    assert_eq!(p["packs_removed"], 0, "{p:#}");
    assert_eq!(p["packs_waiting"], 0, "{p:#}");
    assert_eq!(packs(&t.repo), packs_before);
    assert_latest_whole(&t, &src);
}

#[test]
fn a_backup_whose_packs_a_prune_marked_meanwhile_keeps_them() {
    // A prune runs while the backup is about to write its snapshot: the backup's own packs are
    // used by no snapshot yet, so the prune marks them; the backup's lock keeps them, and its
    // check before the snapshot takes them back.
    let t = TestRepo::init();
    let src = t.path("src");
    random_files(&src, 6, 5, 150_000);
    let mut c = t.command();
    c.env(
        "HYDRABACKUP_TEST_HOOK",
        format!(
            "backup-before-check:{BIN} prune --yes -q --keep-delete 0s && {BIN} prune --yes -q --keep-delete 0s"
        ),
    )
    .args(["backup", "--json", src.to_str().unwrap()]);
    let b = run_cmd(c).expect_code(0).json();
    assert!(b["packs_recovered"].as_u64().unwrap() > 0, "{b:#}");
    let p = t.json(&["prune", "--yes", "--keep-delete", "0s"]);
    assert_eq!(p["packs_removed"], 0, "{p:#}");
    assert_latest_whole(&t, &src);
}

/// A hook command that runs `cmd` the first time the hook point is reached only (a flag file
/// under the test's folder remembers it).
fn once(t: &TestRepo, cmd: &str) -> String {
    let flag = t.path("hook-ran");
    let flag = flag.display();
    format!("[ -e {flag} ] || {{ touch {flag} && {cmd}; }}")
}

/// Breaks the timing assumption on purpose (a running backup's lock stays live: refreshed every
/// 5 minutes, stale after 30): a prune marks what no snapshot uses, the backup's lock is
/// removed, and a second prune deletes what the first marked.
fn prune_past_the_lock() -> String {
    format!(
        "{BIN} prune --yes -q --keep-delete 0s && {BIN} unlock -q --remove-all && {BIN} prune --yes -q --keep-delete 0s"
    )
}

#[test]
fn a_backup_whose_parent_data_a_prune_deleted_meanwhile_stores_it_again() {
    // The backup reuses every Swamp of its parent; before its snapshot the parent is forgotten
    // and a prune past the timing assumption deletes the parent's packs (and the backup's own,
    // which no snapshot uses yet). The check before the snapshot finds the blobs gone and a
    // second pass of the walk reads the Swamps again from the source.
    let t = TestRepo::init();
    let src = t.path("src");
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_hydgen"))
        .args(["gen", "--seed", "12", "--swamps", "12", "--size", "2M"])
        .args(["--v2-percent", "30", "--v1-percent", "0", "--root"])
        .arg(&src)
        .status()
        .unwrap();
    assert!(made.success(), "hydgen gen");
    let parent = t.backup(&[&src])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let parent_packs = packs(&t.repo);
    write(&src.join("added.txt"), b"new since the parent");
    let mut c = t.command();
    c.env(
        "HYDRABACKUP_TEST_HOOK",
        format!(
            "backup-before-check:{}",
            once(
                &t,
                &format!(
                    "{BIN} forget --yes -q {parent} && {}",
                    prune_past_the_lock()
                )
            )
        ),
    )
    .args(["backup", "--json", src.to_str().unwrap()]);
    let b = run_cmd(c).expect_code(0).json();
    assert!(t.path("hook-ran").exists(), "the hook ran");
    assert_eq!(
        b["swamps_unchanged"], 12,
        "the first pass reused the parent: {b:#}"
    );
    assert!(
        parent_packs.iter().all(|p| !p.exists()),
        "the parent's packs were deleted"
    );
    let files = counts(&scan(&src)).0;
    assert_eq!(
        b["files_read_again"].as_u64(),
        Some(files),
        "every file was read again: {b:#}"
    );
    assert_eq!(t.snapshots().len(), 1);
    assert_latest_whole(&t, &src);
}

#[test]
fn a_backup_whose_deduplicated_chunks_a_prune_deleted_meanwhile_stores_them_again() {
    // The files are new to the backup (no parent) but their chunks are in the packs of a
    // forgotten snapshot: the backup deduplicates against them, and while it runs a prune past
    // the timing assumption deletes them. It stores them again before its snapshot.
    let t = TestRepo::init();
    let src = forgotten(&t);
    let old_packs = packs(&t.repo);
    let mut c = t.command();
    c.env(
        "HYDRABACKUP_TEST_HOOK",
        format!("backup-after-index:{}", once(&t, &prune_past_the_lock())),
    )
    .args(["backup", src.to_str().unwrap()]);
    let r = run_cmd(c);
    r.expect_code(0);
    assert!(
        old_packs.iter().all(|p| !p.exists()),
        "the packs it deduplicated against were deleted"
    );
    // The human report says what happened.
    assert!(r.stdout.contains("files: 6 new,"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("a prune deleted stored data this backup relied on: 6 files read again"),
        "{}",
        r.stdout
    );
    assert_eq!(t.snapshots().len(), 1);
    assert_latest_whole(&t, &src);
}

#[test]
fn a_file_whose_data_a_prune_deleted_and_that_is_gone_is_reported_not_dangling() {
    // As above, but one of the files whose chunks were deleted is removed from the source
    // before the second pass reads it again (the backup reaches `backup-after-index` once per
    // pass): it is reported gone, the snapshot leaves it out and everything else restores, a
    // file changed meanwhile with its new content.
    let t = TestRepo::init();
    let src = forgotten(&t);
    // The root folder's tree differs from the forgotten one's: the backup stores it itself.
    write(&src.join("added.txt"), b"new since the forgotten snapshot");
    let victim = src.join("file002.bin");
    // Another file with lost chunks changes before the second pass: its new content is stored.
    let changed = src.join("file004.bin");
    let mut c = t.command();
    c.env(
        "HYDRABACKUP_TEST_HOOK",
        format!(
            "backup-after-index:if [ -e {flag} ]; then rm {v} && printf now > {c}; else touch {flag} && {p}; fi",
            flag = t.path("hook-ran").display(),
            v = victim.display(),
            c = changed.display(),
            p = prune_past_the_lock()
        ),
    )
    .args(["backup", "--json", src.to_str().unwrap()]);
    let b = run_cmd(c).expect_code(0).json();
    assert!(!victim.exists(), "the second pass was reached");
    assert_eq!(std::fs::read(&changed).unwrap(), b"now");
    let victim = victim.display().to_string();
    assert_eq!(b["lost_gone"], serde_json::json!([victim]), "{b:#}");
    assert!(
        b["gone"].as_array().unwrap().iter().any(|g| g == &victim),
        "{b:#}"
    );
    assert_eq!(b["files_gone"], 1, "{b:#}");
    assert_eq!(
        b["files_read_again"], 5,
        "the other lost files were read: {b:#}"
    );
    assert_latest_whole(&t, &src);
}

#[test]
fn a_deleting_prune_refuses_another_prune_but_not_a_backup() {
    let t = TestRepo::init();
    forgotten(&t);
    t.json(&["prune", "--yes", "--keep-delete", "0s"]);
    let src2 = t.path("src2");
    random_files(&src2, 8, 3, 50_000);
    let log = t.path("hook.log");
    // While the second prune holds its deleting lock (about to delete), a backup runs and a
    // third prune is refused; a forget runs too.
    let hook = format!(
        "prune-deleting:{BIN} backup -q {} && {BIN} prune --yes --keep-delete 0s 2>{} ; echo $? >>{}",
        src2.display(),
        log.display(),
        log.display()
    );
    let mut c = t.command();
    c.env("HYDRABACKUP_TEST_HOOK", hook)
        .args(["prune", "--yes", "--json", "--keep-delete", "0s"]);
    let p = run_cmd(c).expect_code(0).json();
    assert!(p["packs_removed"].as_u64().unwrap() > 0, "{p:#}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("locked"), "{text}");
    assert!(text.trim_end().ends_with("11"), "{text}");
    assert_eq!(t.snapshots().len(), 1, "the backup ran beside the prune");
    assert_latest_whole(&t, &src2);
}

#[test]
fn eight_backups_at_once_each_restore() {
    let t = TestRepo::init_with(&["--pack-size", "1", "--chunk-avg", "64"]);
    let mut children = Vec::new();
    let mut sources = Vec::new();
    for k in 0..8u64 {
        let src = t.path(&format!("src{k}"));
        // Half of every source is shared with the others.
        random_files(&src.join("shared"), 42, 2, 100_000);
        random_files(&src.join("own"), 100 + k, 2, 100_000);
        let log = t.path(&format!("log{k}"));
        children.push(spawn(&t, &["backup", "-q", src.to_str().unwrap()], &log));
        sources.push(src);
    }
    for (k, mut c) in children.into_iter().enumerate() {
        let st = c.wait().unwrap();
        let err = std::fs::read_to_string(t.path(&format!("log{k}"))).unwrap();
        assert_eq!(st.code(), Some(0), "backup {k}: {err}");
    }
    let snaps = t.snapshots();
    assert_eq!(snaps.len(), 8);
    t.assert_verify_ok(&["--read-data"]);
    for s in snaps {
        let path = PathBuf::from(s["paths"][0].as_str().unwrap());
        let out = t.path(&format!(
            "out-{}",
            path.file_name().unwrap().to_str().unwrap()
        ));
        t.restore(s["id"].as_str().unwrap(), &out, &[]);
        assert_same_dir(&path, &out);
    }
}

#[test]
fn forget_runs_beside_a_backup_and_another_forget() {
    let t = TestRepo::init();
    let src = t.path("src");
    random_files(&src, 9, 3, 20_000);
    let first = t.backup(&[&src])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    write(&src.join("new"), b"new");
    // While a backup holds its lock, a forget removes the first snapshot, and two forgets by
    // policy run at once.
    let mut c = t.command();
    c.env(
        "HYDRABACKUP_TEST_HOOK",
        format!(
            "backup-after-index:{BIN} forget --yes -q {first} && ({BIN} forget --yes -q --keep-last 1 & {BIN} forget --yes -q --keep-last 1; wait)"
        ),
    )
    .args(["backup", "--json", src.to_str().unwrap()]);
    let b = run_cmd(c).expect_code(0).json();
    let ids: Vec<String> = t
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, [b["snapshot_id"].as_str().unwrap()]);
    let out = t.path("out");
    t.restore("latest", &out, &[]);
    assert_same_dir(&src, &out);
}

#[test]
fn destructive_commands_without_a_terminal_need_yes() {
    let t = TestRepo::init();
    let src = forgotten(&t);
    t.backup(&[&src]);
    let id = t.snapshots()[0]["id"].as_str().unwrap().to_string();
    let before = repo_files(&t.repo, "");
    let pw = t.path("second-password");
    write(&pw, b"another password\n");
    let key = t.json(&["key", "add", "--new-password-file", pw.to_str().unwrap()]);
    let key = key["added"].as_str().unwrap().to_string();
    let with_key = repo_files(&t.repo, "");
    for args in [
        vec!["prune", "--instant-delete"],
        vec!["prune"],
        vec!["forget", id.as_str()],
        vec![
            "forget",
            "--keep-last",
            "0",
            "--keep-within",
            "1h",
            "--prune",
        ],
        vec!["key", "remove", &key[..12]],
    ] {
        let r = t.run(&args);
        r.expect_code(17).expect_clean_error();
        assert!(r.stderr.contains("--yes"), "{args:?}: {}", r.stderr);
        assert!(r.stdout.contains("would"), "{args:?}: {}", r.stdout);
        assert_eq!(
            repo_files(&t.repo, ""),
            with_key,
            "{args:?} changed the repository"
        );
        // With --json the one document on stdout is what would be done.
        let mut json = args.clone();
        json.push("--json");
        let r = t.run(&json);
        r.expect_code(17);
        let _: serde_json::Value = serde_json::from_str(&r.stdout).expect("one JSON document");
    }
    assert_ne!(before, with_key);
    t.run(&["key", "remove", "--yes", &key[..12]])
        .expect_code(0);
    assert_eq!(repo_files(&t.repo, ""), before);
}

#[test]
fn a_prune_runs_at_background_priority_unless_told_otherwise() {
    // A hook inside the prune records the niceness of each of its threads and its I/O class.
    let t = TestRepo::init();
    let probe = |extra: &[&str]| -> (Vec<i64>, String) {
        forgotten(&t);
        let o = t.path("prio");
        let o = o.display();
        let mut c = t.command();
        c.env(
            "HYDRABACKUP_TEST_HOOK",
            format!(
                "prune-deleting:for f in /proc/$PPID/task/*/stat; do sed 's/.*) //' $f | cut -d' ' -f17; done >{o}.nice; ionice -p $PPID >{o}.io"
            ),
        )
        .args(["prune", "--yes", "-q", "--keep-delete", "0s"])
        .args(extra);
        run_cmd(c).expect_code(0);
        let nice = std::fs::read_to_string(format!("{o}.nice")).unwrap();
        let nice = nice.lines().map(|l| l.trim().parse().unwrap()).collect();
        (nice, std::fs::read_to_string(format!("{o}.io")).unwrap())
    };
    let (nice, io) = probe(&[]);
    assert!(
        !nice.is_empty() && nice.iter().all(|&n| n >= 10),
        "{nice:?}"
    );
    assert!(io.starts_with("idle"), "{io}");
    let (nice, io) = probe(&["--priority", "normal"]);
    assert!(nice.iter().all(|&n| n < 10), "{nice:?}");
    assert!(!io.starts_with("idle"), "{io}");
}
