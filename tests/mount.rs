//! `mount`: the snapshots as a read-only FUSE file system, read through the kernel like any
//! folder. Needs /dev/fuse and root (CI runs as root); elsewhere the test says why it skips.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// Why FUSE cannot be used here, if it cannot; on CI it must be usable.
fn fuse_unusable() -> Option<&'static str> {
    let why = if !Path::new("/dev/fuse").exists() {
        "/dev/fuse is missing"
    } else if !is_root() {
        "mounting without fusermount3 needs root"
    } else {
        return None;
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "FUSE must work on CI: {why}"
    );
    Some(why)
}

fn is_mounted(p: &Path) -> bool {
    let canon = p.canonicalize().unwrap();
    std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(canon.to_str().unwrap()))
}

#[test]
fn a_mounted_snapshot_reads_like_the_source() {
    if let Some(why) = fuse_unusable() {
        eprintln!("skipped: {why}");
        return;
    }
    let t = TestRepo::init();
    let src = t.path("src");
    let root = src.to_str().unwrap();
    hydgen(&[
        "gen",
        "--root",
        root,
        "--seed",
        "11",
        "--swamps",
        "40",
        "--size",
        "3M",
        "--v2-percent",
        "20",
        "--v1-percent",
        "10",
    ]);
    t.backup_args(&[&src], &["--time", "2026-03-01T10:00:00Z"]);
    let first = t.path("first");
    common::run_cmd({
        let mut c = t.command();
        c.args(["restore", "latest", "--target", first.to_str().unwrap()]);
        c
    })
    .expect_code(0);
    hydgen(&["churn", "--root", src.to_str().unwrap(), "--seed", "12"]);
    t.backup_args(&[&src], &["--time", "2026-03-02T10:00:00Z"]);
    let snaps = t.snapshots();
    let (old, new) = (
        snaps[0]["id"].as_str().unwrap().to_string(),
        snaps[1]["id"].as_str().unwrap().to_string(),
    );

    let mnt = t.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut c = t.command();
    c.arg("mount").arg(&mnt).stdout(Stdio::piped());
    let mut child = c.spawn().expect("mount starts");
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("mounted 2 snapshot(s)"), "{line:?}");
    assert!(is_mounted(&mnt));

    // The newest snapshot is the source as it is now, byte for byte, modes and times too.
    assert_same_dir(&src, &mnt.join("snapshots").join(&new));
    assert_eq!(
        std::fs::read_link(mnt.join("latest")).unwrap(),
        Path::new("snapshots").join(&new)
    );
    assert_same_dir(&src, &mnt.join("latest"));
    // The older one, by time, is what a restore of it gives.
    assert_same_dir(&first, &mnt.join("by-time/2026-03-01T10:00:00Z"));
    assert_same_dir(&first, &mnt.join("snapshots").join(&old));
    // Read-only.
    let err = std::fs::write(mnt.join("latest/new-file"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");

    // SIGTERM unmounts and exits 0.
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "unmounted\n");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(!is_mounted(&mnt));
    assert_eq!(std::fs::read_dir(&mnt).unwrap().count(), 0);
}

/// Every file below `dir`, relative to it.
fn files_below(dir: &Path, rel: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir.join(rel)).unwrap() {
        let e = e.unwrap();
        let r = rel.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            files_below(dir, &r, out);
        } else if e.file_type().unwrap().is_file() {
            out.push(r);
        }
    }
}

#[test]
fn a_logical_snapshot_mounts_as_it_restores() {
    if let Some(why) = fuse_unusable() {
        eprintln!("skipped: {why}");
        return;
    }
    let t = TestRepo::init();
    let src = t.path("src");
    hydgen(&[
        "gen",
        "--root",
        src.to_str().unwrap(),
        "--seed",
        "13",
        "--swamps",
        "20",
        "--size",
        "2M",
    ]);
    t.backup_args(&[&src], &["--mode", "logical"]);
    let out = t.path("out");
    common::run_cmd({
        let mut c = t.command();
        c.args(["restore", "latest", "--target", out.to_str().unwrap()]);
        c
    })
    .expect_code(0);

    let mnt = t.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut c = t.command();
    c.arg("mount").arg(&mnt).stdout(Stdio::piped());
    let mut child = c.spawn().expect("mount starts");
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("mounted 1 snapshot(s)"), "{line:?}");
    // Logical Swamps read as the .hyd files restore rebuilds, not as their record streams.
    let mut files = Vec::new();
    files_below(&out, Path::new(""), &mut files);
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "hyd"))
    );
    for f in &files {
        assert_eq!(
            std::fs::read(mnt.join("latest").join(f)).unwrap(),
            std::fs::read(out.join(f)).unwrap(),
            "{}",
            f.display()
        );
    }
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
