//! Damaged `.hyd` files are quarantined: stored as their loadable prefix with their raw bytes
//! beside it (or raw only, without a valid header), reported (exit 3, JSON `quarantine` and
//! `source_errors`), listed by `show`, never silently dropped. A few trailing bytes of a block
//! header are not damage: HydrAIDE ignores them, and so does the capture.

mod hydcommon;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use hydcommon::*;
use hydrabackup::hyd::{Entry, HydWriter, Op, scan_bytes, scan_file};
use serde_json::Value;

/// A small generated root and the `.hyd` file (relative path) with the most blocks.
fn root_with_victim(hb: &Hb, seed: u64) -> (PathBuf, String) {
    let src = hb.path("data");
    gen_root(&src, seed, 12, "400K", 25, 0);
    let victim = swamps(&src)
        .into_values()
        .filter_map(|s| match s {
            Swamp::Hyd(p) => Some(p),
            Swamp::V1(..) => None,
        })
        .max_by_key(|p| scan_file(&src.join(p)).unwrap().blocks.len())
        .expect("a .hyd file");
    let blocks = scan_file(&src.join(&victim)).unwrap().blocks.len();
    assert!(
        blocks >= 2,
        "the victim should have several blocks, has {blocks}"
    );
    (src, victim)
}

fn entries_for<'a>(v: &'a Value, key: &str, abs: &Path) -> Vec<&'a Value> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} missing: {v:#}"))
        .iter()
        .filter(|e| e["path"].as_str() == abs.to_str())
        .collect()
}

/// Backs up a root holding one damaged file and checks everything a quarantine promises.
fn assert_quarantined(hb: &Hb, src: &Path, victim: &str, problem_hint: &str) {
    let abs = src.join(victim);
    let damaged = fs::read(&abs).unwrap();
    let expected = read_files(src);
    let out = hb.backup_any(src, &[]);
    out.expect(3);
    let b = out.json();
    let snap = b["snapshot_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no snapshot written: {b:#}"))
        .to_string();
    assert_eq!(num(&b, "swamps_quarantined"), 1, "{b:#}");
    let q = entries_for(&b, "quarantine", &abs);
    assert_eq!(q.len(), 1, "{victim} not in the quarantine list: {b:#}");
    assert_eq!(q[0]["decision"], "quarantined");
    let reason = q[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains(problem_hint),
        "reason {reason:?} should mention {problem_hint:?}"
    );
    assert_eq!(
        b["quarantine"].as_array().unwrap().len(),
        1,
        "only the damaged file is quarantined: {b:#}"
    );
    assert_eq!(
        entries_for(&b, "source_errors", &abs).len(),
        1,
        "{victim} not in source_errors: {b:#}"
    );

    let rows = hb.show(&snap);
    let row = rows
        .get(victim)
        .unwrap_or_else(|| panic!("show does not list {victim}"));
    assert_eq!(row["decision"], "quarantined", "{row}");
    let problem = row["problem"].as_str().unwrap_or("");
    assert!(!problem.is_empty(), "no problem text: {row}");
    assert_eq!(
        rows.values()
            .filter(|r| r["decision"] == "quarantined")
            .count(),
        1
    );

    // With a valid header, a restore gives the loadable prefix (the complete blocks before the
    // damage); without one, the bytes as they were. Everything else comes back as it was.
    let target = hb.path("restored");
    hb.restore(&snap, &target, &[]);
    let restored = fs::read(target.join(victim)).unwrap();
    if scan_bytes(&damaged).header.is_some() {
        let s = scan_bytes(&damaged);
        assert_eq!(restored.len() as u64, s.valid_len);
        assert_eq!(restored[64..], damaged[64..s.valid_len as usize]);
        hydrabackup::hyd::replay_file(&target.join(victim)).unwrap();
    } else {
        assert_eq!(restored, damaged);
    }
    let mut others = read_files(&target);
    others.remove(victim);
    let mut rest = expected.clone();
    rest.remove(victim);
    assert_same_content(&rest, &others);
    // The bytes as they were are kept: `--raw-quarantined` restores them.
    let raw = hb.path("restored-raw");
    hb.restore(&snap, &raw, &["--raw-quarantined"]);
    assert_eq!(fs::read(raw.join(victim)).unwrap(), damaged);
    assert_same_content(&expected, &read_files(&raw));
}

#[test]
fn bad_magic_is_quarantined() {
    let hb = Hb::new();
    let (src, victim) = root_with_victim(&hb, 31);
    let p = src.join(&victim);
    let mut bytes = fs::read(&p).unwrap();
    bytes[..4].copy_from_slice(b"XYZW");
    fs::write(&p, &bytes).unwrap();
    assert_quarantined(&hb, &src, &victim, "not a loadable .hyd file");
}

#[test]
fn crc_mismatch_before_the_last_block_is_quarantined() {
    let hb = Hb::new();
    let (src, victim) = root_with_victim(&hb, 32);
    let p = src.join(&victim);
    let scan = scan_file(&p).unwrap();
    let first = &scan.blocks[0];
    let mut bytes = fs::read(&p).unwrap();
    // A byte in the middle of the first block's payload.
    let at = (first.offset + 16 + (first.len - 16) / 2) as usize;
    bytes[at] ^= 0x5a;
    fs::write(&p, &bytes).unwrap();
    assert_quarantined(&hb, &src, &victim, "damaged before its tail");
}

#[test]
fn torn_tail_that_stays_torn_is_quarantined() {
    let hb = Hb::new();
    let (src, victim) = root_with_victim(&hb, 33);
    let p = src.join(&victim);
    let scan = scan_file(&p).unwrap();
    let last = scan.blocks.last().unwrap();
    assert_eq!(last.end(), fs::metadata(&p).unwrap().len());
    // Cut in the middle of the last block's payload.
    let cut = last.offset + 16 + (last.len - 16) / 2;
    fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(cut)
        .unwrap();
    assert_quarantined(&hb, &src, &victim, "torn tail");
}

#[test]
fn file_shorter_than_a_header_is_quarantined() {
    let hb = Hb::new();
    let (src, victim) = root_with_victim(&hb, 34);
    let p = src.join(&victim);
    let bytes = fs::read(&p).unwrap();
    fs::write(&p, &bytes[..40]).unwrap();
    assert_quarantined(&hb, &src, &victim, "shorter than a .hyd header");
}

#[test]
fn unreadable_file_is_reported() {
    // Root reads any file whatever its permission bits: run the binary as `nobody` then.
    let hb = if is_root() {
        Hb::unprivileged()
            .expect("running as root, this test needs to run the binary as nobody and cannot")
    } else {
        Hb::new()
    };
    let (src, victim) = root_with_victim(&hb, 35);
    let p = src.join(&victim);
    fs::set_permissions(&p, fs::Permissions::from_mode(0o000)).unwrap();
    let out = hb.backup_any(&src, &[]);
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    out.expect(3);
    let b = out.json();
    let snap = b["snapshot_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no snapshot written: {b:#}"))
        .to_string();
    let errs = entries_for(&b, "source_errors", &p);
    assert_eq!(errs.len(), 1, "{victim} not in source_errors: {b:#}");
    assert!(
        errs[0]["error"]
            .as_str()
            .is_some_and(|e| e.to_lowercase().contains("permission")),
        "{errs:?}"
    );
    // It is in the quarantine report too, as not stored.
    let q = entries_for(&b, "quarantine", &p);
    assert_eq!(q.len(), 1, "{victim} not in quarantine: {b:#}");
    assert!(
        q[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not stored")),
        "{q:?}"
    );
    assert_eq!(num(&b, "swamps_quarantined"), 1, "{b:#}");
    // Nothing pretends to be its content; every other file is restorable.
    let target = hb.path("restored");
    hb.restore(&snap, &target, &[]);
    let mut expected = read_files(&src);
    expected.remove(&victim);
    assert_same_content(&expected, &read_files(&target));
}

#[test]
fn partial_block_header_at_eof_is_not_quarantined() {
    let hb = Hb::new();
    let (src, victim) = root_with_victim(&hb, 36);
    let p = src.join(&victim);
    let clean = fs::read(&p).unwrap();
    let mut bytes = clean.clone();
    bytes.extend_from_slice(&[0x11; 7]);
    fs::write(&p, &bytes).unwrap();

    let b = hb.backup(&src, &[]);
    assert_eq!(num(&b, "swamps_quarantined"), 0, "{b:#}");
    assert_eq!(b["quarantine"].as_array().map(Vec::len), Some(0), "{b:#}");
    assert_eq!(
        b["source_errors"].as_array().map(Vec::len),
        Some(0),
        "{b:#}"
    );
    let rows = hb.show("latest");
    assert_eq!(rows[&victim]["decision"], "new", "{}", rows[&victim]);
    assert_eq!(rows[&victim]["size"].as_u64(), Some(clean.len() as u64));

    // The stored copy is the loadable prefix: the file without the stray bytes.
    let target = hb.path("restored");
    hb.restore("latest", &target, &[]);
    let restored = fs::read(target.join(&victim)).unwrap();
    assert_eq!(restored.len(), clean.len());
    assert_eq!(restored, clean);
    hydrabackup::hyd::replay_file(&target.join(&victim)).unwrap();

    // Nothing changed since: nothing is read again (the stray bytes are not a new block).
    let again = hb.backup(&src, &[]);
    assert_eq!(num(&again, "files_read"), 0, "{again:#}");
    assert_eq!(num(&again, "bytes_read"), 0, "{again:#}");
    assert_eq!(num(&again, "swamps_appended"), 0, "{again:#}");

    // The writer goes on from the end of the loadable data (over the stray bytes): the next
    // backup reads only the new blocks.
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .unwrap();
    let mut w = HydWriter::resume_in(f, &scan_bytes(&clean)).unwrap();
    for i in 0..2u8 {
        w.append_block(&[Entry::new(Op::Insert, vec![b'k', i], vec![i; 3000])])
            .unwrap();
    }
    w.finish(1_800_000_000_000_000_000).unwrap();
    let grown = fs::read(&p).unwrap();
    let added = (grown.len() - clean.len()) as u64;
    let b = hb.backup(&src, &[]);
    assert_eq!(num(&b, "swamps_appended"), 1, "{b:#}");
    assert!(num(&b, "bytes_read") < 2 * added, "{b:#}");
    let target = hb.path("restored2");
    hb.restore("latest", &target, &[]);
    assert_eq!(fs::read(target.join(&victim)).unwrap(), grown);
}

#[test]
fn a_swamp_that_stays_broken_is_reported_by_every_backup() {
    let hb = Hb::new();
    let (src, victim) = root_with_victim(&hb, 37);
    let p = src.join(&victim);
    let clean = fs::read(&p).unwrap();
    let mut bytes = clean.clone();
    bytes[..4].copy_from_slice(b"XYZW");
    fs::write(&p, &bytes).unwrap();
    hb.backup_any(&src, &[]).expect(3);

    // Nothing changed since: the file is still broken, and the next backup says so.
    let out = hb.backup_any(&src, &[]);
    let b = out.json();
    assert_eq!(
        entries_for(&b, "quarantine", &p).len(),
        1,
        "the second backup does not report {victim}: {b:#}"
    );
    out.expect(3);
    assert_eq!(num(&b, "swamps_quarantined"), 1, "{b:#}");
    // The snapshot's catalogue agrees with its Swamp rows.
    let snaps = hb.json(&["snapshots"]);
    let last = snaps.as_array().unwrap().last().unwrap();
    assert_eq!(last["catalogue"]["quarantined"], 1, "{last:#}");
    assert_eq!(hb.show("latest")[&victim]["decision"], "quarantined");
    let target = hb.path("restored");
    hb.restore("latest", &target, &[]);
    assert_eq!(fs::read(target.join(&victim)).unwrap(), bytes);

    // Repaired: a consistent copy again, nothing to report.
    fs::write(&p, &clean).unwrap();
    let b = hb.backup(&src, &[]);
    assert_eq!(num(&b, "swamps_quarantined"), 0, "{b:#}");
    assert_eq!(hb.show("latest")[&victim]["decision"], "rewritten");
    let target = hb.path("restored2");
    hb.restore("latest", &target, &[]);
    assert_eq!(fs::read(target.join(&victim)).unwrap(), clean);
}
