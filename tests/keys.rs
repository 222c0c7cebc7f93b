//! Key management: add, list, remove, passwd.

mod common;

use std::fs;
use std::path::PathBuf;

use common::*;
use hydrabackup::Id;
use hydrabackup::backend::FileKind;
use hydrabackup::crypto::KdfParams;
use hydrabackup::repo::keyfile::KeyFile;
use serde_json::Value;

/// Runs the binary with another password.
fn with_password(t: &TestRepo, pw: &str, args: &[&str]) -> Run {
    let mut c = t.command();
    c.env("HYDRABACKUP_PASSWORD", pw).args(args);
    run_cmd(c)
}

fn password_file(t: &TestRepo, name: &str, pw: &str) -> PathBuf {
    let p = t.path(name);
    fs::write(&p, format!("{pw}\n")).unwrap();
    p
}

/// `key list --json` as (id, current) pairs, opened with `pw`.
fn keys(t: &TestRepo, pw: &str) -> Vec<(String, bool)> {
    let v: Value = with_password(t, pw, &["key", "list", "--json"])
        .expect_code(0)
        .json();
    v.as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["id"].as_str().unwrap().to_string(),
                k["current"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn current(keys: &[(String, bool)]) -> String {
    let cur: Vec<_> = keys.iter().filter(|k| k.1).collect();
    assert_eq!(cur.len(), 1, "exactly one key is current: {keys:?}");
    cur[0].0.clone()
}

#[test]
fn added_key_opens_the_same_repository() {
    let t = TestRepo::init();
    let first = keys(&t, PASSWORD);
    assert_eq!(first.len(), 1);
    let old_id = current(&first);
    assert_eq!(old_id.len(), 64);

    let src = t.path("src");
    random_files(&src, 1, 3, 10_000);
    t.backup(&[&src]);

    let f = password_file(&t, "new.pw", "second password");
    let added = t.json(&["key", "add", "--new-password-file", f.to_str().unwrap()]);
    let new_id = added["added"].as_str().unwrap().to_string();
    assert_ne!(new_id, old_id);
    let both = keys(&t, PASSWORD);
    assert_eq!(both.len(), 2);
    assert_eq!(current(&both), old_id);
    let seen_by_new = keys(&t, "second password");
    assert_eq!(current(&seen_by_new), new_id);

    // The new password reads and writes the same data.
    let out = t.path("out");
    with_password(
        &t,
        "second password",
        &["restore", "latest", "--target", out.to_str().unwrap()],
    )
    .expect_code(0);
    assert_same_dir(&src, &out);
    write(&src.join("more"), b"more");
    with_password(&t, "second password", &["backup", src.to_str().unwrap()]).expect_code(0);
    assert_eq!(t.snapshots().len(), 2);

    // The new password may also come from HYDRABACKUP_NEW_PASSWORD.
    let mut c = t.command();
    c.env("HYDRABACKUP_NEW_PASSWORD", "third")
        .args(["key", "add"]);
    run_cmd(c).expect_code(0);
    assert_eq!(keys(&t, "third").len(), 3);
    with_password(&t, "fourth", &["snapshots"]).expect_code(12);
}

#[test]
fn another_key_can_be_removed() {
    let t = TestRepo::init();
    let old_id = current(&keys(&t, PASSWORD));
    let f = password_file(&t, "new.pw", "replacement");
    t.json(&["key", "add", "--new-password-file", f.to_str().unwrap()]);

    let r = with_password(
        &t,
        "replacement",
        &["key", "remove", "--yes", &old_id[..10], "--json"],
    );
    r.expect_code(0);
    assert_eq!(r.json()["removed"].as_str(), Some(old_id.as_str()));
    let left = keys(&t, "replacement");
    assert_eq!(left.len(), 1);
    assert_ne!(left[0].0, old_id);
    with_password(&t, PASSWORD, &["snapshots"])
        .expect_code(12)
        .expect_clean_error();

    // Unknown id.
    let unknown = if left[0].0.starts_with('0') { "1" } else { "0" };
    let r = with_password(&t, "replacement", &["key", "remove", "--yes", unknown]);
    r.expect_code(1).expect_clean_error();
    assert!(r.stderr.contains("not found"), "{}", r.stderr);
}

#[test]
fn the_last_key_and_the_key_in_use_cannot_be_removed() {
    let t = TestRepo::init();
    let only = current(&keys(&t, PASSWORD));
    let r = t.run(&["key", "remove", "--yes", &only]);
    r.expect_code(1).expect_clean_error();
    assert!(r.stderr.contains("refusing"), "{}", r.stderr);
    assert_eq!(keys(&t, PASSWORD), vec![(only.clone(), true)]);

    let f = password_file(&t, "other.pw", "other");
    t.json(&["key", "add", "--new-password-file", f.to_str().unwrap()]);
    t.run(&["key", "remove", "--yes", &only[..8]])
        .expect_code(1)
        .expect_clean_error();
    assert_eq!(keys(&t, PASSWORD).len(), 2);
    t.json(&["snapshots"]);
}

#[test]
fn ambiguous_key_prefix_is_refused() {
    let t = TestRepo::init();
    let f = password_file(&t, "pw", "same for all");
    // Add keys until two ids share their first hex digit.
    let shared = loop {
        let ks = keys(&t, PASSWORD);
        let mut firsts: Vec<char> = ks.iter().map(|k| k.0.chars().next().unwrap()).collect();
        firsts.sort();
        if let Some(w) = firsts.windows(2).find(|w| w[0] == w[1]) {
            break w[0];
        }
        assert!(ks.len() <= 16);
        t.json(&["key", "add", "--new-password-file", f.to_str().unwrap()]);
    };
    let before = keys(&t, PASSWORD).len();
    let r = with_password(
        &t,
        "same for all",
        &["key", "remove", "--yes", &shared.to_string()],
    );
    r.expect_code(1).expect_clean_error();
    assert!(r.stderr.contains("ambiguous"), "{}", r.stderr);
    assert_eq!(keys(&t, PASSWORD).len(), before);
}

#[test]
fn passwd_replaces_the_key_in_use() {
    let t = TestRepo::init();
    let src = t.path("src");
    random_files(&src, 2, 2, 5000);
    t.backup(&[&src]);
    let old_id = current(&keys(&t, PASSWORD));
    let f = password_file(&t, "new.pw", "changed password");
    let v = t.json(&["key", "passwd", "--new-password-file", f.to_str().unwrap()]);
    assert_eq!(v["removed"].as_str(), Some(old_id.as_str()));
    let new_id = v["added"].as_str().unwrap().to_string();

    with_password(&t, PASSWORD, &["snapshots"])
        .expect_code(12)
        .expect_clean_error();
    let ks = keys(&t, "changed password");
    assert_eq!(ks, vec![(new_id, true)]);
    let out = t.path("out");
    with_password(
        &t,
        "changed password",
        &["restore", "latest", "--target", out.to_str().unwrap()],
    )
    .expect_code(0);
    assert_same_dir(&src, &out);
    assert!(
        repo_files(&t.repo, "locks").is_empty(),
        "passwd left its lock"
    );
}

#[test]
fn empty_passwords_are_refused_for_new_keys() {
    // An empty first line (or empty variable) would make a key anyone opens with no password.
    let t = TestRepo::init();
    let f = password_file(&t, "empty.pw", "");
    for args in [
        ["key", "add", "--new-password-file", f.to_str().unwrap()],
        ["key", "passwd", "--new-password-file", f.to_str().unwrap()],
    ] {
        let r = t.run(&args);
        r.expect_code(1).expect_clean_error();
        assert!(r.stderr.contains("empty password"), "{}", r.stderr);
    }
    let mut c = t.command();
    c.env("HYDRABACKUP_NEW_PASSWORD", "").args(["key", "add"]);
    run_cmd(c).expect_code(1).expect_clean_error();
    assert_eq!(keys(&t, PASSWORD).len(), 1);
    with_password(&t, "", &["snapshots"]).expect_code(12);

    let fresh = TestRepo::new();
    let mut c = fresh.command();
    c.env("HYDRABACKUP_PASSWORD", "").arg("init");
    run_cmd(c).expect_code(1).expect_clean_error();
    assert!(!fresh.repo.join("config").exists());
}

/// Stores `kf` as a key file whose name sorts before every key already there (varying its
/// `host` until its hash does), so a reader that tries key files in name order meets it first.
fn plant_key_first(t: &TestRepo, mut kf: KeyFile) -> String {
    let backend = hydrabackup::backend::open(t.repo.to_str().unwrap()).unwrap();
    let first = backend
        .list(FileKind::Key)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .min()
        .unwrap();
    for i in 0.. {
        kf.host = format!("planted{i}");
        let bytes = kf.encode();
        let name = Id::of_stored(&bytes).to_hex();
        if name < first {
            backend.write(FileKind::Key, &name, &bytes).unwrap();
            return name;
        }
    }
    unreachable!()
}

/// A key file with these Argon2 parameters and a garbage sealed key.
fn forged_key(kdf: KdfParams) -> KeyFile {
    KeyFile {
        version: 1,
        created: "2026-01-01T00:00:00Z".into(),
        host: String::new(),
        user: "mallory".into(),
        kdf,
        salt: vec![1; 32],
        sealed_master: vec![2; 60],
    }
}

/// `args` with the key-trying log visible.
fn logged(t: &TestRepo, args: &[&str]) -> Run {
    let mut c = t.command();
    c.env("HYDRABACKUP_LOG", "hydrabackup=debug").args(args);
    run_cmd(c)
}

#[test]
fn key_files_out_of_bounds_are_skipped_and_cannot_lock_out_the_real_key() {
    let t = TestRepo::init();
    let real = current(&keys(&t, PASSWORD));
    // 5 GiB of memory: above what any reader accepts; 0 lanes: invalid for Argon2.
    let huge = plant_key_first(
        &t,
        forged_key(KdfParams {
            mem_kib: 5 << 20,
            iterations: 1,
            parallelism: 1,
        }),
    );
    let no_lanes = plant_key_first(
        &t,
        forged_key(KdfParams {
            mem_kib: 64,
            iterations: 1,
            parallelism: 0,
        }),
    );
    let r = t.run(&["snapshots", "--json"]);
    r.expect_code(0);
    for k in [&huge, &no_lanes] {
        assert!(
            r.stderr.contains(&format!("key {k} skipped")) && r.stderr.contains("out of range"),
            "{k} not reported:\n{}",
            r.stderr
        );
    }
    with_password(&t, "wrong", &["snapshots"]).expect_code(12);
    // `key list` shows the usable key; `key remove` removes a forged one by name.
    assert_eq!(keys(&t, PASSWORD), vec![(real.clone(), true)]);
    t.run(&["key", "remove", "--yes", &huge[..16]])
        .expect_code(0);
    t.run(&["key", "remove", "--yes", &no_lanes]).expect_code(0);
    let r = t.run(&["snapshots"]);
    r.expect_code(0);
    assert!(!r.stderr.contains("skipped"), "{}", r.stderr);
}

#[test]
fn cheapest_key_files_are_tried_first_and_key_hint_tries_only_the_one_named() {
    let t = TestRepo::init();
    let real = current(&keys(&t, PASSWORD));
    // Dearer than the repository's own key (64 KiB, 1 pass) but within bounds.
    let dear = KdfParams {
        mem_kib: 32 * 1024,
        iterations: 3,
        parallelism: 1,
    };
    let planted = plant_key_first(
        &t,
        KeyFile::create(&[9; 32], b"someone else", dear).unwrap(),
    );
    let tried = |r: &Run, k: &str| r.stderr.contains(&format!("trying key {k}"));

    let r = logged(&t, &["snapshots"]);
    r.expect_code(0);
    assert!(tried(&r, &real), "{}", r.stderr);
    assert!(
        !tried(&r, &planted),
        "the dear key was tried first:\n{}",
        r.stderr
    );

    let r = logged(&t, &["snapshots", "--key-hint", &real[..10]]);
    r.expect_code(0);
    assert!(tried(&r, &real) && !tried(&r, &planted), "{}", r.stderr);

    // Named, the planted key is the only one tried: it does not open with this password.
    let r = logged(&t, &["snapshots", "--key-hint", &planted[..10]]);
    r.expect_code(12);
    assert!(tried(&r, &planted) && !tried(&r, &real), "{}", r.stderr);

    t.run(&["snapshots", "--key-hint", "xyz"])
        .expect_code(1)
        .expect_clean_error();

    // `key add` never writes parameters a reader would refuse.
    let f = password_file(&t, "pw", "another");
    let r = t.run(&[
        "key",
        "add",
        "--kdf-memory",
        "2000000",
        "--new-password-file",
        f.to_str().unwrap(),
    ]);
    r.expect_code(1).expect_clean_error();
    assert!(r.stderr.contains("out of range"), "{}", r.stderr);
    assert_eq!(
        keys(&t, PASSWORD).len(),
        2,
        "only the real and the planted key"
    );
}
