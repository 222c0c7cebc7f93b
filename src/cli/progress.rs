//! Terminal progress: an indicatif bar that polls an operation's counters, shown only when
//! stderr is a terminal and neither --quiet nor --json is set.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use hydrabackup::ops::progress::Progress;
use indicatif::{ProgressBar, ProgressStyle};

/// A running display; stopped on drop.
pub struct Display {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

/// Starts a display for `p` if the terminal wants one.
pub fn start(p: Arc<Progress>, label: &'static str, enabled: bool) -> Display {
    let stop = Arc::new(AtomicBool::new(false));
    if !enabled || !std::io::stderr().is_terminal() {
        return Display { stop, handle: None };
    }
    let s2 = stop.clone();
    let handle = std::thread::spawn(move || {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
            )
            .expect("valid template"),
        );
        bar.set_prefix(label);
        while !s2.load(Ordering::Relaxed) {
            let (i, it, b, bt) = p.get();
            bar.set_length(bt.max(b));
            bar.set_position(b);
            bar.set_message(format!("{i}/{it} items"));
            std::thread::park_timeout(Duration::from_millis(150));
        }
        bar.finish_and_clear();
    });
    Display {
        stop,
        handle: Some(handle),
    }
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
