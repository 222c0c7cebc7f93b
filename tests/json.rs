//! `--json`: every command prints exactly one JSON document on stdout, also when it fails; the
//! long commands (backup, restore, verify, copy, forget, prune) print JSON lines whose last one
//! is that document with `"message_type": "summary"` (or `"exit_error"`; the stream is tested in
//! obs.rs).

mod common;

use std::fs;
use std::sync::Arc;

use common::*;
use serde_json::Value;

/// Runs `args` (which include --json) and parses stdout as one JSON document; checks the code.
fn json_of(t: &TestRepo, args: &[&str], code: i32) -> Value {
    let r = t.run(args);
    r.expect_code(code);
    let v = r.json();
    if ["backup", "restore", "verify", "copy", "forget", "prune"].contains(&args[0]) {
        let want = if v["error"].is_string() {
            "exit_error"
        } else {
            "summary"
        };
        assert_eq!(v["message_type"], want, "{args:?}: {v}");
    }
    if code != 0 && code != 13 {
        assert_eq!(v["exit_code"], code, "{args:?}: {v}");
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{args:?}: {v}"
        );
    }
    v
}

#[test]
fn every_command_prints_one_json_document() {
    let t = TestRepo::new();
    let v = json_of(&t, &["init", "--json"], 0);
    assert_eq!(v["id"].as_str().map(str::len), Some(64));
    assert_eq!(v["key"].as_str().map(str::len), Some(64));

    let src = t.path("src");
    random_files(&src, 1, 3, 10_000);
    let s = src.to_str().unwrap();
    let v = json_of(&t, &["backup", "--json", s], 0);
    for k in [
        "files_new",
        "files_changed",
        "files_unchanged",
        "files_read",
        "bytes_read",
        "bytes_added",
        "bytes_stored",
        "data_blobs_added",
    ] {
        assert!(v[k].is_u64(), "{k} missing: {v:#}");
    }
    assert!(v["source_errors"].is_array());
    let snap = v["snapshot_id"].as_str().unwrap().to_string();
    let v = json_of(&t, &["backup", "--json", "--dry-run", s], 0);
    assert_eq!(v["snapshot_id"], Value::Null);

    assert!(json_of(&t, &["snapshots", "--json"], 0).is_array());
    assert!(
        json_of(&t, &["snapshots", "--json", "--tag", "none"], 0)
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        json_of(&t, &["ls", "--json", &snap[..8]], 0)
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let out = t.path("out");
    let o = out.to_str().unwrap();
    assert!(
        json_of(
            &t,
            &["restore", "--json", "latest", "--dry-run", "--target", o],
            0
        )["paths"]
            .is_array()
    );
    assert_eq!(
        json_of(&t, &["restore", "--json", "latest", "--target", o], 0)["files"],
        3
    );
    assert_eq!(json_of(&t, &["verify", "--json"], 0)["ok"], true);
    assert_eq!(
        json_of(&t, &["verify", "--json", "--read-data"], 0)["ok"],
        true
    );
    assert_eq!(
        json_of(&t, &["verify", "--json", "--read-data-subset", "1/3"], 0)["ok"],
        true
    );
    assert_eq!(
        json_of(&t, &["show", "--json", "latest"], 0)["snapshot_id"].as_str(),
        Some(snap.as_str())
    );

    let pw = t.path("pw");
    fs::write(&pw, "new\n").unwrap();
    let p = pw.to_str().unwrap();
    assert_eq!(
        json_of(&t, &["key", "list", "--json"], 0)
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let added = json_of(&t, &["key", "add", "--json", "--new-password-file", p], 0)["added"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        json_of(&t, &["key", "remove", "--yes", "--json", &added], 0)["removed"].as_str(),
        Some(added.as_str())
    );
    let v = json_of(
        &t,
        &["key", "passwd", "--json", "--new-password-file", p],
        0,
    );
    assert!(v["added"].is_string() && v["removed"].is_string());
    let t = TestRepo {
        password: "new".into(),
        ..t
    };
    assert!(json_of(&t, &["unlock", "--json"], 0)["removed"].is_array());

    // Errors: one JSON object with the error and the exit code.
    json_of(&t, &["ls", "--json", "ffffffffffff"], 1);
    json_of(&t, &["restore", "--json", "latest", "--target", o], 1);
    let missing = TestRepo::new();
    json_of(&missing, &["snapshots", "--json"], 10);
    let mut c = t.command();
    c.env("HYDRABACKUP_PASSWORD", "wrong")
        .args(["snapshots", "--json"]);
    let r = run_cmd(c);
    r.expect_code(12);
    assert_eq!(r.json()["exit_code"], 12);
    {
        let backend = Arc::from(hydrabackup::backend::open(t.repo.to_str().unwrap()).unwrap());
        let repo = hydrabackup::repo::Repository::open(backend, b"new").unwrap();
        let _lock = repo.lock(true, "json test").unwrap();
        json_of(&t, &["backup", "--json", s], 11);
    }

    // Source errors still give one document (exit 3 is tested in errors.rs).
    // Damage: the report itself is the document, with "ok": false.
    let pack = packs(&t.repo)
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    flip_bit(&pack, 10);
    let v = json_of(&t, &["verify", "--json", "--read-data"], 13);
    assert_eq!(v["ok"], false);
    assert!(!v["problems"].as_array().unwrap().is_empty());
}

#[test]
fn quiet_prints_nothing_on_success() {
    let t = TestRepo::init();
    let src = t.path("src");
    write(&src.join("f"), b"x");
    for args in [
        vec!["backup", "-q", src.to_str().unwrap()],
        vec!["snapshots", "-q"],
        vec!["verify", "-q"],
    ] {
        let r = t.run(&args);
        r.expect_code(0);
        assert_eq!(r.stdout, "", "{args:?}");
    }
}
