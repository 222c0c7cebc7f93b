//! The shared machinery below the commands: the one tree walker holds no call frame per tree
//! level, so library callers (not only the CLI, which runs commands on a big stack) can walk,
//! verify and copy a snapshot tree of any depth.

mod common;

use std::path::Path;

use common::*;
use hydrabackup::ops::copy::{CopyOptions, copy};
use hydrabackup::ops::progress::Progress;
use hydrabackup::ops::restore::walk_tree;
use hydrabackup::ops::verify::{VerifyOptions, verify};
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
            let report = verify(&src_repo, &VerifyOptions::default(), &Progress::default());
            let opts = CopyOptions {
                snapshots: vec!["latest".into()],
                ..CopyOptions::default()
            };
            let copied = copy(&src_repo, &dst_repo, &opts, &Progress::default()).unwrap();
            (nodes, report.unwrap().problems.len(), copied.copied.len())
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
