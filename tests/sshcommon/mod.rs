//! A private OpenSSH `sshd` on loopback for the SFTP tests: started per test on a free port
//! with its own host keys, user key and known_hosts, killed with all its children on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use hydrabackup::backend::SftpOptions;

use crate::common::*;

/// The OpenSSH server binary.
pub const SSHD: &str = "/usr/sbin/sshd";

/// A private `sshd` on 127.0.0.1, killed on drop.
pub struct Sshd {
    child: Child,
    /// Holds the keys, config and known_hosts.
    dir: tempfile::TempDir,
    /// The port sshd listens on.
    pub port: u16,
    /// The login name (the current user).
    pub user: String,
}

/// A new ed25519 key pair at `path` (and `path.pub`).
pub fn keygen(path: &Path) {
    keygen_type(path, "ed25519");
}

/// A new key pair of type `kind` at `path` (and `path.pub`).
pub fn keygen_type(path: &Path, kind: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", "hbtest", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen runs (install openssh-client)");
    assert!(out.status.success(), "ssh-keygen failed: {out:?}");
}

/// Hashes the host names in a known_hosts file, as `HashKnownHosts yes` writes them.
pub fn hash_known_hosts(path: &Path) {
    let out = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(path)
        .output()
        .expect("ssh-keygen -H");
    assert!(out.status.success(), "{out:?}");
    assert!(std::fs::read_to_string(path).unwrap().starts_with("|1|"));
}

/// `TYPE BASE64` of a public key file.
pub fn public_key(path: &Path) -> String {
    let text = std::fs::read_to_string(path.with_extension("pub")).expect("public key");
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The name of the user running the tests.
pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8(out.stdout)
        .expect("user name")
        .trim()
        .to_string()
}

impl Sshd {
    /// Starts sshd on a free loopback port; known_hosts holds its ed25519 key.
    pub fn start() -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: install openssh-server (scripts/test.sh does)"
        );
        if is_root() {
            // Privilege separation directory, which sshd insists on when run as root.
            std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        }
        let dir = tempfile::Builder::new()
            .prefix("hbsshd")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        // Two host keys: the client must ask for the type known_hosts has, not libssh2's
        // first choice (ECDSA).
        keygen(&d.join("host_key"));
        keygen_type(&d.join("host_key_ecdsa"), "ecdsa");
        keygen(&d.join("user_key"));
        std::fs::write(
            d.join("authorized_keys"),
            format!("{}\n", public_key(&d.join("user_key"))),
        )
        .expect("authorized_keys");
        // A port may be taken between probing and sshd's bind: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            match spawn_sshd(d, port) {
                Ok(child) => {
                    let s = Sshd {
                        child,
                        dir,
                        port,
                        user: current_user(),
                    };
                    s.write_known_hosts(&public_key(&s.path("host_key")));
                    return s;
                }
                Err(e) => last = e,
            }
        }
        panic!("sshd did not start: {last}");
    }

    /// Kills sshd with every connection it serves and starts it again on the same port.
    pub fn restart(&mut self) {
        kill_all(&mut self.child);
        self.child = spawn_sshd(self.dir.path(), self.port).expect("restart sshd");
    }

    /// A file in the server's private folder.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The known_hosts file clients are given.
    pub fn known_hosts(&self) -> PathBuf {
        self.path("known_hosts")
    }

    /// Makes known_hosts hold only `key` (`TYPE BASE64`) for this server.
    pub fn write_known_hosts(&self, key: &str) {
        std::fs::write(
            self.known_hosts(),
            format!("[127.0.0.1]:{} {key}\n", self.port),
        )
        .expect("known_hosts");
    }

    /// The URL-style location of a repository at `path` (absolute) on this server.
    pub fn url(&self, path: &Path) -> String {
        format!(
            "sftp://{}@127.0.0.1:{}/{}",
            self.user,
            self.port,
            path.display()
        )
    }

    /// The binary for repository `t`, reached through this server.
    pub fn command(&self, t: &TestRepo) -> Command {
        let mut c = t.command();
        c.env("HYDRABACKUP_REPOSITORY", self.url(&t.repo));
        self.env(&mut c);
        c
    }

    /// Points `c` at this server's user key and known_hosts, and clears other SSH settings.
    pub fn env(&self, c: &mut Command) {
        c.env("HYDRABACKUP_SFTP_KEY", self.path("user_key"))
            .env("HYDRABACKUP_SFTP_KNOWN_HOSTS", self.known_hosts())
            .env_remove("HYDRABACKUP_SFTP_PORT")
            .env_remove("HYDRABACKUP_SFTP_KEY_PASSPHRASE")
            .env_remove("SSH_AUTH_SOCK");
    }

    /// Runs the binary with `args` against repository `t` on this server.
    pub fn run(&self, t: &TestRepo, args: &[&str]) -> Run {
        let mut c = self.command(t);
        c.args(args);
        run_cmd(c)
    }

    /// [`Sshd::run`] with `--json`, which must succeed; its output.
    pub fn json(&self, t: &TestRepo, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        self.run(t, &a).expect_code(0).json()
    }

    /// Also trusts this server's ed25519 key when it is reached at `port` (through a proxy).
    pub fn trust_port(&self, port: u16) {
        let key = public_key(&self.path("host_key"));
        let mut text = std::fs::read_to_string(self.known_hosts()).expect("known_hosts");
        text.push_str(&format!("[127.0.0.1]:{port} {key}\n"));
        std::fs::write(self.known_hosts(), text).expect("known_hosts");
    }

    /// Backend options that log in with the user key and trust known_hosts.
    pub fn options(&self) -> SftpOptions {
        SftpOptions {
            port: None,
            user: None,
            known_hosts: self.known_hosts(),
            keys: vec![self.path("user_key")],
            keys_first: true,
            passphrase: None,
            use_agent: false,
        }
    }
}

/// Writes the config for `port` and starts sshd; returns once it accepts connections.
fn spawn_sshd(d: &Path, port: u16) -> Result<Child, String> {
    let config = d.join("sshd_config");
    let base = format!(
        "ListenAddress 127.0.0.1\nPort {port}\nHostKey {d}/host_key\nHostKey {d}/host_key_ecdsa\n\
         AuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\n\
         StrictModes no\nUsePAM no\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
         PermitRootLogin prohibit-password\nAllowTcpForwarding no\n\
         X11Forwarding no\nPrintMotd no\nLogLevel ERROR\n\
         Subsystem sftp internal-sftp\n",
        d = d.display()
    );
    // OpenSSH 9.8+ penalises a source address after refused or unauthenticated connections,
    // which the tests make on purpose; older versions do not know the option.
    std::fs::write(&config, format!("{base}PerSourcePenalties no\n")).expect("sshd_config");
    let accepted = Command::new(SSHD)
        .arg("-t")
        .arg("-f")
        .arg(&config)
        .output()
        .is_ok_and(|o| o.status.success());
    if !accepted {
        std::fs::write(&config, &base).expect("sshd_config");
    }
    let mut child = Command::new(SSHD)
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sshd");
    if let Err(e) = wait_listening(&mut child, port) {
        kill_all(&mut child);
        return Err(e);
    }
    // Keep draining sshd's log so it never blocks on a full pipe; shown with --nocapture.
    if let Some(err) = child.stderr.take() {
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("sshd: {line}");
            }
        });
    }
    Ok(child)
}

/// The pids of all processes descended from `root` (from /proc).
fn descendants(root: u32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if let Some(ppid) = ppid {
            parent_of.push((pid, ppid));
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root as i32];
    while let Some(p) = frontier.pop() {
        for &(pid, ppid) in &parent_of {
            if ppid == p && !out.contains(&pid) {
                out.push(pid);
                frontier.push(pid);
            }
        }
    }
    out
}

/// Kills sshd and every process it started: the per-connection processes put themselves in
/// sessions of their own, so they are found by parentage, not by process group.
fn kill_all(child: &mut Child) {
    for pid in descendants(child.id()) {
        // SAFETY: kill(2) takes plain integers and touches no memory of ours. The pids are
        // descendants of our sshd, read from /proc just now; the listener is not reaped yet,
        // so its direct children cannot have been reparented and their pids not reused.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Polls until `port` accepts connections (exchanging SSH banners, so that sshd has nothing to
/// complain about), or fails if sshd exits or takes too long.
fn wait_listening(child: &mut Child, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(b"SSH-2.0-hbtest_probe\r\n");
            let mut banner = String::new();
            if BufReader::new(s).read_line(&mut banner).is_ok() && banner.starts_with("SSH-") {
                return Ok(());
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut log = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut log);
            }
            return Err(format!("sshd exited with {status}: {log}"));
        }
        if Instant::now() > deadline {
            return Err("sshd did not answer within 20 s".into());
        }
        thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        kill_all(&mut self.child);
    }
}
