//! Helpers for the REST server tests: a running `hydrabackup serve`, a self-signed
//! certificate, a users file and the binary run against a `rest:` location.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::common::*;

/// A running `hydrabackup serve`, stopped on drop.
pub struct Server {
    /// The server process.
    pub child: Child,
    /// `http(s)://127.0.0.1:PORT`
    pub base: String,
}

impl Server {
    /// Starts `serve` on a free loopback port, with `extra` arguments.
    pub fn start(t: &TestRepo, extra: &[&str]) -> Server {
        Server::spawn(t, extra, "error", Stdio::inherit())
    }

    /// Like [`Server::start`], logging warnings and errors to the file `log`.
    pub fn start_logged(t: &TestRepo, extra: &[&str], log: &std::path::Path) -> Server {
        let f = std::fs::File::create(log).expect("log file");
        Server::spawn(t, extra, "warn", Stdio::from(f))
    }

    fn spawn(t: &TestRepo, extra: &[&str], level: &str, stderr: Stdio) -> Server {
        let mut c = Command::new(BIN);
        c.args(["serve", "--listen", "127.0.0.1:0", "--path"])
            .arg(t.path("srv"))
            .args(extra)
            .env("HYDRABACKUP_LOG", level)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = c.spawn().expect("serve starts");
        // The first line names the address; it is printed once the socket listens.
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("serve prints its address");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server { child, base }
    }

    /// `host:port` the server listens on.
    pub fn addr(&self) -> String {
        self.base.split_once("://").unwrap().1.to_string()
    }

    /// `rest:` location of repository `repo`, with credentials when given.
    pub fn location(&self, cred: Option<(&str, &str)>, repo: &str) -> String {
        let (scheme, hostport) = self.base.split_once("://").unwrap();
        match cred {
            Some((u, p)) => format!("rest:{scheme}://{u}:{p}@{hostport}/{repo}"),
            None => format!("rest:{scheme}://{hostport}/{repo}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for 127.0.0.1 (openssl CLI; `.ci/run` installs it).
pub fn certificate(t: &TestRepo) -> (String, String) {
    let (cert, key) = (t.path("cert.pem"), t.path("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=hydrabackup test",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed (see .ci/run)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        cert.to_str().unwrap().to_string(),
        key.to_str().unwrap().to_string(),
    )
}

/// A users file with alice and bob.
pub fn users(t: &TestRepo) -> String {
    let f = t.path("users");
    for (u, p) in [("alice", "alice pw"), ("bob", "bob pw")] {
        let mut c = t.command();
        c.env("HYDRABACKUP_NEW_PASSWORD", p)
            .args(["serve-user", "--users"])
            .arg(&f)
            .arg(u);
        run_cmd(c).expect_code(0);
    }
    f.to_str().unwrap().to_string()
}

/// Runs the binary against `location`, trusting `cacert` when given.
pub fn hb(t: &TestRepo, location: &str, cacert: Option<&str>, args: &[&str]) -> Run {
    let mut c = t.command();
    c.env("HYDRABACKUP_REPOSITORY", location).args(args);
    if let Some(ca) = cacert {
        c.env("HYDRABACKUP_REST_CACERT", ca);
    }
    run_cmd(c)
}
