//! `sftp:` locations: `sftp:[USER@]HOST:PATH` (scp style) or `sftp://[USER@]HOST[:PORT]/PATH`.

use crate::{Error, Result};

/// A parsed SFTP location (see the module documentation for the syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftpLocation {
    /// The login name, if the location gives one.
    pub user: Option<String>,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// The port, if the location gives one.
    pub port: Option<u16>,
    /// The repository path on the server: absolute, or relative to the login directory.
    pub path: String,
}

impl SftpLocation {
    /// Parses `sftp:[USER@]HOST:PATH` or `sftp://[USER@]HOST[:PORT]/PATH`.
    pub fn parse(location: &str) -> Result<SftpLocation> {
        let bad = |why: &str| {
            Error::InvalidInput(format!(
                "invalid SFTP location {location:?}: {why} (expected sftp:USER@HOST:PATH or \
                 sftp://USER@HOST[:PORT]/PATH)"
            ))
        };
        let (authority, path, url) = if let Some(rest) = location.strip_prefix("sftp://") {
            let (auth, path) = rest.split_once('/').ok_or_else(|| bad("no path"))?;
            (auth, path, true)
        } else if let Some(rest) = location.strip_prefix("sftp:") {
            // `[USER@]HOST:PATH`: a '@' before any ':' or '[' ends the user name; the host
            // ends at the first ':' after an optional bracketed IPv6 address.
            let at = match rest.find([':', '[', '@']) {
                Some(i) if rest.as_bytes()[i] == b'@' => i + 1,
                _ => 0,
            };
            let host_end = if rest[at..].starts_with('[') {
                at + rest[at..].find(']').ok_or_else(|| bad("unclosed '['"))? + 1
            } else {
                at
            };
            let colon = rest[host_end..]
                .find(':')
                .ok_or_else(|| bad("no ':' before the path"))?;
            (
                &rest[..host_end + colon],
                &rest[host_end + colon + 1..],
                false,
            )
        } else {
            return Err(bad("not an sftp: location"));
        };
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) if !u.is_empty() => (Some(u.to_string()), h),
            Some(_) => return Err(bad("empty user name")),
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            match after {
                "" => (h, None),
                p if url && p.starts_with(':') => (h, Some(&p[1..])),
                _ => return Err(bad("unexpected text after ']'")),
            }
        } else if url {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        } else {
            (hostport, None)
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if host.contains(['@', '/', ':']) && !hostport.starts_with('[') {
            return Err(bad("invalid host"));
        }
        let port = match port {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| bad("invalid port"))?,
            ),
        };
        let mut path = path.to_string();
        while path.len() > 1 && path.ends_with('/') {
            path.pop();
        }
        if path.is_empty() {
            return Err(bad("no path"));
        }
        if path.contains('\0') || host.contains('\0') {
            return Err(bad("NUL byte"));
        }
        Ok(SftpLocation {
            user,
            host: host.to_string(),
            port,
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(user: Option<&str>, host: &str, port: Option<u16>, path: &str) -> SftpLocation {
        SftpLocation {
            user: user.map(str::to_string),
            host: host.into(),
            port,
            path: path.into(),
        }
    }

    #[test]
    fn scp_style() {
        let p = SftpLocation::parse;
        assert_eq!(
            p("sftp:alice@backup.example:/srv/repo").unwrap(),
            loc(Some("alice"), "backup.example", None, "/srv/repo")
        );
        assert_eq!(
            p("sftp:alice@backup.example:repos/db/").unwrap(),
            loc(Some("alice"), "backup.example", None, "repos/db")
        );
        assert_eq!(p("sftp:host:/r").unwrap(), loc(None, "host", None, "/r"));
        assert_eq!(
            p("sftp:bob@[::1]:/r").unwrap(),
            loc(Some("bob"), "::1", None, "/r")
        );
        // Colons and '@' in the path are part of the path.
        assert_eq!(
            p("sftp:u@h:/a@b").unwrap(),
            loc(Some("u"), "h", None, "/a@b")
        );
        assert_eq!(
            p("sftp:u@h:/a:b").unwrap(),
            loc(Some("u"), "h", None, "/a:b")
        );
        assert_eq!(p("sftp:u@h:/").unwrap(), loc(Some("u"), "h", None, "/"));
    }

    #[test]
    fn url_style() {
        let p = SftpLocation::parse;
        assert_eq!(
            p("sftp://alice@backup.example:2222//srv/repo").unwrap(),
            loc(Some("alice"), "backup.example", Some(2222), "/srv/repo")
        );
        assert_eq!(
            p("sftp://alice@backup.example/repo").unwrap(),
            loc(Some("alice"), "backup.example", None, "repo")
        );
        assert_eq!(
            p("sftp://u@[::1]:22//r/").unwrap(),
            loc(Some("u"), "::1", Some(22), "/r")
        );
        assert_eq!(
            p("sftp://127.0.0.1//r").unwrap(),
            loc(None, "127.0.0.1", None, "/r")
        );
    }

    #[test]
    fn invalid() {
        for bad in [
            "sftp:",
            "sftp:host",
            "sftp:u@host:",
            "sftp:@host:/r",
            "sftp:u@:/r",
            "sftp://u@host",
            "sftp://u@host/",
            "sftp://u@host:0//r",
            "sftp://u@host:70000//r",
            "sftp://u@host:x//r",
            "sftp://u@[::1//r",
            "sftp:u@[::1:/r",
            "/local/path",
        ] {
            let e = SftpLocation::parse(bad).expect_err(bad);
            assert!(
                matches!(e, Error::InvalidInput(_)),
                "{bad}: unexpected error {e:?}"
            );
        }
    }
}
