//! Path patterns of `backup --exclude` and `restore --include/--exclude`, with restic's rules:
//! a pattern starting with `/` is anchored (to the absolute source path for `backup`, to the
//! snapshot root for `restore`); one without matches at any depth (`cache` matches
//! `/srv/app/cache`, `logs/*.gz` matches `/var/logs/a.gz`). `*` and `?` stay within one path
//! component, `**` crosses them. Each pattern remembers whether it matched anything, so a
//! pattern that matches nothing can be reported.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::{Error, Result};

/// Compiles one glob with the rules every pattern of hydrabackup follows (`*` and `?` within
/// one path component or Swamp-name part, `**` across them); `what` and `given` name it in
/// the error.
pub fn glob(glob: &str, ignore_case: bool, what: &str, given: &str) -> Result<Glob> {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .case_insensitive(ignore_case)
        .build()
        .map_err(|e| Error::InvalidInput(format!("bad {what} pattern {given:?}: {e}")))
}

/// One pattern as given, and whether it ignores case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The pattern text.
    pub text: String,
    /// Whether letters match regardless of case (`--iexclude`).
    pub ignore_case: bool,
}

impl Pattern {
    /// A case-sensitive pattern.
    pub fn new(text: impl Into<String>) -> Pattern {
        Pattern {
            text: text.into(),
            ignore_case: false,
        }
    }

    /// A pattern that ignores case.
    pub fn ignoring_case(text: impl Into<String>) -> Pattern {
        Pattern {
            text: text.into(),
            ignore_case: true,
        }
    }
}

/// Compiled patterns.
#[derive(Debug)]
pub struct PathPatterns {
    patterns: Vec<Pattern>,
    set: GlobSet,
    hit: Vec<AtomicBool>,
}

impl PathPatterns {
    /// Compiles `patterns`; `what` names them in errors ("exclude", "include").
    pub fn new(patterns: &[Pattern], what: &str) -> Result<PathPatterns> {
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            let t = p.text.trim_end_matches('/');
            if t.is_empty() {
                return Err(Error::InvalidInput(format!(
                    "empty {what} pattern {:?}",
                    p.text
                )));
            }
            let glob = match t.strip_prefix('/') {
                Some(anchored) => format!("/{anchored}"),
                None => format!("**/{t}"),
            };
            b.add(self::glob(&glob, p.ignore_case, what, &p.text)?);
        }
        let set = b
            .build()
            .map_err(|e| Error::InvalidInput(format!("bad {what} pattern: {e}")))?;
        Ok(PathPatterns {
            hit: patterns.iter().map(|_| AtomicBool::new(false)).collect(),
            patterns: patterns.to_vec(),
            set,
        })
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (absolute, or relative to the snapshot root with a leading `/`) matches
    /// a pattern; the patterns that match are marked as used.
    pub fn is_match(&self, path: &Path) -> bool {
        if self.patterns.is_empty() || !self.set.is_match(path) {
            return false;
        }
        for i in self.set.matches(path) {
            self.hit[i].store(true, Ordering::Relaxed);
        }
        true
    }

    /// The patterns that have matched nothing so far, as given.
    pub fn unmatched(&self) -> Vec<String> {
        self.patterns
            .iter()
            .zip(&self.hit)
            .filter(|(_, h)| !h.load(Ordering::Relaxed))
            .map(|(p, _)| p.text.clone())
            .collect()
    }
}

/// The patterns of a pattern file (`--exclude-file`): one per line; blank lines and lines
/// starting with `#` are skipped, surrounding spaces trimmed.
pub fn read_pattern_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(p: &[&str]) -> PathPatterns {
        let v: Vec<Pattern> = p.iter().map(|s| Pattern::new(*s)).collect();
        PathPatterns::new(&v, "exclude").unwrap()
    }

    #[test]
    fn unanchored_patterns_match_at_any_depth_anchored_ones_at_the_root() {
        let p = pats(&["cache", "logs/*.gz"]);
        assert!(p.is_match(Path::new("/srv/app/cache")));
        assert!(p.is_match(Path::new("/cache")));
        assert!(!p.is_match(Path::new("/srv/app/cached")));
        assert!(p.is_match(Path::new("/var/logs/a.gz")));
        assert!(!p.is_match(Path::new("/var/logs/sub/a.gz")));
        let a = pats(&["/srv/*"]);
        assert!(a.is_match(Path::new("/srv/app")));
        assert!(!a.is_match(Path::new("/srv/app/x")));
        assert!(!a.is_match(Path::new("/other/srv/app")));
        assert!(pats(&["**/*.tmp"]).is_match(Path::new("/a/b/c.tmp")));
    }

    #[test]
    fn case_and_unused_patterns() {
        let v = vec![Pattern::ignoring_case("*.JPG"), Pattern::new("never")];
        let p = PathPatterns::new(&v, "exclude").unwrap();
        assert!(p.is_match(Path::new("/a/photo.jpg")));
        assert_eq!(p.unmatched(), vec!["never".to_string()]);
        assert!(PathPatterns::new(&[Pattern::new("a[")], "exclude").is_err());
    }
}
