//! The library's operations take the repository lock themselves: a library caller of
//! `ops::<cmd>::run` cannot prune, forget, copy into or restore from a repository that another
//! process holds a conflicting lock on (before, the caller had to remember to lock).

mod common;

use std::sync::Arc;

use common::*;
use hydrabackup::Error;
use hydrabackup::backend::{self, Backend};
use hydrabackup::ops;
use hydrabackup::ops::progress::Progress;
use hydrabackup::repo::Repository;

fn open(t: &TestRepo) -> Repository {
    let b: Arc<dyn Backend> = Arc::from(backend::open(t.repo.to_str().unwrap()).unwrap());
    Repository::open(b, t.password.as_bytes()).unwrap()
}

/// A repository with one snapshot and one it no longer needs the data of.
fn repo_with_snapshots() -> TestRepo {
    let t = TestRepo::init();
    let src = t.path("src");
    random_files(&src, 1, 3, 10_000);
    t.backup(&[&src]);
    random_files(&src, 2, 3, 10_000);
    t.backup(&[&src]);
    t
}

#[track_caller]
fn assert_locked<T: std::fmt::Debug>(r: hydrabackup::Result<T>) {
    match r {
        Err(Error::Locked(msg)) => assert!(!msg.is_empty()),
        other => panic!("expected the operation to refuse the locked repository, got {other:?}"),
    }
}

#[test]
fn only_an_instant_prune_refuses_a_repository_a_backup_holds() {
    let t = repo_with_snapshots();
    let holder = open(&t);
    let repo = open(&t);
    let p = Progress::default();
    let n = repo.snapshots().unwrap().len();
    let instant = ops::prune::PruneOptions {
        instant_delete: true,
        ..Default::default()
    };
    let forget = |prune_options: &ops::prune::PruneOptions| ops::forget::ForgetOptions {
        keep_last: Some(1),
        prune: true,
        prune_options: prune_options.clone(),
        ..Default::default()
    };
    {
        // A running backup's shared lock refuses what deletes at once.
        let _lock = holder.lock(false, "backup").unwrap();
        assert_locked(ops::prune::run(&repo, &instant, &p));
        assert_locked(ops::forget::run(&repo, &forget(&instant), &p));
        assert_eq!(repo.snapshots().unwrap().len(), n, "nothing was forgotten");
        // Forget and a two-phase prune run beside it.
        let out = ops::forget::run(&repo, &forget(&Default::default()), &p).unwrap();
        assert_eq!(out.summary.removed, 1);
        assert!(out.prune.unwrap().packs_marked > 0);
    }
    // Without the other lock an instant prune runs, and its lock is gone afterwards.
    let out = ops::prune::run(&repo, &instant, &p).unwrap();
    assert!(out.summary.packs_removed > 0);
    t.assert_verify_ok(&[]);
}

#[test]
fn readers_and_copies_refuse_a_repository_a_prune_holds() {
    let t = repo_with_snapshots();
    let other = TestRepo::init();
    let holder = open(&t);
    let repo = open(&t);
    let dst = open(&other);
    let p = Progress::default();
    let restore = ops::restore::RestoreOptions {
        snapshot: Some("latest".into()),
        target: t.path("restored"),
        ..Default::default()
    };
    {
        // A running prune's exclusive lock.
        let _lock = holder.lock(true, "prune").unwrap();
        assert_locked(ops::restore::run(&repo, &restore, &p));
        assert!(!t.path("restored").exists(), "nothing was restored");
        assert_locked(ops::copy::run(&dst, &repo, &Default::default(), &p));
        assert_locked(ops::verify::run(&repo, &Default::default(), &p));
    }
    let out = ops::restore::run(&repo, &restore, &p).unwrap();
    assert_eq!(out.summary.files, 3);
    let out = ops::copy::run(&dst, &repo, &Default::default(), &p).unwrap();
    assert_eq!(out.summary.copied.len(), 2);
}
