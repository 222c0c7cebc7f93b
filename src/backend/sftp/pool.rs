//! Up to [`MAX_CONNECTIONS`] connections, opened as threads need them and kept for reuse.
//! libssh2 serialises the operations of one session, so parallel reads need separate
//! connections.

use std::sync::{Condvar, Mutex, MutexGuard};

use super::conn::{Conn, Connector};
use super::fail::Fail;
use crate::{Error, Result};

/// SSH connections kept open at most (each carries one SFTP channel).
pub const MAX_CONNECTIONS: usize = 4;

struct State {
    idle: Vec<Conn>,
    open: usize,
}

/// The connections to one server.
pub(super) struct Pool {
    pub(super) connector: Connector,
    state: Mutex<State>,
    freed: Condvar,
}

impl Pool {
    /// A pool that starts with `first` (opened by the caller to check the server at once).
    pub(super) fn new(connector: Connector, first: Conn) -> Pool {
        Pool {
            connector,
            state: Mutex::new(State {
                idle: vec![first],
                open: 1,
            }),
            freed: Condvar::new(),
        }
    }

    /// How many connections are open now (idle or in use).
    pub(super) fn open(&self) -> usize {
        self.state().open
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the pool inconsistent (push/pop and a
        // counter), so a poisoned lock is taken over.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on a pooled connection. A transport failure drops that connection and every
    /// idle one (a server that went away took them all), and is transient: the retry layer
    /// repeats the operation on a fresh connection.
    pub(super) fn with<T>(
        &self,
        op: &'static str,
        name: &str,
        f: impl FnOnce(&mut Conn) -> Result<T, Fail>,
    ) -> Result<T> {
        let mut c = self.take()?;
        let result = f(&mut c);
        let fatal = matches!(&result, Err(e) if e.fatal());
        if fatal {
            let idle = std::mem::take(&mut self.state().idle);
            for dead in std::iter::once(c).chain(idle) {
                drop(dead);
                self.discard_slot();
            }
        } else {
            self.give(c);
        }
        result.map_err(|e| Error::Backend {
            op,
            name: format!("{}:{name}", self.connector.peer),
            source: e.into_io(),
            transient: fatal,
        })
    }

    /// Drops the open handles of `name` held by idle connections (it was removed).
    pub(super) fn forget_handle(&self, name: &str) {
        for c in self.state().idle.iter_mut() {
            c.handles.retain(|(n, _, _)| n != name);
        }
    }

    /// An idle connection, or a new one while fewer than the maximum are open.
    fn take(&self) -> Result<Conn> {
        let mut st = self.state();
        loop {
            if let Some(c) = st.idle.pop() {
                return Ok(c);
            }
            if st.open < MAX_CONNECTIONS {
                st.open += 1;
                drop(st);
                return self
                    .connector
                    .connect()
                    .inspect_err(|_| self.discard_slot());
            }
            st = self.freed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn give(&self, c: Conn) {
        self.state().idle.push(c);
        self.freed.notify_one();
    }

    fn discard_slot(&self) {
        let mut st = self.state();
        st.open = st.open.saturating_sub(1);
        drop(st);
        self.freed.notify_one();
    }
}
