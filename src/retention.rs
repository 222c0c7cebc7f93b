//! Retention policies: which snapshots `forget` keeps.
//!
//! As in restic and borg: `last` keeps the newest N; `hourly`, `daily`, `weekly`, `monthly` and
//! `yearly` keep the newest snapshot of each of the N most recent hours, days, ISO weeks, months
//! and years that have one; `within` keeps everything newer than the newest snapshot minus a
//! span; `tags` keeps every snapshot carrying one of them. A snapshot is kept when any rule keeps
//! it. Buckets use the given time zone (the CLI passes the local one).
//!
//! For continuous backups (`watch`, thousands of snapshots a day) a policy also takes tiers
//! `WINDOW:EVERY`: within WINDOW of the newest snapshot, keep the newest snapshot of each EVERY
//! (`all`: every snapshot). Both are a number and a fixed unit `s`, `min`, `h`, `d` (24 h) or
//! `w`, so `1h:all,1d:1min,7d:1h,90d:1d` keeps everything for an hour, one a minute for a day,
//! hourly for a week and daily for 90 days. (`m` stays months, as in `12m`: minutes are `min`.)

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use serde::Serialize;

use crate::{Error, Result};

/// A retention policy. An empty policy keeps nothing and is refused by [`Policy::check`].
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Keep the newest N.
    pub last: u32,
    /// Keep the newest snapshot of each of the last N hours that have one.
    pub hourly: u32,
    /// ... days.
    pub daily: u32,
    /// ... ISO weeks.
    pub weekly: u32,
    /// ... months.
    pub monthly: u32,
    /// ... years.
    pub yearly: u32,
    /// Keep everything within this span of the newest snapshot.
    pub within: Option<Span>,
    /// Keep snapshots carrying any of these tags.
    pub tags: Vec<String>,
    /// Tiers `WINDOW:EVERY` (see the module documentation).
    pub tiers: Vec<Tier>,
}

/// Within `window` seconds of the newest snapshot, keep the newest of each `every` seconds
/// (`None`: all of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    /// Seconds back from the newest snapshot.
    pub window: i64,
    /// Bucket length in seconds; `None` keeps every snapshot in the window.
    pub every: Option<i64>,
}

impl Tier {
    /// Parses `WINDOW:EVERY`, e.g. `1d:1min` or `1h:all`.
    pub fn parse(s: &str) -> std::result::Result<Tier, String> {
        let (w, e) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not WINDOW:EVERY"))?;
        let window = fixed_secs(w)?;
        let every = match e.trim() {
            "all" => None,
            e => Some(fixed_secs(e)?),
        };
        if every.is_some_and(|e| e > window) {
            return Err(format!(
                "in {s:?} EVERY is longer than WINDOW (minutes are `min`, `m` is months)"
            ));
        }
        Ok(Tier { window, every })
    }

    /// The tier as written: `1d:1min`.
    fn label(&self) -> String {
        let every = self.every.map_or("all".to_string(), show_secs);
        format!("{}:{every}", show_secs(self.window))
    }
}

/// `N` + a fixed-length unit (`s`, `min`, `h`, `d`, `w`) in seconds.
fn fixed_secs(s: &str) -> std::result::Result<i64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: i64 = num.parse().map_err(|_| format!("{s:?} is not N + unit"))?;
    let unit_secs = match unit {
        "s" => 1,
        "min" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        "m" | "y" => {
            return Err(format!(
                "{s:?}: tiers take fixed units s, min, h, d, w (minutes are `min`)"
            ));
        }
        _ => return Err(format!("unknown unit in {s:?} (use s, min, h, d, w)")),
    };
    match n.checked_mul(unit_secs) {
        Some(v) if v > 0 => Ok(v),
        _ => Err(format!("{s:?} must be more than 0 and not huge")),
    }
}

/// Seconds in the largest unit that divides them: `86400` is `1d`.
fn show_secs(s: i64) -> String {
    for (u, n) in [("w", 604_800), ("d", 86_400), ("h", 3_600), ("min", 60)] {
        if s % n == 0 {
            return format!("{}{u}", s / n);
        }
    }
    format!("{s}s")
}

/// The rules a snapshot was kept by (empty: it is forgotten).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// e.g. `last`, `daily`, `within 30d`, `tag prod`.
    pub reasons: Vec<String>,
}

impl Verdict {
    /// Whether the snapshot is kept.
    pub fn keep(&self) -> bool {
        !self.reasons.is_empty()
    }
}

impl Policy {
    /// Parses a compact policy: comma-separated `N` + unit, units `l` (last), `h`, `d`, `w`, `m`,
    /// `y`; e.g. `7d,4w,12m` or `3l,24h,30d`; and tiers `WINDOW:EVERY` (`1h:all,1d:1min`, see
    /// [`Tier`]). A unit given twice is an error.
    pub fn parse(s: &str) -> Result<Policy> {
        let bad = |why: &str| {
            Error::InvalidInput(format!(
                "bad retention policy {s:?}: {why} (use e.g. 7d,4w,12m or 1h:all,1d:1min; units l h d w m y)"
            ))
        };
        let mut p = Policy::default();
        for part in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            if part.contains(':') {
                p.tiers.push(Tier::parse(part).map_err(|e| bad(&e))?);
                continue;
            }
            let (num, unit) =
                part.split_at(part.len() - part.chars().last().map_or(0, char::len_utf8));
            let n: u32 = num
                .parse()
                .map_err(|_| bad(&format!("{part:?} is not N + unit")))?;
            let slot = match unit {
                "l" => &mut p.last,
                "h" => &mut p.hourly,
                "d" => &mut p.daily,
                "w" => &mut p.weekly,
                "m" => &mut p.monthly,
                "y" => &mut p.yearly,
                _ => return Err(bad(&format!("unknown unit in {part:?}"))),
            };
            if *slot != 0 {
                return Err(bad(&format!("unit of {part:?} given twice")));
            }
            *slot = n;
        }
        Ok(p)
    }

    /// Adds the rules of `o` (each count taken from `o` where it is set).
    pub fn merge(&mut self, o: Policy) {
        for (a, b) in [
            (&mut self.last, o.last),
            (&mut self.hourly, o.hourly),
            (&mut self.daily, o.daily),
            (&mut self.weekly, o.weekly),
            (&mut self.monthly, o.monthly),
            (&mut self.yearly, o.yearly),
        ] {
            if b != 0 {
                *a = b;
            }
        }
        if o.within.is_some() {
            self.within = o.within;
        }
        self.tags.extend(o.tags);
        self.tiers.extend(o.tiers);
    }

    /// Whether no rule is set.
    pub fn is_empty(&self) -> bool {
        self.last == 0
            && self.hourly == 0
            && self.daily == 0
            && self.weekly == 0
            && self.monthly == 0
            && self.yearly == 0
            && self.within.is_none()
            && self.tags.is_empty()
            && self.tiers.is_empty()
    }

    /// Decides for snapshots of one group, given as (time, tags) in any order; returns one
    /// verdict per input, in input order.
    pub fn apply(&self, snaps: &[(Timestamp, &[String])], tz: &TimeZone) -> Vec<Verdict> {
        let mut order: Vec<usize> = (0..snaps.len()).collect();
        // Newest first; equal times in input order, so the decision is deterministic.
        order.sort_by(|&a, &b| snaps[b].0.cmp(&snaps[a].0).then(a.cmp(&b)));
        let mut out = vec![Verdict::default(); snaps.len()];
        let Some(&newest) = order.first() else {
            return out;
        };
        let limit = self
            .within
            .and_then(|w| snaps[newest].0.to_zoned(tz.clone()).checked_sub(w).ok())
            .map(|z| z.timestamp());
        type Bucket = fn(&jiff::Zoned) -> i64;
        let rules: [(&str, u32, Bucket); 6] = [
            ("last", self.last, |_| i64::MIN), // every snapshot is its own bucket (below)
            ("hourly", self.hourly, |z| {
                (z.year() as i64 * 10_000 + z.day_of_year() as i64) * 100 + z.hour() as i64
            }),
            ("daily", self.daily, |z| {
                z.year() as i64 * 10_000 + z.day_of_year() as i64
            }),
            ("weekly", self.weekly, |z| {
                let w = z.date().iso_week_date();
                w.year() as i64 * 100 + w.week() as i64
            }),
            ("monthly", self.monthly, |z| {
                z.year() as i64 * 100 + z.month() as i64
            }),
            ("yearly", self.yearly, |z| z.year() as i64),
        ];
        for (name, count, bucket) in rules {
            let mut left = count;
            let mut prev: Option<i64> = None;
            for (rank, &i) in order.iter().enumerate() {
                if left == 0 {
                    break;
                }
                let key = if name == "last" {
                    rank as i64
                } else {
                    bucket(&snaps[i].0.to_zoned(tz.clone()))
                };
                if prev != Some(key) {
                    out[i].reasons.push(name.to_string());
                    left -= 1;
                    prev = Some(key);
                }
            }
        }
        let newest_s = snaps[newest].0.as_second();
        for t in &self.tiers {
            let label = format!("tier {}", t.label());
            let mut prev: Option<i64> = None;
            for &i in &order {
                let ts = snaps[i].0;
                if newest_s - ts.as_second() > t.window {
                    break;
                }
                let key = t.every.map(|e| {
                    let local = ts.as_second() + tz.to_offset(ts).seconds() as i64;
                    local.div_euclid(e)
                });
                if key.is_none() || prev != key {
                    out[i].reasons.push(label.clone());
                    prev = key;
                }
            }
        }
        for &i in &order {
            if limit.is_some_and(|l| snaps[i].0 >= l) {
                let w = self.within.expect("limit comes from within");
                out[i].reasons.push(format!("within {w:#}"));
            }
            for t in &self.tags {
                if snaps[i].1.contains(t) {
                    out[i].reasons.push(format!("tag {t}"));
                }
            }
        }
        out
    }
}

/// Parses a span such as `30d`, `2w`, `12h`, `1y6m`, or an ISO 8601 duration (`P30D`). In the
/// compact form the units are those of [`Policy::parse`]: `y`, `m` (months), `w`, `d`, `h`.
pub fn parse_span(s: &str) -> Result<Span> {
    let bad = || {
        Error::InvalidInput(format!(
            "cannot read the span {s:?}: use e.g. 30d, 2w, 12h or 1y6m"
        ))
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    // Only ISO 8601 goes to jiff: its friendly format reads `m` as minutes.
    if t.starts_with(['P', 'p']) {
        return t.parse::<Span>().map_err(|_| bad());
    }
    let mut span = Span::new();
    let mut num = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num.parse().map_err(|_| bad())?;
        num.clear();
        span = match c {
            'y' => span.try_years(n),
            'm' => span.try_months(n),
            'w' => span.try_weeks(n),
            'd' => span.try_days(n),
            'h' => span.try_hours(n),
            _ => return Err(bad()),
        }
        .map_err(|_| bad())?;
    }
    if !num.is_empty() {
        return Err(bad());
    }
    Ok(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn kept(p: &Policy, times: &[&str]) -> Vec<bool> {
        let none: &[String] = &[];
        let snaps: Vec<(Timestamp, &[String])> = times.iter().map(|t| (at(t), none)).collect();
        p.apply(&snaps, &TimeZone::UTC)
            .iter()
            .map(Verdict::keep)
            .collect()
    }

    #[test]
    fn parse_compact_policies() {
        let p = Policy::parse("7d,4w,12m").unwrap();
        assert_eq!((p.daily, p.weekly, p.monthly, p.last), (7, 4, 12, 0));
        let p = Policy::parse("3l, 24h,1y").unwrap();
        assert_eq!((p.last, p.hourly, p.yearly), (3, 24, 1));
        for bad in ["7x", "d", "7d,2d", "-1d", "7"] {
            assert!(Policy::parse(bad).is_err(), "{bad}");
        }
        assert!(Policy::parse("").unwrap().is_empty());
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day() {
        let p = Policy {
            daily: 2,
            ..Policy::default()
        };
        let times = [
            "2026-11-20T08:00:00Z",
            "2026-11-20T20:00:00Z",
            "2026-11-21T08:00:00Z",
            "2026-11-21T09:00:00Z",
            "2026-11-19T23:00:00Z",
        ];
        assert_eq!(kept(&p, &times), [false, true, false, true, false]);
    }

    #[test]
    fn last_weekly_monthly_yearly_and_within() {
        let times = [
            "2025-06-01T00:00:00Z", // yearly 2025
            "2026-10-01T00:00:00Z", // monthly October
            "2026-11-02T00:00:00Z", // ISO week 45
            "2026-11-09T00:00:00Z", // week 46
            "2026-11-10T00:00:00Z", // week 46, newer
            "2026-11-16T00:00:00Z", // week 47
        ];
        let p = Policy {
            weekly: 2,
            ..Policy::default()
        };
        assert_eq!(kept(&p, &times), [false, false, false, false, true, true]);
        let p = Policy {
            monthly: 2,
            yearly: 2,
            ..Policy::default()
        };
        assert_eq!(kept(&p, &times), [true, true, false, false, false, true]);
        let p = Policy {
            last: 2,
            ..Policy::default()
        };
        assert_eq!(kept(&p, &times), [false, false, false, false, true, true]);
        let p = Policy {
            within: Some(parse_span("7d").unwrap()),
            ..Policy::default()
        };
        assert_eq!(kept(&p, &times), [false, false, false, true, true, true]);
    }

    #[test]
    fn tags_are_kept_and_reasons_named() {
        let prod = vec!["prod".to_string()];
        let none: Vec<String> = vec![];
        let snaps = [
            (at("2026-01-01T00:00:00Z"), prod.as_slice()),
            (at("2026-02-01T00:00:00Z"), none.as_slice()),
            (at("2026-03-01T00:00:00Z"), none.as_slice()),
        ];
        let p = Policy {
            last: 1,
            tags: prod.clone(),
            ..Policy::default()
        };
        let v = p.apply(&snaps, &TimeZone::UTC);
        assert_eq!(v[0].reasons, ["tag prod"]);
        assert!(!v[1].keep());
        assert_eq!(v[2].reasons, ["last"]);
    }

    #[test]
    fn spans() {
        // Each unit is what the CLI documents: `m` is months (as in `--keep 12m`), never minutes.
        let fields = |s: &str| {
            let sp = parse_span(s).unwrap();
            (
                sp.get_years(),
                sp.get_months(),
                sp.get_weeks(),
                sp.get_days(),
                sp.get_hours(),
                sp.get_minutes(),
            )
        };
        assert_eq!(fields("30d"), (0, 0, 0, 30, 0, 0));
        assert_eq!(fields("1y6m"), (1, 6, 0, 0, 0, 0));
        assert_eq!(fields("6m"), (0, 6, 0, 0, 0, 0));
        assert_eq!(fields("2w12h"), (0, 0, 2, 0, 12, 0));
        assert_eq!(fields(" 3m "), (0, 3, 0, 0, 0, 0));
        // ISO 8601 keeps its own meaning: `M` after `T` is minutes.
        assert_eq!(fields("P2W"), (0, 0, 2, 0, 0, 0));
        assert_eq!(fields("P1Y6M"), (1, 6, 0, 0, 0, 0));
        assert_eq!(fields("PT6M"), (0, 0, 0, 0, 0, 6));
        // `within 1y6m` reaches back 18 months from the newest snapshot.
        let p = Policy {
            within: Some(parse_span("1y6m").unwrap()),
            ..Policy::default()
        };
        let times = [
            "2026-11-01T00:00:00Z",
            "2025-06-02T00:00:00Z",
            "2025-04-30T00:00:00Z",
        ];
        assert_eq!(kept(&p, &times), [true, true, false]);
        for bad in ["", "d", "5", "3x", "6 minutes", "1h30min", "5s"] {
            assert!(parse_span(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tiers_thin_out_with_age() {
        let p = Policy::parse("1h:all,1d:1min,7d:1h").unwrap();
        assert_eq!(p.tiers.len(), 3);
        assert_eq!(
            p.tiers[1],
            Tier {
                window: 86_400,
                every: Some(60)
            }
        );
        for bad in [
            "1d:1m", "1h:2h", "1m:all", "0s:all", "1d:", ":all", "1x:all",
        ] {
            assert!(Policy::parse(bad).is_err(), "{bad}");
        }
        // Every 10 s for 3 h before the newest, at 12:00:00.
        let newest: Timestamp = "2026-11-20T12:00:00Z".parse().unwrap();
        let times: Vec<Timestamp> = (0..1080)
            .map(|k| newest.checked_sub(Span::new().seconds(10 * k)).unwrap())
            .collect();
        let none: &[String] = &[];
        let snaps: Vec<(Timestamp, &[String])> = times.iter().map(|t| (*t, none)).collect();
        let kept: Vec<usize> = Policy::parse("5min:all,2h:10min")
            .unwrap()
            .apply(&snaps, &TimeZone::UTC)
            .iter()
            .enumerate()
            .filter(|(_, v)| v.keep())
            .map(|(i, _)| i)
            .collect();
        // 5 min: 31 snapshots (0..=300 s); beyond, the newest of each 10 minutes back to 2 h:
        // the buckets from 12:00 and 11:50 have theirs among those 31, the 11 before each add
        // one (10:00:00 shares its bucket with the newer 10:09:50).
        let within5: Vec<usize> = (0..=30).collect();
        assert_eq!(&kept[..31], within5.as_slice());
        let older: Vec<i64> = kept[31..].iter().map(|&i| 10 * i as i64).collect();
        // 11:49:50 is the newest of 11:40–11:50, ..., 10:09:50 of 10:00–10:10.
        assert_eq!(
            older,
            [
                610, 1210, 1810, 2410, 3010, 3610, 4210, 4810, 5410, 6010, 6610
            ]
        );
        let v = Policy::parse("1h:all")
            .unwrap()
            .apply(&snaps, &TimeZone::UTC);
        assert_eq!(v[0].reasons, ["tier 1h:all"]);
    }

    proptest::proptest! {
        /// Any non-empty rule keeps the newest snapshot, and never more snapshots than its
        /// counts add up to (without `within` and tags).
        #[test]
        fn bounded_and_keeps_the_newest(
            secs in proptest::collection::vec(0i64..200_000_000, 1..60),
            last in 0u32..4, daily in 0u32..5, monthly in 0u32..5,
        ) {
            let p = Policy { last, daily, monthly, ..Policy::default() };
            let none: &[String] = &[];
            let snaps: Vec<(Timestamp, &[String])> = secs
                .iter()
                .map(|s| (Timestamp::from_second(1_700_000_000 + s).unwrap(), none))
                .collect();
            let v = p.apply(&snaps, &TimeZone::UTC);
            let n = v.iter().filter(|x| x.keep()).count() as u32;
            proptest::prop_assert!(n <= last + daily + monthly);
            if !p.is_empty() {
                let newest = (0..snaps.len()).max_by_key(|&i| (snaps[i].0, std::cmp::Reverse(i))).unwrap();
                proptest::prop_assert!(v[newest].keep());
            }
        }
    }
}
