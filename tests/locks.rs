//! Locks: a live lock of another process blocks conflicting commands with exit 11; stale locks
//! (dead process on this host) block nothing and `unlock` removes only them.
//!
//! The binary offers no way to pause a command while it holds its lock, so the live lock is
//! taken by this test process through the library: a real, refreshed lock of a running process
//! on this host, exactly what a concurrent hydrabackup would hold.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use hydrabackup::Id;
use hydrabackup::backend::FileKind;
use hydrabackup::repo::lock::{LockGuard, LockInfo};
use hydrabackup::repo::{Repository, object};

fn hold_lock(t: &TestRepo, exclusive: bool) -> LockGuard {
    let backend = Arc::from(hydrabackup::backend::open(t.repo.to_str().unwrap()).unwrap());
    let repo = Repository::open(backend, PASSWORD.as_bytes()).unwrap();
    repo.lock(exclusive, "held by the test").unwrap()
}

fn lock_names(t: &TestRepo) -> Vec<String> {
    repo_files(&t.repo, "locks")
        .iter()
        .map(|p| name_of(p))
        .collect()
}

/// A repository with one snapshot of `src` and a second key (whose id is returned).
fn setup() -> (TestRepo, std::path::PathBuf, String) {
    let t = TestRepo::init();
    let src = t.path("src");
    random_files(&src, 1, 3, 20_000);
    t.backup(&[&src]);
    let pw = t.path("pw");
    std::fs::write(&pw, "second\n").unwrap();
    let key = t.json(&["key", "add", "--new-password-file", pw.to_str().unwrap()])["added"]
        .as_str()
        .unwrap()
        .to_string();
    (t, src, key)
}

fn expect_locked(t: &TestRepo, args: &[&str]) {
    let r = t.run(args);
    r.expect_code(11).expect_clean_error();
    assert!(r.stderr.contains("locked"), "{args:?}: {}", r.stderr);
    assert!(
        r.stderr.contains(&format!("pid {}", std::process::id())),
        "{args:?}: {}",
        r.stderr
    );
}

#[test]
fn live_exclusive_lock_blocks_with_exit_11() {
    let (t, src, key) = setup();
    let out = t.path("out");
    let guard = hold_lock(&t, true);
    let before = repo_files(&t.repo, "");
    expect_locked(&t, &["backup", src.to_str().unwrap()]);
    expect_locked(
        &t,
        &["restore", "latest", "--target", out.to_str().unwrap()],
    );
    expect_locked(&t, &["verify"]);
    expect_locked(&t, &["key", "remove", "--yes", &key]);
    assert_eq!(
        repo_files(&t.repo, ""),
        before,
        "a refused command changed the repository"
    );
    assert!(!out.exists());
    // `unlock` leaves a live lock alone.
    assert_eq!(t.json(&["unlock"])["removed"].as_array().unwrap().len(), 0);
    assert_eq!(lock_names(&t).len(), 1);

    drop(guard);
    assert!(
        lock_names(&t).is_empty(),
        "the released lock is still there"
    );
    t.backup(&[&src]);
    t.restore("latest", &out, &[]);
    assert_same_dir(&src, &out);
}

#[test]
fn live_shared_lock_blocks_only_exclusive_commands() {
    let (t, src, key) = setup();
    let guard = hold_lock(&t, false);
    write(&src.join("new"), b"new");
    t.backup(&[&src]);
    t.assert_verify_ok(&[]);
    t.restore("latest", &t.path("out"), &[]);
    expect_locked(&t, &["prune", "--yes", "--instant-delete"]);
    // Deleting commands that backups run beside are not refused by a shared lock.
    t.run(&["prune", "--yes"]).expect_code(0);
    t.run(&["key", "remove", "--yes", &key]).expect_code(0);
    drop(guard);
    t.run(&["prune", "--yes", "--instant-delete"])
        .expect_code(0);
}

#[test]
fn unlock_removes_stale_locks_and_remove_all_removes_live_ones() {
    let (t, src, _) = setup();
    // A backup killed mid-way leaves the lock of a dead process.
    let mut c = t.command();
    write(&src.join("more"), &random_bytes(9, 100_000));
    c.env("HYDRABACKUP_FAILPOINT", "after-pack")
        .args(["backup", src.to_str().unwrap()]);
    assert_eq!(run_cmd(c).signal, Some(9));
    let stale = lock_names(&t);
    assert_eq!(stale.len(), 1);

    let guard = hold_lock(&t, false);
    let live: Vec<String> = lock_names(&t)
        .into_iter()
        .filter(|n| !stale.contains(n))
        .collect();
    assert_eq!(live.len(), 1);

    let v = t.json(&["unlock"]);
    assert_eq!(v["removed"], serde_json::json!(stale));
    assert_eq!(lock_names(&t), live);
    let v = t.json(&["unlock", "--remove-all"]);
    assert_eq!(v["removed"], serde_json::json!(live));
    assert!(lock_names(&t).is_empty());
    drop(guard);
    // With the lock gone an exclusive command runs (the guard's own removal finds nothing).
    t.backup(&[&src]);
    assert!(
        Path::new(&t.repo.join("locks"))
            .read_dir()
            .unwrap()
            .next()
            .is_none()
    );
}

/// Writes the lock a process on another host would hold, last refreshed `age` seconds ago;
/// returns (its name, its time).
fn foreign_lock(t: &TestRepo, exclusive: bool, age: i64) -> (String, i64) {
    let backend = Arc::from(hydrabackup::backend::open(t.repo.to_str().unwrap()).unwrap());
    let repo = Repository::open(backend, PASSWORD.as_bytes()).unwrap();
    let time = jiff::Timestamp::now().as_second() - age;
    let info = LockInfo {
        exclusive,
        host: "elsewhere.example".into(),
        pid: 4242,
        user: "operator".into(),
        time,
        purpose: "prune".into(),
        deleting: false,
        created: time,
    };
    let bytes = object::seal(repo.keys().seal_key(), &info);
    let name = Id::of_stored(&bytes).to_hex();
    repo.backend().write(FileKind::Lock, &name, &bytes).unwrap();
    (name, time)
}

#[test]
fn a_lock_from_another_host_says_when_it_goes_stale_and_how_to_remove_it() {
    let (t, src, key) = setup();
    let (fresh, time) = foreign_lock(&t, true, 10 * 60);
    let r = t.run(&["backup", src.to_str().unwrap()]);
    r.expect_code(11).expect_clean_error();
    let stale_at = jiff::Timestamp::from_second(time + 30 * 60).unwrap();
    for part in [
        "pid 4242 on elsewhere.example".to_string(),
        format!("stale (ignored, and removed by `hydrabackup unlock`) from {stale_at}"),
        "`hydrabackup unlock --remove-all` removes it now".to_string(),
    ] {
        assert!(r.stderr.contains(&part), "missing {part:?}:\n{}", r.stderr);
    }
    // Plain `unlock` leaves it (it may be live); `--remove-all` removes it.
    assert_eq!(t.json(&["unlock"])["removed"], serde_json::json!([]));
    assert_eq!(lock_names(&t), vec![fresh.clone()]);
    assert_eq!(
        t.json(&["unlock", "--remove-all"])["removed"],
        serde_json::json!([fresh])
    );
    t.backup(&[&src]);

    // Not refreshed for more than 30 minutes: stale, it blocks nothing and `unlock` removes it.
    let (old, _) = foreign_lock(&t, true, 31 * 60);
    t.backup(&[&src]);
    t.run(&["key", "remove", "--yes", &key]).expect_code(0);
    assert_eq!(t.json(&["unlock"])["removed"], serde_json::json!([old]));
    assert!(lock_names(&t).is_empty());
}
