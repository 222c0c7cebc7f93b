//! The name index of a snapshot: every Swamp name with the path of its file (or V1 folder)
//! in the snapshot tree, sorted by name and cut into pages.
//!
//! A restore or verify by Swamp name reads the small root and the pages whose name range can
//! match, then only the trees along the matching paths, instead of every tree of the snapshot.
//! Pages end where a name's hash says so (content-defined, as chunks are), so a new or removed
//! Swamp changes one page: the pages of unchanged ranges deduplicate between snapshots. Pages
//! and root are stored as tree blobs.

use serde::{Deserialize, Serialize};

use crate::Id;
use crate::repo::object::{from_cbor, to_cbor};

/// A page ends after a name whose hash is 0 modulo this (about 512 names per page).
const CUT_MODULUS: u64 = 512;
/// A page never holds more names than this.
const MAX_PAGE: usize = 4096;

/// One Swamp: its name and its path relative to the snapshot root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NameEntry {
    /// `sanctuary/realm/swamp`.
    pub name: String,
    /// Path of the `.hyd` file or V1 folder, relative to the snapshot root (raw bytes).
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
}

/// One page: entries sorted by name (then path).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamePage {
    /// The entries.
    pub entries: Vec<NameEntry>,
}

/// A page as listed in the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRef {
    /// First name on the page.
    pub first: String,
    /// Last name on the page.
    pub last: String,
    /// Entries on the page.
    pub count: u64,
    /// The page's tree blob.
    pub id: Id,
}

/// The root of a name index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameIndex {
    /// Pages in name order.
    pub pages: Vec<PageRef>,
}

fn ends_page(name: &[u8]) -> bool {
    let h = blake3::hash(name);
    let v = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
    v % CUT_MODULUS == 0
}

/// The entries of a name index as a walk collects them: packed in one buffer, so a Swamp costs
/// the bytes of its name and path plus 16 (not two allocations and a 48-byte entry, ~150 B),
/// which matters at millions of Swamps.
#[derive(Debug, Default)]
pub struct NameList {
    /// Each entry: name length and path length (u32 LE each), name, path.
    bytes: Vec<u8>,
    /// Where each entry starts in `bytes`.
    starts: Vec<u64>,
}

impl NameList {
    /// Adds one Swamp.
    pub fn push(&mut self, name: &str, path: &[u8]) {
        self.starts.push(self.bytes.len() as u64);
        for part in [name.as_bytes(), path] {
            let len = u32::try_from(part.len()).expect("a name or path under 4 GiB");
            self.bytes.extend_from_slice(&len.to_le_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.extend_from_slice(path);
    }

    /// Number of entries (duplicates included).
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Name and path of the entry starting at `start`.
    fn at(&self, start: u64) -> (&[u8], &[u8]) {
        let b = &self.bytes[start as usize..];
        let len = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes")) as usize;
        let (n, p) = (len(0), len(4));
        (&b[8..8 + n], &b[8 + n..8 + n + p])
    }

    /// The pages of the index, one at a time: entries sorted by name (then path), duplicates
    /// dropped, each page ending where a name's hash says so (or at [`MAX_PAGE`] entries).
    pub fn into_pages(mut self) -> impl Iterator<Item = NamePage> {
        let mut order = std::mem::take(&mut self.starts);
        order.sort_unstable_by(|&a, &b| self.at(a).cmp(&self.at(b)));
        order.dedup_by(|a, b| self.at(*a) == self.at(*b));
        let mut next = order.into_iter().peekable();
        std::iter::from_fn(move || {
            next.peek()?;
            let mut page = NamePage::default();
            for start in next.by_ref() {
                let (name, path) = self.at(start);
                page.entries.push(NameEntry {
                    name: String::from_utf8_lossy(name).into_owned(),
                    path: path.to_vec(),
                });
                if ends_page(name) || page.entries.len() >= MAX_PAGE {
                    break;
                }
            }
            Some(page)
        })
    }
}

impl NamePage {
    /// CBOR bytes.
    pub fn encode(&self) -> Vec<u8> {
        to_cbor(self)
    }

    /// Parses a page, checking that it is sorted.
    pub fn decode(bytes: &[u8]) -> crate::Result<NamePage> {
        let p: NamePage = from_cbor(bytes, "name page")?;
        if !p.entries.is_sorted() {
            return Err(crate::Error::corrupt("name page", "entries out of order"));
        }
        Ok(p)
    }

    /// Its listing in the root (`None` for an empty page).
    pub fn reference(&self, id: Id) -> Option<PageRef> {
        Some(PageRef {
            first: self.entries.first()?.name.clone(),
            last: self.entries.last()?.name.clone(),
            count: self.entries.len() as u64,
            id,
        })
    }
}

impl NameIndex {
    /// CBOR bytes.
    pub fn encode(&self) -> Vec<u8> {
        to_cbor(self)
    }

    /// Parses a root.
    pub fn decode(bytes: &[u8]) -> crate::Result<NameIndex> {
        from_cbor(bytes, "name index")
    }

    /// Number of Swamps listed.
    pub fn len(&self) -> u64 {
        self.pages.iter().map(|p| p.count).sum()
    }

    /// True when no Swamp is listed.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// The pages that may hold a name matched by one of `patterns` (Swamp-name globs): those
    /// whose name range meets the range of names starting with a pattern's literal prefix.
    pub fn candidates(&self, patterns: &[String]) -> Vec<&PageRef> {
        let prefixes: Vec<&str> = patterns.iter().map(|p| literal_prefix(p)).collect();
        self.pages
            .iter()
            .filter(|pg| {
                prefixes.iter().any(|pre| {
                    // Names starting with `pre` sort at or after `pre`, and before any name
                    // that is greater and does not start with it.
                    pg.last.as_str() >= *pre
                        && (pg.first.as_str() <= *pre || pg.first.starts_with(pre))
                })
            })
            .collect()
    }
}

/// The part of a glob before its first special character.
pub fn literal_prefix(pattern: &str) -> &str {
    let end = pattern
        .find(['*', '?', '[', '{', '\\'])
        .unwrap_or(pattern.len());
    &pattern[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(name: &str) -> NameEntry {
        NameEntry {
            name: name.into(),
            path: format!("1/abc/{name}.hyd").into_bytes(),
        }
    }

    /// The pages of a name list holding `entries`.
    fn paginate(entries: Vec<NameEntry>) -> Vec<NamePage> {
        let mut list = NameList::default();
        for e in &entries {
            list.push(&e.name, &e.path);
        }
        list.into_pages().collect()
    }

    fn index_of(pages: &[NamePage]) -> NameIndex {
        NameIndex {
            pages: pages
                .iter()
                .enumerate()
                .map(|(i, p)| p.reference(Id([i as u8; 32])).unwrap())
                .collect(),
        }
    }

    #[test]
    fn prefix_stops_at_the_first_special_character() {
        assert_eq!(literal_prefix("users/profiles/*"), "users/profiles/");
        assert_eq!(literal_prefix("a/b/c"), "a/b/c");
        assert_eq!(literal_prefix("a/[bc]/d"), "a/");
        assert_eq!(literal_prefix("**"), "");
        assert_eq!(literal_prefix("x/{a,b}"), "x/");
    }

    #[test]
    fn a_new_name_changes_one_page() {
        let names: Vec<NameEntry> = (0..20_000).map(|i| entry(&format!("s/r/{i:06}"))).collect();
        let a = paginate(names.clone());
        let mut more = names;
        more.push(entry("s/r/010000x"));
        let b = paginate(more);
        assert!(a.len() > 10, "{} pages", a.len());
        let changed = b.iter().filter(|p| !a.contains(p)).count();
        assert_eq!(changed, 1);
    }

    #[test]
    fn list_pages_sorted_without_duplicates() {
        let names: Vec<String> = (0..5000)
            .map(|i| format!("s/r/{:05}", (i * 7919) % 5000))
            .collect();
        let mut a = NameList::default();
        for n in &names {
            a.push(n, format!("x/{n}.hyd").as_bytes());
        }
        a.push(&names[0], format!("x/{}.hyd", names[0]).as_bytes());
        a.push(&names[0], b"y/other-path.hyd");
        assert_eq!(a.len(), 5002);
        let got: Vec<NameEntry> = a.into_pages().flat_map(|p| p.entries).collect();
        let mut want: Vec<NameEntry> = names
            .iter()
            .map(|n| NameEntry {
                name: n.clone(),
                path: format!("x/{n}.hyd").into_bytes(),
            })
            .collect();
        want.push(NameEntry {
            name: names[0].clone(),
            path: b"y/other-path.hyd".to_vec(),
        });
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn page_and_root_round_trip() {
        let pages = paginate((0..3000).map(|i| entry(&format!("a/b/{i}"))).collect());
        for p in &pages {
            assert_eq!(&NamePage::decode(&p.encode()).unwrap(), p);
        }
        let root = index_of(&pages);
        assert_eq!(NameIndex::decode(&root.encode()).unwrap(), root);
        assert_eq!(root.len(), 3000);
    }

    #[test]
    fn unsorted_page_is_rejected() {
        let p = NamePage {
            entries: vec![entry("b/b/b"), entry("a/a/a")],
        };
        assert!(NamePage::decode(&p.encode()).is_err());
    }

    proptest! {
        /// Every name a pattern matches is on a candidate page.
        #[test]
        fn candidates_cover_every_match(
            names in proptest::collection::btree_set("[a-c]{1,3}/[a-c]{1,3}/[a-c0-9]{1,4}", 1..1500),
            pat in "[a-c]{0,3}(/[a-c]{0,2})?\\*?",
        ) {
            let pages = paginate(names.iter().map(|n| entry(n)).collect());
            let root = index_of(&pages);
            let glob = crate::repo::filter::SwampFilter::new(std::slice::from_ref(&pat)).unwrap();
            let cands: Vec<usize> = root.candidates(std::slice::from_ref(&pat))
                .iter().map(|r| r.id.0[0] as usize).collect();
            for (i, p) in pages.iter().enumerate() {
                for e in &p.entries {
                    if glob.matches(&e.name) {
                        prop_assert!(cands.contains(&i), "{} on page {} not a candidate", e.name, i);
                    }
                }
            }
        }
    }
}
