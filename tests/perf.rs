//! Speed and memory machinery that must never change results: the memory-mapped index map of
//! the local cache, and the backup that stores each folder's tree as soon as it is walked.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A repository whose commands keep their cache in the test's folder.
fn cached_repo() -> (TestRepo, PathBuf) {
    let mut t = TestRepo::new();
    let cache = t.path("cache");
    t.env
        .push(("HYDRABACKUP_CACHE_DIR".into(), cache.display().to_string()));
    t.run(&["init"]).expect_code(0);
    (t, cache)
}

/// The index map files under the cache root.
fn maps(cache: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(cache) else {
        return Vec::new();
    };
    rd.map(|e| e.unwrap().path().join("index").join("merged"))
        .filter(|p| p.exists())
        .collect()
}

/// Restores the latest snapshot with `-v` into a fresh folder, checks it against `src` and
/// returns stderr (the log says whether the index was mapped or loaded).
fn restore_check(t: &TestRepo, src: &Path, into: &str, extra: &[&str]) -> String {
    let target = t.path(into);
    let mut args = vec![
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "-v",
    ];
    args.extend_from_slice(extra);
    let run = t.run(&args);
    run.expect_code(0);
    assert_same_dir(src, &target);
    run.stderr.clone()
}

#[test]
fn the_index_map_is_used_only_for_the_index_files_it_was_made_from() {
    let (t, cache) = cached_repo();
    let src = t.path("src");
    random_files(&src, 1, 40, 20_000);
    t.backup(&[&src]);

    // The backup mapped the empty index; the next command finds a new index file: it extends
    // the map with it; the one after maps it as it is.
    let log = restore_check(&t, &src, "r1", &[]);
    assert!(log.contains("index mapped files=1 added=1"), "{log}");
    assert_eq!(
        maps(&cache).len(),
        1,
        "one map, in the repository's cache folder"
    );
    let log = restore_check(&t, &src, "r2", &[]);
    assert!(log.contains("index mapped files=1\n"), "{log}");

    // An unchanged backup with the mapped index reuses every blob, and the repository verifies.
    let v = t.backup(&[&src]);
    assert_eq!(v["data_blobs_added"], 0, "{v:#}");
    assert_eq!(v["files_unchanged"], 40, "{v:#}");
    t.assert_verify_ok(&["--read-data"]);

    // New data means a new index file: the map is extended with it, and finds the new data.
    random_files(&src.join("more"), 2, 10, 30_000);
    t.backup(&[&src]);
    let log = restore_check(&t, &src, "r3", &[]);
    assert!(log.contains("index mapped files=2 added=1"), "{log}");
    let log = restore_check(&t, &src, "r4", &[]);
    assert!(log.contains("index mapped files=2\n"), "{log}");

    // A damaged map is noticed, rebuilt, and changes nothing.
    let map = &maps(&cache)[0];
    let len = std::fs::metadata(map).unwrap().len();
    flip_bit(map, len - 5);
    let log = restore_check(&t, &src, "r5", &[]);
    assert!(log.contains("damaged; rebuilding"), "{log}");
    assert!(log.contains("index loaded"), "{log}");
    let log = restore_check(&t, &src, "r6", &[]);
    assert!(log.contains("index mapped"), "{log}");

    // A truncated map is not used either.
    std::fs::OpenOptions::new()
        .write(true)
        .open(map)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let log = restore_check(&t, &src, "r7", &[]);
    assert!(log.contains("index loaded"), "{log}");

    // Without the cache nothing is read or written there.
    std::fs::remove_file(map).unwrap();
    let log = restore_check(&t, &src, "r8", &["--no-cache"]);
    assert!(log.contains("index loaded"), "{log}");
    assert!(maps(&cache).is_empty());
}

#[test]
fn an_unwritable_cache_costs_nothing_but_the_map() {
    let (t, cache) = cached_repo();
    let src = t.path("src");
    random_files(&src, 3, 10, 10_000);
    t.backup(&[&src]);
    // The repository's cache folder exists (the backup wrote a map of the empty index); a file
    // where the map's folder goes makes it unwritable, for root too.
    let own = std::fs::read_dir(&cache)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_dir_all(own.join("index")).unwrap();
    write(&own.join("index"), b"not a folder");
    let log = restore_check(&t, &src, "r1", &[]);
    let log2 = restore_check(&t, &src, "r2", &[]);
    assert!(log.contains("index loaded") && log2.contains("index loaded"));
    assert!(maps(&cache).is_empty());
    let v = t.backup(&[&src]);
    assert_eq!(v["data_blobs_added"], 0, "{v:#}");
}

#[test]
fn a_backup_of_many_folders_stores_every_tree_once_and_restores_exactly() {
    // Folders finished in any order by several walking threads: the snapshot is the folder
    // structure, every folder's tree is stored once, and a re-backup adds nothing.
    let t = TestRepo::init();
    let src = t.path("src");
    for i in 0..60 {
        let d = src.join(format!("d{:02}", i % 12)).join(format!("e{i:02}"));
        random_files(&d, i / 2, 2, 3_000);
    }
    let v = t.backup(&[&src]);
    // 60 leaf folders, 12 above them, and the root (trees differ: they record inodes).
    assert_eq!(v["dirs"], 72, "{v:#}");
    assert_eq!(v["tree_blobs_added"], 60 + 12 + 1, "{v:#}");
    let v = t.backup(&[&src]);
    assert_eq!(v["tree_blobs_added"], 0, "{v:#}");
    assert_eq!(v["data_blobs_added"], 0, "{v:#}");
    let target = t.path("r");
    t.restore("latest", &target, &[]);
    assert_same_dir(&src, &target);
    t.assert_verify_ok(&["--read-data"]);
}

#[test]
fn a_file_given_as_a_source_path_is_reported_by_that_path() {
    // Trees are built as folders finish; a file that is itself a source path (an entry of the
    // root tree) is still reported by its own path when it cannot be backed up: here it is
    // swapped for a symlink between the walk and the read.
    let t = TestRepo::init();
    let (dir, file) = (t.path("a/dir"), t.path("b/file"));
    random_files(&dir, 4, 3, 1_000);
    write(&file, b"bytes");
    let swap = format!(
        "[ \"$HYDRABACKUP_HOOK_PATH\" = '{f}' ] && {{ rm '{f}'; ln -s /etc/passwd '{f}'; }}; true",
        f = file.display()
    );
    let mut c = t.command();
    c.env("HYDRABACKUP_TEST_HOOK", format!("open:{swap}"))
        .args(["backup", "--json"])
        .arg(&dir)
        .arg(&file);
    let r = run_cmd(c);
    assert_eq!(r.code, Some(3), "{r:?}");
    let v = r.json();
    let errors = v["source_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{v:#}");
    assert_eq!(errors[0]["path"], file.display().to_string(), "{v:#}");
    assert_eq!(errors[0]["kind"], "changed", "{v:#}");
}
