//! Test-only crash and hook points, each inert unless the environment selects it:
//! - `HYDRABACKUP_FAILPOINT=<name>[:<n>]`: the process kills itself with SIGKILL the n-th time
//!   (default first) it reaches crash point `name`, like `kill -9` would;
//! - `HYDRABACKUP_TEST_HOOK=<name>:<shell command>`: it runs the command (`sh -c`, with the path
//!   at hand in `HYDRABACKUP_HOOK_PATH`) and waits for it every time it reaches hook point `name`
//!   (a command that waits for the test pauses the process there);
//! - `HYDRABACKUP_FAULT=<name>`: the first time it reaches fault point `name` it flips one bit in
//!   the middle of the buffer at hand, as a memory fault would (the checks must catch it).
//!
//! Integration tests use these to act at exact instants (a kill, a file swapped between a walk
//! and an open) without timing races. Both exist only with the `test-hooks` cargo feature, which
//! `cargo test` turns on (a dev-dependency of the package on itself); a binary built without it
//! ignores these variables, so a shipped binary never kills itself or runs a command named by its
//! environment.

#[cfg(feature = "test-hooks")]
use std::sync::OnceLock;
#[cfg(feature = "test-hooks")]
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(feature = "test-hooks")]
static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
#[cfg(feature = "test-hooks")]
static HITS: AtomicU64 = AtomicU64::new(0);
#[cfg(feature = "test-hooks")]
static HOOK: OnceLock<Option<(String, String)>> = OnceLock::new();

/// Marks a crash point named `name`; does nothing unless the environment selects it.
#[cfg(feature = "test-hooks")]
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

/// Marks a hook point named `name` about to act on `path`; does nothing unless the environment
/// selects it.
#[cfg(feature = "test-hooks")]
pub fn hook(name: &str, path: &std::path::Path) {
    let spec = HOOK.get_or_init(|| {
        let v = std::env::var("HYDRABACKUP_TEST_HOOK").ok()?;
        let (n, cmd) = v.split_once(':')?;
        Some((n.to_string(), cmd.to_string()))
    });
    if let Some((n, cmd)) = spec
        && n == name
    {
        // A hook that cannot run is a broken test setup: say so where the test sees it.
        if let Err(e) = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .env("HYDRABACKUP_HOOK_PATH", path)
            .status()
        {
            eprintln!("hydrabackup: test hook {name} failed to run: {e}");
        }
    }
}

/// Marks a fault point named `name` where `buf` is in hand; does nothing unless the environment
/// selects it.
#[cfg(feature = "test-hooks")]
pub fn fault(name: &str, buf: &mut [u8]) {
    static FAULT: OnceLock<Option<String>> = OnceLock::new();
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if FAULT
        .get_or_init(|| std::env::var("HYDRABACKUP_FAULT").ok())
        .as_deref()
        == Some(name)
        && !buf.is_empty()
        && !DONE.swap(true, Ordering::SeqCst)
    {
        let mid = buf.len() / 2;
        buf[mid] ^= 0x08;
    }
}

/// Without the `test-hooks` feature a fault point does nothing.
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn fault(_name: &str, _buf: &mut [u8]) {}

/// Without the `test-hooks` feature a crash point does nothing.
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn hit(_name: &str) {}

/// Without the `test-hooks` feature a hook point does nothing.
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn hook(_name: &str, _path: &std::path::Path) {}
