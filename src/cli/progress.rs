//! What a long command shows while it runs: on a terminal an indicatif bar (rate, ETA, and the
//! current item with `--show-names`), with `--json` a stream of JSON lines (a `status` line
//! about every second, `error` and `verbose_status` lines as they happen); nothing otherwise.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hydrabackup::ops::progress::Progress;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Not at all.
    Off,
    /// A bar on stderr if it is a terminal; item names only with `names`.
    Bar {
        /// Show the current item's name.
        names: bool,
    },
    /// JSON lines on stdout.
    Json,
}

impl Mode {
    /// Whether this mode shows anything (a bar needs a terminal).
    pub fn active(self) -> bool {
        match self {
            Mode::Off => false,
            Mode::Bar { .. } => std::io::stderr().is_terminal(),
            Mode::Json => true,
        }
    }
}

/// A running display; stopped on drop (after its last messages are out).
pub struct Display {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

/// Seconds between two `status` lines of the JSON stream.
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// How often messages are passed on and the bar redrawn.
const TICK: Duration = Duration::from_millis(100);

/// Starts showing `p` as `mode` says.
pub fn start(p: Arc<Progress>, label: &'static str, mode: Mode) -> Display {
    let stop = Arc::new(AtomicBool::new(false));
    if !mode.active() {
        return Display { stop, handle: None };
    }
    let s2 = stop.clone();
    let handle = std::thread::spawn(move || match mode {
        Mode::Json => json_stream(&p, &s2),
        Mode::Bar { names } => bar(&p, label, names, &s2),
        Mode::Off => {}
    });
    Display {
        stop,
        handle: Some(handle),
    }
}

/// (fraction done, seconds left) from the counters: by bytes when any are known, else items.
fn estimate(p: &Progress, elapsed: Duration) -> (f64, Option<u64>) {
    let (i, it, b, bt) = p.get();
    let f = if bt > 0 {
        b as f64 / bt as f64
    } else if it > 0 {
        i as f64 / it as f64
    } else {
        0.0
    };
    let f = f.clamp(0.0, 1.0);
    let left = (f > 0.0).then(|| (elapsed.as_secs_f64() * (1.0 - f) / f).round() as u64);
    (f, left)
}

/// One `status` line of the JSON stream.
fn status_line(p: &Progress, elapsed: Duration) -> String {
    let (i, it, b, bt) = p.get();
    let (f, left) = estimate(p, elapsed);
    let mut line = json!({
        "message_type": "status",
        "seconds_elapsed": elapsed.as_secs(),
        "seconds_remaining": left,
        "percent_done": f,
        "total_files": it.max(i),
        "files_done": i,
        "total_bytes": bt.max(b),
        "bytes_done": b,
        "error_count": p.errors.load(Ordering::Relaxed),
    });
    // Set only when the user asked for names (`backup --show-names`).
    let current = p.current();
    if !current.is_empty() {
        line["current_files"] = json!([current]);
    }
    line.to_string()
}

/// Prints `lines` to stdout at once (the stream's lines never interleave).
fn print_lines(lines: impl IntoIterator<Item = String>) {
    let mut out = std::io::stdout().lock();
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    let _ = out.flush();
}

/// The JSON stream: messages as they come, a status line every [`STATUS_EVERY`], and when a
/// status line was printed, a last one at the end (the final counts) before the summary.
fn json_stream(p: &Progress, stop: &AtomicBool) {
    let started = Instant::now();
    let mut next_status = started + STATUS_EVERY;
    let mut statuses = 0;
    let messages = |p: &Progress| {
        p.take_messages()
            .into_iter()
            .map(|m| serde_json::to_string(&m).expect("messages serialize"))
    };
    while !stop.load(Ordering::Relaxed) {
        print_lines(messages(p));
        if Instant::now() >= next_status {
            next_status += STATUS_EVERY;
            print_lines([status_line(p, started.elapsed())]);
            statuses += 1;
        }
        std::thread::park_timeout(TICK);
    }
    print_lines(messages(p));
    if statuses > 0 {
        print_lines([status_line(p, started.elapsed())]);
    }
}

fn bar(p: &Progress, label: &'static str, names: bool, stop: &AtomicBool) {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} \
             {binary_bytes_per_sec} ETA {eta} {msg}",
        )
        .expect("valid template"),
    );
    bar.set_prefix(label);
    while !stop.load(Ordering::Relaxed) {
        let (i, it, b, bt) = p.get();
        bar.set_length(bt.max(b));
        bar.set_position(b);
        let mut msg = format!("{i}/{} items", it.max(i));
        if names {
            let cur = p.current();
            if !cur.is_empty() {
                msg.push(' ');
                msg.push_str(&cur);
            }
        }
        bar.set_message(msg);
        std::thread::park_timeout(TICK);
    }
    bar.finish_and_clear();
}

impl Drop for Display {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_by_bytes_then_items() {
        let p = Progress::default();
        assert_eq!(estimate(&p, Duration::from_secs(5)), (0.0, None));
        p.total(4, 0);
        p.done(1, 0);
        assert_eq!(estimate(&p, Duration::from_secs(5)), (0.25, Some(15)));
        p.total(0, 100);
        p.done(0, 50);
        assert_eq!(estimate(&p, Duration::from_secs(5)), (0.5, Some(5)));
        p.done(0, 100);
        assert_eq!(estimate(&p, Duration::from_secs(5)), (1.0, Some(0)));
    }
}
