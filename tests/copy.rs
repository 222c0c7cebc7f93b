//! `copy`: snapshots move to a second repository with everything they use, restore there byte
//! for byte, are never copied twice, and damaged source data is never copied.

mod hydcommon;

use std::fs;
use std::path::PathBuf;

use hydcommon::*;
use serde_json::Value;

/// The arguments naming `a` as the source repository.
fn from(a: &Hb) -> Vec<String> {
    let pw = a.path("password");
    fs::write(&pw, PASSWORD).unwrap();
    vec![
        "--from-repo".into(),
        a.repo.to_str().unwrap().into(),
        "--from-password-file".into(),
        pw.to_str().unwrap().into(),
    ]
}

fn copy(b: &Hb, a: &Hb, extra: &[&str]) -> Value {
    let mut args: Vec<String> = vec!["copy".into()];
    args.extend(from(a));
    args.extend(extra.iter().map(|s| s.to_string()));
    b.json(&args)
}

fn copied_targets(c: &Value) -> Vec<String> {
    c["copied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["target"].as_str().unwrap().to_string())
        .collect()
}

fn verify_all(hb: &Hb) {
    let v = hb.json(&["verify", "--read-data"]);
    assert_eq!(v["ok"], true, "{v:#}");
}

fn one_swamp_name(hb: &Hb) -> String {
    hb.show("latest")
        .values()
        .find(|r| r["format"] == 3)
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn copy_with_shared_params_moves_only_missing_blobs() {
    let a = Hb::new();
    let src = a.path("data");
    gen_root(&src, 51, 120, "3M", 10, 8);
    a.backup(&src, &[]);
    let captured1 = read_files(&src);
    churn_root(&src, 52, &[]);
    a.backup(&src, &[]);
    let captured2 = read_files(&src);

    let mut init: Vec<String> = vec!["--copy-params".into()];
    init.extend(from(&a));
    let b = Hb::with_init(&init.iter().map(String::as_str).collect::<Vec<_>>());
    let c = copy(&b, &a, &[]);
    assert_eq!(c["same_ids"], true, "{c:#}");
    let targets = copied_targets(&c);
    assert_eq!(targets.len(), 2, "{c:#}");
    verify_all(&b);
    for (t, captured) in targets.iter().zip([&captured1, &captured2]) {
        let out = b.path(&format!("out-{t}"));
        b.restore(t, &out, &[]);
        assert_same_content(captured, &read_files(&out));
    }
    // The name index came along: restore by name works in the copy.
    let name = one_swamp_name(&b);
    let one = b.path("one");
    let r = b.restore("latest", &one, &["--swamp", &name]);
    assert_eq!(num(&r, "files"), 1, "{r:#}");

    // Copying again copies nothing and reads nothing.
    let again = copy(&b, &a, &[]);
    assert_eq!(again["copied"].as_array().unwrap().len(), 0, "{again:#}");
    assert_eq!(again["already_there"], 2);
    assert_eq!(again["bytes_read"], 0);

    // A new snapshot: exactly the blobs its backup added are copied, and its parent is the
    // copy of its parent.
    churn_root(&src, 53, &[]);
    let s3 = a.backup(&src, &[]);
    let dry = copy(&b, &a, &["--dry-run"]);
    assert_eq!(dry["copied"][0]["target"], Value::Null, "{dry:#}");
    let c3 = copy(&b, &a, &[]);
    assert_eq!(c3["copied"].as_array().unwrap().len(), 1, "{c3:#}");
    assert_eq!(
        c3["data_blobs_added"], s3["data_blobs_added"],
        "{c3:#} vs {s3:#}"
    );
    assert_eq!(c3["data_blobs_added"], dry["data_blobs_added"]);
    let snaps = b.json(&["snapshots"]);
    let newest = snaps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == c3["copied"][0]["target"])
        .unwrap();
    assert_eq!(
        newest["parent"].as_str(),
        Some(targets[1].as_str()),
        "{snaps:#}"
    );
    verify_all(&b);
    let out = b.path("out-3");
    b.restore("latest", &out, &[]);
    assert_same_content(&read_files(&src), &read_files(&out));
}

#[test]
fn copy_between_unrelated_repositories_rewrites_ids() {
    let a = Hb::new();
    let src = a.path("data");
    gen_root(&src, 54, 80, "2M", 10, 8);
    a.backup(&src, &[]);
    let b = Hb::with_init(&["--chunk-avg", "256"]);
    let c = copy(&b, &a, &["latest"]);
    assert_eq!(c["same_ids"], false, "{c:#}");
    assert_eq!(copied_targets(&c).len(), 1);
    verify_all(&b);
    let out = b.path("out");
    b.restore("latest", &out, &[]);
    assert_same_content(&read_files(&src), &read_files(&out));
    let name = one_swamp_name(&b);
    let r = b.restore("latest", &b.path("one"), &["--swamp", &name]);
    assert_eq!(num(&r, "files"), 1, "{r:#}");
    // The catalogue is the same on both sides.
    assert_eq!(a.show("latest"), b.show("latest"));
    let again = copy(&b, &a, &[]);
    assert_eq!(again["copied"].as_array().unwrap().len(), 0, "{again:#}");
}

fn first_pack(repo: &std::path::Path) -> PathBuf {
    let mut packs: Vec<PathBuf> = files_below(&repo.join("data"))
        .into_iter()
        .map(|r| repo.join("data").join(r))
        .collect();
    packs.sort_by_key(|p| std::cmp::Reverse(fs::metadata(p).unwrap().len()));
    packs.remove(0)
}

#[test]
fn copy_refuses_bad_sources_and_never_copies_damage() {
    let a = Hb::new();
    let src = a.path("data");
    gen_root(&src, 55, 40, "2M", 0, 0);
    a.backup(&src, &[]);
    let b = Hb::new();

    // Wrong source password: exit 12, one line.
    let pw = a.path("wrong");
    fs::write(&pw, "not it").unwrap();
    let r = b.run(&[
        "copy",
        "--from-repo",
        a.repo.to_str().unwrap(),
        "--from-password-file",
        pw.to_str().unwrap(),
    ]);
    r.expect(12);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    // No source repository: exit 10.
    let mut args = from(&a);
    args[1] = a.path("nowhere").to_str().unwrap().into();
    let mut full = vec!["copy".to_string()];
    full.extend(args);
    b.run(&full).expect(10);
    // Into itself: refused.
    let mut full = vec!["copy".to_string()];
    full.extend(from(&a));
    let r = a.run(&full);
    r.expect(1);
    assert!(r.stderr.contains("same repository"), "{}", r.stderr);

    // A flipped bit in the source's largest (data) pack: the copy stops, exit 13, and the
    // destination gets no snapshot and still verifies.
    let pack = first_pack(&a.repo);
    let mut bytes = fs::read(&pack).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    fs::write(&pack, bytes).unwrap();
    let mut full = vec!["copy".to_string()];
    full.extend(from(&a));
    let r = b.run(&full);
    r.expect(13);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert_eq!(b.json(&["snapshots"]).as_array().unwrap().len(), 0);
    verify_all(&b);
}
