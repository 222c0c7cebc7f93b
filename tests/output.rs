//! The output contract: the human output and the `--json` document of every command, pinned
//! by the snapshot files `tests/snapshots/output__<command>.snap` (scripts depend on them).
//! Volatile values (ids, temporary paths, durations, key and Swamp times, user and host names,
//! sizes that depend on tree blobs) become placeholders first; snapshot times are fixed with
//! `--time`. A changed output fails here; when the change is deliberate, accept it with
//! `cargo insta review` (or rerun with `INSTA_UPDATE=always`) and commit the changed files.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;
use regex::{Captures, Regex};
use serde_json::Value;

/// JSON keys whose values change from run to run.
const VOLATILE: &[&str] = &[
    "duration_secs",
    "created",
    "created_ns",
    "modified_ns",
    "mtime_ns",
    "program",
    "bytes_added",
    "bytes_stored",
    "bytes_read",
    "bytes_rewritten",
    "bytes_used",
    "bytes_unused",
    "bytes_unused_left",
    "bytes_deleted",
    "bytes_marked",
    "bytes_removed",
    "bytes_waiting",
    "waiting_until",
    "pack_bytes",
    "pack_bytes_before",
    "pack_bytes_after",
    "stored_bytes",
    "unique_bytes",
    "compression_ratio",
    "dedup_ratio",
];

/// Replaces the values of [`VOLATILE`] keys.
fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if VOLATILE.contains(&k.as_str()) && !x.is_null() {
                    *x = Value::String("[redacted]".into());
                } else {
                    redact(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Runs commands against test repositories and normalises what they print.
struct Pin {
    tmp: String,
    user: Regex,
    host: Regex,
    rules: Vec<(Regex, &'static str)>,
    time: Regex,
}

impl Pin {
    fn new(t: &TestRepo) -> Pin {
        let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let user = t.json(&["key", "list"])[0]["user"]
            .as_str()
            .unwrap()
            .to_string();
        // ASCII word boundaries (the regex crate is built without Unicode tables here).
        let re = |r: &str| Regex::new(&r.replace(r"\b", r"(?-u:\b)")).unwrap();
        let word = |w: &str| re(&format!(r"\b{}\b", regex::escape(w.trim())));
        Pin {
            tmp: t.dir.path().to_str().unwrap().to_string(),
            user: word(&user),
            host: word(&host),
            rules: vec![
                (re(r"[0-9a-f]{64}"), "[id]"),
                (re(r"\b([0-9a-f]{12}|[0-9a-f]{8})\b"), "[id]"),
                (re(r"\b[0-9]+(\.[0-9])? (B|KiB|MiB|GiB|TiB)\b"), "[size]"),
                (re(r"\b[0-9]+\.[0-9]+ s\)"), "[secs] s)"),
                (re(r"\b[0-9]+\.[0-9]+x\b"), "[ratio]x"),
            ],
            time: re(r"\b[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9:.]{8,}([+-][0-9:]{5}|Z)?"),
        }
    }

    fn normalise(&self, s: &str) -> String {
        let mut s = s.replace(&self.tmp, "[tmp]");
        // Snapshot times are set (in 2001); any other time is the time of the run.
        s = self
            .time
            .replace_all(&s, |c: &Captures| {
                if c[0].starts_with("2001-") {
                    c[0].to_string()
                } else {
                    "[time]".into()
                }
            })
            .into_owned();
        for (r, to) in &self.rules {
            s = r.replace_all(&s, *to).into_owned();
        }
        s = self.user.replace_all(&s, "[user]").into_owned();
        self.host.replace_all(&s, "[host]").into_owned()
    }

    /// Runs `args` on `t` and returns the normalised record of the run.
    fn record(&self, t: &TestRepo, args: &[&str]) -> String {
        let r = t.run(args);
        let stdout = if args.contains(&"--json") && !r.stdout.is_empty() {
            let mut v = r.json();
            redact(&mut v);
            serde_json::to_string_pretty(&v).unwrap() + "\n"
        } else {
            r.stdout.clone()
        };
        format!(
            "$ hydrabackup {}\nexit: {:?}\n--- stdout\n{}--- stderr\n{}\n",
            self.normalise(&args.join(" ")),
            r.code,
            self.normalise(&stdout),
            self.normalise(&r.stderr)
        )
    }

    /// Runs each command on its repository and pins the records as snapshot `name`.
    fn pin(&self, name: &str, runs: &[(&TestRepo, &[&str])]) {
        let text: String = runs.iter().map(|(t, a)| self.record(t, a)).collect();
        assert_snapshot(name, &text);
    }
}

/// Compares `text` with the committed insta snapshot `tests/snapshots/output__<name>.snap`
/// (review a deliberate change with `cargo insta review`, or rerun with `INSTA_UPDATE=always`).
#[track_caller]
fn assert_snapshot(name: &str, text: &str) {
    insta::assert_snapshot!(name, text);
}

/// Deterministic source files: fixed content, modes and times.
fn source(dir: &Path) {
    let files: [(&str, u64, usize); 3] = [("a", 1, 5000), ("b", 2, 7000), ("sub/c", 3, 3000)];
    for (name, seed, len) in files {
        write(&dir.join(name), &random_bytes(seed, len));
    }
    std::os::unix::fs::symlink("a", dir.join("l")).unwrap();
    // A few small Swamps (each one blob, whatever the repository's chunker secret).
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_hydgen"))
        .args(["gen", "--seed", "7", "--swamps", "6", "--size", "8K"])
        .args(["--v2-percent", "50", "--v1-percent", "34", "--root"])
        .arg(dir.join("hyd"))
        .output()
        .unwrap();
    assert!(made.status.success(), "hydgen: {made:?}");
    for (i, e) in walk(dir).iter().enumerate() {
        let m = fs::symlink_metadata(e).unwrap();
        if m.file_type().is_symlink() {
            continue;
        }
        let mode = if m.is_dir() { 0o755 } else { 0o644 };
        fs::set_permissions(e, fs::Permissions::from_mode(mode)).unwrap();
        set_mtime(e, 978_307_200 + i as i64, 0);
    }
}

/// `dir` and everything below it, children before their folder (so that setting a file's
/// time leaves its folder's as set).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            v.extend(walk(&p));
        } else {
            v.push(p);
        }
    }
    v.push(dir.to_path_buf());
    v
}

#[test]
fn every_command_human_and_json_output_is_pinned() {
    let mut a = TestRepo::new();
    let b = TestRepo::new();
    let c = TestRepo::new();
    // `b` and `c` live inside `a`'s folder, so that one temporary path is replaced.
    let b = TestRepo {
        repo: a.path("b"),
        ..b
    };
    let c = TestRepo {
        repo: a.path("c"),
        ..c
    };
    let run = |t: &TestRepo, args: &[&str]| {
        t.run(args).expect_code(0);
    };
    a.run(&["init"]).expect_code(0);
    let p = Pin::new(&a);
    p.pin("init", &[(&b, &["init"]), (&c, &["init", "--json"])]);
    drop(b);

    let src = a.path("src");
    source(&src);
    let s = src.to_str().unwrap();
    let t1 = ["--time", "2001-01-01T00:00:00Z", "--host", "testhost"];
    let t2 = ["--time", "2001-01-02T00:00:00Z", "--host", "testhost"];
    p.pin(
        "backup",
        &[
            (
                &a,
                &["backup", t1[0], t1[1], t1[2], t1[3], "--tag", "first", s],
            ),
            (&c, &["backup", "--json", t1[0], t1[1], t1[2], t1[3], s]),
        ],
    );
    write(&src.join("b"), &random_bytes(4, 7000));
    set_mtime(&src.join("b"), 978_400_000, 0);
    p.pin(
        "backup_dry_run",
        &[
            (
                &a,
                &[
                    "backup",
                    "--dry-run",
                    "--show-names",
                    t2[0],
                    t2[1],
                    t2[2],
                    t2[3],
                    s,
                ],
            ),
            (
                &a,
                &[
                    "backup",
                    "--dry-run",
                    "--json",
                    t2[0],
                    t2[1],
                    t2[2],
                    t2[3],
                    s,
                ],
            ),
        ],
    );
    run(&a, &["backup", "-q", t2[0], t2[1], t2[2], t2[3], s]);

    for (name, args) in [
        ("snapshots", &["snapshots"][..]),
        ("ls", &["ls", "latest", "/"]),
        ("show", &["show", "latest"]),
        ("find_key", &["find", "--key", "*-0000000[01]"]),
        ("stats", &["stats"]),
        ("verify", &["verify", "--read-data"]),
        ("key_list", &["key", "list"]),
        (
            "forget_dry_run",
            &["forget", "--dry-run", "--keep-last", "1", "--prune"],
        ),
        ("prune_dry_run", &["prune", "--dry-run"]),
        ("unlock", &["unlock"]),
    ] {
        let json: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
        p.pin(name, &[(&a, args), (&a, &json)]);
    }

    // conf (issue 17): diff, find, the stored policy, config show.
    let ids: Vec<String> = a
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    let (s1, s2) = (&ids[0][..8], &ids[1][..8]);
    for (name, args) in [
        ("diff", &["diff", s1, s2][..]),
        ("find", &["find", "b"]),
        ("policy_set", &["policy", "set", "--retention", "7d,4w"]),
        ("policy_show", &["policy", "show"]),
        ("config_show", &["config", "show"]),
    ] {
        let json: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
        p.pin(name, &[(&a, args), (&a, &json)]);
    }

    let r1 = a.path("r1");
    let r2 = a.path("r2");
    let r3 = a.path("r3");
    p.pin(
        "restore",
        &[
            (&a, &["restore", "latest", "-t", r1.to_str().unwrap()]),
            (
                &a,
                &[
                    "restore",
                    "--json",
                    "--at",
                    "2001-01-01T12:00:00Z",
                    "-t",
                    r2.to_str().unwrap(),
                ],
            ),
            (
                &a,
                &["restore", "--dry-run", "latest", "-t", r3.to_str().unwrap()],
            ),
            (
                &a,
                &[
                    "restore",
                    "--dry-run",
                    "--json",
                    "latest",
                    "-t",
                    r3.to_str().unwrap(),
                ],
            ),
        ],
    );

    // Options restic users reach for (their behaviour: tests/restore_options.rs, listing.rs).
    write(&r1.join("stray"), b"not in the snapshot");
    let r1s = r1.to_str().unwrap();
    p.pin(
        "restic_options",
        &[
            (
                &a,
                &["restore", "latest", "--delete", "--verify", "-t", r1s],
            ),
            (
                &a,
                &[
                    "restore",
                    "latest:sub",
                    "--json",
                    "--verify",
                    "-t",
                    r3.to_str().unwrap(),
                ],
            ),
            (&a, &["snapshots", "--latest", "1", "--tag", "first"]),
            (
                &a,
                &["snapshots", "--json", "--latest", "1", "--host", "testhost"],
            ),
        ],
    );

    // copy: into `c` (which has one backup of its own) with a second source of the same data.
    let mut c = c;
    c.env.push((
        "HYDRABACKUP_FROM_REPOSITORY".into(),
        a.repo.to_str().unwrap().into(),
    ));
    c.env
        .push(("HYDRABACKUP_FROM_PASSWORD".into(), a.password.clone()));
    p.pin(
        "copy",
        &[
            (&c, &["copy", "--dry-run"]),
            (&c, &["copy", "--dry-run", "--json"]),
            (&c, &["copy", "latest"]),
            (&c, &["copy", "--json"]),
        ],
    );
    p.pin(
        "forget_prune",
        &[
            (&c, &["forget", "--keep-last", "2", "--prune"]),
            (&c, &["forget", "--yes", "--keep-last", "2", "--prune"]),
            (&c, &["forget", "--yes", "--json", "--keep-last", "1"]),
            (&c, &["prune", "--yes", "--keep-delete", "0s"]),
            (&c, &["prune", "--yes", "--json", "--keep-delete", "0s"]),
            (&c, &["prune", "--yes", "--instant-delete"]),
        ],
    );

    let np = a.path("new-password");
    fs::write(&np, "second password\n").unwrap();
    let npf = np.to_str().unwrap();
    let added = a.json(&["key", "add", "--new-password-file", npf])["added"]
        .as_str()
        .unwrap()
        .to_string();
    p.pin(
        "key_change",
        &[
            (&a, &["key", "add", "--new-password-file", npf]),
            (&a, &["key", "remove", &added[..12]]),
            (&a, &["key", "remove", "--yes", &added[..12]]),
            (&a, &["key", "add", "--json", "--new-password-file", npf]),
        ],
    );
    p.pin(
        "key_passwd",
        &[(&a, &["key", "passwd", "--new-password-file", npf])],
    );
    a.password = "second password".into();
    p.pin(
        "key_passwd_json",
        &[(&a, &["key", "passwd", "--json", "--new-password-file", npf])],
    );

    let users = a.path("users");
    let u = users.to_str().unwrap();
    p.pin(
        "serve_user",
        &[
            (
                &a,
                &[
                    "serve-user",
                    "--users",
                    u,
                    "--new-password-file",
                    npf,
                    "alice",
                ],
            ),
            (
                &a,
                &[
                    "serve-user",
                    "--json",
                    "--users",
                    u,
                    "--new-password-file",
                    npf,
                    "bob",
                ],
            ),
        ],
    );
    p.pin(
        "errors",
        &[
            (&a, &["ls", "deadbeef"]),
            (&a, &["ls", "--json", "deadbeef"]),
            (&a, &["prune", "--max-unused", "101"]),
            (&a, &["prune", "--json", "--max-unused", "101"]),
        ],
    );
    p.pin(
        "tag_repair",
        &[
            (&a, &["tag", "latest", "--add", "pinned"]),
            (&a, &["tag", "--json", "latest", "--remove", "pinned"]),
            (&a, &["repair", "index", "--dry-run"]),
            (&a, &["repair", "snapshots", "--json"]),
        ],
    );
    // `watch` until the SIGTERM a hook sends during its first cycle (which it finishes).
    a.env.push((
        "HYDRABACKUP_TEST_HOOK".into(),
        "watch-cycle:kill -TERM $PPID".into(),
    ));
    p.pin("watch", &[(&a, &["watch", "--interval", "1s", s])]);
}
