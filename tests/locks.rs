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
use hydrabackup::repo::Repository;
use hydrabackup::repo::lock::LockGuard;

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
    expect_locked(&t, &["key", "remove", &key]);
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
    expect_locked(&t, &["key", "remove", &key]);
    drop(guard);
    t.run(&["key", "remove", &key]).expect_code(0);
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
