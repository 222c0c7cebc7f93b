//! The one way operations read many blobs: grouped by pack, each pack's span read once, the
//! blobs opened in offset order, a copy that fails passed over for another copy the index lists.
//! Used by restore, copy, prune and verify.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;

use crate::backend::FileKind;
use crate::repo::Repository;
use crate::repo::blob::BlobType;
use crate::repo::index::{BlobLocation, Index};
use crate::repo::pack::PackEntry;
use crate::{Id, Result};

/// Blobs to read, by pack and offset, each with the caller's value `T` (where it goes, ...).
/// Keyed by offset and id, so a (forged) index that puts two blobs at one offset gets each
/// checked, not one read for the other.
pub struct PackReads<T> {
    packs: HashMap<Id, PackBlobs<T>>,
}

/// One pack's blobs by (offset, id), each with its entry and the caller's value.
type PackBlobs<T> = BTreeMap<(u32, [u8; 32]), (PackEntry, T)>;

impl<T> Default for PackReads<T> {
    fn default() -> Self {
        PackReads {
            packs: HashMap::new(),
        }
    }
}

/// A blob opened and checked.
pub struct Opened {
    /// The copy that opened (another pack's when the one planned failed).
    pub entry: PackEntry,
    /// The payload as stored (compressed when the entry says so).
    pub payload: Vec<u8>,
    plain: Option<Vec<u8>>,
}

impl Opened {
    /// The plaintext.
    pub fn plain(&self) -> &[u8] {
        self.plain.as_deref().unwrap_or(&self.payload)
    }
}

/// One blob of a pack as [`PackReads::read`] hands it over.
pub struct Read<'a, T> {
    /// The planned copy (in the pack being read).
    pub entry: PackEntry,
    /// The caller's value.
    pub value: &'a T,
    /// The blob, or why no copy of it opens (the planned copy's failure, naming its pack).
    pub blob: std::result::Result<Opened, String>,
}

impl<T: Sync> PackReads<T> {
    /// The value of the blob at `loc`, made by `make` when the blob is added.
    pub fn at(&mut self, loc: &BlobLocation, make: impl FnOnce() -> T) -> &mut T {
        &mut self
            .packs
            .entry(loc.pack)
            .or_default()
            .entry((loc.entry.offset, loc.entry.id.0))
            .or_insert_with(|| (loc.entry, make()))
            .1
    }

    /// How many packs are read.
    pub fn packs(&self) -> usize {
        self.packs.len()
    }

    /// Every blob with its value.
    pub fn blobs(&self) -> impl Iterator<Item = &(PackEntry, T)> {
        self.packs.values().flat_map(|b| b.values())
    }

    /// Reads the packs in parallel, each span once; `f(pack, span, blobs)` gets the span's
    /// length (or why it could not be read) and the pack's blobs in offset order, each opened
    /// as it is taken from the iterator (from another copy when this one fails).
    pub fn read<F>(&self, repo: &Repository, index: &Index, kind: BlobType, f: F) -> Result<()>
    where
        F: Fn(&Id, Result<u64>, &mut dyn Iterator<Item = Read<'_, T>>) -> Result<()> + Sync,
    {
        let packs: Vec<_> = self.packs.iter().collect();
        packs.par_iter().try_for_each(|(pack, blobs)| {
            let first = blobs.values().next().expect("non-empty").0.offset as u64;
            let last = blobs.values().next_back().expect("non-empty").0;
            let len = last.offset as u64 + last.len as u64 - first;
            let (bytes, span) =
                match repo
                    .backend()
                    .read_range(FileKind::Pack, &pack.to_hex(), first, len)
                {
                    Ok(b) => (Ok(b), Ok(len)),
                    Err(er) => (Err(format!("pack {pack}: {er}")), Err(er)),
                };
            let mut it = blobs.values().map(|(e, value)| {
                let s = (e.offset as u64 - first) as usize;
                let planned = match &bytes {
                    Ok(b) => repo
                        .open_blob_in(pack, e, &b[s..s + e.len as usize])
                        .map(|(payload, plain)| Opened {
                            entry: *e,
                            payload,
                            plain,
                        })
                        .map_err(|er| format!("{er} (in pack {pack})")),
                    Err(why) => Err(why.clone()),
                };
                Read {
                    entry: *e,
                    value,
                    blob: planned.or_else(|why| other_copy(repo, index, kind, pack, e).ok_or(why)),
                }
            });
            f(pack, span, &mut it)
        })
    }
}

/// The first copy of `e`'s blob outside `pack` that opens.
fn other_copy(
    repo: &Repository,
    index: &Index,
    kind: BlobType,
    pack: &Id,
    e: &PackEntry,
) -> Option<Opened> {
    index
        .copies(kind, &e.id)
        .filter(|l| l.pack != *pack)
        .find_map(|l| {
            let a = l.entry;
            let b = repo
                .backend()
                .read_range(
                    FileKind::Pack,
                    &l.pack.to_hex(),
                    a.offset as u64,
                    a.len as u64,
                )
                .ok()?;
            let (payload, plain) = repo.open_blob_in(&l.pack, &a, &b).ok()?;
            Some(Opened {
                entry: a,
                payload,
                plain,
            })
        })
}
