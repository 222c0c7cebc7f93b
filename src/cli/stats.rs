//! `stats`: what the repository holds, from the index and the snapshot summaries alone.

use hydrabackup::Result;
use hydrabackup::backend::FileKind;
use hydrabackup::repo::Repository;
use hydrabackup::repo::blob::BlobType;
use serde::Serialize;

use super::args::Global;
use super::{human, print_json};

#[derive(Serialize, Default)]
struct Stats {
    snapshots: u64,
    packs: u64,
    /// Bytes of all pack files.
    pack_bytes: u64,
    data_blobs: u64,
    tree_blobs: u64,
    /// Plaintext bytes of the distinct blobs.
    unique_bytes: u64,
    /// Stored (compressed, sealed) bytes of the distinct blobs.
    stored_bytes: u64,
    /// Bytes of all files of all snapshots, as backed up.
    logical_bytes: u64,
    /// unique_bytes / stored_bytes.
    compression_ratio: f64,
    /// logical_bytes / unique data bytes.
    dedup_ratio: f64,
}

/// Prints the statistics.
pub fn run(g: &Global, repo: &Repository) -> Result<i32> {
    let index = repo.load_index()?;
    let snaps = repo.snapshots()?;
    let packs = repo.backend().list(FileKind::Pack)?;
    let mut s = Stats {
        snapshots: snaps.len() as u64,
        packs: packs.len() as u64,
        pack_bytes: packs.iter().map(|(_, n)| n).sum(),
        logical_bytes: snaps.iter().map(|(_, s)| s.summary.total_bytes).sum(),
        ..Stats::default()
    };
    let mut data_bytes = 0u64;
    for loc in index.iter() {
        let e = loc.entry;
        match e.kind {
            BlobType::Data => {
                s.data_blobs += 1;
                data_bytes += e.raw_len as u64;
            }
            BlobType::Tree => s.tree_blobs += 1,
        }
        s.unique_bytes += e.raw_len as u64;
        s.stored_bytes += e.len as u64;
    }
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    s.compression_ratio = ratio(s.unique_bytes, s.stored_bytes);
    s.dedup_ratio = ratio(s.logical_bytes, data_bytes);
    if g.json {
        print_json(&serde_json::to_value(&s).expect("stats serialize"));
    } else if !g.quiet {
        println!("snapshots        {}", s.snapshots);
        println!("packs            {} ({})", s.packs, human(s.pack_bytes));
        println!(
            "blobs            {} data, {} tree",
            s.data_blobs, s.tree_blobs
        );
        println!("unique content   {}", human(s.unique_bytes));
        println!(
            "stored           {} (compression {:.2}x)",
            human(s.stored_bytes),
            s.compression_ratio
        );
        println!(
            "all snapshots    {} (deduplication {:.1}x)",
            human(s.logical_bytes),
            s.dedup_ratio
        );
    }
    Ok(0)
}
