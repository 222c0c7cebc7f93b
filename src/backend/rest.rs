//! The REST backend: a repository served by `hydrabackup serve` (or any server speaking
//! restic's REST protocol), at `rest:http(s)://[USER:PASSWORD@]HOST:PORT/REPO`.
//!
//! Credentials come from the URL or from [`RestOptions`]; a server with a self-signed
//! certificate is trusted through [`RestOptions::ca_cert`] (a PEM file), otherwise the usual web
//! roots apply. Dropped or timed-out connections and 408, 429 and 5xx answers (but 507, a full
//! disk) are transient (see [`super::Retry`]).

use std::io::{self, ErrorKind};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

use super::http::{error as backend_err, status_is_transient, transport_is_transient};
use super::{Backend, FileKind, Secret};
use crate::{Error, Result};

/// Largest object read in one response.
const MAX_READ: u64 = (1 << 30) + (16 << 20);

/// Settings of the REST backend that do not come from the location.
#[derive(Debug, Clone, Default)]
pub struct RestOptions {
    /// User and password, used when the URL names none.
    pub credentials: Option<(String, Secret)>,
    /// A PEM file of certificates to trust instead of the web roots.
    pub ca_cert: Option<PathBuf>,
}

/// A repository behind a REST server.
pub struct RestBackend {
    base: String,
    shown: String,
    auth: Option<Secret>,
    agent: ureq::Agent,
}

/// Splits `http(s)://[user[:password]@]host[:port]/path` into (base URL without credentials,
/// user, password).
fn parse(url: &str) -> Result<(String, Option<(String, String)>)> {
    let bad = || {
        Error::InvalidInput(format!(
            "bad REST location {:?}: use rest:https://[user:password@]host:port/repo",
            redact(url)
        ))
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    if scheme != "http" && scheme != "https" {
        return Err(bad());
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (cred, host) = match authority.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, authority),
    };
    if host.is_empty() || path.trim_matches('/').is_empty() {
        return Err(bad());
    }
    let cred = cred.map(|c| {
        let (u, p) = c.split_once(':').unwrap_or((c, ""));
        (percent_decode(u), percent_decode(p))
    });
    Ok((
        format!("{scheme}://{host}/{}", path.trim_matches('/')),
        cred,
    ))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The location with any password replaced by `***`, for messages.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(_)) => {
            let (cred, tail) = rest.rsplit_once('@').unwrap_or(("", rest));
            let user = cred.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{tail}")
        }
        _ => url.to_string(),
    }
}

fn kind_path(kind: FileKind) -> &'static str {
    kind.dir().unwrap_or("config")
}

impl RestBackend {
    /// A backend for `url` (after the `rest:` prefix).
    pub fn open(url: &str, opts: &RestOptions) -> Result<RestBackend> {
        let (base, cred) = parse(url)?;
        let cred = cred.or_else(|| {
            let (u, p) = opts.credentials.as_ref()?;
            Some((u.clone(), p.expose().to_string()))
        });
        let auth = cred.map(|(u, p)| {
            Secret::new(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            ))
        });
        let mut tls = TlsConfig::builder();
        if let Some(path) = &opts.ca_cert {
            let shown = path.display();
            let pem = std::fs::read(path).map_err(|e| {
                Error::InvalidInput(format!(
                    "cannot read the CA certificate {shown} (HYDRABACKUP_REST_CACERT): {e}"
                ))
            })?;
            let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(Error::InvalidInput(format!(
                    "the CA certificate file {shown} (HYDRABACKUP_REST_CACERT) holds no certificate"
                )));
            }
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_per_read(Some(Duration::from_secs(300)))
            .timeout_per_write(Some(Duration::from_secs(300)))
            .max_idle_connections_per_host(16)
            .tls_config(tls.build())
            .build()
            .into();
        Ok(RestBackend {
            shown: redact(&base),
            base,
            auth,
            agent,
        })
    }

    /// The URL of an object; a name that is not a plain token is refused before any request.
    fn url(&self, kind: FileKind, name: &str) -> Result<String> {
        super::check_name(name)?;
        Ok(match kind {
            FileKind::Config => format!("{}/config", self.base),
            _ => format!("{}/{}/{name}", self.base, kind_path(kind)),
        })
    }

    /// Runs a request, returning status, body and announced length. A failure to get an
    /// answer is an error here; a status is judged by [`RestBackend::check`].
    fn request(
        &self,
        op: &'static str,
        what: &str,
        send: &dyn Fn() -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(u16, Vec<u8>, Option<u64>)> {
        let mut resp = send().map_err(|e| self.net_err(op, what, e))?;
        let status = resp.status().as_u16();
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let length = header("content-length").and_then(|v| v.parse().ok());
        let error = header("x-error");
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_READ)
            .read_to_vec()
            .map_err(|e| self.net_err(op, what, e))?;
        let body = match error {
            // A HEAD answer has no body: its message is in the header.
            Some(e) if body.is_empty() && status >= 400 => e.into_bytes(),
            _ => body,
        };
        Ok((status, body, length))
    }

    fn net_err(&self, op: &'static str, what: &str, e: ureq::Error) -> Error {
        let kind = match &e {
            ureq::Error::Io(io) => io.kind(),
            ureq::Error::Timeout(_) => ErrorKind::TimedOut,
            _ => ErrorKind::Other,
        };
        backend_err(
            op,
            format!("{what} at {}", self.shown),
            kind,
            e.to_string(),
            transport_is_transient(&e),
        )
    }

    /// Turns a non-success status into an error.
    fn check(&self, op: &'static str, what: &str, status: u16, body: &[u8]) -> Result<()> {
        if (200..300).contains(&status) {
            return Ok(());
        }
        let (kind, msg) = match status {
            401 => (
                ErrorKind::PermissionDenied,
                "the server refused the credentials (set them in the URL or HYDRABACKUP_REST_USER/PASSWORD)".to_string(),
            ),
            403 => (ErrorKind::PermissionDenied, format!("forbidden: {}", text(body))),
            404 => (ErrorKind::NotFound, "not found".to_string()),
            416 => (ErrorKind::UnexpectedEof, "range beyond the end of the object".to_string()),
            _ => (ErrorKind::Other, format!("server answered {status}: {}", text(body))),
        };
        let source = if status == 507 {
            io::Error::from_raw_os_error(libc::ENOSPC)
        } else {
            io::Error::new(kind, msg)
        };
        Err(Error::Backend {
            op,
            name: format!("{what} at {}", self.shown),
            source,
            transient: status_is_transient(status),
        })
    }

    fn with_auth<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.auth {
            Some(a) => r.header("authorization", a.expose()),
            None => r,
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .trim()
        .chars()
        .take(200)
        .collect()
}

impl Backend for RestBackend {
    fn location(&self) -> String {
        format!("rest:{}", self.shown)
    }

    fn exists(&self) -> Result<bool> {
        let url = self.url(FileKind::Config, "config")?;
        let (status, body, _) = self.request("check", "config", &|| {
            self.with_auth(self.agent.head(&url)).call()
        })?;
        match status {
            404 => Ok(false),
            _ => self.check("check", "config", status, &body).map(|_| true),
        }
    }

    fn create(&self) -> Result<()> {
        let url = format!("{}?create=true", self.base);
        let (status, body, _) = self.request("create", "repository", &|| {
            self.with_auth(self.agent.post(&url)).send_empty()
        })?;
        self.check("create", "repository", status, &body)
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        if kind == FileKind::Config {
            // The protocol lists folders only; the config is there or not.
            return match self.size(kind, "config") {
                Ok(size) => Ok(vec![("config".into(), size)]),
                Err(Error::Backend { source, .. }) if source.kind() == ErrorKind::NotFound => {
                    Ok(vec![])
                }
                Err(e) => Err(e),
            };
        }
        let url = format!("{}/{}/", self.base, kind_path(kind));
        let what = kind_path(kind);
        let (status, body, _) = self.request("list", what, &|| {
            self.with_auth(self.agent.get(&url)).call()
        })?;
        self.check("list", what, status, &body)?;
        #[derive(serde::Deserialize)]
        struct Item {
            name: String,
            size: u64,
        }
        let items: Vec<Item> = serde_json::from_slice(&body).map_err(|e| {
            backend_err(
                "list",
                what.into(),
                ErrorKind::InvalidData,
                e.to_string(),
                false,
            )
        })?;
        Ok(items.into_iter().map(|i| (i.name, i.size)).collect())
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let url = self.url(kind, name)?;
        let what = format!("{} {name}", kind.label());
        let (status, body, _) = self.request("read", &what, &|| {
            self.with_auth(self.agent.get(&url)).call()
        })?;
        self.check("read", &what, status, &body)?;
        Ok(body)
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let url = self.url(kind, name)?;
        let what = format!("{} {name}", kind.label());
        let beyond = || {
            backend_err(
                "read",
                what.clone(),
                ErrorKind::UnexpectedEof,
                format!("range {offset}+{len} beyond the end of the object"),
                false,
            )
        };
        let end = offset.checked_add(len).ok_or_else(beyond)?;
        if len == 0 {
            // No byte to ask for: the range only has to lie within the object.
            return match self.size(kind, name)? {
                size if offset <= size => Ok(Vec::new()),
                _ => Err(beyond()),
            };
        }
        let range = format!("bytes={offset}-{}", end - 1);
        let (status, body, _) = self.request("read", &what, &|| {
            self.with_auth(self.agent.get(&url))
                .header("range", &range)
                .call()
        })?;
        self.check("read", &what, status, &body)?;
        if body.len() as u64 != len {
            return Err(backend_err(
                "read",
                what,
                ErrorKind::UnexpectedEof,
                format!("asked for {len} bytes at {offset}, got {}", body.len()),
                false,
            ));
        }
        Ok(body)
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        let url = self.url(kind, name)?;
        let what = format!("{} {name}", kind.label());
        let (status, body, _) = self.request("write", &what, &|| {
            self.with_auth(self.agent.post(&url)).send(data)
        })?;
        self.check("write", &what, status, &body)
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<()> {
        let url = self.url(kind, name)?;
        let what = format!("{} {name}", kind.label());
        let (status, body, _) = self.request("remove", &what, &|| {
            self.with_auth(self.agent.delete(&url)).call()
        })?;
        self.check("remove", &what, status, &body)
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        let url = self.url(kind, name)?;
        let what = format!("{} {name}", kind.label());
        let (status, body, length) = self.request("stat", &what, &|| {
            self.with_auth(self.agent.head(&url)).call()
        })?;
        self.check("stat", &what, status, &body)?;
        length.ok_or_else(|| {
            backend_err(
                "stat",
                what,
                ErrorKind::InvalidData,
                "no Content-Length".into(),
                false,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let (base, cred) = parse("https://alice:p%40ss@backup.example:8000/repo1/").unwrap();
        assert_eq!(base, "https://backup.example:8000/repo1");
        assert_eq!(cred, Some(("alice".into(), "p@ss".into())));
        let (base, cred) = parse("http://127.0.0.1:9/r").unwrap();
        assert_eq!((base.as_str(), cred), ("http://127.0.0.1:9/r", None));
        for bad in ["ftp://h/r", "https://h", "https://h/", "h/r", "https:///r"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            redact("https://alice:secret@h:1/r"),
            "https://alice:***@h:1/r"
        );
        assert!(!format!("{}", parse("ftp://a:secret@h/r").unwrap_err()).contains("secret"));
    }
}
