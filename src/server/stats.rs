//! The REST server's counters, served as Prometheus metrics on `/metrics`: requests by method
//! and status, bytes received and sent, server errors and failed logins.

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::http::{Response, read_request};
use crate::metrics::Metrics;

/// Running totals since the server started.
#[derive(Debug, Default)]
pub struct ServerStats {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
    auth_failures: AtomicU64,
}

impl ServerStats {
    /// Counts one answered request: its method, status, and the body bytes in and out.
    pub fn request(&self, method: &str, status: u16, received: u64, sent: u64) {
        // Only the methods the protocol uses are labels: a client cannot add label values.
        let method = match method {
            "GET" | "HEAD" | "POST" | "DELETE" => method,
            _ => "other",
        };
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((method.to_string(), status))
            .or_default() += 1;
        self.bytes_received.fetch_add(received, Ordering::Relaxed);
        self.bytes_sent.fetch_add(sent, Ordering::Relaxed);
    }

    /// Counts a refused or slowed login.
    pub fn auth_failure(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut m = Metrics::labelled(&[("host", &crate::sys::hostname())]);
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut errors = 0;
        for ((method, status), n) in &requests {
            m.counter(
                "hydrabackup_server_requests_total",
                "Requests answered, by method and status.",
                &[("method", method), ("status", &status.to_string())],
                *n as f64,
            );
            if *status >= 500 {
                errors += n;
            }
        }
        let totals = [
            (
                "hydrabackup_server_errors_total",
                "Requests answered with a server error (5xx).",
                errors,
            ),
            (
                "hydrabackup_server_auth_failures_total",
                "Failed or throttled logins.",
                self.auth_failures.load(Ordering::Relaxed),
            ),
            (
                "hydrabackup_server_received_bytes_total",
                "Request body bytes stored.",
                self.bytes_received.load(Ordering::Relaxed),
            ),
            (
                "hydrabackup_server_sent_bytes_total",
                "Response body bytes sent.",
                self.bytes_sent.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in totals {
            m.counter(name, help, &[], v as f64);
        }
        m.render()
    }

    /// The `/metrics` answer.
    pub fn response(&self) -> Response {
        let mut r = Response::new(200, self.render().into_bytes());
        r.headers
            .push(("content-type", "text/plain; version=0.0.4".into()));
        r
    }
}

/// Serves `GET /metrics` without authentication on its own (plain HTTP) listener, one short
/// connection at a time, until the process ends.
pub fn serve_metrics(listener: TcpListener, stats: Arc<ServerStats>) {
    for conn in listener.incoming() {
        let Ok(mut tcp) = conn else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = tcp.set_write_timeout(Some(Duration::from_secs(5)));
        let Ok(clone) = tcp.try_clone() else {
            continue;
        };
        let mut r = BufReader::new(clone);
        let resp = match read_request(&mut r) {
            Ok(req) if req.method == "GET" && req.path == "/metrics" => stats.response(),
            Ok(_) => Response::text(404, "only GET /metrics is served here"),
            Err(_) => continue,
        };
        let _ = resp.write(&mut tcp, false, true);
        let _ = tcp.flush();
    }
}
