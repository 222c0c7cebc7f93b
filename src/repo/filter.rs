//! The `--swamp` selection shared by restore, verify and show: Swamp-name globs in which `*`
//! stays within one name part and `**` crosses them (compiled by [`crate::pattern::glob`], as
//! path patterns are; Swamp names are always anchored). No pattern selects every node.

use globset::{GlobSet, GlobSetBuilder};

use crate::repo::tree::Node;
use crate::{Error, Result};

/// Compiled `--swamp` patterns.
#[derive(Debug, Clone)]
pub struct SwampFilter {
    patterns: Vec<String>,
    globs: GlobSet,
}

impl SwampFilter {
    /// Compiles the patterns; a bad one is the user's mistake.
    pub fn new(patterns: &[String]) -> Result<SwampFilter> {
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            b.add(crate::pattern::glob(p, false, "Swamp", p)?);
        }
        let globs = b
            .build()
            .map_err(|e| Error::InvalidInput(format!("bad Swamp pattern: {e}")))?;
        Ok(SwampFilter {
            patterns: patterns.to_vec(),
            globs,
        })
    }

    /// Whether no pattern was given (everything is selected).
    pub fn is_all(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns as given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether `name` matches one of the patterns (never when there are none).
    pub fn matches(&self, name: &str) -> bool {
        self.globs.is_match(name)
    }

    /// Whether `node` is a captured Swamp whose name matches one of the patterns.
    pub fn matches_node(&self, node: &Node) -> bool {
        node.swamp
            .as_ref()
            .and_then(|s| s.name.as_deref())
            .is_some_and(|name| self.matches(name))
    }

    /// Whether `node` is selected: every node when there is no pattern, else a matching Swamp.
    pub fn selects(&self, node: &Node) -> bool {
        self.is_all() || self.matches_node(node)
    }
}

#[cfg(test)]
mod tests {
    use super::SwampFilter;

    fn filter(p: &[&str]) -> SwampFilter {
        SwampFilter::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn star_stays_within_a_name_part_and_no_pattern_selects_all() {
        let f = filter(&["users/*"]);
        assert!(f.matches("users/profiles"));
        assert!(!f.matches("users/profiles/alice"));
        assert!(filter(&["users/**"]).matches("users/profiles/alice"));
        let all = filter(&[]);
        assert!(all.is_all() && !all.matches("users/profiles"));
        let n = crate::repo::tree::Node {
            name: b"x".to_vec(),
            kind: crate::repo::tree::NodeKind::Dir,
            mode: 0o755,
            mtime_ns: 0,
            ctime_ns: 0,
            inode: 1,
            uid: 0,
            gid: 0,
            size: 0,
            content: Vec::new(),
            subtree: None,
            target: None,
            swamp: None,
        };
        assert!(all.selects(&n) && !f.selects(&n));
        assert!(SwampFilter::new(&["a/[".into()]).is_err());
    }
}
