//! The S3 transport: signed requests over one reused connection pool, and what an answer or
//! its absence means.

use std::io::{self, ErrorKind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use instant_xml::FromXml;
use rusty_s3::actions::{
    CreateBucket, DeleteObject, GetObject, HeadBucket, HeadObject, ListObjectsV2, PutObject,
    S3Action,
};
use rusty_s3::{Bucket, Credentials, UrlStyle};

use super::location::S3Location;
use crate::Error;
use crate::backend::http::{status_is_transient, transport_is_transient};

/// How long a signed request stays valid (S3 checks it when the request arrives).
const SIGNATURE_VALIDITY: Duration = Duration::from_secs(3600);
/// Keys asked for per `ListObjectsV2` page at most (the S3 maximum).
pub const MAX_LIST_PAGE: usize = 1000;
/// Largest whole-object read accepted (guards memory against a misbehaving server).
pub(super) const READ_LIMIT: u64 = 16 << 30;
/// Largest error body read to extract the S3 error code and message.
const ERROR_BODY_LIMIT: u64 = 64 << 10;

/// A bucket on a server, with the credentials and connections to reach it.
pub(super) struct Client {
    bucket: Bucket,
    credentials: Credentials,
    agent: ureq::Agent,
    list_page: usize,
    /// Cleared when the server rejects `If-None-Match` on `PUT` (it then gets plain `PUT`s).
    conditional_put: AtomicBool,
}

/// Why a request failed, before it becomes an [`Error`].
pub(super) enum Failure {
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
    /// Whether the server says there is no such object (or bucket).
    pub(super) fn is_not_found(&self) -> bool {
        matches!(self, Failure::Status { status: 404, .. })
    }

    /// Whether trying again may help: server errors, throttling and dropped connections.
    fn is_transient(&self) -> bool {
        match self {
            Failure::Status { status, .. } => status_is_transient(*status),
            Failure::Transport(e) => transport_is_transient(e),
            Failure::Answer(_) => false,
        }
    }

    /// The backend error for this failure of `op` on `name`.
    pub(super) fn into_error(self, op: &'static str, name: String) -> Error {
        let transient = self.is_transient();
        Error::Backend {
            op,
            name,
            source: self.into_io(),
            transient,
        }
    }

    pub(super) fn into_io(self) -> io::Error {
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
pub(super) fn xml_field(body: &str, tag: &str) -> String {
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
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) content_length: Option<u64>,
    pub(super) content_range: Option<String>,
    /// `x-amz-object-lock-retain-until-date`: when the version's object lock ends.
    pub(super) retain_until: Option<String>,
    pub(super) body: Vec<u8>,
}

/// One entry of a `ListObjectVersions` answer: a stored version or a delete marker.
#[derive(Debug, Clone)]
pub(super) struct VersionEntry {
    pub(super) key: String,
    pub(super) version_id: String,
    pub(super) is_latest: bool,
    pub(super) size: u64,
    pub(super) delete_marker: bool,
}

/// One page of a `ListObjectVersions` answer (only the fields used).
#[derive(FromXml)]
#[xml(
    rename = "ListVersionsResult",
    ns("http://s3.amazonaws.com/doc/2006-03-01/")
)]
struct VersionsPage {
    versions: Vec<VersionXml>,
    markers: Vec<DeleteMarkerXml>,
    #[xml(rename = "IsTruncated")]
    is_truncated: Option<bool>,
    #[xml(rename = "NextKeyMarker")]
    next_key_marker: Option<String>,
    #[xml(rename = "NextVersionIdMarker")]
    next_version_id_marker: Option<String>,
}

/// A stored version.
#[derive(FromXml)]
#[xml(rename = "Version", ns("http://s3.amazonaws.com/doc/2006-03-01/"))]
struct VersionXml {
    #[xml(rename = "Key")]
    key: String,
    #[xml(rename = "VersionId")]
    version_id: String,
    #[xml(rename = "IsLatest")]
    is_latest: Option<bool>,
    #[xml(rename = "Size")]
    size: Option<u64>,
}

/// A delete marker.
#[derive(FromXml)]
#[xml(rename = "DeleteMarker", ns("http://s3.amazonaws.com/doc/2006-03-01/"))]
struct DeleteMarkerXml {
    #[xml(rename = "Key")]
    key: String,
    #[xml(rename = "VersionId")]
    version_id: String,
    #[xml(rename = "IsLatest")]
    is_latest: Option<bool>,
}

/// The request to send: method and body (the URL is signed separately).
#[derive(Clone, Copy)]
enum Call<'a> {
    Get {
        range: Option<(u64, u64)>,
        limit: u64,
    },
    Head,
    Put {
        body: &'a [u8],
        /// Extra headers, signed with the URL.
        headers: &'a [(&'static str, String)],
    },
    Delete,
}

/// The headers of an object-lock `PUT`: mode, retain-until date and the body's Content-MD5,
/// which S3 requires on every request that sets a lock.
fn lock_headers(body: &[u8], mode: &str, until: &str) -> Vec<(&'static str, String)> {
    use base64::Engine as _;
    use md5::Digest as _;
    let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body));
    vec![
        ("x-amz-object-lock-mode", mode.to_string()),
        ("x-amz-object-lock-retain-until-date", until.to_string()),
        ("content-md5", md5),
    ]
}

impl Client {
    /// A client for the bucket of `loc`; the error says what is wrong with the location.
    pub(super) fn new(
        loc: &S3Location,
        credentials: Credentials,
        region: &str,
        list_page: usize,
    ) -> Result<Client, String> {
        let endpoint = url::Url::parse(&loc.endpoint).map_err(|e| e.to_string())?;
        let bucket = Bucket::new(
            endpoint,
            UrlStyle::Path,
            loc.bucket.clone(),
            region.to_string(),
        )
        .map_err(|e| e.to_string())?;
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_per_read(Some(Duration::from_secs(120)))
            .timeout_per_write(Some(Duration::from_secs(120)))
            .max_idle_connections_per_host(16)
            .user_agent(concat!("hydrabackup/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Client {
            bucket,
            credentials,
            agent: ureq::Agent::new_with_config(config),
            list_page: list_page.clamp(1, MAX_LIST_PAGE),
            conditional_put: AtomicBool::new(true),
        })
    }

    /// Sends one request to the signed `url`.
    fn send(&self, call: Call<'_>, url: url::Url) -> Result<Reply, Failure> {
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
            Call::Put { body, headers } => {
                let mut r = self.agent.put(url);
                for (name, value) in headers {
                    r = r.header(*name, value.as_str());
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
        let retain_until = resp
            .headers()
            .get("x-amz-object-lock-retain-until-date")
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
            retain_until,
            body,
        })
    }

    /// `HEAD` of an object: its size.
    pub(super) fn head(&self, key: &str) -> Result<u64, Failure> {
        let url =
            HeadObject::new(&self.bucket, Some(&self.credentials), key).sign(SIGNATURE_VALIDITY);
        let reply = self.send(Call::Head, url)?;
        reply.content_length.ok_or_else(|| {
            Failure::Answer(io::Error::new(
                ErrorKind::InvalidData,
                "the S3 server sent no Content-Length",
            ))
        })
    }

    /// `GET` of an object or a range of it.
    pub(super) fn get(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
        limit: u64,
    ) -> Result<Reply, Failure> {
        let url =
            GetObject::new(&self.bucket, Some(&self.credentials), key).sign(SIGNATURE_VALIDITY);
        self.send(Call::Get { range, limit }, url)
    }

    /// `DELETE` of an object.
    pub(super) fn delete(&self, key: &str) -> Result<(), Failure> {
        let url =
            DeleteObject::new(&self.bucket, Some(&self.credentials), key).sign(SIGNATURE_VALIDITY);
        self.send(Call::Delete, url).map(|_| ())
    }

    /// Whether the bucket exists (`HEAD` of the bucket).
    pub(super) fn head_bucket(&self) -> Result<(), Failure> {
        let url = HeadBucket::new(&self.bucket, Some(&self.credentials)).sign(SIGNATURE_VALIDITY);
        self.send(Call::Head, url).map(|_| ())
    }

    /// Creates the bucket, in the region of the client; with `object_lock`, with S3 Object
    /// Lock enabled (which also turns on versioning).
    pub(super) fn create_bucket(&self, object_lock: bool) -> Result<(), Failure> {
        let region = self.bucket.region();
        let body = if region == "us-east-1" {
            String::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
            )
        };
        let mut action = CreateBucket::new(&self.bucket, &self.credentials);
        let mut headers = Vec::new();
        if object_lock {
            action
                .headers_mut()
                .insert("x-amz-bucket-object-lock-enabled", "true");
            headers.push(("x-amz-bucket-object-lock-enabled", "true".to_string()));
        }
        let url = action.sign(SIGNATURE_VALIDITY);
        let put = Call::Put {
            body: body.as_bytes(),
            headers: &headers,
        };
        match self.send(put, url) {
            Err(Failure::Status { code, .. }) if code == "BucketAlreadyOwnedByYou" => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Every key below `prefix` with its size, over as many pages as the server needs.
    pub(super) fn list_keys(&self, prefix: &str) -> Result<Vec<(String, u64)>, Failure> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut a = ListObjectsV2::new(&self.bucket, Some(&self.credentials));
            a.with_prefix(prefix);
            a.with_max_keys(self.list_page);
            if let Some(t) = &token {
                a.with_continuation_token(t.as_str());
            }
            let get = Call::Get {
                range: None,
                limit: READ_LIMIT,
            };
            let reply = self.send(get, a.sign(SIGNATURE_VALIDITY))?;
            let text = String::from_utf8_lossy(&reply.body);
            let page: ListPage = instant_xml::from_str(&text).map_err(|e| {
                Failure::Answer(io::Error::new(
                    ErrorKind::InvalidData,
                    format!("the S3 server sent an unreadable listing: {e}"),
                ))
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
                        return Err(Failure::Answer(io::Error::new(
                            ErrorKind::InvalidData,
                            "the S3 server repeated a continuation token",
                        )));
                    }
                    token = Some(next);
                }
                _ => return Ok(out),
            }
        }
    }

    /// `PUT` of an object that must not replace an existing one where the server can tell;
    /// with `lock` (S3 mode name, retain-until date) the object is locked.
    pub(super) fn put(
        &self,
        key: &str,
        data: &[u8],
        lock: Option<(&str, &str)>,
    ) -> Result<(), Failure> {
        let conditional = self.conditional_put.load(Ordering::Relaxed);
        let send_put = |if_none_match: bool| {
            let mut headers =
                lock.map_or_else(Vec::new, |(mode, until)| lock_headers(data, mode, until));
            if if_none_match {
                headers.push(("if-none-match", "*".to_string()));
            }
            let mut a = PutObject::new(&self.bucket, Some(&self.credentials), key);
            for (name, value) in &headers {
                a.headers_mut().insert(*name, value.clone());
            }
            self.send(
                Call::Put {
                    body: data,
                    headers: &headers,
                },
                a.sign(SIGNATURE_VALIDITY),
            )
        };
        match send_put(conditional) {
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
                send_put(false).map(|_| ())
            }
            Err(f) => Err(f),
        }
    }

    /// Whether the bucket has S3 Object Lock enabled (`GET ?object-lock`).
    pub(super) fn object_lock_enabled(&self) -> Result<bool, Failure> {
        let mut a = GetObject::new(&self.bucket, Some(&self.credentials), "");
        a.query_mut().insert("object-lock", "");
        let get = Call::Get {
            range: None,
            limit: ERROR_BODY_LIMIT,
        };
        match self.send(get, a.sign(SIGNATURE_VALIDITY)) {
            Ok(reply) => {
                let text = String::from_utf8_lossy(&reply.body);
                Ok(xml_field(&text, "ObjectLockEnabled") == "Enabled")
            }
            Err(Failure::Status {
                status: 404, code, ..
            }) if code == "ObjectLockConfigurationNotFoundError" => Ok(false),
            Err(f) => Err(f),
        }
    }

    /// The retain-until date of an object's current version, or of `version` (`HEAD`).
    pub(super) fn retain_until(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> Result<Option<String>, Failure> {
        let mut a = HeadObject::new(&self.bucket, Some(&self.credentials), key);
        if let Some(v) = version {
            a.query_mut().insert("versionId", v);
        }
        Ok(self
            .send(Call::Head, a.sign(SIGNATURE_VALIDITY))?
            .retain_until)
    }

    /// Sets the retention of an object's current version (`PUT ?retention`).
    pub(super) fn put_retention(&self, key: &str, mode: &str, until: &str) -> Result<(), Failure> {
        use base64::Engine as _;
        use md5::Digest as _;
        let body = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{mode}</Mode>\
             <RetainUntilDate>{until}</RetainUntilDate></Retention>"
        );
        let md5 =
            base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body.as_bytes()));
        let headers = [("content-md5", md5)];
        let mut a = PutObject::new(&self.bucket, Some(&self.credentials), key);
        a.query_mut().insert("retention", "");
        a.headers_mut().insert("content-md5", headers[0].1.clone());
        let put = Call::Put {
            body: body.as_bytes(),
            headers: &headers,
        };
        self.send(put, a.sign(SIGNATURE_VALIDITY)).map(|_| ())
    }

    /// `DELETE` of one version of an object (or of a delete marker): removes it for good.
    pub(super) fn delete_version(&self, key: &str, version: &str) -> Result<(), Failure> {
        let mut a = DeleteObject::new(&self.bucket, Some(&self.credentials), key);
        a.query_mut().insert("versionId", version);
        self.send(Call::Delete, a.sign(SIGNATURE_VALIDITY))
            .map(|_| ())
    }

    /// Every version and delete marker below `prefix` (`GET ?versions`), over all pages.
    pub(super) fn list_versions(&self, prefix: &str) -> Result<Vec<VersionEntry>, Failure> {
        let mut out = Vec::new();
        let mut marker: Option<(String, String)> = None;
        loop {
            let mut a = GetObject::new(&self.bucket, Some(&self.credentials), "");
            a.query_mut().insert("versions", "");
            a.query_mut().insert("prefix", prefix);
            a.query_mut().insert("max-keys", self.list_page.to_string());
            if let Some((k, v)) = &marker {
                a.query_mut().insert("key-marker", k.clone());
                a.query_mut().insert("version-id-marker", v.clone());
            }
            let get = Call::Get {
                range: None,
                limit: READ_LIMIT,
            };
            let reply = self.send(get, a.sign(SIGNATURE_VALIDITY))?;
            let text = String::from_utf8_lossy(&reply.body);
            let page: VersionsPage = instant_xml::from_str(&text).map_err(|e| {
                Failure::Answer(io::Error::new(
                    ErrorKind::InvalidData,
                    format!("the S3 server sent an unreadable version listing: {e}"),
                ))
            })?;
            out.extend(page.versions.into_iter().map(|v| VersionEntry {
                key: v.key,
                version_id: v.version_id,
                is_latest: v.is_latest.unwrap_or(false),
                size: v.size.unwrap_or(0),
                delete_marker: false,
            }));
            out.extend(page.markers.into_iter().map(|m| VersionEntry {
                key: m.key,
                version_id: m.version_id,
                is_latest: m.is_latest.unwrap_or(false),
                size: 0,
                delete_marker: true,
            }));
            let next = match (page.next_key_marker, page.next_version_id_marker) {
                (Some(k), Some(v)) if page.is_truncated == Some(true) => (k, v),
                _ => return Ok(out),
            };
            if marker.as_ref() == Some(&next) {
                return Err(Failure::Answer(io::Error::new(
                    ErrorKind::InvalidData,
                    "the S3 server repeated a version listing marker",
                )));
            }
            marker = Some(next);
        }
    }
}
