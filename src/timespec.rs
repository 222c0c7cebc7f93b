//! Points in time given by users: `2026-11-20 14:00`, `2026-11-20`, RFC 3339, or `@<unix s>`.
//! Times without a zone are in the machine's local time zone.

use crate::{Error, Result};

/// Parses a user-given time.
pub fn parse(s: &str) -> Result<jiff::Timestamp> {
    let s = s.trim();
    let bad = || {
        Error::InvalidInput(format!(
            "cannot read the time {s:?}: use e.g. \"2026-11-20 14:00\", 2026-11-20 or 2026-11-20T14:00:00Z"
        ))
    };
    if let Some(secs) = s.strip_prefix('@') {
        let n: i64 = secs.parse().map_err(|_| bad())?;
        return jiff::Timestamp::from_second(n).map_err(|_| bad());
    }
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let tz = jiff::tz::TimeZone::system();
    if let Ok(dt) = s.parse::<jiff::civil::DateTime>() {
        return dt.to_zoned(tz).map(|z| z.timestamp()).map_err(|_| bad());
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        return d.to_zoned(tz).map(|z| z.timestamp()).map_err(|_| bad());
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(
            parse("2026-11-20T14:00:00Z").unwrap().as_second(),
            1_795_183_200
        );
        assert_eq!(parse("@1795183200").unwrap().as_second(), 1_795_183_200);
        let local = parse("2026-11-20 14:00").unwrap();
        let day = parse("2026-11-20").unwrap();
        assert_eq!(local.as_second() - day.as_second(), 14 * 3600);
        assert!(parse("yesterday-ish").is_err());
    }
}

/// Parses a duration such as `23h`, `90m`, `1d12h` or `0s` (units d, h, m = minutes, s) into
/// seconds.
pub fn parse_duration(s: &str) -> Result<i64> {
    let t = s.trim();
    let bad = || {
        Error::InvalidInput(format!(
            "cannot read the duration {s:?}: use e.g. 23h, 90m, 1d12h or 0s"
        ))
    };
    let (mut total, mut num) = (0i64, String::new());
    for c in t.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num.parse().map_err(|_| bad())?;
        num.clear();
        let unit = match c {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if !num.is_empty() || t.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod duration_tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("23h").unwrap(), 23 * 3600);
        assert_eq!(
            parse_duration("1d12h30m5s").unwrap(),
            86_400 + 12 * 3600 + 1800 + 5
        );
        assert_eq!(parse_duration("0s").unwrap(), 0);
        for bad in ["", "5", "h", "3x", "-1h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
