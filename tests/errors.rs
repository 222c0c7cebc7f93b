//! Error handling: exit codes, one-line messages, password sources, unreadable sources.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

use common::*;

/// Commands that open a repository, with the arguments they need.
fn opening_commands(t: &TestRepo) -> Vec<Vec<String>> {
    let src = t.path("src").display().to_string();
    let out = t.path("restored").display().to_string();
    [
        vec!["snapshots"],
        vec!["backup", &src],
        vec!["ls", "latest"],
        vec!["restore", "latest", "--target", &out],
        vec!["verify"],
        vec!["verify", "--read-data"],
        vec!["key", "list"],
        vec!["unlock"],
    ]
    .iter()
    .map(|v| v.iter().map(|s| s.to_string()).collect())
    .collect()
}

#[test]
fn wrong_password_exits_12_with_one_clean_line() {
    let t = TestRepo::init();
    let src = t.path("src");
    write(&src.join("f"), b"data");
    t.backup(&[&src]);
    let before = repo_files(&t.repo, "");
    for args in opening_commands(&t) {
        let mut c = t.command();
        c.env("HYDRABACKUP_PASSWORD", "not the password")
            .args(&args);
        let r = run_cmd(c);
        r.expect_code(12).expect_clean_error();
        assert!(
            r.stderr.contains("wrong password"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(r.stdout.is_empty(), "{args:?} printed: {}", r.stdout);

        let mut c = t.command();
        c.env("HYDRABACKUP_PASSWORD", "not the password")
            .args(&args)
            .arg("--json");
        let r = run_cmd(c);
        r.expect_code(12);
        assert_eq!(r.json()["exit_code"], 12, "{args:?}");
    }
    assert_eq!(
        repo_files(&t.repo, ""),
        before,
        "a failed open changed the repository"
    );
    assert!(!t.path("restored").exists());
}

#[test]
fn missing_repository_exits_10() {
    let t = TestRepo::new();
    write(&t.path("src/f"), b"data");
    for args in opening_commands(&t) {
        let r = t.run(&args);
        r.expect_code(10).expect_clean_error();
        assert!(
            r.stderr.contains("does not exist"),
            "{args:?}: {}",
            r.stderr
        );
        let mut a = args.clone();
        a.push("--json".into());
        assert_eq!(t.run(&a).expect_code(10).json()["exit_code"], 10);
    }
    assert!(!t.repo.exists(), "a command created the repository folder");

    // An existing but empty folder is not a repository either.
    fs::create_dir_all(&t.repo).unwrap();
    t.run(&["snapshots"]).expect_code(10).expect_clean_error();
}

#[test]
fn init_over_an_existing_repository_is_refused() {
    let t = TestRepo::init();
    let config = fs::read(t.repo.join("config")).unwrap();
    let keys = repo_files(&t.repo, "keys");
    assert_eq!(keys.len(), 1);
    let mut c = t.command();
    c.env("HYDRABACKUP_PASSWORD", "another password")
        .arg("init");
    let r = run_cmd(c);
    r.expect_code(1).expect_clean_error();
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
    assert_eq!(fs::read(t.repo.join("config")).unwrap(), config);
    assert_eq!(repo_files(&t.repo, "keys"), keys);
    t.json(&["snapshots"]);
    let mut c = t.command();
    c.env("HYDRABACKUP_PASSWORD", "another password")
        .arg("snapshots");
    run_cmd(c).expect_code(12);
}

#[test]
fn invalid_init_parameters_create_nothing() {
    let t = TestRepo::new();
    for args in [
        ["init", "--chunk-avg", "100"],
        ["init", "--pack-size", "0"],
        ["init", "--chunk-avg", "0"],
    ] {
        t.run(&args).expect_code(1).expect_clean_error();
        assert!(
            !t.repo.join("config").exists(),
            "{args:?} created a repository"
        );
    }
    // Out-of-range compression is rejected by the argument parser.
    let r = t.run(&["init", "--compression", "25"]);
    assert_ne!(r.code, Some(0));
    assert!(!t.repo.join("config").exists());
}

#[test]
fn no_password_or_no_repository_is_a_clean_error() {
    let t = TestRepo::init();
    let mut c = t.command();
    c.env_remove("HYDRABACKUP_PASSWORD").arg("snapshots");
    let r = run_cmd(c);
    r.expect_code(1).expect_clean_error();
    assert!(r.stderr.contains("no password"), "{}", r.stderr);

    let mut c = t.command();
    c.env_remove("HYDRABACKUP_REPOSITORY").arg("snapshots");
    let r = run_cmd(c);
    r.expect_code(1).expect_clean_error();
    assert!(r.stderr.contains("--repo"), "{}", r.stderr);

    // -r works in place of the variable.
    let mut c = t.command();
    c.env_remove("HYDRABACKUP_REPOSITORY").args([
        "-r",
        t.repo.to_str().unwrap(),
        "snapshots",
        "--json",
    ]);
    run_cmd(c).expect_code(0).json();
}

#[test]
fn missing_source_path_fails_without_a_snapshot() {
    let t = TestRepo::init();
    let r = t.run(&["backup", t.path("nope").to_str().unwrap()]);
    r.expect_code(1).expect_clean_error();
    assert!(r.stderr.contains("nope"), "{}", r.stderr);
    assert!(t.snapshots().is_empty());
    assert!(
        repo_files(&t.repo, "locks").is_empty(),
        "a lock was left behind"
    );
}

#[test]
fn password_from_file_and_command() {
    let t = TestRepo::init();
    let pwfile = t.path("pw.txt");
    let no_env = |args: &[&str]| {
        let mut c = t.command();
        c.env_remove("HYDRABACKUP_PASSWORD").args(args);
        run_cmd(c)
    };
    // Only the first line counts; a CRLF ending is stripped.
    fs::write(&pwfile, format!("{PASSWORD}\nsecond line is ignored\n")).unwrap();
    no_env(&["--password-file", pwfile.to_str().unwrap(), "snapshots"]).expect_code(0);
    fs::write(&pwfile, format!("{PASSWORD}\r\n")).unwrap();
    no_env(&["--password-file", pwfile.to_str().unwrap(), "snapshots"]).expect_code(0);
    let mut c = t.command();
    c.env_remove("HYDRABACKUP_PASSWORD")
        .env("HYDRABACKUP_PASSWORD_FILE", &pwfile)
        .arg("snapshots");
    run_cmd(c).expect_code(0);
    fs::write(&pwfile, "wrong\n").unwrap();
    no_env(&["--password-file", pwfile.to_str().unwrap(), "snapshots"])
        .expect_code(12)
        .expect_clean_error();
    no_env(&[
        "--password-file",
        t.path("missing").to_str().unwrap(),
        "snapshots",
    ])
    .expect_code(1)
    .expect_clean_error();

    let cmd = format!("printf '%s\\n' '{PASSWORD}'");
    no_env(&["--password-command", &cmd, "snapshots"]).expect_code(0);
    no_env(&["--password-command", "echo wrong", "snapshots"])
        .expect_code(12)
        .expect_clean_error();
    let r = no_env(&["--password-command", "exit 3", "snapshots"]);
    r.expect_code(1).expect_clean_error();
    assert!(r.stderr.contains("password command"), "{}", r.stderr);
    let mut c = t.command();
    c.env_remove("HYDRABACKUP_PASSWORD")
        .env("HYDRABACKUP_PASSWORD_COMMAND", &cmd)
        .arg("snapshots");
    run_cmd(c).expect_code(0);

    // A repository created with a password from a file opens with the same password elsewhere.
    let t2 = TestRepo::new();
    fs::write(t2.path("pw"), "from a file\n").unwrap();
    let mut c = t2.command();
    c.env_remove("HYDRABACKUP_PASSWORD").args([
        "init",
        "--password-file",
        t2.path("pw").to_str().unwrap(),
    ]);
    run_cmd(c).expect_code(0);
    let mut c = t2.command();
    c.env("HYDRABACKUP_PASSWORD", "from a file")
        .arg("snapshots");
    run_cmd(c).expect_code(0);
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn chown_tree(p: &Path, uid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(uid)).unwrap();
    if fs::symlink_metadata(p).unwrap().is_dir() {
        for e in fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path(), uid);
        }
    }
}

#[test]
fn unreadable_source_files_exit_3_and_are_listed() {
    const NOBODY: u32 = 65534;
    let t = TestRepo::init();
    let src = t.path("src");
    write(&src.join("ok.txt"), b"readable");
    write(&src.join("secret"), b"unreadable");
    write(&src.join("closed/inner"), b"in an unreadable folder");
    write(&src.join("zz-after"), b"after the errors");

    let mut c = t.command();
    c.args(["backup", "--json", src.to_str().unwrap()]);
    if is_root() {
        // Permission bits do not stop root: run the backup as an unprivileged user that owns
        // the repository and the tree, as a real non-root user would.
        match std::process::Command::new("true")
            .uid(NOBODY)
            .gid(NOBODY)
            .status()
        {
            Ok(s) if s.success() => {}
            other => panic!(
                "running as root, this test needs to switch to uid {NOBODY} and cannot ({other:?})"
            ),
        }
        chown_tree(t.dir.path(), NOBODY);
        c.uid(NOBODY).gid(NOBODY);
    }
    chmod(&src.join("secret"), 0o000);
    chmod(&src.join("closed"), 0o000);
    let r = run_cmd(c);
    chmod(&src.join("secret"), 0o644);
    chmod(&src.join("closed"), 0o755);

    r.expect_code(3);
    let v = r.json();
    assert!(v["snapshot_id"].is_string(), "{v:#}");
    let mut errs: Vec<&str> = v["source_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    errs.sort();
    let want = [
        src.join("closed").display().to_string(),
        src.join("secret").display().to_string(),
    ];
    assert_eq!(errs, want, "{v:#}");
    assert_eq!(v["errors"], 2);
    for p in &want {
        assert!(
            r.stderr.contains(p.as_str()),
            "no warning for {p}: {}",
            r.stderr
        );
    }
    assert!(!r.stderr.contains("panicked"));

    // The snapshot holds everything that could be read.
    let ls = t.json(&["ls", "latest"]);
    let paths: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"ok.txt") && paths.contains(&"zz-after"),
        "{paths:?}"
    );
    assert!(
        !paths.contains(&"secret") && !paths.contains(&"closed/inner"),
        "{paths:?}"
    );
    let out = t.path("out");
    t.restore("latest", &out, &[]);
    assert_eq!(fs::read(out.join("zz-after")).unwrap(), b"after the errors");
}
