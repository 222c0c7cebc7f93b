//! A TCP proxy on loopback that can drop a connection in the middle of an answer: armed with
//! [`CutProxy::cut_after`], it forwards that many more bytes from the server, then closes both
//! sides of the connection carrying them. The cut happens at a byte count, not at a time, so a
//! test that arms it and then reads a larger object is cut mid-read every run.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

#[derive(Default)]
struct State {
    /// Bytes still forwarded from the server before the cut, when armed.
    budget: Option<u64>,
    /// Connections cut so far.
    cuts: u32,
}

/// A running proxy to `127.0.0.1:target`; stops accepting when dropped.
pub struct CutProxy {
    /// The port clients connect to.
    pub port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl CutProxy {
    /// Starts a proxy to the server on loopback port `target`.
    pub fn start(target: u16) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, halt) = (state.clone(), stop.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (c2, s2) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                thread::spawn(move || forward(c2, s2, None));
                let st = st.clone();
                thread::spawn(move || forward(server, client, Some(st)));
            }
        });
        CutProxy { port, state, stop }
    }

    /// Arms the proxy: after `bytes` more bytes from the server, the connection carrying them
    /// is dropped.
    pub fn cut_after(&self, bytes: u64) {
        self.state.lock().unwrap().budget = Some(bytes);
    }

    /// How many connections the proxy has cut.
    pub fn cuts(&self) -> u32 {
        self.state.lock().unwrap().cuts
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies `from` to `to` until either side closes; with `cut`, counts the bytes against the
/// armed budget and closes both sides when it runs out.
fn forward(mut from: TcpStream, mut to: TcpStream, cut: Option<Arc<Mutex<State>>>) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut pass = n;
        let mut drop_now = false;
        if let Some(st) = &cut {
            let mut st = st.lock().unwrap();
            if let Some(budget) = st.budget {
                if (n as u64) >= budget {
                    pass = budget as usize;
                    drop_now = true;
                    st.budget = None;
                    st.cuts += 1;
                } else {
                    st.budget = Some(budget - n as u64);
                }
            }
        }
        if to.write_all(&buf[..pass]).is_err() || drop_now {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
