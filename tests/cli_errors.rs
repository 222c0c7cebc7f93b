//! Error wording a new user meets: a mistyped repository path, an unknown location scheme,
//! `key add` without a terminal, FIFO and `/dev/stdin` sources, and what `--help` shows.

mod common;

use common::*;

#[test]
fn a_mistyped_repository_path_says_it_does_not_exist_and_not_to_init() {
    let t = TestRepo::init();
    let typo = t.path("repo-typo");
    for args in [
        vec!["snapshots"],
        vec!["backup", "/tmp"],
        vec!["ls", "latest"],
    ] {
        let mut c = t.command();
        c.env("HYDRABACKUP_REPOSITORY", &typo).args(&args);
        let r = run_cmd(c);
        r.expect_code(10).expect_clean_error();
        assert!(
            r.stderr.contains(&format!(
                "repository {} does not exist: check the location",
                typo.display()
            )),
            "{args:?}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains("init"), "{}", r.stderr);
    }
    assert!(!typo.exists());
}

#[test]
fn unknown_location_schemes_are_named() {
    let t = TestRepo::new();
    for (loc, scheme) in [
        ("b2:bucket/path", "b2"),
        ("gs:bucket", "gs"),
        ("https://h/x", "https"),
    ] {
        for cmd in ["init", "snapshots"] {
            let mut c = t.command();
            c.current_dir(t.dir.path())
                .env("HYDRABACKUP_REPOSITORY", loc)
                .arg(cmd);
            let r = run_cmd(c);
            r.expect_code(2).expect_clean_error();
            assert!(
                r.stderr
                    .contains(&format!("unknown location scheme \"{scheme}\"")),
                "{loc}: {}",
                r.stderr
            );
        }
    }
    // Nothing was created under a name that looks like a location.
    assert_eq!(std::fs::read_dir(t.dir.path()).unwrap().count(), 0);
    // A local folder whose name has a colon: `local:` (or an existing path) reaches it.
    let odd = t.path("odd:name");
    let mut c = t.command();
    c.env("HYDRABACKUP_REPOSITORY", format!("local:{}", odd.display()))
        .arg("init");
    run_cmd(c).expect_code(0);
    let mut c = t.command();
    c.env("HYDRABACKUP_REPOSITORY", &odd)
        .args(["snapshots", "--json"]);
    run_cmd(c).expect_code(0);
}

#[test]
fn key_add_without_a_terminal_names_the_new_password_options() {
    let t = TestRepo::init();
    let r = t.run(&["key", "add"]);
    r.expect_code(1).expect_clean_error();
    assert!(r.stderr.contains("--new-password-file"), "{}", r.stderr);
    assert!(
        r.stderr.contains("HYDRABACKUP_NEW_PASSWORD"),
        "{}",
        r.stderr
    );
    assert_eq!(t.json(&["key", "list"]).as_array().unwrap().len(), 1);
}

#[test]
fn fifo_and_dev_stdin_sources_say_what_was_done() {
    let t = TestRepo::init();
    let fifo = t.path("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads one NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let r = t.run(&["backup".as_ref(), fifo.as_os_str()]);
    r.expect_code(0);
    assert!(
        r.stderr
            .contains("is not a regular file or folder: it is not read; use --stdin"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("FIFO (not backed up)"), "{}", r.stderr);

    let r = t.run(&["backup", "/dev/stdin"]);
    r.expect_code(0);
    assert!(
        r.stderr.contains("/dev/stdin is a symbolic link"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("use --stdin"), "{}", r.stderr);
    // What it did: stored the link.
    let ls = t.json(&["ls", "latest"]);
    assert_eq!(ls[0]["type"], "symlink", "{ls:#}");
}

#[test]
fn help_lists_the_command_s_options_first_and_the_password_variables() {
    let t = TestRepo::new();
    for cmd in ["backup", "restore", "snapshots"] {
        let r = t.run(&[cmd, "--help"]);
        let out = &r.expect_code(0).stdout;
        let own = out.find("\nOptions:").unwrap_or_else(|| panic!("{out}"));
        let global = out
            .find("\nGlobal options:")
            .unwrap_or_else(|| panic!("{out}"));
        assert!(own < global, "{out}");
        // The command's own options come before the globals, the globals after.
        let (before, after) = out.split_at(global);
        assert!(
            !before.contains("--json") && after.contains("--json"),
            "{out}"
        );
        assert!(
            after.contains("--repo") && !before.contains("--repo"),
            "{out}"
        );
        assert!(after.contains("HYDRABACKUP_PASSWORD"), "{cmd}: {out}");
    }
    let r = t.run(&["--help"]);
    let out = &r.expect_code(0).stdout;
    for v in [
        "HYDRABACKUP_PASSWORD,",
        "HYDRABACKUP_PASSWORD_FILE",
        "HYDRABACKUP_PASSWORD_COMMAND",
    ] {
        assert!(out.contains(v), "{v}: {out}");
    }
    let r = t.run(&["key", "add", "--help"]);
    assert!(r.expect_code(0).stdout.contains("HYDRABACKUP_NEW_PASSWORD"));
}
