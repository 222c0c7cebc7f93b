//! Slowing password guessing: after a few failed logins from one address for one user (or for
//! any user), further attempts from there are refused unchecked for a wait that doubles with
//! each failure. The table is bounded; failures are forgotten after a quiet quarter of an hour.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed logins for one user from one address before attempts are slowed.
const FREE_PER_USER: u32 = 5;
/// Failed logins from one address, any users, before attempts are slowed.
const FREE_PER_ADDRESS: u32 = 20;
/// The first wait; it doubles with each further failure.
const FIRST_WAIT: Duration = Duration::from_secs(2);
/// The longest wait.
const MAX_WAIT: Duration = Duration::from_secs(300);
/// Failures older than this (since the last one) are forgotten.
const FORGET: Duration = Duration::from_secs(15 * 60);
/// Entries kept at most (addresses and address-user pairs).
const MAX_ENTRIES: usize = 10_000;
/// User names are remembered up to this many bytes.
const MAX_USER: usize = 64;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    ip: IpAddr,
    /// `None`: all users from that address.
    user: Option<String>,
}

struct Failures {
    count: u32,
    last: Instant,
}

/// The failed-login table.
#[derive(Default)]
pub struct Throttle {
    table: Mutex<HashMap<Key, Failures>>,
}

fn keys(ip: IpAddr, user: &str) -> [(Key, u32); 2] {
    let mut end = user.len().min(MAX_USER);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    let user = Some(user[..end].to_string());
    [
        (Key { ip, user }, FREE_PER_USER),
        (Key { ip, user: None }, FREE_PER_ADDRESS),
    ]
}

impl Throttle {
    /// How long attempts for `user` from `ip` are still refused; `None`: it may try now.
    pub fn wait(&self, ip: IpAddr, user: &str) -> Option<Duration> {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        keys(ip, user)
            .iter()
            .filter_map(|(k, free)| {
                let f = table.get(k)?;
                let over = f.count.checked_sub(*free)?;
                let wait = FIRST_WAIT.saturating_mul(1 << over.min(16)).min(MAX_WAIT);
                (f.last + wait).checked_duration_since(now)
            })
            .filter(|d| !d.is_zero())
            .max()
    }

    /// Records a failed login.
    pub fn failed(&self, ip: IpAddr, user: &str) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if table.len() + 2 > MAX_ENTRIES {
            table.retain(|_, f| now.duration_since(f.last) < FORGET);
        }
        while table.len() + 2 > MAX_ENTRIES {
            let oldest = table
                .iter()
                .min_by_key(|(_, f)| f.last)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => table.remove(&k),
                None => break,
            };
        }
        for (k, _) in keys(ip, user) {
            let f = table.entry(k).or_insert(Failures {
                count: 0,
                last: now,
            });
            if now.duration_since(f.last) >= FORGET {
                f.count = 0;
            }
            f.count += 1;
            f.last = now;
        }
    }

    /// Forgets the failures of `user` from `ip` after a successful login.
    pub fn passed(&self, ip: IpAddr, user: &str) {
        let [(k, _), _] = keys(ip, user);
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_beyond_the_free_ones_are_slowed_per_user_and_address() {
        let t = Throttle::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..FREE_PER_USER {
            assert_eq!(t.wait(ip, "alice"), None);
            t.failed(ip, "alice");
        }
        let w = t.wait(ip, "alice").expect("slowed");
        assert!(w <= FIRST_WAIT * 2 && w > Duration::ZERO, "{w:?}");
        assert_eq!(t.wait(ip, "bob"), None);
        assert_eq!(t.wait(other, "alice"), None);
        // Many users from one address.
        for i in 0..FREE_PER_ADDRESS {
            t.failed(other, &format!("user{i}"));
        }
        assert!(t.wait(other, "somebody").is_some());
        t.passed(ip, "alice");
        assert_eq!(t.wait(ip, "alice"), None);
    }

    #[test]
    fn the_table_is_bounded() {
        let t = Throttle::default();
        // Two entries each (the pair and the address).
        for i in 0..(MAX_ENTRIES as u32 / 2 + 50) {
            t.failed(IpAddr::from(i.to_be_bytes()), "x");
        }
        assert!(t.table.lock().unwrap().len() <= MAX_ENTRIES);
    }
}
