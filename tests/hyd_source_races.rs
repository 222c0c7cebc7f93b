//! Swamps changing under a running backup. A Swamp destroyed meanwhile (HydrAIDE deletes its
//! file, then the folders left empty) is gone, not a failure: counted, listed, in the decision
//! log, and the run exits 0. Changes happen at exact instants through the
//! `HYDRABACKUP_TEST_HOOK` hook points.

mod hydcommon;

use std::ffi::OsStr;
use std::path::Path;

use hydcommon::*;
use serde_json::Value;

/// A hook command that destroys the Swamp at `swamp` (under `root`) with `hydgen destroy` when
/// the hook point is reached for `at`.
fn destroy_when_at(at: &Path, root: &Path, swamp: &Path) -> String {
    format!(
        "[ \"$HYDRABACKUP_HOOK_PATH\" = '{}' ] && '{}' destroy --root '{}' --path '{}' >/dev/null; true",
        at.display(),
        hydgen_bin().display(),
        root.display(),
        swamp.display()
    )
}

/// `backup --json EXTRA... ROOT` with `HYDRABACKUP_TEST_HOOK=<point>:<cmd>`.
fn backup_with_hook(hb: &Hb, root: &Path, hook: &str, extra: &[&str]) -> Out {
    let mut c = hb.command();
    c.env("HYDRABACKUP_TEST_HOOK", hook)
        .args(["backup", "--json"])
        .args(extra)
        .arg(root);
    run_command(c)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn hydgen_destroy_removes_the_swamp_and_the_folders_left_empty() {
    let hb = Hb::new();
    let root = hb.path("data");
    gen_root(&root, 91, 12, "1M", 0, 0);
    let (rel, name) = swamp_names(&root).into_iter().next().unwrap();
    let file = root.join(&rel);
    let island = root.join(rel.split('/').next().unwrap());
    let others_in_island = swamps(&root)
        .keys()
        .filter(|p| p.starts_with(&format!("{}/", island.file_name().unwrap().display())))
        .count()
        - 1;
    hydgen(&[
        "destroy".as_ref(),
        "--root".as_ref(),
        root.as_os_str(),
        "--swamp".as_ref(),
        name.as_ref(),
    ] as &[&OsStr])
    .expect(0);
    assert!(!file.exists());
    assert!(!file.parent().unwrap().exists(), "its empty folder stays");
    assert_eq!(island.exists(), others_in_island > 0);
    assert!(root.exists());
    assert_eq!(swamps(&root).len(), 11);
    assert_hydgen_check(&root);
}

#[test]
fn swamps_destroyed_during_a_backup_are_gone_not_failures() {
    let hb = Hb::new();
    let root = hb.path("data");
    gen_root(&root, 92, 40, "2M", 20, 20);
    let all = swamps(&root);
    let hyd = all
        .values()
        .find(|s| matches!(s, Swamp::Hyd(_)))
        .unwrap()
        .path()
        .to_string();
    let v1 = all
        .values()
        .find(|s| matches!(s, Swamp::V1(..)))
        .unwrap()
        .path()
        .to_string();
    let (hyd, v1) = (root.join(hyd), root.join(v1));
    // The .hyd file goes between the walk and its read; the V1 folder as its capture starts.
    let hook = format!(
        "open:{}; {}",
        destroy_when_at(&hyd, &root, &hyd),
        destroy_when_at(&v1.join("meta"), &root, &v1)
    );
    let out = backup_with_hook(&hb, &root, &hook, &[]);
    out.expect(0);
    let v = out.json();
    assert_eq!(num(&v, "swamps_gone"), 2, "{v:#}");
    assert_eq!(num(&v, "swamps_quarantined"), 0, "{v:#}");
    assert_eq!(num(&v, "files_gone"), 2, "{v:#}");
    let mut gone = vec![hyd.display().to_string(), v1.display().to_string()];
    gone.sort();
    assert_eq!(strings(&v["gone"]), gone);
    assert_eq!(
        v["source_errors"].as_array().map(Vec::len),
        Some(0),
        "{v:#}"
    );
    assert_eq!(v["quarantine"].as_array().map(Vec::len), Some(0), "{v:#}");

    // What remains is in the snapshot, whole; the destroyed Swamps are not.
    let shown = hb.show("latest");
    assert_eq!(shown.len(), all.len() - 2);
    let target = hb.path("restored");
    hb.restore("latest", &target, &[]);
    assert_eq!(swamps(&target), swamps(&root));
    assert_same_content(&read_files(&root), &read_files(&target));
    assert_hydgen_check(&target);
}

#[test]
fn a_swamp_destroyed_during_a_dry_run_is_in_the_decision_log() {
    let hb = Hb::new();
    let root = hb.path("data");
    gen_root(&root, 93, 10, "1M", 0, 50);
    let all = swamps(&root);
    let path = |v1: bool| {
        let s = all
            .values()
            .find(|s| matches!(s, Swamp::V1(..)) == v1)
            .unwrap();
        root.join(s.path())
    };
    let (hyd, v1) = (path(false), path(true));
    let hook = format!(
        "open:{}; {}",
        destroy_when_at(&hyd, &root, &hyd),
        destroy_when_at(&v1.join("meta"), &root, &v1)
    );
    let out = backup_with_hook(&hb, &root, &hook, &["--dry-run"]);
    out.expect(0);
    let v = out.json();
    for p in [&hyd, &v1] {
        let d = v["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["path"] == p.display().to_string())
            .unwrap_or_else(|| panic!("{} not in {v:#}", p.display()));
        assert_eq!(d["decision"], "gone", "{v:#}");
    }
    assert_eq!(num(&v, "swamps_gone"), 2);
}

#[test]
fn a_fifo_in_a_v1_swamp_folder_is_reported_never_opened() {
    let hb = Hb::new();
    let root = hb.path("data");
    gen_root(&root, 94, 10, "1M", 0, 50);
    let v1 = swamps(&root)
        .into_values()
        .find(|s| matches!(s, Swamp::V1(..)))
        .unwrap();
    let fifo = root.join(v1.path()).join("stray-fifo");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    let v = hb.backup(&root, &[]);
    assert_eq!(num(&v, "special_files"), 1, "{v:#}");
    assert_eq!(v["special"][0]["path"], fifo.display().to_string());
    assert_eq!(v["special"][0]["kind"], "FIFO");
    std::fs::remove_file(&fifo).unwrap();
    let target = hb.path("restored");
    hb.restore("latest", &target, &[]);
    assert_same_content(&read_files(&root), &read_files(&target));
}

#[test]
fn a_file_that_exists_and_cannot_be_read_is_still_an_error() {
    // As root permission bits do not stop reads: the backup then runs as `nobody`.
    let hb = Hb::unprivileged().unwrap_or_else(Hb::new);
    let root = hb.path("data");
    gen_root(&root, 95, 6, "1M", 0, 0);
    let victim = root.join(swamps(&root).into_keys().next().unwrap());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o000)).unwrap();
    let out = hb.backup_any(&root, &[]);
    out.expect(3);
    let v = out.json();
    let e = &v["source_errors"][0];
    assert_eq!(e["path"], victim.display().to_string(), "{v:#}");
    assert_eq!(e["kind"], "unreadable", "{v:#}");
    assert_eq!(num(&v, "files_gone"), 0);
    assert_eq!(num(&v, "swamps_quarantined"), 1);
}
