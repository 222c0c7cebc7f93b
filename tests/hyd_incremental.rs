//! Incremental backups of a HydrAIDE root after a day of churn: untouched Swamps are not read,
//! appended ones are read from where the last capture ended, and `--since` / `--dry-run` /
//! `--show-names` behave as documented.

mod hydcommon;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use hydcommon::*;
use serde_json::Value;

/// What churn did to each Swamp, computed from the files before and after.
#[derive(Debug, Default)]
struct Diff {
    untouched: BTreeSet<String>,
    /// `.hyd` files that only grew (same inode, old bytes after the header a prefix): path →
    /// bytes appended.
    appended: BTreeMap<String, u64>,
    /// Swamps replaced or changed otherwise (compacted `.hyd`, changed V1 folders).
    rewritten: BTreeSet<String>,
    new: BTreeSet<String>,
    gone: BTreeSet<String>,
    /// Bytes a backup must read at least: appended bytes plus the whole of every rewritten or
    /// new Swamp (a V1 folder is read as a unit).
    changed_bytes: u64,
    /// Files a backup must read: every file of a changed Swamp.
    changed_files: u64,
}

fn diff(
    before: &BTreeMap<String, Swamp>,
    before_files: &BTreeMap<String, FileState>,
    root: &Path,
) -> Diff {
    let after = swamps(root);
    let after_files = read_files(root);
    let mut d = Diff::default();
    let size = |s: &Swamp| -> u64 {
        s.files()
            .iter()
            .map(|f| after_files[f].bytes.len() as u64)
            .sum()
    };
    for (p, s) in &after {
        let Some(old) = before.get(p) else {
            d.new.insert(p.clone());
            d.changed_bytes += size(s);
            d.changed_files += s.files().len() as u64;
            continue;
        };
        let same =
            old.files() == s.files() && s.files().iter().all(|f| before_files[f] == after_files[f]);
        if same {
            d.untouched.insert(p.clone());
            continue;
        }
        d.changed_files += s.files().len() as u64;
        match s {
            Swamp::Hyd(f) => {
                let (o, n) = (&before_files[f], &after_files[f]);
                // The writer rewrites the 64-byte header in place; the rest only grows.
                let h = 64.min(o.bytes.len());
                if o.ino == n.ino
                    && n.bytes.len() > o.bytes.len()
                    && n.bytes[h..o.bytes.len()] == o.bytes[h..]
                {
                    let grown = (n.bytes.len() - o.bytes.len()) as u64;
                    d.appended.insert(p.clone(), grown);
                    d.changed_bytes += grown;
                } else {
                    d.rewritten.insert(p.clone());
                    d.changed_bytes += size(s);
                }
            }
            Swamp::V1(..) => {
                d.rewritten.insert(p.clone());
                d.changed_bytes += size(s);
            }
        }
    }
    d.gone = before
        .keys()
        .filter(|p| !after.contains_key(*p))
        .cloned()
        .collect();
    d
}

#[test]
fn incremental_after_churn_reads_only_what_changed() {
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 51, 120, "3M", 20, 10);
    let b1 = hb.backup(&src, &[]);
    assert_eq!(num(&b1, "swamps_new") as usize, swamps(&src).len());

    let before = swamps(&src);
    let before_files = read_files(&src);
    churn_root(
        &src,
        5,
        &["--delete-percent", "3", "--append-percent", "12"],
    );
    let d = diff(&before, &before_files, &src);
    eprintln!(
        "churn: {} untouched, {} appended, {} rewritten, {} new, {} gone; {} bytes changed",
        d.untouched.len(),
        d.appended.len(),
        d.rewritten.len(),
        d.new.len(),
        d.gone.len(),
        d.changed_bytes
    );
    assert!(!d.appended.is_empty() && !d.gone.is_empty() && !d.untouched.is_empty());

    let b2 = hb.backup(&src, &[]);
    assert_eq!(
        num(&b2, "swamps_unchanged") as usize,
        d.untouched.len(),
        "{b2:#}"
    );
    assert_eq!(
        num(&b2, "swamps_appended") as usize,
        d.appended.len(),
        "{b2:#}"
    );
    assert_eq!(
        num(&b2, "swamps_rewritten") as usize,
        d.rewritten.len(),
        "{b2:#}"
    );
    assert_eq!(num(&b2, "swamps_new") as usize, d.new.len(), "{b2:#}");
    assert_eq!(num(&b2, "swamps_gone") as usize, d.gone.len(), "{b2:#}");
    assert_eq!(num(&b2, "swamps_quarantined"), 0, "{b2:#}");
    assert_eq!(num(&b2, "files_read"), d.changed_files, "{b2:#}");
    let read = num(&b2, "bytes_read");
    assert!(
        read >= d.changed_bytes && read < 2 * d.changed_bytes,
        "read {read} bytes for {} changed bytes",
        d.changed_bytes
    );

    // Nothing changed: nothing is read.
    let b3 = hb.backup(&src, &[]);
    assert_eq!(num(&b3, "files_read"), 0, "{b3:#}");
    assert_eq!(num(&b3, "bytes_read"), 0, "{b3:#}");
    assert_eq!(
        num(&b3, "swamps_unchanged") as usize,
        swamps(&src).len(),
        "{b3:#}"
    );
    assert_eq!(num(&b3, "swamps_gone"), 0, "{b3:#}");

    // The appended Swamps (and everything else) restore byte for byte.
    let out = hb.path("restored");
    hb.restore(&b2["snapshot_id"].as_str().unwrap()[..12], &out, &[]);
    let source = read_files(&src);
    for p in d.appended.keys() {
        assert_eq!(
            fs::read(out.join(p)).unwrap(),
            source[p].bytes,
            "appended {p}"
        );
        hydrabackup::hyd::replay_file(&out.join(p)).unwrap();
    }
    assert_same_content(&source, &read_files(&out));
}

/// The per-Swamp decisions of a dry run, by path relative to `root`.
fn decisions(v: &Value, root: &Path) -> BTreeMap<String, Value> {
    let list = v["decisions"]
        .as_array()
        .unwrap_or_else(|| panic!("no decisions: {v:#}"));
    let mut m = BTreeMap::new();
    for d in list {
        let p = rel(root, Path::new(d["path"].as_str().unwrap()));
        assert!(m.insert(p.clone(), d.clone()).is_none(), "{p} listed twice");
    }
    m
}

#[test]
fn since_dry_run_and_names() {
    let hb = Hb::new();
    let src = hb.path("data");
    gen_root(&src, 52, 100, "2M", 20, 10);
    hb.backup(&src, &[]);
    // The time of the first backup: every Swamp untouched since is older.
    let since = hb.json(&["snapshots"])[0]["time"]
        .as_str()
        .unwrap()
        .to_string();

    let before = swamps(&src);
    let before_files = read_files(&src);
    churn_root(&src, 6, &["--append-percent", "15"]);
    let d = diff(&before, &before_files, &src);
    assert!(!d.untouched.is_empty() && d.changed_files > 0);
    // A metadata-only change (ctime) to an untouched Swamp: without --since it is looked at
    // again, with --since it is older than the cut-off and taken from the parent unread.
    let chmodded = d
        .untouched
        .iter()
        .find(|p| p.ends_with(".hyd"))
        .unwrap()
        .clone();
    fs::set_permissions(src.join(&chmodded), fs::Permissions::from_mode(0o600)).unwrap();
    let names = swamp_names(&src);
    let all = swamps(&src);

    let files_before = hb.repo_file_count();
    let dry = hb.backup(&src, &["--dry-run", "--since", &since]);
    assert_eq!(
        hb.repo_file_count(),
        files_before,
        "a dry run wrote to the repository"
    );
    assert!(dry["snapshot_id"].is_null(), "{dry:#}");
    assert_eq!(dry["dry_run"], true);
    let dec = decisions(&dry, &src);
    assert_eq!(
        dec.keys().collect::<BTreeSet<_>>(),
        all.keys().collect::<BTreeSet<_>>(),
        "one decision per Swamp"
    );
    for (p, x) in &dec {
        assert!(x.get("name").is_none(), "a name without --show-names: {x}");
        assert!(!x["reason"].as_str().unwrap().is_empty(), "{x}");
        if d.untouched.contains(p) {
            assert_eq!(x["decision"], "unchanged", "{p}: {x}");
            assert_eq!(x["bytes_read"], 0, "{p}: {x}");
            continue;
        } else if d.appended.contains_key(p) {
            assert_eq!(x["decision"], "appended", "{p}: {x}");
        } else if d.new.contains(p) {
            assert_eq!(x["decision"], "new", "{p}: {x}");
        } else {
            assert_eq!(x["decision"], "rewritten", "{p}: {x}");
        }
        // A dry run reads what a backup would (a V1 folder: all its files).
        assert!(x["bytes_read"].as_u64().unwrap() > 0, "{p}: {x}");
    }
    assert!(
        d.rewritten.iter().any(|p| !p.ends_with(".hyd")),
        "no V1 folder changed: {d:?}"
    );
    assert_eq!(num(&dry, "swamps_unchanged") as usize, d.untouched.len());

    // The human dry-run listing shows no Swamp names either ...
    let text = hb.run(&[
        "backup".as_ref(),
        "--dry-run".as_ref(),
        "--since".as_ref(),
        since.as_ref(),
        src.as_os_str(),
    ] as &[&std::ffi::OsStr]);
    text.expect(0);
    assert!(text.stdout.contains("unchanged"), "{}", text.stdout);
    for n in names.values() {
        assert!(!text.stdout.contains(n.as_str()), "name {n} shown");
    }
    // ... unless asked to.
    let named = hb.backup(&src, &["--dry-run", "--since", &since, "--show-names"]);
    for (p, x) in decisions(&named, &src) {
        assert_eq!(x["name"].as_str(), names.get(&p).map(String::as_str), "{x}");
    }
    assert_eq!(hb.repo_file_count(), files_before);

    // Without --since the chmodded Swamp is looked at again.
    let plain = hb.backup(&src, &["--dry-run"]);
    let x = &decisions(&plain, &src)[&chmodded];
    assert_ne!(x["decision"], "unchanged", "{x}");
    assert!(x["bytes_read"].as_u64().unwrap() > 0, "{x}");

    // The real thing: untouched Swamps reused unread, the rest captured.
    let b = hb.backup(&src, &["--since", &since]);
    assert_eq!(
        num(&b, "swamps_unchanged") as usize,
        d.untouched.len(),
        "{b:#}"
    );
    assert_eq!(num(&b, "files_read"), d.changed_files, "{b:#}");
    assert!(num(&b, "bytes_read") >= d.changed_bytes, "{b:#}");
    let out = hb.path("restored");
    hb.restore("latest", &out, &[]);
    assert_same_content(&read_files(&src), &read_files(&out));
}
