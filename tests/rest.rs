//! The REST server (`hydrabackup serve`) and the `rest:` backend, over real TCP on loopback:
//! HTTPS with a self-signed certificate, users, private and append-only repositories.

mod common;
mod restcommon;

use std::path::Path;

use common::*;
use restcommon::*;

fn source(t: &TestRepo, seed: u64) -> std::path::PathBuf {
    let src = t.path("src");
    random_files(&src, seed, 4, 700_000);
    random_files(&src.join("small"), seed + 1, 30, 2_000);
    src
}

/// An HTTPS server with users alice and bob, each limited to their own repository; returns it
/// with the path of its certificate.
fn secure_server(t: &TestRepo) -> (Server, String) {
    let (cert, key) = certificate(t);
    let users = users(t);
    let s = Server::start(
        t,
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--users",
            &users,
            "--private-repos",
        ],
    );
    (s, cert)
}

fn pack_files(dir: &Path) -> Vec<std::path::PathBuf> {
    repo_files(dir, "data")
}

#[test]
fn backup_verify_restore_prune_over_https_with_users() {
    let t = TestRepo::new();
    let (s, cert) = secure_server(&t);
    assert!(s.base.starts_with("https://"), "{}", s.base);
    let loc = s.location(Some(("alice", "alice%20pw")), "alice");
    let ca = Some(cert.as_str());
    hb(&t, &loc, ca, &["init"]).expect_code(0);
    let src = source(&t, 3);
    let b1 = hb(&t, &loc, ca, &["backup", "--json", src.to_str().unwrap()]);
    let b1 = b1.expect_code(0).json();
    assert!(b1["data_blobs_added"].as_u64().unwrap() > 0);
    let v = hb(&t, &loc, ca, &["verify", "--read-data", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(v["ok"], true, "{v:#}");
    let out = t.path("out");
    hb(
        &t,
        &loc,
        ca,
        &["restore", "latest", "--target", out.to_str().unwrap()],
    )
    .expect_code(0);
    assert_same_dir(&src, &out);
    // Incremental: nothing new is stored.
    let b2 = hb(&t, &loc, ca, &["backup", "--json", src.to_str().unwrap()])
        .expect_code(0)
        .json();
    assert_eq!(b2["data_blobs_added"], 0, "{b2:#}");
    // Changed data, then forget the first two and prune: space comes back, the rest restores.
    random_files(&src, 99, 4, 700_000);
    hb(&t, &loc, ca, &["backup", src.to_str().unwrap()]).expect_code(0);
    let repo_dir = t.path("srv").join("alice");
    let before: u64 = pack_files(&repo_dir)
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum();
    let f = hb(
        &t,
        &loc,
        ca,
        &[
            "forget",
            "--yes",
            "--instant-delete",
            "--keep-last",
            "1",
            "--prune",
            "--max-unused",
            "0",
            "--json",
        ],
    );
    let f = f.expect_code(0).json();
    assert_eq!(f["removed"], 2, "{f:#}");
    let after: u64 = pack_files(&repo_dir)
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum();
    assert!(after + 2_000_000 < before, "{before} -> {after}: {f:#}");
    let out2 = t.path("out2");
    hb(
        &t,
        &loc,
        ca,
        &["restore", "latest", "--target", out2.to_str().unwrap()],
    )
    .expect_code(0);
    assert_same_dir(&src, &out2);
    hb(&t, &loc, ca, &["verify", "--read-data"]).expect_code(0);
    // The repository on the server is an ordinary repository folder.
    assert!(repo_dir.join("config").is_file());
    assert_objects_complete(&repo_dir);
}

#[test]
fn wrong_credentials_certificates_and_users_are_refused_clearly() {
    let t = TestRepo::new();
    let (s, cert) = secure_server(&t);
    let ca = Some(cert.as_str());
    hb(
        &t,
        &s.location(Some(("bob", "bob%20pw")), "bob"),
        ca,
        &["init"],
    )
    .expect_code(0);

    let cases: Vec<(String, Option<&str>, &str)> = vec![
        (s.location(Some(("bob", "wrong")), "bob"), ca, "credentials"),
        (s.location(None, "bob"), ca, "credentials"),
        (
            s.location(Some(("alice", "alice%20pw")), "bob"),
            ca,
            "another user",
        ),
        // Without the certificate the server is not trusted.
        (
            s.location(Some(("bob", "bob%20pw")), "bob"),
            None,
            "certificate",
        ),
        // Nothing listens there.
        (
            "rest:https://127.0.0.1:1/bob".to_string(),
            ca,
            "127.0.0.1:1",
        ),
    ];
    for (loc, ca, needle) in cases {
        let r = hb(&t, &loc, ca, &["snapshots"]);
        r.expect_clean_error();
        assert!(
            r.stderr.to_lowercase().contains(needle),
            "{loc}: expected {needle:?} in {}",
            r.stderr
        );
        assert!(
            !r.stderr.contains("bob pw") && !r.stderr.contains("wrong@"),
            "{}",
            r.stderr
        );
    }
    // A repository that does not exist (yet): exit 10.
    hb(
        &t,
        &s.location(Some(("alice", "alice%20pw")), "alice"),
        ca,
        &["snapshots"],
    )
    .expect_code(10);
}

#[test]
fn an_append_only_server_keeps_every_backup() {
    let t = TestRepo::new();
    let s = Server::start(&t, &["--no-auth", "--append-only"]);
    assert!(s.base.starts_with("http://"));
    let loc = s.location(None, "r");
    hb(&t, &loc, None, &["init"]).expect_code(0);
    let src = source(&t, 5);
    let first = hb(&t, &loc, None, &["backup", "--json", src.to_str().unwrap()])
        .expect_code(0)
        .json();
    random_files(&src, 6, 4, 700_000);
    hb(&t, &loc, None, &["backup", src.to_str().unwrap()]).expect_code(0);
    let files_before = repo_files(&t.path("srv").join("r"), "");

    // Forgetting and pruning are refused, clearly, and change nothing that matters.
    let id = first["snapshot_id"].as_str().unwrap();
    let r = hb(&t, &loc, None, &["forget", "--yes", id]);
    r.expect_clean_error();
    assert!(r.stderr.contains("append-only"), "{}", r.stderr);
    let r = hb(
        &t,
        &loc,
        None,
        &[
            "forget",
            "--yes",
            "--instant-delete",
            "--keep-last",
            "1",
            "--prune",
        ],
    );
    r.expect_clean_error();
    let snaps = hb(&t, &loc, None, &["snapshots", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(snaps.as_array().unwrap().len(), 2);
    let files_after = repo_files(&t.path("srv").join("r"), "");
    for f in &files_before {
        if !f.to_string_lossy().contains("/locks/") {
            assert!(files_after.contains(f), "{} was deleted", f.display());
        }
    }
    // Locks can still be removed, so backups go on, and everything verifies and restores.
    hb(&t, &loc, None, &["unlock"]).expect_code(0);
    hb(&t, &loc, None, &["backup", src.to_str().unwrap()]).expect_code(0);
    hb(&t, &loc, None, &["verify", "--read-data"]).expect_code(0);
    let out = t.path("out");
    hb(
        &t,
        &loc,
        None,
        &["restore", id, "--target", out.to_str().unwrap()],
    )
    .expect_code(0);
}

#[test]
fn damage_on_the_server_is_found() {
    let t = TestRepo::new();
    let s = Server::start(&t, &["--no-auth"]);
    let loc = s.location(None, "r");
    hb(&t, &loc, None, &["init"]).expect_code(0);
    let src = source(&t, 7);
    hb(&t, &loc, None, &["backup", src.to_str().unwrap()]).expect_code(0);
    let mut packs = pack_files(&t.path("srv").join("r"));
    packs.sort_by_key(|p| std::cmp::Reverse(p.metadata().unwrap().len()));
    flip_bit(&packs[0], pack_blob_area(&packs[0]) / 2);
    let r = hb(&t, &loc, None, &["verify", "--read-data", "--json"]);
    assert_eq!(r.code, Some(13), "{r:?}");
}
