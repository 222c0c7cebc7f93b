//! Lock-free progress counters an operation updates and a display may poll, and the messages
//! (errors, verbose lines) it reports while it runs.
//!
//! A struct, not a trait: every operation only adds to counters, and a display (the CLI's bar,
//! its JSON status stream, or a library caller's) reads them from another thread whenever it
//! likes; a trait would add dynamic calls on the hot path and still need these counters behind
//! it. Messages are kept only when the caller asked for them ([`Progress::with_messages`]), so
//! a caller that never drains them holds no growing queue.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Something an operation reports as it happens (the `--json` stream's `error` and
/// `verbose_status` messages).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "message_type", rename_all = "snake_case")]
pub enum Message {
    /// An item (file, pack, snapshot) could not be handled; the operation goes on.
    Error {
        /// What it concerns (a path, or an object such as `pack 3fa2…`).
        item: String,
        /// What went wrong.
        error: String,
    },
    /// An item was handled (only collected with verbose messages on).
    VerboseStatus {
        /// What was done (`read`, `restored`, ...).
        action: &'static str,
        /// The item (a path).
        item: String,
        /// Bytes it took.
        bytes: u64,
    },
}

/// Counters of work done and known; all relaxed atomics.
#[derive(Default, Debug)]
pub struct Progress {
    /// Items (files, packs, blobs) finished.
    pub items_done: AtomicU64,
    /// Items known so far.
    pub items_total: AtomicU64,
    /// Bytes finished.
    pub bytes_done: AtomicU64,
    /// Bytes known so far.
    pub bytes_total: AtomicU64,
    /// Items that failed (also reported as [`Message::Error`] when messages are kept).
    pub errors: AtomicU64,
    /// Whether a display wants the totals before the work starts: `backup` then counts its
    /// sources in a quick metadata walk of its own, so that the totals are known early (its
    /// main walk runs only a bounded queue ahead of the readers).
    pub count_first: bool,
    /// 0: keep no messages; 1: errors; 2: errors and verbose lines.
    keep: u8,
    messages: Mutex<Vec<Message>>,
    current: Mutex<String>,
}

impl Progress {
    /// Counters that also keep messages for [`Progress::take_messages`]: errors, and with
    /// `verbose` one line per item handled.
    pub fn with_messages(verbose: bool) -> Progress {
        Progress {
            keep: 1 + verbose as u8,
            ..Progress::default()
        }
    }

    /// These counters with [`Progress::count_first`] set to `yes`.
    pub fn counting_first(self, yes: bool) -> Progress {
        Progress {
            count_first: yes,
            ..self
        }
    }

    /// Adds to the done counters.
    pub fn done(&self, items: u64, bytes: u64) {
        self.items_done.fetch_add(items, Ordering::Relaxed);
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Adds to the known totals.
    pub fn total(&self, items: u64, bytes: u64) {
        self.items_total.fetch_add(items, Ordering::Relaxed);
        self.bytes_total.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Raises the known totals to at least these.
    pub fn total_at_least(&self, items: u64, bytes: u64) {
        self.items_total.fetch_max(items, Ordering::Relaxed);
        self.bytes_total.fetch_max(bytes, Ordering::Relaxed);
    }

    /// Sets the known totals (once they are exact).
    pub fn set_total(&self, items: u64, bytes: u64) {
        self.items_total.store(items, Ordering::Relaxed);
        self.bytes_total.store(bytes, Ordering::Relaxed);
    }

    /// (items done, items total, bytes done, bytes total).
    pub fn get(&self) -> (u64, u64, u64, u64) {
        (
            self.items_done.load(Ordering::Relaxed),
            self.items_total.load(Ordering::Relaxed),
            self.bytes_done.load(Ordering::Relaxed),
            self.bytes_total.load(Ordering::Relaxed),
        )
    }

    /// Reports an item that failed.
    pub fn error(&self, item: impl std::fmt::Display, error: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if self.keep >= 1 {
            self.push(Message::Error {
                item: item.to_string(),
                error: error.to_string(),
            });
        }
    }

    /// Whether verbose lines are kept (a caller may skip building them otherwise).
    pub fn verbose_wanted(&self) -> bool {
        self.keep >= 2
    }

    /// Reports an item handled (kept only when verbose lines are wanted).
    pub fn verbose(&self, action: &'static str, item: impl std::fmt::Display, bytes: u64) {
        if self.verbose_wanted() {
            self.push(Message::VerboseStatus {
                action,
                item: item.to_string(),
                bytes,
            });
        }
    }

    fn push(&self, m: Message) {
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(m);
    }

    /// The messages reported since the last call, oldest first.
    pub fn take_messages(&self) -> Vec<Message> {
        std::mem::take(&mut *self.messages.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Names the item being worked on (a display shows it only if the user asked for names).
    pub fn set_current(&self, item: impl std::fmt::Display) {
        let mut c = self.current.lock().unwrap_or_else(|e| e.into_inner());
        c.clear();
        use std::fmt::Write;
        let _ = write!(c, "{item}");
    }

    /// The item last named by [`Progress::set_current`].
    pub fn current(&self) -> String {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
