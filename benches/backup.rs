//! Whole-backup throughput through the library: a generated tree (1 GB by default, override
//! with `HYDRABACKUP_BENCH_BYTES`) backed up into a fresh local repository per iteration.
//!
//! Run with `cargo bench --bench backup`. Two cases:
//! - `full`: the real thing (chunk, hash, compress, seal, verify each pack, write + fsync);
//! - `dry_run`: the same pipeline with nothing verified or written, to separate storage from CPU.
//!
//! The source tree is written once, before timing, so it is read from the page cache. Each
//! sample is one backup (criterion flat sampling, 10 samples); repository setup (Argon2 at
//! 64 KiB, 1 pass) and removal are outside the timing. Under `cargo test --benches` (no
//! `--bench` argument) a 4 MiB tree is used so the smoke run stays quick.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};

use hydrabackup::backend::LocalBackend;
use hydrabackup::crypto::KdfParams;
use hydrabackup::ops::backup::{BackupOptions, backup};
use hydrabackup::ops::progress::Progress;
use hydrabackup::repo::Repository;
use hydrabackup::repo::config::Config;

const DEFAULT_BYTES: u64 = 1_000_000_000;
const SMOKE_BYTES: u64 = 4 << 20;

/// splitmix64: a fast deterministic generator, so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

const WORDS: &str = "\
    swamp treasure realm sanctuary key value expire created updated deleted user \
    session token index hydra backup pack blob tree snapshot lock chunk status \
    active pending error ok true false null id name email count total price amount \
    currency EUR USD HUF timestamp 2024-05-17T10:22:31Z the of and a to in is that \
    for it as with on by this from at or";

/// Mixed data (same generator as the stages bench): about half random runs, half repetitive
/// text, interleaved in runs of 1–16 KiB.
fn mixed(seed: u64, len: usize) -> Vec<u8> {
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(len + 64);
    let mut random = seed.is_multiple_of(2);
    while out.len() < len {
        let run = 1024 + (rng.next() % (15 * 1024)) as usize;
        let end = (out.len() + run).min(len);
        if random {
            while out.len() < end {
                out.extend_from_slice(&rng.next().to_le_bytes());
            }
        } else {
            while out.len() < end {
                let r = rng.next();
                out.extend_from_slice(words[(r % words.len() as u64) as usize].as_bytes());
                match (r >> 8) % 8 {
                    0 => out.extend_from_slice(format!("={} ", (r >> 16) % 100_000).as_bytes()),
                    1 => out.extend_from_slice(b",\n"),
                    _ => out.push(b' '),
                }
            }
        }
        out.truncate(end);
        random = !random;
    }
    out
}

/// What the generated tree holds.
struct TreeStats {
    files: u64,
    dirs: u64,
    bytes: u64,
}

/// Writes `total` bytes of unique mixed data under `root`: about 40% in large files
/// (16–96 MiB), 40% in medium ones (256 KiB–8 MiB) and 20% in small ones (1–64 KiB), spread
/// over two levels of directories.
fn generate(root: &Path, total: u64) -> TreeStats {
    let mut rng = Rng(0xbac0);
    let mut st = TreeStats {
        files: 0,
        dirs: 0,
        bytes: 0,
    };
    let classes: [(f64, u64, u64); 3] = [
        (0.4, 16 << 20, 96 << 20),
        (0.4, 256 << 10, 8 << 20),
        (0.2, 1 << 10, 64 << 10),
    ];
    for (ci, &(share, lo, hi)) in classes.iter().enumerate() {
        let budget = (total as f64 * share) as u64;
        let mut used = 0u64;
        while used < budget {
            let size = rng.range(lo, hi).min(budget - used).max(1);
            let dir = root
                .join(format!("class{ci}"))
                .join(format!("d{:02}", st.files % 16));
            if !dir.exists() {
                std::fs::create_dir_all(&dir).expect("create bench dir");
                st.dirs += 1;
            }
            let data = mixed(rng.next(), size as usize);
            let mut f = std::fs::File::create(dir.join(format!("f{:06}.bin", st.files)))
                .expect("create bench file");
            f.write_all(&data).expect("write bench file");
            used += size;
            st.files += 1;
        }
        st.bytes += used;
    }
    st
}

fn new_repo() -> (tempfile::TempDir, Repository) {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = Arc::new(LocalBackend::new(dir.path().join("repo")));
    let kdf = KdfParams {
        mem_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    let repo = Repository::init(backend, b"bench", kdf, Config::new()).expect("init");
    (dir, repo)
}

fn bench_backup(c: &mut Criterion) {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let total = match std::env::var("HYDRABACKUP_BENCH_BYTES") {
        Ok(v) => v
            .parse()
            .expect("HYDRABACKUP_BENCH_BYTES must be a byte count"),
        Err(_) if benchmarking => DEFAULT_BYTES,
        Err(_) => SMOKE_BYTES,
    };
    let src = tempfile::tempdir().expect("tempdir");
    let t = std::time::Instant::now();
    let st = generate(src.path(), total);
    eprintln!(
        "generated {} bytes in {} files, {} dirs under {} in {:.1?}",
        st.bytes,
        st.files,
        st.dirs,
        src.path().display(),
        t.elapsed()
    );

    // One untimed run to report what the repository holds afterwards.
    {
        let (_dir, repo) = new_repo();
        let opts = BackupOptions {
            paths: vec![src.path().to_path_buf()],
            ..Default::default()
        };
        let out = backup(&repo, &opts, &Progress::default()).expect("backup");
        assert_eq!(out.summary.bytes_read, st.bytes, "every byte is read");
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        eprintln!(
            "one backup: {} data blobs, {} bytes added, {} bytes stored ({:.2}x), {:.2} s",
            out.summary.data_blobs_added,
            out.summary.bytes_added,
            out.summary.bytes_stored,
            out.summary.bytes_added as f64 / out.summary.bytes_stored.max(1) as f64,
            out.summary.duration_secs
        );
    }

    let mut g = c.benchmark_group("backup");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(if benchmarking { 60 } else { 1 }))
        .throughput(Throughput::BytesDecimal(st.bytes));
    for (name, dry_run) in [("full", false), ("dry_run", true)] {
        let opts = BackupOptions {
            paths: vec![src.path().to_path_buf()],
            dry_run,
            ..Default::default()
        };
        g.bench_function(name, |b| {
            b.iter_batched(
                new_repo,
                |(dir, repo)| {
                    let out = backup(&repo, &opts, &Progress::default()).expect("backup");
                    assert_eq!(out.summary.bytes_read, st.bytes);
                    (dir, repo)
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench_backup);
criterion_main!(benches);
