//! Backups running at the same time into one repository.

mod common;

use std::process::Stdio;

use common::*;

#[test]
fn simultaneous_backups_both_succeed_and_restore() {
    let t = TestRepo::init_with(&["--pack-size", "1", "--chunk-avg", "64"]);
    // Overlapping content (the shared files race to store the same blobs) plus unique files.
    let (s1, s2) = (t.path("one"), t.path("two"));
    random_files(&s1.join("shared"), 1, 4, 200_000);
    random_files(&s2.join("shared"), 1, 4, 200_000);
    random_files(&s1.join("own"), 2, 3, 200_000);
    random_files(&s2.join("own"), 3, 3, 200_000);
    random_files(&s2.join("small"), 4, 200, 500);

    let spawn = |src: &std::path::Path| {
        let mut c = t.command();
        c.args(["backup", "--json", src.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c.spawn().expect("spawn backup")
    };
    let (c1, c2) = (spawn(&s1), spawn(&s2));
    let outs = [
        c1.wait_with_output().unwrap(),
        c2.wait_with_output().unwrap(),
    ];
    let mut ids = Vec::new();
    for o in &outs {
        assert!(
            o.status.success(),
            "a concurrent backup failed: {:?}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        // The JSON-lines stream's last line is the summary.
        let out = String::from_utf8_lossy(&o.stdout);
        let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        ids.push(v["snapshot_id"].as_str().unwrap().to_string());
    }
    assert_ne!(ids[0], ids[1]);
    assert_eq!(t.snapshots().len(), 2);
    assert!(
        repo_files(&t.repo, "locks").is_empty(),
        "a lock was left behind"
    );

    t.assert_verify_ok(&["--read-data"]);
    for (id, src) in ids.iter().zip([&s1, &s2]) {
        let out = t.path(&format!("out-{}", &id[..8]));
        t.restore(id, &out, &[]);
        assert_same_dir(src, &out);
    }

    // And the repository keeps working: an incremental backup of each reads nothing.
    for src in [&s1, &s2] {
        let v = t.backup(&[src]);
        assert_eq!(v["files_read"], 0, "{v:#}");
    }
}

#[test]
fn backup_while_restoring() {
    let t = TestRepo::init();
    let src = t.path("src");
    random_files(&src, 5, 6, 200_000);
    let first = t.backup(&[&src])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let other = t.path("other");
    random_files(&other, 6, 6, 200_000);

    let out = t.path("out");
    let mut restore = t.command();
    restore
        .args(["restore", &first, "--target", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut backup = t.command();
    backup
        .args(["backup", other.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let (r, b) = (restore.spawn().unwrap(), backup.spawn().unwrap());
    for (what, o) in [
        ("restore", r.wait_with_output().unwrap()),
        ("backup", b.wait_with_output().unwrap()),
    ] {
        assert!(
            o.status.success(),
            "{what} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert_same_dir(&src, &out);
    assert_eq!(t.snapshots().len(), 2);
    t.assert_verify_ok(&["--read-data"]);
}
