//! An exact set of blob ids for what one run has sent (its in-run deduplication), at about 32
//! bytes per id: a sorted array plus a small hash set of recent ids, merged into the array in
//! place when it fills. A `HashSet<Id>` costs 33 bytes per bucket with up to twice as many
//! buckets as ids (and both tables while it grows): at the millions of blobs of a data root of a
//! million Swamps that was the largest part of a backup's memory.

use std::collections::HashSet;

use crate::Id;

/// Ids kept in the hash set before they are merged into the sorted array.
const RECENT: usize = 1 << 16;

/// A set of ids; see the module documentation.
#[derive(Debug, Default)]
pub struct IdSet {
    sorted: Vec<Id>,
    recent: HashSet<Id>,
}

impl IdSet {
    /// Adds `id`; true if it was not in the set.
    pub fn insert(&mut self, id: Id) -> bool {
        if self.sorted.binary_search(&id).is_ok() || !self.recent.insert(id) {
            return false;
        }
        if self.recent.len() >= RECENT {
            self.merge();
        }
        true
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }

    /// True when the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves the recent ids into the sorted array: merged from the back, in place.
    fn merge(&mut self) {
        let mut new: Vec<Id> = self.recent.drain().collect();
        new.sort_unstable();
        let (mut i, mut j) = (self.sorted.len(), new.len());
        self.sorted.resize(i + j, Id::default());
        // Ids from `recent` are never in `sorted` (insert checks), so no two are equal.
        while j > 0 {
            let k = i + j - 1;
            if i > 0 && self.sorted[i - 1] > new[j - 1] {
                self.sorted[k] = self.sorted[i - 1];
                i -= 1;
            } else {
                self.sorted[k] = new[j - 1];
                j -= 1;
            }
        }
        self.recent.shrink_to(RECENT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> Id {
        Id(*blake3::hash(&n.to_le_bytes()).as_bytes())
    }

    #[test]
    fn agrees_with_a_hash_set_across_merges() {
        let mut set = IdSet::default();
        let mut want = HashSet::new();
        // Three merges' worth, every id offered twice (the second time after a merge).
        let n = 3 * RECENT as u64 + 123;
        for round in 0..2 {
            for i in 0..n {
                let fresh = set.insert(id(i));
                assert_eq!(fresh, want.insert(id(i)), "id {i}, round {round}");
            }
        }
        assert_eq!(set.len(), n as usize);
        assert!(set.sorted.is_sorted() && set.sorted.len() >= 3 * RECENT);
        assert!((n..n + 100).all(|i| set.insert(id(i))));
    }
}
