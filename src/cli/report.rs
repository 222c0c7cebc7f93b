//! After a command: its metrics (`--metrics-file`, `--metrics-push`) and notification hooks
//! (`--hook-before`, `--hook-after`, `--hook-failure`).

use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use hydrabackup::metrics::Metrics;
use hydrabackup::repo::Repository;
use hydrabackup::{Error, Result};

use super::args::Observe;

/// The commands that write metrics.
pub const METRIC_COMMANDS: &[&str] = &["backup", "verify", "forget", "prune", "copy", "restore"];

/// What a command leaves for its metrics and hooks.
#[derive(Default)]
pub struct Report {
    /// The metrics the command filled in (none until it has an outcome).
    pub metrics: Option<Metrics>,
    /// The repository's id, once it is open.
    pub repository_id: String,
    /// The host name the run is for (`backup --host`), if not this machine's.
    pub host: Option<String>,
    /// The snapshot written (backup).
    pub snapshot_id: Option<String>,
    /// The `--json` summary document, compact.
    pub summary: Option<String>,
}

impl Report {
    /// Metrics labelled for this run of `command`, to fill in.
    pub fn metrics(&mut self, command: &str, repo: &Repository) -> &mut Metrics {
        self.repository_id = repo.config().id.to_hex();
        let host = self.host.clone().unwrap_or_else(hydrabackup::sys::hostname);
        self.metrics
            .get_or_insert_with(|| Metrics::new(command, &host, &repo.config().id.to_hex()))
    }

    /// Adds the repository's stored size (from its index) to the metrics.
    pub fn repository_size(&mut self, command: &str, repo: &Repository) -> Result<()> {
        let stats = hydrabackup::ops::stats::run(repo, &Default::default(), &Default::default())?;
        self.metrics(command, repo).record_repository(
            stats.pack_bytes,
            stats.packs,
            stats.snapshots,
        );
        Ok(())
    }

    /// Finishes the metrics with the run's result and writes / pushes them as `o` asks.
    /// Failures are warnings: the command's own exit code stands.
    pub fn write_metrics(&mut self, o: &Observe, command: &str, code: i32, elapsed: Duration) {
        if o.metrics_file.is_none() && o.metrics_push.is_none() {
            return;
        }
        let host = self.host.clone().unwrap_or_else(hydrabackup::sys::hostname);
        let id = self.repository_id.clone();
        let m = self
            .metrics
            .get_or_insert_with(|| Metrics::new(command, &host, &id));
        m.record_result(code == 0, code, elapsed);
        if let Some(path) = &o.metrics_file
            && let Err(e) = m.write_file(path)
        {
            eprintln!("hydrabackup: warning: metrics file not written: {e}");
        }
        if let Some(url) = &o.metrics_push
            && let Err(e) = m.push(url)
        {
            eprintln!("hydrabackup: warning: metrics not pushed: {e}");
        }
    }
}

/// Runs hook `cmd` (`sh -c`) for `stage` (`before`, `after`, `failure`) of `command` with the
/// outcome in `HYDRABACKUP_*` variables; its output goes to stderr (stdout is the command's).
/// The literal passwords of the environment are not passed on. Returns why it failed, if it did.
pub fn hook(
    stage: &str,
    cmd: &str,
    command: &str,
    outcome: Option<(&Report, i32, Option<&str>)>,
    elapsed: Duration,
) -> Result<(), String> {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .env_remove("HYDRABACKUP_PASSWORD")
        .env_remove("HYDRABACKUP_FROM_PASSWORD")
        .env("HYDRABACKUP_HOOK", stage)
        .env("HYDRABACKUP_COMMAND", command);
    if let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() {
        c.stdout(Stdio::from(fd));
    }
    if let Some((r, code, error)) = outcome {
        c.env("HYDRABACKUP_EXIT_CODE", code.to_string())
            .env("HYDRABACKUP_SUCCESS", ((code == 0) as u8).to_string())
            .env(
                "HYDRABACKUP_DURATION_SECONDS",
                format!("{:.3}", elapsed.as_secs_f64()),
            )
            .env("HYDRABACKUP_REPOSITORY_ID", &r.repository_id)
            .env("HYDRABACKUP_ERROR", error.unwrap_or(""))
            .env(
                "HYDRABACKUP_SNAPSHOT_ID",
                r.snapshot_id.as_deref().unwrap_or(""),
            )
            .env("HYDRABACKUP_SUMMARY", r.summary.as_deref().unwrap_or(""));
    }
    match c.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(match s.code() {
            Some(n) => format!("exit code {n}"),
            None => "killed by a signal".into(),
        }),
        Err(e) => Err(format!("cannot run sh: {e}")),
    }
}

/// Runs the before-hook, if any; its failure stops the command ([`Error::HookBefore`]).
pub fn before(o: &Observe, command: &str) -> Result<()> {
    match &o.hook_before {
        Some(h) => hook("before", h, command, None, Duration::ZERO).map_err(Error::HookBefore),
        None => Ok(()),
    }
}

/// Runs the after- or failure-hook for a run that ended with `code` (a failure: any code but
/// 0); a failing hook is a warning.
pub fn after(
    o: &Observe,
    command: &str,
    r: &Report,
    code: i32,
    error: Option<&str>,
    elapsed: Duration,
) {
    let (stage, h) = if code == 0 {
        ("after", &o.hook_after)
    } else {
        ("failure", &o.hook_failure)
    };
    if let Some(h) = h
        && let Err(e) = hook(stage, h, command, Some((r, code, error)), elapsed)
    {
        eprintln!("hydrabackup: warning: the --hook-{stage} command failed ({e})");
    }
}
