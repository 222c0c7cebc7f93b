//! `verify`: a clean repository passes; damage is found, located and attributed to files.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// A repository with two snapshots: the first holds a.bin, the second adds b.bin, whose data
/// is in its own pack (`b_pack`).
struct Fixture {
    t: TestRepo,
    snap1: String,
    snap2: String,
    b_pack: PathBuf,
    index2: PathBuf,
}

fn fixture() -> Fixture {
    let t = TestRepo::init_with(&["--pack-size", "1", "--chunk-avg", "64"]);
    let src = t.path("src");
    write(&src.join("a.bin"), &random_bytes(1, 300_000));
    let snap1 = t.backup(&[&src])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let packs1: BTreeSet<_> = packs(&t.repo).into_iter().collect();
    let index1: BTreeSet<_> = repo_files(&t.repo, "index").into_iter().collect();
    write(&src.join("b.bin"), &random_bytes(2, 500_000));
    let snap2 = t.backup(&[&src])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let new_packs: Vec<_> = packs(&t.repo)
        .into_iter()
        .filter(|p| !packs1.contains(p))
        .collect();
    assert_eq!(
        new_packs.len(),
        2,
        "one data and one tree pack expected: {new_packs:?}"
    );
    // The data pack is the big one.
    let b_pack = new_packs
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let index2: Vec<_> = repo_files(&t.repo, "index")
        .into_iter()
        .filter(|p| !index1.contains(p))
        .collect();
    assert_eq!(index2.len(), 1);
    Fixture {
        t,
        snap1,
        snap2,
        b_pack,
        index2: index2[0].clone(),
    }
}

/// Problems of a report whose object is `pack <id>` for this pack file.
fn problems_of_pack<'a>(v: &'a Value, pack: &Path) -> Vec<&'a Value> {
    let obj = format!("pack {}", name_of(pack));
    v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["object"] == obj.as_str())
        .collect()
}

/// The (snapshot, path) pairs a problem says are affected.
fn affected(p: &Value) -> BTreeSet<(String, String)> {
    p["affected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["snapshot"].as_str().unwrap().to_string(),
                a["path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn all_affected_paths(v: &Value) -> BTreeSet<String> {
    v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| affected(p).into_iter().map(|a| a.1))
        .collect()
}

#[test]
fn clean_repository_passes() {
    let f = fixture();
    let n_packs = packs(&f.t.repo).len() as u64;
    let v = f.t.assert_verify_ok(&[]);
    assert_eq!(v["snapshots"], 2);
    assert_eq!(v["index_files"], 2);
    assert_eq!(v["packs"], n_packs);
    assert_eq!(v["packs_read"], 0);
    assert_eq!(v["unreferenced_packs"].as_array().unwrap().len(), 0);
    let v = f.t.assert_verify_ok(&["--read-data"]);
    assert_eq!(v["packs_read"], n_packs);
    assert_eq!(v["blobs_read"], v["blobs"]);
    let r = f.t.run(&["verify", "--read-data"]);
    r.expect_code(0);
    assert!(r.stdout.contains("no errors were found"), "{}", r.stdout);
}

#[test]
fn flipped_bit_is_found_by_read_data_and_attributed() {
    let f = fixture();
    flip_bit(&f.b_pack, pack_blob_area(&f.b_pack) / 2);

    let (code, v) = f.t.verify(&["--read-data"]);
    assert_eq!(code, 13, "{v:#}");
    assert_eq!(v["ok"], false);
    let ps = problems_of_pack(&v, &f.b_pack);
    assert!(!ps.is_empty(), "the damaged pack is not named: {v:#}");
    let blob_problem = ps
        .iter()
        .find(|p| p["kind"] == "blob")
        .unwrap_or_else(|| panic!("no blob problem: {v:#}"));
    assert!(!blob_problem["blobs"].as_array().unwrap().is_empty());
    assert_eq!(
        affected(blob_problem),
        BTreeSet::from([(f.snap2[..8].to_string(), "b.bin".to_string())]),
        "{v:#}"
    );
    assert!(!all_affected_paths(&v).contains("a.bin"), "{v:#}");

    // The human report names pack and file too.
    let r = f.t.run(&["verify", "--read-data"]);
    r.expect_code(13);
    assert!(
        r.stderr.contains(&name_of(&f.b_pack)) && r.stderr.contains("b.bin"),
        "{}",
        r.stderr
    );

    // Restoring skips the damaged file (exit 13, named), and still restores the intact one.
    let out = f.t.path("out");
    let r =
        f.t.run(&["restore", "latest", "--target", out.to_str().unwrap()]);
    r.expect_code(13);
    assert!(r.stderr.contains("damaged: b.bin"), "{}", r.stderr);
    assert!(
        !out.join("b.bin").exists(),
        "the damaged file must not appear"
    );
    assert_eq!(
        fs::read(out.join("a.bin")).unwrap(),
        random_bytes(1, 300_000)
    );
    let out1 = f.t.path("out1");
    f.t.restore(&f.snap1, &out1, &[]);
    assert_eq!(
        fs::read(out1.join("a.bin")).unwrap(),
        random_bytes(1, 300_000)
    );
}

#[test]
fn truncated_pack_is_found_by_plain_verify() {
    let f = fixture();
    let len = fs::metadata(&f.b_pack).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&f.b_pack)
        .unwrap()
        .set_len(len - 1000)
        .unwrap();
    let (code, v) = f.t.verify(&[]);
    assert_eq!(code, 13, "{v:#}");
    let ps = problems_of_pack(&v, &f.b_pack);
    assert_eq!(ps.len(), 1, "{v:#}");
    assert_eq!(ps[0]["kind"], "pack");
    assert!(
        affected(ps[0]).contains(&(f.snap2[..8].to_string(), "b.bin".to_string())),
        "{v:#}"
    );
    assert!(!all_affected_paths(&v).contains("a.bin"), "{v:#}");
}

#[test]
fn deleted_pack_is_found_by_plain_verify() {
    let f = fixture();
    fs::remove_file(&f.b_pack).unwrap();
    let (code, v) = f.t.verify(&[]);
    assert_eq!(code, 13, "{v:#}");
    let ps = problems_of_pack(&v, &f.b_pack);
    assert_eq!(ps.len(), 1, "{v:#}");
    assert_eq!(ps[0]["kind"], "missing-pack");
    assert!(affected(ps[0]).iter().any(|a| a.1 == "b.bin"), "{v:#}");
}

#[test]
fn deleted_index_file_is_found_by_plain_verify() {
    let f = fixture();
    fs::remove_file(&f.index2).unwrap();
    let (code, v) = f.t.verify(&[]);
    assert_eq!(code, 13, "{v:#}");
    let problems = v["problems"].as_array().unwrap();
    assert!(!problems.is_empty());
    // Snapshot 2 now points at trees and data no index knows; snapshot 1 is intact.
    let text = serde_json::to_string(problems).unwrap();
    assert!(
        text.contains(&f.snap2[..8]),
        "snapshot 2 is not blamed: {v:#}"
    );
    assert!(!text.contains(&f.snap1[..8]), "snapshot 1 is blamed: {v:#}");
    assert!(
        problems
            .iter()
            .all(|p| p["kind"] == "tree" || p["kind"] == "missing-blob"),
        "{v:#}"
    );
    // Its packs are now in no index.
    assert!(
        v["unreferenced_packs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == name_of(&f.b_pack).as_str()),
        "{v:#}"
    );
}

#[test]
fn damaged_snapshot_file_is_found() {
    let f = fixture();
    let snap_file = f.t.repo.join("snapshots").join(&f.snap1);
    flip_bit(&snap_file, 20);
    let (code, v) = f.t.verify(&[]);
    assert_eq!(code, 13, "{v:#}");
    let obj = format!("snapshot {}", f.snap1);
    assert!(
        v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "snapshot" && p["object"] == obj.as_str()),
        "{v:#}"
    );
}

#[test]
fn read_data_subsets_cover_every_pack() {
    // Every backup adds a data pack and a tree pack: four give eight small packs.
    let t = TestRepo::init();
    let src = t.path("src");
    for i in 0..4 {
        write(&src.join(format!("f{i}")), &random_bytes(30 + i, 100_000));
        t.backup(&[&src]);
    }
    let n_packs = packs(&t.repo).len() as u64;
    assert_eq!(n_packs, 8);

    let all = t.assert_verify_ok(&["--read-data"]);
    assert_eq!(all["packs_read"], n_packs);
    for m in [2u64, 3] {
        let (mut packs_read, mut blobs_read) = (0, 0);
        for n in 1..=m {
            let v = t.assert_verify_ok(&["--read-data-subset", &format!("{n}/{m}")]);
            packs_read += v["packs_read"].as_u64().unwrap();
            blobs_read += v["blobs_read"].as_u64().unwrap();
        }
        assert_eq!(
            packs_read, n_packs,
            "groups of {m} do not read every pack exactly once"
        );
        assert_eq!(blobs_read, all["blobs_read"].as_u64().unwrap());
    }
    for pct in ["50%", "100%", "0.5%"] {
        let v = t.assert_verify_ok(&["--read-data-subset", pct]);
        if pct == "100%" {
            assert_eq!(v["packs_read"], n_packs);
        }
    }

    // Damage one pack: exactly one of the two halves finds it.
    let victim = packs(&t.repo)
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    flip_bit(&victim, 1000);
    let codes: Vec<i32> = ["1/2", "2/2"]
        .iter()
        .map(|s| t.verify(&["--read-data-subset", s]).0)
        .collect();
    let mut sorted = codes.clone();
    sorted.sort();
    assert_eq!(sorted, [0, 13], "codes for 1/2 and 2/2: {codes:?}");
}

#[test]
fn bad_subset_specifications_are_refused() {
    let t = TestRepo::init();
    for bad in [
        "0/2", "3/2", "1/0", "0%", "150%", "abc", "1/2/3", "x%", "1.5/2",
    ] {
        let r = t.run(&["verify", "--read-data-subset", bad]);
        r.expect_code(1).expect_clean_error();
        assert!(r.stderr.contains("subset"), "{bad}: {}", r.stderr);
    }
    let r = t.run(&["verify", "--read-data", "--read-data-subset", "1/2"]);
    assert_ne!(r.code, Some(0), "conflicting options accepted");
}
