//! The S3 backend: a repository under a bucket (and optional key prefix) of Amazon S3 or any
//! S3-compatible server (MinIO, Ceph RGW, Garage, ...), addressed path-style.
//!
//! Keys mirror the local layout below the prefix: `config`, `keys/<id>`, `data/<2 hex>/<id>`,
//! `index/<id>`, `snapshots/<id>`, `locks/<id>`. Requests are signed with SigV4 query-string
//! signatures ([`rusty_s3`]) and sent over one reused blocking connection pool ([`ureq`]).
//!
//! Writes are single `PUT`s, which S3 makes atomic and durable before it answers. They carry
//! `If-None-Match: *`, so a server that supports conditional writes (AWS, MinIO) keeps an
//! existing object; a server that ignores the header replaces it with the same bytes, which is
//! harmless because every name but the lock names is the hash of the content, and lock names
//! are random. No `HEAD` is spent before a write.

use std::io::{self, ErrorKind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use instant_xml::FromXml;
use rusty_s3::actions::{
    CreateBucket, DeleteObject, GetObject, HeadBucket, HeadObject, ListObjectsV2, PutObject,
    S3Action,
};
use rusty_s3::{Bucket, Credentials, UrlStyle};

use super::{Backend, FileKind};
use crate::{Error, Result};

/// How long a signed request stays valid (S3 checks it when the request arrives).
const SIGNATURE_VALIDITY: Duration = Duration::from_secs(3600);
/// Attempts for a request that fails with a server error or a dropped connection.
const ATTEMPTS: u32 = 5;
/// First back-off delay; doubled after each failed attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Keys asked for per `ListObjectsV2` page (the S3 maximum).
const LIST_PAGE: usize = 1000;
/// Largest whole-object read accepted (guards memory against a misbehaving server).
const READ_LIMIT: u64 = 16 << 30;
/// Largest error body read to extract the S3 error code and message.
const ERROR_BODY_LIMIT: u64 = 64 << 10;

/// Environment variable that sets the `ListObjectsV2` page size (tests force small pages).
pub const LIST_PAGE_ENV: &str = "HYDRABACKUP_S3_LIST_PAGE";

/// A parsed `s3:` location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The endpoint, e.g. `https://s3.eu-central-1.amazonaws.com` (no path).
    pub endpoint: String,
    /// The bucket name.
    pub bucket: String,
    /// The key prefix: empty, or ending with `/`.
    pub prefix: String,
}

/// Parses the part of a location after `s3:`: `http(s)://HOST[:PORT]/BUCKET[/PREFIX]`. Without
/// a scheme (`HOST/BUCKET[/PREFIX]`, restic's form), HTTPS is used.
pub fn parse_location(rest: &str) -> Result<S3Location> {
    let bad = |why: &str| {
        Error::InvalidInput(format!(
            "invalid S3 location s3:{rest}: {why} (expected s3:https://HOST[:PORT]/BUCKET[/PREFIX])"
        ))
    };
    let (scheme, after) = match rest.split_once("://") {
        Some((s, a)) => (s.to_ascii_lowercase(), a),
        None => ("https".to_string(), rest),
    };
    if scheme != "http" && scheme != "https" {
        return Err(bad(&format!("unsupported scheme {scheme:?}")));
    }
    let (host, path) = after.split_once('/').unwrap_or((after, ""));
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if host.contains('@') {
        return Err(bad(
            "credentials do not belong in the location; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        ));
    }
    if host.contains(['?', '#']) || path.contains(['?', '#']) {
        return Err(bad("query strings and fragments are not allowed"));
    }
    let mut parts = path.split('/').filter(|p| !p.is_empty());
    let bucket = parts.next().ok_or_else(|| bad("no bucket"))?;
    let valid_bucket = bucket.len() >= 3
        && bucket.len() <= 63
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if !valid_bucket {
        return Err(bad(&format!(
            "{bucket:?} is not a valid bucket name (3-63 lower-case letters, digits, '-', '.')"
        )));
    }
    let mut prefix = String::new();
    for p in parts {
        if p == "." || p == ".." {
            return Err(bad("'.' and '..' are not allowed in the prefix"));
        }
        prefix.push_str(p);
        prefix.push('/');
    }
    let endpoint = format!("{scheme}://{host}");
    url::Url::parse(&endpoint).map_err(|e| bad(&format!("bad endpoint {endpoint}: {e}")))?;
    Ok(S3Location {
        endpoint,
        bucket: bucket.to_string(),
        prefix,
    })
}

/// A repository in an S3 bucket.
pub struct S3Backend {
    location: String,
    bucket: Bucket,
    credentials: Credentials,
    prefix: String,
    agent: ureq::Agent,
    list_page: usize,
    /// Cleared when the server rejects `If-None-Match` on `PUT` (it then gets plain `PUT`s).
    conditional_put: AtomicBool,
    /// First retry delay (doubled after each failed attempt).
    backoff: Duration,
}

/// Why a request failed, before it becomes an [`Error`].
enum Failure {
    /// The server answered with a non-success status.
    Status {
        status: u16,
        code: String,
        message: String,
    },
    /// No usable answer (connection, TLS, timeout, malformed response).
    Transport(ureq::Error),
    /// An answer that does not fit the request (short, misplaced or without a size).
    Answer(io::Error),
}

impl Failure {
    fn is_not_found(&self) -> bool {
        matches!(self, Failure::Status { status: 404, .. })
    }

    /// Whether trying again may help: server errors, throttling and dropped connections.
    fn is_transient(&self) -> bool {
        match self {
            Failure::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            Failure::Transport(e) => match e {
                ureq::Error::Timeout(_) | ureq::Error::Protocol(_) | ureq::Error::BodyStalled => {
                    true
                }
                ureq::Error::Io(io) => matches!(
                    io.kind(),
                    ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::BrokenPipe
                        | ErrorKind::UnexpectedEof
                        | ErrorKind::TimedOut
                        | ErrorKind::Interrupted
                ),
                _ => false,
            },
            Failure::Answer(_) => false,
        }
    }

    fn into_io(self) -> io::Error {
        match self {
            Failure::Status {
                status,
                code,
                message,
            } => {
                let mut detail = format!("HTTP {status}");
                for part in [code, message] {
                    if !part.is_empty() {
                        detail.push(' ');
                        detail.push_str(&part);
                    }
                }
                let (kind, what, hint) = match status {
                    404 => (ErrorKind::NotFound, "not found", ""),
                    401 | 403 => (
                        ErrorKind::PermissionDenied,
                        "access denied: the server refused the credentials",
                        "; check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket's permissions",
                    ),
                    416 => (
                        ErrorKind::UnexpectedEof,
                        "range beyond the end of the object",
                        "",
                    ),
                    301 | 302 | 307 | 308 => (
                        ErrorKind::Other,
                        "the server redirected the request",
                        "; wrong endpoint, or wrong region (set AWS_DEFAULT_REGION)?",
                    ),
                    _ => (ErrorKind::Other, "request failed", ""),
                };
                io::Error::new(kind, format!("{what} ({detail}){hint}"))
            }
            Failure::Transport(e) => transport_io(e),
            Failure::Answer(e) => e,
        }
    }
}

/// An io::Error of the right kind for a transport failure.
fn transport_io(e: ureq::Error) -> io::Error {
    match e {
        ureq::Error::Io(io) => {
            let kind = io.kind();
            io::Error::new(kind, format!("cannot reach the S3 server: {io}"))
        }
        ureq::Error::Timeout(t) => io::Error::new(
            ErrorKind::TimedOut,
            format!("the S3 server did not answer in time ({t})"),
        ),
        ureq::Error::HostNotFound => io::Error::new(
            ErrorKind::HostUnreachable,
            "cannot reach the S3 server: host not found",
        ),
        ureq::Error::ConnectionFailed => io::Error::new(
            ErrorKind::ConnectionRefused,
            "cannot reach the S3 server: connection failed",
        ),
        ureq::Error::BodyExceedsLimit(n) => io::Error::new(
            ErrorKind::InvalidData,
            format!("the S3 server sent more than the {n} bytes expected"),
        ),
        other => io::Error::other(format!("S3 request failed: {other}")),
    }
}

/// The text of the first `<tag>...</tag>` in an S3 XML error body.
fn xml_field(body: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    body.find(&open)
        .map(|i| &body[i + open.len()..])
        .and_then(|rest| rest.find(&close).map(|j| &rest[..j]))
        .map(|s| s.trim().chars().take(200).collect())
        .unwrap_or_default()
}

/// One page of a `ListObjectsV2` answer: only the fields used, all but the key optional
/// (servers differ in what they include).
#[derive(FromXml)]
#[xml(
    rename = "ListBucketResult",
    ns("http://s3.amazonaws.com/doc/2006-03-01/")
)]
struct ListPage {
    contents: Vec<ListEntry>,
    #[xml(rename = "NextContinuationToken")]
    next_continuation_token: Option<String>,
    #[xml(rename = "EncodingType")]
    encoding_type: Option<String>,
}

/// One listed object.
#[derive(FromXml)]
#[xml(rename = "Contents", ns("http://s3.amazonaws.com/doc/2006-03-01/"))]
struct ListEntry {
    #[xml(rename = "Key")]
    key: String,
    #[xml(rename = "Size")]
    size: Option<u64>,
}

/// A successful answer.
struct Reply {
    status: u16,
    content_length: Option<u64>,
    content_range: Option<String>,
    body: Vec<u8>,
}

/// The request to send: method and body. URLs are signed afresh for every attempt.
#[derive(Clone, Copy)]
enum Call<'a> {
    Get {
        range: Option<(u64, u64)>,
        limit: u64,
    },
    Head,
    Put {
        body: &'a [u8],
        if_none_match: bool,
    },
    Delete,
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl S3Backend {
    /// Opens the backend for `location` (the whole `s3:...` string), taking credentials from
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`, and the region from
    /// `AWS_DEFAULT_REGION` or `AWS_REGION` (default `us-east-1`).
    pub fn open(location: &str) -> Result<S3Backend> {
        let rest = location.strip_prefix("s3:").unwrap_or(location);
        let loc = parse_location(rest)?;
        let (Some(key), Some(secret)) = (
            env_nonempty("AWS_ACCESS_KEY_ID"),
            env_nonempty("AWS_SECRET_ACCESS_KEY"),
        ) else {
            return Err(Error::InvalidInput(format!(
                "no S3 credentials for {location}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )));
        };
        let credentials = match env_nonempty("AWS_SESSION_TOKEN") {
            Some(token) => Credentials::new_with_token(key, secret, token),
            None => Credentials::new(key, secret),
        };
        let region = env_nonempty("AWS_DEFAULT_REGION")
            .or_else(|| env_nonempty("AWS_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let list_page = match env_nonempty(LIST_PAGE_ENV) {
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=LIST_PAGE).contains(n))
                .ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "{LIST_PAGE_ENV}={v:?}: expected a number from 1 to {LIST_PAGE}"
                    ))
                })?,
            None => LIST_PAGE,
        };
        Self::new(location.to_string(), loc, credentials, &region, list_page)
    }

    /// A backend for a parsed location with explicit credentials and region.
    pub fn new(
        location: String,
        loc: S3Location,
        credentials: Credentials,
        region: &str,
        list_page: usize,
    ) -> Result<S3Backend> {
        let invalid =
            |e: String| Error::InvalidInput(format!("invalid S3 location {location}: {e}"));
        let endpoint = url::Url::parse(&loc.endpoint).map_err(|e| invalid(e.to_string()))?;
        let bucket = Bucket::new(endpoint, UrlStyle::Path, loc.bucket, region.to_string())
            .map_err(|e| invalid(e.to_string()))?;
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_per_read(Some(Duration::from_secs(120)))
            .timeout_per_write(Some(Duration::from_secs(120)))
            .max_idle_connections_per_host(16)
            .user_agent(concat!("hydrabackup/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(S3Backend {
            location,
            bucket,
            credentials,
            prefix: loc.prefix,
            agent: ureq::Agent::new_with_config(config),
            list_page: list_page.clamp(1, LIST_PAGE),
            conditional_put: AtomicBool::new(true),
            backoff: FIRST_BACKOFF,
        })
    }

    /// The object key of a file.
    fn key(&self, kind: FileKind, name: &str) -> Result<String> {
        Ok(format!(
            "{}{}",
            self.prefix,
            super::object_path(kind, name)?
        ))
    }

    /// The name used in messages for a key.
    fn display(&self, key: &str) -> String {
        let base = self.location.trim_end_matches('/');
        let rel = key.strip_prefix(&self.prefix).unwrap_or(key);
        format!("{base}/{rel}")
    }

    fn err(&self, op: &'static str, key: &str, f: Failure) -> Error {
        Error::Backend {
            op,
            name: self.display(key),
            source: f.into_io(),
        }
    }

    /// Sends one request (signed by `sign`), retrying transient failures with back-off.
    fn send(&self, call: Call<'_>, sign: &dyn Fn() -> url::Url) -> Result<Reply, Failure> {
        let mut delay = self.backoff;
        let mut attempt = 1;
        loop {
            match self.send_once(call, &sign()) {
                Err(f) if f.is_transient() && attempt < ATTEMPTS => {
                    tracing::debug!(attempt, "S3 request failed, retrying");
                    std::thread::sleep(delay);
                    delay = delay.saturating_mul(2);
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    fn send_once(&self, call: Call<'_>, url: &url::Url) -> Result<Reply, Failure> {
        let url = url.as_str();
        let sent = match call {
            Call::Get { range, .. } => {
                let mut r = self.agent.get(url);
                if let Some((offset, len)) = range {
                    let last = offset.saturating_add(len).saturating_sub(1);
                    r = r.header("Range", format!("bytes={offset}-{last}"));
                }
                r.call()
            }
            Call::Head => self.agent.head(url).call(),
            Call::Put {
                body,
                if_none_match,
            } => {
                let mut r = self.agent.put(url);
                if if_none_match {
                    r = r.header("If-None-Match", "*");
                }
                r.send(body)
            }
            Call::Delete => self.agent.delete(url).call(),
        };
        let mut resp = sent.map_err(Failure::Transport)?;
        let status = resp.status().as_u16();
        let content_length = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let content_range = resp
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if !(200..300).contains(&status) {
            let text = match call {
                Call::Head => String::new(),
                _ => resp
                    .body_mut()
                    .with_config()
                    .limit(ERROR_BODY_LIMIT)
                    .read_to_vec()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default(),
            };
            return Err(Failure::Status {
                status,
                code: xml_field(&text, "Code"),
                message: xml_field(&text, "Message"),
            });
        }
        let body = match call {
            Call::Get { limit, .. } => resp
                .body_mut()
                .with_config()
                .limit(limit)
                .read_to_vec()
                .map_err(Failure::Transport)?,
            _ => Vec::new(),
        };
        Ok(Reply {
            status,
            content_length,
            content_range,
            body,
        })
    }

    /// `HEAD` of an object: its size.
    fn head(&self, key: &str) -> Result<u64, Failure> {
        let reply = self.send(Call::Head, &|| {
            HeadObject::new(&self.bucket, Some(&self.credentials), key).sign(SIGNATURE_VALIDITY)
        })?;
        reply.content_length.ok_or_else(|| {
            Failure::Answer(io::Error::new(
                ErrorKind::InvalidData,
                "the S3 server sent no Content-Length",
            ))
        })
    }

    /// `GET` of an object or a range of it.
    fn get(&self, key: &str, range: Option<(u64, u64)>, limit: u64) -> Result<Reply, Failure> {
        self.send(Call::Get { range, limit }, &|| {
            GetObject::new(&self.bucket, Some(&self.credentials), key).sign(SIGNATURE_VALIDITY)
        })
    }

    /// Every key below `prefix` with its size, over as many pages as the server needs.
    fn list_keys(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let reply = self
                .send(
                    Call::Get {
                        range: None,
                        limit: READ_LIMIT,
                    },
                    &|| {
                        let mut a = ListObjectsV2::new(&self.bucket, Some(&self.credentials));
                        a.with_prefix(prefix);
                        a.with_max_keys(self.list_page);
                        if let Some(t) = &token {
                            a.with_continuation_token(t.as_str());
                        }
                        a.sign(SIGNATURE_VALIDITY)
                    },
                )
                .map_err(|f| self.err("list", prefix, f))?;
            let text = String::from_utf8_lossy(&reply.body);
            let page: ListPage = instant_xml::from_str(&text).map_err(|e| Error::Backend {
                op: "list",
                name: self.display(prefix),
                source: io::Error::new(
                    ErrorKind::InvalidData,
                    format!("the S3 server sent an unreadable listing: {e}"),
                ),
            })?;
            let url_encoded = page.encoding_type.as_deref() == Some("url");
            for c in page.contents {
                let key = if url_encoded {
                    match percent_encoding::percent_decode_str(&c.key).decode_utf8() {
                        Ok(k) => k.into_owned(),
                        Err(_) => continue,
                    }
                } else {
                    c.key
                };
                out.push((key, c.size.unwrap_or(0)));
            }
            match page.next_continuation_token {
                Some(next) if !next.is_empty() => {
                    if token.as_deref() == Some(next.as_str()) {
                        return Err(Error::Backend {
                            op: "list",
                            name: self.display(prefix),
                            source: io::Error::new(
                                ErrorKind::InvalidData,
                                "the S3 server repeated a continuation token",
                            ),
                        });
                    }
                    token = Some(next);
                }
                _ => return Ok(out),
            }
        }
    }

    fn put(&self, key: &str, data: &[u8]) -> Result<(), Failure> {
        let conditional = self.conditional_put.load(Ordering::Relaxed);
        let sign_put = |if_none_match: bool| {
            move || {
                let mut a = PutObject::new(&self.bucket, Some(&self.credentials), key);
                if if_none_match {
                    a.headers_mut().insert("if-none-match", "*");
                }
                a.sign(SIGNATURE_VALIDITY)
            }
        };
        let result = self.send(
            Call::Put {
                body: data,
                if_none_match: conditional,
            },
            &sign_put(conditional),
        );
        match result {
            Ok(_) => Ok(()),
            // The object exists (content-addressed: the same bytes), or a concurrent
            // conditional write of it is in progress.
            Err(Failure::Status { status: 412, .. }) if conditional => Ok(()),
            Err(Failure::Status {
                status: 409, code, ..
            }) if conditional && code == "ConditionalRequestConflict" => Ok(()),
            // A server without conditional writes: plain PUTs from now on.
            Err(Failure::Status { code, .. }) if conditional && code == "NotImplemented" => {
                self.conditional_put.store(false, Ordering::Relaxed);
                self.send(
                    Call::Put {
                        body: data,
                        if_none_match: false,
                    },
                    &sign_put(false),
                )
                .map(|_| ())
            }
            Err(f) => Err(f),
        }
    }
}

impl Backend for S3Backend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn exists(&self) -> Result<bool> {
        let key = format!("{}config", self.prefix);
        match self.head(&key) {
            Ok(_) => Ok(true),
            // No such key, or no such bucket.
            Err(f) if f.is_not_found() => Ok(false),
            Err(f) => Err(self.err("stat", &key, f)),
        }
    }

    fn create(&self) -> Result<()> {
        let bucket_key = String::new();
        let present = self.send(Call::Head, &|| {
            HeadBucket::new(&self.bucket, Some(&self.credentials)).sign(SIGNATURE_VALIDITY)
        });
        match present {
            Ok(_) => return Ok(()),
            Err(f) if f.is_not_found() => {}
            // Credentials that may not probe the bucket may still create it; otherwise the
            // creation below reports the refusal.
            Err(Failure::Status { .. }) => {}
            Err(f) => return Err(self.err("create", &bucket_key, f)),
        }
        let region = self.bucket.region();
        let body = if region == "us-east-1" {
            String::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
            )
        };
        let created = self.send(
            Call::Put {
                body: body.as_bytes(),
                if_none_match: false,
            },
            &|| CreateBucket::new(&self.bucket, &self.credentials).sign(SIGNATURE_VALIDITY),
        );
        match created {
            Ok(_) => Ok(()),
            Err(Failure::Status { code, .. }) if code == "BucketAlreadyOwnedByYou" => Ok(()),
            Err(f) => Err(self.err("create", &bucket_key, f)),
        }
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        if kind == FileKind::Config {
            let key = format!("{}config", self.prefix);
            return match self.head(&key) {
                Ok(size) => Ok(vec![("config".into(), size)]),
                Err(f) if f.is_not_found() => Ok(vec![]),
                Err(f) => Err(self.err("stat", &key, f)),
            };
        }
        let prefix = format!("{}{}/", self.prefix, kind.dir().unwrap_or_default());
        let mut out: Vec<(String, u64)> = self
            .list_keys(&prefix)?
            .into_iter()
            .filter_map(|(key, size)| {
                let rel = key.strip_prefix(&prefix)?;
                let name = match kind {
                    // `data/<2 hex>/<id>`
                    FileKind::Pack => {
                        let (dir, name) = rel.split_once('/')?;
                        (name.starts_with(dir) && dir.len() == 2).then_some(name)?
                    }
                    _ => rel,
                };
                super::check_name(name)
                    .is_ok()
                    .then(|| (name.to_string(), size))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let key = self.key(kind, name)?;
        let reply = self
            .get(&key, None, READ_LIMIT)
            .map_err(|f| self.err("read", &key, f))?;
        let expected = reply.content_length.unwrap_or(reply.body.len() as u64);
        if reply.status != 200 || expected != reply.body.len() as u64 {
            return Err(self.err(
                "read",
                &key,
                Failure::Answer(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!(
                        "got {} of {expected} bytes (HTTP {})",
                        reply.body.len(),
                        reply.status
                    ),
                )),
            ));
        }
        Ok(reply.body)
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let key = self.key(kind, name)?;
        let short = |got: u64| {
            self.err(
                "read",
                &key,
                Failure::Answer(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("range {offset}+{len}: got {got} bytes"),
                )),
            )
        };
        let Some(end) = offset.checked_add(len) else {
            return Err(short(0));
        };
        if len == 0 {
            let size = self.head(&key).map_err(|f| self.err("stat", &key, f))?;
            return if offset <= size {
                Ok(Vec::new())
            } else {
                Err(short(0))
            };
        }
        // One byte more than asked reveals a server that sends too much.
        let reply = self
            .get(&key, Some((offset, len)), len.saturating_add(1))
            .map_err(|f| self.err("read", &key, f))?;
        let mut body = reply.body;
        if reply.status == 206
            && let Some(range) = &reply.content_range
            && !range.starts_with(&format!("bytes {offset}-"))
        {
            return Err(self.err(
                "read",
                &key,
                Failure::Answer(io::Error::new(
                    ErrorKind::InvalidData,
                    format!("asked for bytes {offset}+{len}, the server sent {range:?}"),
                )),
            ));
        }
        if reply.status == 200 {
            // The server ignored the Range header and sent the whole object.
            if (body.len() as u64) < end {
                return Err(short(body.len() as u64));
            }
            body.truncate(end as usize);
            body.drain(..offset as usize);
        }
        if body.len() as u64 != len {
            return Err(short(body.len() as u64));
        }
        Ok(body)
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        let key = self.key(kind, name)?;
        self.put(&key, data).map_err(|f| self.err("write", &key, f))
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<()> {
        let key = self.key(kind, name)?;
        self.send(Call::Delete, &|| {
            DeleteObject::new(&self.bucket, Some(&self.credentials), &key).sign(SIGNATURE_VALIDITY)
        })
        .map(|_| ())
        .map_err(|f| self.err("remove", &key, f))
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        let key = self.key(kind, name)?;
        self.head(&key).map_err(|f| self.err("stat", &key, f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(endpoint: &str, bucket: &str, prefix: &str) -> S3Location {
        S3Location {
            endpoint: endpoint.into(),
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    #[test]
    fn parses_endpoint_bucket_and_prefix() {
        assert_eq!(
            parse_location("http://127.0.0.1:9000/backups").unwrap(),
            loc("http://127.0.0.1:9000", "backups", "")
        );
        assert_eq!(
            parse_location("https://s3.example.com/my-bucket/hyd/prod/").unwrap(),
            loc("https://s3.example.com", "my-bucket", "hyd/prod/")
        );
        assert_eq!(
            parse_location("HTTPS://minio.local:9000//bucket.one//a///b").unwrap(),
            loc("https://minio.local:9000", "bucket.one", "a/b/")
        );
        assert_eq!(
            parse_location("http://[::1]:9000/bkt/").unwrap(),
            loc("http://[::1]:9000", "bkt", "")
        );
    }

    #[test]
    fn without_scheme_means_https() {
        assert_eq!(
            parse_location("s3.amazonaws.com/bucket/prefix").unwrap(),
            loc("https://s3.amazonaws.com", "bucket", "prefix/")
        );
    }

    #[test]
    fn rejects_bad_locations() {
        for bad in [
            "",
            "http://",
            "http://host",
            "http://host/",
            "ftp://host/bucket",
            "http://user:pw@host/bucket",
            "http://host/Upper",
            "http://host/ab",
            "http://host/-bucket",
            "http://host/bucket_x",
            "http://host/bucket/../x",
            "http://host/bucket?x=1",
            "http://host:notaport/bucket",
        ] {
            let e = parse_location(bad).expect_err(bad);
            assert!(
                matches!(e, Error::InvalidInput(ref m) if m.contains("invalid S3 location")),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn keys_mirror_the_local_layout() {
        let b = S3Backend::new(
            "s3:http://127.0.0.1:9/bkt/pre".into(),
            loc("http://127.0.0.1:9", "bkt", "pre/"),
            Credentials::new("k", "s"),
            "us-east-1",
            1000,
        )
        .unwrap();
        assert_eq!(b.key(FileKind::Config, "config").unwrap(), "pre/config");
        assert_eq!(b.key(FileKind::Key, "ab12").unwrap(), "pre/keys/ab12");
        assert_eq!(b.key(FileKind::Pack, "ab12").unwrap(), "pre/data/ab/ab12");
        assert_eq!(b.key(FileKind::Index, "cd").unwrap(), "pre/index/cd");
        assert_eq!(b.key(FileKind::Snapshot, "ef").unwrap(), "pre/snapshots/ef");
        assert_eq!(b.key(FileKind::Lock, "01").unwrap(), "pre/locks/01");
        assert!(b.key(FileKind::Pack, "../x").is_err());
        assert_eq!(
            b.display("pre/data/ab/ab12"),
            "s3:http://127.0.0.1:9/bkt/pre/data/ab/ab12"
        );
    }

    #[test]
    fn error_fields_are_extracted_without_panicking() {
        let body = "<?xml version=\"1.0\"?><Error><Code>InvalidAccessKeyId</Code>\
                    <Message>The key does not exist</Message></Error>";
        assert_eq!(xml_field(body, "Code"), "InvalidAccessKeyId");
        assert_eq!(xml_field(body, "Message"), "The key does not exist");
        assert_eq!(xml_field("<Code>unterminated", "Code"), "");
        assert_eq!(xml_field("", "Code"), "");
        let io = Failure::Status {
            status: 403,
            code: "SignatureDoesNotMatch".into(),
            message: String::new(),
        }
        .into_io();
        assert_eq!(io.kind(), ErrorKind::PermissionDenied);
        assert!(io.to_string().contains("refused the credentials"), "{io}");
        assert_eq!(
            Failure::Status {
                status: 404,
                code: "NoSuchKey".into(),
                message: String::new()
            }
            .into_io()
            .kind(),
            ErrorKind::NotFound
        );
    }

    /// A loopback HTTP server that answers each request with the next canned response (the
    /// last one repeats) and counts the requests; returns its port and the counter.
    fn scripted_server(
        responses: Vec<&'static [u8]>,
    ) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                // Read the request head; the requests here have no body.
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        break;
                    }
                    line.clear();
                }
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_all(responses[n.min(responses.len() - 1)]);
            }
        });
        (port, count)
    }

    fn backend_at(port: u16) -> S3Backend {
        let location = format!("s3:http://127.0.0.1:{port}/bkt");
        S3Backend::new(
            location.clone(),
            parse_location(&location[3..]).unwrap(),
            Credentials::new("k", "s"),
            "us-east-1",
            1000,
        )
        .map(|mut b| {
            b.backoff = Duration::from_millis(1);
            b
        })
        .unwrap()
    }

    #[test]
    fn transient_server_errors_are_retried() {
        let (port, count) = scripted_server(vec![
            b"HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\nConnection: close\r\n\r\n",
        ]);
        let b = backend_at(port);
        assert_eq!(b.size(FileKind::Index, "ab").unwrap(), 42);
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn refusals_are_not_retried_and_persistent_errors_give_up() {
        let (port, count) = scripted_server(vec![
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ]);
        let e = backend_at(port).size(FileKind::Index, "ab").unwrap_err();
        assert!(
            matches!(e, Error::Backend { ref source, .. } if source.kind() == ErrorKind::PermissionDenied),
            "{e}"
        );
        assert_eq!(count.load(Ordering::SeqCst), 1);

        let (port, count) = scripted_server(vec![
            b"HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ]);
        let e = backend_at(port).exists().unwrap_err();
        assert!(e.to_string().contains("HTTP 503"), "{e}");
        assert_eq!(count.load(Ordering::SeqCst), ATTEMPTS as usize);
    }

    #[test]
    fn garbage_answers_are_errors_not_panics() {
        // (answer, whether a whole-object read must fail: a well-formed 200 with a body is a
        // valid object, which the layers above check against its name)
        for (i, (answer, read_fails)) in [
            (&b"hello\r\n\r\n"[..], true),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n<Lis",
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nnot xml at all",
                false,
            ),
            (
                b"HTTP/1.1 206 Partial\r\nContent-Range: bytes 7-9/100\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
                true,
            ),
            (
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 20\r\nConnection: close\r\n\r\n<Error><Code>NoSuchK",
                true,
            ),
            (b"", true),
        ]
        .into_iter()
        .enumerate()
        {
            let (port, _) = scripted_server(vec![answer]);
            let b = backend_at(port);
            assert!(b.list(FileKind::Snapshot).is_err(), "answer {i}");
            assert!(b.read_range(FileKind::Pack, "abcd", 0, 3).is_err(), "answer {i}");
            assert_eq!(b.read(FileKind::Key, "ab").is_err(), read_fails, "answer {i}");
        }
    }
}
