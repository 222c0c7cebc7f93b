//! Opening the index of a large repository: a synthetic repository of N blobs (default
//! 10,000,000; `HB_INDEX_BLOBS`) in index files of 50,000 blobs, as backups write them, loaded
//! once from the index files (which writes the index map) and then mapped. Prints the time of
//! each, the heap the index holds per blob and the process's peak RSS. Not a criterion bench:
//! one run takes a minute (`cargo bench --bench index_map`; under `cargo test` it runs with
//! 200,000 blobs).

use std::sync::Arc;
use std::time::Instant;

use hydrabackup::backend::{FileKind, LocalBackend};
use hydrabackup::crypto::KdfParams;
use hydrabackup::repo::Repository;
use hydrabackup::repo::blob::BlobType;
use hydrabackup::repo::config::Config;
use hydrabackup::repo::index::{INDEX_VERSION, IndexFile, IndexPack};
use hydrabackup::{Id, repo::pack::PackEntry};

/// Blobs per index file and per pack.
const PER_FILE: usize = 50_000;
const PER_PACK: usize = 1_000;

fn id(n: u64) -> Id {
    Id(*blake3::hash(&n.to_le_bytes()).as_bytes())
}

fn status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l[field.len()..].trim().to_string())
        .unwrap_or_default()
}

fn main() {
    let testing = std::env::args().all(|a| a != "--bench");
    let blobs: usize = std::env::var("HB_INDEX_BLOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if testing { 200_000 } else { 10_000_000 });
    let base = std::env::var_os("HB_BENCH_DIR").map(std::path::PathBuf::from);
    let dir = match &base {
        Some(b) => tempfile::tempdir_in(b),
        None => tempfile::tempdir(),
    }
    .expect("tempdir");
    let backend = Arc::new(LocalBackend::new(dir.path().join("repo")));
    let kdf = KdfParams {
        mem_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    let repo = Repository::init(backend, b"bench", kdf, Config::new())
        .expect("init")
        .with_cache_root(Some(dir.path().join("cache")));
    let t = Instant::now();
    let mut n = 0u64;
    while (n as usize) < blobs {
        let mut file = IndexFile {
            version: INDEX_VERSION,
            supersedes: Vec::new(),
            packs: Vec::new(),
            ..IndexFile::default()
        };
        for _ in 0..PER_FILE / PER_PACK {
            let entries: Vec<PackEntry> = (0..PER_PACK as u32)
                .map(|i| PackEntry {
                    kind: if n.is_multiple_of(50) {
                        BlobType::Tree
                    } else {
                        BlobType::Data
                    },
                    id: id({
                        n += 1;
                        n
                    }),
                    offset: i * 40_000,
                    len: 30_000,
                    raw_len: 32_000,
                    compressed: true,
                })
                .collect();
            file.packs
                .push(IndexPack::from_entries(id(u64::MAX - n), &entries));
        }
        repo.save_object(FileKind::Index, &file)
            .expect("index file");
    }
    println!(
        "{blobs} blobs in {} index files written in {:.1} s",
        blobs.div_ceil(PER_FILE),
        t.elapsed().as_secs_f64()
    );
    for round in ["from the index files (writes the map)", "mapped"] {
        let t = Instant::now();
        let ix = repo.load_index().expect("index");
        let open = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut found = 0;
        for k in (1..=n).step_by(7).take(1_000_000) {
            found += usize::from(
                ix.contains(BlobType::Data, &id(k)) || ix.contains(BlobType::Tree, &id(k)),
            );
        }
        let lookups = t.elapsed().as_secs_f64();
        println!(
            "load {round}: {open:.3} s; {} blobs, heap {} bytes = {:.2} bytes per blob; \
             {found} lookups in {lookups:.3} s; VmRSS {}, VmHWM {}",
            ix.len(),
            ix.heap_bytes(),
            ix.heap_bytes() as f64 / ix.len() as f64,
            status("VmRSS:"),
            status("VmHWM:"),
        );
        assert_eq!(ix.len(), n as usize);
    }
}
