//! S3 Object Lock (write once, read many): the lock every object but the locks is written
//! with, and what purging versions that deletions hid found (repo-format.md §1a).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How S3 enforces a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// Nobody can delete or shorten the lock but a user with the
    /// `s3:BypassGovernanceRetention` permission.
    Governance,
    /// Nobody can delete or shorten the lock, the account's root user included.
    Compliance,
}

impl LockMode {
    /// The name S3 uses.
    pub fn s3_name(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }
}

/// The object lock of a repository: every object but the locks is written locked in `mode`
/// for at least `retention`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLock {
    /// How the lock is enforced.
    pub mode: LockMode,
    /// The protected period: an object still in use is never deletable sooner than this from
    /// now, as long as maintenance (`prune`, `verify --extend-retention`) runs at least every
    /// [`ObjectLock::renewal`].
    pub retention: Duration,
}

impl ObjectLock {
    /// How far past `retention` an object is locked when written or extended: a quarter of
    /// the retention (at least one second). Maintenance extends an object once less than
    /// `retention` is left, so running it at least this often keeps the window whole.
    pub fn renewal(&self) -> Duration {
        (self.retention / 4).max(Duration::from_secs(1))
    }

    /// The retain-until date of an object written or extended at `now`: `now + retention +
    /// renewal`, rounded up to a whole second.
    pub fn until(&self, now: Timestamp) -> Timestamp {
        let span = SignedDuration::try_from(self.retention + self.renewal())
            .unwrap_or(SignedDuration::MAX);
        let t = now.saturating_add(span).expect("a signed duration");
        let ceil = t.as_second() + i64::from(t.subsec_nanosecond() > 0);
        Timestamp::from_second(ceil).unwrap_or(Timestamp::MAX)
    }

    /// Whether an object locked until `until` (`None`: not locked) is protected for less than
    /// `retention` from `now`.
    pub fn is_short(&self, until: Option<Timestamp>, now: Timestamp) -> bool {
        let want = SignedDuration::try_from(self.retention).unwrap_or(SignedDuration::MAX);
        until.is_none_or(|u| u.duration_since(now) < want)
    }
}

/// A retain-until date as S3 writes it: RFC 3339 in UTC, whole seconds.
pub(crate) fn s3_date(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Reads a retain-until date S3 sent.
pub(crate) fn parse_s3_date(s: &str) -> Result<Timestamp> {
    s.trim().parse().map_err(|e| {
        Error::InvalidInput(format!(
            "the S3 server sent an unreadable retain-until date {s:?}: {e}"
        ))
    })
}

/// What [`crate::backend::Backend::purge_hidden`] did: versions hidden by deletions are removed
/// for good once their lock has ended; the others stay until then.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    /// Hidden versions (and delete markers left with nothing to hide) removed for good.
    pub versions_removed: u64,
    /// Bytes those versions held.
    pub bytes_freed: u64,
    /// Hidden versions still locked.
    pub versions_locked: u64,
    /// Bytes they hold.
    pub bytes_locked: u64,
    /// When the last of them unlocks: the space comes back at the first `prune` after it.
    pub locked_until: Option<Timestamp>,
}

/// Parses a retention period: whole numbers with units `s`, `min`, `h`, `d`, `w` or `y`
/// (365 days), e.g. `30d`, `1w3d`, `90s`.
pub fn parse_retention(s: &str) -> Result<Duration> {
    let bad = || {
        Error::InvalidInput(format!(
            "cannot read the retention {s:?}: use e.g. 30d, 2w, 12h, 90s or 1y (units s, min, h, d, w, y)"
        ))
    };
    let mut total: u64 = 0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let secs: u64 = match &rest[..unit_len] {
            "s" => 1,
            "min" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            "y" => 365 * 86_400,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(secs)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    // S3 keeps retain-until dates within 100 years.
    if total == 0 || total > 100 * 365 * 86_400 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_periods_parse() {
        assert_eq!(parse_retention("30d").unwrap().as_secs(), 30 * 86_400);
        assert_eq!(parse_retention("1w3d").unwrap().as_secs(), 10 * 86_400);
        assert_eq!(parse_retention("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_retention("2min").unwrap().as_secs(), 120);
        assert_eq!(parse_retention("1y").unwrap().as_secs(), 365 * 86_400);
        for bad in [
            "",
            "30",
            "d",
            "0d",
            "3m",
            "1x",
            "-1d",
            "101y",
            "99999999999999999999s",
        ] {
            assert!(parse_retention(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn until_covers_retention_and_renewal() {
        let lock = ObjectLock {
            mode: LockMode::Compliance,
            retention: Duration::from_secs(40),
        };
        let now: Timestamp = "2026-01-01T00:00:00.5Z".parse().unwrap();
        assert_eq!(
            lock.until(now),
            "2026-01-01T00:00:51Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(s3_date(lock.until(now)), "2026-01-01T00:00:51Z");
        assert!(!lock.is_short(Some(lock.until(now)), now));
        let later = now.checked_add(SignedDuration::from_secs(11)).unwrap();
        assert!(lock.is_short(Some(lock.until(now)), later));
        assert!(lock.is_short(None, now));
    }
}
