//! One bad repository object must not stop everything: damaged snapshots are skipped and named
//! (exit 13 once the work is done), prune refuses to treat their data as unused, oversized
//! objects are refused before they are read, and a truncated pack is damage (exit 13).
//!
//! The damaged objects are planted the way an attacker would: through the library (any
//! append-only client can store a snapshot object) or, for a storage attacker, on disk.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use hydrabackup::Id;
use hydrabackup::backend::{Backend, FileKind};
use hydrabackup::repo::{Repository, object};
use serde_json::Value;

fn library_repo(t: &TestRepo) -> Repository {
    let backend: Arc<dyn Backend> =
        Arc::from(hydrabackup::backend::open(t.repo.to_str().unwrap()).unwrap());
    Repository::open(backend, PASSWORD.as_bytes()).unwrap()
}

/// Stores `bytes` as a snapshot object under the hash of its bytes (as the REST server
/// requires of any client); returns its name.
fn plant_snapshot(t: &TestRepo, bytes: &[u8]) -> String {
    let repo = library_repo(t);
    let name = Id::of_stored(bytes).to_hex();
    repo.backend()
        .write(FileKind::Snapshot, &name, bytes)
        .unwrap();
    name
}

/// A snapshot object that does not decrypt (garbage) and one sealed with the repository key
/// that does not decode as a snapshot (what a client with the password could store).
fn plant_damaged_snapshots(t: &TestRepo) -> Vec<String> {
    let garbage = plant_snapshot(t, &random_bytes(77, 300));
    let key = library_repo(t).keys().seal_key().clone();
    let sealed = plant_snapshot(t, &object::seal(&key, &"not a snapshot"));
    let mut v = vec![garbage, sealed];
    v.sort();
    v
}

/// A repository with two snapshots of `src`, the second one after a file was replaced.
fn setup() -> (TestRepo, PathBuf, Vec<String>) {
    let t = TestRepo::init();
    let src = t.path("src");
    random_files(&src, 1, 3, 30_000);
    let a = t.backup(&[&src]);
    fs::remove_file(src.join("file002.bin")).unwrap();
    write(&src.join("more.bin"), &random_bytes(5, 40_000));
    let b = t.backup(&[&src]);
    let ids = [a, b]
        .iter()
        .map(|v| v["snapshot_id"].as_str().unwrap().to_string())
        .collect();
    (t, src, ids)
}

fn damaged_ids(v: &Value) -> Vec<String> {
    v["damaged_snapshots"]
        .as_array()
        .unwrap_or_else(|| panic!("no damaged_snapshots list: {v}"))
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect()
}

/// Exit 13 after the work, with a warning naming each damaged snapshot and a final error line.
fn expect_skipped(r: &Run, damaged: &[String]) {
    r.expect_code(13);
    for d in damaged {
        assert!(
            r.stderr
                .contains(&format!("warning: snapshot {d} is damaged and was skipped")),
            "{d} not named:\n{}",
            r.stderr
        );
    }
    assert!(
        r.stderr.contains("damaged snapshot(s) skipped"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}

#[test]
fn damaged_snapshots_are_skipped_and_named_and_everything_else_works() {
    let (t, src, ids) = setup();
    let bad = plant_damaged_snapshots(&t);

    // Listing lists the rest.
    let r = t.run(&["snapshots", "--json"]);
    expect_skipped(&r, &bad);
    let listed: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, ids);

    // A backup still finds its parent and stores its snapshot.
    write(&src.join("new.bin"), &random_bytes(6, 10_000));
    let r = t.run(&["backup", "--json", src.to_str().unwrap()]);
    expect_skipped(&r, &bad);
    let v = r.json();
    assert_eq!(v["parent"].as_str(), Some(ids[1].as_str()), "{v}");
    assert_eq!(v["files_unchanged"], 3, "{v}");
    assert_eq!(damaged_ids(&v), bad);
    let newest = v["snapshot_id"].as_str().unwrap().to_string();

    // `restore latest` restores the newest readable snapshot.
    let out = t.path("out");
    let r = t.run(&[
        "restore",
        "latest",
        "--json",
        "--target",
        out.to_str().unwrap(),
    ]);
    expect_skipped(&r, &bad);
    assert_eq!(r.json()["snapshot_id"].as_str(), Some(newest.as_str()));
    assert_same_dir(&src, &out);

    // ls, stats and copy work with the rest too.
    expect_skipped(&t.run(&["ls", "latest"]), &bad);
    expect_skipped(&t.run(&["stats"]), &bad);
    let dst = TestRepo::init();
    let mut c = dst.command();
    c.env("HYDRABACKUP_FROM_REPOSITORY", &t.repo)
        .env("HYDRABACKUP_FROM_PASSWORD", PASSWORD)
        .args(["copy", "--json"]);
    let r = run_cmd(c);
    expect_skipped(&r, &bad);
    assert_eq!(r.json()["copied"].as_array().unwrap().len(), 3);
    assert_eq!(dst.snapshots().len(), 3);

    // forget by policy decides over the readable snapshots only.
    let r = t.run(&["forget", "--yes", "--keep-last", "2", "--json"]);
    expect_skipped(&r, &bad);
    assert_eq!(r.json()["removed"], 1);
    assert_eq!(repo_files(&t.repo, "snapshots").len(), 4);
}

#[test]
fn prune_refuses_while_snapshots_are_damaged_unless_told() {
    let (t, src, ids) = setup();
    t.run(&["forget", "--yes", &ids[0]]).expect_code(0);
    let bad = plant_damaged_snapshots(&t);
    let before = repo_files(&t.repo, "");

    for args in [
        &["prune", "--yes", "--instant-delete"][..],
        &["prune", "--yes", "--instant-delete", "--dry-run"],
        &[
            "forget",
            "--yes",
            "--instant-delete",
            "--keep-last",
            "1",
            "--prune",
        ],
    ] {
        let r = t.run(args);
        r.expect_code(13);
        assert!(
            r.stderr.contains("--ignore-damaged-snapshots"),
            "{args:?}: {}",
            r.stderr
        );
        for d in &bad {
            assert!(
                r.stderr.contains(d),
                "{args:?}: {d} not named:\n{}",
                r.stderr
            );
        }
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
    assert_eq!(
        repo_files(&t.repo, ""),
        before,
        "a refused prune changed the repository"
    );

    // Told explicitly, prune frees the forgotten snapshot's data and keeps the live one's.
    let r = t.run(&[
        "prune",
        "--yes",
        "--instant-delete",
        "--ignore-damaged-snapshots",
        "--json",
    ]);
    expect_skipped(&r, &bad);
    let v = r.json();
    assert!(v["bytes_unused"].as_u64().unwrap() >= 30_000, "{v}");
    assert_eq!(damaged_ids(&v), bad);
    let out = t.path("out");
    t.run(&["restore", "latest", "--target", out.to_str().unwrap()])
        .expect_code(13);
    assert_same_dir(&src, &out);
}

#[test]
fn a_damaged_snapshot_named_by_forget_is_removed() {
    let (t, _src, ids) = setup();
    let bad = plant_damaged_snapshots(&t);
    // A damaged snapshot named on its own is an error (it cannot be shown).
    t.run(&["ls", &bad[0]]).expect_code(13).expect_clean_error();

    let v = t.json(&["forget", "--yes", &bad[0][..12], &bad[1]]);
    assert_eq!(v["removed"], 2, "{v}");
    assert_eq!(v["kept"], 2, "{v}");
    let names: Vec<String> = repo_files(&t.repo, "snapshots")
        .iter()
        .map(|p| name_of(p))
        .collect();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(names, expected);
    // Nothing is damaged any more: every command is clean again.
    t.json(&["snapshots"]);
    t.json(&["prune", "--yes", "--instant-delete"]);
    t.assert_verify_ok(&[]);
}

/// Makes a sparse file of `len` bytes (no disk space, but that size for every reader).
fn sparse(path: &Path, len: u64) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::File::create(path).unwrap().set_len(len).unwrap();
}

#[test]
fn oversized_objects_are_refused_before_they_are_read() {
    let (t, _src, ids) = setup();
    // A 200 MiB snapshot file: skipped as damaged, with its size as the reason.
    let big = "ab".repeat(32);
    sparse(&t.repo.join("snapshots").join(&big), 200 << 20);
    let r = t.run(&["snapshots", "--json"]);
    expect_skipped(&r, std::slice::from_ref(&big));
    assert!(
        r.stderr
            .contains("209715200 bytes, over the 16777216-byte limit"),
        "{}",
        r.stderr
    );
    assert_eq!(r.json().as_array().unwrap().len(), ids.len());
    fs::remove_file(t.repo.join("snapshots").join(&big)).unwrap();

    // A 1 MiB key file is skipped with a warning; the real key still opens the repository.
    let key = t.repo.join("keys").join("00".repeat(32));
    sparse(&key, 1 << 20);
    let r = t.run(&["snapshots"]);
    r.expect_code(0);
    assert!(
        r.stderr
            .contains(&format!("key {} skipped", "00".repeat(32)))
            && r.stderr.contains("over the 65536-byte limit"),
        "{}",
        r.stderr
    );
    fs::remove_file(&key).unwrap();

    // A 1 MiB lock file is unreadable, so it blocks nothing and `unlock` removes it.
    let lock = t.repo.join("locks").join("11".repeat(32));
    sparse(&lock, 1 << 20);
    t.backup(&[&t.path("src")]);
    let v = t.json(&["unlock"]);
    assert_eq!(v["removed"], serde_json::json!(["11".repeat(32)]));

    // A 300 MiB index file is refused before it is read: readers skip it with a warning (one
    // damaged object must not stop everyone), `verify` reports it as damage.
    let index = t.repo.join("index").join("22".repeat(32));
    sparse(&index, 300 << 20);
    let r = t.run(&["ls", "latest"]);
    r.expect_code(0);
    assert!(
        r.stderr
            .contains("314572800 bytes, over the 268435456-byte limit"),
        "{}",
        r.stderr
    );
    let r = t.run(&["verify"]);
    r.expect_code(13);
    assert!(
        r.stdout.contains(&"22".repeat(32)) || r.stderr.contains(&"22".repeat(32)),
        "{}{}",
        r.stdout,
        r.stderr
    );
    fs::remove_file(&index).unwrap();

    // A config replaced by a storage attacker with 1 MiB: damage, refused before reading.
    let config = t.repo.join("config");
    fs::remove_file(&config).unwrap();
    sparse(&config, 1 << 20);
    let r = t.run(&["snapshots"]);
    r.expect_code(13).expect_clean_error();
    assert!(
        r.stderr.contains("over the 65536-byte limit"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_truncated_tree_pack_is_damage_not_a_fatal_error() {
    let (t, _src, _) = setup();
    for p in packs(&t.repo) {
        let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(10).unwrap();
    }
    for args in [&["ls", "latest"][..], &["restore", "latest", "--target"]] {
        let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if a.len() == 3 {
            a.push(t.path("out").to_str().unwrap().to_string());
        }
        let r = t.run(&a);
        r.expect_code(13).expect_clean_error();
        assert!(r.stderr.contains("truncated"), "{args:?}: {}", r.stderr);
    }
}
