//! `hydrabackup serve`: a REST server for repositories, so that backups can go to a machine
//! the client has no file access to, with TLS, HTTP Basic users, per-user repositories and an
//! append-only mode that refuses every deletion except of locks (a compromised client cannot
//! destroy existing backups).
//!
//! Each repository is a folder under the server's root, stored by the local backend (atomic,
//! fsynced writes; objects never replaced). The protocol follows restic's REST backend:
//!
//! | request | meaning |
//! |---|---|
//! | `POST /R?create=true` | create repository `R` |
//! | `HEAD`/`GET`/`POST /R/config` | the config object |
//! | `GET /R/T/` | list objects of type `T` (`keys`, `data`, `index`, `snapshots`, `locks`) as JSON `[{"name","size"}]` |
//! | `HEAD`/`GET`/`POST`/`DELETE /R/T/NAME` | one object; `GET` honours `Range: bytes=a-b` |
//!
//! A client cannot take the server down: a broken connection is that connection's error
//! (SIGPIPE is ignored by the `serve` command), bodies are streamed to and from files, idle and
//! slow clients give way ([`conn`]), an upload is kept only when its bytes hash to its name, and
//! nothing under the root is reached through a symlink ([`objects`]).

pub mod auth;
pub mod conn;
pub mod http;
pub mod objects;
pub mod stats;
pub mod throttle;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backend::{Backend, FileKind, LocalBackend, object_path};
use crate::{Error, Result};
use auth::Login;
use conn::{Conn, KEEP_ALIVE, Slot, Slots, Timed};
use http::{ReadError, Request, Response, parse_range, read_request};

/// Largest object accepted (packs are at most 1 GiB plus their header).
const MAX_BODY: u64 = (1 << 30) + (16 << 20);

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on (`host:port`; port 0 picks a free one).
    pub listen: String,
    /// Folder holding the repositories.
    pub root: PathBuf,
    /// PEM certificate chain and private key: serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Users file; `None` serves without authentication.
    pub users: Option<PathBuf>,
    /// Refuse deleting anything but locks.
    pub append_only: bool,
    /// Each user may only use the repository named like them.
    pub private_repos: bool,
    /// Connections served at once; as many more may wait for a slot, idle ones give way.
    pub max_connections: usize,
    /// Time for the TLS handshake and each request head, and the longest wait for a slot.
    pub request_timeout: Duration,
    /// Answer `GET /metrics` (Prometheus) on the main address, behind the same authentication.
    pub metrics: bool,
    /// Also answer `GET /metrics`, without authentication, on this separate plain-HTTP address.
    pub metrics_listen: Option<String>,
}

struct Ctx {
    opts: ServeOptions,
    users: Option<auth::Users>,
    repos: Mutex<HashMap<String, Arc<LocalBackend>>>,
    slots: Slots,
    stats: Arc<stats::ServerStats>,
}

/// Serves until the process is stopped; calls `ready` with the bound address (and that of the
/// separate metrics listener) first.
pub fn serve(opts: ServeOptions, ready: impl FnOnce(SocketAddr, Option<SocketAddr>)) -> Result<()> {
    let tls = match &opts.tls {
        Some((cert, key)) => Some(Arc::new(tls_config(cert, key)?)),
        None => None,
    };
    let users = opts.users.as_deref().map(auth::Users::load).transpose()?;
    std::fs::create_dir_all(&opts.root).map_err(|e| Error::io(&opts.root, e))?;
    // Temporary files of a server that died mid-write.
    if let Ok(rd) = std::fs::read_dir(&opts.root) {
        for e in rd.flatten() {
            let real_dir = e.file_type().is_ok_and(|t| t.is_dir());
            if real_dir && e.path().join("config").exists() {
                let _ = LocalBackend::new(e.path()).remove_stale_temporaries();
            }
        }
    }
    let listener = TcpListener::bind(&opts.listen).map_err(|e| Error::io(&opts.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io(&opts.listen, e))?;
    let stats = Arc::new(stats::ServerStats::default());
    let metrics_addr = match &opts.metrics_listen {
        Some(a) => {
            let l = TcpListener::bind(a).map_err(|e| Error::io(a, e))?;
            let bound = l.local_addr().map_err(|e| Error::io(a, e))?;
            let st = stats.clone();
            std::thread::Builder::new()
                .name("metrics".into())
                .spawn(move || stats::serve_metrics(l, st))
                .map_err(|e| Error::io(a, e))?;
            Some(bound)
        }
        None => None,
    };
    let ctx = Arc::new(Ctx {
        slots: Slots::new(opts.max_connections, opts.request_timeout),
        opts,
        users,
        repos: Mutex::new(HashMap::new()),
        stats,
    });
    ready(addr, metrics_addr);
    for conn in listener.incoming() {
        let Ok(tcp) = conn else {
            // Out of file descriptors or the like: let connections end before trying again.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        // Over the queue's bound the connection is closed unanswered.
        let Some(ticket) = ctx.slots.arrive(&tcp) else {
            continue;
        };
        let (c, tls) = (ctx.clone(), tls.clone());
        let spawned = std::thread::Builder::new().spawn(move || accepted(tcp, ticket, &c, tls));
        if spawned.is_err() {
            ctx.slots.withdraw(ticket);
        }
    }
    Ok(())
}

/// Serves a new connection once it has a slot, or answers 503 if none comes free in time.
fn accepted(tcp: TcpStream, ticket: u64, ctx: &Ctx, tls: Option<Arc<rustls::ServerConfig>>) {
    // First, so that the ticket leaves the queue whatever happens next.
    let slot = ctx.slots.admit(ticket);
    let peer = tcp
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let Ok(mut timed) = Timed::new(tcp) else {
        return;
    };
    // The handshake and the first request head share one deadline.
    timed.set_deadline(Some(Instant::now() + ctx.opts.request_timeout));
    match tls {
        Some(cfg) => {
            let Ok(tls) = rustls::ServerConnection::new(cfg) else {
                return;
            };
            let stream = rustls::StreamOwned::new(tls, timed);
            match slot {
                Some(slot) => connection(stream, ctx, &slot, peer),
                None => refuse(stream),
            }
        }
        None => match slot {
            Some(slot) => connection(timed, ctx, &slot, peer),
            None => refuse(timed),
        },
    }
}

/// Answers 503 to a connection that found no free slot (over TLS on a TLS server).
fn refuse<S: Conn>(stream: S) {
    let mut r = BufReader::with_capacity(16 * 1024, stream);
    // The request is read (within the deadline) so that the client is ready for the answer.
    let _ = read_request(&mut r);
    let mut resp = Response::text(503, "too many connections: try again later");
    resp.headers.push(("retry-after", "5".into()));
    if resp.write(r.get_mut(), false, true).is_ok() {
        r.get_mut().finish();
    }
}

fn tls_config(cert: &PathBuf, key: &PathBuf) -> Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |p: &PathBuf, e: String| Error::InvalidInput(format!("{}: {e}", p.display()));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, e.to_string()))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(cert, "no certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::InvalidInput(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::InvalidInput(format!("TLS certificate and key: {e}")))
}

/// Serves the requests of one connection.
fn connection<S: Conn>(stream: S, ctx: &Ctx, slot: &Slot, peer: IpAddr) {
    let mut r = BufReader::with_capacity(64 * 1024, stream);
    let mut first = true;
    loop {
        if !first {
            // Between requests the connection is idle: a waiting one may take its place.
            if !slot.idle() {
                return;
            }
            r.get_mut().set_deadline(Some(Instant::now() + KEEP_ALIVE));
            if !matches!(r.fill_buf(), Ok(b) if !b.is_empty()) {
                return;
            }
            let head_by = Instant::now() + ctx.opts.request_timeout;
            r.get_mut().set_deadline(Some(head_by));
        }
        first = false;
        let req = match read_request(&mut r) {
            Ok(req) => req,
            Err(ReadError::Bad(why)) => {
                let _ = Response::text(400, why).write(r.get_mut(), false, true);
                r.get_mut().finish();
                return;
            }
            Err(ReadError::Closed | ReadError::Io(_)) => return,
        };
        if !slot.busy() {
            return;
        }
        r.get_mut().set_deadline(None);
        let (resp, body_read) = ctx.respond(&req, &mut r, peer);
        // A body left unread cannot be skipped safely: close instead.
        let close = req.close || !body_read;
        let head_only = req.method == "HEAD";
        let received = match (req.method.as_str(), resp.status, body_read) {
            ("POST", 200, true) => req.content_length().unwrap_or(0),
            _ => 0,
        };
        let sent = if head_only { 0 } else { resp.body.len() };
        ctx.stats.request(&req.method, resp.status, received, sent);
        if resp.write(r.get_mut(), head_only, close).is_err() {
            return;
        }
        if close {
            r.get_mut().finish();
            return;
        }
    }
}

fn kind_of(segment: &str) -> Option<FileKind> {
    FileKind::from_dir(segment)
}

fn valid_repo_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && !n.starts_with('.')
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn error_response(e: &Error) -> Response {
    match e {
        Error::Backend { source, .. } | Error::Io { source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => Response::text(404, "not found"),
            _ if source.raw_os_error() == Some(libc::ENOSPC) => {
                Response::text(507, "no space left on the server")
            }
            _ => {
                tracing::warn!("storage error: {e}");
                Response::text(500, "storage error on the server")
            }
        },
        Error::InvalidInput(m) => Response::text(400, m),
        _ => {
            tracing::warn!("error: {e}");
            Response::text(500, "server error")
        }
    }
}

impl Ctx {
    fn backend(&self, repo: &str) -> Arc<LocalBackend> {
        self.repos
            .lock()
            .expect("repos")
            .entry(repo.to_string())
            .or_insert_with(|| Arc::new(LocalBackend::new(self.opts.root.join(repo))))
            .clone()
    }

    /// Answers one request from `peer`; the flag says whether its body (if any) was read.
    fn respond<R: Read>(&self, req: &Request, body: &mut R, peer: IpAddr) -> (Response, bool) {
        let len = match req.content_length() {
            Ok(l) => l,
            Err(m) => return (Response::text(400, m), false),
        };
        let no_body = len == 0;
        let user = match &self.users {
            None => None,
            Some(u) => match u.check(req.header("authorization"), peer) {
                Login::Passed(name) => Some(name),
                Login::Failed => {
                    self.stats.auth_failure();
                    let mut r = Response::text(401, "authentication required");
                    r.headers
                        .push(("www-authenticate", "Basic realm=\"hydrabackup\"".into()));
                    return (r, no_body);
                }
                Login::Slowed(wait) => {
                    self.stats.auth_failure();
                    let secs = wait.as_secs() + 1;
                    let msg = format!("too many failed logins: retry in {secs} s");
                    let mut r = Response::text(429, &msg);
                    r.headers.push(("retry-after", secs.to_string()));
                    return (r, no_body);
                }
            },
        };
        if self.opts.metrics && req.path == "/metrics" && req.method == "GET" {
            return (self.stats.response(), no_body);
        }
        let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
        let repo = parts[0];
        if !valid_repo_name(repo) {
            return (Response::text(400, "bad repository name"), no_body);
        }
        if self.opts.private_repos && user.as_deref() != Some(repo) {
            return (
                Response::text(403, "this repository belongs to another user"),
                no_body,
            );
        }
        let method = req.method.as_str();
        let (kind, name) = match parts[1..] {
            [] | [""] => {
                if method == "POST" && req.query.split('&').any(|q| q == "create=true") {
                    if let Some(r) = self.symlink_refusal(repo, "") {
                        return (r, no_body);
                    }
                    return (done(self.backend(repo).create()), no_body);
                }
                return (Response::text(405, "unsupported request"), no_body);
            }
            ["config"] => (FileKind::Config, "config"),
            [t, ""] | [t] => {
                let Some(kind) = kind_of(t) else {
                    return (Response::text(404, "unknown object type"), no_body);
                };
                if method != "GET" {
                    return (Response::text(405, "only GET lists objects"), no_body);
                }
                if let Some(r) = self.symlink_refusal(repo, t) {
                    return (r, no_body);
                }
                return (list(&*self.backend(repo), kind), no_body);
            }
            [t, name] => match kind_of(t) {
                Some(kind) => (kind, name),
                None => return (Response::text(404, "unknown object type"), no_body),
            },
            _ => return (Response::text(404, "no such path"), no_body),
        };
        let rel = match object_path(kind, name) {
            Ok(rel) => rel,
            Err(e) => return (error_response(&e), no_body),
        };
        if let Some(r) = self.symlink_refusal(repo, &rel) {
            return (r, no_body);
        }
        let backend = self.backend(repo);
        let repo_dir = self.opts.root.join(repo);
        match method {
            "HEAD" => match backend.size(kind, name) {
                Ok(size) => {
                    let mut r = Response::new(200, Vec::new());
                    r.length = Some(size);
                    (r, no_body)
                }
                Err(e) => (error_response(&e), no_body),
            },
            "GET" => (get(&repo_dir, kind, name, req), no_body),
            // The stored retention policy decides what a server-side `forget` deletes: a
            // client that may not delete must not be able to change it either.
            "POST" if self.opts.append_only && kind == FileKind::Policy => (
                Response::text(403, "append-only repository: the policy cannot be changed"),
                no_body,
            ),
            "POST" => match self.symlink_refusal(repo, crate::backend::TMP_DIR) {
                // Uploads pass through `tmp/`.
                Some(r) => (r, no_body),
                None => post(&backend, kind, name, body, len),
            },
            "DELETE" => {
                if self.opts.append_only && kind != FileKind::Lock {
                    return (
                        Response::text(403, "append-only repository: only locks may be deleted"),
                        no_body,
                    );
                }
                (done(backend.remove(kind, name)), no_body)
            }
            _ => (Response::text(405, "unsupported method"), no_body),
        }
    }

    /// A 403 when `rel` of `repo` passes through a symlink.
    fn symlink_refusal(&self, repo: &str, rel: &str) -> Option<Response> {
        objects::through_symlink(&self.opts.root, repo, rel).then(|| {
            tracing::warn!("refused a path through a symlink under the server's folder");
            Response::text(403, "the server does not follow symlinks")
        })
    }
}

/// Stores an uploaded object; the flag says whether the body was read whole and stored (else
/// the connection closes).
fn post<R: Read>(
    backend: &LocalBackend,
    kind: FileKind,
    name: &str,
    body: &mut R,
    len: u64,
) -> (Response, bool) {
    if len > MAX_BODY {
        return (Response::text(413, "object too large"), false);
    }
    if !objects::plausible_name(kind, name) {
        let why = "object names are the BLAKE3 hash of their bytes";
        return (Response::text(400, why), false);
    }
    let resp = match objects::store(backend, kind, name, body, len) {
        Ok(Ok(())) => return (Response::new(200, Vec::new()), true),
        Ok(Err(objects::Refused::Short)) => Response::text(400, "body shorter than Content-Length"),
        Ok(Err(objects::Refused::WrongName)) => Response::text(
            400,
            "object name is not the BLAKE3 hash of its bytes: refused",
        ),
        Err(e) => error_response(&e),
    };
    (resp, false)
}

fn done(r: Result<()>) -> Response {
    match r {
        Ok(()) => Response::new(200, Vec::new()),
        Err(e) => error_response(&e),
    }
}

fn list(backend: &dyn Backend, kind: FileKind) -> Response {
    match backend.list(kind) {
        Ok(items) => {
            let v: Vec<serde_json::Value> = items
                .into_iter()
                .map(|(name, size)| serde_json::json!({"name": name, "size": size}))
                .collect();
            let mut r = Response::new(200, serde_json::to_vec(&v).expect("JSON values serialize"));
            r.headers.push(("content-type", "application/json".into()));
            r
        }
        Err(e) => error_response(&e),
    }
}

fn get(repo_dir: &std::path::Path, kind: FileKind, name: &str, req: &Request) -> Response {
    let (file, size) = match objects::open(repo_dir, kind, name) {
        Ok(f) => f,
        Err(e) => return error_response(&e),
    };
    let Some(range) = req.header("range") else {
        return Response::file(200, file, 0, size);
    };
    let Some((offset, len)) = parse_range(range) else {
        return Response::text(416, "unsupported range");
    };
    let len = len.unwrap_or(size.saturating_sub(offset));
    if offset.checked_add(len).is_none_or(|end| end > size) || len == 0 {
        let mut r = Response::text(416, "range outside the object");
        r.headers.push(("content-range", format!("bytes */{size}")));
        return r;
    }
    let mut r = Response::file(206, file, offset, len);
    r.headers.push((
        "content-range",
        format!("bytes {offset}-{}/{size}", offset + len - 1),
    ));
    r
}
