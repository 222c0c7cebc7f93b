//! `forget` (by id and by retention policy) and `prune`: space comes back, every remaining
//! snapshot still restores byte for byte, a kill at any instant leaves a repository that
//! verifies, and a damaged repository is never pruned. The prune tests run twice: with
//! `--instant-delete`, and two-phase after the grace period (`--keep-delete 0s`, where a first
//! prune marks and a second deletes).

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use common::*;

const SIGKILL: i32 = 9;

/// Small packs and chunks so that snapshots share some packs and not others.
fn small_repo() -> TestRepo {
    TestRepo::init_with(&["--pack-size", "1", "--chunk-avg", "64"])
}

/// Source generation `g`: files 0..6 of 300 kB, where file i's content changes with g only
/// when i < 3 (so consecutive generations share half their data), plus a file only g has.
fn generation(t: &TestRepo, g: u64) -> PathBuf {
    let src = t.path("src");
    for i in 0..6u64 {
        let seed = if i < 3 { 1000 * g + i } else { i };
        write(&src.join(format!("f{i}")), &random_bytes(seed, 300_000));
    }
    let _ = fs::remove_dir_all(src.join("own"));
    write(
        &src.join("own").join(format!("g{g}")),
        &random_bytes(77_000 + g, 200_000),
    );
    src
}

fn repo_bytes(repo: &Path) -> u64 {
    packs(repo)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum()
}

fn ids(t: &TestRepo) -> BTreeSet<String> {
    t.snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// Backs up generations 1..=n (copies of each kept under `copies/g`) and returns the ids.
fn history(t: &TestRepo, n: u64) -> Vec<String> {
    (1..=n)
        .map(|g| {
            let src = generation(t, g);
            copy_dir(&src, &t.path(&format!("copies/{g}")));
            t.backup(&[&src])["snapshot_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Every snapshot left restores byte for byte to the generation it was taken of.
fn assert_restorable(t: &TestRepo, all: &[String]) {
    let left = ids(t);
    for (i, id) in all.iter().enumerate() {
        if !left.contains(id) {
            continue;
        }
        let out = t.path(&format!("out-{i}-{}", rand_suffix()));
        t.restore(id, &out, &[]);
        // The copies have new mtimes; what matters here is the content.
        let content = |root: &Path| -> Vec<(Vec<u8>, Content)> {
            scan(root)
                .into_iter()
                .map(|(p, e)| (p, e.content))
                .collect()
        };
        assert_eq!(
            content(&t.path(&format!("copies/{}", i + 1))),
            content(&out),
            "snapshot {id}"
        );
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// How prunes run in a test: at once, or two-phase with no grace period.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Instant,
    TwoPhase,
}

impl Mode {
    /// `prune --yes` with this mode's options and `extra`.
    fn args<'a>(self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["prune", "--yes"];
        a.extend_from_slice(match self {
            Mode::Instant => &["--instant-delete"][..],
            Mode::TwoPhase => &["--keep-delete", "0s"],
        });
        a.extend_from_slice(extra);
        a
    }

    /// Prunes until the space is back: once when instant, twice (mark, then delete) otherwise.
    /// Returns the last prune's document.
    fn prune(self, t: &TestRepo, extra: &[&str]) -> serde_json::Value {
        let first = t.json(&self.args(extra));
        if self == Mode::Instant {
            return first;
        }
        let second = t.json(&self.args(extra));
        assert_eq!(second["packs_marked"], 0, "{second:#}");
        assert_eq!(second["packs_waiting"], 0, "{second:#}");
        assert_eq!(second["index_files_waiting"], 0, "{second:#}");
        second
    }
}

#[test]
fn prune_frees_what_forgotten_snapshots_alone_used() {
    frees_what_forgotten_snapshots_alone_used(Mode::Instant);
}

#[test]
fn two_phase_prune_frees_what_forgotten_snapshots_alone_used() {
    frees_what_forgotten_snapshots_alone_used(Mode::TwoPhase);
}

fn frees_what_forgotten_snapshots_alone_used(mode: Mode) {
    let t = small_repo();
    let all = history(&t, 4);
    let before = repo_bytes(&t.repo);

    // Nothing is forgotten yet: prune finds nothing to free.
    let p = mode.prune(&t, &[]);
    assert_eq!(p["bytes_unused"], 0, "{p:#}");
    assert_eq!(p["packs_deleted"], 0, "{p:#}");
    assert_eq!(repo_bytes(&t.repo), before);

    // Forget the first two by id.
    let f = t.json(&["forget", "--yes", &all[0], &all[1][..8]]);
    assert_eq!(f["removed"], 2, "{f:#}");
    assert_eq!(ids(&t), all[2..].iter().cloned().collect());

    // A dry run reports and changes nothing.
    let files_before = repo_files(&t.repo, "");
    let d = t.json(&mode.args(&["--dry-run", "--max-unused", "0"]));
    assert!(d["bytes_unused"].as_u64().unwrap() > 0, "{d:#}");
    assert_eq!(repo_files(&t.repo, ""), files_before);

    let p = mode.prune(&t, &["--max-unused", "0"]);
    if mode == Mode::Instant {
        assert_eq!(p["bytes_unused"], d["bytes_unused"], "{p:#}");
    } else {
        // The first prune only marked; the second deleted what it marked.
        assert!(p["packs_removed"].as_u64().unwrap() > 0, "{p:#}");
        assert_eq!(p["packs_removed"], d["packs_marked"], "{d:#} then {p:#}");
    }
    assert_eq!(p["pack_bytes_after"].as_u64().unwrap(), repo_bytes(&t.repo));
    // Generations 1 and 2 each had 3 files of their own (900 kB) plus their own 200 kB file.
    let freed = before - repo_bytes(&t.repo);
    assert!(freed > 2 * 1_000_000, "freed only {freed} bytes: {p:#}");
    assert_objects_complete(&t.repo);
    t.assert_verify_ok(&["--read-data"]);
    assert_restorable(&t, &all);

    // With nothing unused left, a second prune changes nothing.
    let again = t.json(&mode.args(&["--max-unused", "0"]));
    assert_eq!(again["bytes_unused"], 0, "{again:#}");
    assert_eq!(again["packs_rewritten"], 0, "{again:#}");
    assert_eq!(again["index_files_written"], 0, "{again:#}");
    assert_eq!(again["index_files_deleted"], 0, "{again:#}");

    // Backups after a prune reuse what is left and restore exactly.
    let src = generation(&t, 4);
    let b = t.backup(&[&src]);
    assert_eq!(b["data_blobs_added"], 0, "{b:#}");
}

#[test]
fn forget_applies_a_retention_policy_per_group() {
    let t = TestRepo::init();
    let src = t.path("src");
    write(&src.join("a"), b"same data every time");
    let other = t.path("other");
    write(&other.join("b"), b"another path set");
    // Times chosen so the policy's choice is clear: two per day on three days of one week,
    // one in the week before, one a month before.
    let times = [
        "2026-10-05T10:00:00Z", // month 10
        "2026-11-04T10:00:00Z", // week 45
        "2026-11-09T08:00:00Z", // Monday, week 46
        "2026-11-09T20:00:00Z",
        "2026-11-10T08:00:00Z",
        "2026-11-10T20:00:00Z",
        "2026-11-11T08:00:00Z",
        "2026-11-11T20:00:00Z",
    ];
    let mut by_time = Vec::new();
    for tm in times {
        let v = t.backup_args(&[&src], &["--time", tm]);
        by_time.push(v["snapshot_id"].as_str().unwrap().to_string());
    }
    // Another path set is another group: the policy keeps its only snapshot.
    let lone = t.backup_args(&[&other], &["--time", "2026-01-01T00:00:00Z"])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();

    let mut c = t.command();
    c.env("TZ", "UTC").args([
        "forget",
        "--yes",
        "--policy",
        "2d,2w,3m",
        "--dry-run",
        "--json",
    ]);
    let dry = run_cmd(c).expect_code(0).json();
    assert_eq!(dry["groups"].as_array().unwrap().len(), 2, "{dry:#}");
    assert_eq!(ids(&t).len(), 9, "a dry run removed snapshots");

    let mut c = t.command();
    c.env("TZ", "UTC")
        .args(["forget", "--yes", "--policy", "2d,2w,3m", "--json"]);
    let v = run_cmd(c).expect_code(0).json();
    assert_eq!(v["removed"], dry["removed"]);
    // 2d: 11-11 20:00, 11-10 20:00. 2w: 11-11 20:00 (week 46), 11-04 (week 45).
    // 3m: 11-11 20:00 (November), 10-05 (October); nothing older.
    let expect: BTreeSet<String> = [7, 5, 1, 0]
        .iter()
        .map(|&i| by_time[i].clone())
        .chain([lone])
        .collect();
    assert_eq!(ids(&t), expect, "{v:#}");
    let group = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["keep"].as_array().unwrap().len() == 4)
        .expect("the group of 8");
    let newest = &group["keep"][0];
    assert_eq!(newest["id"], by_time[7].as_str());
    let reasons: BTreeSet<&str> = newest["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        ["daily", "weekly", "monthly"].into_iter().collect()
    );
    assert_eq!(group["remove"].as_array().unwrap().len(), 4);
    t.assert_verify_ok(&[]);
}

#[test]
fn forget_refuses_unclear_requests() {
    let t = TestRepo::init();
    let src = t.path("src");
    write(&src.join("a"), b"x");
    t.backup(&[&src]);
    for (args, needle) in [
        (vec!["forget", "--yes"], "no policy"),
        (
            vec!["forget", "--yes", "--policy", "7x"],
            "retention policy",
        ),
        (vec!["forget", "--yes", "--keep-within", "soon"], "span"),
        (
            vec![
                "forget",
                "--yes",
                "--keep-last",
                "1",
                "--group-by",
                "colour",
            ],
            "group by",
        ),
        (vec!["forget", "--yes", "deadbeef"], "not found"),
        (
            vec!["prune", "--yes", "--instant-delete", "--max-unused", "150"],
            "percentage",
        ),
    ] {
        let r = t.run(&args);
        r.expect_clean_error();
        assert!(
            r.stderr.contains(needle),
            "{args:?}: expected {needle:?} in {}",
            r.stderr
        );
    }
    assert_eq!(ids(&t).len(), 1);
}

/// A repository with four generations, the first two forgotten: what prune must clean up.
fn forgotten_history() -> (TestRepo, Vec<String>) {
    let t = small_repo();
    let all = history(&t, 4);
    t.json(&["forget", "--yes", &all[0], &all[1]]);
    (t, all)
}

/// Runs `args` with a crash point; returns whether the process was killed there.
fn crashed(t: &TestRepo, failpoint: &str, args: &[&str]) -> bool {
    let mut c = t.command();
    c.env("HYDRABACKUP_FAILPOINT", failpoint).args(args);
    let r = run_cmd(c);
    if r.signal == Some(SIGKILL) {
        return true;
    }
    r.expect_code(0);
    false
}

#[test]
fn a_prune_killed_at_any_point_leaves_a_good_repository() {
    killed_at_any_point(Mode::Instant);
}

#[test]
fn a_two_phase_prune_killed_at_any_point_leaves_a_good_repository() {
    killed_at_any_point(Mode::TwoPhase);
}

fn killed_at_any_point(mode: Mode) {
    for fp in [
        "after-pack:1",
        "prune-after-rewrite",
        "prune-after-index",
        "prune-before-delete",
        "prune-mid-delete:2",
    ] {
        let (t, all) = forgotten_history();
        // Two-phase, a point of the deleting phase is reached by the second prune.
        let args = mode.args(&["--max-unused", "0", "--json"]);
        let killed = crashed(&t, fp, &args) || (mode == Mode::TwoPhase && crashed(&t, fp, &args));
        assert!(killed, "prune was not killed at {fp}");
        assert_objects_complete(&t.repo);
        // The kill left a stale lock that blocks nothing; verify sees no damage (unreferenced
        // packs are not damage).
        t.assert_verify_ok(&["--read-data"]);
        assert_restorable(&t, &all);
        // The next prunes finish the job.
        let p = mode.prune(&t, &["--max-unused", "0"]);
        let again = t.json(&mode.args(&["--max-unused", "0", "--dry-run"]));
        assert_eq!(again["bytes_unused"], 0, "{fp}: {p:#} then {again:#}");
        assert_eq!(again["packs_unindexed"], 0, "{fp}: {again:#}");
        assert_eq!(again["packs_waiting"], 0, "{fp}: {again:#}");
        // Nothing is left over, superseded index files included: a further prune changes
        // nothing.
        let third = t.json(&mode.args(&["--max-unused", "0"]));
        assert_eq!(third["index_files_deleted"], 0, "{fp}: {third:#}");
        assert_eq!(third["index_files_written"], 0, "{fp}: {third:#}");
        t.assert_verify_ok(&["--read-data"]);
        assert_restorable(&t, &all);
        let (_, v) = t.verify(&[]);
        assert_eq!(
            v["unreferenced_packs"].as_array().unwrap().len(),
            0,
            "{fp}: {v:#}"
        );
    }
}

#[test]
fn a_damaged_repository_is_not_pruned() {
    let (t, _) = forgotten_history();
    // Remove a pack that a remaining snapshot needs.
    let mut victims = packs(&t.repo);
    victims.sort_by_key(|p| fs::metadata(p).unwrap().len());
    let last = t.snapshots().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Find a pack the latest snapshot needs: restoring after removing it must fail.
    let needed = victims
        .iter()
        .rev()
        .find(|p| {
            let keep = fs::read(p).unwrap();
            fs::remove_file(p).unwrap();
            let out = t.path(&format!("probe-{}", rand_suffix()));
            let r = t.run(&["restore", &last, "--target", out.to_str().unwrap()]);
            fs::write(p, keep).unwrap();
            r.code != Some(0)
        })
        .expect("some pack holds the latest snapshot's data")
        .clone();
    fs::remove_file(&needed).unwrap();
    let files_before = repo_files(&t.repo, "");
    let r = t.run(&["prune", "--yes", "--instant-delete"]);
    r.expect_code(13).expect_clean_error();
    assert!(r.stderr.contains("nothing was pruned"), "{}", r.stderr);
    assert_eq!(repo_files(&t.repo, ""), files_before);
}
