//! A real S3-compatible server for the S3 tests: `s3s-fs` (installed by `scripts/test.sh`
//! when missing), one process per test on a free loopback port with its own data directory,
//! killed when the test ends.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hydrabackup::backend::{S3Options, Secret};
use tempfile::TempDir;

use crate::common::*;

/// The access key the test servers accept.
pub const ACCESS_KEY: &str = "hydratestkey";
/// The secret key the test servers accept.
pub const SECRET_KEY: &str = "hydratestsecret";
/// The server's install command, for the message when it is missing.
const INSTALL: &str = "cargo install s3s-fs --version 0.14.1 --locked --features binary";

/// The `s3s-fs` binary: `$HYDRABACKUP_S3_SERVER`, else on `PATH`, else in Cargo's bin dir.
fn server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("HYDRABACKUP_S3_SERVER") {
        return PathBuf::from(p);
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(h) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(h).join("bin"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(h).join(".cargo/bin"));
    }
    dirs.iter()
        .map(|d| d.join("s3s-fs"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("s3s-fs not found: run scripts/test.sh, or {INSTALL}"))
}

/// Whether an HTTP server answers on `port`.
fn answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 5];
    s.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}

/// A running `s3s-fs` serving its own temporary directory; killed on drop.
pub struct S3Server {
    child: Child,
    /// The port the server listens on.
    pub port: u16,
    dir: TempDir,
}

impl S3Server {
    /// Starts a server on a free loopback port.
    pub fn start() -> S3Server {
        let bin = server_binary();
        let dir = tempfile::Builder::new()
            .prefix("hbs3")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().join("root");
        fs::create_dir_all(&root).expect("server root");
        // Another process may take the port between asking and binding: try a few.
        for _ in 0..5 {
            let port = free_port();
            let log = fs::File::create(dir.path().join("server.log")).expect("server log");
            let mut child = Command::new(&bin)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                .arg(&root)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e} ({INSTALL})", bin.display()));
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if answers(port) {
                    return S3Server { child, port, dir };
                }
                if child.try_wait().expect("server status").is_some() || Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!(
            "s3s-fs did not start; its log:\n{}",
            fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
        );
    }

    /// The `s3:` location of `bucket_and_prefix` on this server.
    pub fn location(&self, bucket_and_prefix: &str) -> String {
        format!("s3:http://127.0.0.1:{}/{bucket_and_prefix}", self.port)
    }

    /// Where the server keeps the objects of `bucket` under `prefix`.
    pub fn objects(&self, bucket: &str, prefix: &str) -> PathBuf {
        self.dir.path().join("root").join(bucket).join(prefix)
    }

    /// Backend options with the credentials this server accepts.
    pub fn options(&self) -> S3Options {
        S3Options {
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(Secret::new(SECRET_KEY)),
            ..S3Options::default()
        }
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

    /// [`S3Server::repo`] after a successful `init`.
    pub fn init(&self, bucket_and_prefix: &str, args: &[&str]) -> TestRepo {
        let t = self.repo(bucket_and_prefix);
        let mut a = vec!["init"];
        a.extend_from_slice(args);
        let v = t.json(&a);
        assert_eq!(
            v["repository"].as_str(),
            Some(self.location(bucket_and_prefix).as_str())
        );
        t
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
