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
}

#[test]
fn compaction_between_backups_stores_no_record_again() {
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
    assert_eq!(num(&b2, "data_blobs_added"), 0, "{b2:#}");

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
