//! Listing snapshots and files; selecting snapshots by `latest` and id prefixes.

mod common;

use std::collections::HashMap;

use common::*;
use serde_json::Value;

fn id(v: &Value) -> String {
    v["snapshot_id"].as_str().expect("snapshot id").to_string()
}

fn ls_paths(t: &TestRepo, args: &[&str]) -> Vec<String> {
    let mut a = vec!["ls"];
    a.extend_from_slice(args);
    t.json(&a)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn snapshots_json_lists_every_backup() {
    let t = TestRepo::init();
    assert!(t.snapshots().is_empty());
    let src = t.path("src");
    write(&src.join("a"), b"a");
    let s1 = id(&t.backup_args(&[&src], &["--tag", "daily", "--tag", "first"]));
    write(&src.join("b"), b"b");
    let s2 = id(&t.backup_args(&[&src], &["--host", "otherhost"]));
    let s3 = id(&t.backup_args(&[&src], &["--tag", "daily"]));

    let snaps = t.snapshots();
    let ids: Vec<&str> = snaps.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [s1.as_str(), s2.as_str(), s3.as_str()], "oldest first");
    for s in &snaps {
        let full = s["id"].as_str().unwrap();
        assert_eq!(full.len(), 64);
        assert!(full.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(full.starts_with(s["short_id"].as_str().unwrap()));
        assert_eq!(s["paths"], serde_json::json!([src.to_str().unwrap()]));
        assert!(s["time"].as_str().unwrap().ends_with('Z'), "{s:#}");
    }
    assert_eq!(snaps[0]["tags"], serde_json::json!(["daily", "first"]));
    assert_eq!(snaps[1]["host"], "otherhost");
    assert_ne!(snaps[0]["host"], "otherhost");
    // Ids in the JSON are hex strings, the parent is the previous snapshot of the same host.
    assert_eq!(
        snaps[2]["parent"].as_str(),
        Some(s1.as_str()),
        "{:#}",
        snaps[2]
    );
    assert!(
        snaps[2]["tree"].as_str().is_some_and(|t| t.len() == 64),
        "{:#}",
        snaps[2]
    );
    assert_eq!(snaps[2]["summary"]["files_unchanged"], 1);

    let daily = t.json(&["snapshots", "--tag", "daily"]);
    let daily: Vec<&str> = daily
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(daily, [s1.as_str(), s3.as_str()]);
    let other = t.json(&["snapshots", "--host", "otherhost"]);
    assert_eq!(other.as_array().unwrap().len(), 1);
    assert_eq!(other[0]["id"].as_str(), Some(s2.as_str()));

    // The human listing names every snapshot by its short id.
    let r = t.run(&["snapshots"]);
    r.expect_code(0);
    for s in &snaps {
        assert!(
            r.stdout.contains(s["short_id"].as_str().unwrap()),
            "{}",
            r.stdout
        );
    }
    assert!(r.stdout.contains("3 snapshot(s)"), "{}", r.stdout);
}

#[test]
fn ls_latest_and_id_prefixes() {
    let t = TestRepo::init();
    let src = t.path("src");
    write(&src.join("one"), b"1");
    write(&src.join("dir/two"), b"22");
    let old = id(&t.backup(&[&src]));
    write(&src.join("dir/three"), b"333");
    let new = id(&t.backup(&[&src]));

    let latest = ls_paths(&t, &["latest"]);
    assert_eq!(latest, ["dir", "dir/three", "dir/two", "one"]);
    assert_eq!(ls_paths(&t, &[&new]), latest);
    assert_eq!(ls_paths(&t, &[&old[..8]]), ["dir", "dir/two", "one"]);
    assert_eq!(
        ls_paths(&t, &[&old[..8].to_uppercase()]),
        ["dir", "dir/two", "one"]
    );
    assert_eq!(
        ls_paths(&t, &["latest", "dir"]),
        ["dir", "dir/three", "dir/two"]
    );
    assert_eq!(ls_paths(&t, &["latest", "/dir/two"]), ["dir/two"]);

    let ls = t.json(&["ls", "latest"]);
    let by_path: HashMap<&str, &Value> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["path"].as_str().unwrap(), e))
        .collect();
    assert_eq!(by_path["dir"]["type"], "dir");
    assert_eq!(by_path["dir/three"]["type"], "file");
    assert_eq!(by_path["dir/three"]["size"], 3);

    // Human output shows every path.
    let r = t.run(&["ls", &new[..12]]);
    r.expect_code(0);
    for p in ["/dir/three", "/dir/two", "/one"] {
        assert!(r.stdout.contains(p), "{}", r.stdout);
    }
}

#[test]
fn ambiguous_and_unknown_prefixes_are_refused() {
    let t = TestRepo::init();
    let src = t.path("src");
    // Back up until two snapshot ids share their first hex digit (17 ids always do).
    let mut seen: HashMap<char, String> = HashMap::new();
    let shared = loop {
        write(&src.join("n"), format!("{}", seen.len()).as_bytes());
        let s = id(&t.backup(&[&src]));
        let c = s.chars().next().unwrap();
        if seen.contains_key(&c) {
            break c;
        }
        seen.insert(c, s);
        assert!(seen.len() <= 16);
    };
    let r = t.run(&["ls", &shared.to_string()]);
    r.expect_code(1).expect_clean_error();
    assert!(r.stderr.contains("ambiguous"), "{}", r.stderr);
    let r = t.run(&[
        "restore",
        &shared.to_string(),
        "--target",
        t.path("o").to_str().unwrap(),
    ]);
    r.expect_code(1);
    assert!(r.stderr.contains("ambiguous"), "{}", r.stderr);
    assert!(!t.path("o").exists());

    // A prefix no snapshot has.
    let snaps = t.snapshots();
    let unknown = (0..=255u8)
        .map(|b| format!("{b:02x}"))
        .find(|p| {
            !snaps
                .iter()
                .any(|s| s["id"].as_str().unwrap().starts_with(p.as_str()))
        })
        .unwrap();
    let r = t.run(&["ls", &unknown]);
    r.expect_code(1).expect_clean_error();
    assert!(r.stderr.contains("not found"), "{}", r.stderr);

    for bad in ["xyz", "latest1", ""] {
        let r = t.run(&["ls", bad]);
        r.expect_code(1).expect_clean_error();
    }
}

#[test]
fn latest_of_an_empty_repository_is_an_error() {
    let t = TestRepo::init();
    let r = t.run(&["ls", "latest"]);
    r.expect_code(1).expect_clean_error();
    let r = t.run(&[
        "restore",
        "latest",
        "--target",
        t.path("out").to_str().unwrap(),
    ]);
    r.expect_code(1).expect_clean_error();
    assert!(!t.path("out").exists());
}

#[test]
fn stats_report_stored_unique_and_logical_bytes() {
    let t = TestRepo::init();
    let src = t.path("src");
    // Incompressible, so stored ≈ unique; the same data twice, so logical = 2 × unique data.
    write(&src.join("a"), &random_bytes(1, 3_000_000));
    t.backup(&[&src]);
    t.backup_args(&[&src], &["--force"]);
    let s = t.json(&["stats"]);
    assert_eq!(s["snapshots"], 2, "{s:#}");
    assert_eq!(s["logical_bytes"], 6_000_000, "{s:#}");
    let unique = s["unique_bytes"].as_u64().unwrap();
    assert!((3_000_000..3_100_000).contains(&unique), "{s:#}");
    let dedup = s["dedup_ratio"].as_f64().unwrap();
    assert!((dedup - 2.0).abs() < 1e-9, "{s:#}");
    assert!(s["pack_bytes"].as_u64().unwrap() >= s["stored_bytes"].as_u64().unwrap());
    // `check` is `verify` for restic users.
    t.run(&["check"]).expect_code(0);
}
