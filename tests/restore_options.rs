//! Restore options restic users reach for: `--exclude`/`--iinclude`, `--delete` (only inside
//! the target, never through a symlink), `--verify` and `SNAPSHOT:PATH`.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use common::*;

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Every file and symlink below `dir`, relative, sorted (folders only through their content).
fn files_under(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out
}

/// A small source tree.
fn sample(src: &Path) {
    write(&src.join("top.txt"), b"top");
    write(&src.join("dir1/a.txt"), b"a");
    write(&src.join("dir1/b.log"), b"b");
    write(&src.join("dir1/sub/c.txt"), b"c");
    write(&src.join("dir2/D.TXT"), b"d");
    write(&src.join("dir2/cache/x"), b"x");
}

#[test]
fn exclude_and_case_insensitive_include() {
    let t = TestRepo::init();
    let src = t.path("src");
    sample(&src);
    t.backup(&[&src]);

    let out = t.path("ex");
    let r = t.restore(
        "latest",
        &out,
        &[
            "--exclude",
            "*.log",
            "--exclude",
            "cache",
            "--exclude",
            "/dir1/sub",
        ],
    );
    assert_eq!(
        files_under(&out),
        set(&["top.txt", "dir1/a.txt", "dir2/D.TXT"])
    );
    assert_eq!(r["files"], 3, "{r:#}");
    assert!(r.get("unmatched_patterns").is_none(), "{r:#}");

    // --iinclude ignores case; an exclude below an include still applies.
    let out = t.path("ii");
    t.restore(
        "latest",
        &out,
        &["--iinclude", "*.txt", "--exclude", "a.txt"],
    );
    assert_eq!(
        files_under(&out),
        set(&["top.txt", "dir1/sub/c.txt", "dir2/D.TXT"])
    );

    // A pattern that matches nothing is reported.
    let out = t.path("none");
    let r = t.restore("latest", &out, &["--exclude", "nothing-like-this"]);
    assert_eq!(
        r["unmatched_patterns"],
        serde_json::json!(["nothing-like-this"])
    );
    assert_same_dir(&src, &out);
}

#[test]
fn delete_removes_what_the_snapshot_lacks_inside_the_target_only() {
    let t = TestRepo::init();
    let src = t.path("src");
    sample(&src);
    t.backup(&[&src]);

    // Outside the target: must survive whatever the target's symlinks point to.
    let outside = t.path("outside");
    write(&outside.join("precious"), b"keep me");
    let out = t.path("out");
    write(&out.join("stray.txt"), b"not in the snapshot");
    write(&out.join("old/deep/er/file"), b"old folder");
    write(&out.join("dir1/extra"), b"extra in a restored folder");
    write(&out.join("dir1/b.log"), b"excluded: kept as it is");
    std::os::unix::fs::symlink(&outside, out.join("link-out")).unwrap();
    // A symlink where the snapshot has a folder: replaced by the folder, not followed.
    std::os::unix::fs::symlink(&outside, out.join("dir2")).unwrap();

    // A dry run lists what would go and touches nothing.
    let dry = t.restore(
        "latest",
        &out,
        &["--delete", "--dry-run", "--exclude", "b.log"],
    );
    assert!(out.join("stray.txt").exists() && out.join("link-out").exists());
    let r = t.restore("latest", &out, &["--delete", "--exclude", "b.log"]);
    assert_eq!(dry["deleted"], r["deleted"], "{dry:#}");
    let deleted: BTreeSet<String> = r["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        deleted,
        set(&["dir1/extra", "link-out", "old", "stray.txt"])
    );
    assert_eq!(
        files_under(&out),
        set(&[
            "top.txt",
            "dir1/a.txt",
            "dir1/b.log",
            "dir1/sub/c.txt",
            "dir2/D.TXT",
            "dir2/cache/x"
        ])
    );
    assert_eq!(
        fs::read(out.join("dir1/b.log")).unwrap(),
        b"excluded: kept as it is"
    );
    assert_eq!(files_under(&outside), set(&["precious"]));
    assert_eq!(fs::read(outside.join("precious")).unwrap(), b"keep me");

    // With --include only the folders restored are cleaned; the target's other entries stay.
    write(&out.join("mine"), b"mine");
    write(&out.join("dir1/new"), b"new");
    let r = t.restore("latest", &out, &["--delete", "--include", "dir1"]);
    assert_eq!(r["deleted"], serde_json::json!(["dir1/new"]));
    assert!(out.join("mine").exists());
    // Without --delete, a non-empty target still needs --overwrite.
    let r = t.run(&[
        "restore".as_ref(),
        "latest".as_ref(),
        "--target".as_ref(),
        out.as_os_str(),
    ]);
    r.expect_code(1).expect_clean_error();
}

#[test]
fn verify_reads_restored_files_back() {
    let t = TestRepo::init();
    let src = t.path("src");
    sample(&src);
    random_files(&src.join("big"), 3, 4, 1_500_000);
    t.backup(&[&src]);
    let out = t.path("out");
    let r = t.restore("latest", &out, &["--verify"]);
    assert_eq!(r["verified"], r["files"], "{r:#}");
    assert!(r["failed"].as_array().unwrap().is_empty(), "{r:#}");

    // A file changed between the restore and the check is reported (exit 3).
    let out = t.path("tampered");
    let mut c = t.command();
    c.env(
        "HYDRABACKUP_TEST_HOOK",
        "restore-verify:printf X >> \"$HYDRABACKUP_HOOK_PATH/dir1/a.txt\"",
    )
    .args(["restore", "latest", "--verify", "--json", "--target"])
    .arg(&out);
    let r = run_cmd(c);
    r.expect_code(3);
    let v = r.json();
    let failed = v["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{v:#}");
    assert_eq!(failed[0]["path"], "dir1/a.txt");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("verification failed"),
        "{v:#}"
    );
    assert_eq!(
        v["verified"].as_u64().unwrap() + 1,
        v["files"].as_u64().unwrap()
    );
}

#[test]
fn snapshot_subpath_restores_a_folder_s_contents() {
    let t = TestRepo::init();
    let src = t.path("src");
    sample(&src);
    t.backup(&[&src]);
    let out = t.path("sub");
    let r = t.restore("latest:dir1", &out, &[]);
    assert_eq!(r["files"], 3, "{r:#}");
    assert_same_dir(&src.join("dir1"), &out);
    let out = t.path("deeper");
    t.restore("latest:/dir1/sub/", &out, &[]);
    assert_eq!(files_under(&out), set(&["c.txt"]));

    for (spec, msg) in [
        ("latest:dir1/a.txt", "not a folder"),
        ("latest:nope", "not found"),
        ("latest:../x", "not allowed"),
    ] {
        let out = t.path("bad");
        let r = t.run(&[
            "restore".as_ref(),
            spec.as_ref(),
            "--target".as_ref(),
            out.as_os_str(),
        ]);
        r.expect_code(1).expect_clean_error();
        assert!(r.stderr.contains(msg), "{spec}: {}", r.stderr);
        assert!(!out.exists());
    }
}
