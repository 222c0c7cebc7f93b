//! A source tree that changes under a running backup, as a local user who can write inside it
//! (or a busy server) would change it: files swapped for symlinks, FIFOs or other files between
//! the walk and the open, files and folders deleted, special files, and very deep folder chains.
//! Changes happen at exact instants through the `HYDRABACKUP_TEST_HOOK` hook points, never by
//! racing with sleeps.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// A shell command for a hook that runs `action` once, when the hook point is reached for
/// `victim`.
fn when_at(victim: &Path, action: &str) -> String {
    format!(
        "[ \"$HYDRABACKUP_HOOK_PATH\" = '{}' ] && {{ {action}; }}; true",
        victim.display()
    )
}

/// `backup --json SRC` with a hook at `point`; returns (exit code, report).
fn backup_with_hook(t: &TestRepo, src: &Path, point: &str, cmd: &str) -> (i32, Value) {
    let mut c = t.command();
    c.env("HYDRABACKUP_TEST_HOOK", format!("{point}:{cmd}"))
        .args(["backup", "--json"])
        .arg(src);
    let r = run_cmd(c);
    let code = r.code.unwrap_or_else(|| panic!("backup was killed: {r:?}"));
    (code, r.json())
}

fn paths(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|e| {
            e["path"]
                .as_str()
                .unwrap_or_else(|| e.as_str().unwrap())
                .to_string()
        })
        .collect()
}

/// Every file below `dir`, relative, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// A source with two ordinary files, `keep` and `victim`, and a file outside it only the
/// attacker wants read.
fn source(t: &TestRepo) -> (std::path::PathBuf, std::path::PathBuf) {
    let src = t.path("src");
    write(&src.join("keep"), b"kept bytes");
    write(&src.join("victim"), b"the victim's own bytes");
    let secret = t.path("secret");
    write(&secret, b"SECRET: only root may read this");
    (src, secret)
}

/// The error reported for `path` in a backup report.
fn source_error<'a>(v: &'a Value, path: &Path) -> &'a Value {
    v["source_errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == path.display().to_string())
        .unwrap_or_else(|| panic!("no source error for {}: {v:#}", path.display()))
}

fn restored(t: &TestRepo) -> std::path::PathBuf {
    let target = t.path("restored");
    t.restore("latest", &target, &[]);
    target
}

#[test]
fn a_symlink_swapped_in_after_the_walk_is_not_followed() {
    let t = TestRepo::init();
    let (src, secret) = source(&t);
    let victim = src.join("victim");
    let swap = format!(
        "rm '{v}' && ln -s '{s}' '{v}'",
        v = victim.display(),
        s = secret.display()
    );
    let (code, v) = backup_with_hook(&t, &src, "open", &when_at(&victim, &swap));
    assert_eq!(code, 3, "{v:#}");
    let e = source_error(&v, &victim);
    assert_eq!(e["kind"], "changed", "{v:#}");
    assert!(
        e["error"].as_str().unwrap().contains("symbolic link"),
        "{v:#}"
    );
    let target = restored(&t);
    assert_eq!(listing(&target), ["keep"]);
    assert_eq!(std::fs::read(target.join("keep")).unwrap(), b"kept bytes");
}

#[test]
fn a_folder_swapped_for_a_symlink_during_the_walk_is_not_followed() {
    let t = TestRepo::init();
    let (src, _) = source(&t);
    let sub = src.join("sub");
    write(&sub.join("inner"), b"inner bytes");
    let secret_dir = t.path("secret-dir");
    write(
        &secret_dir.join("inner"),
        b"SECRET: only root may read this",
    );
    // After the walk's lstat saw a folder, before it is listed.
    let swap = format!(
        "mv '{s}' '{s}.old' && ln -s '{d}' '{s}'",
        s = sub.display(),
        d = secret_dir.display()
    );
    let (code, v) = backup_with_hook(&t, &src, "list", &when_at(&sub, &swap));
    assert_eq!(code, 3, "{v:#}");
    let e = source_error(&v, &sub);
    assert_eq!(e["kind"], "changed", "{v:#}");
    assert_eq!(
        e["error"],
        "changed during backup: replaced by a symbolic link"
    );
    assert_eq!(listing(&restored(&t)), ["keep", "victim"]);
}

#[test]
fn a_hyd_file_swapped_for_a_symlink_is_not_captured_through_it() {
    let t = TestRepo::init();
    let (src, secret) = source(&t);
    let victim = src.join("victim.hyd");
    write(&victim, b"not really a Swamp");
    let swap = format!(
        "rm '{v}' && ln -s '{s}' '{v}'",
        v = victim.display(),
        s = secret.display()
    );
    let (code, v) = backup_with_hook(&t, &src, "open", &when_at(&victim, &swap));
    assert_eq!(code, 3, "{v:#}");
    assert_eq!(
        source_error(&v, &victim)["error"],
        "changed during backup: replaced by a symbolic link"
    );
    let q = v["quarantine"].as_array().unwrap();
    assert_eq!(q.len(), 1, "{v:#}");
    assert!(q[0]["reason"].as_str().unwrap().contains("symbolic link"));
    assert_eq!(listing(&restored(&t)), ["keep", "victim"]);
}

#[test]
fn a_fifo_swapped_in_after_the_walk_does_not_hang_the_backup() {
    let t = TestRepo::init();
    let (src, _) = source(&t);
    let victim = src.join("victim");
    let swap = format!("rm '{v}' && mkfifo '{v}'", v = victim.display());
    let (code, v) = backup_with_hook(&t, &src, "open", &when_at(&victim, &swap));
    assert_eq!(code, 3, "{v:#}");
    let e = source_error(&v, &victim);
    assert_eq!(e["kind"], "changed", "{v:#}");
    assert_eq!(e["error"], "changed during backup: replaced by a FIFO");
    // The lock was released: another backup runs (and now reports the FIFO it finds).
    let v = t.backup(&[&src]);
    assert_eq!(paths(&v["special"]), [victim.display().to_string()]);
}

#[test]
fn a_file_renamed_over_the_walked_one_is_not_read_in_its_place() {
    let t = TestRepo::init();
    let (src, _) = source(&t);
    let victim = src.join("victim");
    let other = t.path("other");
    write(&other, b"bytes of another file");
    let swap = format!("mv '{}' '{}'", other.display(), victim.display());
    let (code, v) = backup_with_hook(&t, &src, "open", &when_at(&victim, &swap));
    assert_eq!(code, 3, "{v:#}");
    let e = source_error(&v, &victim);
    assert_eq!(
        e["error"],
        "changed during backup: replaced by another file"
    );
    assert_eq!(listing(&restored(&t)), ["keep"]);
}

#[test]
fn fifos_and_sockets_are_reported_never_opened() {
    let t = TestRepo::init();
    let (src, _) = source(&t);
    let fifo = src.join("fifo");
    let sock = src.join("sock");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    // Nothing writes to the FIFO: opening it would block forever.
    let v = t.backup(&[&src]);
    assert_eq!(v["special_files"], 2, "{v:#}");
    let special = v["special"].as_array().unwrap();
    assert_eq!(special.len(), 2, "{v:#}");
    assert_eq!(special[0]["path"], fifo.display().to_string());
    assert_eq!(special[0]["kind"], "FIFO");
    assert_eq!(special[1]["path"], sock.display().to_string());
    assert_eq!(special[1]["kind"], "socket");
    assert_eq!(v["source_errors"].as_array().map(Vec::len), Some(0));
    assert_eq!(listing(&restored(&t)), ["keep", "victim"]);
}

#[test]
fn a_file_deleted_after_the_walk_is_gone_not_an_error() {
    let t = TestRepo::init();
    let (src, _) = source(&t);
    let victim = src.join("victim");
    let rm = format!("rm '{}'", victim.display());
    let (code, v) = backup_with_hook(&t, &src, "open", &when_at(&victim, &rm));
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["files_gone"], 1, "{v:#}");
    assert_eq!(paths(&v["gone"]), [victim.display().to_string()]);
    assert_eq!(v["source_errors"].as_array().map(Vec::len), Some(0));
    assert_eq!(listing(&restored(&t)), ["keep"]);
}

#[test]
fn files_and_folders_deleted_during_the_walk_are_gone_not_errors() {
    let t = TestRepo::init();
    let (src, _) = source(&t);
    write(&src.join("sub/inner"), b"inner");
    write(&src.join("sub2/inner"), b"inner 2");
    let sub = src.join("sub");
    let sub2 = src.join("sub2");
    let victim = src.join("victim");
    // Listed, then deleted before its lstat (file), or before its listing (folder).
    let cmd = format!(
        "{}; {}",
        when_at(&victim, &format!("rm '{}'", victim.display())),
        when_at(&sub, &format!("rm -r '{}'", sub.display()))
    );
    let mut c = t.command();
    c.env("HYDRABACKUP_TEST_HOOK", format!("stat:{cmd}"))
        .args(["backup", "--json"])
        .arg(&src);
    let r = run_cmd(c);
    assert_eq!(r.code, Some(0), "{r:?}");
    let v = r.json();
    assert_eq!(
        paths(&v["gone"]),
        [sub.display().to_string(), victim.display().to_string()]
    );
    let rm_sub2 = format!("rm -r '{}'", sub2.display());
    let (code, v) = backup_with_hook(&t, &src, "list", &when_at(&sub2, &rm_sub2));
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(paths(&v["gone"]), [sub2.display().to_string()]);
    assert_eq!(listing(&restored(&t)), ["keep"]);
}

/// A chain of `depth` folders named `d` under `root`, with a file `f` at the bottom.
fn chain(root: &Path, depth: usize) -> std::path::PathBuf {
    let mut p = root.to_path_buf();
    for _ in 0..depth {
        p.push("d");
    }
    std::fs::create_dir_all(&p).unwrap();
    write(&p.join("f"), b"at the bottom");
    p.join("f")
}

#[test]
fn a_folder_chain_as_deep_as_paths_allow_backs_up_verifies_lists_copies_and_restores() {
    let t = TestRepo::init();
    // Short names: the source's and the restore target's paths stay within PATH_MAX (4096).
    let src = t.path("s");
    let budget = 4000 - src.as_os_str().len();
    let depth = budget / 2;
    assert!(depth > 1500, "temporary directory path too long");
    let bottom = chain(&src, depth);
    write(&src.join("beside"), b"next to the chain");
    let v = t.backup(&[&src]);
    assert_eq!(v["dirs"], depth as u64, "{v:#}");
    t.assert_verify_ok(&["--read-data"]);
    let ls = t.run(&["ls", "latest"]).expect_code(0).stdout.clone();
    let rel = bottom.strip_prefix(&src).unwrap().display().to_string();
    assert!(
        ls.lines().any(|l| l.ends_with(&rel)),
        "ls misses the bottom file"
    );
    let target = t.path("t");
    t.restore("latest", &target, &[]);
    assert_eq!(std::fs::read(target.join(&rel)).unwrap(), b"at the bottom");
    copy_and_verify(&t);
}

/// Copies every snapshot into a new repository with shared parameters and verifies every byte
/// there.
fn copy_and_verify(t: &TestRepo) {
    let dst = t.path("copy");
    for args in [
        &["init", "--copy-params"][..],
        &["copy"],
        &["verify", "--read-data"],
    ] {
        let mut c = t.command();
        c.env("HYDRABACKUP_REPOSITORY", &dst)
            .env("HYDRABACKUP_FROM_REPOSITORY", &t.repo)
            .env("HYDRABACKUP_FROM_PASSWORD", &t.password)
            .args(args);
        run_cmd(c).expect_code(0);
    }
}

/// The 10,000-level chain of the report, backed up and restored: its full paths are far longer
/// than `PATH_MAX`, so the walk and the restore reach every entry through its folder, never by
/// full path.
#[test]
fn a_folder_chain_10000_deep_backs_up_verifies_lists_copies_and_restores() {
    let t = TestRepo::init();
    let src = t.path("s");
    std::fs::create_dir(&src).unwrap();
    write(&src.join("beside"), b"next to the chain");
    // Built bottom up from 1,000-level pieces, each step a path well within PATH_MAX.
    let step = vec!["d"; 1000].join("/");
    let script = format!(
        "mkdir -p {step} && echo bottom > {step}/f && for i in 2 3 4 5 6 7 8 9 10; do \\
         mkdir -p n/{step} && mv d n/{step}/ && mv n/d d || exit 1; done; rmdir n"
    );
    let st = std::process::Command::new("sh")
        .current_dir(&src)
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(st.success());
    let v = t.backup(&[&src]);
    assert_eq!(v["dirs"], 10_000, "{v:#}");
    assert_eq!(v["files_new"], 2, "{v:#}");
    t.assert_verify_ok(&["--read-data"]);
    let bottom = format!("{}f", "d/".repeat(10_000));
    let ls = t
        .run(&["ls", "latest", &bottom])
        .expect_code(0)
        .stdout
        .clone();
    assert!(
        ls.lines().any(|l| l.ends_with(&bottom)),
        "ls misses the bottom file"
    );
    copy_and_verify(&t);
    // Restore gives the chain back: the bottom file, reached one folder at a time.
    let target = t.path("t");
    t.restore("latest", &target, &[]);
    assert_eq!(bottom_of_chain(&target, 10_000), b"bottom\n");
    assert_eq!(
        std::fs::read(target.join("beside")).unwrap(),
        b"next to the chain"
    );
    // Leave trees the temporary directory can remove.
    for dir in [&src, &target] {
        let st = std::process::Command::new("rm")
            .current_dir(dir)
            .args(["-rf", "d"])
            .status()
            .unwrap();
        assert!(st.success());
    }
}

#[test]
fn a_snapshot_tree_10000_deep_verifies_lists_shows_copies_and_prunes() {
    let t = TestRepo::init();
    let src = t.path("src");
    write(&src.join("d/f"), b"at the bottom");
    let first = t.backup(&[&src])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let depth = 10_000;
    deepen_latest(&t, depth);
    t.run(&["forget", "--yes", &first]).expect_code(0);
    t.run(&["prune", "--yes", "--instant-delete"])
        .expect_code(0);
    t.assert_verify_ok(&["--read-data"]);
    let bottom = format!("{}f", "d/".repeat(depth));
    let ls = t
        .run(&["ls", "latest", &bottom])
        .expect_code(0)
        .stdout
        .clone();
    assert!(ls.lines().any(|l| l.ends_with(&bottom)), "{ls}");
    t.run(&["show", "latest"]).expect_code(0);
    t.run(&["stats"]).expect_code(0);

    copy_and_verify(&t);
}

/// The content of file `f` at the bottom of a chain of `depth` folders named `d` under `root`,
/// reached one folder at a time (its full path is longer than the system accepts); the bottom
/// folder has no `d`.
fn bottom_of_chain(root: &Path, depth: usize) -> Vec<u8> {
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let open_at = |dir: &OwnedFd, name: &std::ffi::CStr, flags: i32| -> Option<OwnedFd> {
        // SAFETY: `dir` is an open descriptor and `name` a NUL-terminated string.
        let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC) };
        // SAFETY: a non-negative result of openat is a fresh descriptor owned by nobody else.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let mut dir = OwnedFd::from(std::fs::File::open(root).unwrap());
    let folder = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
    for level in 0..depth {
        dir = open_at(&dir, c"d", folder).unwrap_or_else(|| panic!("no folder at level {level}"));
    }
    assert!(open_at(&dir, c"d", folder).is_none(), "the chain is deeper");
    let f = open_at(&dir, c"f", libc::O_RDONLY | libc::O_NOFOLLOW).expect("the bottom file");
    let mut out = Vec::new();
    std::fs::File::from(f).read_to_end(&mut out).unwrap();
    out
}
