//! The SFTP backend: a repository on a remote host reached over SSH (libssh2, through the `ssh2`
//! crate), with the same layout as the local backend.
//!
//! Locations:
//! - `sftp:USER@HOST:/abs/path` or `sftp:USER@HOST:relative/path` (relative to the login
//!   directory); the port is [`SftpOptions::port`] or 22.
//! - `sftp://USER@HOST[:PORT]/path`: as in restic, the slash after the host only separates, so
//!   `sftp://u@h/repo` is `repo` in the login directory and `sftp://u@h//srv/repo` is `/srv/repo`.
//!
//! `HOST` may be an IPv6 address in brackets. `USER@` may be left out; then
//! [`SftpOptions::user`] is used.
//!
//! Authentication: the key files and ssh-agent as [`SftpOptions`] says (the CLI's defaults are
//! in the README). The server's host key must be in the options' known_hosts file: an unknown
//! or changed key is refused, never trusted on first use. The client asks for the key types recorded for the host; with
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
//! threads need them and kept for reuse. A connection that fails at the transport level is
//! dropped and the failure is transient: the retry layer repeats the operation on a fresh one.

mod conn;
mod fail;
mod location;
mod pool;

use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ssh2::{ErrorCode, OpenFlags, OpenType, RenameFlags, Sftp};

use super::{Backend, FileKind, Secret};
use crate::{Error, Result};
use conn::Connector;
use fail::{FX_NO_SUCH_FILE, FX_NO_SUCH_PATH, FX_OP_UNSUPPORTED, Fail, full_disk, is_not_found};
pub use location::SftpLocation;
pub use pool::MAX_CONNECTIONS;
use pool::Pool;

/// Open pack handles kept per connection.
const HANDLES_PER_CONNECTION: usize = 16;
/// Temporaries older than this are taken to belong to dead writers.
const STALE_AGE: Duration = Duration::from_secs(24 * 3600);
/// Mode of created files and directories (the server's umask applies on top).
const FILE_MODE: i32 = 0o600;
const DIR_MODE: i32 = 0o700;

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

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
    pub passphrase: Option<Secret>,
    /// Ask ssh-agent (at `SSH_AUTH_SOCK`).
    pub use_agent: bool,
}

/// A repository on an SFTP server.
pub struct SftpBackend {
    location: String,
    root: String,
    pool: Pool,
}

impl std::fmt::Debug for SftpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpBackend")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl SftpBackend {
    /// Parses `location` and opens the first connection (so that an unreachable host, an
    /// unknown host key or a refused login is reported right away).
    pub fn open(location: &str, opts: &SftpOptions) -> Result<SftpBackend> {
        let loc = SftpLocation::parse(location)?;
        let port = loc.port.or(opts.port).unwrap_or(22);
        let user = loc.user.or_else(|| opts.user.clone()).ok_or_else(|| {
            Error::InvalidInput(format!(
                "no user name in SFTP location {location:?} and $USER is not set"
            ))
        })?;
        let peer = if loc.host.contains(':') {
            format!("{user}@[{}]:{port}", loc.host)
        } else {
            format!("{user}@{}:{port}", loc.host)
        };
        let connector = Connector {
            peer,
            user,
            host: loc.host,
            port,
            known_hosts: opts.known_hosts.clone(),
            keys: opts.keys.clone(),
            explicit_key: opts.keys_first,
            passphrase: opts.passphrase.clone(),
            use_agent: opts.use_agent,
        };
        let first = connector.connect()?;
        Ok(SftpBackend {
            location: location.to_string(),
            root: loc.path,
            pool: Pool::new(connector, first),
        })
    }

    /// How many connections are open now (idle or in use).
    pub fn connections(&self) -> usize {
        self.pool.open()
    }

    /// Runs `f` on a pooled connection (see [`Pool::with`]).
    fn with<T>(
        &self,
        op: &'static str,
        name: &str,
        f: impl FnOnce(&mut conn::Conn) -> Result<T, Fail>,
    ) -> Result<T> {
        self.pool.with(op, name, f)
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
        let host = crate::sys::hostname().replace('/', "_");
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
            self.pool.forget_handle(name);
        }
        self.with("remove", &p, |c| {
            c.handles.retain(|(n, _, _)| n != name);
            Ok(c.sftp.unlink(Path::new(&p))?)
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
