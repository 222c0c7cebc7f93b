//! After a command: its metrics (`--metrics-file`, `--metrics-push`) and notification hooks
//! (`--hook-before`, `--hook-after`, `--hook-failure`).

use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use hydrabackup::metrics::Metrics;
use hydrabackup::ops;
use hydrabackup::ops::prune::PruneSummary;
use hydrabackup::repo::Repository;
use hydrabackup::{Error, Result};

use super::args::Observe;

/// The commands that write metrics.
pub const METRIC_COMMANDS: &[&str] = &[
    "backup", "verify", "forget", "prune", "copy", "restore", "purge",
];

/// What a command leaves for its metrics and hooks.
#[derive(Default)]
pub struct Report {
    /// The command's name.
    command: String,
    /// Whether the metrics go anywhere (the repository's size is read only then).
    wanted: bool,
    /// The metrics the command filled in (none until it opened the repository).
    metrics: Option<Metrics>,
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
    /// The report of a run of `command` with options `o`.
    pub fn new(command: &str, o: &Observe) -> Report {
        Report {
            command: command.into(),
            wanted: o.metrics_file.is_some() || o.metrics_push.is_some(),
            ..Report::default()
        }
    }

    /// Notes the repository the command works on: the metrics' labels.
    pub fn opened(&mut self, repo: &Repository) -> &mut Metrics {
        self.repository_id = repo.config().id.to_hex();
        let host = self.host.clone().unwrap_or_else(hydrabackup::sys::hostname);
        let (command, id) = (&self.command, &self.repository_id);
        self.metrics
            .get_or_insert_with(|| Metrics::new(command, &host, id))
    }

    /// Adds the repository's size (its pack files, its snapshots) to the metrics, if they go
    /// anywhere. A failure is a warning: the command's work is done.
    fn repository_size(&mut self, repo: &Repository) {
        if !self.wanted {
            return;
        }
        match hydrabackup::ops::stats::run(repo, &Default::default(), &Default::default()) {
            Ok(s) => self
                .opened(repo)
                .record_repository(s.pack_bytes, s.packs, s.snapshots),
            Err(e) => eprintln!("hydrabackup: warning: repository size not measured: {e}"),
        }
    }

    /// Records a backup's outcome.
    pub fn backup(&mut self, repo: &Repository, out: &ops::backup::Outcome) {
        self.snapshot_id = out.snapshot_id.map(|i| i.to_hex());
        self.opened(repo).record_backup(&out.summary);
        self.repository_size(repo);
    }

    /// Records a restore's outcome.
    pub fn restore(&mut self, repo: &Repository, out: &ops::restore::Outcome) {
        let s = &out.summary;
        let m = self.opened(repo);
        m.put("hydrabackup_restore_files", &[], s.files as f64);
        m.put("hydrabackup_restore_bytes", &[], s.bytes as f64);
        let errors = (s.failed.len() + s.damaged.len()) as f64;
        m.put("hydrabackup_errors", &[], errors);
    }

    /// Records a verify's outcome.
    pub fn verify(&mut self, repo: &Repository, out: &ops::verify::Outcome) {
        let r = &out.report;
        let problems = r.problems.len() as u64;
        self.opened(repo)
            .record_verify(r.packs, r.packs_read, r.bytes_read, problems);
        self.repository_size(repo);
    }

    /// Records a copy's outcome (`repo` is the destination).
    pub fn copy(&mut self, repo: &Repository, out: &ops::copy::Outcome) {
        let s = &out.summary;
        let m = self.opened(repo);
        m.put("hydrabackup_snapshots_copied", &[], s.copied.len() as f64);
        m.put("hydrabackup_bytes_read", &[], s.bytes_read as f64);
        m.put("hydrabackup_bytes_added", &[], s.bytes_added as f64);
        m.put("hydrabackup_bytes_stored", &[], s.bytes_stored as f64);
        self.repository_size(repo);
    }

    /// Records a forget's outcome (and its prune's).
    pub fn forget(&mut self, repo: &Repository, out: &ops::forget::Outcome) {
        let s = &out.summary;
        let m = self.opened(repo);
        m.put("hydrabackup_snapshots_kept", &[], s.kept as f64);
        m.put("hydrabackup_snapshots_removed", &[], s.removed as f64);
        match &out.prune {
            Some(p) => self.prune(repo, p),
            None => self.repository_size(repo),
        }
    }

    /// Records a prune's outcome.
    pub fn prune(&mut self, repo: &Repository, s: &PruneSummary) {
        let values = [
            ("hydrabackup_prune_packs_deleted", s.packs_deleted),
            ("hydrabackup_prune_packs_rewritten", s.packs_rewritten),
            ("hydrabackup_prune_bytes_deleted", s.bytes_deleted),
            ("hydrabackup_prune_bytes_unused_left", s.bytes_unused_left),
        ];
        let m = self.opened(repo);
        for (name, v) in values {
            m.put(name, &[], v as f64);
        }
        self.repository_size(repo);
    }

    /// Finishes the metrics with the run's result and writes / pushes them as `o` asks.
    /// Failures are warnings: the command's own exit code stands.
    pub fn write_metrics(&mut self, o: &Observe, code: i32, elapsed: Duration) {
        if !self.wanted {
            return;
        }
        let host = self.host.clone().unwrap_or_else(hydrabackup::sys::hostname);
        let (command, id) = (&self.command, &self.repository_id);
        let m = self
            .metrics
            .get_or_insert_with(|| Metrics::new(command, &host, id));
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
