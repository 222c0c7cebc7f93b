//! Finding the copy of a blob that checks out, among the copies the index files list. Prune
//! uses it before it drops a copy, verify to show whether the copy readers prefer is intact.

use std::collections::HashMap;

use crate::Id;
use crate::repo::Repository;
use crate::repo::index::BlobLocation;

/// The outcome of checking copies in order.
#[derive(Debug, Default)]
pub struct Checked {
    /// The first copy that is stored, opens and hashes to its id.
    pub good: Option<BlobLocation>,
    /// Copies tried before it that are missing or fail their check.
    pub failed: Vec<BlobLocation>,
}

/// Reads `candidates` in order until one is stored (in `present`, pack name → size), opens and
/// hashes to its id.
pub fn first_intact(
    repo: &Repository,
    candidates: impl IntoIterator<Item = BlobLocation>,
    present: &HashMap<Id, u64>,
) -> Checked {
    let mut out = Checked::default();
    for loc in candidates {
        if present.contains_key(&loc.pack) && repo.read_blob_at(&loc).is_ok() {
            out.good = Some(loc);
            break;
        }
        out.failed.push(loc);
    }
    out
}
