//! Repository locks: `locks/<hash>` objects naming host, pid and a refreshed time.
//!
//! Backups, restores, verifies and forgets take shared locks; a two-phase prune and `key
//! remove`/`passwd` take deleting locks (shared with everyone but other deleters); `prune
//! --instant-delete` takes an exclusive one. A lock is stale when its time is older than [`STALE_AFTER`] or when its
//! owner is a process on this host that no longer runs; stale locks are ignored and removed by
//! `unlock`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, FileKind};
use crate::crypto::SealKey;
use crate::repo::object;
use crate::{Error, Id, Result};

/// Age after which an unrefreshed lock is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How often a held lock is refreshed.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

/// A lock record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    /// Exclusive (deleting) or shared.
    pub exclusive: bool,
    /// Host of the owner.
    pub host: String,
    /// Process id of the owner.
    pub pid: u32,
    /// User of the owner.
    pub user: String,
    /// Last refresh, unix seconds.
    pub time: i64,
    /// What the owner is doing.
    pub purpose: String,
    /// Held by a deleter (two-phase prune, key removal): conflicts only with other deleters
    /// and exclusive locks.
    #[serde(default)]
    pub deleting: bool,
    /// When the owner took the lock (unix seconds; kept across refreshes; 0 when unknown,
    /// which counts as "before anything").
    #[serde(default)]
    pub created: i64,
}

/// What a lock allows others to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// Readers and writers of new objects (backup, restore, verify, forget): many at once.
    Shared,
    /// A deleter that backups may run beside (two-phase prune, key removal): one at a time.
    Deleting,
    /// Nothing else may run (`prune --instant-delete`).
    Exclusive,
}

impl LockInfo {
    /// Whether this lock and a wanted lock of `kind` exclude each other.
    fn conflicts(&self, kind: LockKind) -> bool {
        self.exclusive
            || kind == LockKind::Exclusive
            || (self.deleting && kind == LockKind::Deleting)
    }

    /// Whether this lock belongs to the calling process.
    pub fn is_mine(&self) -> bool {
        self.pid == std::process::id() && self.host == crate::sys::hostname()
    }
}

impl LockInfo {
    /// Whether the lock no longer protects anything.
    pub fn is_stale(&self) -> bool {
        let age = jiff::Timestamp::now().as_second() - self.time;
        if age > STALE_AFTER.as_secs() as i64 {
            return true;
        }
        if self.host == crate::sys::hostname() {
            // SAFETY: kill(pid, 0) only checks for existence; no memory is touched.
            let alive = unsafe { libc::kill(self.pid as libc::pid_t, 0) } == 0
                || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
            return !alive;
        }
        false
    }

    /// One line for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} lock held by pid {} on {} ({}), last refreshed {}",
            if self.exclusive {
                "exclusive"
            } else if self.deleting {
                "deleting"
            } else {
                "shared"
            },
            self.pid,
            self.host,
            self.purpose,
            jiff::Timestamp::from_second(self.time).unwrap_or_default()
        )
    }

    /// Why this (live) lock refuses us, and what the user can do about it.
    pub fn refusal(&self) -> String {
        if self.host == crate::sys::hostname() {
            return format!(
                "{}; that process is still running: wait for it to finish",
                self.describe()
            );
        }
        let stale_at =
            jiff::Timestamp::from_second(self.time.saturating_add(STALE_AFTER.as_secs() as i64))
                .unwrap_or_default();
        format!(
            "{}; a lock from another host is refreshed every {} minutes while its process runs \
             and counts as stale (ignored, and removed by `hydrabackup unlock`) from {stale_at} \
             if it is not; if that process is gone, `hydrabackup unlock --remove-all` removes it now",
            self.describe(),
            REFRESH_EVERY.as_secs() / 60
        )
    }
}

/// Lists all locks; unreadable ones are reported as `None` (another key may have written them,
/// or they are damaged).
pub fn list(backend: &dyn Backend, key: &SealKey) -> Result<Vec<(String, Option<LockInfo>)>> {
    let mut out = Vec::new();
    for (name, size) in backend.list(FileKind::Lock)? {
        let info = match object::read_capped(backend, FileKind::Lock, &name, Some(size)) {
            Ok(b) => {
                object::open_limited::<LockInfo>(key, &b, "lock", object::max_size(FileKind::Lock))
                    .ok()
            }
            Err(Error::Backend { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                continue;
            }
            Err(Error::Corrupt { .. }) => None,
            Err(e) => return Err(e),
        };
        out.push((name, info));
    }
    Ok(out)
}

struct Shared {
    backend: Arc<dyn Backend>,
    key: SealKey,
    info: std::sync::Mutex<(LockInfo, String)>,
    stop: AtomicBool,
}

/// A held lock; refreshed in the background and removed on drop.
pub struct LockGuard {
    shared: Arc<Shared>,
    refresher: Option<JoinHandle<()>>,
}

fn write_lock(backend: &dyn Backend, key: &SealKey, info: &LockInfo) -> Result<String> {
    let bytes = object::seal(key, info);
    let name = Id::of_stored(&bytes).to_hex();
    backend.write(FileKind::Lock, &name, &bytes)?;
    Ok(name)
}

/// Takes a lock, failing with [`Error::Locked`] if a live conflicting lock exists.
pub fn acquire(
    backend: Arc<dyn Backend>,
    key: &SealKey,
    kind: LockKind,
    purpose: &str,
) -> Result<LockGuard> {
    let conflict = |me: Option<&str>| -> Result<Option<LockInfo>> {
        for (name, info) in list(backend.as_ref(), key)? {
            if Some(name.as_str()) == me {
                continue;
            }
            if let Some(i) = info
                && !i.is_stale()
                && i.conflicts(kind)
            {
                return Ok(Some(i));
            }
        }
        Ok(None)
    };
    if let Some(i) = conflict(None)? {
        return Err(Error::Locked(i.refusal()));
    }
    let now = jiff::Timestamp::now().as_second();
    let info = LockInfo {
        exclusive: kind == LockKind::Exclusive,
        host: crate::sys::hostname(),
        pid: std::process::id(),
        user: crate::sys::username(),
        time: now,
        purpose: purpose.to_string(),
        deleting: kind == LockKind::Deleting,
        created: now,
    };
    let name = write_lock(backend.as_ref(), key, &info)?;
    // Re-check after writing: of two racing lockers at least one sees the other.
    if let Some(i) = conflict(Some(&name))? {
        let _ = backend.remove(FileKind::Lock, &name);
        return Err(Error::Locked(i.refusal()));
    }
    let shared = Arc::new(Shared {
        backend,
        key: key.clone(),
        info: std::sync::Mutex::new((info, name)),
        stop: AtomicBool::new(false),
    });
    let s2 = shared.clone();
    let refresher = std::thread::spawn(move || {
        let step = Duration::from_millis(500);
        let mut waited = Duration::ZERO;
        while !s2.stop.load(Ordering::Relaxed) {
            std::thread::park_timeout(step);
            waited += step;
            if waited < REFRESH_EVERY {
                continue;
            }
            waited = Duration::ZERO;
            let mut g = s2.info.lock().expect("lock state");
            g.0.time = jiff::Timestamp::now().as_second();
            match write_lock(s2.backend.as_ref(), &s2.key, &g.0) {
                Ok(new) => {
                    let old = std::mem::replace(&mut g.1, new);
                    let _ = s2.backend.remove(FileKind::Lock, &old);
                }
                Err(e) => tracing::warn!("could not refresh the repository lock: {e}"),
            }
        }
    });
    Ok(LockGuard {
        shared,
        refresher: Some(refresher),
    })
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.refresher.take() {
            h.thread().unpark();
            let _ = h.join();
        }
        let g = self.shared.info.lock().expect("lock state");
        let _ = self.shared.backend.remove(FileKind::Lock, &g.1);
    }
}

/// The earliest creation time of the live locks other processes hold (`None`: there are
/// none). Locks that do not open count as created at time 0: they may belong to anyone.
pub fn oldest_other(backend: &dyn Backend, key: &SealKey) -> Result<Option<i64>> {
    let mut oldest: Option<i64> = None;
    for (_, info) in list(backend, key)? {
        let created = match info {
            Some(i) if i.is_stale() || i.is_mine() => continue,
            Some(i) => i.created,
            None => 0,
        };
        oldest = Some(oldest.map_or(created, |o| o.min(created)));
    }
    Ok(oldest)
}

/// Removes stale locks (or all locks with `all`); returns the names removed.
pub fn unlock(backend: &dyn Backend, key: &SealKey, all: bool) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for (name, info) in list(backend, key)? {
        let stale = info.as_ref().is_none_or(|i| i.is_stale());
        if all || stale {
            backend.remove(FileKind::Lock, &name)?;
            removed.push(name);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleters_exclude_each_other_and_nothing_else() {
        let held = |exclusive, deleting| LockInfo {
            exclusive,
            host: "h".into(),
            pid: 1,
            user: "u".into(),
            time: 0,
            purpose: "p".into(),
            deleting,
            created: 0,
        };
        let shared = held(false, false);
        let deleting = held(false, true);
        let exclusive = held(true, false);
        assert!(!shared.conflicts(LockKind::Shared));
        assert!(!shared.conflicts(LockKind::Deleting));
        assert!(shared.conflicts(LockKind::Exclusive));
        assert!(!deleting.conflicts(LockKind::Shared));
        assert!(deleting.conflicts(LockKind::Deleting));
        assert!(deleting.conflicts(LockKind::Exclusive));
        for k in [LockKind::Shared, LockKind::Deleting, LockKind::Exclusive] {
            assert!(exclusive.conflicts(k));
        }
    }
}
