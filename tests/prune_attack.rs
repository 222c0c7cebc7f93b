//! A client with the password on append-only storage can add objects but delete none. Forged
//! packs and index files made through the library, exactly as such a client could POST them,
//! must not make `prune` (or `forget --prune`) delete history; structure `verify` must flag
//! them, `verify --read-data` must check the copies restore would use, and `restore` must use
//! intact copies.

mod common;

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use common::*;
use hydrabackup::Id;
use hydrabackup::backend::{Backend, FileKind};
use hydrabackup::repo::Repository;
use hydrabackup::repo::blob::BlobType;
use hydrabackup::repo::index::{INDEX_VERSION, IndexFile, IndexPack};
use hydrabackup::repo::pack::PackBuilder;
use serde_json::Value;

/// How the forged index file takes precedence over the true ones.
#[derive(Debug, Clone, Copy)]
enum Forgery {
    /// It names every present index file in `supersedes`.
    Supersedes,
    /// Its name (the hash of its bytes, re-sealed until it fits) sorts before every other one.
    SortsFirst,
}

/// A repository with two snapshots of `src` (identical content) and what the attacker added.
struct Attacked {
    t: TestRepo,
    src: PathBuf,
    snapshots: Vec<String>,
    forged_pack: String,
    forged_index: String,
}

fn open(t: &TestRepo) -> Repository {
    let backend: Arc<dyn Backend> =
        Arc::from(hydrabackup::backend::open(t.repo.to_str().unwrap()).unwrap());
    Repository::open(backend, PASSWORD.as_bytes()).unwrap()
}

/// Seals `file` and stores it under the hash of its bytes; with `first`, re-seals (fresh random
/// nonce, hence a fresh name) until the name sorts before every other index file's.
fn store_index(repo: &Repository, file: &IndexFile, first: bool) -> String {
    let others = repo.backend().list(FileKind::Index).unwrap();
    loop {
        let bytes = hydrabackup::repo::object::seal(repo.keys().seal_key(), file);
        let name = Id::of_stored(&bytes).to_hex();
        if !first || others.iter().all(|(n, _)| name < *n) {
            repo.backend()
                .write(FileKind::Index, &name, &bytes)
                .unwrap();
            return name;
        }
    }
}

/// The attack, with the password and write-only access: one pack of sealed random bytes whose
/// header lists every data blob (lengths as in the true index, so sizes add up), and one index
/// file pointing every data blob at it. Returns (pack name, index file name).
fn forge(t: &TestRepo, how: Forgery) -> (String, String) {
    let repo = open(t);
    let files = repo.load_index_files().unwrap();
    let index = repo.load_index().unwrap();
    let mut pack = PackBuilder::default();
    for loc in index.iter().filter(|l| l.entry.kind == BlobType::Data) {
        let e = loc.entry;
        let garbage = random_bytes(e.offset as u64 ^ 0xbad, e.len as usize - 28);
        let sealed = repo.keys().seal_key().seal(&garbage);
        pack.add(e.kind, e.id, &sealed, e.raw_len, e.compressed);
    }
    let forged = pack.finish(repo.keys());
    repo.backend()
        .write(FileKind::Pack, &forged.id.to_hex(), &forged.bytes)
        .unwrap();
    let mut file = IndexFile {
        version: INDEX_VERSION,
        supersedes: Vec::new(),
        packs: vec![IndexPack::from_entries(forged.id, &forged.entries)],
        ..Default::default()
    };
    if let Forgery::Supersedes = how {
        // The superseded files' tree packs are carried over, so that only data is redirected.
        file.supersedes = files
            .iter()
            .map(|(n, _)| Id::from_hex(n).unwrap())
            .collect();
        for (_, f) in &files {
            file.packs.extend(
                f.packs
                    .iter()
                    .filter(|p| p.blobs.iter().all(|b| b.0 & 1 == 1))
                    .cloned(),
            );
        }
    }
    let name = store_index(&repo, &file, matches!(how, Forgery::SortsFirst));
    (forged.id.to_hex(), name)
}

/// Two snapshots of the same source, then the attack.
fn attacked(how: Forgery) -> Attacked {
    let t = TestRepo::init_with(&["--pack-size", "1", "--chunk-avg", "64"]);
    let src = t.path("src");
    random_files(&src, 7, 4, 250_000);
    write(&src.join("sub/small"), b"a small file");
    let snapshots: Vec<String> = (0..2)
        .map(|_| t.backup(&[&src])["snapshot_id"].as_str().unwrap().into())
        .collect();
    t.assert_verify_ok(&["--read-data"]);
    let (forged_pack, forged_index) = forge(&t, how);
    Attacked {
        t,
        src,
        snapshots,
        forged_pack,
        forged_index,
    }
}

fn problems(v: &Value) -> &Vec<Value> {
    v["problems"].as_array().unwrap()
}

/// The problems a report gives for `object` (e.g. `pack <id>`).
fn about<'a>(v: &'a Value, object: &str) -> Vec<&'a Value> {
    problems(v)
        .iter()
        .filter(|p| p["object"] == object)
        .collect()
}

fn restores_exactly(a: &Attacked, snapshot: &str) {
    let out = a.t.path(&format!("out-{snapshot}"));
    let _ = fs::remove_dir_all(&out);
    a.t.restore(snapshot, &out, &[]);
    assert_same_dir(&a.src, &out);
}

#[test]
fn structure_verify_flags_forged_copies() {
    for how in [Forgery::Supersedes, Forgery::SortsFirst] {
        let a = attacked(how);
        let (code, v) = a.t.verify(&[]);
        assert_eq!(code, 13, "{how:?}: {v:#}");
        let forged = about(&v, &format!("pack {}", a.forged_pack));
        assert_eq!(forged.len(), 1, "{how:?}: {v:#}");
        assert_eq!(forged[0]["kind"], "blob", "{how:?}: {v:#}");
        let detail = forged[0]["detail"].as_str().unwrap();
        assert!(detail.contains("readers fall back"), "{how:?}: {detail}");
        // Intact copies exist, so no file is reported lost.
        assert!(
            problems(&v)
                .iter()
                .all(|p| p["affected"].as_array().unwrap().is_empty()),
            "{how:?}: {v:#}"
        );
    }
}

#[test]
fn read_data_checks_the_copies_restore_would_use() {
    for how in [Forgery::Supersedes, Forgery::SortsFirst] {
        let a = attacked(how);
        let (code, v) = a.t.verify(&["--read-data"]);
        assert_eq!(code, 13, "{how:?}: {v:#}");
        let forged = about(&v, &format!("pack {}", a.forged_pack));
        assert!(
            forged
                .iter()
                .any(|p| p["detail"].as_str().unwrap().contains("fail to decrypt")),
            "{how:?}: {v:#}"
        );
        // Every pack, the true ones listed only by superseded index files included, is read.
        assert_eq!(
            v["packs_read"].as_u64().unwrap(),
            packs(&a.t.repo).len() as u64,
            "{how:?}: {v:#}"
        );
    }
}

#[test]
fn restore_uses_an_intact_copy() {
    for how in [Forgery::Supersedes, Forgery::SortsFirst] {
        let a = attacked(how);
        restores_exactly(&a, &a.snapshots[1]);
    }
}

#[test]
fn copy_uses_an_intact_copy() {
    let a = attacked(Forgery::SortsFirst);
    let dst = TestRepo::init();
    let pw = a.t.path("password");
    fs::write(&pw, PASSWORD).unwrap();
    let from = [a.t.repo.to_str().unwrap(), pw.to_str().unwrap()];
    dst.json(&[
        "copy",
        "--from-repo",
        from[0],
        "--from-password-file",
        from[1],
    ]);
    let out = dst.path("out");
    dst.restore("latest", &out, &[]);
    assert_same_dir(&a.src, &out);
}

#[test]
fn prune_never_deletes_the_only_intact_copy() {
    for (how, forget) in [(Forgery::Supersedes, false), (Forgery::SortsFirst, true)] {
        let a = attacked(how);
        let r = if forget {
            // `forget --prune -q`, as the README's schedule runs it on the server.
            a.t.run(&[
                "forget",
                "--yes",
                "--instant-delete",
                &a.snapshots[0],
                "--prune",
                "-q",
                "--json",
            ])
        } else {
            a.t.run(&[
                "prune",
                "--yes",
                "--instant-delete",
                "--max-unused",
                "0",
                "--json",
            ])
        };
        let v = r.expect_code(0).json();
        let p = if forget { v["prune"].clone() } else { v };
        // The operator is told, even with -q.
        assert!(r.stderr.contains("forged"), "{how:?}: {}", r.stderr);
        // The snapshots left restore exactly and every byte verifies.
        let left = if forget { 1 } else { 0 };
        for snapshot in &a.snapshots[left..] {
            restores_exactly(&a, snapshot);
        }
        a.t.assert_verify_ok(&["--read-data"]);
        let data_blobs = open(&a.t)
            .load_index()
            .unwrap()
            .iter()
            .filter(|l| l.entry.kind == BlobType::Data)
            .count() as u64;
        assert_eq!(p["copies_damaged"], data_blobs, "{how:?}: {p:#}");
        assert!(
            !packs(&a.t.repo).iter().any(|f| name_of(f) == a.forged_pack),
            "{how:?}: the forged pack was kept"
        );
        assert!(
            !a.t.repo.join("index").join(&a.forged_index).exists(),
            "{how:?}: the forged index file was kept"
        );
    }
}

#[test]
fn an_honest_prune_checks_nothing_extra() {
    let t = TestRepo::init_with(&["--pack-size", "1", "--chunk-avg", "64"]);
    let src = t.path("src");
    random_files(&src, 3, 3, 250_000);
    let first = t.backup(&[&src])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    random_files(&src, 4, 2, 250_000);
    t.backup(&[&src]);
    let v = t.json(&[
        "forget",
        "--yes",
        "--instant-delete",
        &first,
        "--prune",
        "--max-unused",
        "0",
    ]);
    let p = &v["prune"];
    let dropped = p["packs_deleted"].as_u64().unwrap() + p["packs_rewritten"].as_u64().unwrap();
    assert!(dropped > 0, "{v:#}");
    assert_eq!(v["prune"]["copies_checked"], 0, "{v:#}");
    assert_eq!(v["prune"]["copies_damaged"], 0, "{v:#}");
}

/// A forged record of a true pack that lists other blobs than its header.
#[test]
fn a_pack_whose_header_disagrees_with_the_index_is_damage() {
    let t = TestRepo::init_with(&["--pack-size", "1", "--chunk-avg", "64"]);
    let src = t.path("src");
    random_files(&src, 9, 3, 250_000);
    let snap = t.backup(&[&src])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let repo = open(&t);
    let files = repo.load_index_files().unwrap();
    let mut record = files
        .iter()
        .flat_map(|(_, f)| f.packs.iter())
        .find(|p| p.blobs.iter().all(|b| b.0 & 1 == 0))
        .expect("a data pack")
        .clone();
    for b in &mut record.blobs {
        b.1 = Id::random();
    }
    let pack = record.id.to_hex();
    let file = IndexFile {
        version: INDEX_VERSION,
        supersedes: Vec::new(),
        packs: vec![record],
        ..Default::default()
    };
    let forged_index = store_index(&repo, &file, true);

    let before = repo_files(&t.repo, "");
    let r = t.run(&["prune", "--yes", "--instant-delete", "--max-unused", "0"]);
    r.expect_code(13).expect_clean_error();
    assert!(
        r.stderr.contains(&pack) && r.stderr.contains("nothing was pruned"),
        "{}",
        r.stderr
    );
    assert_eq!(repo_files(&t.repo, ""), before);
    let (code, v) = t.verify(&[]);
    assert_eq!(code, 13, "{v:#}");
    let p = about(&v, &format!("pack {pack}"));
    assert!(
        p.iter().any(|p| p["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("does not match index file {forged_index}"))),
        "{v:#}"
    );

    let out = t.path("out");
    t.restore(&snap, &out, &[]);
    assert_same_dir(&src, &out);
}

/// A superseding index file that lists nothing of what it replaces: the true packs are then
/// listed only by superseded files, which verify reports and prune keeps.
#[test]
fn supersedes_is_honoured_only_when_covered() {
    let t = TestRepo::init_with(&["--pack-size", "1", "--chunk-avg", "64"]);
    let src = t.path("src");
    random_files(&src, 11, 3, 250_000);
    let snap = t.backup(&[&src])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let repo = open(&t);
    let files = repo.load_index_files().unwrap();
    let file = IndexFile {
        version: INDEX_VERSION,
        supersedes: files
            .iter()
            .map(|(n, _)| Id::from_hex(n).unwrap())
            .collect(),
        packs: Vec::new(),
        ..Default::default()
    };
    store_index(&repo, &file, false);

    let (code, v) = t.verify(&[]);
    assert_eq!(code, 13, "{v:#}");
    let stranded: Vec<&Value> = problems(&v)
        .iter()
        .filter(|p| p["kind"] == "index")
        .collect();
    assert_eq!(stranded.len(), packs(&t.repo).len(), "{v:#}");

    let p = t.json(&["prune", "--yes", "--instant-delete", "--max-unused", "0"]);
    assert_eq!(p["packs_deleted"], 0, "{p:#}");
    t.assert_verify_ok(&["--read-data"]);
    let out = t.path("out");
    t.restore(&snap, &out, &[]);
    assert_same_dir(&src, &out);
}

/// Index files that do not decode, or list impossible lengths, are skipped by every reader
/// (so they cannot deny restores or backups), reported by `verify`, and stop `prune`.
#[test]
fn undecodable_index_files_are_skipped_and_stop_prune() {
    let t = TestRepo::init_with(&["--pack-size", "1", "--chunk-avg", "64"]);
    let src = t.path("src");
    random_files(&src, 13, 3, 250_000);
    t.backup(&[&src]);
    let repo = open(&t);
    // A true data blob pointed at a 4 GiB stretch of a true pack.
    let loc = repo
        .load_index()
        .unwrap()
        .iter()
        .find(|l| l.entry.kind == BlobType::Data)
        .unwrap();
    let garbage = hydrabackup::repo::object::seal(repo.keys().seal_key(), &"not an index");
    let garbage_name = Id::of_stored(&garbage).to_hex();
    repo.backend()
        .write(FileKind::Index, &garbage_name, &garbage)
        .unwrap();
    let mut huge = loc.entry;
    huge.len = u32::MAX;
    let file = IndexFile {
        version: INDEX_VERSION,
        supersedes: Vec::new(),
        packs: vec![IndexPack::from_entries(loc.pack, &[huge])],
        ..Default::default()
    };
    let huge_name = store_index(&repo, &file, true);

    let out = t.path("out");
    t.restore("latest", &out, &[]);
    assert_same_dir(&src, &out);
    write(&src.join("new"), b"a later backup works too");
    t.backup(&[&src]);

    let (code, v) = t.verify(&[]);
    assert_eq!(code, 13, "{v:#}");
    for name in [&garbage_name, &huge_name] {
        assert_eq!(about(&v, &format!("index {name}")).len(), 1, "{v:#}");
    }

    let before = repo_files(&t.repo, "");
    let r = t.run(&["prune", "--yes", "--instant-delete"]);
    r.expect_code(13).expect_clean_error();
    assert!(r.stderr.contains(&garbage_name), "{}", r.stderr);
    assert_eq!(repo_files(&t.repo, ""), before);
}

/// A forged index record that gives one blob another length (sorting first, so restore would
/// plan with it) makes only the file that uses the blob damaged: restore reports it, exits 13
/// and restores every other file byte-identical instead of stopping.
#[test]
fn a_forged_blob_length_damages_only_its_file() {
    let t = TestRepo::init_with(&["--pack-size", "1", "--chunk-avg", "64"]);
    let src = t.path("src");
    random_files(&src, 17, 4, 100_000);
    write(&src.join("sub/small"), b"a small file");
    t.backup(&[&src]);
    let repo = open(&t);
    let index = repo.load_index().unwrap();
    let (_, snap) = repo.find_snapshot("latest").unwrap();
    // The node of sub/small, found anywhere below the root.
    let mut stack = vec![snap.tree];
    let small = loop {
        let tree = repo
            .load_tree(&index, &stack.pop().expect("sub/small"))
            .unwrap();
        if let Some(n) = tree.find(b"small") {
            break n.clone();
        }
        stack.extend(tree.nodes.iter().filter_map(|n| n.subtree));
    };
    assert_eq!(small.content.len(), 1);
    let loc = index.get(BlobType::Data, &small.content[0]).unwrap();
    let mut e = loc.entry;
    let garbage = random_bytes(99, e.len as usize - 28);
    let sealed = repo.keys().seal_key().seal(&garbage);
    e.raw_len += 1000;
    let mut pack = PackBuilder::default();
    pack.add(e.kind, e.id, &sealed, e.raw_len, e.compressed);
    let forged = pack.finish(repo.keys());
    repo.backend()
        .write(FileKind::Pack, &forged.id.to_hex(), &forged.bytes)
        .unwrap();
    let file = IndexFile {
        version: INDEX_VERSION,
        supersedes: Vec::new(),
        packs: vec![IndexPack::from_entries(forged.id, &forged.entries)],
        ..Default::default()
    };
    store_index(&repo, &file, true);

    let out = t.path("out");
    let r = t.run(&["restore", "latest", "--target", out.to_str().unwrap()]);
    r.expect_code(13);
    assert!(
        r.stderr.contains("damaged: ") && r.stderr.contains("sub/small"),
        "{}",
        r.stderr
    );
    // Everything but the damaged file is there, byte-identical; the damaged one is absent.
    let small = walk_files(&out)
        .into_iter()
        .find(|p| p.ends_with("sub/small"));
    assert!(small.is_none(), "the damaged file was written");
    let mut restored = 0;
    for i in 0..4 {
        let name = format!("file{i:03}.bin");
        let got = walk_files(&out)
            .into_iter()
            .find(|p| p.ends_with(&name))
            .expect("restored");
        assert_eq!(fs::read(got).unwrap(), fs::read(src.join(&name)).unwrap());
        restored += 1;
    }
    assert_eq!(restored, 4);
}

/// Every file below `dir`.
fn walk_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
