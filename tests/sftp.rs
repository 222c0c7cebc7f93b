//! The SFTP backend against a real OpenSSH `sshd` on loopback, started by each test on a free
//! port with its own host key, user key and known_hosts (see [`Sshd`]). The repository's files
//! live in the test's temporary directory, so the tests can look at and damage them directly.

mod common;
mod sshcommon;

use std::io::{self, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use hydrabackup::backend::sftp::MAX_CONNECTIONS;
use hydrabackup::backend::{self, Backend, BackendOptions, FileKind, SftpBackend};
use sshcommon::*;

fn snapshot_id(v: &serde_json::Value) -> String {
    v["snapshot_id"].as_str().expect("snapshot id").to_string()
}

#[test]
fn full_cycle_over_sftp() {
    let sshd = Sshd::start();
    let t = TestRepo::new();
    let init = sshd.json(&t, &["init"]);
    assert_eq!(
        init["repository"].as_str(),
        Some(sshd.url(&t.repo).as_str())
    );
    assert!(
        t.repo.join("config").is_file(),
        "config lands on the server"
    );

    let src = t.path("src");
    random_files(&src, 1, 12, 150_000);
    write(&src.join("sub/small.txt"), b"hello over sftp\n");
    let first = sshd.json(&t, &["backup", src.to_str().unwrap()]);
    let id1 = snapshot_id(&first);
    assert!(
        first["bytes_added"].as_u64().unwrap() > 1_000_000,
        "{first}"
    );
    assert!(!packs(&t.repo).is_empty());
    assert!(
        repo_files(&t.repo, "tmp").is_empty(),
        "no temporaries are left behind"
    );

    let snaps = sshd.json(&t, &["snapshots"]);
    assert_eq!(snaps.as_array().map(Vec::len), Some(1), "{snaps}");
    assert_eq!(snaps[0]["id"].as_str(), Some(id1.as_str()));

    let v = sshd.json(&t, &["verify", "--read-data"]);
    assert_eq!(v["ok"], true, "{v:#}");

    let target = t.path("restored");
    sshd.json(&t, &["restore", &id1, "--target", target.to_str().unwrap()]);
    assert_same_dir(&src, &target);

    // Unchanged source: the second snapshot adds no data.
    let packs_before = packs(&t.repo).len();
    let second = sshd.json(&t, &["backup", src.to_str().unwrap()]);
    let id2 = snapshot_id(&second);
    assert_eq!(second["data_blobs_added"], 0, "{second}");
    assert_eq!(second["files_unchanged"], 13, "{second}");
    assert_eq!(packs(&t.repo).len(), packs_before);

    // New data, then forget it and prune: the repository shrinks back and still verifies.
    random_files(&src.join("more"), 2, 4, 200_000);
    let third = snapshot_id(&sshd.json(&t, &["backup", src.to_str().unwrap()]));
    assert!(packs(&t.repo).len() > packs_before);
    sshd.json(&t, &["forget", "--yes", &third]);
    sshd.json(
        &t,
        &["prune", "--yes", "--instant-delete", "--max-unused", "0"],
    );
    assert_eq!(packs(&t.repo).len(), packs_before);
    let ids: Vec<String> = sshd
        .json(&t, &["snapshots"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&id1) && ids.contains(&id2));
    let v = sshd.json(&t, &["verify", "--read-data"]);
    assert_eq!(v["ok"], true, "{v:#}");

    // A backup killed mid-way leaves the lock of a dead process on the server; `unlock`
    // removes it.
    write(&src.join("late.bin"), &random_bytes(9, 100_000));
    let mut c = sshd.command(&t);
    c.env("HYDRABACKUP_FAILPOINT", "after-pack")
        .args(["backup", src.to_str().unwrap()]);
    assert_eq!(run_cmd(c).signal, Some(9));
    assert_eq!(repo_files(&t.repo, "locks").len(), 1);
    let u = sshd.json(&t, &["unlock"]);
    assert_eq!(u["removed"].as_array().map(Vec::len), Some(1), "{u}");
    assert!(repo_files(&t.repo, "locks").is_empty());
    let v = sshd.json(&t, &["verify"]);
    assert_eq!(v["ok"], true, "{v:#}");
}

#[test]
fn scp_style_location_and_port_variable() {
    let sshd = Sshd::start();
    // known_hosts with hashed host names, as `HashKnownHosts yes` writes it.
    hash_known_hosts(&sshd.known_hosts());
    let t = TestRepo::new();
    let mut c = t.command();
    sshd.env(&mut c);
    c.env(
        "HYDRABACKUP_REPOSITORY",
        format!("sftp:{}@127.0.0.1:{}", sshd.user, t.repo.display()),
    )
    .env("HYDRABACKUP_SFTP_PORT", sshd.port.to_string())
    .args(["init", "--json"]);
    run_cmd(c).expect_code(0);
    assert!(t.repo.join("config").is_file());
    assert!(t.repo.join("keys").is_dir());
}

#[test]
fn host_known_by_its_ecdsa_key_only() {
    let sshd = Sshd::start();
    sshd.write_known_hosts(&public_key(&sshd.path("host_key_ecdsa")));
    let t = TestRepo::new();
    sshd.json(&t, &["init"]);
    assert!(t.repo.join("config").is_file());
    // Hashed, the entry's type is hidden: the client finds the server's key that matches.
    hash_known_hosts(&sshd.known_hosts());
    sshd.json(&t, &["snapshots"]);
}

#[test]
fn changed_host_key_is_refused() {
    let sshd = Sshd::start();
    let other = sshd.path("other_key");
    keygen(&other);
    sshd.write_known_hosts(&public_key(&other));
    let t = TestRepo::new();
    let r = sshd.run(&t, &["init"]);
    r.expect_code(1).expect_clean_error();
    eprint!("{}", r.stderr);
    assert!(r.stderr.contains("HOST KEY MISMATCH"), "{}", r.stderr);
    // The fingerprint is the one OpenSSH shows for the server's key.
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(sshd.path("host_key.pub"))
        .output()
        .unwrap();
    let fp = String::from_utf8(out.stdout).unwrap();
    let fp = fp.split_whitespace().nth(1).unwrap();
    assert!(fp.starts_with("SHA256:"), "{fp}");
    assert!(r.stderr.contains(fp), "{fp} not in {}", r.stderr);
    assert!(
        !t.repo.exists(),
        "nothing was written to an unverified host"
    );
    // Hashed, the wrong key is refused just the same (no other key of the server matches).
    hash_known_hosts(&sshd.known_hosts());
    let r = sshd.run(&t, &["init"]);
    r.expect_code(1).expect_clean_error();
    assert!(r.stderr.contains("HOST KEY MISMATCH"), "{}", r.stderr);
    assert!(!t.repo.exists());
}

#[test]
fn unknown_host_is_refused() {
    let sshd = Sshd::start();
    std::fs::write(sshd.known_hosts(), "# no hosts yet\n").unwrap();
    let t = TestRepo::new();
    let r = sshd.run(&t, &["init"]);
    r.expect_code(1).expect_clean_error();
    eprint!("{}", r.stderr);
    assert!(r.stderr.contains("unknown host"), "{}", r.stderr);
    assert!(!t.repo.exists());

    // No known_hosts file at all is refused too.
    std::fs::remove_file(sshd.known_hosts()).unwrap();
    let r = sshd.run(&t, &["init"]);
    r.expect_code(1).expect_clean_error();
    eprint!("{}", r.stderr);
    assert!(r.stderr.contains("no known_hosts file"), "{}", r.stderr);
}

#[test]
fn unknown_user_key_is_refused() {
    let sshd = Sshd::start();
    let stranger = sshd.path("stranger_key");
    keygen(&stranger);
    let t = TestRepo::new();
    let mut c = sshd.command(&t);
    c.env("HYDRABACKUP_SFTP_KEY", &stranger).arg("init");
    let r = run_cmd(c);
    r.expect_code(1).expect_clean_error();
    eprint!("{}", r.stderr);
    assert!(r.stderr.contains("authentication as"), "{}", r.stderr);
    assert!(r.stderr.contains("stranger_key"), "{}", r.stderr);
}

#[test]
fn unreachable_port_is_a_clear_error() {
    let sshd = Sshd::start();
    let t = TestRepo::new();
    let mut c = sshd.command(&t);
    let port = free_port();
    c.env(
        "HYDRABACKUP_REPOSITORY",
        format!("sftp://{}@127.0.0.1:{port}/{}", sshd.user, t.repo.display()),
    )
    .arg("snapshots");
    let r = run_cmd(c);
    r.expect_code(1).expect_clean_error();
    eprint!("{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("127.0.0.1:{port}")),
        "{}",
        r.stderr
    );
    assert!(r.stderr.to_lowercase().contains("refused"), "{}", r.stderr);
}

#[test]
fn missing_repository_exits_10() {
    let sshd = Sshd::start();
    let t = TestRepo::new();
    let r = sshd.run(&t, &["snapshots"]);
    r.expect_code(10).expect_clean_error();
    eprint!("{}", r.stderr);
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);
}

#[test]
fn damage_on_the_server_is_found() {
    let sshd = Sshd::start();
    let t = TestRepo::new();
    sshd.json(&t, &["init"]);
    let src = t.path("src");
    random_files(&src, 3, 4, 100_000);
    sshd.json(&t, &["backup", src.to_str().unwrap()]);
    let pack = packs(&t.repo)
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    flip_bit(&pack, pack_blob_area(&pack) / 2);
    let r = sshd.run(&t, &["verify", "--read-data", "--json"]);
    r.expect_code(13);
    let v = r.json();
    assert_eq!(v["ok"], false, "{v:#}");
    assert!(
        !v["problems"].as_array().unwrap().is_empty(),
        "the damage is reported: {v:#}"
    );
}

/// The backend directly: objects round-trip, a second write of a name keeps the first bytes,
/// short ranges are errors, and reads from many threads at once are correct and use several
/// connections.
#[test]
fn parallel_reads_through_the_backend() {
    let sshd = Sshd::start();
    let t = TestRepo::new();
    let b = Arc::new(SftpBackend::open(&sshd.url(&t.repo), &sshd.options()).expect("open backend"));
    assert!(!b.exists().unwrap());
    b.create().unwrap();
    assert!(!b.exists().unwrap());

    let data = Arc::new(random_bytes(42, 4 << 20));
    let name = "ab".to_string() + &"cd".repeat(31);
    b.write(FileKind::Pack, &name, &data).unwrap();
    b.write(FileKind::Pack, &name, b"other bytes").unwrap();
    assert_eq!(b.size(FileKind::Pack, &name).unwrap(), data.len() as u64);
    assert_eq!(
        b.list(FileKind::Pack).unwrap(),
        vec![(name.clone(), data.len() as u64)]
    );
    assert_eq!(b.read(FileKind::Pack, &name).unwrap(), *data);
    let e = b
        .read_range(FileKind::Pack, &name, data.len() as u64 - 10, 11)
        .expect_err("short range");
    match e {
        hydrabackup::Error::Backend { source, .. } => {
            assert_eq!(source.kind(), io::ErrorKind::UnexpectedEof)
        }
        other => panic!("unexpected error {other:?}"),
    }
    let e = b
        .read(FileKind::Snapshot, &"ef".repeat(32))
        .expect_err("missing");
    match e {
        hydrabackup::Error::Backend { source, .. } => {
            assert_eq!(source.kind(), io::ErrorKind::NotFound)
        }
        other => panic!("unexpected error {other:?}"),
    }

    const READS: usize = 300;
    const LEN: usize = 16 << 10;
    let read_all = |threads: usize| {
        let start = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|ti| {
                let b = Arc::clone(&b);
                let data = Arc::clone(&data);
                let name = name.clone();
                thread::spawn(move || {
                    for i in 0..READS / threads {
                        let off = ((ti * 7919 + i * 104_729) * 61) % (data.len() - LEN);
                        let got = b
                            .read_range(FileKind::Pack, &name, off as u64, LEN as u64)
                            .expect("parallel read");
                        assert!(got == data[off..off + LEN], "bytes at {off} differ");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("reader thread");
        }
        start.elapsed()
    };
    let one = read_all(1);
    let many = read_all(MAX_CONNECTIONS * 2);
    eprintln!(
        "{READS} reads of {LEN} B: 1 thread {one:?}, {} threads {many:?}, {} connections",
        MAX_CONNECTIONS * 2,
        b.connections()
    );
    assert!(
        b.connections() > 1,
        "parallel readers got their own connections"
    );
    assert!(b.connections() <= MAX_CONNECTIONS);

    b.remove(FileKind::Pack, &name).unwrap();
    assert!(b.list(FileKind::Pack).unwrap().is_empty());
    assert_eq!(b.remove_stale_temporaries().unwrap(), 0);
}

#[test]
fn stale_temporaries_are_removed_by_age() {
    let sshd = Sshd::start();
    let t = TestRepo::new();
    let b = SftpBackend::open(&sshd.url(&t.repo), &sshd.options()).expect("open backend");
    b.create().unwrap();
    let old = t.repo.join("tmp/otherhost.123.0.deadbeef");
    let fresh = t.repo.join("tmp/otherhost.124.0.deadbeef");
    write(&old, b"partial");
    write(&fresh, b"partial");
    set_mtime(&old, 1_000_000_000, 0);
    assert_eq!(b.remove_stale_temporaries().unwrap(), 1);
    assert!(!old.exists() && fresh.exists());
}

/// A connection that the server dropped is replaced, and the operation retried by the retry
/// layer, transparently.
#[test]
fn reconnects_after_the_server_restarts() {
    let mut sshd = Sshd::start();
    let t = TestRepo::new();
    let opts = BackendOptions {
        sftp: sshd.options(),
        ..BackendOptions::default()
    };
    let b = backend::open_with(&sshd.url(&t.repo), &opts).expect("open backend");
    b.create().unwrap();
    let name = "12".repeat(32);
    b.write(FileKind::Snapshot, &name, b"first").unwrap();
    sshd.restart();
    assert_eq!(b.read(FileKind::Snapshot, &name).unwrap(), b"first");
    sshd.restart();
    b.write(FileKind::Index, &name, b"second").unwrap();
    assert_eq!(b.list(FileKind::Index).unwrap(), vec![(name.clone(), 6)]);
    drop(sshd);
    let e = b.read(FileKind::Snapshot, &name).expect_err("server gone");
    assert!(
        e.to_string().contains("connect to"),
        "a clear connection error: {e}"
    );
}

#[test]
fn a_peer_that_is_not_ssh_is_a_clear_error() {
    let sshd = Sshd::start();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let _ = s.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n");
        }
    });
    let t = TestRepo::new();
    let mut c = sshd.command(&t);
    c.env(
        "HYDRABACKUP_REPOSITORY",
        format!("sftp://{}@127.0.0.1:{port}/{}", sshd.user, t.repo.display()),
    )
    .arg("snapshots");
    let r = run_cmd(c);
    r.expect_code(1).expect_clean_error();
    eprint!("{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("127.0.0.1:{port}")),
        "{}",
        r.stderr
    );
    server.join().unwrap();
}

/// A full disk on the server: exit 14 with one line, nothing half-written left, and the
/// repository still verifies. Needs to mount a tmpfs (root), so it is `#[ignore]`d: scripts/test.sh
/// runs it when root.
#[test]
#[ignore = "mounts a tmpfs, which needs root: scripts/test.sh runs it when root"]
fn full_disk_on_the_server() {
    let sshd = Sshd::start();
    let t = TestRepo::new();
    let mnt = t.path("small");
    std::fs::create_dir(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&mnt)
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "cannot mount a tmpfs here (needs root on Linux)");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let repo = mnt.join("repo");
    let run = |args: &[&str]| {
        let mut c = sshd.command(&t);
        c.env("HYDRABACKUP_REPOSITORY", sshd.url(&repo)).args(args);
        run_cmd(c)
    };
    run(&["init", "--pack-size", "1"]).expect_code(0);
    let src = t.path("src");
    write(&src.join("small"), b"fits");
    run(&["backup", src.to_str().unwrap()]).expect_code(0);

    write(&src.join("big"), &random_bytes(7, 8 << 20));
    let full = run(&["backup", src.to_str().unwrap()]);
    full.expect_code(14).expect_clean_error();
    eprint!("{}", full.stderr);
    assert!(full.stderr.contains("No space left"), "{}", full.stderr);
    assert!(
        repo_files(&repo, "tmp").is_empty(),
        "temporary files left: {:?}",
        repo_files(&repo, "tmp")
    );
    run(&["verify", "--read-data"]).expect_code(0);
    let snaps = run(&["snapshots", "--json"]).expect_code(0).json();
    assert_eq!(snaps.as_array().map(Vec::len), Some(1), "{snaps}");
}

/// ssh-agent is used when `SSH_AUTH_SOCK` is set and no key is named; without an agent or a
/// key, the error says what to do.
#[test]
fn authenticates_through_ssh_agent() {
    let sshd = Sshd::start();
    let sock = sshd.path("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ssh-agent");
    struct Agent<'a>(&'a mut Child);
    impl Drop for Agent<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _agent = Agent(&mut agent);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "ssh-agent did not start");
        thread::sleep(Duration::from_millis(10));
    }
    let added = Command::new("ssh-add")
        .arg(sshd.path("user_key"))
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .expect("ssh-add");
    assert!(added.status.success(), "{added:?}");

    // HOME without ~/.ssh keys: only the agent can log in.
    let t = TestRepo::new();
    let home = t.path("home");
    std::fs::create_dir(&home).unwrap();
    let mut c = sshd.command(&t);
    c.env_remove("HYDRABACKUP_SFTP_KEY")
        .env("HOME", &home)
        .env("SSH_AUTH_SOCK", &sock)
        .args(["init", "--json"]);
    run_cmd(c).expect_code(0);
    assert!(t.repo.join("config").is_file());

    let mut c = sshd.command(&t);
    c.env_remove("HYDRABACKUP_SFTP_KEY")
        .env("HOME", &home)
        .arg("snapshots");
    let r = run_cmd(c);
    r.expect_code(1).expect_clean_error();
    assert!(r.stderr.contains("no key to offer"), "{}", r.stderr);
}
