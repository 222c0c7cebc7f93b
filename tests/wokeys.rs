//! Write-only keys (`key add --write-only`, repo-format.md §2a): the database host backs up,
//! incrementally, and can neither read back nor delete anything; full keys read, restore, copy
//! and prune what it wrote.

mod common;
mod motocommon;
mod restcommon;
mod s3common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use hydrabackup::Error;
use hydrabackup::backend::FileKind;
use hydrabackup::crypto::{Keys, SealKey};
use hydrabackup::repo::Repository;
use hydrabackup::repo::keyfile::{KeyFile, KeySecrets};
use hydrabackup::repo::object::to_cbor;
use serde_json::Value;

const WO_PASSWORD: &str = "backup host only";

/// Adds a write-only key (with the full key); returns its id.
fn add_write_only(t: &TestRepo) -> String {
    let mut c = t.command();
    c.env("HYDRABACKUP_NEW_PASSWORD", WO_PASSWORD)
        .args(["key", "add", "--write-only", "--json"]);
    let v = run_cmd(c).expect_code(0).json();
    v["added"].as_str().expect("key id").to_string()
}

/// The binary as the database host runs it: the write-only password and its own cache folder
/// (which holds the send log).
fn host(t: &TestRepo, args: &[&str]) -> Run {
    let mut c = t.command();
    c.env("HYDRABACKUP_PASSWORD", WO_PASSWORD)
        .env("HYDRABACKUP_CACHE_DIR", t.path("host-cache"))
        .args(args);
    run_cmd(c)
}

fn host_backup(t: &TestRepo, src: &Path) -> Value {
    host(t, &["backup", "--json", src.to_str().unwrap()])
        .expect_code(0)
        .json()
}

/// A source folder: a few big files and many small ones.
fn source(t: &TestRepo) -> PathBuf {
    let src = t.path("src");
    random_files(&src, 1, 3, 600_000);
    random_files(&src.join("small"), 2, 40, 3_000);
    src
}

fn library(t: &TestRepo, password: &str) -> Repository {
    let b = Arc::from(hydrabackup::backend::open(t.repo.to_str().unwrap()).unwrap());
    Repository::open(b, password.as_bytes()).unwrap()
}

#[test]
fn write_only_backups_are_incremental_and_full_keys_restore_copy_and_prune_them() {
    let t = TestRepo::init();
    let src = source(&t);
    // History written with the full key before the host got its write-only key (other data:
    // the host's blobs are then the only copies, so what prune does with them is certain).
    let old = t.path("old");
    random_files(&old, 3, 5, 100_000);
    t.backup(&[&old]);
    let key = add_write_only(&t);
    let keys = t.json(&["key", "list"]);
    let wo: Vec<&Value> = keys
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["write_only"] == true)
        .collect();
    assert_eq!(wo.len(), 1, "{keys:#}");
    assert_eq!(wo[0]["id"], key.as_str());

    // The first write-only backup has no parent (it cannot read the repository's snapshots).
    write(&src.join("doomed"), &random_bytes(9, 400_000));
    let first = host_backup(&t, &src);
    assert_eq!(first["parent"], Value::Null, "{first:#}");
    let first_id = first["snapshot_id"].as_str().unwrap().to_string();

    // The second one takes the first as parent from the send log and stores only what is new.
    std::fs::remove_file(src.join("doomed")).unwrap();
    write(&src.join("new"), &random_bytes(10, 300_000));
    let second = host_backup(&t, &src);
    assert_eq!(second["parent"].as_str(), Some(first_id.as_str()));
    assert_eq!(second["files_new"], 1, "{second:#}");
    assert_eq!(second["files_read"], 1, "{second:#}");
    let added = second["bytes_added"].as_u64().unwrap();
    assert!(
        (300_000..=310_000).contains(&added),
        "the incremental added {added} bytes: {second:#}"
    );

    // The full key sees both snapshots, verifies every byte and restores byte for byte.
    assert_eq!(t.snapshots().len(), 3);
    t.assert_verify_ok(&["--read-data"]);
    let out = t.path("restored");
    t.restore(second["snapshot_id"].as_str().unwrap(), &out, &[]);
    assert_same_dir(&src, &out);
    let cat = t.json(&["cat", "snapshot", &first_id]);
    assert_eq!(cat["paths"][0], src.to_str().unwrap());

    // copy with the full key to a second repository, which restores the same bytes.
    let dst = TestRepo::init();
    let pw = t.path("password");
    std::fs::write(&pw, PASSWORD).unwrap();
    dst.json(&[
        "copy",
        "--from-repo",
        t.repo.to_str().unwrap(),
        "--from-password-file",
        pw.to_str().unwrap(),
    ]);
    let copied = dst.path("copied");
    dst.restore("latest", &copied, &[]);
    assert_same_dir(&src, &copied);
    dst.assert_verify_ok(&["--read-data"]);

    // forget the first write-only snapshot and prune with the full key: the file only it held
    // is unused, so the host's data pack is rewritten (its used blobs sealed again with the
    // master key) and everything still verifies and restores.
    t.json(&["forget", "--yes", &first_id]);
    let pruned = t.json(&["prune", "--yes", "--max-unused", "0"]);
    assert!(
        pruned["packs_rewritten"].as_u64().unwrap() >= 1,
        "{pruned:#}"
    );
    t.assert_verify_ok(&["--read-data"]);
    let again = t.path("again");
    t.restore("latest", &again, &[]);
    assert_same_dir(&src, &again);

    // The host's next backup still works: blobs whose packs were rewritten are stored again
    // (the send log drops records of packs the repository no longer lists).
    write(&src.join("later"), &random_bytes(11, 50_000));
    let metrics = t.path("backup.prom");
    let r = host(
        &t,
        &[
            "backup",
            "--json",
            "--metrics-file",
            metrics.to_str().unwrap(),
            src.to_str().unwrap(),
        ],
    );
    r.expect_code(0);
    assert_eq!(r.stderr, "", "a write-only backup warned");
    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert!(prom.contains("hydrabackup_success{"), "{prom}");
    let third = r.json();
    assert_eq!(
        third["parent"].as_str(),
        second["snapshot_id"].as_str(),
        "{third:#}"
    );
    t.assert_verify_ok(&["--read-data"]);
    let last = t.path("last");
    t.restore("latest", &last, &[]);
    assert_same_dir(&src, &last);
}

#[test]
fn every_command_that_reads_or_deletes_refuses_a_write_only_key() {
    let t = TestRepo::init();
    let src = source(&t);
    let full = t.backup(&[&src]);
    add_write_only(&t);
    let snap = full["snapshot_id"].as_str().unwrap();
    let mine = host_backup(&t, &src);
    let target = t.path("target");
    let mount = t.path("mnt");
    std::fs::create_dir(&mount).unwrap();
    let pw = t.path("wo-password");
    std::fs::write(&pw, WO_PASSWORD).unwrap();
    let full_pw = t.path("password");
    std::fs::write(&full_pw, PASSWORD).unwrap();
    let other = TestRepo::init();
    let before = repo_files(&t.repo, "");
    let refused: Vec<Vec<&str>> = vec![
        vec!["snapshots"],
        vec!["ls", "latest"],
        vec!["ls", snap],
        vec!["show", "latest"],
        vec!["restore", "latest", "--target", target.to_str().unwrap()],
        vec!["dump", "latest", "small"],
        vec!["cat", "config"],
        vec!["cat", "snapshot", mine["snapshot_id"].as_str().unwrap()],
        vec!["forget", "--yes", snap],
        vec!["forget", "--yes", "--keep-last", "1", "--prune"],
        vec!["prune", "--yes"],
        vec!["verify"],
        vec!["verify", "--read-data"],
        vec!["stats"],
        vec!["key", "list"],
        vec!["key", "add"],
        vec!["key", "passwd"],
        vec!["unlock", "--remove-all"],
        vec!["diff", snap, "latest"],
        vec!["find", "*"],
        vec!["tag", "--add", "x", snap],
        vec!["repair", "index"],
        vec!["repair", "snapshots"],
        vec!["policy", "show"],
        vec!["purge", "--yes"],
        vec!["mount", mount.to_str().unwrap()],
        vec![
            "copy",
            "--from-repo",
            other.repo.to_str().unwrap(),
            "--from-password-file",
            full_pw.to_str().unwrap(),
        ],
    ];
    for args in &refused {
        let r = host(&t, args);
        r.expect_code(16).expect_clean_error();
        assert!(
            r.stderr.contains("is write-only") && r.stderr.contains("needs a full key"),
            "{args:?}: {}",
            r.stderr
        );
    }
    // Nor can a write-only key be the source of a copy.
    let mut c = other.command();
    c.args(["copy", "--from-repo", t.repo.to_str().unwrap()])
        .arg("--from-password-file")
        .arg(&pw);
    run_cmd(c).expect_code(16).expect_clean_error();
    assert!(!target.exists());
    assert_eq!(
        repo_files(&t.repo, ""),
        before,
        "a refused command changed the repository"
    );
    assert_eq!(t.snapshots().len(), 2);
}

/// The attack: a thief has the host's write-only key file and its password. Nothing in it opens
/// anything stored before, nor what the host itself stored with it.
#[test]
fn a_stolen_write_only_key_opens_nothing_stored() {
    let t = TestRepo::init();
    let src = source(&t);
    t.backup(&[&src]);
    let key = add_write_only(&t);
    let host_snap = host_backup(&t, &src)["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();

    let repo = library(&t, PASSWORD);
    let backend = repo.backend().clone();
    let kf = KeyFile::decode(&backend.read(FileKind::Key, &key).unwrap()).unwrap();
    assert!(kf.is_write_only());
    let KeySecrets::WriteOnly(secrets) = kf.open(WO_PASSWORD.as_bytes()).unwrap() else {
        panic!("a write-only key file opened as a full key");
    };
    // Everything the key file holds, as candidate AEAD keys: every 32-byte window of its
    // decrypted secrets, and a new session with them, as the thief's own client would make.
    let plain = to_cbor(&*secrets);
    let mut candidates: Vec<Keys> = plain
        .windows(32)
        .map(|w| Keys::new(SealKey::new(w.try_into().unwrap()), secrets.config.id_key.0))
        .collect();
    candidates.push(Keys::write_only(
        secrets.config.id_key.0,
        &secrets.lock_key.0,
        &secrets.public_key.0,
    ));
    assert!(candidates.len() > 100);

    let mut sealed: Vec<(String, Vec<u8>)> = Vec::new();
    sealed.push((
        "config".into(),
        backend.read(FileKind::Config, "config").unwrap(),
    ));
    for kind in [FileKind::Snapshot, FileKind::Index] {
        for (n, _) in backend.list(kind).unwrap() {
            sealed.push((format!("{kind:?} {n}"), backend.read(kind, &n).unwrap()));
        }
    }
    assert!(sealed.iter().any(|(n, _)| n.contains(&host_snap)));
    let mut blobs = Vec::new();
    for (n, _) in backend.list(FileKind::Pack).unwrap() {
        let bytes = backend.read(FileKind::Pack, &n).unwrap();
        let (_, header) = hydrabackup::repo::pack::split_pack(&bytes).unwrap();
        sealed.push((format!("header of pack {n}"), header.to_vec()));
        // The full key reads the pack: its first blob, as stored, is a target too.
        let (entries, _) = hydrabackup::repo::pack::read_pack(repo.keys(), &bytes).unwrap();
        let e = entries[0];
        blobs.push((
            n.clone(),
            e,
            bytes[e.offset as usize..(e.offset + e.len) as usize].to_vec(),
        ));
    }
    for k in &candidates {
        for (what, bytes) in &sealed {
            assert!(k.open(bytes).is_err(), "the write-only key opened {what}");
        }
        for (pack, e, b) in &blobs {
            assert!(
                hydrabackup::repo::blob::open_blob(k, e, b).is_err(),
                "the write-only key opened a blob of pack {pack}"
            );
        }
    }
    // The full key opens all of them, the host's snapshot included.
    for (what, bytes) in &sealed {
        assert!(
            repo.keys().open(bytes).is_ok(),
            "the full key cannot open {what}"
        );
    }

    // Through the library the write-only key is refused by name, not by damage.
    let b = Arc::from(hydrabackup::backend::open(t.repo.to_str().unwrap()).unwrap());
    let thief = Repository::open(b, WO_PASSWORD.as_bytes()).unwrap();
    assert!(thief.is_write_only());
    assert!(matches!(thief.snapshots(), Err(Error::WriteOnlyKey(_))));
    assert!(matches!(
        thief.find_snapshot(&host_snap),
        Err(Error::WriteOnlyKey(_))
    ));
    assert!(matches!(
        thief.load_index_files(),
        Err(Error::WriteOnlyKey(_))
    ));
    let index = repo.load_index().unwrap();
    let loc = index.iter().next().unwrap();
    assert!(matches!(
        thief.read_blob_at(&loc),
        Err(Error::WriteOnlyKey(_))
    ));
    assert!(matches!(
        thief.add_key(b"x", hydrabackup::crypto::KdfParams::default()),
        Err(Error::WriteOnlyKey(_))
    ));
}

/// Locks are shared: a write-only backup sees a full key's exclusive lock, and an exclusive
/// prune sees the write-only backup's lock (a two-phase prune runs beside it).
#[test]
fn write_only_and_full_keys_see_each_others_locks() {
    let t = TestRepo::init();
    let src = source(&t);
    add_write_only(&t);
    let repo = library(&t, PASSWORD);
    {
        let _prune = repo.lock(true, "prune").unwrap();
        let r = host(&t, &["backup", src.to_str().unwrap()]);
        r.expect_code(11).expect_clean_error();
        assert!(r.stderr.contains("exclusive lock"), "{}", r.stderr);
    }
    let b = Arc::from(hydrabackup::backend::open(t.repo.to_str().unwrap()).unwrap());
    let host_repo = Repository::open(b, WO_PASSWORD.as_bytes()).unwrap();
    {
        let _backup = host_repo.lock(false, "backup").unwrap();
        let r = t.run(&["prune", "--yes", "--instant-delete"]);
        r.expect_code(11).expect_clean_error();
        assert!(r.stderr.contains("shared lock"), "{}", r.stderr);
        // A two-phase prune runs beside it.
        t.json(&["prune", "--yes"]);
    }
    host_backup(&t, &src);
    t.json(&["prune", "--yes"]);
}

/// Without the send log (a new machine, or `--no-cache`) a write-only backup has no parent and
/// stores its data again; the full key's prune removes the duplicates.
#[test]
fn a_lost_send_log_costs_a_full_upload_only() {
    let t = TestRepo::init();
    let src = source(&t);
    add_write_only(&t);
    let first = host_backup(&t, &src);
    std::fs::remove_dir_all(t.path("host-cache")).unwrap();
    let second = host_backup(&t, &src);
    assert_eq!(second["parent"], Value::Null);
    assert_eq!(second["bytes_added"], first["bytes_added"], "{second:#}");
    let third = host(
        &t,
        &["backup", "--no-cache", "--json", src.to_str().unwrap()],
    )
    .expect_code(0)
    .json();
    assert_eq!(third["parent"], Value::Null);
    let pruned = t.json(&["prune", "--yes", "--instant-delete", "--max-unused", "0"]);
    assert!(pruned["bytes_deleted"].as_u64().unwrap() > 0, "{pruned:#}");
    t.assert_verify_ok(&["--read-data"]);
    let out = t.path("out");
    t.restore("latest", &out, &[]);
    assert_same_dir(&src, &out);
}

/// On an append-only REST server the host can neither read nor delete: its backups work,
/// incrementally, and the full key restores them.
#[test]
fn write_only_backups_to_an_append_only_server() {
    use restcommon::{Server, hb};
    let t = TestRepo::new();
    let s = Server::start(&t, &["--no-auth", "--append-only"]);
    let loc = s.location(None, "r");
    hb(&t, &loc, None, &["init"]).expect_code(0);
    let mut c = t.command();
    c.env("HYDRABACKUP_REPOSITORY", &loc)
        .env("HYDRABACKUP_NEW_PASSWORD", WO_PASSWORD)
        .args(["key", "add", "--write-only"]);
    run_cmd(c).expect_code(0);
    let src = source(&t);
    let on_host = |args: &[&str]| {
        let mut c = t.command();
        c.env("HYDRABACKUP_REPOSITORY", &loc)
            .env("HYDRABACKUP_PASSWORD", WO_PASSWORD)
            .env("HYDRABACKUP_CACHE_DIR", t.path("host-cache"))
            .args(args);
        run_cmd(c)
    };
    on_host(&["backup", src.to_str().unwrap()]).expect_code(0);
    write(&src.join("new"), &random_bytes(77, 100_000));
    let second = on_host(&["backup", "--json", src.to_str().unwrap()])
        .expect_code(0)
        .json();
    assert!(second["parent"].is_string(), "{second:#}");
    assert_eq!(second["files_read"], 1, "{second:#}");
    on_host(&["snapshots"]).expect_code(16);
    on_host(&["forget", "--yes", "--keep-last", "1"]).expect_code(16);
    hb(&t, &loc, None, &["verify", "--read-data"]).expect_code(0);
    let out = t.path("out");
    hb(
        &t,
        &loc,
        None,
        &["restore", "latest", "--target", out.to_str().unwrap()],
    )
    .expect_code(0);
    assert_same_dir(&src, &out);
}

/// The same on S3 (a real S3 server): small packs, two incremental host backups, and the full
/// key's forget, prune, verify and restore.
#[test]
fn write_only_backups_to_s3() {
    let s = s3common::S3Server::start();
    let t = s.init("write-only/db1", &["--pack-size", "1", "--chunk-avg", "64"]);
    add_write_only(&t);
    let src = source(&t);
    let first = host_backup(&t, &src);
    write(&src.join("new"), &random_bytes(78, 200_000));
    let second = host_backup(&t, &src);
    assert_eq!(second["parent"], first["snapshot_id"], "{second:#}");
    assert_eq!(second["files_read"], 1, "{second:#}");
    host(&t, &["ls", "latest"]).expect_code(16);
    t.json(&["forget", "--yes", first["snapshot_id"].as_str().unwrap()]);
    t.json(&["prune", "--yes"]);
    t.assert_verify_ok(&["--read-data"]);
    // The trees verify read went to the full key's local cache (the host's sealed again with
    // the master key, which the cache opens them with): `ls` reads them from there, silently.
    let r = t.run(&["ls", "latest"]);
    r.expect_code(0);
    assert_eq!(r.stderr, "", "the cache refused a tree");
    assert!(r.stdout.contains("new"), "{}", r.stdout);
    let out = t.path("out");
    t.restore("latest", &out, &[]);
    assert_same_dir(&src, &out);
}

/// Write-only keys with S3 Object Lock (the `moto` test server): the host's objects are
/// locked like any others, so with its storage credentials it can neither read nor destroy
/// what it stored; the full key restores it.
#[test]
fn write_only_backups_are_locked_by_object_lock() {
    use hydrabackup::backend::Backend;
    let s = motocommon::MotoServer::start();
    let t = s.repo("wolock/db");
    t.json(&["init", "--object-lock", "governance", "--retention", "1d"]);
    add_write_only(&t);
    let src = source(&t);
    let snap = host_backup(&t, &src)["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = s.backend("wolock/db");
    for kind in [FileKind::Pack, FileKind::Index, FileKind::Snapshot] {
        for (name, _) in b.list(kind).unwrap() {
            assert!(
                b.retention(kind, &name).unwrap().is_some(),
                "{kind:?} {name} is not locked"
            );
        }
    }
    host(&t, &["forget", "--yes", &snap]).expect_code(16);
    let v = b.versions(FileKind::Snapshot, &snap).unwrap();
    let e = b
        .remove_version(FileKind::Snapshot, &snap, &v[0].id)
        .unwrap_err();
    assert!(e.to_string().contains("access denied"), "{e}");
    let out = t.path("out");
    t.restore("latest", &out, &[]);
    assert_same_dir(&src, &out);
}

/// A write-only backup killed before its snapshot: the send log already holds the index records
/// of the packs it stored, so the next run stores no data again, and the repository verifies.
#[test]
fn a_killed_write_only_backup_is_not_stored_twice() {
    let t = TestRepo::init();
    add_write_only(&t);
    let src = source(&t);
    let mut c = t.command();
    c.env("HYDRABACKUP_PASSWORD", WO_PASSWORD)
        .env("HYDRABACKUP_CACHE_DIR", t.path("host-cache"))
        .env("HYDRABACKUP_FAILPOINT", "before-snapshot")
        .args(["backup", src.to_str().unwrap()]);
    let r = run_cmd(c);
    assert_eq!(r.signal, Some(9), "{r:?}");
    assert_eq!(t.snapshots().len(), 0);
    let again = host_backup(&t, &src);
    assert_eq!(again["parent"], Value::Null);
    assert_eq!(again["data_blobs_added"], 0, "{again:#}");
    t.assert_verify_ok(&["--read-data"]);
    let out = t.path("out");
    t.restore("latest", &out, &[]);
    assert_same_dir(&src, &out);
}

/// Two-phase prune (repo-format.md §9a): the host cannot see marks, so its next backup may use a
/// pack a prune marked; the prune that would delete it takes it back, and nothing is lost.
#[test]
fn a_marked_pack_the_host_uses_again_is_taken_back() {
    let t = TestRepo::init();
    add_write_only(&t);
    let src = source(&t);
    let first = host_backup(&t, &src);
    t.json(&["forget", "--yes", first["snapshot_id"].as_str().unwrap()]);
    let marked = t.json(&["prune", "--yes"]);
    assert!(marked["packs_marked"].as_u64().unwrap() >= 1, "{marked:#}");
    // The send log still knows the (marked, stored) packs: nothing is stored again.
    let second = host_backup(&t, &src);
    assert_eq!(second["data_blobs_added"], 0, "{second:#}");
    let later = t.json(&["prune", "--yes", "--keep-delete", "0s"]);
    assert!(later["packs_recovered"].as_u64().unwrap() >= 1, "{later:#}");
    assert_eq!(later["packs_removed"], 0, "{later:#}");
    t.assert_verify_ok(&["--read-data"]);
    let out = t.path("out");
    t.restore("latest", &out, &[]);
    assert_same_dir(&src, &out);
}

/// The write-only backup's last check: packs it deduplicated against (its parent's, from the
/// send log) that vanish while it runs (a prune deleting them, here a hook at the check) are
/// found before any snapshot is written, and a second pass reads those files again.
#[test]
fn a_write_only_backup_whose_base_vanishes_stores_it_again() {
    let t = TestRepo::init();
    add_write_only(&t);
    let src = source(&t);
    host_backup(&t, &src);
    let before = repo_files(&t.repo, "data");
    assert!(!before.is_empty());
    let rm: Vec<String> = before
        .iter()
        .map(|p| format!("rm -f '{}'", p.display()))
        .collect();
    write(&src.join("new"), &random_bytes(12, 50_000));
    let mut c = t.command();
    c.env("HYDRABACKUP_PASSWORD", WO_PASSWORD)
        .env("HYDRABACKUP_CACHE_DIR", t.path("host-cache"))
        .env(
            "HYDRABACKUP_TEST_HOOK",
            format!("backup-before-check:{}", rm.join(" && ")),
        )
        .args(["backup", "--json", src.to_str().unwrap()]);
    let again = run_cmd(c).expect_code(0).json();
    assert_eq!(
        again["files_unchanged"], 43,
        "the parent was reused: {again:#}"
    );
    assert_eq!(
        again["files_read_again"], 43,
        "every file of the parent was read again (`new` was stored by the first pass): {again:#}"
    );
    assert!(
        again["data_blobs_added"].as_u64().unwrap() >= 3,
        "{again:#}"
    );
    assert!(before.iter().all(|p| !p.exists()));
    assert_eq!(repo_files(&t.repo, "snapshots").len(), 2);
    let out = t.path("out");
    t.restore(again["snapshot_id"].as_str().unwrap(), &out, &[]);
    assert_same_dir(&src, &out);
}

/// `watch` runs with a write-only key as `backup` does: a cycle stores a snapshot the full key
/// restores byte-identical, and a second start takes it as parent from the send log.
#[test]
fn watch_runs_with_a_write_only_key() {
    let t = TestRepo::init();
    let src = source(&t);
    add_write_only(&t);
    let watch = |t: &TestRepo| {
        let mut c = t.command();
        c.env("HYDRABACKUP_PASSWORD", WO_PASSWORD)
            .env("HYDRABACKUP_CACHE_DIR", t.path("host-cache"))
            // SIGTERM during the first cycle: it finishes that cycle, then exits 0.
            .env("HYDRABACKUP_TEST_HOOK", "watch-cycle:kill -TERM $PPID")
            .args(["watch", "--json", "--interval", "1s", src.to_str().unwrap()]);
        run_cmd(c).expect_code(0).messages()
    };
    let first = watch(&t);
    let cycle = first
        .iter()
        .find(|m| m["message_type"] == "cycle")
        .expect("a cycle line");
    let id = cycle["snapshot_id"].as_str().expect("a snapshot written");
    let out = t.path("restored");
    t.restore(id, &out, &[]);
    assert_same_dir(&src, &out);
    // Nothing changed: the next start's cycle matches the parent and writes nothing.
    let second = watch(&t);
    let cycle = second
        .iter()
        .find(|m| m["message_type"] == "cycle")
        .expect("a cycle line");
    assert!(cycle["snapshot_id"].is_null(), "{cycle:#}");
    assert_eq!(t.snapshots().len(), 1);
}
