//! The S3 backend against a real S3-compatible server: `s3s-fs` (installed by `scripts/test.sh`
//! when missing), one server process per test on a free loopback port with its own data
//! directory, killed when the test ends.

mod common;
mod s3common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use s3common::*;

fn u(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing in {v:#}"))
}

/// The files of a directory tree on the server's disk.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

#[test]
fn backup_restore_verify_forget_prune_over_s3() {
    let s = S3Server::start();
    // The bucket does not exist yet: init creates it.
    let t = s.init(
        "backups/hosts/db1",
        &["--pack-size", "1", "--chunk-avg", "64"],
    );
    let objects = s.objects("backups", "hosts/db1");
    assert!(objects.join("config").is_file());
    assert_eq!(files_below(&objects.join("keys")).len(), 1);
    // A second init finds the repository.
    let again = t.run(&["init"]);
    again.expect_code(1).expect_clean_error();
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);

    let src = t.path("src");
    random_files(&src, 1, 5, 300_000);
    write(&src.join("small/note.txt"), b"hello s3");
    let first = t.backup(&[&src]);
    assert_eq!(
        u(&first, "bytes_added"),
        u(&first, "total_bytes"),
        "{first:#}"
    );
    let packs = files_below(&objects.join("data"));
    assert!(packs.len() >= 2, "expected several packs: {packs:?}");
    // Objects are laid out as in a local repository and named by their content's hash.
    for p in &packs {
        let name = name_of(p);
        assert_eq!(name_of(p.parent().unwrap()), name[..2]);
        assert_eq!(hash_file(p), name);
    }
    assert_eq!(t.snapshots().len(), 1);
    t.assert_verify_ok(&["--read-data"]);

    let out = t.path("restored");
    t.restore("latest", &out, &[]);
    assert_same_dir(&src, &out);

    // Nothing changed: the second backup adds no data.
    let second = t.backup(&[&src]);
    assert_eq!(u(&second, "data_blobs_added"), 0, "{second:#}");
    assert_eq!(u(&second, "bytes_added"), 0, "{second:#}");
    assert_eq!(files_below(&objects.join("data")), packs);

    // New data, then forget the first two snapshots and prune what only they used.
    fs::remove_file(src.join("file000.bin")).unwrap();
    write(&src.join("file005.bin"), &random_bytes(77, 300_000));
    let third = t.backup(&[&src]);
    assert!(u(&third, "bytes_added") > 0, "{third:#}");
    let ids: Vec<String> = t
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().expect("snapshot id").to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    let third_id = third["snapshot_id"].as_str().unwrap();
    let old: Vec<&str> = ids
        .iter()
        .map(String::as_str)
        .filter(|i| *i != third_id)
        .collect();
    let f = t.json(&["forget", "--yes", old[0], old[1]]);
    assert_eq!(f["removed"], 2, "{f:#}");
    let stored = || -> u64 {
        files_below(&objects.join("data"))
            .iter()
            .map(|p| fs::metadata(p).unwrap().len())
            .sum()
    };
    let before = stored();
    let p = t.json(&["prune", "--yes", "--instant-delete", "--max-unused", "0"]);
    assert!(u(&p, "bytes_unused") > 0, "{p:#}");
    assert_eq!(u(&p, "pack_bytes_before"), before, "{p:#}");
    assert_eq!(u(&p, "pack_bytes_after"), stored(), "{p:#}");
    assert!(stored() < before, "prune freed nothing: {p:#}");
    assert_eq!(t.snapshots().len(), 1);
    t.assert_verify_ok(&["--read-data"]);
    let out2 = t.path("restored2");
    t.restore("latest", &out2, &[]);
    assert_same_dir(&src, &out2);
    // No lock is left behind by finished operations.
    assert!(files_below(&objects.join("locks")).is_empty());
}

#[test]
fn unlock_removes_the_lock_of_a_crashed_backup() {
    let s = S3Server::start();
    let t = s.init("locks-bucket", &[]);
    let src = t.path("src");
    random_files(&src, 2, 2, 50_000);
    let mut c = t.command();
    c.env("HYDRABACKUP_FAILPOINT", "before-snapshot").args([
        "backup",
        "--json",
        src.to_str().unwrap(),
    ]);
    let r = run_cmd(c);
    assert_eq!(r.signal, Some(libc::SIGKILL), "not killed: {r:?}");
    let locks = s.objects("locks-bucket", "locks");
    assert_eq!(files_below(&locks).len(), 1, "the crash left no lock");

    let removed = t.json(&["unlock"]);
    assert_eq!(
        removed["removed"].as_array().map(Vec::len),
        Some(1),
        "{removed:#}"
    );
    assert!(files_below(&locks).is_empty());
    // The repository is usable afterwards.
    t.backup(&[&src]);
    t.assert_verify_ok(&["--read-data"]);
}

#[test]
fn listing_follows_continuation_tokens() {
    let s = S3Server::start();
    let mut t = s.init("paged", &["--pack-size", "1", "--chunk-avg", "64"]);
    let src = t.path("src");
    for g in 0..3 {
        random_files(&src, 10 + g, 3, 200_000);
        t.backup(&[&src]);
    }
    let objects = s.objects("paged", "");
    let packs = files_below(&objects.join("data")).len();
    let indexes = files_below(&objects.join("index")).len();
    assert!(
        packs > 3 && indexes >= 3,
        "{packs} packs, {indexes} indexes"
    );
    let full = t.json(&["verify"]);

    // Pages of two keys: every listing takes several requests and must still see everything.
    t.env.push(("HYDRABACKUP_S3_LIST_PAGE".into(), "2".into()));
    assert_eq!(t.snapshots().len(), 3);
    let paged = t.assert_verify_ok(&["--read-data"]);
    for k in ["snapshots", "packs", "index_files"] {
        if full.get(k).is_some() {
            assert_eq!(paged[k], full[k], "{k}: {paged:#} vs {full:#}");
        }
    }
    let out = t.path("out");
    t.restore("latest", &out, &[]);
    assert_same_dir(&src, &out);

    // A page size that is not a number is refused clearly.
    t.env
        .push(("HYDRABACKUP_S3_LIST_PAGE".into(), "many".into()));
    let r = t.run(&["snapshots"]);
    r.expect_code(1).expect_clean_error();
    assert!(
        r.stderr.contains("HYDRABACKUP_S3_LIST_PAGE"),
        "{}",
        r.stderr
    );
}

#[test]
fn wrong_secret_key_is_one_clear_line() {
    let s = S3Server::start();
    let mut t = s.init("secret", &[]);
    t.env = vec![
        ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "not-the-secret".into()),
    ];
    for args in [vec!["snapshots"], vec!["init"], vec!["verify"]] {
        let r = t.run(&args);
        r.expect_code(1).expect_clean_error();
        assert!(
            r.stderr.contains("refused the credentials"),
            "{args:?}: {}",
            r.stderr
        );
    }
    // Without credentials at all, the message says which variables to set.
    t.env.clear();
    let r = t.run(&["snapshots"]);
    r.expect_code(1).expect_clean_error();
    assert!(r.stderr.contains("AWS_ACCESS_KEY_ID"), "{}", r.stderr);
}

#[test]
fn unreachable_endpoint_is_one_clear_line() {
    // Nothing listens on this port.
    let port = free_port();
    let mut t = TestRepo::new();
    t.repo = PathBuf::from(format!("s3:http://127.0.0.1:{port}/bucket/repo"));
    t.env = vec![
        ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
    ];
    for args in [vec!["snapshots"], vec!["init"]] {
        let r = t.run(&args);
        r.expect_code(1).expect_clean_error();
        assert!(r.stderr.contains("cannot reach"), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(&port.to_string()), "{}", r.stderr);
    }
    let r = t.run(&["snapshots", "--json"]);
    r.expect_code(1);
    assert_eq!(r.json()["exit_code"], 1);
}

#[test]
fn missing_bucket_or_repository_exits_10() {
    let s = S3Server::start();
    s.init("present", &[]);
    for loc in [
        "absent-bucket",
        "absent-bucket/prefix",
        "present/other-prefix",
    ] {
        let t = s.repo(loc);
        let r = t.run(&["snapshots"]);
        r.expect_code(10).expect_clean_error();
        assert!(r.stderr.contains("does not exist"), "{loc}: {}", r.stderr);
    }
    // Malformed locations are refused before any request.
    let mut t = s.repo("x");
    t.repo = PathBuf::from("s3:http://127.0.0.1:1/Not_A_Bucket");
    let r = t.run(&["snapshots"]);
    r.expect_code(1).expect_clean_error();
    assert!(r.stderr.contains("invalid S3 location"), "{}", r.stderr);
}

#[test]
fn damaged_pack_on_the_server_is_found_by_verify() {
    let s = S3Server::start();
    let t = s.init("damage", &[]);
    let src = t.path("src");
    random_files(&src, 3, 2, 100_000);
    t.backup(&[&src]);
    t.assert_verify_ok(&["--read-data"]);
    // The largest pack holds file data (trees go to their own, small packs).
    let packs = files_below(&s.objects("damage", "data"));
    let pack = packs
        .iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .expect("a pack");
    flip_bit(pack, 100);

    // Without reading data, the structure still checks out.
    t.assert_verify_ok(&[]);
    let (code, report) = t.verify(&["--read-data"]);
    assert_eq!(code, 13, "{report:#}");
    assert_eq!(report["ok"], false, "{report:#}");
    let problems = report["problems"].to_string();
    assert!(problems.contains(&name_of(pack)[..8]), "{report:#}");
}

#[test]
fn backend_contract_against_the_server() {
    use hydrabackup::backend::{Backend, FileKind, S3Backend, S3Options};

    let s = S3Server::start();
    let location = s.location("contract/pre");
    let open = |list_page: usize| {
        S3Backend::open(
            &location,
            &S3Options {
                list_page,
                ..s.options()
            },
        )
        .unwrap()
    };
    let b = open(1000);
    assert!(!b.exists().unwrap());
    b.create().unwrap();
    b.create().unwrap(); // the bucket exists now: still fine
    assert!(!b.exists().unwrap());
    assert!(b.list(FileKind::Pack).unwrap().is_empty());

    let data = random_bytes(5, 100_000);
    let name = "ab".to_string() + &"0".repeat(62);
    b.write(FileKind::Pack, &name, &data).unwrap();
    // Writing an existing name keeps the old bytes.
    b.write(FileKind::Pack, &name, b"other").unwrap();
    assert_eq!(b.read(FileKind::Pack, &name).unwrap(), data);
    assert_eq!(b.size(FileKind::Pack, &name).unwrap(), 100_000);
    assert_eq!(
        b.read_range(FileKind::Pack, &name, 99_990, 10).unwrap(),
        &data[99_990..]
    );
    assert!(
        b.read_range(FileKind::Pack, &name, 0, 0)
            .unwrap()
            .is_empty()
    );
    for (offset, len) in [(99_990, 11), (100_000, 1), (200_000, 5), (u64::MAX, 2)] {
        let e = b
            .read_range(FileKind::Pack, &name, offset, len)
            .expect_err("a range beyond the end");
        assert!(
            matches!(e, hydrabackup::Error::Backend { ref source, .. }
                if source.kind() == std::io::ErrorKind::UnexpectedEof),
            "{offset}+{len}: {e}"
        );
    }
    let missing = b.read(FileKind::Index, "00ff").expect_err("missing");
    assert!(
        matches!(missing, hydrabackup::Error::Backend { ref source, .. }
            if source.kind() == std::io::ErrorKind::NotFound),
        "{missing}"
    );
    assert!(b.read(FileKind::Pack, "../../x").is_err());

    // Concurrent ranged reads share one backend (the pack reader does this).
    std::thread::scope(|sc| {
        for i in 0..8u64 {
            let (b, data, name) = (&b, &data, &name);
            sc.spawn(move || {
                let off = i * 10_000;
                let got = b.read_range(FileKind::Pack, name, off, 5_000).unwrap();
                assert_eq!(got, &data[off as usize..off as usize + 5_000]);
            });
        }
    });

    // Listing with pages of one key sees every object, and only the kind asked for.
    for i in 0..5 {
        b.write(
            FileKind::Snapshot,
            &format!("{i:02x}{}", "1".repeat(62)),
            b"s",
        )
        .unwrap();
    }
    b.write(FileKind::Config, "config", b"cfg").unwrap();
    let paged = open(1);
    let snaps = paged.list(FileKind::Snapshot).unwrap();
    assert_eq!(snaps.len(), 5);
    assert!(snaps.iter().all(|(_, size)| *size == 1));
    assert_eq!(snaps, b.list(FileKind::Snapshot).unwrap());
    assert_eq!(
        paged.list(FileKind::Pack).unwrap(),
        vec![(name.clone(), 100_000)]
    );
    assert_eq!(
        paged.list(FileKind::Config).unwrap(),
        vec![("config".to_string(), 3)]
    );
    assert!(paged.exists().unwrap());

    b.remove(FileKind::Pack, &name).unwrap();
    assert!(b.list(FileKind::Pack).unwrap().is_empty());
    assert_eq!(b.remove_stale_temporaries().unwrap(), 0);
}
