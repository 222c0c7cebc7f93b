//! Bandwidth limits (`--limit-upload`, `--limit-download`): a [`Backend`] around another that
//! passes the bytes of writes and reads through token buckets. A transfer takes its bytes from
//! the bucket at once and, when that leaves the bucket in debt, sleeps until the debt is paid,
//! so over any run the bytes moved are at most `rate × seconds + burst` (one second's worth).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Backend, FileKind};
use crate::Result;

/// Bytes per second for each direction (`None`: unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Writes to the repository.
    pub upload: Option<u64>,
    /// Reads from the repository.
    pub download: Option<u64>,
}

/// A token bucket: `rate` bytes a second, holding at most one second's worth.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    /// Tokens (bytes) available; negative: a debt being slept off.
    tokens: f64,
    last: Instant,
    /// Bytes taken in all.
    taken: u64,
}

impl Bucket {
    /// A full bucket for `rate` bytes a second (at least 1).
    pub fn new(rate: u64) -> Bucket {
        let rate = rate.max(1) as f64;
        Bucket {
            rate,
            state: Mutex::new(BucketState {
                tokens: rate,
                last: Instant::now(),
                taken: 0,
            }),
        }
    }

    /// Takes `n` bytes; returns how long the caller must wait before moving them on.
    pub fn take(&self, n: u64) -> Duration {
        let mut s = self.state.lock().expect("bucket");
        let now = Instant::now();
        let refill = now.duration_since(s.last).as_secs_f64() * self.rate;
        s.tokens = (s.tokens + refill).min(self.rate);
        s.last = now;
        s.tokens -= n as f64;
        s.taken += n;
        if s.tokens < 0.0 {
            Duration::from_secs_f64(-s.tokens / self.rate)
        } else {
            Duration::ZERO
        }
    }

    /// Takes `n` bytes, sleeping off any debt.
    pub fn pass(&self, n: u64) {
        let wait = self.take(n);
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// Bytes taken so far.
    pub fn taken(&self) -> u64 {
        self.state.lock().expect("bucket").taken
    }
}

/// A backend whose transfers are limited.
pub struct Limited {
    inner: Box<dyn Backend>,
    up: Option<Bucket>,
    down: Option<Bucket>,
}

impl Limited {
    /// `inner` with `limits`; unlimited both ways it is returned as it is.
    pub fn wrap(inner: Box<dyn Backend>, limits: Limits) -> Box<dyn Backend> {
        if limits == Limits::default() {
            return inner;
        }
        Box::new(Limited {
            inner,
            up: limits.upload.map(Bucket::new),
            down: limits.download.map(Bucket::new),
        })
    }
}

impl Backend for Limited {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn exists(&self) -> Result<bool> {
        self.inner.exists()
    }
    fn create(&self) -> Result<()> {
        self.inner.create()
    }
    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        self.inner.list(kind)
    }
    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let b = self.inner.read(kind, name)?;
        if let Some(d) = &self.down {
            d.pass(b.len() as u64);
        }
        Ok(b)
    }
    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        if let Some(d) = &self.down {
            d.pass(len);
        }
        self.inner.read_range(kind, name, offset, len)
    }
    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        if let Some(u) = &self.up {
            u.pass(data.len() as u64);
        }
        self.inner.write(kind, name, data)
    }
    fn remove(&self, kind: FileKind, name: &str) -> Result<()> {
        self.inner.remove(kind, name)
    }
    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        self.inner.size(kind, name)
    }
    fn remove_stale_temporaries(&self) -> Result<u64> {
        self.inner.remove_stale_temporaries()
    }
    fn is_local(&self) -> bool {
        self.inner.is_local()
    }
    fn set_object_lock(&self, lock: Option<super::ObjectLock>) -> Result<()> {
        self.inner.set_object_lock(lock)
    }
    fn retention(&self, kind: FileKind, name: &str) -> Result<Option<jiff::Timestamp>> {
        self.inner.retention(kind, name)
    }
    fn extend_retention(&self, kind: FileKind, name: &str, until: jiff::Timestamp) -> Result<()> {
        self.inner.extend_retention(kind, name, until)
    }
    fn purge_hidden(&self) -> Result<super::Purged> {
        self.inner.purge_hidden()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debt_is_what_was_taken_beyond_the_burst() {
        let b = Bucket::new(1000);
        // The first second's worth passes at once; beyond it each byte costs 1 ms.
        assert_eq!(b.take(1000), Duration::ZERO);
        let wait = b.take(500);
        assert!(
            wait >= Duration::from_millis(450) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert_eq!(b.taken(), 1500);
    }
}
