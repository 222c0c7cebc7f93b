//! Logical capture (`backup --mode logical|auto`): a Swamp stored as its live set comes back as
//! a fresh `.hyd` that loads to exactly the captured records; a compaction between two backups
//! stores no record data again; DELETEs are honoured; malformed record data is quarantined with
//! the file's raw bytes kept.

mod hydcommon;

use std::collections::BTreeMap;
use std::path::Path;

use hydcommon::*;
use hydrabackup::hyd::block::{Entry, Op};
use hydrabackup::hyd::{HydWriter, LiveSet, Version, replay_file};

/// Live set, name and format version of every `.hyd` file under `root`, by relative path.
fn live_sets(root: &Path) -> BTreeMap<String, (LiveSet, Option<String>, Version)> {
    swamps(root)
        .into_values()
        .filter_map(|s| match s {
            Swamp::Hyd(p) => {
                let r = replay_file(&root.join(&p)).expect("replay");
                Some((p, (r.live, r.name, r.header.version)))
            }
            Swamp::V1(..) => None,
        })
        .collect()
}

#[test]
fn logical_round_trip_gives_the_live_set_and_verifies() {
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 21, 40, "3M", 30, 10);
    let before = live_sets(&src);
    assert!(before.len() > 20);
    let b = hb.backup(&src, &["--mode", "logical"]);
    assert_eq!(num(&b, "swamps_quarantined"), 0, "{b:#}");
    // The catalogue says which Swamps are stored as records.
    let show = hb.show("latest");
    let logical = show.values().filter(|s| s["records"].is_u64()).count();
    assert_eq!(
        logical,
        before.len(),
        "every .hyd is logical; V1 folders are not"
    );

    let out = hb.path("out");
    hb.restore("latest", &out, &[]);
    assert_eq!(
        live_sets(&out),
        before,
        "same keys, values, names and versions"
    );
    assert_hydgen_check(&out);
    hb.run(&["verify", "--read-data"]).expect(0);
    // A single Swamp by name restores through the name index alike.
    let (path, (live, name, _)) = before.iter().next().unwrap();
    let one = hb.path("one");
    hb.restore("latest", &one, &["--swamp", name.as_deref().unwrap()]);
    assert_eq!(&replay_file(&one.join(path)).unwrap().live, live);
    // dump rebuilds the .hyd as restore does; restore --verify checks each live set.
    let mut c = hb.command();
    c.args(["dump", "latest", &format!("/{path}")]);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dumped = hydrabackup::hyd::replay::replay_bytes(&o.stdout).expect("dump replays");
    assert_eq!(&dumped.live, live);
    let checked = hb.path("checked");
    let r = hb.json(&[
        "restore",
        "latest",
        "--target",
        checked.to_str().unwrap(),
        "--verify",
    ]);
    assert_eq!(num(&r, "verified"), num(&r, "files"), "{r:#}");
}

#[test]
fn compaction_between_backups_stores_no_record_again_and_restores_byte_identical() {
    let hb = Hb::with_init(&["--mode", "logical"]);
    let src = hb.path("data");
    gen_root(&src, 22, 30, "3M", 0, 0);
    let b1 = hb.backup(&src, &[]);
    assert!(num(&b1, "data_blobs_added") > 0);
    let before = live_sets(&src);
    // Every Swamp compacted: rewritten in random key order, no record changed.
    churn_root(
        &src,
        5,
        &[
            "--append-percent",
            "0",
            "--compact-percent",
            "100",
            "--new-percent",
            "0",
            "--delete-percent",
            "0",
        ],
    )
    .expect(0);
    assert_eq!(live_sets(&src), before);
    let b2 = hb.backup(&src, &[]);
    assert!(num(&b2, "swamps_rewritten") >= 25, "{b2:#}");
    assert_eq!(
        num(&b2, "data_blobs_added"),
        num(&b2, "swamps_rewritten"),
        "{b2:#}"
    );
    // Only the block recipes are new (each compaction's file order: 4 bytes a record), under
    // 2 % of the bytes read.
    assert!(
        num(&b2, "bytes_added") * 50 < num(&b2, "bytes_read"),
        "{b2:#}"
    );
    // Files compacted by hydgen's writer (HydrAIDE's format, the same Snappy encoder) come back
    // byte for byte through their block recipe.
    let show = hb.show("latest");
    assert!(
        show.values().all(|s| s["byte_identical"] == true),
        "{show:#?}"
    );
    let out = hb.path("out");
    hb.restore("latest", &out, &[]);
    for p in before.keys() {
        assert_eq!(
            std::fs::read(out.join(p)).unwrap(),
            std::fs::read(src.join(p)).unwrap()
        );
    }

    // The same day in file mode stores the compacted files again.
    let b3 = hb.backup(&src, &["--mode", "file", "--force"]);
    assert!(num(&b3, "bytes_added") > 1_000_000, "{b3:#}");
}

#[test]
fn auto_mode_keeps_appends_as_files_and_rewrites_as_records() {
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 23, 30, "2M", 0, 0);
    hb.backup(&src, &["--mode", "auto"]);
    let show = hb.show("latest");
    assert!(
        show.values().all(|s| s.get("records").is_none()),
        "new Swamps stay files"
    );
    churn_root(
        &src,
        6,
        &["--append-percent", "30", "--compact-percent", "30"],
    )
    .expect(0);
    let b = hb.backup(&src, &["--mode", "auto"]);
    let (appended, rewritten) = (num(&b, "swamps_appended"), num(&b, "swamps_rewritten"));
    assert!(appended > 0 && rewritten > 0, "{b:#}");
    let show = hb.show("latest");
    let logical = show.values().filter(|s| s["records"].is_u64()).count() as u64;
    assert!(
        logical >= rewritten,
        "{logical} logical, {rewritten} rewritten"
    );
    let out = hb.path("out");
    hb.restore("latest", &out, &[]);
    assert_eq!(live_sets(&out), live_sets(&src));
    hb.run(&["verify", "--read-data"]).expect(0);
}

#[test]
fn default_mode_is_auto_unless_init_says_file() {
    let day = [
        "--append-percent",
        "30",
        "--compact-percent",
        "40",
        "--new-percent",
        "0",
        "--delete-percent",
        "0",
    ];
    // No --mode anywhere: new Swamps are files, compacted ones records that restore byte for
    // byte (hydgen's compaction writes HydrAIDE's blocks with the same Snappy encoder).
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 31, 30, "2M", 0, 0);
    hb.backup(&src, &[]);
    assert!(
        hb.show("latest")
            .values()
            .all(|s| s.get("records").is_none())
    );
    churn_root(&src, 7, &day).expect(0);
    let b = hb.backup(&src, &[]);
    assert!(num(&b, "swamps_rewritten") > 0, "{b:#}");
    let show = hb.show("latest");
    let logical: Vec<_> = show.values().filter(|s| s["records"].is_u64()).collect();
    assert_eq!(logical.len() as u64, num(&b, "swamps_rewritten"), "{b:#}");
    assert!(
        logical.iter().all(|s| s["byte_identical"] == true),
        "{show:#?}"
    );
    let out = hb.path("out");
    hb.restore("latest", &out, &[]);
    assert_same_content(&read_files(&src), &read_files(&out));

    // A repository made with `init --mode file` keeps every Swamp a file.
    let hf = Hb::with_init(&["--mode", "file"]);
    let src = hf.path("data");
    gen_root(&src, 31, 30, "2M", 0, 0);
    hf.backup(&src, &[]);
    churn_root(&src, 7, &day).expect(0);
    let b = hf.backup(&src, &[]);
    assert!(num(&b, "swamps_rewritten") > 0, "{b:#}");
    assert!(
        hf.show("latest")
            .values()
            .all(|s| s.get("records").is_none())
    );
}

fn write_swamp(path: &Path, name: &str, blocks: &[Vec<Entry>]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = HydWriter::create(path, name, Version::V3, 1_700_000_000_000_000_000).unwrap();
    for b in blocks {
        w.append_block(b).unwrap();
    }
    w.close(1_700_000_000_000_000_001, false).unwrap();
}

#[test]
fn deletes_are_honoured() {
    let hb = Hb::new();
    let src = hb.path("data");
    let f = src.join("1/ab/ab12.hyd");
    write_swamp(
        &f,
        "s/r/deletes",
        &[
            vec![
                Entry::new(Op::Insert, "a", "1"),
                Entry::new(Op::Insert, "b", "2"),
                Entry::new(Op::Insert, "c", "3"),
            ],
            vec![
                Entry::new(Op::Delete, "b", ""),
                Entry::new(Op::Update, "a", "1b"),
            ],
        ],
    );
    hb.backup(&src, &["--mode", "logical"]);
    let out = hb.path("out");
    hb.restore("latest", &out, &[]);
    let r = replay_file(&out.join("1/ab/ab12.hyd")).unwrap();
    let want: LiveSet = [
        (b"a".to_vec(), b"1b".to_vec()),
        (b"c".to_vec(), b"3".to_vec()),
    ]
    .into_iter()
    .collect();
    assert_eq!(r.live, want);
    assert_eq!(r.name.as_deref(), Some("s/r/deletes"));
    assert_eq!(r.header.created_at, 1_700_000_000_000_000_000);
}

#[test]
fn bad_messagepack_is_quarantined_with_its_raw_bytes() {
    let hb = Hb::new();
    let src = hb.path("data");
    let f = src.join("1/cd/cd34.hyd");
    // A value that starts as a MessagePack map of 3 pairs but holds one.
    write_swamp(
        &f,
        "s/r/badmp",
        &[vec![
            Entry::new(Op::Insert, "good", vec![0x81, 0xa1, b'k', 0x01]),
            Entry::new(Op::Insert, "bad", vec![0x83, 0xa1, b'k', 0x01]),
        ]],
    );
    let raw = std::fs::read(&f).unwrap();
    let out = hb.backup_any(&src, &["--mode", "logical"]);
    let v = out.expect(3).json();
    assert_eq!(num(&v, "swamps_quarantined"), 1, "{v:#}");
    let why = v["quarantine"][0]["reason"].as_str().unwrap_or_default();
    assert!(why.contains("MessagePack"), "{v:#}");
    let back = hb.path("raw");
    hb.restore("latest", &back, &["--raw-quarantined"]);
    assert_eq!(std::fs::read(back.join("1/cd/cd34.hyd")).unwrap(), raw);
}

/// `restore SNAP --swamp app/users/all --key KEY --raw`: stdout's bytes (exit 0).
fn raw_value(hb: &Hb, snap: &str, key: &str) -> Vec<u8> {
    let mut c = hb.command();
    c.args([
        "restore",
        snap,
        "--swamp",
        "app/users/all",
        "--key",
        key,
        "--raw",
    ]);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// A MessagePack Treasure `{"updatedAt": t, "v": body}`.
fn treasure(t: i64, body: &str) -> Vec<u8> {
    let mut v = vec![0x82, 0xa9];
    v.extend_from_slice(b"updatedAt");
    v.push(0xd3);
    v.extend_from_slice(&t.to_be_bytes());
    v.extend_from_slice(&[0xa1, b'v', 0xa0 | body.len() as u8]);
    v.extend_from_slice(body.as_bytes());
    v
}

const DAY: i64 = 86_400_000_000_000;
const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z

#[test]
fn single_treasures_by_key_and_time_window() {
    let hb = Hb::with_init(&["--mode", "logical"]);
    let src = hb.path("data");
    let f = src.join("7/ef/ef56.hyd");
    let rel = "7/ef/ef56.hyd";
    let mut first: Vec<Entry> = (0..200)
        .map(|i| {
            Entry::new(
                Op::Insert,
                format!("user-{i:03}"),
                treasure(T0 + (i % 10) * DAY, "first"),
            )
        })
        .collect();
    first.push(Entry::new(Op::Insert, "plain", b"not msgpack".to_vec()));
    write_swamp(&f, "app/users/all", &[first]);
    hb.backup(&src, &[]);
    // The key is updated, another deleted, then the Swamp is compacted.
    let mut w = HydWriter::open_append(&f).unwrap();
    w.append_block(&[
        Entry::new(
            Op::Update,
            "user-007",
            treasure(T0 + 20 * DAY, "second value"),
        ),
        Entry::new(Op::Delete, "user-008", ""),
    ])
    .unwrap();
    w.close(1, false).unwrap();
    hydrabackup::hyd::compact(&f, &mut hydrabackup::hyd::Rng::new(3), 2).unwrap();
    hb.backup(&src, &[]);

    // find: both values of the updated key, the deleted key only in the first snapshot.
    let v = hb.json(&["find", "--key", "user-00[78]"]);
    let found = v["found"].as_array().unwrap();
    assert_eq!(found.len(), 2, "{v:#}");
    let seen = |i: usize| found[i]["seen"].as_array().unwrap().clone();
    assert_eq!(found[0]["key"], "user-007");
    let s7 = seen(0);
    assert_eq!(s7.len(), 2);
    assert!(s7.iter().all(|s| s["changed"] == true), "{v:#}");
    assert_ne!(s7[0]["size"], s7[1]["size"]);
    assert_eq!(s7[1]["modified_ns"], T0 + 20 * DAY);
    assert_eq!(found[1]["key"], "user-008");
    assert_eq!(seen(1).len(), 1);
    assert_eq!(v["snapshots"], 2);
    // --snapshot narrows the key search as it does find PATTERN's; the two forms are one
    // subcommand, one of them required.
    let v = hb.json(&["find", "--key", "user-00[78]", "--snapshot", "latest"]);
    assert_eq!(v["snapshots"], 1, "{v:#}");
    assert_eq!(v["found"].as_array().unwrap().len(), 1, "{v:#}");
    let by_name = hb.json(&["find", "app/users/all"]);
    assert_eq!(by_name.as_array().unwrap().len(), 2, "{by_name:#}");
    let neither = hb.run(&["find"]);
    assert_ne!(neither.code, 0);
    assert!(neither.stderr.contains("--key"), "{}", neither.stderr);
    assert_ne!(hb.run(&["find", "x", "--key", "y"]).code, 0);

    // restore --key: a .hyd holding just those records; --raw: the value bytes.
    let out = hb.path("k");
    hb.restore(
        "latest",
        &out,
        &[
            "--swamp",
            "app/users/all",
            "--key",
            "user-007",
            "--key",
            "plain",
        ],
    );
    let r = replay_file(&out.join(rel)).unwrap();
    let keys: Vec<&[u8]> = r.live.keys().map(|k| &k[..]).collect();
    assert_eq!(keys, [&b"plain"[..], b"user-007"]);
    assert_eq!(
        r.live[&b"user-007".to_vec()],
        treasure(T0 + 20 * DAY, "second value")
    );
    let raw = raw_value(&hb, "latest", "user-007");
    assert_eq!(raw, treasure(T0 + 20 * DAY, "second value"));
    // The first snapshot still has the old value.
    let snaps = hb.json(&["snapshots"]);
    let first_id = snaps[0]["id"].as_str().unwrap().to_string();
    let raw = raw_value(&hb, &first_id, "user-007");
    assert_eq!(raw, treasure(T0 + 7 * DAY, "first"));
    // A key that is not there is "not found".
    hb.run(&[
        "restore",
        "latest",
        "--swamp",
        "app/users/all",
        "--key",
        "nope",
        "--raw",
    ])
    .expect(1);

    // Time window: modified in [T0+2d, T0+4d) → i % 10 in {2, 3}, 40 Treasures; "plain" has no time.
    let win = hb.path("w");
    hb.restore(
        "latest",
        &win,
        &[
            "--swamp",
            "app/users/*",
            "--modified-after",
            "2026-01-03T00:00:00Z",
            "--modified-before",
            "2026-01-05T00:00:00Z",
        ],
    );
    let r = replay_file(&win.join(rel)).unwrap();
    assert_eq!(r.live.len(), 40);
    assert!(r.live.keys().all(|k| {
        let i: i64 = std::str::from_utf8(&k[5..]).unwrap().parse().unwrap();
        (2..4).contains(&(i % 10))
    }));

    // show --keys: every key with its size and time.
    let v = hb.json(&["show", "latest", "--swamp", "app/users/all", "--keys"]);
    let keys = v["swamps"][0]["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 200, "200 users - 1 deleted + plain");
    let k7 = keys.iter().find(|k| k["key"] == "user-007").unwrap();
    assert_eq!(k7["modified_ns"], T0 + 20 * DAY);
    assert_eq!(k7["size"], treasure(T0 + 20 * DAY, "second value").len());
    let plain = keys.iter().find(|k| k["key"] == "plain").unwrap();
    assert!(plain["modified_ns"].is_null());
}

/// A copy of the latest snapshot whose Swamp `file` (at the root) claims another live-set
/// digest: what a damaged or forged record stream looks like. Made through the library.
fn craft_wrong_digest(hb: &Hb, file: &str) -> String {
    use hydrabackup::backend::{Backend, FileKind};
    use hydrabackup::repo::blob::{BlobType, seal_blob};
    use hydrabackup::repo::writer::PackWriter;
    let backend: std::sync::Arc<dyn Backend> =
        std::sync::Arc::from(hydrabackup::backend::open(hb.repo.to_str().unwrap()).unwrap());
    let repo = hydrabackup::repo::Repository::open(backend, PASSWORD.as_bytes()).unwrap();
    let index = repo.load_index().unwrap();
    let (_, mut snap) = repo.find_snapshot("latest").unwrap();
    let mut tree = repo.load_tree(&index, &snap.tree).unwrap();
    let node = tree
        .nodes
        .iter_mut()
        .find(|n| n.name == file.as_bytes())
        .expect("the file is at the root");
    let l = node
        .swamp
        .as_mut()
        .unwrap()
        .logical
        .as_mut()
        .expect("logical");
    l.digest ^= 1;
    let bytes = tree.encode();
    let id = repo.keys().blob_id(&bytes);
    let w = PackWriter::new(&repo, 1, false);
    w.sender()
        .send(seal_blob(repo.keys(), BlobType::Tree, id, &bytes, 0))
        .unwrap();
    w.finish(false).unwrap();
    snap.tree = id;
    snap.names = None;
    snap.time = "2030-01-01T00:00:00Z".into();
    repo.save_object(FileKind::Snapshot, &snap)
        .unwrap()
        .to_hex()
}

#[test]
fn a_record_stream_that_misses_its_digest_is_damage() {
    let hb = Hb::new();
    let src = hb.path("data");
    write_swamp(
        &src.join("s.hyd"),
        "s/r/digest",
        &[vec![
            Entry::new(Op::Insert, "a", "1"),
            Entry::new(Op::Insert, "b", "2"),
        ]],
    );
    hb.backup(&src, &["--mode", "logical"]);
    hb.run(&["verify", "--read-data"]).expect(0);
    let bad = craft_wrong_digest(&hb, "s.hyd");
    let out = hb.run(&["verify", "--read-data", "--json"]);
    out.expect(13);
    let v = out.json();
    let p: Vec<&serde_json::Value> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "swamp")
        .collect();
    assert_eq!(p.len(), 1, "{v:#}");
    assert!(p[0]["detail"].as_str().unwrap().contains("digest"), "{v:#}");
    // Restore gives up the Swamp as damaged and never renames it into place.
    let out_dir = hb.path("out");
    let r = hb.run(&[
        "restore",
        &bad,
        "--target",
        out_dir.to_str().unwrap(),
        "--json",
    ]);
    r.expect(13);
    assert!(!out_dir.join("s.hyd").exists());
    assert!(
        std::fs::read_dir(&out_dir).unwrap().next().is_none(),
        "no temporary left"
    );
}

#[test]
fn forget_prune_copy_and_restore_at_work_on_logical_snapshots() {
    let hb = Hb::with_init(&["--mode", "logical"]);
    let src = hb.path("data");
    gen_root(&src, 24, 25, "2M", 20, 0);
    hb.backup(&src, &["--time", "2026-03-01T00:00:00Z"]);
    let day1 = live_sets(&src);
    churn_root(
        &src,
        7,
        &["--append-percent", "40", "--compact-percent", "20"],
    )
    .expect(0);
    hb.backup(&src, &["--time", "2026-03-02T00:00:00Z"]);
    let day2 = live_sets(&src);
    assert_ne!(day1, day2);

    // restore --at picks the first day.
    let at = hb.path("at");
    hb.json(&[
        "restore",
        "--at",
        "2026-03-01T12:00:00Z",
        "--target",
        at.to_str().unwrap(),
    ]);
    assert_eq!(live_sets(&at), day1);

    // Forget the first day and prune: the second still restores and verifies whole.
    hb.run(&["forget", "--yes", "--keep-last", "1", "--prune"])
        .expect(0);
    hb.run(&["verify", "--read-data"]).expect(0);
    let out = hb.path("out");
    hb.restore("latest", &out, &[]);
    assert_eq!(live_sets(&out), day2);

    // copy to a repository with other keys: record groups and index pages get new ids.
    let other = Hb::new();
    let pw = hb.path("password");
    std::fs::write(&pw, PASSWORD).unwrap();
    let from = hb.repo.to_str().unwrap();
    other
        .run(&[
            "copy",
            "--from-repo",
            from,
            "--from-password-file",
            pw.to_str().unwrap(),
        ])
        .expect(0);
    other.run(&["verify", "--read-data"]).expect(0);
    let copied = other.path("copied");
    other.restore("latest", &copied, &[]);
    assert_eq!(live_sets(&copied), day2);
    let k = other.json(&["find", "--key", "*"]);
    assert!(!k["found"].as_array().unwrap().is_empty());
}
