//! `verify --swamp GLOB --read-data` reads only the packs holding the selected Swamps' data, and
//! finds damage there.

mod hydcommon;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hydcommon::*;
use hydrabackup::backend::Backend;
use hydrabackup::ops::restore::walk_tree;
use hydrabackup::repo::Repository;
use hydrabackup::repo::blob::BlobType;
use hydrabackup::repo::index::BlobLocation;
use serde_json::Value;

/// Where the data of the Swamp `name` is stored in the latest snapshot: its path and the
/// locations of its data blobs.
fn swamp_blobs(hb: &Hb, name: &str) -> (String, Vec<BlobLocation>) {
    let backend: Arc<dyn Backend> =
        Arc::from(hydrabackup::backend::open(hb.repo.to_str().unwrap()).unwrap());
    let repo = Repository::open(backend, PASSWORD.as_bytes()).unwrap();
    let index = repo.load_index().unwrap();
    let (_, snap) = repo.find_snapshot("latest").unwrap();
    let mut found = None;
    walk_tree(&repo, &index, &snap.tree, Path::new(""), &mut |rel, n| {
        if n.swamp.as_ref().and_then(|s| s.name.as_deref()) == Some(name) {
            let locs = n
                .content
                .iter()
                .map(|id| index.get(BlobType::Data, id).expect("indexed"))
                .collect();
            found = Some((rel.to_str().unwrap().to_string(), locs));
        }
        Ok(())
    })
    .unwrap();
    found.unwrap_or_else(|| panic!("no Swamp {name} in the snapshot"))
}

fn pack_path(repo: &Path, loc: &BlobLocation) -> PathBuf {
    let hex = loc.pack.to_hex();
    repo.join("data").join(&hex[..2]).join(&hex)
}

fn verify(hb: &Hb, extra: &[&str]) -> (i32, Value) {
    let mut a = vec!["verify", "--json", "--read-data"];
    a.extend_from_slice(extra);
    let o = hb.run(&a);
    (o.code, o.json())
}

#[test]
fn verify_by_swamp_reads_only_its_packs_and_finds_damage_there() {
    // Small packs, so the data is spread over several.
    let hb = Hb::with_init(&["--pack-size", "1"]);
    let src = hb.path("data");
    gen_root(&src, 61, 80, "3M", 20, 10);
    hb.backup(&src, &[]);

    let (code, all) = verify(&hb, &[]);
    assert_eq!(code, 0, "{all:#}");
    let all_packs = num(&all, "packs_read");

    // The Swamp: the largest .hyd Swamp below 512 KiB (a few blobs, one or two packs).
    let rows = hb.show("latest");
    let row = rows
        .values()
        .filter(|r| r["format"].as_u64() != Some(1) && r["size"].as_u64().unwrap() < 512 << 10)
        .max_by_key(|r| r["size"].as_u64().unwrap())
        .unwrap();
    let name = row["name"].as_str().unwrap().to_string();
    let (path, locs) = swamp_blobs(&hb, &name);
    let its_packs: BTreeSet<String> = locs.iter().map(|l| l.pack.to_hex()).collect();

    let (code, some) = verify(&hb, &["--swamp", &name]);
    assert_eq!(code, 0, "{some:#}");
    assert_eq!(
        num(&some, "packs_read") as usize,
        its_packs.len(),
        "{some:#}"
    );
    assert!(
        num(&some, "packs_read") < all_packs,
        "--swamp read {} packs, plain --read-data {all_packs}",
        num(&some, "packs_read")
    );

    // Damage one of its data blobs (the largest, in the middle): found, exit 13, file named.
    let loc = locs.iter().max_by_key(|l| l.entry.len).unwrap();
    let pack = pack_path(&hb.repo, loc);
    let mut bytes = std::fs::read(&pack).unwrap();
    let at = loc.entry.offset as usize + loc.entry.len as usize / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&pack, &bytes).unwrap();

    let (code, bad) = verify(&hb, &["--swamp", &name]);
    assert_eq!(code, 13, "{bad:#}");
    assert_eq!(bad["ok"], false);
    let problems = bad["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| p["kind"] == "blob"
            && p["object"].as_str().unwrap().contains(&loc.pack.to_hex())
            && p["affected"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["path"] == path.as_str())),
        "the damaged blob of {path} is not reported: {bad:#}"
    );

    // A Swamp whose data lies in other packs still verifies: the check is scoped.
    let damaged = loc.pack.to_hex();
    let other = rows.values().find_map(|r| {
        let n = r["name"].as_str()?;
        if r["format"].as_u64() == Some(1) || n == name {
            return None;
        }
        let (_, l) = swamp_blobs(&hb, n);
        l.iter()
            .all(|x| x.pack.to_hex() != damaged)
            .then(|| n.to_string())
    });
    if let Some(other) = other {
        let (code, v) = verify(&hb, &["--swamp", &other]);
        assert_eq!(code, 0, "--swamp {other}: {v:#}");
    }
    let (code, _) = verify(&hb, &[]);
    assert_eq!(code, 13);
}
