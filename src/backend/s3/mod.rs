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
//!
//! With object lock ([`ObjectLock`], repo-format.md §1a) every write but a lock's carries the
//! lock mode, its retain-until date and a Content-MD5; a removal is a plain `DELETE`, which in
//! a versioned bucket only hides the object behind a delete marker, and [`Backend::purge_hidden`]
//! removes hidden versions for good once their lock has ended.

mod conn;
mod location;

use std::io::{self, ErrorKind};
use std::sync::RwLock;

use jiff::Timestamp;
use rusty_s3::Credentials;

use super::objlock::{parse_s3_date, s3_date};
use super::{Backend, FileKind, ObjectLock, Purged, Secret};
use crate::{Error, Result};
pub use conn::MAX_LIST_PAGE;
use conn::{Client, Failure, READ_LIMIT};
pub use location::{S3Location, parse_location};

/// Settings of the S3 backend that do not come from the location.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// The access key id (required).
    pub access_key_id: Option<String>,
    /// The secret access key (required).
    pub secret_access_key: Option<Secret>,
    /// A session token, for temporary credentials.
    pub session_token: Option<Secret>,
    /// The bucket's region.
    pub region: String,
    /// Keys asked for per listing request, 1 to [`MAX_LIST_PAGE`].
    pub list_page: usize,
}

impl Default for S3Options {
    /// No credentials, region `us-east-1`, full listing pages.
    fn default() -> Self {
        S3Options {
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            region: "us-east-1".into(),
            list_page: MAX_LIST_PAGE,
        }
    }
}

/// One version of an object in a versioned bucket ([`S3Backend::versions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    /// The version id the server gave it.
    pub id: String,
    /// Whether it is the current version (what a read gets, unless a delete marker).
    pub latest: bool,
    /// Its size in bytes (0 for a delete marker).
    pub size: u64,
    /// Whether it is a delete marker (what a removal writes over a locked object).
    pub delete_marker: bool,
}

/// A repository in an S3 bucket.
pub struct S3Backend {
    location: String,
    prefix: String,
    client: Client,
    /// The object lock writes carry (see [`Backend::set_object_lock`]).
    lock: RwLock<Option<ObjectLock>>,
}

impl S3Backend {
    /// Opens the backend for `location` (the whole `s3:...` string).
    pub fn open(location: &str, opts: &S3Options) -> Result<S3Backend> {
        let rest = location.strip_prefix("s3:").unwrap_or(location);
        let loc = parse_location(rest)?;
        let (Some(key), Some(secret)) = (&opts.access_key_id, &opts.secret_access_key) else {
            return Err(Error::InvalidInput(format!(
                "no S3 credentials for {location}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )));
        };
        let credentials = match &opts.session_token {
            Some(token) => Credentials::new_with_token(key, secret.expose(), token.expose()),
            None => Credentials::new(key, secret.expose()),
        };
        let client = Client::new(&loc, credentials, &opts.region, opts.list_page)
            .map_err(|e| Error::InvalidInput(format!("invalid S3 location {location}: {e}")))?;
        Ok(S3Backend {
            location: location.to_string(),
            prefix: loc.prefix,
            client,
            lock: RwLock::new(None),
        })
    }

    fn object_lock(&self) -> Option<ObjectLock> {
        *self.lock.read().expect("object lock setting")
    }

    /// The stored versions of an object and the delete markers over them (a bucket with
    /// versioning, as Object Lock requires), newest first where the server says which is
    /// current; for inspection and recovery.
    pub fn versions(&self, kind: FileKind, name: &str) -> Result<Vec<ObjectVersion>> {
        let key = self.key(kind, name)?;
        let mut out: Vec<ObjectVersion> = self
            .client
            .list_versions(&key)
            .map_err(|f| self.err("list", &key, f))?
            .into_iter()
            .filter(|v| v.key == key)
            .map(|v| ObjectVersion {
                id: v.version_id,
                latest: v.is_latest,
                size: v.size,
                delete_marker: v.delete_marker,
            })
            .collect();
        out.sort_by_key(|v| std::cmp::Reverse(v.latest));
        Ok(out)
    }

    /// Removes one version of an object (or a delete marker) for good; S3 refuses while the
    /// version is locked.
    pub fn remove_version(&self, kind: FileKind, name: &str, version: &str) -> Result<()> {
        let key = self.key(kind, name)?;
        self.client
            .delete_version(&key, version)
            .map_err(|f| self.err("remove", &key, f))
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
        f.into_error(op, self.display(key))
    }
}

impl Backend for S3Backend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn exists(&self) -> Result<bool> {
        let key = format!("{}config", self.prefix);
        match self.client.head(&key) {
            Ok(_) => Ok(true),
            // No such key, or no such bucket.
            Err(f) if f.is_not_found() => Ok(false),
            Err(f) => Err(self.err("stat", &key, f)),
        }
    }

    fn create(&self) -> Result<()> {
        let bucket_key = String::new();
        match self.client.head_bucket() {
            Ok(()) if self.object_lock().is_some() => {
                // An existing bucket must have Object Lock already.
                let enabled = self
                    .client
                    .object_lock_enabled()
                    .map_err(|f| self.err("create", &bucket_key, f))?;
                return if enabled {
                    Ok(())
                } else {
                    Err(Error::InvalidInput(format!(
                        "{}: the bucket exists without Object Lock; enable it on the bucket, or let `init --object-lock` create a new bucket",
                        self.location
                    )))
                };
            }
            Ok(()) => return Ok(()),
            Err(f) if f.is_not_found() => {}
            // Credentials that may not probe the bucket may still create it; otherwise the
            // creation below reports the refusal.
            Err(Failure::Status { .. }) => {}
            Err(f) => return Err(self.err("create", &bucket_key, f)),
        }
        self.client
            .create_bucket(self.object_lock().is_some())
            .map_err(|f| self.err("create", &bucket_key, f))
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        if kind == FileKind::Config {
            let key = format!("{}config", self.prefix);
            return match self.client.head(&key) {
                Ok(size) => Ok(vec![("config".into(), size)]),
                Err(f) if f.is_not_found() => Ok(vec![]),
                Err(f) => Err(self.err("stat", &key, f)),
            };
        }
        let prefix = format!("{}{}/", self.prefix, kind.dir().unwrap_or_default());
        let mut out: Vec<(String, u64)> = self
            .client
            .list_keys(&prefix)
            .map_err(|f| self.err("list", &prefix, f))?
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
            .client
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
            let size = self
                .client
                .head(&key)
                .map_err(|f| self.err("stat", &key, f))?;
            return if offset <= size {
                Ok(Vec::new())
            } else {
                Err(short(0))
            };
        }
        // One byte more than asked reveals a server that sends too much.
        let reply = self
            .client
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
        // Locks are never locked: they are removed when their holder is done.
        let lock = self
            .object_lock()
            .filter(|_| kind != FileKind::Lock)
            .map(|l| (l.mode.s3_name(), s3_date(l.until(Timestamp::now()))));
        self.client
            .put(&key, data, lock.as_ref().map(|(m, u)| (*m, u.as_str())))
            .map_err(|f| self.err("write", &key, f))
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<()> {
        let key = self.key(kind, name)?;
        self.client
            .delete(&key)
            .map_err(|f| self.err("remove", &key, f))
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        let key = self.key(kind, name)?;
        self.client
            .head(&key)
            .map_err(|f| self.err("stat", &key, f))
    }

    fn set_object_lock(&self, lock: Option<ObjectLock>) -> Result<()> {
        *self.lock.write().expect("object lock setting") = lock;
        Ok(())
    }

    fn retention(&self, kind: FileKind, name: &str) -> Result<Option<Timestamp>> {
        let key = self.key(kind, name)?;
        let until = self
            .client
            .retain_until(&key, None)
            .map_err(|f| self.err("stat", &key, f))?;
        until.as_deref().map(parse_s3_date).transpose()
    }

    fn extend_retention(&self, kind: FileKind, name: &str, until: Timestamp) -> Result<()> {
        let key = self.key(kind, name)?;
        let Some(lock) = self.object_lock() else {
            return Err(Error::InvalidInput(format!(
                "{}: the repository has no object lock",
                self.display(&key)
            )));
        };
        self.client
            .put_retention(&key, lock.mode.s3_name(), &s3_date(until))
            .map_err(|f| self.err("lock", &key, f))
    }

    fn purge_hidden(&self) -> Result<Purged> {
        purge_hidden(self)
    }
}

/// [`Backend::purge_hidden`] for S3: lists every version below the prefix; of each key, the
/// versions that are not current (hidden by a delete marker or by a later version) are removed
/// for good once unlocked, and delete markers once nothing is left behind them.
fn purge_hidden(b: &S3Backend) -> Result<Purged> {
    let mut versions = b
        .client
        .list_versions(&b.prefix)
        .map_err(|f| b.err("list", &b.prefix, f))?;
    // Per key, latest first (the listing's order is not relied on).
    versions.sort_by(|a, c| a.key.cmp(&c.key).then(c.is_latest.cmp(&a.is_latest)));
    let now = Timestamp::now();
    let mut out = Purged::default();
    let mut i = 0;
    while i < versions.len() {
        let key = versions[i].key.clone();
        let group_end = versions[i..]
            .iter()
            .position(|v| v.key != key)
            .map_or(versions.len(), |n| i + n);
        let group = &versions[i..group_end];
        i = group_end;
        let mut left = 0;
        let mut markers = Vec::new();
        for v in group {
            if v.delete_marker {
                markers.push(v);
                continue;
            }
            if v.is_latest {
                left += 1;
                continue;
            }
            let until = b
                .client
                .retain_until(&key, Some(&v.version_id))
                .map_err(|f| b.err("stat", &key, f))?
                .as_deref()
                .map(parse_s3_date)
                .transpose()?;
            match until {
                Some(u) if u > now => {
                    left += 1;
                    out.versions_locked += 1;
                    out.bytes_locked += v.size;
                    out.locked_until = out.locked_until.max(Some(u));
                }
                _ => {
                    b.client
                        .delete_version(&key, &v.version_id)
                        .map_err(|f| b.err("remove", &key, f))?;
                    out.versions_removed += 1;
                    out.bytes_freed += v.size;
                }
            }
        }
        if left == 0 {
            for m in markers {
                b.client
                    .delete_version(&key, &m.version_id)
                    .map_err(|f| b.err("remove", &key, f))?;
                out.versions_removed += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::*;
    use crate::backend::{Retry, RetryOptions};
    use conn::xml_field;

    fn options() -> S3Options {
        S3Options {
            access_key_id: Some("k".into()),
            secret_access_key: Some(Secret::new("s")),
            ..S3Options::default()
        }
    }

    #[test]
    fn keys_mirror_the_local_layout() {
        let b = S3Backend::open("s3:http://127.0.0.1:9/bkt/pre", &options()).unwrap();
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

    const ATTEMPTS: u32 = 5;

    /// The backend for a bucket on `port`, in the retry layer with a short back-off.
    fn backend_at(port: u16) -> Retry<S3Backend> {
        let location = format!("s3:http://127.0.0.1:{port}/bkt");
        let retry = RetryOptions {
            attempts: ATTEMPTS,
            backoff: Duration::from_millis(1),
        };
        Retry::new(S3Backend::open(&location, &options()).unwrap(), retry)
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
