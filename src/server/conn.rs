//! Connections of the REST server: a fixed number of slots, a short queue (in arrival order) for
//! connections that find them taken, idle connections giving way to waiting ones, and deadlines
//! on reads, so that no client holds a slot by saying nothing or by saying it slowly.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Longest wait for one read of a request body or one write of an answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a kept-alive connection may wait for its next request.
pub const KEEP_ALIVE: Duration = Duration::from_secs(60);

/// A TCP stream whose reads fail once a deadline has passed (not merely after a pause: a client
/// sending a byte at a time cannot stretch it).
pub struct Timed {
    tcp: TcpStream,
    deadline: Option<Instant>,
}

impl Timed {
    /// Wraps `tcp`, without a deadline: each read and write may wait [`IO_TIMEOUT`].
    pub fn new(tcp: TcpStream) -> io::Result<Timed> {
        tcp.set_read_timeout(Some(IO_TIMEOUT))?;
        tcp.set_write_timeout(Some(IO_TIMEOUT))?;
        tcp.set_nodelay(true)?;
        Ok(Timed {
            tcp,
            deadline: None,
        })
    }
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(at) = self.deadline {
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
            }
            self.tcp.set_read_timeout(Some(left.min(IO_TIMEOUT)))?;
        }
        self.tcp.read(buf)
    }
}

impl Write for Timed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// A connection, plain or TLS, whose reads can be given a deadline.
pub trait Conn: Read + Write {
    /// Reads fail after `at`; `None`: each read may wait [`IO_TIMEOUT`].
    fn set_deadline(&mut self, at: Option<Instant>);
    /// Ends the conversation politely (TLS: close_notify).
    fn finish(&mut self) {}
}

impl Conn for Timed {
    fn set_deadline(&mut self, at: Option<Instant>) {
        self.deadline = at;
        if at.is_none() {
            let _ = self.tcp.set_read_timeout(Some(IO_TIMEOUT));
        }
    }
}

impl Conn for rustls::StreamOwned<rustls::ServerConnection, Timed> {
    fn set_deadline(&mut self, at: Option<Instant>) {
        self.sock.set_deadline(at);
    }

    fn finish(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush();
    }
}

/// The connection slots.
pub struct Slots {
    max: usize,
    wait: Duration,
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    next: u64,
    /// Connections waiting for a slot, oldest first.
    queue: VecDeque<(u64, TcpStream)>,
    served: HashMap<u64, Served>,
}

struct Served {
    /// A handle to shut the connection down with.
    tcp: TcpStream,
    /// Since when the connection waits for a request (`None` while one is served).
    idle_since: Option<Instant>,
    /// Shut down to make room; its slot is freed when its thread notices.
    evicted: bool,
}

/// A served connection's slot, given back on drop.
pub struct Slot<'a> {
    slots: &'a Slots,
    id: u64,
}

impl Slots {
    /// `max` slots; a connection waits at most `wait` for one. As many connections as there
    /// are slots may wait; more are closed at once.
    pub fn new(max: usize, wait: Duration) -> Slots {
        Slots {
            max: max.max(1),
            wait,
            state: Mutex::new(State {
                next: 0,
                queue: VecDeque::new(),
                served: HashMap::new(),
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a new connection and makes room for it by closing the connection idle longest if
    /// need be; `None` when the queue is full too (the caller closes the connection).
    pub fn arrive(&self, tcp: &TcpStream) -> Option<u64> {
        let handle = tcp.try_clone().ok()?;
        let mut st = self.lock();
        if st.served.len() + st.queue.len() >= 2 * self.max {
            return None;
        }
        let id = st.next;
        st.next += 1;
        st.queue.push_back((id, handle));
        self.make_room(&mut st);
        Some(id)
    }

    /// Shuts idle connections down, longest idle first, until every waiting connection has a
    /// slot free or being freed.
    fn make_room(&self, st: &mut State) {
        loop {
            let leaving = st.served.values().filter(|s| s.evicted).count();
            if self.max.saturating_sub(st.served.len()) + leaving >= st.queue.len() {
                return;
            }
            let oldest = st
                .served
                .values_mut()
                .filter(|s| !s.evicted)
                .filter_map(|s| s.idle_since.map(|t| (t, s)))
                .min_by_key(|(t, _)| *t);
            let Some((_, s)) = oldest else { return };
            s.evicted = true;
            let _ = s.tcp.shutdown(Shutdown::Both);
        }
    }

    /// Takes connection `id` (from [`Slots::arrive`]) out of the queue unserved.
    pub fn withdraw(&self, id: u64) {
        self.lock().queue.retain(|(q, _)| *q != id);
        self.changed.notify_all();
    }

    /// Waits, in arrival order and at most the queue timeout, for a slot for connection `id`
    /// (from [`Slots::arrive`]); `None` if none came free.
    pub fn admit(&self, id: u64) -> Option<Slot<'_>> {
        let deadline = Instant::now() + self.wait;
        let mut st = self.lock();
        loop {
            let first = st.queue.front().is_some_and(|(q, _)| *q == id);
            if first && st.served.len() < self.max {
                let (_, tcp) = st.queue.pop_front().expect("front checked");
                st.served.insert(
                    id,
                    Served {
                        tcp,
                        idle_since: Some(Instant::now()),
                        evicted: false,
                    },
                );
                self.changed.notify_all();
                return Some(Slot { slots: self, id });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                drop(st);
                self.withdraw(id);
                return None;
            }
            st = self
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Slot<'_> {
    /// The connection waits for its next request, so a waiting connection may take its place;
    /// false if it has been shut down for that.
    pub fn idle(&self) -> bool {
        let mut st = self.slots.lock();
        if let Some(s) = st.served.get_mut(&self.id) {
            s.idle_since = Some(Instant::now());
        }
        self.slots.make_room(&mut st);
        st.served.get(&self.id).is_some_and(|s| !s.evicted)
    }

    /// The connection has a request: it keeps its slot until it has answered. False if it has
    /// been shut down already.
    pub fn busy(&self) -> bool {
        let mut st = self.slots.lock();
        match st.served.get_mut(&self.id) {
            Some(s) if !s.evicted => {
                s.idle_since = None;
                true
            }
            _ => false,
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.slots.lock().served.remove(&self.id);
        self.slots.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair(l: &TcpListener) -> (TcpStream, TcpStream) {
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        (l.accept().unwrap().0, c)
    }

    #[test]
    fn an_idle_connection_gives_way_and_a_busy_one_does_not() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let slots = Slots::new(1, Duration::from_millis(200));
        let (a, _ca) = pair(&l);
        let ida = slots.arrive(&a).unwrap();
        let sa = slots.admit(ida).unwrap();
        assert!(sa.busy());
        // Busy: the next one waits and gets nothing.
        let (b, _cb) = pair(&l);
        let idb = slots.arrive(&b).unwrap();
        assert!(slots.admit(idb).is_none());
        // Idle: the next one evicts it and is admitted once its slot is given back.
        assert!(sa.idle());
        let (c, _cc) = pair(&l);
        let idc = slots.arrive(&c).unwrap();
        assert!(!sa.busy(), "the idle connection was shut down");
        drop(sa);
        assert!(slots.admit(idc).is_some());
    }

    #[test]
    fn the_queue_is_bounded() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let slots = Slots::new(1, Duration::from_millis(10));
        let conns: Vec<_> = (0..3).map(|_| pair(&l)).collect();
        let served = slots.admit(slots.arrive(&conns[0].0).unwrap()).unwrap();
        assert!(served.busy());
        assert!(slots.arrive(&conns[1].0).is_some(), "one may wait");
        assert!(slots.arrive(&conns[2].0).is_none(), "the next is closed");
    }
}
