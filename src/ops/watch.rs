//! `watch`: continuous backup. File-system events (and a full scan every `--rescan`) say which
//! paths changed; every `--interval` in which something changed, one cycle captures the root
//! exactly as `backup` does (it is `backup`, with the previous snapshot as parent) and writes a
//! snapshot, or nothing when the tree came out equal to the parent's. A cycle walks only the
//! paths events named (their folders up to the root, and everything under them), taking the
//! rest of the tree from the parent unexamined; the first cycle, every `--rescan`, a lost event
//! queue, a parent that is gone or a parent with errors or quarantined Swamps walk everything. A failed cycle (repository
//! unreachable, locked, full) keeps its changes owed and is retried with back-off. The shared
//! lock is held only while a cycle runs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::ops::backup::{self, BackupOptions};
use crate::ops::progress::Progress;
use crate::repo::Repository;
use crate::source::reuse::{Memo, Restrict};
use crate::{Error, Id, Result};

mod events;
pub use events::{Events, Pending};

/// Longest wait between retries of a failed cycle.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Options of `watch`.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchOptions {
    /// The folder to watch (a HydrAIDE data root, typically).
    #[arg(required_unless_present = "instance")]
    pub root: Option<PathBuf>,
    /// Watch the data root of this HydrAIDE instance (from ~/.hydraide/metadata.json).
    #[arg(long, conflicts_with = "root")]
    pub instance: Option<String>,
    /// Capture what changed at most this often (e.g. 10s, 500ms, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Scan everything this often even without events, as a safety net (e.g. 15m, 1h).
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub rescan: Duration,
    /// List, per cycle, each changed path with its lag (in the --json lines).
    #[arg(long)]
    pub lag: bool,
    /// Show Swamp names in the decision log (they may be confidential).
    #[arg(long)]
    pub show_names: bool,
    /// Tag every snapshot (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Host name to record instead of this machine's.
    #[arg(long)]
    pub host: Option<String>,
    /// Skip paths matching this glob (repeatable), as in `backup`.
    #[arg(long = "exclude")]
    pub excludes: Vec<String>,
}

/// One changed path and how long its change has waited (or waited, once captured).
#[derive(Debug, Clone, Serialize)]
pub struct Lag {
    /// Path relative to the root (hashed names under a HydrAIDE data root).
    pub path: PathBuf,
    /// Seconds from its first uncaptured change to this cycle's snapshot, or to now.
    pub secs: f64,
    /// Whether this cycle captured it.
    pub captured: bool,
}

/// What one cycle did: a `--json` line (`"message_type": "cycle"`), a log line, and the
/// numbers a metrics exporter wants.
#[derive(Debug, Clone, Serialize)]
pub struct Cycle {
    /// Always `cycle`.
    pub message_type: &'static str,
    /// Counts from 1 per process.
    pub cycle: u64,
    /// When the cycle ended (RFC 3339).
    pub time: String,
    /// What made it run: `start`, `events`, `rescan` or `retry`.
    pub trigger: &'static str,
    /// `full` (every folder examined) or `dirty` (only the paths events named).
    pub walk: &'static str,
    /// Folders listed by the walk.
    pub folders_listed: u64,
    /// Entries examined (stat'ed) by the walk.
    pub entries_examined: u64,
    /// The snapshot written; none when nothing changed or the cycle failed.
    pub snapshot_id: Option<Id>,
    /// Its parent.
    pub parent: Option<Id>,
    /// Swamps (and files) captured: new, appended or rewritten.
    pub swamps_captured: u64,
    /// Swamps of the parent gone.
    pub swamps_gone: u64,
    /// Swamps quarantined (listed in the snapshot's catalogue).
    pub swamps_quarantined: u64,
    /// Files new or changed.
    pub files_changed: u64,
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Of those, bytes of Swamps that only grew (their appended blocks).
    pub bytes_appended: u64,
    /// Of those, bytes of Swamps read whole because they were rewritten (compacted, replaced).
    pub bytes_rewritten: u64,
    /// Of those, bytes of Swamps new since the parent.
    pub bytes_new: u64,
    /// Bytes added to the repository (packs).
    pub bytes_stored: u64,
    /// Source files that could not be read.
    pub source_errors: u64,
    /// Seconds the cycle took.
    pub duration_secs: f64,
    /// Seconds from the oldest change this cycle captured to its snapshot (0: none owed).
    pub captured_lag_secs: f64,
    /// Age in seconds of the oldest change not in any snapshot yet (0: none), after the cycle.
    pub oldest_uncaptured_secs: f64,
    /// Changed paths still owed after the cycle.
    pub pending_paths: u64,
    /// Why the cycle failed (its changes stay owed).
    pub error: Option<String>,
    /// Seconds until the retry of a failed cycle.
    pub retry_in_secs: Option<f64>,
    /// Per-path lag (with `--lag`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<Vec<Lag>>,
}

/// What a watch did until it was stopped.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    /// Always `summary`.
    pub message_type: &'static str,
    /// Cycles run.
    pub cycles: u64,
    /// Snapshots written.
    pub snapshots: u64,
    /// Cycles that failed (their changes were retried).
    pub failed_cycles: u64,
    /// The last snapshot written.
    pub last_snapshot: Option<Id>,
    /// Changed paths still owed at exit (the next start captures them).
    pub pending_paths: u64,
}

/// Removes the locks this process left behind because removing them failed (the repository
/// was unreachable as a cycle ended): between cycles it holds none, and a leftover would refuse
/// exclusive commands until it is 30 minutes old. Returns how many.
fn remove_own_leftover_locks(repo: &Repository) -> Result<usize> {
    let (host, pid) = (crate::sys::hostname(), std::process::id());
    let backend = repo.backend().as_ref();
    let mut n = 0;
    for (name, info) in crate::repo::lock::list(backend, repo.keys())? {
        if info.is_some_and(|i| i.host == host && i.pid == pid) {
            backend.remove(crate::backend::FileKind::Lock, &name)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Hands the heap a cycle freed back to the system, so that a watcher idles at the memory it
/// uses rather than at the peak of its largest cycle (glibc keeps freed memory per thread arena).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the system; it has no preconditions
    // and is thread-safe (it takes each arena's lock).
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Reads a duration: a number with `ms`, `s`, `m` or `min`, or `h` (e.g. `10s`, `15m`, `1h`).
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: use e.g. 500ms, 10s, 15m, 1h"))?;
    let ms = match unit {
        "ms" => 1,
        "s" | "" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("unknown unit in {s:?}: use ms, s, m (or min), h")),
    };
    match n.checked_mul(ms) {
        Some(0) => Err(format!("{s:?}: a duration must be more than 0")),
        Some(v) => Ok(Duration::from_millis(v)),
        None => Err(format!("{s:?} is too long")),
    }
}

/// Watches until `stop` is set (SIGTERM, SIGINT), then finishes the cycle in progress and
/// returns. `report` gets every cycle's report. Errors only when the first cycle cannot run
/// for a reason no retry mends (a bad option or root).
pub fn run_with(
    repo: &Repository,
    opts: &WatchOptions,
    progress: &Progress,
    stop: &AtomicBool,
    report: &mut dyn FnMut(&Cycle),
) -> Result<Outcome> {
    let root = match (&opts.root, &opts.instance) {
        (Some(r), _) => r.clone(),
        (None, Some(i)) => crate::source::instance_data_root(i)?,
        (None, None) => return Err(Error::InvalidInput("nothing to watch: give a root".into())),
    };
    let root = std::path::absolute(&root).map_err(|e| Error::io(&root, e))?;
    if !std::fs::metadata(&root)
        .map_err(|e| Error::io(&root, e))?
        .is_dir()
    {
        return Err(Error::InvalidInput(format!(
            "{} is not a folder: watch takes a data root",
            root.display()
        )));
    }
    let mut base = BackupOptions {
        paths: vec![root.clone()],
        show_names: opts.show_names,
        tags: opts.tags.clone(),
        host: opts.host.clone(),
        excludes: opts.excludes.clone(),
        skip_unchanged: true,
        ..Default::default()
    };
    // Watch before the first scan, so nothing changed between the two goes unseen.
    let (events, refused) = Events::watch(&root);
    if let Some(why) = &refused {
        tracing::warn!(
            error = %why,
            "cannot watch file-system events; scanning everything every interval"
        );
    }
    let mut pending = Pending::default();
    pending.owe_scan(Instant::now());
    // Counts of the parent's folders a restricted walk reuses, kept while they are reused.
    let memo = Arc::new(Mutex::new(Memo::default()));
    // Folders a cycle found: walked again by the next one, in case entries arrived in them
    // before their watch was added.
    let mut carry: Vec<PathBuf> = Vec::new();
    // The parent's errors and quarantined Swamps are retried only by a full walk.
    let mut parent_clean = false;
    let mut out = Outcome {
        message_type: "summary",
        ..Outcome::default()
    };
    let mut trigger = "start";
    let mut next_tick = Instant::now();
    let mut next_rescan = Instant::now() + opts.rescan;
    let mut backoff: Option<Duration> = None;
    while !stop.load(Ordering::Relaxed) {
        // Wake at least every 200 ms to see a stop request.
        let until = next_tick.min(Instant::now() + Duration::from_millis(200));
        events.collect(&mut pending, until);
        let now = Instant::now();
        if now < next_tick {
            continue;
        }
        if now >= next_rescan || refused.is_some() {
            pending.owe_scan(now);
            next_rescan = now + opts.rescan;
            if trigger == "events" {
                trigger = "rescan";
            }
        }
        if pending.is_empty() {
            next_tick = now + opts.interval;
            continue;
        }
        let taken = std::mem::take(&mut pending);
        out.cycles += 1;
        let started = Instant::now();
        let full = taken.scan.is_some()
            || base.parent.is_none()
            || !parent_clean
            || taken.paths.keys().any(|p| p.is_absolute());
        base.restrict = (!full).then(|| {
            let dirty = taken.paths.keys().chain(&carry).cloned();
            Arc::new(Restrict::new(dirty, memo.clone()))
        });
        crate::failpoint::hook("watch-cycle", &root);
        let result = backup::backup(repo, &base, progress);
        // An explicit parent that a `forget` removed meanwhile: find the newest again, and
        // walk everything against it.
        let result = match result {
            Err(Error::NotFound(_)) if base.parent.is_some() => {
                base.parent = None;
                base.restrict = None;
                backup::backup(repo, &base, progress)
            }
            r => r,
        };
        let walk = if base.restrict.take().is_some() {
            "dirty"
        } else {
            "full"
        };
        if walk == "dirty" {
            // A full walk reuses nothing: the counts stay for the cycles after it.
            memo.lock().expect("memo").sweep();
        }
        let end = Instant::now();
        let mut c = Cycle {
            message_type: "cycle",
            cycle: out.cycles,
            time: jiff::Timestamp::now().to_string(),
            trigger,
            walk,
            folders_listed: 0,
            entries_examined: 0,
            snapshot_id: None,
            parent: None,
            swamps_captured: 0,
            swamps_gone: 0,
            swamps_quarantined: 0,
            files_changed: 0,
            bytes_read: 0,
            bytes_appended: 0,
            bytes_rewritten: 0,
            bytes_new: 0,
            bytes_stored: 0,
            source_errors: 0,
            duration_secs: (end - started).as_secs_f64(),
            captured_lag_secs: 0.0,
            oldest_uncaptured_secs: 0.0,
            pending_paths: 0,
            error: None,
            retry_in_secs: None,
            lag: None,
        };
        let mut lag = Vec::new();
        match result {
            Ok(b) => {
                if backoff.take().is_some() {
                    match remove_own_leftover_locks(repo) {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(locks = n, "removed our locks left by failures"),
                        Err(e) => tracing::warn!(error = %e, "cannot remove our leftover locks"),
                    }
                }
                trigger = "events";
                let s = &b.summary;
                c.snapshot_id = b.snapshot_id;
                c.parent = b.parent;
                c.swamps_captured = s.swamps_new + s.swamps_appended + s.swamps_rewritten;
                c.swamps_gone = s.swamps_gone;
                c.swamps_quarantined = s.swamps_quarantined;
                c.files_changed = s.files_new + s.files_changed;
                c.bytes_read = s.bytes_read;
                c.folders_listed = b.work.folders_listed;
                c.entries_examined = b.work.entries_examined;
                c.bytes_appended = b.work.bytes_appended;
                c.bytes_rewritten = b.work.bytes_rewritten;
                c.bytes_new = b.work.bytes_new;
                parent_clean = s.errors == 0 && s.swamps_quarantined == 0;
                carry = taken
                    .paths
                    .keys()
                    .filter(|p| std::fs::symlink_metadata(root.join(p)).is_ok_and(|m| m.is_dir()))
                    .cloned()
                    .collect();
                c.bytes_stored = s.bytes_stored;
                c.source_errors = b.errors.len() as u64;
                c.captured_lag_secs = taken.oldest().map_or(0.0, |t| (end - t).as_secs_f64());
                if let Some(id) = b.snapshot_id {
                    out.snapshots += 1;
                    out.last_snapshot = Some(id);
                }
                // The next parent is the snapshot just written, or the one this cycle matched.
                base.parent = b.snapshot_id.or(b.parent).map(|id| id.to_hex());
                if opts.lag {
                    lag.extend(taken.paths.iter().map(|(p, t)| Lag {
                        path: p.clone(),
                        secs: (end - *t).as_secs_f64(),
                        captured: true,
                    }));
                }
                // Cycles start at most once per interval, back to back when one takes longer.
                next_tick = started + opts.interval;
            }
            Err(e @ Error::InvalidInput(_)) if out.cycles == 1 => return Err(e),
            Err(e) => {
                out.failed_cycles += 1;
                pending.restore(taken);
                parent_clean = false;
                // The parent is looked up afresh: a `forget` may have removed it.
                base.parent = None;
                let wait = backoff.map_or(opts.interval, |b| (b * 2).min(MAX_BACKOFF));
                let wait = wait.max(opts.interval);
                backoff = Some(wait);
                trigger = "retry";
                c.error = Some(e.to_string());
                c.retry_in_secs = Some(wait.as_secs_f64());
                tracing::warn!(
                    error = %e,
                    retry_in_secs = wait.as_secs_f64(),
                    "cycle failed; its changes are kept and retried"
                );
                next_tick = end + wait;
            }
        }
        c.pending_paths = pending.paths.len() as u64;
        c.oldest_uncaptured_secs = pending.oldest().map_or(0.0, |t| {
            Instant::now().saturating_duration_since(t).as_secs_f64()
        });
        if opts.lag {
            let now = Instant::now();
            lag.extend(pending.paths.iter().map(|(p, t)| Lag {
                path: p.clone(),
                secs: now.saturating_duration_since(*t).as_secs_f64(),
                captured: false,
            }));
            lag.sort_by(|a, b| a.path.cmp(&b.path));
            c.lag = Some(lag);
        }
        tracing::info!(
            cycle = c.cycle,
            trigger = c.trigger,
            snapshot = c.snapshot_id.map(|i| i.short()),
            swamps_captured = c.swamps_captured,
            bytes_read = c.bytes_read,
            bytes_stored = c.bytes_stored,
            captured_lag_secs = c.captured_lag_secs,
            oldest_uncaptured_secs = c.oldest_uncaptured_secs,
            ok = c.error.is_none(),
            "cycle"
        );
        report(&c);
        release_free_memory();
    }
    out.pending_paths = pending.paths.len() as u64;
    Ok(out)
}

/// [`run_with`] without a stop request (it runs until the process ends) and with the cycle
/// reports going to the log only.
pub fn run(repo: &Repository, opts: &WatchOptions, progress: &Progress) -> Result<Outcome> {
    run_with(repo, opts, progress, &AtomicBool::new(false), &mut |_| {})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        for bad in ["", "s", "0s", "5x", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
