//! A real S3 server with Object Lock for the object-lock tests: moto's `moto_server` (installed
//! by `scripts/install-s3-server.sh` when missing), one process per test on a free loopback
//! port, killed when the test ends. It enforces Object Lock as S3 does for what the tests use:
//! buckets created with Object Lock (versioning on), locked writes needing Content-MD5,
//! deletes of a locked version refused, retention read by `HEAD` and set by `PUT ?retention`.
//! It does not check signatures, so [`MotoServer::raw`] plays a client that sends whatever it
//! likes with the credentials.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hydrabackup::backend::{S3Backend, S3Options, Secret};
use rusty_s3::Method;
use tempfile::TempDir;

use crate::common::*;

/// The access key given to the client (moto accepts any).
pub const ACCESS_KEY: &str = "hydratestkey";
/// The secret key given to the client.
pub const SECRET_KEY: &str = "hydratestsecret";
const INSTALL: &str = "scripts/install-s3-server.sh (pip install 'moto[server]==5.2.1')";

/// The `moto_server` program: `$HYDRABACKUP_MOTO_SERVER`, else on `PATH`, else in
/// `~/.local/bin` (pip's user scheme).
fn server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("HYDRABACKUP_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(h) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(h).join(".local/bin"));
    }
    dirs.iter()
        .map(|d| d.join("moto_server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("moto_server not found: run {INSTALL}"))
}

/// A running `moto_server`; killed on drop.
pub struct MotoServer {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    dir: TempDir,
}

/// An HTTP answer: status, headers (lower-case names) and body.
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Header lines as (lower-case name, value).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Answer {
    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl MotoServer {
    /// Starts a server on a free loopback port.
    pub fn start() -> MotoServer {
        let bin = server_binary();
        let dir = tempfile::Builder::new()
            .prefix("hbmoto")
            .tempdir()
            .expect("tempdir");
        for _ in 0..5 {
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("server.log")).expect("server log");
            let mut child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e} ({INSTALL})", bin.display()));
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if request(port, "GET", "/", &[], b"").is_some() {
                    return MotoServer { child, port, dir };
                }
                if child.try_wait().expect("server status").is_some() || Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!(
            "moto_server did not start; its log:\n{}",
            std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
        );
    }

    /// The `s3:` location of `bucket_and_prefix` on this server.
    pub fn location(&self, bucket_and_prefix: &str) -> String {
        format!("s3:http://127.0.0.1:{}/{bucket_and_prefix}", self.port)
    }

    /// Backend options with credentials.
    pub fn options(&self) -> S3Options {
        S3Options {
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(Secret::new(SECRET_KEY)),
            ..S3Options::default()
        }
    }

    /// The library's backend for `bucket_and_prefix` (no object lock set: it reads, and writes
    /// unlocked).
    pub fn backend(&self, bucket_and_prefix: &str) -> S3Backend {
        S3Backend::open(&self.location(bucket_and_prefix), &self.options()).expect("backend")
    }

    /// A test repository (not yet initialised) at `bucket_and_prefix`, with credentials.
    pub fn repo(&self, bucket_and_prefix: &str) -> TestRepo {
        let mut t = TestRepo::new();
        t.repo = PathBuf::from(self.location(bucket_and_prefix));
        t.env = vec![
            ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
        ];
        t
    }

    /// One request signed with the credentials (SigV4, in the query string) and sent as is:
    /// what any client holding them may send, without the library's manners (no
    /// `If-None-Match`, no lock headers). `path` is `/BUCKET[/KEY]`.
    pub fn raw(&self, method: &str, path: &str, query: &[(&str, &str)], body: &[u8]) -> Answer {
        let m = match method {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            other => panic!("method {other}"),
        };
        let url = url::Url::parse(&format!("http://127.0.0.1:{}{path}", self.port)).expect("url");
        let signed = rusty_s3::signing::sign(
            &jiff::Timestamp::now(),
            m,
            url,
            ACCESS_KEY,
            SECRET_KEY,
            None,
            "us-east-1",
            3600,
            query.iter().copied(),
            std::iter::empty(),
        );
        let target = format!("{}?{}", signed.path(), signed.query().unwrap_or_default());
        request(self.port, method, &target, &[], body)
            .unwrap_or_else(|| panic!("no answer to {method} {path}"))
    }
}

/// One HTTP/1.1 request to the loopback `port`; `None` when nothing answers.
fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<Answer> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Answer {
        status,
        headers,
        body: body.to_string(),
    })
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
