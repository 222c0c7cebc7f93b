mod common;
use common::*;
use std::sync::Arc;
#[test]
fn scratch() {
    let t = TestRepo::init();
    let src = t.path("src");
    random_files(&src, 3, 4, 5000);
    t.backup(&[&src]);
    use hydrabackup::backend::FileKind;
    use hydrabackup::repo::Repository;
    let b = hydrabackup::backend::open(t.repo.to_str().unwrap()).unwrap();
    let repo = Repository::open(Arc::from(b), t.password.as_bytes()).unwrap();
    let (_, base) = repo.find_snapshot("latest").unwrap();
    let start: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    for i in 0..10000 {
        let mut s = base.clone();
        s.time = (start + jiff::SignedDuration::from_secs(60 * i as i64)).to_string();
        repo.save_object(FileKind::Snapshot, &s).unwrap();
    }
    let _ = std::fs::remove_dir_all("/tmp/hbscratch");
    std::fs::rename(t.dir.path(), "/tmp/hbscratch").unwrap();
    std::mem::forget(t);
}
