//! Crash safety: a backup SIGKILLed at each failpoint leaves a repository that verifies, whose
//! stale lock blocks nothing, and into which the next backup succeeds and restores exactly.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const SIGKILL: i32 = 9;

/// Incompressible data in several files: `big` files of 600 kB (with 1 MiB packs, two files
/// fill a pack), small files and an empty one.
fn source(t: &TestRepo, big: usize) -> PathBuf {
    let src = t.path("src");
    random_files(&src, 7, big, 600_000);
    random_files(&src.join("small"), 8, 20, 3_000);
    write(&src.join("empty"), b"");
    src
}

/// Runs a backup that must be killed at `failpoint`.
fn crashed_backup(t: &TestRepo, src: &Path, failpoint: &str) -> Run {
    let mut c = t.command();
    c.env("HYDRABACKUP_FAILPOINT", failpoint)
        .args(["backup", "--json", src.to_str().unwrap()]);
    let r = run_cmd(c);
    assert_eq!(
        r.signal,
        Some(SIGKILL),
        "the backup was not killed at {failpoint}: {r:?}"
    );
    r
}

/// Everything that must hold after any crash; `check` adds the failpoint's own expectations
/// about the verify report of the crashed repository. Returns the recovery backup's output.
fn crash_and_recover(failpoint: &str, big: usize, check: impl Fn(&TestRepo, &Value)) -> Value {
    let t = TestRepo::init_with(&["--pack-size", "1", "--chunk-avg", "64"]);
    let src = source(&t, big);
    let pw = t.path("other.pw");
    fs::write(&pw, "other password\n").unwrap();
    let other_key = t.json(&["key", "add", "--new-password-file", pw.to_str().unwrap()])["added"]
        .as_str()
        .unwrap()
        .to_string();

    crashed_backup(&t, &src, failpoint);

    // No object is half-written under its real name, and the dead process's lock is left.
    assert_objects_complete(&t.repo);
    assert!(
        !repo_files(&t.repo, "locks").is_empty(),
        "expected a stale lock after the kill"
    );
    assert!(
        t.snapshots().is_empty(),
        "a snapshot exists after a crash before it was written"
    );

    let report = t.assert_verify_ok(&[]);
    check(&t, &report);

    // The stale (dead pid) lock blocks not even an exclusive lock.
    t.run(&["key", "remove", "--yes", &other_key])
        .expect_code(0);

    let b = t.backup(&[&src]);
    assert_eq!(b["source_errors"].as_array().unwrap().len(), 0);
    let out = t.path("out");
    t.restore("latest", &out, &[]);
    assert_same_dir(&src, &out);
    t.assert_verify_ok(&["--read-data"]);
    assert_objects_complete(&t.repo);
    b
}

fn unreferenced(v: &Value) -> usize {
    v["unreferenced_packs"].as_array().unwrap().len()
}

#[test]
fn killed_after_first_pack() {
    crash_and_recover("after-pack:1", 2, |t, v| {
        assert!(unreferenced(v) >= 1, "{v:#}");
        assert_eq!(repo_files(&t.repo, "index").len(), 0);
    });
}

#[test]
fn killed_after_third_pack() {
    crash_and_recover("after-pack:3", 6, |t, v| {
        assert!(unreferenced(v) >= 3, "{v:#}");
        assert_eq!(unreferenced(v), packs(&t.repo).len(), "{v:#}");
        assert_eq!(repo_files(&t.repo, "index").len(), 0);
    });
}

#[test]
fn killed_mid_pack_write() {
    crash_and_recover("mid-pack-write", 2, |t, v| {
        // The half-written pack is only under a temporary name.
        let tmp = repo_files(&t.repo, "tmp");
        assert!(!tmp.is_empty(), "no partial pack in tmp/");
        assert!(tmp.iter().any(|p| fs::metadata(p).unwrap().len() > 0));
        assert_eq!(unreferenced(v), packs(&t.repo).len(), "{v:#}");
    });
}

#[test]
fn killed_before_index() {
    crash_and_recover("before-index", 2, |t, v| {
        // Every pack was stored, none indexed.
        assert!(packs(&t.repo).len() >= 2);
        assert_eq!(unreferenced(v), packs(&t.repo).len(), "{v:#}");
        assert_eq!(repo_files(&t.repo, "index").len(), 0);
    });
}

#[test]
fn killed_before_snapshot() {
    let b = crash_and_recover("before-snapshot", 2, |t, v| {
        // Packs and index are complete; only the snapshot is missing.
        assert_eq!(unreferenced(v), 0, "{v:#}");
        assert!(!repo_files(&t.repo, "index").is_empty());
        assert!(v["blobs"].as_u64().unwrap() > 0);
    });
    // The crashed run's data is indexed, so the next backup stores no data again.
    assert_eq!(b["data_blobs_added"], 0, "{b:#}");
}

#[test]
fn repeated_crashes_then_success() {
    let t = TestRepo::init_with(&["--pack-size", "1", "--chunk-avg", "64"]);
    let src = source(&t, 3);
    for fp in ["after-pack:2", "mid-pack-write", "before-snapshot"] {
        crashed_backup(&t, &src, fp);
        assert_objects_complete(&t.repo);
        t.assert_verify_ok(&[]);
    }
    assert_eq!(repo_files(&t.repo, "locks").len(), 3);
    // The mid-pack-write crash left its half-written pack in tmp/; unlock clears it with the
    // stale locks.
    assert!(!repo_files(&t.repo, "tmp").is_empty());
    let removed = t.json(&["unlock"]);
    assert_eq!(removed["removed"].as_array().unwrap().len(), 3);
    assert!(
        removed["temporaries_removed"].as_u64().unwrap() >= 1,
        "{removed:#}"
    );
    assert!(repo_files(&t.repo, "locks").is_empty());
    assert!(repo_files(&t.repo, "tmp").is_empty());
    t.backup(&[&src]);
    let out = t.path("out");
    t.restore("latest", &out, &[]);
    assert_same_dir(&src, &out);
    t.assert_verify_ok(&[]);
}

/// A bit flipped in a sealed blob after sealing and before storing (a memory fault, injected
/// at the `sealed-blob` fault point) is caught by the check of each pack before it is stored:
/// the backup fails as damage (exit 13) and stores no snapshot, nothing damaged reaches the
/// repository (it verifies with all data read), and the next backup stores everything and
/// restores exactly.
#[test]
fn memory_fault_before_store_is_caught() {
    let t = TestRepo::init_with(&["--pack-size", "1", "--chunk-avg", "64"]);
    let src = source(&t, 2);
    let mut c = t.command();
    c.env("HYDRABACKUP_FAULT", "sealed-blob")
        .args(["backup", "--json", src.to_str().unwrap()]);
    let r = run_cmd(c);
    r.expect_code(13);
    assert!(r.stderr.contains("authentication failed"), "{r:?}");
    assert!(t.snapshots().is_empty());
    assert_objects_complete(&t.repo);
    t.assert_verify_ok(&["--read-data"]);

    t.backup(&[&src]);
    let out = t.path("out");
    t.restore("latest", &out, &[]);
    assert_same_dir(&src, &out);
    t.assert_verify_ok(&["--read-data"]);
}
