//! What the HTTP backends (REST and S3, both over `ureq`) share: which failures are worth
//! repeating, and the error for an answer that does not fit the request.

use std::io::{self, ErrorKind};

use crate::Error;

/// Whether a request that got no usable answer may succeed when sent again: the connection
/// dropped, stalled or timed out, or the answer broke off. A refused connection or an unknown
/// host is not (nothing listens there; repeating only delays the message).
pub(super) fn transport_is_transient(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Timeout(_) | ureq::Error::Protocol(_) | ureq::Error::BodyStalled => true,
        ureq::Error::Io(io) => io_is_transient(io),
        _ => false,
    }
}

/// Whether an I/O error on an open connection says it broke rather than that the request was
/// refused.
pub(super) fn io_is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof
            | ErrorKind::TimedOut
            | ErrorKind::Interrupted
    )
}

/// Whether an HTTP status says the server may answer differently later: a time-out,
/// throttling, or an internal, gateway or availability failure. (507, a full disk, is not.)
pub(super) fn status_is_transient(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// A backend error with an `io::Error` of `kind` saying `msg`.
pub(super) fn error(
    op: &'static str,
    name: String,
    kind: ErrorKind,
    msg: String,
    transient: bool,
) -> Error {
    Error::Backend {
        op,
        name,
        source: io::Error::new(kind, msg),
        transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_answers_are_worth_repeating() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(status_is_transient(s), "{s}");
        }
        // Refusals, a missing object, an unsupported request, a full disk: final.
        for s in [400, 401, 403, 404, 405, 416, 501, 507] {
            assert!(!status_is_transient(s), "{s}");
        }
        let io = |k| ureq::Error::Io(io::Error::new(k, "x"));
        assert!(transport_is_transient(&io(ErrorKind::ConnectionReset)));
        assert!(transport_is_transient(&io(ErrorKind::UnexpectedEof)));
        assert!(!transport_is_transient(&io(ErrorKind::ConnectionRefused)));
        assert!(!transport_is_transient(&ureq::Error::HostNotFound));
        assert!(!transport_is_transient(&ureq::Error::ConnectionFailed));
    }
}
