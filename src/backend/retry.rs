//! The one retry layer: a [`Backend`] around any backend that repeats an operation whose
//! failure the backend marked as transient ([`Error::is_transient`]), with exponential back-off.
//! Backends themselves never loop.

use std::time::Duration;

use super::{Backend, FileKind};
use crate::{Error, Result};

/// How a failed operation is repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryOptions {
    /// Tries per operation, the first included (1 = never repeat).
    pub attempts: u32,
    /// Wait before the first repetition; doubled before each further one.
    pub backoff: Duration,
}

impl Default for RetryOptions {
    /// Five tries, waiting 0.2, 0.4, 0.8 and 1.6 s between them.
    fn default() -> Self {
        RetryOptions {
            attempts: 5,
            backoff: Duration::from_millis(200),
        }
    }
}

/// A backend whose transient failures are retried.
#[derive(Debug)]
pub struct Retry<B> {
    inner: B,
    opts: RetryOptions,
}

impl<B: Backend> Retry<B> {
    /// `inner`, retried as `opts` says.
    pub fn new(inner: B, opts: RetryOptions) -> Retry<B> {
        Retry { inner, opts }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// Runs `op` until it succeeds, fails permanently or has had its attempts; `op` is told
    /// whether it repeats a failed attempt.
    fn run<T>(&self, mut op: impl FnMut(bool) -> Result<T>) -> Result<T> {
        let mut delay = self.opts.backoff;
        let mut attempt = 1;
        loop {
            match op(attempt > 1) {
                Err(e) if e.is_transient() && attempt < self.opts.attempts => {
                    tracing::debug!(attempt, error = %e, "transient storage failure, retrying");
                    std::thread::sleep(delay);
                    delay = delay.saturating_mul(2);
                    attempt += 1;
                }
                r => return r,
            }
        }
    }
}

fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::Backend { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

impl<B: Backend> Backend for Retry<B> {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn exists(&self) -> Result<bool> {
        self.run(|_| self.inner.exists())
    }

    fn create(&self) -> Result<()> {
        self.run(|_| self.inner.create())
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        self.run(|_| self.inner.list(kind))
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        self.run(|_| self.inner.read(kind, name))
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.run(|_| self.inner.read_range(kind, name, offset, len))
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        // Objects are never replaced, so repeating a write that may have landed is harmless.
        self.run(|_| self.inner.write(kind, name, data))
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<()> {
        self.run(|again| match self.inner.remove(kind, name) {
            // An earlier attempt removed it before its answer was lost.
            Err(e) if again && is_not_found(&e) => Ok(()),
            r => r,
        })
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        self.run(|_| self.inner.size(kind, name))
    }

    fn remove_stale_temporaries(&self) -> Result<u64> {
        self.run(|_| self.inner.remove_stale_temporaries())
    }

    fn is_local(&self) -> bool {
        self.inner.is_local()
    }

    fn set_object_lock(&self, lock: Option<super::ObjectLock>) -> Result<()> {
        self.inner.set_object_lock(lock)
    }

    fn retention(&self, kind: FileKind, name: &str) -> Result<Option<jiff::Timestamp>> {
        self.run(|_| self.inner.retention(kind, name))
    }

    fn extend_retention(&self, kind: FileKind, name: &str, until: jiff::Timestamp) -> Result<()> {
        self.run(|_| self.inner.extend_retention(kind, name, until))
    }

    fn purge_hidden(&self) -> Result<super::Purged> {
        // Each step is repeated inside; a failed purge is redone by the next prune.
        self.inner.purge_hidden()
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Mutex;

    use super::*;
    use crate::backend::MemoryBackend;

    /// A memory backend whose next operations fail with the errors queued in `fail`.
    struct Flaky {
        inner: MemoryBackend,
        fail: Mutex<Vec<Error>>,
        calls: Mutex<u32>,
    }

    impl Flaky {
        fn new(fail: Vec<Error>) -> Flaky {
            Flaky {
                inner: MemoryBackend::new(),
                fail: Mutex::new(fail),
                calls: Mutex::new(0),
            }
        }

        fn step(&self) -> Result<()> {
            *self.calls.lock().unwrap() += 1;
            match self.fail.lock().unwrap().pop() {
                Some(e) => Err(e),
                None => Ok(()),
            }
        }

        fn calls(&self) -> u32 {
            *self.calls.lock().unwrap()
        }
    }

    impl Backend for Flaky {
        fn location(&self) -> String {
            "flaky".into()
        }
        fn exists(&self) -> Result<bool> {
            self.step()?;
            self.inner.exists()
        }
        fn create(&self) -> Result<()> {
            self.step()?;
            self.inner.create()
        }
        fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
            self.step()?;
            self.inner.list(kind)
        }
        fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
            self.step()?;
            self.inner.read(kind, name)
        }
        fn read_range(&self, kind: FileKind, name: &str, off: u64, len: u64) -> Result<Vec<u8>> {
            self.step()?;
            self.inner.read_range(kind, name, off, len)
        }
        fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
            self.step()?;
            self.inner.write(kind, name, data)
        }
        fn remove(&self, kind: FileKind, name: &str) -> Result<()> {
            // The removal happens, then the answer is lost.
            let r = self.inner.remove(kind, name);
            self.step()?;
            r
        }
        fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
            self.step()?;
            self.inner.size(kind, name)
        }
    }

    fn transient() -> Error {
        Error::Backend {
            op: "read",
            name: "x".into(),
            source: io::Error::new(io::ErrorKind::ConnectionReset, "reset"),
            transient: true,
        }
    }

    fn fast(attempts: u32) -> RetryOptions {
        RetryOptions {
            attempts,
            backoff: Duration::from_millis(1),
        }
    }

    #[test]
    fn transient_failures_are_retried_until_success() {
        let b = Retry::new(Flaky::new(vec![transient(), transient()]), fast(5));
        b.inner()
            .inner
            .write(FileKind::Config, "config", b"c")
            .unwrap();
        assert_eq!(b.read(FileKind::Config, "config").unwrap(), b"c");
        assert_eq!(b.inner().calls(), 3);
    }

    #[test]
    fn attempts_are_bounded() {
        let b = Retry::new(Flaky::new((0..9).map(|_| transient()).collect()), fast(3));
        let e = b.list(FileKind::Index).unwrap_err();
        assert!(e.is_transient(), "{e}");
        assert_eq!(b.inner().calls(), 3);
    }

    #[test]
    fn permanent_failures_are_not_retried() {
        let denied = Error::backend(
            "read",
            "x",
            io::Error::new(io::ErrorKind::PermissionDenied, "no"),
        );
        let b = Retry::new(Flaky::new(vec![denied]), fast(5));
        assert!(b.read(FileKind::Config, "config").is_err());
        assert_eq!(b.inner().calls(), 1);
        // A missing object is permanent too.
        let b = Retry::new(Flaky::new(vec![]), fast(5));
        assert!(b.read(FileKind::Config, "config").is_err());
        assert_eq!(b.inner().calls(), 1);
    }

    #[test]
    fn a_removal_whose_answer_was_lost_succeeds() {
        let b = Retry::new(Flaky::new(vec![transient()]), fast(5));
        let name = "ab".repeat(32);
        b.inner().inner.write(FileKind::Lock, &name, b"l").unwrap();
        b.remove(FileKind::Lock, &name).unwrap();
        assert!(b.list(FileKind::Lock).unwrap().is_empty());
        // Without a lost answer, removing what is not there is still an error.
        assert!(b.remove(FileKind::Lock, &name).is_err());
    }
}
