//! Restoring parts of a HydrAIDE snapshot by Swamp name, into an existing root, and by time.

mod hydcommon;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use hydcommon::*;
use serde_json::Value;

/// Files (relative paths) of the source Swamps whose name satisfies `pick`.
fn files_of(
    src: &Path,
    rows: &BTreeMap<String, Value>,
    pick: impl Fn(&str) -> bool,
) -> BTreeSet<String> {
    let all = swamps(src);
    rows.iter()
        .filter(|(_, r)| r["name"].as_str().is_some_and(&pick))
        .flat_map(|(p, _)| {
            all.get(p)
                .unwrap_or_else(|| panic!("{p} listed by show is not in the source"))
                .files()
        })
        .collect()
}

fn subset(
    all: &BTreeMap<String, FileState>,
    keep: &BTreeSet<String>,
) -> BTreeMap<String, FileState> {
    all.iter()
        .filter(|(k, _)| keep.contains(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn swamp_globs_select_what_is_restored() {
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 41, 100, "2M", 20, 15);
    let b = hb.backup(&src, &[]);
    let snap = b["snapshot_id"].as_str().unwrap().to_string();
    let source = read_files(&src);
    let rows = hb.show(&snap);

    // A sanctuary holding both V1 folders and .hyd files.
    let sanctuary_of = |r: &Value| {
        r["name"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string()
    };
    let sanctuaries: BTreeSet<String> = rows.values().map(sanctuary_of).collect();
    let sanctuary = sanctuaries
        .iter()
        .find(|s| {
            let formats: BTreeSet<u64> = rows
                .values()
                .filter(|r| sanctuary_of(r) == **s)
                .map(|r| r["format"].as_u64().unwrap())
                .collect();
            formats.contains(&1) && formats.len() > 1
        })
        .expect("a sanctuary with V1 and .hyd Swamps")
        .clone();
    let glob = format!("{sanctuary}/*/*");
    let prefix = format!("{sanctuary}/");
    let wanted = files_of(&src, &rows, |n| n.starts_with(&prefix));
    assert!(!wanted.is_empty() && wanted.len() < source.len());
    // `show --swamp` lists the same Swamps.
    let shown = hb.json(&["show", &snap, "--swamp", &glob]);
    let shown: BTreeSet<&str> = shown["swamps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    let expected_rows: BTreeSet<&str> = rows
        .iter()
        .filter(|(_, r)| r["name"].as_str().unwrap().starts_with(&prefix))
        .map(|(p, _)| p.as_str())
        .collect();
    assert_eq!(shown, expected_rows);

    // Only the matching Swamps come back, at their paths, byte for byte.
    let t1 = hb.path("by-glob");
    let r = hb.restore(&snap, &t1, &["--swamp", &glob]);
    assert_eq!(num(&r, "files") as usize, wanted.len(), "{r:#}");
    assert_same_content(&subset(&source, &wanted), &read_files(&t1));

    // Full names: one V1 folder and one .hyd Swamp (two --swamp options add up).
    let v1 = rows.values().find(|r| r["format"] == 1).unwrap();
    let hyd = rows.values().find(|r| r["format"] == 3).unwrap();
    let (v1_name, hyd_name) = (v1["name"].as_str().unwrap(), hyd["name"].as_str().unwrap());
    let wanted2 = files_of(&src, &rows, |n| n == v1_name || n == hyd_name);
    assert!(
        wanted2.len() >= 3,
        "a V1 folder holds meta and chunks: {wanted2:?}"
    );
    let t2 = hb.path("by-name");
    hb.restore(&snap, &t2, &["--swamp", v1_name, "--swamp", hyd_name]);
    assert_same_content(&subset(&source, &wanted2), &read_files(&t2));

    // --dry-run lists the same files and writes nothing.
    let t3 = hb.path("dry");
    let r = hb.restore(&snap, &t3, &["--swamp", &glob, "--dry-run"]);
    let listed: BTreeSet<String> = r["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, wanted);
    assert!(
        !t3.exists() || files_below(&t3).is_empty(),
        "a dry run wrote files"
    );

    // Into an existing root: refused without --overwrite, and nothing changes.
    let root = hb.path("existing");
    hb.restore(&snap, &root, &[]);
    let old = filetime::FileTime::from_unix_time(1_000_000_000, 0);
    for (i, f) in files_below(&root).iter().enumerate() {
        let p = root.join(f);
        if i % 3 == 0 {
            let mut bytes = fs::read(&p).unwrap();
            bytes.extend_from_slice(b"local change");
            fs::write(&p, bytes).unwrap();
        }
        filetime::set_file_mtime(&p, old).unwrap();
    }
    let before = read_files(&root);
    let out = hb.run(&[
        "restore".as_ref(),
        snap.as_ref(),
        "--target".as_ref(),
        root.as_os_str(),
        "--swamp".as_ref(),
        glob.as_ref(),
    ] as &[&std::ffi::OsStr]);
    assert_ne!(
        out.code, 0,
        "restore into a non-empty folder was not refused"
    );
    assert!(out.stderr.contains("--overwrite"), "{}", out.stderr);
    assert_eq!(read_files(&root), before, "a refused restore changed files");

    // With --overwrite only the selected Swamps change: back to the snapshot's bytes and mtimes;
    // everything else keeps its bytes and mtimes.
    hb.restore(&snap, &root, &["--swamp", &glob, "--overwrite"]);
    let after = read_files(&root);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    for (k, now) in &after {
        if wanted.contains(k) {
            assert_eq!(now.bytes, source[k].bytes, "{k} was not restored");
            assert_eq!(now.mtime_ns, source[k].mtime_ns, "mtime of {k}");
        } else {
            assert_eq!(
                now.bytes, before[k].bytes,
                "{k} is not selected but changed"
            );
            assert_eq!(
                now.mtime_ns, before[k].mtime_ns,
                "{k} is not selected but touched"
            );
        }
    }
}

fn ts(v: &Value) -> jiff::Timestamp {
    v["time"].as_str().unwrap().parse().unwrap()
}

#[test]
fn restore_at_a_time_picks_the_snapshot_then_in_force() {
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 42, 60, "1500K", 20, 10);
    let mut states = Vec::new();
    for seed in 1..=3u64 {
        if seed > 1 {
            churn_root(
                &src,
                seed,
                &["--append-percent", "30", "--new-percent", "5"],
            );
        }
        hb.backup(&src, &[]);
        states.push(read_files(&src));
    }
    assert_ne!(states[0], states[1]);
    assert_ne!(states[1], states[2]);

    let snaps = hb.json(&["snapshots"]);
    assert_eq!(
        hb.json(&["list-versions"]),
        snaps,
        "the alias lists the same"
    );
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), 3);
    let times: Vec<jiff::Timestamp> = snaps.iter().map(ts).collect();
    assert!(times[0] < times[1] && times[1] < times[2], "{times:?}");
    let id = |i: usize| snaps[i]["id"].as_str().unwrap();

    let between = |a: jiff::Timestamp, b: jiff::Timestamp| {
        let mid = a.as_nanosecond() + (b.as_nanosecond() - a.as_nanosecond()) / 2;
        jiff::Timestamp::from_nanosecond(mid).unwrap().to_string()
    };
    let at = between(times[1], times[2]);
    assert!(at.ends_with('Z'), "{at} is not RFC 3339 UTC");
    let target = hb.path("at");
    let r = hb.restore_at(&at, &target, &[]);
    assert_eq!(r["snapshot_id"], id(1), "--at {at}: {r:#}");
    assert_same_content(&states[1], &read_files(&target));

    // A snapshot's own time selects it (the 3rd holds Swamps appended to twice: a chain of
    // incremental captures restores byte for byte).
    let target = hb.path("at3");
    let r = hb.restore_at(&times[2].to_string(), &target, &[]);
    assert_eq!(r["snapshot_id"], id(2), "{r:#}");
    assert_same_content(&states[2], &read_files(&target));

    // The other boundaries: between the 1st and 2nd, the 1st.
    for (t, want) in [(times[1].to_string(), 1), (between(times[0], times[1]), 0)] {
        let r = hb.restore_at(&t, &hb.path("dry"), &["--dry-run"]);
        assert_eq!(r["snapshot_id"], id(want), "--at {t}");
    }

    // Before the first snapshot: a clear error, nothing restored.
    let early = (times[0] - jiff::SignedDuration::from_secs(3600)).to_string();
    let none = hb.path("none");
    let out = hb.run(&[
        "restore".as_ref(),
        "--at".as_ref(),
        early.as_ref(),
        "--target".as_ref(),
        none.as_os_str(),
    ] as &[&std::ffi::OsStr]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("snapshot") && out.stderr.contains("before"),
        "unclear error: {}",
        out.stderr
    );
    assert!(!none.exists());
}

trait RestoreAt {
    fn restore_at(&self, at: &str, target: &Path, extra: &[&str]) -> Value;
}

impl RestoreAt for Hb {
    fn restore_at(&self, at: &str, target: &Path, extra: &[&str]) -> Value {
        let mut a: Vec<&std::ffi::OsStr> = vec![
            "restore".as_ref(),
            "--at".as_ref(),
            at.as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ];
        a.extend(extra.iter().map(|s| std::ffi::OsStr::new(*s)));
        self.json(&a)
    }
}

#[test]
fn a_swamp_pattern_that_matches_nothing_is_an_error() {
    // A typo in a Swamp name must not look like a successful (empty) restore or verify.
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 11, 20, "1M", 0, 0);
    hb.backup(&src, &[]);
    let target = hb.path("out");
    let r = hb.run(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--swamp",
        "no/such/swamp",
    ]);
    r.expect(1);
    assert!(r.stderr.contains("no/such/swamp"), "{}", r.stderr);
    assert!(!target.exists(), "nothing may be created");
    let v = hb.run(&["verify", "--read-data", "--swamp", "no/such/*"]);
    v.expect(1);
    assert!(v.stderr.contains("not found"), "{}", v.stderr);
}

fn open_repo(hb: &Hb) -> hydrabackup::repo::Repository {
    let backend: std::sync::Arc<dyn hydrabackup::backend::Backend> =
        std::sync::Arc::from(hydrabackup::backend::open(hb.repo.to_str().unwrap()).unwrap());
    hydrabackup::repo::Repository::open(backend, PASSWORD.as_bytes()).unwrap()
}

#[test]
fn the_name_index_selects_what_a_full_walk_selects() {
    use hydrabackup::ops::progress::Progress;
    use hydrabackup::ops::restore::{RestoreOptions, restore};
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 43, 400, "3M", 30, 20);
    hb.backup(&src, &[]);
    let rows = hb.show("latest");
    let repo = open_repo(&hb);
    let index = repo.load_index().unwrap();
    let (_, snap) = repo.find_snapshot("latest").unwrap();
    let names_id = snap.names.expect("a snapshot of Swamps has a name index");
    let name_index = repo.load_name_index(&index, &names_id).unwrap();
    assert_eq!(name_index.len() as usize, rows.len());
    let mut walked = snap.clone();
    walked.names = None;

    let names: Vec<&str> = rows.values().map(|r| r["name"].as_str().unwrap()).collect();
    let v1 = rows.values().find(|r| r["format"] == 1).unwrap()["name"]
        .as_str()
        .unwrap();
    let first = names[0].split('/').next().unwrap();
    let patterns: Vec<Vec<String>> = vec![
        vec![names[7].to_string()],
        vec![v1.to_string()],
        vec![names[3].to_string(), names[200].to_string()],
        vec![format!("{first}/*/*")],
        vec!["*/*/*".to_string()],
        vec!["**".to_string()],
        vec![format!("{first}/**"), "?*/[a-m]*/*".to_string()],
    ];
    for pats in patterns {
        let opts = RestoreOptions {
            target: hb.path("never-written"),
            dry_run: true,
            swamps: pats.clone(),
            ..RestoreOptions::default()
        };
        let p = Progress::default();
        let a = restore(&repo, &index, &snap, &opts, &p).unwrap();
        let b = restore(&repo, &index, &walked, &opts, &p).unwrap();
        let set = |s: &hydrabackup::ops::restore::RestoreSummary| -> BTreeSet<String> {
            s.paths.iter().cloned().collect()
        };
        assert!(!a.paths.is_empty(), "{pats:?}");
        assert_eq!(set(&a), set(&b), "{pats:?}");
        assert_eq!(
            (a.files, a.dirs, a.bytes),
            (b.files, b.dirs, b.bytes),
            "{pats:?}"
        );
    }
}

#[test]
fn a_damaged_name_index_is_reported_not_used() {
    use hydrabackup::backend::FileKind;
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 44, 30, "1M", 0, 0);
    hb.backup(&src, &[]);
    let name = hb.show("latest").values().next().unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    // A snapshot whose name index is not in the repository.
    let repo = open_repo(&hb);
    let (_, mut snap) = repo.find_snapshot("latest").unwrap();
    snap.names = Some(hydrabackup::Id::random());
    snap.time = "2030-01-01T00:00:00Z".into();
    let bad = repo
        .save_object(FileKind::Snapshot, &snap)
        .unwrap()
        .to_hex();

    let (code, v) = {
        let o = hb.run(&["verify", "--json"]);
        (o.code, o.json())
    };
    assert_eq!(code, 13, "{v:#}");
    let problems = v["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["detail"].as_str().unwrap().contains("name index")),
        "{v:#}"
    );
    let target = hb.path("out");
    let r = hb.run(&[
        "restore",
        &bad,
        "--target",
        target.to_str().unwrap(),
        "--swamp",
        &name,
    ]);
    r.expect(13);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(!target.exists(), "nothing may be written");
}
