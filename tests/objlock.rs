//! S3 Object Lock (WORM) against a real S3 server that enforces it (moto's `moto_server`, see
//! tests/motocommon): `init --object-lock` creates a locked bucket, every object but the locks
//! is written locked, the server refuses to delete or replace a locked version, `forget` and
//! `prune` only hide locked objects and say when their space comes back, `prune` extends the
//! locks of what is kept and frees what was removed once its lock has ended, and `verify`
//! reports objects locked for less than the configured period.

mod common;
mod motocommon;

use std::time::Duration;

use common::*;
use hydrabackup::backend::{Backend, FileKind};
use jiff::{SignedDuration, Timestamp};
use motocommon::*;
use serde_json::Value;

/// The kinds of objects that must be locked.
const LOCKED: [FileKind; 5] = [
    FileKind::Config,
    FileKind::Key,
    FileKind::Index,
    FileKind::Snapshot,
    FileKind::Pack,
];

fn ts(v: &Value) -> Timestamp {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .expect("a timestamp")
}

/// Waits until the clock passes `t` (the server shares it): locks end by the clock, so this is
/// the condition itself, not a guess at how long something takes.
fn wait_until(t: Timestamp) {
    while Timestamp::now() <= t {
        let left = t.duration_since(Timestamp::now());
        std::thread::sleep(
            Duration::try_from(left).unwrap_or_default() + Duration::from_millis(20),
        );
    }
}

fn secs(n: i64) -> SignedDuration {
    SignedDuration::from_secs(n)
}

/// The names and versions of every object below `prefix/locks/` in `bucket`.
fn lock_versions(s: &MotoServer, bucket: &str, prefix: &str) -> Vec<(String, String)> {
    let prefix = format!("{prefix}/locks/");
    let a = s.raw(
        "GET",
        &format!("/{bucket}"),
        &[("versions", ""), ("prefix", &prefix)],
        b"",
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let mut out = Vec::new();
    for part in a.body.split("<Version>").skip(1) {
        let field = |tag: &str| {
            let open = format!("<{tag}>");
            let rest = &part[part.find(&open).expect(tag) + open.len()..];
            rest[..rest.find('<').expect(tag)].to_string()
        };
        out.push((field("Key"), field("VersionId")));
    }
    out
}

#[test]
fn locked_objects_cannot_be_deleted_or_replaced_and_removal_only_hides_them() {
    let s = MotoServer::start();
    // Refused before anything is stored: a local repository, and a retention without a mode.
    let local = TestRepo::new();
    local
        .run(&["init", "--object-lock", "governance", "--retention", "1d"])
        .expect_code(1)
        .expect_clean_error();
    assert!(!local.repo.exists());
    s.repo("lockbkt/db")
        .run(&["init", "--retention", "1d"])
        .expect_code(2);
    // An existing bucket without Object Lock is refused too.
    s.repo("plainbkt/a").json(&["init"]);
    let r = s
        .repo("plainbkt/b")
        .run(&["init", "--object-lock", "compliance", "--retention", "1d"]);
    r.expect_code(1).expect_clean_error();
    assert!(r.stderr.contains("without Object Lock"), "{}", r.stderr);

    // init creates the bucket with Object Lock.
    let t = s.repo("lockbkt/db");
    let before = Timestamp::now();
    let v = t.json(&["init", "--object-lock", "governance", "--retention", "1d"]);
    assert_eq!(v["object_lock"]["mode"], "governance", "{v:#}");
    assert_eq!(v["object_lock"]["retention_secs"], 86_400, "{v:#}");
    let conf = s.raw("GET", "/lockbkt", &[("object-lock", "")], b"");
    assert!(
        conf.body
            .contains("<ObjectLockEnabled>Enabled</ObjectLockEnabled>"),
        "{}",
        conf.body
    );

    let src = t.path("src");
    random_files(&src, 1, 3, 200_000);
    t.backup(&[&src]);
    let after = Timestamp::now();

    // Every object but the locks is locked for the retention plus the renewal (a quarter).
    let b = s.backend("lockbkt/db");
    let mut packs = Vec::new();
    for kind in LOCKED {
        let names = b.list(kind).unwrap();
        assert!(!names.is_empty(), "no {kind:?}");
        for (name, _) in names {
            let until = b
                .retention(kind, &name)
                .unwrap()
                .unwrap_or_else(|| panic!("{kind:?} {name} is not locked"));
            assert!(
                until >= before + secs(86_400 + 21_600) && until <= after + secs(86_400 + 21_601),
                "{kind:?} {name} locked until {until}"
            );
            if kind == FileKind::Pack {
                packs.push(name);
            }
        }
    }
    // Locks are not: the backup's lock was removed; its hidden version is unlocked.
    let locks = lock_versions(&s, "lockbkt", "db");
    assert!(!locks.is_empty());
    for (key, version) in &locks {
        let h = s.raw(
            "HEAD",
            &format!("/lockbkt/{key}"),
            &[("versionId", version)],
            b"",
        );
        assert_eq!(h.status, 200);
        assert_eq!(
            h.header("x-amz-object-lock-retain-until-date"),
            None,
            "{key}"
        );
    }

    // The server refuses to delete a locked version, through the library and as a bare request.
    let pack = &packs[0];
    let versions = b.versions(FileKind::Pack, pack).unwrap();
    assert_eq!(versions.len(), 1, "{versions:?}");
    let e = b
        .remove_version(FileKind::Pack, pack, &versions[0].id)
        .unwrap_err();
    assert!(e.to_string().contains("access denied"), "{e}");
    let key = format!("db/data/{}/{pack}", &pack[..2]);
    let del = s.raw(
        "DELETE",
        &format!("/lockbkt/{key}"),
        &[("versionId", &versions[0].id)],
        b"",
    );
    assert_eq!(del.status, 403, "{}", del.body);

    // Overwriting: a write of the name keeps the stored object (If-None-Match) ...
    let original = b.read(FileKind::Pack, pack).unwrap();
    b.write(FileKind::Pack, pack, b"forged bytes").unwrap();
    assert_eq!(b.read(FileKind::Pack, pack).unwrap(), original);
    assert_eq!(b.versions(FileKind::Pack, pack).unwrap().len(), 1);
    // ... and a client that overwrites anyway only adds a version over the locked one, which
    // verify flags and which can be removed again: the locked original is never lost.
    let put = s.raw("PUT", &format!("/lockbkt/{key}"), &[], b"forged bytes");
    assert_eq!(put.status, 200, "{}", put.body);
    let (code, report) = t.verify(&[]);
    assert_eq!(code, 13, "{report:#}");
    let versions = b.versions(FileKind::Pack, pack).unwrap();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert!(versions[0].latest && versions[0].size == 12, "{versions:?}");
    // The same request as the refused one above, on the unlocked version: accepted.
    let del = s.raw(
        "DELETE",
        &format!("/lockbkt/{key}"),
        &[("versionId", &versions[0].id)],
        b"",
    );
    assert_eq!(del.status, 204, "{}", del.body);
    assert_eq!(b.read(FileKind::Pack, pack).unwrap(), original);
    t.assert_verify_ok(&["--read-data"]);

    // forget hides the snapshot at once and says until when it stays stored.
    let snap = t.snapshots()[0]["id"].as_str().unwrap().to_string();
    let f = t.json(&["--yes", "forget", &snap]);
    let until = ts(&f["locked_until"]);
    assert!(until >= after + secs(86_400), "{f:#}");
    assert!(t.snapshots().is_empty());
    let versions = b.versions(FileKind::Snapshot, &snap).unwrap();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert!(versions.iter().any(|v| v.delete_marker && v.latest));
    assert!(versions.iter().any(|v| !v.delete_marker && v.size > 0));

    // prune hides the packs too, says what stays locked and until when, and deletes nothing.
    let p = t.json(&["--yes", "prune", "--instant-delete"]);
    let lock = &p["object_lock"]["hidden"];
    assert!(
        lock["versions_locked"].as_u64().unwrap() > packs.len() as u64, // and the snapshot
        "{p:#}"
    );
    assert!(lock["bytes_locked"].as_u64().unwrap() >= 600_000, "{p:#}");
    assert!(ts(&lock["locked_until"]) >= until, "{p:#}");
    assert!(b.list(FileKind::Pack).unwrap().is_empty());
    for pack in &packs {
        let v = b.versions(FileKind::Pack, pack).unwrap();
        assert!(v.iter().any(|v| !v.delete_marker && v.size > 0), "{v:?}");
    }
    // The hidden lock versions are gone for good (unlocked), but for this prune's own lock.
    assert!(lock_versions(&s, "lockbkt", "db").len() <= 1);
    // Said the same way to a person.
    let again = t.run(&["--yes", "prune", "--instant-delete"]);
    again.expect_code(0);
    assert!(
        again
            .stdout
            .contains("object lock: that space comes back with the first prune after"),
        "{}",
        again.stdout
    );
}

#[test]
fn prune_extends_locks_in_use_and_frees_removed_objects_once_unlocked() {
    let s = MotoServer::start();
    let t = s.repo("shortlock/r");
    let init = t.run(&["init", "--object-lock", "compliance", "--retention", "10s"]);
    init.expect_code(0);
    assert!(
        init.stdout
            .contains("object lock: compliance for 10s; run `prune` at least every 2.5s"),
        "{}",
        init.stdout
    );
    let b = s.backend("shortlock/r");

    let old = t.path("old");
    random_files(&old, 2, 2, 300_000);
    t.backup(&[&old]);
    let first = t.snapshots()[0]["id"].as_str().unwrap().to_string();
    let old_packs: Vec<String> = b
        .list(FileKind::Pack)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let new = t.path("new");
    random_files(&new, 3, 2, 300_000);
    t.backup(&[&new]);

    // Locked for 10 s + 2.5 s renewal; once less than 10 s is left, verify reports every object.
    let mut latest = Timestamp::MIN;
    for kind in LOCKED {
        for (name, _) in b.list(kind).unwrap() {
            latest = latest.max(b.retention(kind, &name).unwrap().expect("locked"));
        }
    }
    wait_until(latest - secs(10));
    let (code, report) = t.verify(&[]);
    assert_eq!(code, 18, "{report:#}");
    assert_eq!(report["ok"], true, "{report:#}");
    let short = report["short_retention"].as_array().unwrap();
    let objects: usize = LOCKED.iter().map(|k| b.list(*k).unwrap().len()).sum();
    assert_eq!(short.len(), objects, "{report:#}");

    // forget + prune: the old snapshot and its packs are hidden but stay stored while locked;
    // everything still in use has its lock extended to a whole retention again.
    let f = t.json(&["--yes", "forget", &first]);
    assert!(f["locked_until"].is_string(), "{f:#}");
    let p = t.json(&["--yes", "prune", "--instant-delete"]);
    let lock = &p["object_lock"];
    let kept: usize = LOCKED.iter().map(|k| b.list(*k).unwrap().len()).sum();
    assert_eq!(lock["objects"], kept as u64, "{p:#}");
    // All but what the prune itself wrote (a new index file) were extended.
    assert!(
        lock["extended"].as_u64().unwrap() >= kept as u64 - 1,
        "{p:#}"
    );
    let hidden = &lock["hidden"];
    assert!(
        hidden["versions_locked"].as_u64().unwrap() > old_packs.len() as u64, // and the snapshot
        "{p:#}"
    );
    assert!(hidden["bytes_locked"].as_u64().unwrap() >= 600_000, "{p:#}");
    let back = ts(&hidden["locked_until"]);
    let now = Timestamp::now();
    for kind in LOCKED {
        for (name, _) in b.list(kind).unwrap() {
            let until = b.retention(kind, &name).unwrap().expect("locked");
            assert!(until >= now + secs(10), "{kind:?} {name}: {until}");
        }
    }
    t.assert_verify_ok(&[]);
    for pack in &old_packs {
        assert!(b.versions(FileKind::Pack, pack).unwrap().len() >= 2);
    }

    // After the locks of the removed objects end, prune frees their space for good.
    wait_until(back);
    let p = t.json(&["--yes", "prune", "--instant-delete"]);
    let hidden = &p["object_lock"]["hidden"];
    assert!(hidden["bytes_freed"].as_u64().unwrap() >= 600_000, "{p:#}");
    assert_eq!(hidden["versions_locked"], 0, "{p:#}");
    assert!(hidden["locked_until"].is_null(), "{p:#}");
    for pack in &old_packs {
        assert!(
            b.versions(FileKind::Pack, pack).unwrap().is_empty(),
            "{pack}"
        );
    }
    assert!(b.versions(FileKind::Snapshot, &first).unwrap().is_empty());
    t.assert_verify_ok(&["--read-data"]);
    let out = t.path("restored");
    t.restore("latest", &out, &[]);
    assert_same_dir(&new, &out);
}
