//! Per-stage throughput of the backup data path, single core, on realistic mixed data.
//!
//! Run with `cargo bench --bench stages`. Every stage reports MB/s (decimal) of plaintext:
//! FastCDC chunking, keyed BLAKE3 ids, zstd levels 1 and 3, AES-256-GCM sealing, the whole
//! `seal_blob` (compress + seal) and the open + verify path (`open_blob`: decrypt, decompress,
//! hash and compare), plus the pack check (`SealedPack::check`) on a full pack as the pack writer runs it. The `hyd`
//! group measures the check a `.hyd` capture makes of every block (MB/s of file bytes): CRC and
//! Snappy length only (`hyd_crc_len`, the check before entries were parsed), full decompression
//! and entry parsing (`hyd_entries`, what capture does for blocks up to 8 MiB) and the streaming
//! check of larger blocks (`hyd_streamed`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use hydrabackup::Id;
use hydrabackup::chunker::Chunker;
use hydrabackup::crypto::{Keys, SealKey};
use hydrabackup::hyd::block::{
    BlockHeader, Entry, Op, build_block, check_crc, check_snappy_len, decompress_block,
    parse_entries,
};
use hydrabackup::hyd::stream::BlockCheck;
use hydrabackup::repo::blob::{BlobType, Scratch, open_blob, seal_blob};
use hydrabackup::repo::config::ChunkerParams;
use hydrabackup::repo::pack::{PackBuilder, PackEntry};

/// Bytes of the buffer the chunker cuts (about 32 chunks at the default 1 MiB average).
const CHUNK_INPUT: usize = 32 << 20;
/// One blob: the default average chunk size.
const BLOB: usize = 1 << 20;
/// Blobs in the pack handed to the pack check (the default 16 MiB pack target).
const PACK_BLOBS: usize = 16;

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
}

const WORDS: &str = "\
    swamp treasure realm sanctuary key value expire created updated deleted user \
    session token index hydra backup pack blob tree snapshot lock chunk status \
    active pending error ok true false null id name email count total price amount \
    currency EUR USD HUF timestamp 2024-05-17T10:22:31Z the of and a to in is that \
    for it as with on by this from at or";

/// Mixed data, about half incompressible (random runs) and half repetitive text (records built
/// from a small vocabulary and numbers), interleaved in runs of 1–16 KiB: roughly what
/// already-compressed values next to plain records look like. zstd -1 shrinks it to ~72%.
fn mixed(seed: u64, len: usize) -> Vec<u8> {
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(len + 64);
    let mut random = false;
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

fn keys() -> Keys {
    Keys::new(SealKey::new(&[7; 32]), [9; 32])
}

fn stages(c: &mut Criterion) {
    let keys = keys();
    let big = mixed(1, CHUNK_INPUT);
    let blob = mixed(2, BLOB);
    {
        let z = zstd::bulk::compress(&blob, 1).expect("zstd");
        eprintln!(
            "data: zstd -1 ratio {:.2} ({} -> {} bytes)",
            blob.len() as f64 / z.len() as f64,
            blob.len(),
            z.len()
        );
    }

    let mut g = c.benchmark_group("stages");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    // FastCDC with the repository defaults (256 KiB / 1 MiB / 4 MiB).
    let chunker = Chunker::new(&ChunkerParams {
        min: 256 * 1024,
        avg: 1024 * 1024,
        max: 4 * 1024 * 1024,
        seed: 0x5eed,
    });
    g.sample_size(20);
    g.throughput(Throughput::BytesDecimal(big.len() as u64));
    g.bench_function("chunk_fastcdc", |b| {
        b.iter(|| chunker.cut_all(black_box(&big)))
    });

    g.sample_size(50);
    g.throughput(Throughput::BytesDecimal(blob.len() as u64));
    g.bench_function("blake3_keyed", |b| {
        b.iter(|| keys.blob_id(black_box(&blob)))
    });
    for level in [1, 3] {
        g.bench_function(format!("zstd_{level}"), |b| {
            b.iter(|| zstd::bulk::compress(black_box(&blob), level).expect("zstd"))
        });
    }
    g.bench_function("aes256gcm_seal", |b| {
        b.iter(|| keys.seal_key().seal(black_box(&blob)))
    });
    let id = keys.blob_id(&blob);
    g.bench_function("seal_blob_zstd1", |b| {
        b.iter(|| seal_blob(&keys, BlobType::Data, id, black_box(&blob), 1))
    });

    // Open + verify: decrypt, decompress, hash, compare (what the pack check does per blob).
    let sealed = seal_blob(&keys, BlobType::Data, id, &blob, 1);
    assert!(sealed.compressed, "the mixed data must compress");
    let entry = PackEntry {
        kind: BlobType::Data,
        id,
        offset: 0,
        len: sealed.sealed.len() as u32,
        raw_len: sealed.raw_len,
        compressed: sealed.compressed,
    };
    g.bench_function("open_verify_zstd1", |b| {
        b.iter(|| open_blob(&keys, &entry, black_box(&sealed.sealed)).expect("opens"))
    });

    // The pack check on a full 16-blob pack as the pack writer runs it before storing: the
    // second pass over every byte, which also names the pack (BLAKE3 of all of it).
    let mut builder = PackBuilder::default();
    let mut raw = 0u64;
    for i in 0..PACK_BLOBS {
        let data = mixed(100 + i as u64, BLOB);
        let id: Id = keys.blob_id(&data);
        let s = seal_blob(&keys, BlobType::Data, id, &data, 1);
        builder.add(s.kind, s.id, &s.sealed, s.raw_len, s.compressed);
        raw += data.len() as u64;
    }
    let pack = builder.seal(&keys);
    let mut scratch = Scratch::default();
    g.sample_size(20);
    g.throughput(Throughput::BytesDecimal(raw));
    g.bench_function("verify_pack_16MiB", |b| {
        b.iter(|| {
            black_box(&pack)
                .check(&keys, &mut scratch)
                .expect("verifies")
        })
    });
    g.finish();
}

/// 16 MiB of `.hyd` blocks of ~16 KiB of entries (keys of 20 bytes, values of 100-900 bytes of
/// the mixed data), as HydrAIDE flushes them.
fn hyd_blocks() -> Vec<(BlockHeader, Vec<u8>)> {
    let data = mixed(7, 64 << 20);
    let mut rng = Rng(11);
    let (mut blocks, mut at, mut total) = (Vec::new(), 0usize, 0usize);
    while total < 16 << 20 {
        let mut entries = Vec::new();
        let mut size = 0;
        while size < 16 << 10 {
            let n = 100 + (rng.next() % 800) as usize;
            let e = Entry::new(
                Op::Insert,
                format!("key-{:015}", rng.next() % 1_000_000_000),
                &data[at..at + n],
            );
            at = (at + n) % (data.len() - 1000);
            size += e.encoded_len();
            entries.push(e);
        }
        let (h, p) = build_block(&entries).expect("block");
        total += 16 + p.len();
        blocks.push((h, p));
    }
    blocks
}

fn hyd(c: &mut Criterion) {
    let blocks = hyd_blocks();
    let bytes: u64 = blocks.iter().map(|b| 16 + b.1.len() as u64).sum();
    let mut g = c.benchmark_group("hyd");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(20)
        .throughput(Throughput::BytesDecimal(bytes));
    g.bench_function("hyd_crc_len", |b| {
        b.iter(|| {
            for (h, p) in &blocks {
                check_crc(h, black_box(p)).expect("crc");
                check_snappy_len(h, p).expect("len");
            }
        })
    });
    g.bench_function("hyd_entries", |b| {
        b.iter(|| {
            for (h, p) in &blocks {
                let raw = decompress_block(h, black_box(p)).expect("decompresses");
                black_box(parse_entries(&raw, h.entry_count).expect("parses").len());
            }
        })
    });
    g.bench_function("hyd_streamed", |b| {
        b.iter(|| {
            for (h, p) in &blocks {
                let mut check = BlockCheck::new(*h);
                check.feed(black_box(p));
                check.finish().expect("checks");
            }
        })
    });
    g.finish();
}

criterion_group!(benches, stages, hyd);
criterion_main!(benches);
