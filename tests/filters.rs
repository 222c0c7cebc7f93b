//! Backup filters as restic users know them: unanchored patterns, exclude files, case-insensitive
//! patterns, CACHEDIR.TAG, one file system, --files-from*, --stdin / --stdin-from-command,
//! missing sources and compression by name.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use common::*;
use serde_json::Value;

/// The paths `ls --json` lists for the latest snapshot.
fn listed(t: &TestRepo) -> BTreeSet<String> {
    t.json(&["ls", "latest"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing in {v:#}"))
}

#[test]
fn unanchored_patterns_match_at_any_depth_and_unused_ones_are_warned() {
    let t = TestRepo::init();
    let src = t.path("src");
    write(&src.join("keep.txt"), b"k");
    write(&src.join("cache/top"), b"x");
    write(&src.join("a/b/cache/deep"), b"x");
    write(&src.join("a/cached"), b"k");
    write(&src.join("var/logs/old.gz"), b"x");
    write(&src.join("var/logs/sub/kept.gz"), b"k");
    write(&src.join("anchored/x"), b"x");
    let anchored = format!("{}/anchored", src.display());
    let b = t.backup_args(
        &[&src],
        &[
            "--exclude",
            "cache",
            "--exclude",
            "logs/*.gz",
            "--exclude",
            &anchored,
            "--exclude",
            "no-such-name",
        ],
    );
    assert_eq!(b["unmatched_excludes"], serde_json::json!(["no-such-name"]));
    assert_eq!(
        listed(&t),
        set(&[
            "keep.txt",
            "a",
            "a/b",
            "a/cached",
            "var",
            "var/logs",
            "var/logs/sub",
            "var/logs/sub/kept.gz"
        ])
    );
    // The human output warns, once, on stderr.
    let r = t.run(&[
        "backup".as_ref(),
        src.as_os_str(),
        "--exclude".as_ref(),
        "no-such-name".as_ref(),
    ]);
    r.expect_code(0);
    assert!(
        r.stderr
            .contains("warning: exclude pattern \"no-such-name\" matched nothing"),
        "{}",
        r.stderr
    );
    // A pattern the glob syntax refuses is a clear error.
    let r = t.run(&[
        "backup".as_ref(),
        src.as_os_str(),
        "--exclude".as_ref(),
        "a[".as_ref(),
    ]);
    r.expect_code(1).expect_clean_error();
    assert!(r.stderr.contains("bad exclude pattern"), "{}", r.stderr);
}

#[test]
fn exclude_files_and_case_insensitive_patterns() {
    let t = TestRepo::init();
    let src = t.path("src");
    for f in ["a.log", "B.LOG", "photo.JPG", "photo.jpg", "tmp/x", "keep"] {
        write(&src.join(f), f.as_bytes());
    }
    let ex = t.path("excludes");
    fs::write(&ex, "# comment\n\n  *.log  \ntmp\n").unwrap();
    let iex = t.path("iexcludes");
    fs::write(&iex, "*.jpg\n").unwrap();
    t.backup_args(
        &[&src],
        &[
            "--exclude-file",
            ex.to_str().unwrap(),
            "--iexclude-file",
            iex.to_str().unwrap(),
        ],
    );
    assert_eq!(listed(&t), set(&["B.LOG", "keep"]));
    t.backup_args(&[&src], &["--iexclude", "*.LOG"]);
    assert_eq!(
        listed(&t),
        set(&["keep", "photo.JPG", "photo.jpg", "tmp", "tmp/x"])
    );
    let snap = t.snapshots().pop().unwrap();
    assert_eq!(snap["excludes"], serde_json::json!(["*.LOG"]));
    // A missing exclude file is an error, not an empty list.
    let r = t.run(&[
        "backup".as_ref(),
        src.as_os_str(),
        "--exclude-file".as_ref(),
        t.path("nope").as_os_str(),
    ]);
    r.expect_code(1).expect_clean_error();
}

#[test]
fn exclude_caches_needs_the_standard_signature() {
    let t = TestRepo::init();
    let src = t.path("src");
    write(
        &src.join("cache/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n",
    );
    write(&src.join("cache/blob"), b"x");
    write(&src.join("fake/CACHEDIR.TAG"), b"Signature: not the one\n");
    write(&src.join("fake/blob"), b"k");
    write(&src.join("keep"), b"k");
    t.backup_args(&[&src], &["--exclude-caches"]);
    assert_eq!(
        listed(&t),
        set(&["fake", "fake/CACHEDIR.TAG", "fake/blob", "keep"])
    );
    // Without the option the cache is backed up.
    t.backup(&[&src]);
    assert!(listed(&t).contains("cache/blob"));
}

#[test]
fn one_file_system_stores_mount_points_empty() {
    // /dev/shm is a separate file system (tmpfs) below /dev on Linux.
    let shm = Path::new("/dev/shm");
    let dev = |p: &Path| std::os::unix::fs::MetadataExt::dev(&fs::metadata(p).unwrap());
    if !shm.is_dir() || dev(shm) == dev(Path::new("/dev")) {
        eprintln!("skipped: /dev/shm is not a separate file system here");
        return;
    }
    let t = TestRepo::init();
    let mine = tempfile::Builder::new()
        .prefix("hbtest")
        .tempdir_in(shm)
        .unwrap();
    write(&mine.path().join("f"), b"on tmpfs");
    let r = t.run(&["backup", "/dev", "--one-file-system", "--json"]);
    assert!(matches!(r.code, Some(0 | 3)), "{r:?}");
    let all = listed(&t);
    assert!(all.contains("shm"), "{all:?}");
    assert!(!all.iter().any(|p| p.starts_with("shm/")), "{all:?}");
    // A source path on another file system is backed up itself.
    t.backup_args(&[mine.path()], &["-x"]);
    assert_eq!(listed(&t), set(&["f"]));
}

#[test]
fn files_from_plain_verbatim_and_raw() {
    let t = TestRepo::init();
    let src = t.path("src");
    for f in ["a", "b", " spaced", "new\nline"] {
        write(&src.join(f), f.as_bytes());
    }
    let list = t.path("list");
    fs::write(
        &list,
        format!(
            "# what to back up\n\n  {}  \n{}\n",
            src.join("a").display(),
            src.join("b").display()
        ),
    )
    .unwrap();
    let b = t.json(&["backup".as_ref(), "--files-from".as_ref(), list.as_os_str()]);
    assert_eq!(u(&b, "files_new"), 2, "{b:#}");
    assert_eq!(listed(&t), set(&["a", "b"]));

    let verbatim = t.path("verbatim");
    fs::write(&verbatim, format!("{}\n", src.join(" spaced").display())).unwrap();
    t.json(&[
        "backup".as_ref(),
        "--files-from-verbatim".as_ref(),
        verbatim.as_os_str(),
    ]);
    assert_eq!(listed(&t), set(&[" spaced"]));

    let raw = t.path("raw");
    let mut bytes = src.join("new\nline").into_os_string().into_encoded_bytes();
    bytes.push(0);
    bytes.extend(src.join("a").into_os_string().into_encoded_bytes());
    bytes.push(0);
    fs::write(&raw, bytes).unwrap();
    t.json(&[
        "backup".as_ref(),
        "--files-from-raw".as_ref(),
        raw.as_os_str(),
    ]);
    assert_eq!(listed(&t), set(&["a", "new\nline"]));
}

#[test]
fn a_missing_source_among_several_is_skipped_with_exit_3() {
    let t = TestRepo::init();
    let (a, b) = (t.path("a"), t.path("b"));
    write(&a.join("f"), b"data");
    let missing = t.path("typo");
    let mut c = t.command();
    c.args(["backup", "--json"]).arg(&a).arg(&missing).arg(&b);
    write(&b.join("g"), b"more");
    let r = run_cmd(c);
    r.expect_code(3);
    let v = r.json();
    assert!(v["snapshot_id"].is_string(), "{v:#}");
    let errs = v["source_errors"].as_array().unwrap();
    assert_eq!(errs.len(), 1, "{v:#}");
    assert_eq!(errs[0]["kind"], "missing");
    assert_eq!(errs[0]["path"].as_str(), missing.to_str());
    assert_eq!(listed(&t), set(&["a", "a/f", "b", "b/g"]));
    let snap = t.snapshots().pop().unwrap();
    assert_eq!(snap["paths"].as_array().unwrap().len(), 2);

    // The human output names it.
    let r = t.run(&["backup".as_ref(), a.as_os_str(), missing.as_os_str()]);
    r.expect_code(3);
    assert!(
        r.stderr.contains(&format!(
            "warning: {}: does not exist; skipped",
            missing.display()
        )),
        "{}",
        r.stderr
    );

    // Nothing that exists: an error, and no snapshot.
    let before = t.snapshots().len();
    let r = t.run(&["backup".as_ref(), missing.as_os_str()]);
    r.expect_code(1).expect_clean_error();
    assert!(r.stderr.contains("No such file"), "{}", r.stderr);
    assert_eq!(t.snapshots().len(), before);
}

#[test]
fn stdin_and_stdin_from_command() {
    let t = TestRepo::init();
    let data = random_bytes(5, 3_000_000);
    let mut c = t.command();
    c.args(["backup", "--stdin", "--stdin-filename", "db.sql", "--json"]);
    let o = assert_cmd::Command::from_std(c)
        .write_stdin(data.clone())
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    // The stream's last line is the summary.
    let out = String::from_utf8(o.stdout).unwrap();
    let v: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(v["message_type"], "summary", "{out}");
    assert_eq!(u(&v, "total_bytes"), data.len() as u64, "{v:#}");
    assert_eq!(listed(&t), set(&["db.sql"]));
    let out = t.path("out");
    t.restore("latest", &out, &[]);
    assert_eq!(fs::read(out.join("db.sql")).unwrap(), data);
    let snap = t.snapshots().pop().unwrap();
    assert_eq!(snap["paths"], serde_json::json!(["/db.sql"]));

    // A command's output; its exit status decides.
    // (`t.json` would put --json after `--`, among the command's arguments.)
    let v = t
        .run(&[
            "backup",
            "--json",
            "--stdin-from-command",
            "--stdin-filename",
            "dump",
            "--",
            "sh",
            "-c",
            "printf 'hello\\n'; printf 'world\\n'",
        ])
        .expect_code(0)
        .json();
    assert!(v["snapshot_id"].is_string());
    let r = t.run(&["dump", "latest", "dump"]);
    assert_eq!(r.expect_code(0).stdout, "hello\nworld\n");

    let before = t.snapshots().len();
    let r = t.run(&[
        "backup",
        "--stdin-from-command",
        "--",
        "sh",
        "-c",
        "echo partial; exit 4",
    ]);
    r.expect_code(1).expect_clean_error();
    assert!(r.stderr.contains("exit status: 4"), "{}", r.stderr);
    assert!(r.stderr.contains("no snapshot was written"), "{}", r.stderr);
    assert_eq!(t.snapshots().len(), before);
    let r = t.run(&["backup", "--stdin-from-command", "--", "/no/such/program"]);
    r.expect_code(1).expect_clean_error();
    assert_eq!(t.snapshots().len(), before);

    // --stdin takes no paths; a file name must be one name.
    let r = t.run(&["backup", "--stdin", "x"]);
    r.expect_code(1).expect_clean_error();
    let r = t.run(&["backup", "--stdin", "--stdin-filename", "a/b"]);
    r.expect_code(1).expect_clean_error();
    assert_eq!(t.snapshots().len(), before);
}

#[test]
fn compression_by_name_for_the_repository_and_per_backup() {
    let t = TestRepo::init_with(&["--compression", "off"]);
    assert_eq!(t.json(&["cat", "config"])["compression"], 0);
    let src = t.path("src");
    // Compressible, and different in each folder so that nothing deduplicates.
    let text = |seed: u8| -> Vec<u8> {
        (0..400_000u32)
            .map(|i| b"abcdefgh"[((i / 7) as usize + seed as usize) % 8])
            .collect()
    };
    write(&src.join("one/f"), &text(1));
    write(&src.join("two/f"), &text(2));
    let off = t.backup(&[&src.join("one")]);
    let max = t.backup_args(&[&src.join("two")], &["--compression", "max"]);
    let (off, max) = (u(&off, "bytes_stored"), u(&max, "bytes_stored"));
    assert!(off > 400_000, "uncompressed: {off}");
    assert!(max * 20 < off, "max {max} vs off {off}");
    let out = t.path("out");
    t.restore("latest", &out, &[]);
    assert_eq!(fs::read(out.join("f")).unwrap(), text(2));
    let levels = [
        ("auto", 1),
        ("fastest", 1),
        ("better", 9),
        ("max", 19),
        ("7", 7),
    ];
    for (name, level) in levels {
        let t = TestRepo::init_with(&["--compression", name]);
        assert_eq!(t.json(&["cat", "config"])["compression"], level, "{name}");
    }
    let r = TestRepo::new().run(&["init", "--compression", "best"]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("auto, off, fastest, better, max"),
        "{}",
        r.stderr
    );
}
