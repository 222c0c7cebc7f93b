//! The pack writer: takes sealed blobs from any number of threads, fills data and tree packs,
//! checks each finished pack once more from the bytes it then writes while naming it, stores it, and writes index files for what was stored —
//! packs always before the index that names them.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::backend::FileKind;
use crate::crypto::Keys;
use crate::repo::Repository;
use crate::repo::blob::{BlobType, Scratch, SealedBlob};
use crate::repo::index::{INDEX_VERSION, IndexFile, IndexPack};
use crate::repo::pack::{PackBuilder, SealedPack};
use crate::{Error, Id, Result};

/// Blobs in one index file before it is written out mid-run (keeps a killed run's work usable).
pub(crate) const INDEX_FLUSH_BLOBS: usize = 50_000;

/// What the writer stored.
#[derive(Debug, Clone, Default)]
pub struct WriterStats {
    /// Packs stored.
    pub packs: u64,
    /// Bytes of packs stored.
    pub pack_bytes: u64,
    /// Index files written.
    pub index_files: u64,
    /// Index files written, by name.
    pub index_ids: Vec<Id>,
}

struct State {
    /// A write-only key's send log, which records every index file written.
    log: Option<crate::repo::sendlog::SendLog>,
    pending: IndexFile,
    stats: WriterStats,
    error: Option<Error>,
}

/// A handle to send blobs to; `finish` flushes everything.
pub struct PackWriter {
    tx: Option<Sender<SealedBlob>>,
    packer: Option<JoinHandle<()>>,
    state: Arc<Mutex<State>>,
    repo_keys: Keys,
    backend: Arc<dyn crate::backend::Backend>,
}

/// Where finished packs go: checked, named and stored (and indexed), or only named for a dry
/// run. The check runs on the very buffers that are then written.
fn store_pack(
    backend: &dyn crate::backend::Backend,
    keys: &Keys,
    state: &Mutex<State>,
    pack: SealedPack,
    scratch: &mut Scratch,
    dry_run: bool,
) -> Result<()> {
    let pack = if dry_run {
        let id = Id::of_stored(&pack.bytes);
        pack.named(id)
    } else {
        let id = pack.check(keys, scratch)?;
        backend.write(FileKind::Pack, &id.to_hex(), &pack.bytes)?;
        crate::failpoint::hit("after-pack");
        pack.named(id)
    };
    let flush = {
        let mut s = state.lock().expect("writer state");
        s.stats.packs += 1;
        s.stats.pack_bytes += pack.bytes.len() as u64;
        s.pending
            .packs
            .push(IndexPack::from_entries(pack.id, &pack.entries));
        let n: usize = s.pending.packs.iter().map(|p| p.blobs.len()).sum();
        (n >= INDEX_FLUSH_BLOBS).then(|| std::mem::take(&mut s.pending))
    };
    if let Some(f) = flush
        && !dry_run
    {
        write_index(backend, keys, state, f)?;
    }
    Ok(())
}

fn write_index(
    backend: &dyn crate::backend::Backend,
    keys: &Keys,
    state: &Mutex<State>,
    mut f: IndexFile,
) -> Result<()> {
    if f.packs.is_empty() {
        return Ok(());
    }
    f.version = INDEX_VERSION;
    let bytes = crate::repo::object::seal(keys, &f);
    let id = Id::of_stored(&bytes);
    backend.write(FileKind::Index, &id.to_hex(), &bytes)?;
    let mut s = state.lock().expect("writer state");
    if let Some(log) = &s.log {
        log.record_index(&id, &f);
    }
    s.stats.index_files += 1;
    s.stats.index_ids.push(id);
    Ok(())
}

impl PackWriter {
    /// Starts a writer with `uploaders` threads storing packs (dry runs store nothing).
    pub fn new(repo: &Repository, uploaders: usize, dry_run: bool) -> PackWriter {
        let (tx, rx) = bounded::<SealedBlob>(8);
        // A rendezvous: a finished pack waits for a free uploader instead of adding a pack of memory.
        let (ptx, prx) = bounded::<SealedPack>(0);
        let state = Arc::new(Mutex::new(State {
            log: repo.send_log(),
            pending: IndexFile::default(),
            stats: WriterStats::default(),
            error: None,
        }));
        let keys = repo.keys().clone();
        let backend = repo.backend().clone();
        let target = repo.config().pack_size as usize;
        let c = repo.config();
        let max_blob = c.chunker.max.max(c.hyd_chunker.max) as usize + crate::crypto::SEAL_OVERHEAD;
        let mut uploads = Vec::new();
        for _ in 0..uploaders.max(1) {
            let (prx, keys, backend, state) =
                (prx.clone(), keys.clone(), backend.clone(), state.clone());
            uploads.push(std::thread::spawn(move || {
                uploader(prx, &keys, backend.as_ref(), &state, dry_run)
            }));
        }
        let pkeys = keys.clone();
        let packer = std::thread::spawn(move || {
            // Target, plus the largest blob that can push it over, plus room for the header.
            let mut data = PackBuilder::with_reserve(target + max_blob + (256 << 10));
            let mut tree = PackBuilder::default();
            for mut b in rx.iter() {
                // A memory fault between sealing and storing, for the tests: the pack check
                // must refuse the pack.
                crate::failpoint::fault("sealed-blob", &mut b.sealed);
                let builder = match b.kind {
                    BlobType::Data => &mut data,
                    BlobType::Tree => &mut tree,
                };
                builder.add(b.kind, b.id, &b.sealed, b.raw_len, b.compressed);
                if builder.size() >= target && ptx.send(builder.seal(&pkeys)).is_err() {
                    break;
                }
            }
            for b in [&mut data, &mut tree] {
                if !b.is_empty() && ptx.send(b.seal(&pkeys)).is_err() {
                    break;
                }
            }
            drop(ptx);
            for u in uploads {
                let _ = u.join();
            }
        });
        PackWriter {
            tx: Some(tx),
            packer: Some(packer),
            state,
            repo_keys: keys,
            backend,
        }
    }

    /// A sender for blobs; sending fails once the writer has hit an error.
    pub fn sender(&self) -> Sender<SealedBlob> {
        self.tx.clone().expect("writer is open")
    }

    /// Whether the writer has failed (producers should stop early; `finish` returns the error).
    pub fn failed(&self) -> bool {
        self.state.lock().expect("writer state").error.is_some()
    }

    /// Flushes all packs and the final index file; returns what was stored.
    pub fn finish(mut self, dry_run: bool) -> Result<WriterStats> {
        drop(self.tx.take());
        if let Some(p) = self.packer.take() {
            p.join()
                .map_err(|_| Error::Internal("pack writer thread panicked".into()))?;
        }
        let mut s = self.state.lock().expect("writer state");
        if let Some(e) = s.error.take() {
            return Err(e);
        }
        let pending = std::mem::take(&mut s.pending);
        drop(s);
        if !dry_run {
            crate::failpoint::hit("before-index");
            write_index(self.backend.as_ref(), &self.repo_keys, &self.state, pending)?;
        }
        let s = self.state.lock().expect("writer state");
        Ok(s.stats.clone())
    }
}

fn uploader(
    rx: Receiver<SealedPack>,
    keys: &Keys,
    backend: &dyn crate::backend::Backend,
    state: &Mutex<State>,
    dry_run: bool,
) {
    let mut scratch = Scratch::default();
    for pack in rx.iter() {
        if state.lock().expect("writer state").error.is_some() {
            continue; // after a failure, drain without storing so no producer blocks
        }
        if let Err(e) = store_pack(backend, keys, state, pack, &mut scratch, dry_run) {
            state.lock().expect("writer state").error.get_or_insert(e);
        }
    }
}
