//! The REST server under attack, over real TCP on loopback: broken connections, idle and slow
//! clients, over capacity, large bodies, forged object names, planted symlinks, password guessing
//! and user enumeration. Each test drives the real `hydrabackup serve`.

mod common;
mod restcommon;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use hydrabackup::Id;
use hydrabackup::backend::{Backend, FileKind, LocalBackend};
use restcommon::*;

/// A plain-HTTP answer: status, head (lowercase) and body.
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// Sends `head` (and `body`) on a fresh connection asking to close it, and reads the answer.
fn raw(addr: &str, head: &str, body: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("answer");
    parse_answer(&all)
}

fn parse_answer(all: &[u8]) -> Answer {
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer in {:?}", String::from_utf8_lossy(all)));
    let head = String::from_utf8_lossy(&all[..split]).to_lowercase();
    let status = head[9..12].parse().expect("status code");
    Answer {
        status,
        head,
        body: all[split + 4..].to_vec(),
    }
}

fn basic(user: &str, pw: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
}

fn get(path: &str, auth: Option<(&str, &str)>) -> String {
    let auth = auth
        .map(|(u, p)| format!("Authorization: Basic {}\r\n", basic(u, p)))
        .unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n")
}

/// Stores an object straight into the server's folder (as another writer would), named by the
/// hash of its bytes; returns the name.
fn plant(repo_dir: &Path, kind: FileKind, bytes: &[u8]) -> String {
    let name = Id::of_stored(bytes).to_hex();
    LocalBackend::new(repo_dir)
        .write(kind, &name, bytes)
        .unwrap();
    name
}

/// `len` deterministic bytes that do not repeat within a pack.
fn big_body(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn alive(s: &mut Server) -> bool {
    s.child.try_wait().unwrap().is_none()
}

/// A TLS client trusting `cert`, with short timeouts.
fn tls_agent(cert: &str) -> ureq::Agent {
    let pem = std::fs::read(cert).unwrap();
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|i| match i {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .max_idle_connections(0)
        .tls_config(tls)
        .build()
        .into()
}

#[test]
fn a_client_resetting_its_connection_does_not_kill_the_server() {
    let t = TestRepo::new();
    let (cert, key) = certificate(&t);
    let users = users(&t);
    let mut s = Server::start(
        &t,
        &["--tls-cert", &cert, "--tls-key", &key, "--users", &users],
    );
    let loc = s.location(Some(("alice", "alice%20pw")), "alice");
    hb(&t, &loc, Some(&cert), &["init"]).expect_code(0);
    let big = plant(
        &t.path("srv").join("alice"),
        FileKind::Pack,
        &big_body(16 << 20),
    );
    let agent = tls_agent(&cert);
    let auth = format!("Basic {}", basic("alice", "alice pw"));
    for round in 0..5 {
        // An aborted download: a little read, then a close with unread data (a reset while
        // the server writes).
        let mut resp = agent
            .get(format!("{}/alice/data/{big}", s.base))
            .header("authorization", &auth)
            .call()
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut buf = [0u8; 4096];
        resp.body_mut().as_reader().read_exact(&mut buf).unwrap();
        drop(resp);
        // The next real client is served.
        let ok = agent
            .get(format!("{}/alice/config", s.base))
            .header("authorization", &auth)
            .call()
            .unwrap();
        assert_eq!(ok.status(), 200, "round {round}");
        assert!(alive(&mut s), "the server died in round {round}");
    }
    hb(&t, &loc, Some(&cert), &["snapshots"]).expect_code(0);
}

#[test]
fn idle_and_slow_connections_do_not_lock_out_a_client() {
    let t = TestRepo::new();
    let (cert, key) = certificate(&t);
    let users = users(&t);
    let s = Server::start(
        &t,
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--users",
            &users,
            "--max-connections",
            "4",
            "--request-timeout",
            "2",
        ],
    );
    let loc = s.location(Some(("alice", "alice%20pw")), "alice");
    hb(&t, &loc, Some(&cert), &["init"]).expect_code(0);
    let addr = s.addr();
    // 40 connections that never say anything, 8 that send a TLS record a byte at a time.
    let idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow: Vec<_> = (0..8)
        .map(|_| {
            let (addr, stop) = (addr.clone(), stop.clone());
            std::thread::spawn(move || {
                let Ok(mut c) = TcpStream::connect(&addr) else {
                    return;
                };
                // A handshake record announcing 16 KiB, then one byte every 50 ms.
                let _ = c.write_all(&[0x16, 0x03, 0x01, 0x40, 0x00]);
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    if c.write_all(&[0]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        })
        .collect();
    let started = Instant::now();
    hb(&t, &loc, Some(&cert), &["snapshots"]).expect_code(0);
    hb(&t, &loc, Some(&cert), &["snapshots"]).expect_code(0);
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for h in slow {
        h.join().unwrap();
    }
    // The idle connections were closed by the server, none kept beyond a generous bound.
    for mut c in idle {
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut b = [0u8; 64];
        let r = c.read(&mut b);
        assert!(
            matches!(r, Ok(0))
                || matches!(&r, Err(e) if e.kind() != std::io::ErrorKind::WouldBlock),
            "an idle connection is still open: {r:?}"
        );
    }
    assert!(took < Duration::from_secs(30), "{took:?}");
}

#[test]
fn over_capacity_is_answered_over_tls() {
    let t = TestRepo::new();
    let (cert, key) = certificate(&t);
    let s = Server::start(
        &t,
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--no-auth",
            "--max-connections",
            "1",
            "--request-timeout",
            "2",
        ],
    );
    let repo = t.path("srv").join("r");
    LocalBackend::new(&repo).create().unwrap();
    let big = plant(&repo, FileKind::Pack, &big_body(32 << 20));
    let agent = tls_agent(&cert);
    // One download left unread keeps the only slot busy.
    let busy = agent
        .get(format!("{}/r/data/{big}", s.base))
        .call()
        .unwrap();
    assert_eq!(busy.status(), 200);
    let mut over = agent.get(format!("{}/r/keys/", s.base)).call().unwrap();
    assert_eq!(over.status(), 503);
    let body = over.body_mut().read_to_string().unwrap();
    assert!(body.contains("too many connections"), "{body}");
    drop(busy);
}

#[test]
fn a_large_upload_and_download_do_not_grow_the_servers_memory() {
    let t = TestRepo::new();
    let s = Server::start(&t, &["--no-auth"]);
    let repo = t.path("srv").join("r");
    LocalBackend::new(&repo).create().unwrap();
    let pid = s.child.id();
    let addr = s.addr();
    let before = vm_hwm_kib(pid);
    let body = big_body(192 << 20);
    let name = Id::of_stored(&body).to_hex();
    let a = raw(
        &addr,
        &format!(
            "POST /r/data/{name} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ),
        &body,
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let stored = LocalBackend::new(&repo)
        .size(FileKind::Pack, &name)
        .unwrap();
    assert_eq!(stored, body.len() as u64);
    let a = raw(&addr, &get(&format!("/r/data/{name}"), None), b"");
    assert_eq!(a.status, 200);
    assert!(a.body == body, "the download differs");
    let grown_mib = vm_hwm_kib(pid).saturating_sub(before) / 1024;
    assert!(grown_mib < 64, "server peak memory grew by {grown_mib} MiB");
}

#[test]
fn an_object_whose_name_is_not_the_hash_of_its_bytes_is_refused() {
    let t = TestRepo::new();
    let s = Server::start(&t, &["--no-auth", "--append-only"]);
    let loc = s.location(None, "r");
    hb(&t, &loc, None, &["init"]).expect_code(0);
    let repo = t.path("srv").join("r");
    let addr = s.addr();
    let post = |kind: &str, name: &str, body: &[u8]| {
        raw(
            &addr,
            &format!(
                "POST /r/{kind}/{name} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            ),
            body,
        )
    };
    let garbage = b"not a snapshot at all";
    let other = Id::of_stored(b"other bytes").to_hex();
    for kind in ["snapshots", "keys", "locks", "index", "data"] {
        let a = post(kind, &other, garbage);
        assert_eq!(
            a.status,
            400,
            "{kind}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert!(
            String::from_utf8_lossy(&a.body).contains("hash"),
            "{}",
            String::from_utf8_lossy(&a.body)
        );
    }
    assert!(repo_files(&repo, "snapshots").is_empty());
    assert!(repo_files(&repo, "tmp").is_empty(), "upload left behind");
    // A real client's objects (keys, packs, index, snapshot, locks) all pass the check.
    let src = t.path("src");
    random_files(&src, 1, 3, 50_000);
    hb(&t, &loc, None, &["backup", src.to_str().unwrap()]).expect_code(0);
    assert_eq!(repo_files(&repo, "snapshots").len(), 1);
    hb(&t, &loc, None, &["verify", "--read-data"]).expect_code(0);
    // Named right, any bytes are stored (the server cannot open them; clients judge them).
    let name = Id::of_stored(garbage).to_hex();
    assert_eq!(post("snapshots", &name, garbage).status, 200);
    assert_eq!(repo_files(&repo, "snapshots").len(), 2);
}

#[test]
fn symlinks_planted_under_the_path_are_not_followed() {
    let t = TestRepo::new();
    let s = Server::start(&t, &["--no-auth"]);
    let loc = s.location(None, "r");
    hb(&t, &loc, None, &["init"]).expect_code(0);
    let addr = s.addr();
    let srv = t.path("srv");
    let outside = t.path("outside");
    std::fs::create_dir_all(outside.join("snapshots")).unwrap();
    let secret = b"a secret outside the server's folder";
    std::fs::write(outside.join("secret"), secret).unwrap();
    // A file, an object folder and a whole repository pointing outside.
    let fake = Id::of_stored(secret).to_hex();
    std::os::unix::fs::symlink(
        outside.join("secret"),
        srv.join("r").join("snapshots").join(&fake),
    )
    .unwrap();
    std::fs::remove_dir(srv.join("r").join("index")).unwrap();
    std::os::unix::fs::symlink(outside.join("snapshots"), srv.join("r").join("index")).unwrap();
    std::os::unix::fs::symlink(&outside, srv.join("evil")).unwrap();
    std::fs::write(outside.join("config"), secret).unwrap();

    for path in [
        format!("/r/snapshots/{fake}"),
        "/evil/config".to_string(),
        "/evil/secret".to_string(),
        "/r/index/".to_string(),
    ] {
        let a = raw(&addr, &get(&path, None), b"");
        assert!(
            a.status >= 400 && !a.body.windows(secret.len()).any(|w| w == secret),
            "{path}: {} {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        );
    }
    let a = raw(&addr, &get("/r/snapshots/", None), b"");
    assert_eq!(a.status, 200);
    assert!(!String::from_utf8_lossy(&a.body).contains(&fake));
    let body = b"an index";
    let name = Id::of_stored(body).to_hex();
    let a = raw(
        &addr,
        &format!(
            "POST /r/index/{name} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ),
        body,
    );
    assert!(a.status >= 400, "{}", a.status);
    assert!(!outside.join("snapshots").join(&name).exists());
    // Uploads pass through tmp/: not when it leads outside either.
    std::fs::create_dir_all(outside.join("tmp")).unwrap();
    std::fs::remove_dir_all(srv.join("r").join("tmp")).unwrap();
    std::os::unix::fs::symlink(outside.join("tmp"), srv.join("r").join("tmp")).unwrap();
    let a = raw(
        &addr,
        &format!(
            "POST /r/snapshots/{name} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ),
        body,
    );
    assert!(a.status >= 400, "{}", a.status);
    assert_eq!(std::fs::read_dir(outside.join("tmp")).unwrap().count(), 0);
    assert!(!srv.join("r").join("snapshots").join(&name).exists());
}

/// Mean time of an unauthorised request with each of `creds`, one fresh connection each.
fn mean_401(addr: &str, creds: &[(String, String)]) -> Duration {
    let mut total = Duration::ZERO;
    for (u, p) in creds {
        let started = Instant::now();
        let a = raw(addr, &get("/alice/config", Some((u, p))), b"");
        total += started.elapsed();
        assert_eq!(a.status, 401, "{u}");
    }
    total / creds.len() as u32
}

#[test]
fn unknown_and_known_users_take_the_same_time_to_refuse() {
    let t = TestRepo::new();
    let users = users(&t);
    let s = Server::start(&t, &["--users", &users]);
    let addr = s.addr();
    // Alternating, so that both see the same machine load; within the free attempts.
    let mut known = Duration::ZERO;
    let mut unknown = Duration::ZERO;
    for i in 0..4 {
        known += mean_401(&addr, &[("alice".into(), format!("guess {i}"))]);
        unknown += mean_401(&addr, &[(format!("nobody{i}"), format!("guess {i}"))]);
    }
    assert!(
        unknown * 3 > known && known * 3 > unknown,
        "known users refused in {known:?}, unknown in {unknown:?} (4 tries each)"
    );
}

#[test]
fn repeated_wrong_passwords_are_slowed_and_logged() {
    let t = TestRepo::new();
    let users = users(&t);
    let log = t.path("serve.log");
    let s = Server::start_logged(&t, &["--users", &users], &log);
    let addr = s.addr();
    let mut statuses = Vec::new();
    for i in 0..10 {
        let a = raw(
            &addr,
            &get("/alice/config", Some(("alice", &format!("guess-{i}")))),
            b"",
        );
        statuses.push(a.status);
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|&c| c == 429), "{statuses:?}");
    // While slowed, even the right password is not checked; another user is not affected.
    let a = raw(
        &addr,
        &get("/alice/config", Some(("alice", "alice pw"))),
        b"",
    );
    assert_eq!(a.status, 429);
    assert!(a.head.contains("retry-after:"), "{}", a.head);
    let a = raw(&addr, &get("/bob/config", Some(("bob", "bob pw"))), b"");
    assert_eq!(
        a.status, 404,
        "bob is let in (his repository does not exist)"
    );
    // The wait is bounded: the right password is accepted again after it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a = raw(
            &addr,
            &get("/alice/config", Some(("alice", "alice pw"))),
            b"",
        );
        if a.status == 404 {
            break;
        }
        assert_eq!(a.status, 429);
        assert!(Instant::now() < deadline, "alice is still refused");
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let failures = text
        .lines()
        .filter(|l| l.contains("login failed") && l.contains("alice") && l.contains("127.0.0.1"))
        .count();
    assert_eq!(failures, 5, "{text}");
    assert!(!text.contains("guess-"), "a password was logged:\n{text}");
}

#[test]
fn the_users_file_is_readable_by_its_owner_only() {
    let t = TestRepo::new();
    let f = users(&t);
    let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    // An existing file's group access is kept, others' access removed.
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut c = t.command();
    c.env("HYDRABACKUP_NEW_PASSWORD", "carol pw")
        .args(["serve-user", "--users", &f, "carol"]);
    run_cmd(c).expect_code(0);
    let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "{mode:o}");
}

#[test]
fn other_commands_end_quietly_when_their_reader_goes_away() {
    use std::os::unix::process::ExitStatusExt;
    let t = TestRepo::init();
    let src = t.path("src");
    random_files(&src, 3, 3000, 16);
    t.backup(&[&src]);
    let mut c = t.command();
    c.args(["ls", "latest"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    // Like `| head -1`: one line, then the pipe is closed with most of the listing unread.
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    out.read_exact(&mut first).unwrap();
    drop(out);
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(o.status.signal(), Some(13), "{:?}", o.status);
}
