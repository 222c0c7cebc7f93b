//! Where a swamp lives under a data root.
//!
//! `<root>/<island>/<level>.../<folder>` where, with `full = "sanctuary/realm/swamp"`:
//! - `folder` = lowercase hex (no zero padding) of xxhash64(full);
//! - each `level` = the next `width` characters of that same hex string, with
//!   `width = max(2, hex digits of max_folders_per_level - 1)`, `depth` levels;
//! - `island` = xxhash64(sanctuary + realm + swamp, no separators) % all_islands + 1.
//!
//! A V2-engine swamp is the file `<folder>.hyd` beside where the V1 folder would be.
//! Backup code should not rely on these parameters (walk the tree instead); they
//! are here to generate realistic data roots.

use std::path::{Path, PathBuf};

use xxhash_rust::xxh64::xxh64;

use super::HYD_SUFFIX;

/// Folder layout parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Number of islands the client hashes names into (HydrAIDE examples: 1000).
    pub all_islands: u64,
    /// Hashed folder levels between island and swamp (server default: 1).
    pub depth: usize,
    /// Maximum folders per level (server default: 1000, i.e. 3 hex digits).
    pub max_folders_per_level: usize,
}

impl Default for Layout {
    /// HydrAIDE's defaults: 1000 islands, depth 1, 1000 folders per level.
    fn default() -> Layout {
        Layout {
            all_islands: 1000,
            depth: 1,
            max_folders_per_level: 1000,
        }
    }
}

/// A three-part swamp name `sanctuary/realm/swamp`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SwampName {
    /// First part.
    pub sanctuary: String,
    /// Second part.
    pub realm: String,
    /// Third part.
    pub swamp: String,
}

impl SwampName {
    /// Builds a name from its parts.
    pub fn new(sanctuary: &str, realm: &str, swamp: &str) -> SwampName {
        SwampName {
            sanctuary: sanctuary.to_owned(),
            realm: realm.to_owned(),
            swamp: swamp.to_owned(),
        }
    }

    /// Parses `sanctuary/realm/swamp` (exactly three `/`-separated parts).
    pub fn parse(full: &str) -> Option<SwampName> {
        let mut it = full.split('/');
        let (a, b, c) = (it.next()?, it.next()?, it.next()?);
        if it.next().is_some() {
            return None;
        }
        Some(SwampName::new(a, b, c))
    }

    /// `sanctuary/realm/swamp`.
    pub fn full(&self) -> String {
        format!("{}/{}/{}", self.sanctuary, self.realm, self.swamp)
    }

    /// Island id: xxhash64 of the concatenated parts, modulo `all_islands`, plus 1.
    pub fn island_id(&self, all_islands: u64) -> u64 {
        let cat = format!("{}{}{}", self.sanctuary, self.realm, self.swamp);
        xxh64(cat.as_bytes(), 0) % all_islands.max(1) + 1
    }

    /// Swamp folder (and `.hyd` stem) name: hex of xxhash64 of the full name.
    pub fn folder_name(&self) -> String {
        format!("{:x}", xxh64(self.full().as_bytes(), 0))
    }

    /// Hashed folder levels between island and swamp folder.
    pub fn hashed_levels(&self, depth: usize, max_folders_per_level: usize) -> Vec<String> {
        let hex = self.folder_name();
        let width = format!("{:x}", max_folders_per_level.saturating_sub(1))
            .len()
            .max(2);
        (0..depth)
            .map(|i| {
                let start = (i * width).min(hex.len());
                let end = (start + width).min(hex.len());
                hex[start..end].to_owned()
            })
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// Path of the swamp without extension: the V1 folder; `+ ".hyd"` is the V2 file.
    pub fn base_path(&self, root: &Path, layout: &Layout) -> PathBuf {
        let mut p = root.join(self.island_id(layout.all_islands).to_string());
        for level in self.hashed_levels(layout.depth, layout.max_folders_per_level) {
            p.push(level);
        }
        p.push(self.folder_name());
        p
    }

    /// Path of the swamp's `.hyd` file.
    pub fn hyd_path(&self, root: &Path, layout: &Layout) -> PathBuf {
        let mut p = self.base_path(root, layout).into_os_string();
        p.push(HYD_SUFFIX);
        PathBuf::from(p)
    }
}

impl std::fmt::Display for SwampName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.sanctuary, self.realm, self.swamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_upstream_rules() {
        assert_eq!(xxh64(b"", 0), 0xef46_db37_51d8_e999);
        let n = SwampName::parse("users/profiles/swamp-1").unwrap();
        assert_eq!(n.full(), "users/profiles/swamp-1");
        let hex = format!("{:x}", xxh64(b"users/profiles/swamp-1", 0));
        assert_eq!(n.folder_name(), hex);
        let island = xxh64(b"usersprofilesswamp-1", 0) % 1000 + 1;
        assert_eq!(n.island_id(1000), island);
        let p = n.hyd_path(Path::new("/d"), &Layout::default());
        assert_eq!(
            p,
            PathBuf::from(format!("/d/{island}/{}/{hex}.hyd", &hex[..3]))
        );
        assert_eq!(
            n.hashed_levels(2, 256),
            vec![hex[..2].to_owned(), hex[2..4].to_owned()]
        );
        assert_eq!(n.hashed_levels(1, 2), vec![hex[..2].to_owned()]);
        assert_eq!(n.hashed_levels(40, 1000).concat(), hex);
        assert!(SwampName::parse("a/b").is_none());
        assert!(SwampName::parse("a/b/c/d").is_none());
    }
}
