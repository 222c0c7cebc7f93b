//! The little HTTP/1.1 the REST server speaks: one request at a time per connection,
//! keep-alive, bodies by Content-Length only. Headers are parsed by `httparse`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};

/// Largest request head (request line and headers).
const MAX_HEAD: usize = 16 * 1024;

/// A parsed request.
#[derive(Debug)]
pub struct Request {
    /// GET, HEAD, POST, DELETE, ...
    pub method: String,
    /// The path, percent-decoding not applied (object names are plain ASCII).
    pub path: String,
    /// The query string, without `?`.
    pub query: String,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Whether the client asked to close the connection after this request.
    pub close: bool,
}

impl Request {
    /// The first header of that (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The declared body length (0 without one).
    pub fn content_length(&self) -> Result<u64, &'static str> {
        match self.header("content-length") {
            None => Ok(0),
            Some(v) => v.trim().parse().map_err(|_| "bad Content-Length"),
        }
    }
}

/// What went wrong reading a request.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection between requests.
    Closed,
    /// The request cannot be understood (answer 400 and close).
    Bad(&'static str),
    /// The connection failed.
    Io(io::Error),
}

/// Reads one request head from `r`.
pub fn read_request<R: Read>(r: &mut BufReader<R>) -> Result<Request, ReadError> {
    let mut head: Vec<u8> = Vec::new();
    loop {
        let before = head.len();
        let room = (MAX_HEAD + 1 - before) as u64;
        let n = r
            .by_ref()
            .take(room)
            .read_until(b'\n', &mut head)
            .map_err(ReadError::Io)?;
        if n == 0 {
            return if head.is_empty() {
                Err(ReadError::Closed)
            } else {
                Err(ReadError::Bad("connection closed inside a request"))
            };
        }
        if head.len() > MAX_HEAD {
            return Err(ReadError::Bad("request head too large"));
        }
        if matches!(&head[before..], b"\r\n" | b"\n") {
            if before == 0 {
                head.clear(); // stray empty line between requests
                continue;
            }
            break;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(ReadError::Bad("malformed request")),
    }
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let version_10 = req.version == Some(0);
    let connection = headers
        .iter()
        .find(|(n, _)| n == "connection")
        .map(|(_, v)| v.to_ascii_lowercase());
    let close = match connection.as_deref() {
        Some("close") => true,
        Some("keep-alive") => false,
        _ => version_10,
    };
    if headers.iter().any(|(n, _)| n == "transfer-encoding") {
        return Err(ReadError::Bad(
            "chunked bodies are not supported: send Content-Length",
        ));
    }
    Ok(Request {
        method: req.method.unwrap_or("").to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        close,
    })
}

/// A response to send.
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body (for HEAD, only its length is sent).
    pub body: Body,
    /// Content-Length to announce instead of the body's (HEAD of an object).
    pub length: Option<u64>,
}

/// The body of a response.
pub enum Body {
    /// Bytes in memory (short answers).
    Bytes(Vec<u8>),
    /// `len` bytes of a file from `offset`, streamed (objects).
    File {
        /// The open file.
        file: File,
        /// Where the body starts.
        offset: u64,
        /// How many bytes it has.
        len: u64,
    },
}

impl Body {
    /// Its length in bytes.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }
}

/// Bytes copied at a time from a file to the connection.
const COPY_BUF: usize = 64 * 1024;

impl Response {
    /// A response with a body.
    pub fn new(status: u16, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Bytes(body),
            length: None,
        }
    }

    /// A response whose body is `len` bytes of `file` from `offset`.
    pub fn file(status: u16, file: File, offset: u64, len: u64) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Body::File { file, offset, len },
            length: None,
        }
    }

    /// A plain-text response (errors).
    pub fn text(status: u16, msg: &str) -> Response {
        let mut r = Response::new(status, format!("{msg}\n").into_bytes());
        r.headers.push(("content-type", "text/plain".into()));
        // Also as a header: answers to HEAD carry no body.
        r.headers.push(("x-error", msg.replace(['\r', '\n'], " ")));
        r
    }

    /// Writes the response; `head_only` leaves out the body.
    pub fn write<W: Write>(&self, w: &mut W, head_only: bool, close: bool) -> io::Result<()> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        let len = self.length.unwrap_or(self.body.len());
        out.push_str(&format!("content-length: {len}\r\n"));
        for (n, v) in &self.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        if close {
            out.push_str("connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        match (&self.body, head_only) {
            (_, true) => w.write_all(&out)?,
            (Body::Bytes(b), false) => {
                out.extend_from_slice(b);
                w.write_all(&out)?;
            }
            (Body::File { file, offset, len }, false) => {
                w.write_all(&out)?;
                copy_file(file, *offset, *len, w)?;
            }
        }
        w.flush()
    }
}

/// Writes `len` bytes of `file` from `offset` to `w`, a buffer at a time.
fn copy_file<W: Write>(file: &File, offset: u64, len: u64, w: &mut W) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; COPY_BUF.min(len as usize)];
    let mut done = 0;
    while done < len {
        let n = buf.len().min((len - done) as usize);
        file.read_exact_at(&mut buf[..n], offset + done)?;
        w.write_all(&buf[..n])?;
        done += n as u64;
    }
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        _ => "Status",
    }
}

/// Parses `bytes=START-END` (END inclusive, or open) into (offset, length).
pub fn parse_range(v: &str) -> Option<(u64, Option<u64>)> {
    let spec = v.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    if b.trim().is_empty() {
        return Some((start, None));
    }
    let end: u64 = b.trim().parse().ok()?;
    (end >= start).then(|| (start, Some(end - start + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<(Request, Vec<u8>), ReadError> {
        let mut r = BufReader::with_capacity(7, raw);
        let req = read_request(&mut r)?;
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        Ok((req, rest))
    }

    #[test]
    fn a_request_head_is_split_from_its_body() {
        let (req, rest) =
            parse(b"POST /repo/data/ab?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
                .unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/repo/data/ab");
        assert_eq!(req.query, "x=1");
        assert_eq!(req.content_length(), Ok(5));
        assert!(!req.close);
        assert_eq!(rest, b"hello");
    }

    #[test]
    fn bad_requests_are_refused() {
        assert!(matches!(parse(b""), Err(ReadError::Closed)));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\n"),
            Err(ReadError::Bad(_))
        ));
        assert!(matches!(
            parse(b"\x00\x01garbage\r\n\r\n"),
            Err(ReadError::Bad(_))
        ));
        assert!(matches!(
            parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(ReadError::Bad(_))
        ));
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(matches!(parse(huge.as_bytes()), Err(ReadError::Bad(_))));
        let (req, _) = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(req.close);
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9"), Some((0, Some(10))));
        assert_eq!(parse_range("bytes=5-"), Some((5, None)));
        assert_eq!(parse_range("bytes=9-5"), None);
        assert_eq!(parse_range("items=1-2"), None);
    }
}
