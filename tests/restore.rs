//! Restore options and safety: --include, --dry-run, --overwrite, temporary names, choosing an
//! older snapshot.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use common::*;

/// A small tree: top.txt, notes.md, dir1/{a.txt,b.log,sub/c.txt}, dir2/{d.txt,e.bin}.
fn sample(src: &Path) {
    write(&src.join("top.txt"), b"top");
    write(&src.join("notes.md"), b"# notes");
    write(&src.join("dir1/a.txt"), b"a");
    write(&src.join("dir1/b.log"), b"b log");
    write(&src.join("dir1/sub/c.txt"), b"c");
    write(&src.join("dir2/d.txt"), b"d");
    write(&src.join("dir2/e.bin"), &random_bytes(3, 50_000));
}

/// Relative paths of the regular files under `dir`.
fn files_under(dir: &Path) -> BTreeSet<String> {
    scan(dir)
        .into_iter()
        .filter(|(_, e)| matches!(e.content, Content::File { .. }))
        .map(|(k, _)| String::from_utf8(k).unwrap())
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn include_glob_restores_only_matching_files() {
    let t = TestRepo::init();
    let src = t.path("src");
    sample(&src);
    t.backup(&[&src]);

    let out = t.path("txt");
    let r = t.restore("latest", &out, &["--include", "*.txt"]);
    let want = set(&["top.txt", "dir1/a.txt", "dir1/sub/c.txt", "dir2/d.txt"]);
    assert_eq!(files_under(&out), want);
    assert_eq!(r["files"], want.len(), "{r:#}");
    for f in &want {
        assert_eq!(
            fs::read(out.join(f)).unwrap(),
            fs::read(src.join(f)).unwrap(),
            "{f}"
        );
    }

    // Two patterns, one of them anchored with a leading slash.
    let out = t.path("two");
    t.restore(
        "latest",
        &out,
        &["--include", "/notes.md", "--include", "dir1/b.log"],
    );
    assert_eq!(files_under(&out), set(&["notes.md", "dir1/b.log"]));

    // A pattern matching nothing restores no file.
    let out = t.path("none");
    let r = t.restore("latest", &out, &["--include", "*.nothing"]);
    assert_eq!(r["files"], 0);
    assert!(!out.exists() || files_under(&out).is_empty());
}

#[test]
fn include_of_a_directory_restores_its_subtree() {
    let t = TestRepo::init();
    let src = t.path("src");
    sample(&src);
    t.backup(&[&src]);
    let out = t.path("out");
    t.restore("latest", &out, &["--include", "dir1"]);
    assert_eq!(
        files_under(&out),
        set(&["dir1/a.txt", "dir1/b.log", "dir1/sub/c.txt"])
    );
    assert_same_dir(&src.join("dir1"), &out.join("dir1"));
}

#[test]
fn dry_run_writes_nothing() {
    let t = TestRepo::init();
    let src = t.path("src");
    sample(&src);
    t.backup(&[&src]);
    let out = t.path("out");
    let r = t.restore("latest", &out, &["--dry-run"]);
    assert_eq!(r["dry_run"], true);
    let listed: BTreeSet<String> = r["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, files_under(&src));
    assert!(!out.exists(), "dry run created the target");

    // Into an existing, non-empty folder: nothing changes there either.
    fs::create_dir_all(&out).unwrap();
    write(&out.join("top.txt"), b"mine");
    let r = t.restore("latest", &out, &["--dry-run", "--include", "dir2"]);
    assert_eq!(r["files"], 2);
    assert_eq!(files_under(&out), set(&["top.txt"]));
    assert_eq!(fs::read(out.join("top.txt")).unwrap(), b"mine");
}

#[test]
fn non_empty_target_needs_overwrite() {
    let t = TestRepo::init();
    let src = t.path("src");
    sample(&src);
    t.backup(&[&src]);
    let out = t.path("out");
    write(&out.join("top.txt"), b"precious");
    write(&out.join("unrelated"), b"keep me");

    let r = t.run(&["restore", "latest", "--target", out.to_str().unwrap()]);
    r.expect_code(1).expect_clean_error();
    assert!(r.stderr.contains("--overwrite"), "{}", r.stderr);
    assert_eq!(files_under(&out), set(&["top.txt", "unrelated"]));
    assert_eq!(fs::read(out.join("top.txt")).unwrap(), b"precious");

    t.restore("latest", &out, &["--overwrite"]);
    assert_eq!(fs::read(out.join("top.txt")).unwrap(), b"top");
    assert_eq!(fs::read(out.join("unrelated")).unwrap(), b"keep me");
    let mut actual = scan(&out);
    assert!(actual.remove(b"unrelated".as_slice()).is_some());
    assert_same_tree(&scan(&src), &actual);
}

#[test]
fn restore_of_an_older_snapshot_gives_its_content() {
    let t = TestRepo::init();
    let src = t.path("src");
    sample(&src);
    let first_tree = scan(&src);
    let first = t.backup(&[&src])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    write(&src.join("top.txt"), b"changed");
    fs::remove_file(src.join("dir1/b.log")).unwrap();
    write(&src.join("new.txt"), b"new");
    let second = t.backup(&[&src])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(first, second);

    let out1 = t.path("out1");
    t.restore(&first[..10], &out1, &[]);
    assert_same_tree(&first_tree, &scan(&out1));
    let out2 = t.path("out2");
    t.restore("latest", &out2, &[]);
    assert_same_dir(&src, &out2);
}

#[test]
fn restore_from_a_damaged_pack_restores_the_rest_and_never_shows_a_damaged_file() {
    // Damage one blob of the data pack: the files that need it must not appear (not even as a
    // partial file under their real name), every other file is restored complete, no temporary
    // name is left behind, and the run fails with exit 13 naming the damaged files.
    let t = TestRepo::init();
    let src = t.path("src");
    sample(&src);
    random_files(&src.join("more"), 5, 4, 400_000);
    t.backup(&[&src]);
    let data_pack = packs(&t.repo)
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    flip_bit(&data_pack, pack_blob_area(&data_pack) - 100);

    let out = t.path("out");
    let r = t.run(&["restore", "latest", "--target", out.to_str().unwrap()]);
    r.expect_code(13);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    let last = r.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("hydrabackup: error: ") && last.contains("file(s) not restored"),
        "{}",
        r.stderr
    );
    let damaged: Vec<&str> = r
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("damaged: "))
        .map(|l| l.split(": ").next().unwrap())
        .collect();
    assert!(!damaged.is_empty(), "no damaged file named: {}", r.stderr);

    let restored = scan(&out);
    let mut complete = 0;
    for (rel, e) in &restored {
        let name = show(rel);
        assert!(
            !name.contains(".hydrabackup-tmp"),
            "temporary file left: {name}"
        );
        let Content::File { hash, .. } = &e.content else {
            continue;
        };
        assert!(
            !damaged.contains(&name.as_str()),
            "damaged file {name} was restored"
        );
        assert_eq!(
            *hash,
            hash_file(&src.join(&name)),
            "{name} is under its real name but differs from the source"
        );
        complete += 1;
    }
    let source_files = scan(&src)
        .values()
        .filter(|e| matches!(e.content, Content::File { .. }))
        .count();
    assert_eq!(
        complete + damaged.len(),
        source_files,
        "every file is either restored or named as damaged"
    );
}

#[test]
fn successful_restore_leaves_no_temporary_names() {
    let t = TestRepo::init();
    let src = t.path("src");
    sample(&src);
    random_files(&src.join("more"), 6, 20, 30_000);
    t.backup(&[&src]);
    let out = t.path("out");
    write(&out.join("dir1/a.txt"), b"old content to be replaced");
    t.restore("latest", &out, &["--overwrite"]);
    for rel in scan(&out).keys() {
        assert!(
            !show(rel).contains(".hydrabackup-tmp"),
            "temporary file left: {}",
            show(rel)
        );
    }
    assert_same_dir(&src, &out);
}

#[test]
fn files_named_like_temporary_files_restore_correctly() {
    // A snapshot may itself contain names of temporary files, old (`.NAME.hydrabackup-tmp`) and
    // current (`.hydrabackup-tmp.N`), e.g. from a backup of a folder an interrupted restore left
    // behind; restore must not mix them up with its own.
    let t = TestRepo::init();
    let src = t.path("src");
    write(&src.join("foo"), b"the real foo");
    write(
        &src.join(".foo.hydrabackup-tmp"),
        b"a file that looks temporary",
    );
    write(&src.join("bar"), b"bar");
    write(
        &src.join(".bar.hydrabackup-tmp/inside"),
        b"a directory that looks temporary",
    );
    for i in 0..4 {
        write(
            &src.join(format!(".hydrabackup-tmp.{i}")),
            b"temporary-looking",
        );
    }
    write(
        &src.join(".hydrabackup-tmp.4/inside"),
        b"in a temporary-looking folder",
    );
    t.backup(&[&src]);
    let out = t.path("out");
    t.restore("latest", &out, &[]);
    assert_same_dir(&src, &out);
}

#[test]
fn names_of_up_to_255_bytes_restore() {
    // The longest legal names leave no room for a temporary name built from them.
    let t = TestRepo::init();
    let src = t.path("src");
    for len in 239..=255 {
        write(&src.join("n".repeat(len)), format!("{len}").as_bytes());
    }
    let long = "d".repeat(255);
    write(&src.join(&long).join("x".repeat(255)), b"deep long");
    write(&src.join("short"), b"short");
    t.backup(&[&src]);
    let out = t.path("out");
    t.restore("latest", &out, &[]);
    assert_same_dir(&src, &out);
}

#[test]
fn one_unwritable_entry_does_not_stop_the_others() {
    // In the target a folder stands where the snapshot has the file dir1/a.txt, and a file
    // where it has the folder dir2: both are reported, left as they were, and everything else
    // is restored; the exit code says the restore is incomplete.
    let t = TestRepo::init();
    let src = t.path("src");
    sample(&src);
    random_files(&src.join("more"), 7, 30, 20_000);
    t.backup(&[&src]);
    let out = t.path("out");
    write(&out.join("dir1/a.txt/keep"), b"a folder in the way");
    write(&out.join("dir2"), b"a file in the way");
    let r = t.run(&[
        "restore",
        "latest",
        "--target",
        out.to_str().unwrap(),
        "--overwrite",
    ]);
    r.expect_code(3);
    let failed: BTreeSet<&str> = r
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("not restored: "))
        .map(|l| l.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        failed,
        BTreeSet::from(["dir1/a.txt", "dir2", "dir2/d.txt", "dir2/e.bin"]),
        "{}",
        r.stderr
    );
    let last = r.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("hydrabackup: error: "), "{}", r.stderr);
    assert_eq!(
        fs::read(out.join("dir1/a.txt/keep")).unwrap(),
        b"a folder in the way"
    );
    assert_eq!(fs::read(out.join("dir2")).unwrap(), b"a file in the way");
    let mut expected = scan(&src);
    let mut actual = scan(&out);
    for t in [&mut expected, &mut actual] {
        t.retain(|k, _| !k.starts_with(b"dir1") && !k.starts_with(b"dir2"));
    }
    assert_same_tree(&expected, &actual);
    for f in ["dir1/b.log", "dir1/sub/c.txt"] {
        assert_eq!(hash_file(&out.join(f)), hash_file(&src.join(f)), "{f}");
    }
}

#[test]
fn empty_target_restore_never_replaces_an_entry_that_appears_meanwhile() {
    // Into an empty target files are created under their real names. Just before two of them
    // are created, something else puts an entry there: a file at the target's top level and a
    // symlink (to a sentinel outside the target) in a folder the restore made. Both are kept
    // as they are and reported; nothing is written through the symlink; the rest is restored.
    let t = TestRepo::init();
    let src = t.path("src");
    sample(&src);
    t.backup(&[&src]);
    let out = t.path("out");
    let sentinel = t.path("sentinel");
    write(&sentinel, b"outside the target");
    let cmd = format!(
        "case \"$HYDRABACKUP_HOOK_PATH\" in \
         top.txt) printf planted > '{o}/top.txt';; \
         dir2/e.bin) ln -s '{s}' '{o}/dir2/e.bin';; esac",
        o = out.display(),
        s = sentinel.display()
    );
    let mut c = t.command();
    c.env("HYDRABACKUP_TEST_HOOK", format!("restore-create:{cmd}"))
        .args(["restore", "latest", "--json", "--target"])
        .arg(&out);
    let r = run_cmd(c);
    r.expect_code(3);
    let v = r.json();
    let failed: BTreeSet<String> = v["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert!(
                f["error"]
                    .as_str()
                    .unwrap()
                    .contains("appeared in the target"),
                "{v:#}"
            );
            f["path"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(failed, set(&["dir2/e.bin", "top.txt"]), "{v:#}");
    assert_eq!(fs::read(out.join("top.txt")).unwrap(), b"planted");
    assert_eq!(
        fs::read_link(out.join("dir2/e.bin")).unwrap(),
        sentinel,
        "the planted symlink is left as it was"
    );
    assert_eq!(fs::read(&sentinel).unwrap(), b"outside the target");
    for rel in [
        "notes.md",
        "dir1/a.txt",
        "dir1/b.log",
        "dir1/sub/c.txt",
        "dir2/d.txt",
    ] {
        assert_eq!(
            fs::read(out.join(rel)).unwrap(),
            fs::read(src.join(rel)).unwrap(),
            "{rel}"
        );
    }
    let names: Vec<String> = scan(&out).keys().map(|k| show(k)).collect();
    assert!(
        names.iter().all(|n| !n.contains(".hydrabackup-tmp")),
        "{names:?}"
    );
}

#[test]
fn a_killed_restore_shows_its_partial_file_and_overwrite_repairs_it() {
    // A restore killed in the middle of a large file leaves it under its real name (written
    // directly into the empty target), full of holes: its modification time is not the
    // snapshot's, which is set only when a file is complete. A new restore refuses the
    // non-empty target; with --overwrite it restores everything as in the snapshot.
    let t = TestRepo::init();
    let src = t.path("src");
    write(&src.join("big/file.bin"), &random_bytes(11, 6_000_000));
    set_mtime(&src.join("big/file.bin"), 1_600_000_000, 0);
    t.backup(&[&src]);
    let out = t.path("out");
    let mut c = t.command();
    c.env("HYDRABACKUP_FAILPOINT", "restore-wrote:2")
        .args(["restore", "latest", "--target"])
        .arg(&out);
    let r = run_cmd(c);
    assert_eq!(r.code, None, "the restore was killed: {r:?}");
    let partial = out.join("big/file.bin");
    let md = fs::metadata(&partial).expect("the partial file is under its real name");
    assert_ne!(hash_file(&partial), hash_file(&src.join("big/file.bin")));
    assert_ne!(
        md.modified().unwrap(),
        fs::metadata(src.join("big/file.bin"))
            .unwrap()
            .modified()
            .unwrap(),
        "a partial file does not carry the snapshot's modification time"
    );

    let r = t.run(&["restore", "latest", "--target", out.to_str().unwrap()]);
    r.expect_code(1).expect_clean_error();
    t.restore("latest", &out, &["--overwrite"]);
    assert_same_dir(&src, &out);
}
