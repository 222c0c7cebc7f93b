//! One SSH connection: TCP, the handshake with the host key checked against known_hosts (never
//! trusted on first use), public-key login and the SFTP channel.

use std::collections::BTreeSet;
use std::io::{self, ErrorKind};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ssh2::{CheckResult, HashType, HostKeyType, KnownHostFileKind, MethodType, Session, Sftp};

use super::fail::ssh_io;
use crate::backend::Secret;
use crate::{Error, Result};

/// How long one blocking libssh2 call may wait for the server.
const IO_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a TCP connect, and then the SSH handshake and login, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// One SSH connection with its SFTP channel and a few open pack handles.
pub(super) struct Conn {
    /// Open packs (name, handle, size); packs never change once written.
    pub(super) handles: Vec<(String, ssh2::File, u64)>,
    pub(super) sftp: Sftp,
    /// Kept so the session outlives the channel (fields drop in order).
    _session: Session,
}

/// What it takes to open a connection: the server, the login and the host keys to trust.
#[derive(Debug)]
pub(super) struct Connector {
    /// `user@host:port`, for messages.
    pub(super) peer: String,
    pub(super) user: String,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) known_hosts: PathBuf,
    pub(super) keys: Vec<PathBuf>,
    /// Offer the keys before the agent.
    pub(super) explicit_key: bool,
    pub(super) passphrase: Option<Secret>,
    pub(super) use_agent: bool,
}

impl Connector {
    /// An error connecting to the server (permanent: repeating it would not help).
    pub(super) fn conn_err(&self, source: io::Error) -> Error {
        Error::backend("connect to", self.peer.clone(), source)
    }

    /// The host name as known_hosts writes it for this port.
    fn known_hosts_name(&self) -> String {
        if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        }
    }

    /// Opens, verifies and authenticates one connection.
    pub(super) fn connect(&self) -> Result<Conn> {
        let text = self.read_known_hosts()?;
        let recorded = self.recorded_types(&text);
        // Ask for the key types known_hosts records for this host (so a host known by its
        // ECDSA key is not asked for its ed25519 one); when it records none under a plain name
        // (hashed names, or an unknown host), for any, in OpenSSH's order.
        let mut wanted: Vec<&str> = HOST_KEY_TYPES
            .iter()
            .map(|(t, _)| *t)
            .filter(|t| recorded.contains(*t))
            .collect();
        if wanted.is_empty() {
            wanted = HOST_KEY_TYPES.iter().map(|(t, _)| *t).collect();
        }
        let (session, verdict) = self.handshake(&text, &wanted)?;
        let session = match verdict {
            Verdict::Match => session,
            Verdict::Mismatch { key_type, .. } if recorded.is_empty() => {
                // Hashed names hide which key types are recorded: the entry may be for another
                // of the server's keys. Ask for each other type; only a match is accepted.
                drop(session);
                let mut found = None;
                for t in wanted.iter().filter(|t| **t != key_type) {
                    if let Ok((s, Verdict::Match)) = self.handshake(&text, &[t]) {
                        found = Some(s);
                        break;
                    }
                }
                found.ok_or_else(|| self.refusal(verdict))?
            }
            v => return Err(self.refusal(v)),
        };
        self.authenticate(&session)?;
        session.set_timeout(IO_TIMEOUT.as_millis() as u32);
        let sftp = session.sftp().map_err(|e| {
            self.conn_err(io::Error::new(
                ssh_io(&e).kind(),
                format!("the server offers no SFTP subsystem ({})", e.message()),
            ))
        })?;
        Ok(Conn {
            handles: Vec::new(),
            sftp,
            _session: session,
        })
    }

    /// A TCP connection and SSH handshake asking for host keys of `types`, with the verdict of
    /// known_hosts (`text`) on the key the server showed.
    fn handshake(&self, text: &str, types: &[&str]) -> Result<(Session, Verdict)> {
        let addrs: Vec<_> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| self.conn_err(io::Error::new(e.kind(), format!("resolve host: {e}"))))?
            .collect();
        let mut last = io::Error::new(ErrorKind::NotFound, "host has no address");
        let mut tcp = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let tcp = tcp.ok_or_else(|| self.conn_err(last))?;
        let _ = tcp.set_nodelay(true);
        let ssh = |e: ssh2::Error| self.conn_err(ssh_io(&e));
        let mut session = Session::new().map_err(ssh)?;
        // A peer that is not an SSH server, or hangs, fails the connection fast; once logged in,
        // operations get the longer time-out.
        session.set_timeout(CONNECT_TIMEOUT.as_millis() as u32);
        session.set_tcp_stream(tcp);
        let supported = session
            .supported_algs(MethodType::HostKey)
            .unwrap_or_default();
        let algs: Vec<&str> = HOST_KEY_TYPES
            .iter()
            .filter(|(t, _)| types.contains(t))
            .flat_map(|(_, algs)| algs.iter().copied())
            .filter(|a| supported.contains(a))
            .collect();
        if !algs.is_empty() {
            session
                .method_pref(MethodType::HostKey, &algs.join(","))
                .map_err(ssh)?;
        }
        session.handshake().map_err(ssh)?;
        let mut known = session.known_hosts().map_err(ssh)?;
        for line in text.lines() {
            let l = line.trim();
            // libssh2 cannot parse markers such as `@cert-authority`; such lines are skipped.
            if !(l.is_empty() || l.starts_with('#') || l.starts_with('@')) {
                let _ = known.read_str(l, KnownHostFileKind::OpenSSH);
            }
        }
        let (key, kind) = session.host_key().ok_or_else(|| {
            self.conn_err(io::Error::new(
                ErrorKind::InvalidData,
                "the server sent no host key",
            ))
        })?;
        let key_type = key_type_name(kind);
        let fingerprint = session
            .host_key_hash(HashType::Sha256)
            .map(|h| format!("SHA256:{}", STANDARD_NO_PAD.encode(h)))
            .unwrap_or_else(|| "(no fingerprint)".into());
        let verdict = match known.check_port(&self.host, self.port, key) {
            CheckResult::Match => Verdict::Match,
            CheckResult::Mismatch => Verdict::Mismatch {
                key_type,
                fingerprint,
            },
            CheckResult::NotFound => Verdict::NotFound {
                key_type,
                fingerprint,
            },
            CheckResult::Failure => Verdict::Failure,
        };
        Ok((session, verdict))
    }

    fn read_known_hosts(&self) -> Result<String> {
        std::fs::read_to_string(&self.known_hosts).map_err(|e| {
            let hint = if e.kind() == ErrorKind::NotFound {
                format!(
                    "no known_hosts file at {}: refusing to connect to an unverified host (add \
                     the server's key after checking its fingerprint, e.g. with `ssh {}` once, \
                     or set HYDRABACKUP_SFTP_KNOWN_HOSTS)",
                    self.known_hosts.display(),
                    self.ssh_hint()
                )
            } else {
                format!("read {}: {e}", self.known_hosts.display())
            };
            self.conn_err(io::Error::new(e.kind(), hint))
        })
    }

    /// Key types known_hosts records for this host under its plain (unhashed) name.
    fn recorded_types(&self, text: &str) -> BTreeSet<String> {
        let me = self.known_hosts_name();
        text.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#') && !l.starts_with('@'))
            .filter_map(|l| {
                let mut fields = l.split_whitespace();
                let (names, kind) = (fields.next()?, fields.next()?);
                names.split(',').any(|n| n == me).then(|| kind.to_string())
            })
            .collect()
    }

    fn ssh_hint(&self) -> String {
        if self.port == 22 {
            self.host.clone()
        } else {
            format!("-p {} {}", self.port, self.host)
        }
    }

    /// The error for a host key that known_hosts does not vouch for.
    fn refusal(&self, v: Verdict) -> Error {
        let what = match v {
            Verdict::Match => "the host key matched".to_string(),
            Verdict::Mismatch {
                key_type,
                fingerprint,
            } => format!(
                "HOST KEY MISMATCH: the server's {key_type} key {fingerprint} differs from the \
                 one recorded for {} in {}: refusing to connect (someone may be intercepting \
                 the connection; if the key was changed on purpose, remove the old entry with \
                 `ssh-keygen -R '{}'` and add the new one)",
                self.known_hosts_name(),
                self.known_hosts.display(),
                self.known_hosts_name()
            ),
            Verdict::NotFound {
                key_type,
                fingerprint,
            } => format!(
                "unknown host: the server's {key_type} key {fingerprint} is not in {}: refusing \
                 to connect (check the fingerprint, then add the key, e.g. by running `ssh {}` \
                 once)",
                self.known_hosts.display(),
                self.ssh_hint()
            ),
            Verdict::Failure => format!(
                "could not check the server's host key against {}",
                self.known_hosts.display()
            ),
        };
        self.conn_err(io::Error::new(ErrorKind::PermissionDenied, what))
    }

    fn authenticate(&self, session: &Session) -> Result<()> {
        let mut tried = Vec::new();
        let mut last = None;
        let keys_first = self.explicit_key;
        let passphrase = self.passphrase.as_ref().map(Secret::expose);
        let try_agent = |tried: &mut Vec<String>, last: &mut Option<ssh2::Error>| {
            tried.push("ssh-agent".to_string());
            if let Err(e) = session.userauth_agent(&self.user) {
                *last = Some(e);
            }
        };
        if self.use_agent && !keys_first {
            try_agent(&mut tried, &mut last);
        }
        for k in &self.keys {
            if session.authenticated() {
                break;
            }
            tried.push(k.display().to_string());
            if let Err(e) = session.userauth_pubkey_file(&self.user, None, k, passphrase) {
                last = Some(e);
            }
        }
        if self.use_agent && keys_first && !session.authenticated() {
            try_agent(&mut tried, &mut last);
        }
        if session.authenticated() {
            return Ok(());
        }
        let why = if tried.is_empty() {
            "no key to offer: set HYDRABACKUP_SFTP_KEY, start ssh-agent, or create \
             ~/.ssh/id_ed25519"
                .to_string()
        } else {
            let detail = last
                .map(|e| format!(" (last error: {})", e.message()))
                .unwrap_or_default();
            format!(
                "the server accepted none of the keys tried ({}){detail}",
                tried.join(", ")
            )
        };
        Err(self.conn_err(io::Error::new(
            ErrorKind::PermissionDenied,
            format!("authentication as {} failed: {why}", self.user),
        )))
    }
}

/// What known_hosts says about the key a server showed.
#[derive(Debug)]
enum Verdict {
    Match,
    Mismatch {
        key_type: &'static str,
        fingerprint: String,
    },
    NotFound {
        key_type: &'static str,
        fingerprint: String,
    },
    Failure,
}

/// Host key types in OpenSSH's order of preference, with the algorithms that use each.
const HOST_KEY_TYPES: [(&str, &[&str]); 5] = [
    ("ssh-ed25519", &["ssh-ed25519"]),
    ("ecdsa-sha2-nistp256", &["ecdsa-sha2-nistp256"]),
    ("ecdsa-sha2-nistp384", &["ecdsa-sha2-nistp384"]),
    ("ecdsa-sha2-nistp521", &["ecdsa-sha2-nistp521"]),
    ("ssh-rsa", &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]),
];

fn key_type_name(t: HostKeyType) -> &'static str {
    match t {
        HostKeyType::Rsa => "ssh-rsa",
        HostKeyType::Dss => "ssh-dss",
        HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
        HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
        HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
        HostKeyType::Ed25519 => "ssh-ed25519",
        HostKeyType::Unknown => "unknown-type",
    }
}
