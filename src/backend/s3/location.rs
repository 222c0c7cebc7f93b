//! `s3:` locations: endpoint, bucket and key prefix.

use crate::{Error, Result};

/// A parsed `s3:` location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The endpoint, e.g. `https://s3.eu-central-1.amazonaws.com` (no path).
    pub endpoint: String,
    /// The bucket name.
    pub bucket: String,
    /// The key prefix: empty, or ending with `/`.
    pub prefix: String,
}

/// Parses the part of a location after `s3:`: `http(s)://HOST[:PORT]/BUCKET[/PREFIX]`. Without
/// a scheme (`HOST/BUCKET[/PREFIX]`, restic's form), HTTPS is used.
pub fn parse_location(rest: &str) -> Result<S3Location> {
    let bad = |why: &str| {
        Error::InvalidInput(format!(
            "invalid S3 location s3:{rest}: {why} (expected s3:https://HOST[:PORT]/BUCKET[/PREFIX])"
        ))
    };
    let (scheme, after) = match rest.split_once("://") {
        Some((s, a)) => (s.to_ascii_lowercase(), a),
        None => ("https".to_string(), rest),
    };
    if scheme != "http" && scheme != "https" {
        return Err(bad(&format!("unsupported scheme {scheme:?}")));
    }
    let (host, path) = after.split_once('/').unwrap_or((after, ""));
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if host.contains('@') {
        return Err(bad(
            "credentials do not belong in the location; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        ));
    }
    if host.contains(['?', '#']) || path.contains(['?', '#']) {
        return Err(bad("query strings and fragments are not allowed"));
    }
    let mut parts = path.split('/').filter(|p| !p.is_empty());
    let bucket = parts.next().ok_or_else(|| bad("no bucket"))?;
    let valid_bucket = bucket.len() >= 3
        && bucket.len() <= 63
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if !valid_bucket {
        return Err(bad(&format!(
            "{bucket:?} is not a valid bucket name (3-63 lower-case letters, digits, '-', '.')"
        )));
    }
    let mut prefix = String::new();
    for p in parts {
        if p == "." || p == ".." {
            return Err(bad("'.' and '..' are not allowed in the prefix"));
        }
        prefix.push_str(p);
        prefix.push('/');
    }
    let endpoint = format!("{scheme}://{host}");
    url::Url::parse(&endpoint).map_err(|e| bad(&format!("bad endpoint {endpoint}: {e}")))?;
    Ok(S3Location {
        endpoint,
        bucket: bucket.to_string(),
        prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(endpoint: &str, bucket: &str, prefix: &str) -> S3Location {
        S3Location {
            endpoint: endpoint.into(),
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    #[test]
    fn parses_endpoint_bucket_and_prefix() {
        assert_eq!(
            parse_location("http://127.0.0.1:9000/backups").unwrap(),
            loc("http://127.0.0.1:9000", "backups", "")
        );
        assert_eq!(
            parse_location("https://s3.example.com/my-bucket/hyd/prod/").unwrap(),
            loc("https://s3.example.com", "my-bucket", "hyd/prod/")
        );
        assert_eq!(
            parse_location("HTTPS://minio.local:9000//bucket.one//a///b").unwrap(),
            loc("https://minio.local:9000", "bucket.one", "a/b/")
        );
        assert_eq!(
            parse_location("http://[::1]:9000/bkt/").unwrap(),
            loc("http://[::1]:9000", "bkt", "")
        );
    }

    #[test]
    fn without_scheme_means_https() {
        assert_eq!(
            parse_location("s3.amazonaws.com/bucket/prefix").unwrap(),
            loc("https://s3.amazonaws.com", "bucket", "prefix/")
        );
    }

    #[test]
    fn rejects_bad_locations() {
        for bad in [
            "",
            "http://",
            "http://host",
            "http://host/",
            "ftp://host/bucket",
            "http://user:pw@host/bucket",
            "http://host/Upper",
            "http://host/ab",
            "http://host/-bucket",
            "http://host/bucket_x",
            "http://host/bucket/../x",
            "http://host/bucket?x=1",
            "http://host:notaport/bucket",
        ] {
            let e = parse_location(bad).expect_err(bad);
            assert!(
                matches!(e, Error::InvalidInput(ref m) if m.contains("invalid S3 location")),
                "{bad}: {e}"
            );
        }
    }
}
