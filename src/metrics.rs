//! Prometheus metrics of one run: a small registry of gauges rendered in the text exposition
//! format, written atomically for node_exporter's textfile collector or pushed to a Pushgateway.
//!
//! The API takes plain values, so any caller (a command, a `watch` cycle, the REST server) can
//! fill it: [`Metrics::new`] with the labels every sample carries (host, repository id,
//! command), then [`Metrics::put`] per value, or the `record_*` helpers for the commands'
//! outcomes. A run's metrics are gauges (each run replaces the file, so a value is that run's);
//! the server's running totals are counters ([`Metrics::counter`]).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::repo::snapshot::SnapshotSummary;
use crate::{Error, Result};

/// The name of the gauge that keeps the time of the last successful run.
pub const LAST_SUCCESS: &str = "hydrabackup_last_success_timestamp_seconds";

/// The help text of every metric hydrabackup writes: one text per name whichever command
/// writes it, as node_exporter wants when several files hold the same metric.
const KNOWN: &[(&str, &str)] = &[
    (
        "hydrabackup_success",
        "Whether the run succeeded (1) or failed (0).",
    ),
    ("hydrabackup_exit_code", "The run's exit code."),
    ("hydrabackup_duration_seconds", "Wall time of the run."),
    (
        "hydrabackup_last_run_timestamp_seconds",
        "When the run ended (Unix time).",
    ),
    (
        LAST_SUCCESS,
        "When a run of this command last succeeded (Unix time).",
    ),
    ("hydrabackup_swamps", "Swamps by backup decision."),
    ("hydrabackup_files", "Files by backup decision."),
    ("hydrabackup_files_read", "Files read from the source."),
    (
        "hydrabackup_bytes_read",
        "Bytes read from the source (files or repository).",
    ),
    (
        "hydrabackup_bytes_added",
        "Plaintext bytes of the blobs added to the repository.",
    ),
    (
        "hydrabackup_bytes_stored",
        "Bytes stored for the blobs added (compressed, sealed).",
    ),
    (
        "hydrabackup_source_bytes",
        "Total size of the files in the snapshot.",
    ),
    ("hydrabackup_errors", "Items that could not be handled."),
    (
        "hydrabackup_throughput_bytes_per_second",
        "Bytes read per second of the run.",
    ),
    (
        "hydrabackup_verify_packs_checked",
        "Packs whose structure was checked.",
    ),
    (
        "hydrabackup_verify_packs_read",
        "Packs read in full and re-hashed.",
    ),
    (
        "hydrabackup_verify_bytes_read",
        "Bytes read for the data check.",
    ),
    (
        "hydrabackup_verify_damaged",
        "Problems (damaged or missing objects) found.",
    ),
    (
        "hydrabackup_repository_size_bytes",
        "Bytes of the repository's pack files.",
    ),
    (
        "hydrabackup_repository_packs",
        "Pack files in the repository.",
    ),
    (
        "hydrabackup_repository_snapshots",
        "Snapshots in the repository.",
    ),
    ("hydrabackup_restore_files", "Files restored."),
    ("hydrabackup_restore_bytes", "Bytes restored."),
    ("hydrabackup_snapshots_copied", "Snapshots copied."),
    ("hydrabackup_snapshots_kept", "Snapshots kept by forget."),
    (
        "hydrabackup_snapshots_removed",
        "Snapshots removed by forget.",
    ),
    ("hydrabackup_prune_packs_deleted", "Packs deleted by prune."),
    (
        "hydrabackup_prune_packs_rewritten",
        "Packs rewritten by prune.",
    ),
    ("hydrabackup_prune_bytes_deleted", "Bytes deleted by prune."),
    (
        "hydrabackup_prune_bytes_unused_left",
        "Unused bytes left in packs after prune.",
    ),
];

/// One metric: a name, its help text and its samples (extra labels, value).
#[derive(Debug, Clone)]
struct Family {
    name: String,
    help: String,
    counter: bool,
    samples: Vec<(Vec<(String, String)>, f64)>,
}

/// The metrics of one run, in the order they were set.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    labels: Vec<(String, String)>,
    families: Vec<Family>,
}

/// Escapes a label value (backslash, double quote, newline) as the text format requires.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

/// A sample value in the text format (integers without a fraction).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 9.0e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl Metrics {
    /// Metrics whose every sample carries `host`, `repository_id` and `command` labels.
    pub fn new(command: &str, host: &str, repository_id: &str) -> Metrics {
        Metrics::labelled(&[
            ("command", command),
            ("host", host),
            ("repository_id", repository_id),
        ])
    }

    /// Metrics whose every sample carries these labels.
    pub fn labelled(labels: &[(&str, &str)]) -> Metrics {
        Metrics {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            families: Vec::new(),
        }
    }

    /// Sets gauge `name` (with the extra `labels`) to `value`; `help` describes the metric
    /// (the first call's text is kept).
    pub fn set(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.sample(name, help, false, labels, value);
    }

    /// Sets gauge `name`, one of those hydrabackup writes (its help text is the known one).
    pub fn put(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let help = KNOWN
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("A hydrabackup metric.", |(_, h)| h);
        self.set(name, help, labels, value);
    }

    /// Sets counter `name` (a running total since the process started; by convention its name
    /// ends in `_total`) to `value`.
    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.sample(name, help, true, labels, value);
    }

    fn sample(
        &mut self,
        name: &str,
        help: &str,
        counter: bool,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let fam = match self.families.iter_mut().position(|f| f.name == name) {
            Some(i) => &mut self.families[i],
            None => {
                self.families.push(Family {
                    name: name.into(),
                    help: help.into(),
                    counter,
                    samples: Vec::new(),
                });
                self.families.last_mut().expect("just pushed")
            }
        };
        match fam.samples.iter_mut().find(|(l, _)| *l == labels) {
            Some(s) => s.1 = value,
            None => fam.samples.push((labels, value)),
        }
    }

    /// The value of gauge `name` without extra labels, if set.
    pub fn get(&self, name: &str) -> Option<f64> {
        let f = self.families.iter().find(|f| f.name == name)?;
        f.samples.iter().find(|(l, _)| l.is_empty()).map(|s| s.1)
    }

    /// Records how the run ended: `hydrabackup_success` (1 or 0), its duration and exit code,
    /// and on success [`LAST_SUCCESS`] (now).
    pub fn record_result(&mut self, ok: bool, exit_code: i32, duration: Duration) {
        self.put("hydrabackup_success", &[], ok as u8 as f64);
        self.put("hydrabackup_exit_code", &[], exit_code as f64);
        self.put("hydrabackup_duration_seconds", &[], duration.as_secs_f64());
        let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
        self.put("hydrabackup_last_run_timestamp_seconds", &[], now);
        if ok {
            self.put(LAST_SUCCESS, &[], now);
        }
    }

    /// Records a backup's counters: Swamps and files by decision, files and bytes read, bytes
    /// added and stored, errors and read throughput.
    pub fn record_backup(&mut self, s: &SnapshotSummary) {
        let swamps = [
            ("new", s.swamps_new),
            ("unchanged", s.swamps_unchanged),
            ("appended", s.swamps_appended),
            ("rewritten", s.swamps_rewritten),
            ("gone", s.swamps_gone),
            ("quarantined", s.swamps_quarantined),
        ];
        for (d, n) in swamps {
            self.put("hydrabackup_swamps", &[("decision", d)], n as f64);
        }
        let files = [
            ("new", s.files_new),
            ("changed", s.files_changed),
            ("unchanged", s.files_unchanged),
            ("gone", s.files_gone),
        ];
        for (d, n) in files {
            self.put("hydrabackup_files", &[("state", d)], n as f64);
        }
        let plain = [
            ("hydrabackup_files_read", s.files_read),
            ("hydrabackup_bytes_read", s.bytes_read),
            ("hydrabackup_bytes_added", s.bytes_added),
            ("hydrabackup_bytes_stored", s.bytes_stored),
            ("hydrabackup_source_bytes", s.total_bytes),
            ("hydrabackup_errors", s.errors),
        ];
        for (name, v) in plain {
            self.put(name, &[], v as f64);
        }
        self.record_throughput(s.bytes_read, s.duration_secs);
    }

    /// Records `bytes` over `secs` as `hydrabackup_throughput_bytes_per_second`.
    pub fn record_throughput(&mut self, bytes: u64, secs: f64) {
        let rate = if secs > 0.0 { bytes as f64 / secs } else { 0.0 };
        self.put("hydrabackup_throughput_bytes_per_second", &[], rate);
    }

    /// Records a verify's results: packs checked and read, bytes read, problems found.
    pub fn record_verify(
        &mut self,
        packs_checked: u64,
        packs_read: u64,
        bytes_read: u64,
        problems: u64,
    ) {
        self.put(
            "hydrabackup_verify_packs_checked",
            &[],
            packs_checked as f64,
        );
        self.put("hydrabackup_verify_packs_read", &[], packs_read as f64);
        self.put("hydrabackup_verify_bytes_read", &[], bytes_read as f64);
        self.put("hydrabackup_verify_damaged", &[], problems as f64);
    }

    /// Records the repository's size: bytes and number of its pack files, and its snapshots.
    pub fn record_repository(&mut self, pack_bytes: u64, packs: u64, snapshots: u64) {
        self.put("hydrabackup_repository_size_bytes", &[], pack_bytes as f64);
        self.put("hydrabackup_repository_packs", &[], packs as f64);
        self.put("hydrabackup_repository_snapshots", &[], snapshots as f64);
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.families {
            let _ = writeln!(out, "# HELP {} {}", f.name, f.help.replace('\n', " "));
            let kind = if f.counter { "counter" } else { "gauge" };
            let _ = writeln!(out, "# TYPE {} {kind}", f.name);
            for (extra, v) in &f.samples {
                let labels: Vec<String> = self
                    .labels
                    .iter()
                    .chain(extra)
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                let _ = writeln!(out, "{}{{{}}} {}", f.name, labels.join(","), number(*v));
            }
        }
        out
    }

    /// Writes the metrics to `path` atomically (a temporary file beside it, fsynced, renamed),
    /// so the textfile collector never reads half a file. When this run failed, the
    /// [`LAST_SUCCESS`] value of the file it replaces is kept (for the same labels).
    pub fn write_file(&self, path: &Path) -> Result<()> {
        let mut m = self.clone();
        if m.get(LAST_SUCCESS).is_none()
            && let Some(t) = std::fs::read_to_string(path)
                .ok()
                .and_then(|old| m.previous_success(&old))
        {
            m.set(
                LAST_SUCCESS,
                "When a run of this command last succeeded (Unix time).",
                &[],
                t,
            );
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| Error::InvalidInput(format!("{}: not a file name", path.display())))?;
        let tmp = dir.join(format!(
            ".{}.tmp.{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(m.render().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(path, e)
        })
    }

    /// The [`LAST_SUCCESS`] value with this run's `command` and `host` in an earlier rendering
    /// (a run that failed before opening the repository has no repository id).
    fn previous_success(&self, old: &str) -> Option<f64> {
        let mut mine: Vec<(String, String)> = self
            .labels
            .iter()
            .filter(|(k, _)| k != "repository_id")
            .cloned()
            .collect();
        mine.sort();
        old.lines().find_map(|l| {
            let rest = l.strip_prefix(LAST_SUCCESS)?.strip_prefix('{')?;
            let (labels, value) = rest.rsplit_once("} ")?;
            let mut found: Vec<(String, String)> = labels
                .split("\",")
                .filter_map(|kv| {
                    let (k, v) = kv.split_once("=\"")?;
                    Some((k.to_string(), v.trim_end_matches('"').to_string()))
                })
                .filter(|(k, _)| k != "repository_id")
                .collect();
            found.sort();
            let escaped: Vec<(String, String)> =
                mine.iter().map(|(k, v)| (k.clone(), escape(v))).collect();
            (found == escaped).then(|| value.trim().parse().ok())?
        })
    }

    /// Pushes the metrics to a Prometheus Pushgateway at `url` with HTTP PUT (replacing the
    /// group). A bare gateway address (`http://gw:9091`) gets the group path
    /// `/metrics/job/hydrabackup/instance/<host>/command/<command>`; a URL that already holds
    /// `/metrics/job/` is used as it is. Credentials in the URL are sent as HTTP Basic.
    pub fn push(&self, url: &str) -> Result<()> {
        let bad = |why: String| Error::InvalidInput(format!("--metrics-push: {why}"));
        let mut u = url::Url::parse(url).map_err(|e| bad(format!("{url:?}: {e}")))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(bad(format!("{url:?}: not an http(s) URL")));
        }
        let auth = (!u.username().is_empty()).then(|| {
            use base64::Engine;
            let pw = percent_encoding::percent_decode_str(u.password().unwrap_or(""))
                .decode_utf8_lossy()
                .into_owned();
            let user = percent_encoding::percent_decode_str(u.username())
                .decode_utf8_lossy()
                .into_owned();
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
            )
        });
        let _ = u.set_username("");
        let _ = u.set_password(None);
        if !u.path().contains("/metrics/job/") {
            let label = |k: &str| {
                self.labels
                    .iter()
                    .find(|(n, _)| n == k)
                    .map_or(String::new(), |(_, v)| v.clone())
            };
            u.path_segments_mut()
                .map_err(|_| bad(format!("{url:?}: cannot hold a path")))?
                .pop_if_empty()
                .extend([
                    "metrics",
                    "job",
                    "hydrabackup",
                    "instance",
                    &label("host"),
                    "command",
                    &label("command"),
                ]);
        }
        let shown = u.to_string();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut req = agent
            .put(u.as_str())
            .header("Content-Type", "text/plain; version=0.0.4");
        if let Some(a) = &auth {
            req = req.header("Authorization", a);
        }
        let resp = req.send(self.render().as_bytes()).map_err(|e| {
            Error::backend("push metrics to", shown.clone(), std::io::Error::other(e))
        })?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(Error::backend(
                "push metrics to",
                shown,
                std::io::Error::other(format!("the Pushgateway answered HTTP {status}")),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labels_escaped_and_keeps_the_last_success() {
        let mut m = Metrics::new("backup", "h\"x", "abc");
        m.set("hydrabackup_swamps", "Swamps.", &[("decision", "new")], 3.0);
        m.set("hydrabackup_swamps", "Swamps.", &[("decision", "new")], 4.0);
        m.set("hydrabackup_duration_seconds", "T.", &[], 1.5);
        let text = m.render();
        assert!(text.contains(
            "hydrabackup_swamps{command=\"backup\",host=\"h\\\"x\",repository_id=\"abc\",decision=\"new\"} 4\n"
        ));
        assert!(text.contains("} 1.5\n"));
        assert_eq!(text.matches("# TYPE hydrabackup_swamps gauge").count(), 1);

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hb.prom");
        let mut ok = Metrics::new("backup", "h\"x", "abc");
        ok.set(LAST_SUCCESS, "x", &[], 1234.0);
        ok.write_file(&p).unwrap();
        // A failed run keeps the time of the last success; another command's line is not it.
        m.write_file(&p).unwrap();
        assert!(std::fs::read_to_string(&p).unwrap().contains("} 1234\n"));
        Metrics::new("verify", "h\"x", "abc")
            .write_file(&p)
            .unwrap();
        assert!(!std::fs::read_to_string(&p).unwrap().contains(LAST_SUCCESS));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn every_recorded_metric_has_its_own_help_text() {
        let mut m = Metrics::new("backup", "h", "id");
        m.record_result(true, 0, Duration::from_secs(1));
        m.record_backup(&SnapshotSummary::default());
        m.record_verify(1, 1, 1, 0);
        m.record_repository(1, 1, 1);
        let text = m.render();
        assert!(!text.contains("A hydrabackup metric."), "{text}");
        let mut names: Vec<&str> = KNOWN.iter().map(|(n, _)| *n).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), KNOWN.len());
    }
}
