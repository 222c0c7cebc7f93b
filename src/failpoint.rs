//! Test-only crash points: with `HYDRABACKUP_FAILPOINT=<name>[:<n>]` the process kills itself
//! with SIGKILL the n-th time (default first) it reaches that point, like `kill -9` would.
//! Integration tests use this to prove crash safety at exact instants without timing races.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

/// Marks a crash point named `name`; does nothing unless the environment selects it.
pub fn hit(name: &str) {
    let spec = SPEC.get_or_init(|| {
        let v = std::env::var("HYDRABACKUP_FAILPOINT").ok()?;
        let (n, count) = match v.split_once(':') {
            Some((n, c)) => (n.to_string(), c.parse().unwrap_or(1)),
            None => (v, 1),
        };
        Some((n, count))
    });
    if let Some((n, count)) = spec
        && n == name
        && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *count
    {
        // SAFETY: kill(2) with our own pid and a valid signal number has no memory-safety
        // preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
