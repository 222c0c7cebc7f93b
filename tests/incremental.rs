//! Deduplication and incremental backups: what a backup reads and adds.

mod common;

use std::fs;
use std::path::PathBuf;

use common::*;

fn u(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing in {v:#}"))
}

/// Total bytes of all pack files.
fn stored_bytes(t: &TestRepo) -> u64 {
    packs(&t.repo)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn same_data_under_another_path_adds_nothing() {
    let t = TestRepo::init();
    let a = t.path("a");
    random_files(&a, 1, 6, 300_000);
    let first = t.backup(&[&a]);
    let size = u(&first, "total_bytes");
    assert_eq!(u(&first, "bytes_added"), size, "{first:#}");
    let before = stored_bytes(&t);

    // The same files, copied elsewhere: a different snapshot path, so no parent, so every file
    // is read -- but no data blob is new.
    let b = t.path("b");
    fs::create_dir_all(&b).unwrap();
    for e in fs::read_dir(&a).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), b.join(e.file_name())).unwrap();
    }
    let second = t.backup(&[&b]);
    assert_eq!(second["parent"], serde_json::Value::Null, "{second:#}");
    assert_eq!(u(&second, "files_read"), 6, "{second:#}");
    assert_eq!(u(&second, "bytes_read"), size, "{second:#}");
    assert_eq!(u(&second, "data_blobs_added"), 0, "{second:#}");
    assert_eq!(u(&second, "bytes_added"), 0, "{second:#}");
    let growth = stored_bytes(&t) - before;
    assert!(
        growth < size / 100,
        "repository grew by {growth} bytes for {size} bytes of known data"
    );

    let out = t.path("out");
    t.restore("latest", &out, &[]);
    assert_same_dir(&b, &out);
}

#[test]
fn shifted_content_reuses_most_chunks() {
    // Content-defined chunking: inserting bytes at the front only changes the first chunk or
    // two (at most 2 x 256 KiB with 64 KiB chunks), where fixed-size blocks would all change.
    let t = TestRepo::init_with(&["--chunk-avg", "64"]);
    let src = t.path("src");
    let data = random_bytes(11, 2_000_000);
    write(&src.join("f"), &data);
    t.backup(&[&src]);
    let mut shifted = b"a few new bytes at the front".to_vec();
    shifted.extend_from_slice(&data);
    write(&src.join("f"), &shifted);
    let b = t.backup(&[&src]);
    assert_eq!(u(&b, "files_read"), 1);
    let added = u(&b, "bytes_added");
    assert!(added > 0, "{b:#}");
    assert!(
        added < data.len() as u64 * 3 / 10,
        "a 28-byte insertion added {added} bytes: {b:#}"
    );
    let out = t.path("out");
    t.restore("latest", &out, &[]);
    assert_eq!(fs::read(out.join("f")).unwrap(), shifted);
}

#[test]
fn unchanged_tree_reads_no_file() {
    let t = TestRepo::init();
    let src = t.path("src");
    random_files(&src.join("x"), 2, 10, 20_000);
    random_files(&src.join("y/z"), 3, 5, 1000);
    let first = t.backup(&[&src]);
    assert_eq!(u(&first, "files_read"), 15);
    let second = t.backup(&[&src]);
    assert_eq!(second["parent"], first["snapshot_id"], "{second:#}");
    assert_eq!(u(&second, "files_read"), 0, "{second:#}");
    assert_eq!(u(&second, "bytes_read"), 0, "{second:#}");
    assert_eq!(u(&second, "files_unchanged"), 15, "{second:#}");
    assert_eq!(
        (u(&second, "files_new"), u(&second, "files_changed")),
        (0, 0),
        "{second:#}"
    );
    assert_eq!(u(&second, "data_blobs_added"), 0, "{second:#}");
    assert_eq!(u(&second, "tree_blobs_added"), 0, "{second:#}");
    assert_ne!(second["snapshot_id"], first["snapshot_id"]);
    // The unchanged snapshot still restores in full.
    let out = t.path("out");
    t.restore("latest", &out, &[]);
    assert_same_dir(&src, &out);
}

#[test]
fn only_the_changed_file_is_read() {
    let t = TestRepo::init();
    let src = t.path("src");
    random_files(&src, 4, 8, 30_000);
    t.backup(&[&src]);

    // New content, same size.
    let target = src.join("file003.bin");
    write(&target, &random_bytes(99, 30_000));
    let b = t.backup(&[&src]);
    assert_eq!(u(&b, "files_read"), 1, "{b:#}");
    assert_eq!(u(&b, "files_changed"), 1, "{b:#}");
    assert_eq!(u(&b, "files_unchanged"), 7, "{b:#}");
    assert_eq!(u(&b, "bytes_read"), 30_000, "{b:#}");
    assert!(u(&b, "data_blobs_added") >= 1, "{b:#}");

    // Only the mtime changes: the file is re-read but adds no data.
    set_mtime(&src.join("file005.bin"), 1_500_000_000, 5);
    let b = t.backup(&[&src]);
    assert_eq!(u(&b, "files_read"), 1, "{b:#}");
    assert_eq!(u(&b, "data_blobs_added"), 0, "{b:#}");

    // One new file and one deleted file.
    write(&src.join("new.txt"), b"new");
    fs::remove_file(src.join("file000.bin")).unwrap();
    let b = t.backup(&[&src]);
    assert_eq!(
        (
            u(&b, "files_new"),
            u(&b, "files_read"),
            u(&b, "files_unchanged")
        ),
        (1, 1, 7),
        "{b:#}"
    );
    let ls = t.json(&["ls", "latest"]);
    let names: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"new.txt") && !names.contains(&"file000.bin"),
        "{names:?}"
    );

    let out = t.path("out");
    t.restore("latest", &out, &[]);
    assert_same_dir(&src, &out);
}

#[test]
fn force_rereads_everything() {
    let t = TestRepo::init();
    let src = t.path("src");
    random_files(&src, 5, 4, 10_000);
    t.backup(&[&src]);
    let b = t.backup_args(&[&src], &["--force"]);
    assert_eq!(u(&b, "files_read"), 4, "{b:#}");
    assert_eq!(u(&b, "bytes_read"), 40_000, "{b:#}");
    assert_eq!(u(&b, "data_blobs_added"), 0, "{b:#}");
}

#[test]
fn dry_run_backup_writes_nothing() {
    let t = TestRepo::init();
    let src = t.path("src");
    random_files(&src, 6, 3, 50_000);
    let before: Vec<_> = ["data", "index", "snapshots", "locks"]
        .iter()
        .flat_map(|d| repo_files(&t.repo, d))
        .collect();
    let b = t.backup_args(&[&src], &["--dry-run"]);
    assert_eq!(b["dry_run"], true);
    assert_eq!(b["snapshot_id"], serde_json::Value::Null, "{b:#}");
    assert_eq!(u(&b, "files_read"), 3, "{b:#}");
    assert_eq!(u(&b, "bytes_added"), 150_000, "{b:#}");
    let after: Vec<_> = ["data", "index", "snapshots", "locks"]
        .iter()
        .flat_map(|d| repo_files(&t.repo, d))
        .collect();
    assert_eq!(before, after);
    assert!(t.snapshots().is_empty());
}

#[test]
fn excluded_paths_are_not_backed_up() {
    let t = TestRepo::init();
    let src = t.path("src");
    write(&src.join("keep.txt"), b"keep");
    write(&src.join("skip.log"), b"skip");
    write(&src.join("sub/also.log"), b"skip");
    write(&src.join("cache/big"), b"skip");
    write(&src.join("sub/keep2.txt"), b"keep");
    let cache = format!("{}/cache", src.display());
    let b = t.backup_args(&[&src], &["--exclude", "*.log", "--exclude", &cache]);
    assert_eq!(u(&b, "files_new"), 2, "{b:#}");
    let ls = t.json(&["ls", "latest"]);
    let mut names: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["keep.txt", "sub", "sub/keep2.txt"]);
    let snap = &t.snapshots()[0];
    assert_eq!(snap["excludes"], serde_json::json!(["*.log", cache]));
}

#[test]
fn trailing_slash_names_the_same_source() {
    // `backup dir/` (as shell completion writes it) is the same source as `backup dir`: it
    // records the same path and finds the same parent, so nothing is read again.
    let t = TestRepo::init();
    let src = t.path("src");
    random_files(&src, 7, 3, 10_000);
    let first = t.backup(&[&src]);
    let with_slash = PathBuf::from(format!("{}/", src.display()));
    let b = t.backup(&[&with_slash]);
    assert_eq!(b["parent"], first["snapshot_id"], "{b:#}");
    assert_eq!(u(&b, "files_read"), 0, "{b:#}");
    let snaps = t.snapshots();
    assert_eq!(snaps[0]["paths"], snaps[1]["paths"]);
    assert_eq!(snaps[1]["paths"][0].as_str(), src.to_str());
}
