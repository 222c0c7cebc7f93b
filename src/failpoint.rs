//! Test-only crash, hook and pause points, each inert unless the environment selects it:
//! - `HYDRABACKUP_FAILPOINT=<name>[:<n>]`: the process kills itself with SIGKILL the n-th time
//!   (default first) it reaches crash point `name`, like `kill -9` would;
//! - `HYDRABACKUP_TEST_HOOK=<name>:<shell command>`: it runs the command (`sh -c`, with the path
//!   at hand in `HYDRABACKUP_HOOK_PATH`) and waits for it every time it reaches hook point `name`;
//! - `HYDRABACKUP_PAUSE=<name>:<dir>`: it waits at pause point `name` for the test (see [`pause`]).
//!
//! Integration tests use these to act at exact instants (a kill, a file swapped between a walk
//! and an open) without timing races.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);
static HOOK: OnceLock<Option<(String, String)>> = OnceLock::new();

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

/// Marks a hook point named `name` about to act on `path`; does nothing unless the environment
/// selects it.
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

static PAUSE: OnceLock<Option<(String, std::path::PathBuf)>> = OnceLock::new();
static PAUSED: AtomicU64 = AtomicU64::new(0);

/// Marks a pause point named `name`; does nothing unless `HYDRABACKUP_PAUSE=<name>:<dir>`
/// selects it. Then, the first time it is reached, the process writes `what` (e.g. the path being
/// read) to `<dir>/reached` and waits until `<dir>/go` exists: a test can change the world at
/// that exact instant.
pub fn pause(name: &str, what: &std::path::Path) {
    let spec = PAUSE.get_or_init(|| {
        let v = std::env::var("HYDRABACKUP_PAUSE").ok()?;
        let (n, dir) = v.split_once(':')?;
        Some((n.to_string(), dir.into()))
    });
    if let Some((n, dir)) = spec
        && n == name
        && PAUSED.fetch_add(1, Ordering::SeqCst) == 0
    {
        let _ = std::fs::write(dir.join("reached"), what.as_os_str().as_encoded_bytes());
        while !dir.join("go").exists() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
