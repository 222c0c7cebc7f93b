//! The shared machinery below the commands: the one tree walker holds no call frame per tree
//! level, so library callers (not only the CLI, which runs commands on a big stack) can walk,
//! verify and copy a snapshot tree of any depth.

mod common;

use std::path::Path;

use common::*;
use hydrabackup::ops::copy::CopyOptions;
use hydrabackup::ops::progress::Progress;
use hydrabackup::ops::restore::walk_tree;
use hydrabackup::ops::verify::VerifyOptions;
use hydrabackup::repo::Repository;

fn open(t: &TestRepo) -> Repository {
    let backend = hydrabackup::backend::open(t.repo.to_str().unwrap()).unwrap();
    Repository::open(backend.into(), t.password.as_bytes()).unwrap()
}

#[test]
fn library_walks_verify_and_copy_a_10000_deep_tree_on_a_small_stack() {
    let t = TestRepo::init();
    write(&t.path("src").join("d/f"), b"at the bottom");
    t.backup(&[&t.path("src")]);
    let depth = 10_000;
    deepen_latest(&t, depth);
    let dst = TestRepo::init();
    let (src_repo, dst_repo) = (open(&t), open(&dst));
    // 512 KiB: far less than one call frame per level of 10,000 would take.
    let worker = std::thread::Builder::new().stack_size(512 * 1024);
    let (nodes, problems, copied) = worker
        .spawn(move || {
            let index = src_repo.load_index().unwrap();
            let (_, snap) = src_repo.find_snapshot("latest").unwrap();
            let mut nodes = 0;
            walk_tree(&src_repo, &index, &snap.tree, Path::new(""), &mut |_, _| {
                nodes += 1;
                Ok(())
            })
            .unwrap();
            let report = hydrabackup::ops::verify::run(
                &src_repo,
                &VerifyOptions::default(),
                &Progress::default(),
            );
            let opts = CopyOptions {
                snapshots: vec!["latest".into()],
                ..CopyOptions::default()
            };
            let copied =
                hydrabackup::ops::copy::run(&dst_repo, &src_repo, &opts, &Progress::default())
                    .unwrap();
            (
                nodes,
                report.unwrap().report.problems.len(),
                copied.summary.copied.len(),
            )
        })
        .unwrap()
        .join()
        .expect("the walks ran on the small stack");
    assert_eq!(nodes, depth + 1, "every folder of the chain and the file");
    assert_eq!(problems, 0);
    assert_eq!(copied, 1);
    // The copy is complete: the destination verifies and its file sits at the bottom.
    dst.assert_verify_ok(&["--read-data"]);
    let bottom = format!("{}f", "d/".repeat(depth));
    let ls = dst
        .run(&["ls", "latest", &bottom])
        .expect_code(0)
        .stdout
        .clone();
    assert!(ls.lines().any(|l| l.ends_with(&bottom)), "{ls}");
}

/// A forged index that puts blob `b` at the place of blob `a` (same pack, same offset) cannot
/// make restore write `a`'s bytes as `b`'s: each blob read is checked against its own id, so
/// `b` is damaged (exit 13, never under its name) and `a` is restored.
#[test]
fn a_blob_indexed_at_another_blobs_offset_is_damage_not_the_other_blobs_bytes() {
    use hydrabackup::Id;
    use hydrabackup::backend::FileKind;

    let t = TestRepo::init();
    let src = t.path("src");
    let (a, b) = (random_bytes(1, 300), random_bytes(2, 300));
    write(&src.join("a"), &a);
    write(&src.join("b"), &b);
    t.backup(&[&src]);

    let repo = open(&t);
    let (a_id, b_id) = (repo.keys().blob_id(&a), repo.keys().blob_id(&b));
    let files = repo.load_index_files().unwrap();
    let mut forged = hydrabackup::repo::index::IndexFile {
        version: files[0].1.version,
        supersedes: files
            .iter()
            .map(|(n, _)| Id::from_hex(n).unwrap())
            .collect(),
        packs: files.iter().flat_map(|(_, f)| f.packs.clone()).collect(),
        ..Default::default()
    };
    let at_a = forged
        .packs
        .iter()
        .flat_map(|p| p.blobs.iter())
        .find(|e| e.1 == a_id)
        .copied()
        .expect("a is indexed");
    for p in &mut forged.packs {
        p.blobs.retain(|e| e.1 != b_id);
        if p.blobs.iter().any(|e| e.1 == a_id) {
            p.blobs.push((at_a.0, b_id, at_a.2, at_a.3, at_a.4));
        }
    }
    repo.save_object(FileKind::Index, &forged).unwrap();

    let target = t.path("out");
    let r = t.run(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--json",
    ]);
    r.expect_code(13);
    let v = r.json();
    let damaged = v["damaged"].as_array().expect("damaged list");
    assert_eq!(damaged.len(), 1, "{v:#}");
    assert!(damaged[0]["path"].as_str().unwrap().ends_with('b'), "{v:#}");
    assert_eq!(std::fs::read(target.join("a")).unwrap(), a);
    assert!(
        !target.join("b").exists(),
        "b is never written with a's bytes"
    );
}
