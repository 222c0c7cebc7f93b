//! The SFTP backend: a repository on a remote host reached over SSH (libssh2, through the `ssh2`
//! crate), with the same layout as the local backend.
//!
//! Locations:
//! - `sftp:USER@HOST:/abs/path` or `sftp:USER@HOST:relative/path` (relative to the login
//!   directory); the port is `HYDRABACKUP_SFTP_PORT` or 22.
//! - `sftp://USER@HOST[:PORT]/path`: as in restic, the slash after the host only separates, so
//!   `sftp://u@h/repo` is `repo` in the login directory and `sftp://u@h//srv/repo` is `/srv/repo`.
//!
//! `HOST` may be an IPv6 address in brackets. `USER@` may be left out; then `$USER` is used.
//!
//! Authentication: the key in `HYDRABACKUP_SFTP_KEY` if set (passphrase in
//! `HYDRABACKUP_SFTP_KEY_PASSPHRASE`), else ssh-agent if `SSH_AUTH_SOCK` is set, then
//! `~/.ssh/id_ed25519` and `~/.ssh/id_rsa`. The server's host key must be in `~/.ssh/known_hosts`
//! (or the file named by `HYDRABACKUP_SFTP_KNOWN_HOSTS`): an unknown or changed key is refused,
//! never trusted on first use. The client asks for the key types recorded for the host; with
//! hashed names, which hide the type, a mismatch is only final once each of the server's other
//! key types has been tried.
//!
//! Writes go to `tmp/<pid>.<seq>.<host>.<name>` (as locally), are fsynced with the
//! `fsync@openssh.com` extension when the server has it, and are renamed into place with SFTP's
//! plain rename, which never replaces an existing file (OpenSSH implements it as link + unlink):
//! exactly the "never replace an object" rule, so `posix-rename@openssh.com` (which replaces,
//! and which the `ssh2` crate does not offer) is not needed. A name that appeared meanwhile was
//! written by another writer with the same content. Directory entries cannot be fsynced over
//! SFTP, so the rename is as durable as the server's file system makes it. `data/<2 hex>/`
//! directories are created on first use. SFTP version 3 reports a full disk as a bare
//! "failure": a failed write asks the server for its free space (`statvfs@openssh.com`) and
//! reports ENOSPC when that is the cause. Temporaries of dead writers are recognised by age
//! alone (a remote host's processes cannot be checked): anything in `tmp/` last modified more
//! than a day ago by the server's clock.
//!
//! Concurrency: up to [`MAX_CONNECTIONS`] SSH connections, each with one SFTP channel, opened as
//! threads need them and kept for reuse. libssh2 serialises the operations of one session, so
//! parallel reads need separate connections. A connection that fails at the transport level is
//! dropped, and the operation is tried once more on a fresh one.

use std::collections::BTreeSet;
use std::fmt;
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ssh2::{
    CheckResult, ErrorCode, HashType, HostKeyType, KnownHostFileKind, MethodType, OpenFlags,
    OpenType, RenameFlags, Session, Sftp,
};

use super::{Backend, FileKind};
use crate::{Error, Result};

/// SSH connections kept open at most (each carries one SFTP channel).
pub const MAX_CONNECTIONS: usize = 4;
/// Open pack handles kept per connection.
const HANDLES_PER_CONNECTION: usize = 16;
/// How long one blocking libssh2 call may wait for the server.
const IO_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a TCP connect, and then the SSH handshake and login, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Temporaries older than this are taken to belong to dead writers.
const STALE_AGE: Duration = Duration::from_secs(24 * 3600);
/// Mode of created files and directories (the server's umask applies on top).
const FILE_MODE: i32 = 0o600;
const DIR_MODE: i32 = 0o700;

// SFTP status codes (draft-ietf-secsh-filexfer) that map to distinct I/O error kinds.
const FX_NO_SUCH_FILE: i32 = 2;
const FX_PERMISSION_DENIED: i32 = 3;
const FX_NO_CONNECTION: i32 = 6;
const FX_CONNECTION_LOST: i32 = 7;
const FX_OP_UNSUPPORTED: i32 = 8;
const FX_NO_SUCH_PATH: i32 = 10;
const FX_FILE_ALREADY_EXISTS: i32 = 11;
const FX_WRITE_PROTECT: i32 = 12;
const FX_NO_SPACE_ON_FILESYSTEM: i32 = 14;
const FX_QUOTA_EXCEEDED: i32 = 15;

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A parsed SFTP location (see the module documentation for the syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftpLocation {
    /// The login name, if the location gives one.
    pub user: Option<String>,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// The port, if the location gives one.
    pub port: Option<u16>,
    /// The repository path on the server: absolute, or relative to the login directory.
    pub path: String,
}

impl SftpLocation {
    /// Parses `sftp:[USER@]HOST:PATH` or `sftp://[USER@]HOST[:PORT]/PATH`.
    pub fn parse(location: &str) -> Result<SftpLocation> {
        let bad = |why: &str| {
            Error::InvalidInput(format!(
                "invalid SFTP location {location:?}: {why} (expected sftp:USER@HOST:PATH or \
                 sftp://USER@HOST[:PORT]/PATH)"
            ))
        };
        let (authority, path, url) = if let Some(rest) = location.strip_prefix("sftp://") {
            let (auth, path) = rest.split_once('/').ok_or_else(|| bad("no path"))?;
            (auth, path, true)
        } else if let Some(rest) = location.strip_prefix("sftp:") {
            // `[USER@]HOST:PATH`: a '@' before any ':' or '[' ends the user name; the host
            // ends at the first ':' after an optional bracketed IPv6 address.
            let at = match rest.find([':', '[', '@']) {
                Some(i) if rest.as_bytes()[i] == b'@' => i + 1,
                _ => 0,
            };
            let host_end = if rest[at..].starts_with('[') {
                at + rest[at..].find(']').ok_or_else(|| bad("unclosed '['"))? + 1
            } else {
                at
            };
            let colon = rest[host_end..]
                .find(':')
                .ok_or_else(|| bad("no ':' before the path"))?;
            (
                &rest[..host_end + colon],
                &rest[host_end + colon + 1..],
                false,
            )
        } else {
            return Err(bad("not an sftp: location"));
        };
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) if !u.is_empty() => (Some(u.to_string()), h),
            Some(_) => return Err(bad("empty user name")),
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            match after {
                "" => (h, None),
                p if url && p.starts_with(':') => (h, Some(&p[1..])),
                _ => return Err(bad("unexpected text after ']'")),
            }
        } else if url {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        } else {
            (hostport, None)
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if host.contains(['@', '/', ':']) && !hostport.starts_with('[') {
            return Err(bad("invalid host"));
        }
        let port = match port {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| bad("invalid port"))?,
            ),
        };
        let mut path = path.to_string();
        while path.len() > 1 && path.ends_with('/') {
            path.pop();
        }
        if path.is_empty() {
            return Err(bad("no path"));
        }
        if path.contains('\0') || host.contains('\0') {
            return Err(bad("NUL byte"));
        }
        Ok(SftpLocation {
            user,
            host: host.to_string(),
            port,
            path,
        })
    }
}

/// What an operation inside a connection can fail with.
enum Fail {
    /// A libssh2 or SFTP status error.
    Ssh(ssh2::Error),
    /// An error from a file handle's `Read`/`Write`, or one made up here.
    Io(io::Error),
}

impl From<ssh2::Error> for Fail {
    fn from(e: ssh2::Error) -> Self {
        Fail::Ssh(e)
    }
}

impl From<io::Error> for Fail {
    /// File handles' `Read`/`Write` turn SFTP status codes into `io::Error`s of kind `Other`
    /// that keep only ssh2's message; the codes that matter are recovered from it.
    fn from(e: io::Error) -> Self {
        if e.kind() != ErrorKind::Other {
            return Fail::Io(e);
        }
        let msg = e.to_string();
        let code = [
            FX_NO_SPACE_ON_FILESYSTEM,
            FX_QUOTA_EXCEEDED,
            FX_PERMISSION_DENIED,
            FX_WRITE_PROTECT,
        ]
        .into_iter()
        .find(|&c| msg == ssh2::Error::from_errno(ErrorCode::SFTP(c)).message());
        match code {
            Some(c) => Fail::Io(ssh_io(&ssh2::Error::from_errno(ErrorCode::SFTP(c)))),
            None => Fail::Io(io::Error::other(format!("SFTP: {msg}"))),
        }
    }
}

impl Fail {
    /// Whether the connection is unusable after this error (transport failure, time-out).
    fn fatal(&self) -> bool {
        match self {
            Fail::Ssh(e) => match e.code() {
                ErrorCode::Session(_) => true,
                ErrorCode::SFTP(c) => c == FX_NO_CONNECTION || c == FX_CONNECTION_LOST,
            },
            // Handle reads and writes report libssh2 failures as `Other`.
            Fail::Io(e) => !matches!(
                e.kind(),
                ErrorKind::NotFound
                    | ErrorKind::AlreadyExists
                    | ErrorKind::PermissionDenied
                    | ErrorKind::UnexpectedEof
                    | ErrorKind::InvalidData
                    | ErrorKind::StorageFull
                    | ErrorKind::QuotaExceeded
            ),
        }
    }

    fn into_io(self) -> io::Error {
        match self {
            Fail::Io(e) => e,
            Fail::Ssh(e) => ssh_io(&e),
        }
    }
}

/// An `io::Error` of a fitting kind for a libssh2 / SFTP error.
fn ssh_io(e: &ssh2::Error) -> io::Error {
    let kind = match e.code() {
        ErrorCode::SFTP(FX_NO_SUCH_FILE | FX_NO_SUCH_PATH) => ErrorKind::NotFound,
        ErrorCode::SFTP(FX_PERMISSION_DENIED | FX_WRITE_PROTECT) => ErrorKind::PermissionDenied,
        ErrorCode::SFTP(FX_FILE_ALREADY_EXISTS) => ErrorKind::AlreadyExists,
        ErrorCode::SFTP(FX_OP_UNSUPPORTED) => ErrorKind::Unsupported,
        ErrorCode::SFTP(FX_NO_SPACE_ON_FILESYSTEM) => {
            return io::Error::from_raw_os_error(libc::ENOSPC);
        }
        ErrorCode::SFTP(FX_QUOTA_EXCEEDED) => return io::Error::from_raw_os_error(libc::EDQUOT),
        ErrorCode::SFTP(FX_NO_CONNECTION | FX_CONNECTION_LOST) => ErrorKind::ConnectionAborted,
        ErrorCode::Session(-9 | -30) => ErrorKind::TimedOut,
        ErrorCode::Session(-7 | -13 | -43) => ErrorKind::ConnectionAborted,
        ErrorCode::Session(-18 | -19 | -48) => ErrorKind::PermissionDenied,
        _ => ErrorKind::Other,
    };
    let what = match e.code() {
        ErrorCode::SFTP(_) => "SFTP server",
        ErrorCode::Session(_) => "SSH",
    };
    io::Error::new(kind, format!("{what}: {}", e.message()))
}

fn is_not_found(f: &Fail) -> bool {
    match f {
        Fail::Ssh(e) => matches!(e.code(), ErrorCode::SFTP(FX_NO_SUCH_FILE | FX_NO_SUCH_PATH)),
        Fail::Io(e) => e.kind() == ErrorKind::NotFound,
    }
}

/// One SSH connection with its SFTP channel and a few open pack handles.
struct Conn {
    /// Open packs (name, handle, size); packs never change once written.
    handles: Vec<(String, ssh2::File, u64)>,
    sftp: Sftp,
    /// Kept so the session outlives the channel (fields drop in order).
    _session: Session,
}

struct PoolState {
    idle: Vec<Conn>,
    open: usize,
}

/// A repository on an SFTP server.
pub struct SftpBackend {
    location: String,
    /// `user@host:port`, for connection errors.
    peer: String,
    user: String,
    host: String,
    port: u16,
    root: String,
    known_hosts: PathBuf,
    keys: Vec<PathBuf>,
    explicit_key: bool,
    passphrase: Option<String>,
    use_agent: bool,
    pool: Mutex<PoolState>,
    freed: Condvar,
}

impl fmt::Debug for SftpBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpBackend")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Connection settings that do not come from the location itself.
#[derive(Debug, Clone, Default)]
pub struct SftpOptions {
    /// Port when the location names none (default 22).
    pub port: Option<u16>,
    /// Login name when the location names none.
    pub user: Option<String>,
    /// The known_hosts file the server's host key must be in.
    pub known_hosts: PathBuf,
    /// Private key files to offer, in order.
    pub keys: Vec<PathBuf>,
    /// Offer the keys before the agent (a key named explicitly wins).
    pub keys_first: bool,
    /// Passphrase for the key files.
    pub passphrase: Option<String>,
    /// Ask ssh-agent (at `SSH_AUTH_SOCK`).
    pub use_agent: bool,
}

impl SftpOptions {
    /// Settings from the environment: `HYDRABACKUP_SFTP_PORT`, `$USER`,
    /// `HYDRABACKUP_SFTP_KNOWN_HOSTS` (default `~/.ssh/known_hosts`), `HYDRABACKUP_SFTP_KEY`
    /// (default `~/.ssh/id_ed25519` and `~/.ssh/id_rsa`, those that exist),
    /// `HYDRABACKUP_SFTP_KEY_PASSPHRASE` and `SSH_AUTH_SOCK`.
    pub fn from_env() -> Result<SftpOptions> {
        let port = match env_nonempty("HYDRABACKUP_SFTP_PORT") {
            Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| {
                Error::InvalidInput(format!("invalid HYDRABACKUP_SFTP_PORT {p:?}"))
            })?),
            None => None,
        };
        let ssh_dir = home().map(|h| h.join(".ssh"));
        let known_hosts = match env_nonempty("HYDRABACKUP_SFTP_KNOWN_HOSTS") {
            Some(p) => PathBuf::from(p),
            None => ssh_dir
                .as_ref()
                .map(|d| d.join("known_hosts"))
                .ok_or_else(|| {
                    Error::InvalidInput(
                        "no known_hosts file: $HOME is not set; set HYDRABACKUP_SFTP_KNOWN_HOSTS"
                            .into(),
                    )
                })?,
        };
        let (keys, keys_first) = match env_nonempty("HYDRABACKUP_SFTP_KEY") {
            Some(k) => (vec![PathBuf::from(k)], true),
            None => (
                ssh_dir
                    .iter()
                    .flat_map(|d| [d.join("id_ed25519"), d.join("id_rsa")])
                    .filter(|p| p.is_file())
                    .collect(),
                false,
            ),
        };
        Ok(SftpOptions {
            port,
            user: env_nonempty("USER").or_else(|| env_nonempty("LOGNAME")),
            known_hosts,
            keys,
            keys_first,
            passphrase: env_nonempty("HYDRABACKUP_SFTP_KEY_PASSPHRASE"),
            use_agent: std::env::var_os("SSH_AUTH_SOCK").is_some_and(|s| !s.is_empty()),
        })
    }
}

impl SftpBackend {
    /// Opens `location` with the settings from the environment (see [`SftpOptions::from_env`]).
    pub fn open(location: &str) -> Result<SftpBackend> {
        Self::open_with(location, SftpOptions::from_env()?)
    }

    /// Parses `location` and opens the first connection (so that an unreachable host, an
    /// unknown host key or a refused login is reported right away).
    pub fn open_with(location: &str, opts: SftpOptions) -> Result<SftpBackend> {
        let loc = SftpLocation::parse(location)?;
        let port = loc.port.or(opts.port).unwrap_or(22);
        let user = loc.user.or(opts.user).ok_or_else(|| {
            Error::InvalidInput(format!(
                "no user name in SFTP location {location:?} and $USER is not set"
            ))
        })?;
        let peer = if loc.host.contains(':') {
            format!("{user}@[{}]:{port}", loc.host)
        } else {
            format!("{user}@{}:{port}", loc.host)
        };
        let b = SftpBackend {
            location: location.to_string(),
            peer,
            user,
            host: loc.host,
            port,
            root: loc.path,
            known_hosts: opts.known_hosts,
            keys: opts.keys,
            explicit_key: opts.keys_first,
            passphrase: opts.passphrase,
            use_agent: opts.use_agent,
            pool: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        };
        let first = b.connect()?;
        let mut st = b.state();
        st.open = 1;
        st.idle.push(first);
        drop(st);
        Ok(b)
    }

    /// How many connections are open now (idle or in use).
    pub fn connections(&self) -> usize {
        self.state().open
    }

    fn state(&self) -> MutexGuard<'_, PoolState> {
        // A panic while holding this lock cannot leave the pool inconsistent (push/pop and a
        // counter), so a poisoned lock is taken over.
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn conn_err(&self, source: io::Error) -> Error {
        Error::Backend {
            op: "connect to",
            name: self.peer.clone(),
            source,
        }
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
    fn connect(&self) -> Result<Conn> {
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
            // Unpadded standard base64, as OpenSSH prints fingerprints.
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
            if let Err(e) =
                session.userauth_pubkey_file(&self.user, None, k, self.passphrase.as_deref())
            {
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

    /// Runs `f` on a pooled connection; a transport failure on a reused connection is retried
    /// once on a fresh one.
    fn with<T>(
        &self,
        op: &'static str,
        name: &str,
        mut f: impl FnMut(&mut Conn) -> Result<T, Fail>,
    ) -> Result<T> {
        let mut retried = false;
        loop {
            let (mut c, fresh) = self.take()?;
            match f(&mut c) {
                Ok(v) => {
                    self.give(c);
                    return Ok(v);
                }
                Err(e) if e.fatal() => {
                    self.discard(c);
                    if fresh || retried {
                        return Err(self.op_err(op, name, e.into_io()));
                    }
                    retried = true;
                }
                Err(e) => {
                    self.give(c);
                    return Err(self.op_err(op, name, e.into_io()));
                }
            }
        }
    }

    fn op_err(&self, op: &'static str, name: &str, source: io::Error) -> Error {
        Error::Backend {
            op,
            name: format!("{}:{name}", self.peer),
            source,
        }
    }

    /// An idle connection, or a new one while fewer than the maximum are open; the flag says
    /// whether it is new.
    fn take(&self) -> Result<(Conn, bool)> {
        let mut st = self.state();
        loop {
            if let Some(c) = st.idle.pop() {
                return Ok((c, false));
            }
            if st.open < MAX_CONNECTIONS {
                st.open += 1;
                drop(st);
                return match self.connect() {
                    Ok(c) => Ok((c, true)),
                    Err(e) => {
                        self.discard_slot();
                        Err(e)
                    }
                };
            }
            st = self.freed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn give(&self, c: Conn) {
        self.state().idle.push(c);
        self.freed.notify_one();
    }

    fn discard(&self, c: Conn) {
        drop(c);
        self.discard_slot();
    }

    fn discard_slot(&self) {
        let mut st = self.state();
        st.open = st.open.saturating_sub(1);
        drop(st);
        self.freed.notify_one();
    }

    fn dir(&self, kind: FileKind) -> String {
        match kind.dir() {
            Some(sub) => self.join(sub),
            None => self.root.clone(),
        }
    }

    fn join(&self, rel: &str) -> String {
        if self.root.ends_with('/') {
            format!("{}{rel}", self.root)
        } else {
            format!("{}/{rel}", self.root)
        }
    }

    fn path(&self, kind: FileKind, name: &str) -> Result<String> {
        Ok(self.join(&super::object_path(kind, name)?))
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

/// A failed write, told apart as a full disk: SFTP version 3 (OpenSSH) reports ENOSPC as a bare
/// "failure", so the server's free space (`statvfs@openssh.com`) decides.
fn full_disk(f: &mut ssh2::File, e: io::Error, needed: u64) -> Fail {
    let e = Fail::from(e);
    if let Fail::Io(io) = &e
        && io.kind() == ErrorKind::Other
        && let Ok(vfs) = f.statvfs()
        && vfs.f_bavail.saturating_mul(vfs.f_frsize) < needed
    {
        return Fail::Io(io::Error::from_raw_os_error(libc::ENOSPC));
    }
    e
}

/// `mkdir -p` over SFTP: an existing directory is fine.
fn mkdir_all(sftp: &Sftp, path: &str) -> Result<(), Fail> {
    let mut prefix = String::new();
    for (i, part) in path.split('/').enumerate() {
        if i > 0 {
            prefix.push('/');
        }
        prefix.push_str(part);
        if part.is_empty() || part == "." {
            continue;
        }
        mkdir_one(sftp, &prefix)?;
    }
    Ok(())
}

fn mkdir_one(sftp: &Sftp, path: &str) -> Result<(), Fail> {
    match sftp.mkdir(Path::new(path), DIR_MODE) {
        Ok(()) => Ok(()),
        Err(e) => match sftp.stat(Path::new(path)) {
            Ok(st) if st.is_dir() => Ok(()),
            _ => Err(Fail::Ssh(e)),
        },
    }
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or(".", |(p, _)| p)
}

fn stat_opt(sftp: &Sftp, path: &str) -> Result<Option<ssh2::FileStat>, Fail> {
    match sftp.stat(Path::new(path)) {
        Ok(st) => Ok(Some(st)),
        Err(e) => {
            let f = Fail::Ssh(e);
            if is_not_found(&f) { Ok(None) } else { Err(f) }
        }
    }
}

/// Lists the regular files of one directory; `None` if it does not exist.
fn list_dir(sftp: &Sftp, dir: &str) -> Result<Option<Vec<(String, ssh2::FileStat)>>, Fail> {
    let entries = match sftp.readdir(Path::new(dir)) {
        Ok(v) => v,
        Err(e) => {
            let f = Fail::Ssh(e);
            return if is_not_found(&f) { Ok(None) } else { Err(f) };
        }
    };
    Ok(Some(
        entries
            .into_iter()
            .filter_map(|(p, st)| {
                let name = p.file_name()?.to_string_lossy().into_owned();
                (!name.starts_with('.')).then_some((name, st))
            })
            .collect(),
    ))
}

impl Backend for SftpBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn exists(&self) -> Result<bool> {
        let p = self.join("config");
        self.with("stat", &p, |c| {
            Ok(stat_opt(&c.sftp, &p)?.is_some_and(|st| st.is_file()))
        })
    }

    fn create(&self) -> Result<()> {
        self.with("create", &self.root, |c| {
            mkdir_all(&c.sftp, &self.root)?;
            for d in FileKind::ALL
                .iter()
                .filter_map(|k| k.dir())
                .chain([super::TMP_DIR])
            {
                mkdir_one(&c.sftp, &self.join(d))?;
            }
            Ok(())
        })
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        let base = self.dir(kind);
        self.with("list", &base, |c| {
            let sftp = &c.sftp;
            if kind == FileKind::Config {
                let p = self.join("config");
                return Ok(stat_opt(sftp, &p)?
                    .map(|st| vec![("config".to_string(), st.size.unwrap_or(0))])
                    .unwrap_or_default());
            }
            let dirs = if kind == FileKind::Pack {
                let top = list_dir(sftp, &base)?.ok_or_else(|| {
                    Fail::Io(io::Error::new(ErrorKind::NotFound, "no data directory"))
                })?;
                top.into_iter()
                    .filter(|(_, st)| st.is_dir())
                    .map(|(n, _)| format!("{base}/{n}"))
                    .collect()
            } else {
                vec![base.clone()]
            };
            let mut out = Vec::new();
            for d in dirs {
                for (name, st) in list_dir(sftp, &d)?.unwrap_or_default() {
                    if st.is_file() {
                        out.push((name, st.size.unwrap_or(0)));
                    }
                }
            }
            out.sort();
            Ok(out)
        })
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let p = self.path(kind, name)?;
        self.with("read", &p, |c| {
            let mut f = c.sftp.open(Path::new(&p))?;
            let size = f.stat()?.size.unwrap_or(0);
            let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(1 << 30));
            f.read_to_end(&mut buf)?;
            Ok(buf)
        })
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let p = self.path(kind, name)?;
        let len_usize = usize::try_from(len)
            .map_err(|_| Error::InvalidInput(format!("read of {len} bytes")))?;
        self.with("read", &p, |c| {
            let idx = match c.handles.iter().position(|(n, _, _)| n == name) {
                Some(i) => i,
                None => {
                    let mut f = c.sftp.open(Path::new(&p))?;
                    let size = f.stat()?.size.unwrap_or(0);
                    if c.handles.len() >= HANDLES_PER_CONNECTION {
                        c.handles.remove(0);
                    }
                    c.handles.push((name.to_string(), f, size));
                    c.handles.len() - 1
                }
            };
            let size = c.handles[idx].2;
            if offset.checked_add(len).is_none_or(|end| end > size) {
                return Err(Fail::Io(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("range {offset}+{len} beyond file size {size}"),
                )));
            }
            let f = &mut c.handles[idx].1;
            let mut buf = vec![0u8; len_usize];
            let result = f
                .seek(SeekFrom::Start(offset))
                .and_then(|_| f.read_exact(&mut buf));
            if let Err(e) = result {
                // Do not keep a handle in an unknown read position.
                c.handles.remove(idx);
                return Err(Fail::Io(e));
            }
            Ok(buf)
        })
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        let p = self.path(kind, name)?;
        let tmpdir = self.join("tmp");
        let host = crate::repo::hostname().replace('/', "_");
        self.with("write", &p, |c| {
            let sftp = &c.sftp;
            if stat_opt(sftp, &p)?.is_some() {
                return Ok(());
            }
            let tmp = format!(
                "{tmpdir}/{}.{}.{host}.{name}",
                std::process::id(),
                TMP_SEQ.fetch_add(1, Ordering::Relaxed)
            );
            let tmp_path = Path::new(&tmp);
            let result = (|| -> Result<(), Fail> {
                let flags = OpenFlags::WRITE | OpenFlags::EXCLUSIVE;
                let open = || sftp.open_mode(tmp_path, flags, FILE_MODE, OpenType::File);
                let mut f = match open() {
                    Ok(f) => f,
                    Err(e)
                        if matches!(
                            e.code(),
                            ErrorCode::SFTP(FX_NO_SUCH_FILE | FX_NO_SUCH_PATH)
                        ) =>
                    {
                        mkdir_all(sftp, &tmpdir)?;
                        open()?
                    }
                    Err(e) => return Err(Fail::Ssh(e)),
                };
                let needed = data.len() as u64;
                if kind == FileKind::Pack && data.len() > 1 {
                    f.write_all(&data[..data.len() / 2])
                        .map_err(|e| full_disk(&mut f, e, needed))?;
                    crate::failpoint::hit("mid-pack-write");
                    f.write_all(&data[data.len() / 2..])
                        .map_err(|e| full_disk(&mut f, e, needed))?;
                } else {
                    f.write_all(data)
                        .map_err(|e| full_disk(&mut f, e, needed))?;
                }
                match f.fsync() {
                    Err(e) if e.code() != ErrorCode::SFTP(FX_OP_UNSUPPORTED) => {
                        return Err(Fail::Ssh(e));
                    }
                    _ => {}
                }
                drop(f);
                let flags = Some(RenameFlags::ATOMIC | RenameFlags::NATIVE);
                let rename = || sftp.rename(tmp_path, Path::new(&p), flags);
                if let Err(e) = rename() {
                    if stat_opt(sftp, &p)?.is_some() {
                        // Another writer stored the same content-addressed object meanwhile.
                        let _ = sftp.unlink(tmp_path);
                        return Ok(());
                    }
                    if stat_opt(sftp, parent(&p))?.is_some() {
                        return Err(Fail::Ssh(e));
                    }
                    mkdir_all(sftp, parent(&p))?;
                    rename()?;
                }
                Ok(())
            })();
            if let Err(e) = &result
                && !e.fatal()
            {
                let _ = sftp.unlink(tmp_path);
            }
            result
        })
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<()> {
        let p = self.path(kind, name)?;
        if kind == FileKind::Pack {
            for c in self.state().idle.iter_mut() {
                c.handles.retain(|(n, _, _)| n != name);
            }
        }
        let mut retry = false;
        self.with("remove", &p, |c| {
            c.handles.retain(|(n, _, _)| n != name);
            match c.sftp.unlink(Path::new(&p)) {
                // The first attempt's connection died after the server had removed it.
                Err(e) if retry && ssh_io(&e).kind() == ErrorKind::NotFound => Ok(()),
                r => {
                    retry = true;
                    Ok(r?)
                }
            }
        })
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        let p = self.path(kind, name)?;
        self.with("stat", &p, |c| {
            Ok(c.sftp.stat(Path::new(&p))?.size.unwrap_or(0))
        })
    }

    fn remove_stale_temporaries(&self) -> Result<u64> {
        let dir = self.join("tmp");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.with("list", &dir, |c| {
            let mut removed = 0;
            for (name, st) in list_dir(&c.sftp, &dir)?.unwrap_or_default() {
                let old = st
                    .mtime
                    .is_some_and(|m| now.saturating_sub(m) > STALE_AGE.as_secs());
                if st.is_file() && old {
                    match c.sftp.unlink(Path::new(&format!("{dir}/{name}"))) {
                        Ok(()) => removed += 1,
                        Err(e) => {
                            let f = Fail::Ssh(e);
                            if !is_not_found(&f) {
                                return Err(f);
                            }
                        }
                    }
                }
            }
            Ok(removed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(user: Option<&str>, host: &str, port: Option<u16>, path: &str) -> SftpLocation {
        SftpLocation {
            user: user.map(str::to_string),
            host: host.into(),
            port,
            path: path.into(),
        }
    }

    #[test]
    fn scp_style() {
        let p = SftpLocation::parse;
        assert_eq!(
            p("sftp:alice@backup.example:/srv/repo").unwrap(),
            loc(Some("alice"), "backup.example", None, "/srv/repo")
        );
        assert_eq!(
            p("sftp:alice@backup.example:repos/db/").unwrap(),
            loc(Some("alice"), "backup.example", None, "repos/db")
        );
        assert_eq!(p("sftp:host:/r").unwrap(), loc(None, "host", None, "/r"));
        assert_eq!(
            p("sftp:bob@[::1]:/r").unwrap(),
            loc(Some("bob"), "::1", None, "/r")
        );
        // Colons and '@' in the path are part of the path.
        assert_eq!(
            p("sftp:u@h:/a@b").unwrap(),
            loc(Some("u"), "h", None, "/a@b")
        );
        assert_eq!(
            p("sftp:u@h:/a:b").unwrap(),
            loc(Some("u"), "h", None, "/a:b")
        );
        assert_eq!(p("sftp:u@h:/").unwrap(), loc(Some("u"), "h", None, "/"));
    }

    #[test]
    fn url_style() {
        let p = SftpLocation::parse;
        assert_eq!(
            p("sftp://alice@backup.example:2222//srv/repo").unwrap(),
            loc(Some("alice"), "backup.example", Some(2222), "/srv/repo")
        );
        assert_eq!(
            p("sftp://alice@backup.example/repo").unwrap(),
            loc(Some("alice"), "backup.example", None, "repo")
        );
        assert_eq!(
            p("sftp://u@[::1]:22//r/").unwrap(),
            loc(Some("u"), "::1", Some(22), "/r")
        );
        assert_eq!(
            p("sftp://127.0.0.1//r").unwrap(),
            loc(None, "127.0.0.1", None, "/r")
        );
    }

    #[test]
    fn invalid() {
        for bad in [
            "sftp:",
            "sftp:host",
            "sftp:u@host:",
            "sftp:@host:/r",
            "sftp:u@:/r",
            "sftp://u@host",
            "sftp://u@host/",
            "sftp://u@host:0//r",
            "sftp://u@host:70000//r",
            "sftp://u@host:x//r",
            "sftp://u@[::1//r",
            "sftp:u@[::1:/r",
            "/local/path",
        ] {
            let e = SftpLocation::parse(bad).expect_err(bad);
            assert!(
                matches!(e, Error::InvalidInput(_)),
                "{bad}: unexpected error {e:?}"
            );
        }
    }

    #[test]
    fn error_kinds() {
        let e = |c| ssh_io(&ssh2::Error::from_errno(c)).kind();
        assert_eq!(e(ErrorCode::SFTP(FX_NO_SUCH_FILE)), ErrorKind::NotFound);
        assert_eq!(
            e(ErrorCode::SFTP(FX_PERMISSION_DENIED)),
            ErrorKind::PermissionDenied
        );
        assert_eq!(
            ssh_io(&ssh2::Error::from_errno(ErrorCode::SFTP(
                FX_NO_SPACE_ON_FILESYSTEM
            )))
            .raw_os_error(),
            Some(libc::ENOSPC)
        );
        assert_eq!(e(ErrorCode::Session(-9)), ErrorKind::TimedOut);
        // The same codes, as a file handle's Write reports them.
        let via_write = |c| {
            let io: io::Error = ssh2::Error::from_errno(ErrorCode::SFTP(c)).into();
            Fail::from(io)
        };
        let full = via_write(FX_NO_SPACE_ON_FILESYSTEM);
        assert!(!full.fatal());
        assert_eq!(full.into_io().raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(
            via_write(FX_PERMISSION_DENIED).into_io().kind(),
            ErrorKind::PermissionDenied
        );
        let lost: io::Error = ssh2::Error::from_errno(ErrorCode::Session(-43)).into();
        assert!(Fail::from(lost).fatal());
    }
}
