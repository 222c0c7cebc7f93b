//! Which paths under the watched root changed, and since when: file-system events (inotify via
//! `notify`) fill a set of pending changes that a cycle takes and, when it fails, gives back.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher};

/// Changes not yet in a snapshot: per path the instant of its first uncaptured change, and
/// whether a full scan is owed (start, `--rescan`, a lost event queue).
#[derive(Debug, Default)]
pub struct Pending {
    /// Changed paths (relative to the root) and when each first changed.
    pub paths: HashMap<PathBuf, Instant>,
    /// A full scan is owed since this instant.
    pub scan: Option<Instant>,
}

impl Pending {
    /// Whether nothing is owed.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.scan.is_none()
    }

    /// The instant of the oldest change owed.
    pub fn oldest(&self) -> Option<Instant> {
        self.paths.values().copied().chain(self.scan).min()
    }

    /// Records a change of `path` at `at` (an earlier record stays).
    pub fn touch(&mut self, path: PathBuf, at: Instant) {
        self.paths.entry(path).or_insert(at);
    }

    /// Owes a full scan from `at` (an earlier one stays).
    pub fn owe_scan(&mut self, at: Instant) {
        self.scan = Some(self.scan.map_or(at, |s| s.min(at)));
    }

    /// Gives back what a failed cycle took, keeping the earliest instants.
    pub fn restore(&mut self, taken: Pending) {
        for (p, at) in taken.paths {
            let e = self.paths.entry(p).or_insert(at);
            *e = (*e).min(at);
        }
        if let Some(at) = taken.scan {
            self.owe_scan(at);
        }
    }
}

/// File-system events under one root; `None` inside when the system refused to watch it
/// (then only scans find changes).
pub struct Events {
    root: PathBuf,
    rx: Receiver<notify::Result<notify::Event>>,
    // Kept alive for as long as events are wanted; dropping it stops them.
    _watcher: Option<notify::RecommendedWatcher>,
}

impl Events {
    /// Watches `root` recursively. A refusal (no inotify, too many watches) is returned as the
    /// message why, with an `Events` that reports nothing.
    pub fn watch(root: &Path) -> (Events, Option<String>) {
        let (tx, rx) = channel();
        let mut why = None;
        let watcher = match notify::recommended_watcher(tx) {
            Ok(mut w) => match w.watch(root, RecursiveMode::Recursive) {
                Ok(()) => Some(w),
                Err(e) => {
                    why = Some(e.to_string());
                    None
                }
            },
            Err(e) => {
                why = Some(e.to_string());
                None
            }
        };
        let events = Events {
            root: root.to_path_buf(),
            rx,
            _watcher: watcher,
        };
        (events, why)
    }

    /// Waits until `until` at most, recording every change that arrives into `pending`;
    /// returns early once something arrived (then only what is already queued is taken).
    pub fn collect(&self, pending: &mut Pending, until: Instant) {
        let mut wait = until.saturating_duration_since(Instant::now());
        loop {
            let ev = match self.rx.recv_timeout(wait) {
                Ok(ev) => ev,
                Err(RecvTimeoutError::Timeout) => return,
                // No watcher (refused): nothing will ever come; wait out the time.
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(until.saturating_duration_since(Instant::now()));
                    return;
                }
            };
            self.record(ev, pending);
            wait = Duration::ZERO;
        }
    }

    fn record(&self, ev: notify::Result<notify::Event>, pending: &mut Pending) {
        let now = Instant::now();
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(error = %e, "file-system events lost; scanning everything");
                pending.owe_scan(now);
                return;
            }
        };
        if ev.need_rescan() {
            tracing::warn!("file-system event queue overflowed; scanning everything");
            pending.owe_scan(now);
            return;
        }
        // Our own reads (and anyone's) change nothing.
        if matches!(ev.kind, EventKind::Access(_)) {
            return;
        }
        for p in ev.paths {
            if is_temporary(&p) {
                continue;
            }
            let rel = p.strip_prefix(&self.root).unwrap_or(&p).to_path_buf();
            pending.touch(rel, now);
        }
    }
}

/// HydrAIDE's temporaries (`*.hyd.compact`, `*.hyd.fmtmigrate`): backup skips them, and their
/// rename into place is the change that counts.
fn is_temporary(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".hyd.compact") || n.ends_with(".hyd.fmtmigrate"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_keeps_the_earliest_instant() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut p = Pending::default();
        assert!(p.is_empty());
        p.touch("a".into(), t1);
        p.touch("a".into(), t0 + Duration::from_secs(5));
        let taken = std::mem::take(&mut p);
        p.touch("a".into(), t1 + Duration::from_secs(3));
        p.owe_scan(t1);
        p.restore(taken);
        assert_eq!(p.paths[Path::new("a")], t1);
        assert_eq!(p.oldest(), Some(t1));
        p.owe_scan(t0);
        assert_eq!(p.oldest(), Some(t0));
        assert!(is_temporary(Path::new("x/1.hyd.compact")));
        assert!(!is_temporary(Path::new("x/1.hyd")));
    }
}
