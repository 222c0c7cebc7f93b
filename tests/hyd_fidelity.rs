//! HydrAIDE capture fidelity: what is stored for a Swamp is what HydrAIDE itself would load.
//! A tail that stays torn still gives a loadable Swamp (raw bytes kept beside it); entries are
//! parsed, not only CRCs checked; a Treasure over 512 MiB is no damage; a version-2 name is found
//! in any block; `modified` is the last write; `hydraidectl` temporaries are skipped.

mod hydcommon;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use hydcommon::*;
use hydrabackup::hyd::{
    Entry, FileHeader, HydWriter, Op, consistent_header, replay_file, scan_bytes, scan_file,
};
use serde_json::Value;

/// Runs a `hydgen` edge-case writer (`latemeta`, `emptykey`, `bigentry`) for `name` under
/// `root`; returns the path of the file it wrote.
fn hydgen_edge(cmd: &str, root: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let mut a: Vec<&OsStr> = vec![
        cmd.as_ref(),
        "--root".as_ref(),
        root.as_os_str(),
        "--name".as_ref(),
        name.as_ref(),
    ];
    a.extend(extra.iter().map(OsStr::new));
    let o = hydgen(&a);
    o.expect(0);
    PathBuf::from(o.stdout.trim())
}

/// The `.hyd` file (relative path) with the most blocks under `src`.
fn biggest_hyd(src: &Path) -> String {
    swamps(src)
        .into_values()
        .filter_map(|s| match s {
            Swamp::Hyd(p) => Some(p),
            Swamp::V1(..) => None,
        })
        .max_by_key(|p| scan_file(&src.join(p)).unwrap().blocks.len())
        .expect("a .hyd file")
}

fn quarantine_of<'a>(b: &'a Value, abs: &Path) -> Vec<&'a Value> {
    b["quarantine"]
        .as_array()
        .unwrap_or_else(|| panic!("no quarantine list: {b:#}"))
        .iter()
        .filter(|e| e["path"].as_str() == abs.to_str())
        .collect()
}

/// Backs `src` up expecting exactly `victim` (relative path) to be quarantined with a reason
/// containing `hint`; checks that a restore gives the loadable prefix `prefix` (and every other
/// file as it is), and `restore --raw-quarantined` the bytes that were on disk. Returns the
/// snapshot id.
fn assert_prefix_and_raw(hb: &Hb, src: &Path, victim: &str, hint: &str, prefix: &[u8]) -> String {
    let abs = src.join(victim);
    let on_disk = fs::read(&abs).unwrap();
    assert_ne!(on_disk, prefix);
    let out = hb.backup_any(src, &[]);
    out.expect(3);
    let b = out.json();
    assert_eq!(num(&b, "swamps_quarantined"), 1, "{b:#}");
    let q = quarantine_of(&b, &abs);
    assert_eq!(q.len(), 1, "{victim} not quarantined: {b:#}");
    let reason = q[0]["reason"].as_str().unwrap();
    assert!(reason.contains(hint), "reason {reason:?} lacks {hint:?}");
    let snap = b["snapshot_id"].as_str().unwrap().to_string();
    let row = &hb.show(&snap)[victim];
    assert_eq!(row["decision"], "quarantined", "{row}");
    assert_eq!(row["size"].as_u64(), Some(prefix.len() as u64), "{row}");

    let mut expected = read_files(src);
    let target = hb.path(&format!("restored-{snap}"));
    hb.restore(&snap, &target, &[]);
    let restored = fs::read(target.join(victim)).unwrap();
    assert!(restored == prefix, "the restore is not the loadable prefix");
    let r = replay_file(&target.join(victim)).unwrap_or_else(|e| panic!("does not load: {e}"));
    assert!(!r.live.is_empty());
    expected.remove(victim);
    let mut others = read_files(&target);
    others.remove(victim);
    assert_same_content(&expected, &others);

    let raw = hb.path(&format!("raw-{snap}"));
    hb.restore(&snap, &raw, &["--raw-quarantined"]);
    assert!(
        fs::read(raw.join(victim)).unwrap() == on_disk,
        "raw bytes differ"
    );
    let mut others = read_files(&raw);
    others.remove(victim);
    assert_same_content(&expected, &others);
    snap
}

/// The bytes of `file` as a loadable copy of its first `len` bytes (header counts fixed).
fn loadable_prefix(file: &[u8], len: u64) -> Vec<u8> {
    let s = scan_bytes(&file[..len as usize]);
    assert!(s.is_clean());
    let mut p = file[..len as usize].to_vec();
    p[..64].copy_from_slice(&consistent_header(&s).unwrap());
    p
}

#[test]
fn a_tail_that_stays_torn_is_stored_as_its_loadable_prefix_with_the_raw_bytes_beside_it() {
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 51, 12, "400K", 25, 0);
    let victim = biggest_hyd(&src);
    let abs = src.join(&victim);
    let clean = fs::read(&abs).unwrap();
    // A stalled writer: half a block appended, never completed.
    hydgen(&["stall".as_ref(), "--file".as_ref(), abs.as_os_str()] as &[&OsStr]).expect(0);
    assert!(
        scan_file(&abs)
            .unwrap()
            .problem
            .is_some_and(|p| p.is_tail())
    );
    let prefix = loadable_prefix(&clean, clean.len() as u64);
    assert_prefix_and_raw(&hb, &src, &victim, "torn tail", &prefix);

    // The raw bytes are referenced by the snapshot: prune keeps them, verify reads them.
    hb.run(&["prune", "--yes", "--instant-delete"]).expect(0);
    hb.run(&["verify", "--read-data"]).expect(0);
    let raw = hb.path("raw-after-prune");
    hb.restore("latest", &raw, &["--raw-quarantined"]);
    assert_eq!(
        fs::read(raw.join(&victim)).unwrap(),
        fs::read(&abs).unwrap()
    );

    // `copy` to another repository (other keys, other blob ids) takes the raw bytes along.
    let other = Hb::new();
    let pw = hb.path("password");
    fs::write(&pw, PASSWORD).unwrap();
    other
        .run(&[
            "copy".as_ref(),
            "--from-repo".as_ref(),
            hb.repo.as_os_str(),
            "--from-password-file".as_ref(),
            pw.as_os_str(),
        ] as &[&OsStr])
        .expect(0);
    other.run(&["verify", "--read-data"]).expect(0);
    let copied = other.path("raw-copied");
    other.restore("latest", &copied, &["--raw-quarantined"]);
    assert_eq!(
        fs::read(copied.join(&victim)).unwrap(),
        fs::read(&abs).unwrap()
    );

    // Still stalled at the next backup: reported again, never hidden behind "unchanged".
    let out = hb.backup_any(&src, &[]);
    out.expect(3);
    assert_eq!(quarantine_of(&out.json(), &abs).len(), 1);
}

#[test]
fn damage_before_the_tail_keeps_the_blocks_before_it_loadable() {
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 52, 12, "400K", 25, 0);
    let victim = biggest_hyd(&src);
    let abs = src.join(&victim);
    let mut bytes = fs::read(&abs).unwrap();
    let s = scan_bytes(&bytes);
    assert!(s.blocks.len() >= 3, "{} blocks", s.blocks.len());
    let second = s.blocks[1];
    bytes[(second.offset + 20) as usize] ^= 0x5a;
    fs::write(&abs, &bytes).unwrap();
    let prefix = loadable_prefix(&bytes, second.offset);
    assert_prefix_and_raw(&hb, &src, &victim, "damaged before its tail", &prefix);
}

#[test]
fn an_entry_with_an_empty_key_is_quarantined_and_the_blocks_before_it_restore() {
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 53, 10, "300K", 20, 0);
    let abs = hydgen_edge("emptykey", &src, "shop/orders/empty-key", &[]);
    let victim = rel(&src, &abs);
    let bytes = fs::read(&abs).unwrap();
    // Every CRC holds; only parsing the entries shows what HydrAIDE's reader refuses.
    assert!(scan_bytes(&bytes).is_clean());
    assert!(replay_file(&abs).is_err());
    let first = scan_bytes(&bytes).blocks[0];
    let prefix = loadable_prefix(&bytes, first.end());
    assert_prefix_and_raw(&hb, &src, &victim, "empty key", &prefix);

    // `verify --read-data` parses the entries of stored Swamps too: all stored copies load.
    hb.run(&["verify", "--read-data"]).expect(0);
}

#[test]
fn a_treasure_over_512_mib_is_captured_streamed_and_restored() {
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 54, 6, "200K", 0, 0);
    let t = Instant::now();
    let abs = hydgen_edge("bigentry", &src, "media/videos/huge", &["--size", "600M"]);
    eprintln!("hydgen bigentry: {:.1}s", t.elapsed().as_secs_f64());
    let victim = rel(&src, &abs);
    let on_disk = fs::read(&abs).unwrap();
    let s = scan_bytes(&on_disk);
    assert!(s.is_clean());
    assert!(s.blocks.iter().any(|b| b.uncompressed_size > 600 << 20));

    let t = Instant::now();
    let b = hb.backup(&src, &[]);
    eprintln!("backup: {:.1}s", t.elapsed().as_secs_f64());
    assert_eq!(num(&b, "swamps_quarantined"), 0, "{b:#}");
    let rows = hb.show("latest");
    assert_eq!(rows[&victim]["decision"], "new", "{}", rows[&victim]);
    assert_eq!(rows[&victim]["name"], "media/videos/huge");
    let target = hb.path("restored");
    hb.restore("latest", &target, &[]);
    assert!(fs::read(target.join(&victim)).unwrap() == on_disk);
    assert_same_content(&read_files(&src), &read_files(&target));

    // Unchanged: not read again. Grown by a block: only the new block is read.
    let again = hb.backup(&src, &[]);
    assert_eq!(num(&again, "bytes_read"), 0, "{again:#}");
    let mut w = HydWriter::open_append(&abs).unwrap();
    w.append_block(&[Entry::new(Op::Insert, "after-the-big-one", vec![9u8; 5000])])
        .unwrap();
    let modified = FileHeader::decode(&on_disk).unwrap().modified_at;
    w.close(modified, false).unwrap();
    let b = hb.backup(&src, &[]);
    assert_eq!(num(&b, "swamps_appended"), 1, "{b:#}");
    assert!(num(&b, "bytes_read") < 64 << 10, "{b:#}");
}

#[test]
fn a_version_2_name_in_a_later_block_names_the_swamp() {
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 55, 10, "300K", 50, 0);
    let name = "crm/contacts/late-meta";
    let abs = hydgen_edge("latemeta", &src, name, &[]);
    let victim = rel(&src, &abs);
    assert_eq!(replay_file(&abs).unwrap().name.as_deref(), Some(name));
    hb.backup(&src, &[]);
    assert_eq!(hb.show("latest")[&victim]["name"], name);
    let target = hb.path("by-name");
    let r = hb.restore("latest", &target, &["--swamp", name]);
    assert_eq!(r["files"], 1, "{r:#}");
    assert_eq!(files_below(&target), vec![victim.clone()]);
    assert_eq!(
        fs::read(target.join(&victim)).unwrap(),
        fs::read(&abs).unwrap()
    );
}

fn mtime_ns(p: &Path) -> i64 {
    let md = fs::metadata(p).unwrap();
    md.mtime() * 1_000_000_000 + md.mtime_nsec()
}

#[test]
fn modified_is_the_last_write_and_created_the_header_time() {
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 56, 10, "300K", 30, 0);
    let victim = biggest_hyd(&src);
    let abs = src.join(&victim);
    // A write as HydrAIDE makes it: a block appended, the header's ModifiedAt left alone.
    let header = FileHeader::decode(&fs::read(&abs).unwrap()).unwrap();
    let mut w = HydWriter::open_append(&abs).unwrap();
    w.append_block(&[Entry::new(Op::Insert, "fresh", vec![1u8; 300])])
        .unwrap();
    w.close(header.modified_at, false).unwrap();
    assert_ne!(mtime_ns(&abs), header.modified_at);

    hb.backup(&src, &[]);
    let rows = hb.show("latest");
    let mut newest = i64::MIN;
    for (p, row) in &rows {
        let h = FileHeader::decode(&fs::read(src.join(p)).unwrap()).unwrap();
        assert_eq!(row["created_ns"].as_i64(), Some(h.created_at), "{p}: {row}");
        assert_eq!(
            row["modified_ns"].as_i64(),
            Some(mtime_ns(&src.join(p))),
            "{p}: {row}"
        );
        newest = newest.max(mtime_ns(&src.join(p)));
    }
    let snaps = hb.json(&["snapshots"]);
    let cat = &snaps.as_array().unwrap().last().unwrap()["catalogue"];
    assert_eq!(cat["newest_ns"].as_i64(), Some(newest), "{cat:#}");
}

#[test]
fn format_migration_temporaries_are_skipped_with_a_decision_line() {
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 57, 8, "200K", 0, 0);
    let victim = biggest_hyd(&src);
    let expected = read_files(&src);
    let temp = src.join(format!("{victim}.fmtmigrate"));
    fs::copy(src.join(&victim), &temp).unwrap();

    let dry = hb.backup(&src, &["--dry-run"]);
    let lines: Vec<&Value> = dry["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["path"].as_str() == temp.to_str())
        .collect();
    assert_eq!(lines.len(), 1, "{dry:#}");
    assert_eq!(lines[0]["decision"], "skipped");
    assert!(
        lines[0]["reason"]
            .as_str()
            .unwrap()
            .contains("format migration")
    );

    let b = hb.backup(&src, &[]);
    assert_eq!(num(&b, "errors"), 0, "{b:#}");
    let target = hb.path("restored");
    hb.restore("latest", &target, &[]);
    assert_same_content(&expected, &read_files(&target));
}

#[test]
fn a_stale_header_is_restored_with_corrected_counts_and_the_same_blocks() {
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 58, 8, "200K", 0, 0);
    let victim = biggest_hyd(&src);
    let abs = src.join(&victim);
    let clean = fs::read(&abs).unwrap();
    // The header as HydrAIDE leaves it when the process dies between block and header write.
    let mut stale = clean.clone();
    let mut h = FileHeader::decode(&stale).unwrap();
    h.block_count -= 1;
    h.entry_count -= 1;
    stale[..64].copy_from_slice(&h.encode());
    fs::write(&abs, &stale).unwrap();
    let b = hb.backup(&src, &[]);
    assert_eq!(num(&b, "swamps_quarantined"), 0, "{b:#}");
    let target = hb.path("restored");
    hb.restore("latest", &target, &[]);
    let restored = fs::read(target.join(&victim)).unwrap();
    assert_eq!(
        restored, clean,
        "counts corrected, everything else as on disk"
    );
    assert_eq!(restored[64..], stale[64..]);
}

/// A snapshot as an older hydrabackup (which checked CRCs only) could have written it: the
/// Swamp `file` (at the root of the latest snapshot) stored as healthy with its raw bytes as
/// content. Made through the library, from the raw blobs of its quarantined capture.
fn craft_healthy_copy_of_raw(hb: &Hb, file: &str) -> String {
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
    let s = node.swamp.as_mut().expect("swamp facts");
    assert!(!s.raw.is_empty(), "the quarantined capture kept raw bytes");
    node.content = std::mem::take(&mut s.raw);
    node.size = std::mem::take(&mut s.raw_size);
    s.problem = None;
    s.decision = hydrabackup::repo::tree::Decision::New;
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
fn verify_read_data_finds_a_stored_swamp_that_would_not_load() {
    let hb = Hb::new();
    let src = hb.path("data");
    fs::create_dir_all(&src).unwrap();
    let elsewhere = hb.path("gen");
    let abs = hydgen_edge("emptykey", &elsewhere, "shop/orders/empty-key", &[]);
    fs::copy(&abs, src.join("direct.hyd")).unwrap();
    hb.backup_any(&src, &[]).expect(3);
    // What is stored (the loadable prefix) loads.
    hb.run(&["verify", "--read-data"]).expect(0);

    let bad = craft_healthy_copy_of_raw(&hb, "direct.hyd");
    let out = hb.run(&["verify", "--read-data", "--json"]);
    out.expect(13);
    let v = out.json();
    let found: Vec<&Value> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "swamp")
        .collect();
    assert_eq!(found.len(), 1, "{v:#}");
    assert!(
        found[0]["detail"].as_str().unwrap().contains("empty key"),
        "{v:#}"
    );
    assert_eq!(found[0]["affected"][0]["path"], "direct.hyd");
    assert_eq!(found[0]["affected"][0]["snapshot"], bad[..8]);
    // Structure alone does not read data, so it finds nothing.
    hb.run(&["verify"]).expect(0);
}
