//! Listing and reading snapshots: `snapshots --host/--tag/--path/--latest`, `ls -l`, `dump`
//! (a file; a folder as tar) and `cat` of every object kind.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;

use common::*;
use serde_json::Value;

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["short_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn snapshots_filters() {
    let t = TestRepo::init();
    let (a, b) = (t.path("a"), t.path("b"));
    write(&a.join("f"), b"a");
    write(&b.join("f"), b"b");
    let mut made = Vec::new();
    for (path, host, tags, time) in [
        (&a, "h1", "x", "2001-01-01 00:00"),
        (&a, "h1", "x,y", "2001-01-02 00:00"),
        (&b, "h1", "y", "2001-01-03 00:00"),
        (&a, "h2", "x", "2001-01-04 00:00"),
        (&a, "h1", "z", "2001-01-05 00:00"),
    ] {
        let mut args = vec!["--host", host, "--time", time, "--force"];
        for tag in tags.split(',') {
            args.extend(["--tag", tag]);
        }
        let v = t.backup_args(&[path], &args);
        made.push(v["snapshot_id"].as_str().unwrap()[..8].to_string());
    }
    let q = |args: &[&str]| {
        let mut a = vec!["snapshots"];
        a.extend_from_slice(args);
        ids(&t.json(&a))
    };
    let pick = |i: &[usize]| i.iter().map(|&i| made[i].clone()).collect::<Vec<_>>();
    assert_eq!(q(&[]), pick(&[0, 1, 2, 3, 4]));
    assert_eq!(q(&["--host", "h2"]), pick(&[3]));
    assert_eq!(q(&["--host", "h2", "--host", "h1"]), pick(&[0, 1, 2, 3, 4]));
    assert_eq!(q(&["--tag", "x"]), pick(&[0, 1, 3]));
    assert_eq!(q(&["--tag", "x,y"]), pick(&[1]));
    assert_eq!(q(&["--tag", "x,y", "--tag", "z"]), pick(&[1, 4]));
    let b_path = b.to_str().unwrap();
    assert_eq!(q(&["--path", b_path]), pick(&[2]));
    assert_eq!(q(&["--path", &format!("{b_path}/")]), pick(&[2]));
    // The newest of each host and set of paths.
    assert_eq!(q(&["--latest", "1"]), pick(&[2, 3, 4]));
    assert_eq!(q(&["--latest", "2", "--host", "h1"]), pick(&[1, 2, 4]));
    // The table says how many.
    let r = t.run(&["snapshots", "--host", "h2"]);
    assert!(
        r.expect_code(0).stdout.ends_with("1 snapshot(s)\n"),
        "{}",
        r.stdout
    );
}

#[test]
fn ls_long_shows_permissions_owner_size_time_and_targets() {
    let t = TestRepo::init();
    let src = t.path("src");
    write(&src.join("f"), b"12345");
    set_mtime(&src.join("f"), 1_000_000_000, 0);
    fs::set_permissions(
        src.join("f"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    std::os::unix::fs::symlink("f", src.join("l")).unwrap();
    t.backup(&[&src]);
    let r = t.run(&["ls", "-l", "latest"]);
    let out = &r.expect_code(0).stdout;
    let uid = std::os::unix::fs::MetadataExt::uid(&fs::metadata(&src).unwrap());
    let line = out.lines().find(|l| l.ends_with(" /f")).unwrap();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[0], "-rw-r-----", "{line}");
    assert_eq!(cols[1], uid.to_string(), "{line}");
    assert_eq!(cols[3], "5", "{line}");
    assert_eq!(cols[4..6], ["2001-09-09", "01:46:40"], "{line}");
    assert!(
        out.lines()
            .any(|l| l.starts_with('l') && l.ends_with(" /l -> f")),
        "{out}"
    );
    let v = t.json(&["ls", "latest"]);
    let l = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "l")
        .unwrap();
    assert_eq!(l["target"], "f");
}

#[test]
fn dump_writes_a_file_or_a_folder_as_tar() {
    let t = TestRepo::init();
    let src = t.path("src");
    let big = random_bytes(9, 5_000_000);
    write(&src.join("dir/big"), &big);
    write(&src.join("dir/small"), b"small");
    write(&src.join("top"), b"top");
    std::os::unix::fs::symlink("top", src.join("dir/link")).unwrap();
    t.backup(&[&src]);

    let mut c = t.command();
    c.args(["dump", "latest", "/dir/big"]);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(o.stdout, big);

    let mut c = t.command();
    c.args(["dump", "latest", "dir"]);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{o:?}");
    let mut ar = tar::Archive::new(&o.stdout[..]);
    let mut got = BTreeMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let what = match e.header().entry_type() {
            tar::EntryType::Symlink => format!("-> {}", e.link_name().unwrap().unwrap().display()),
            tar::EntryType::Directory => "dir".into(),
            _ => {
                let mut b = Vec::new();
                e.read_to_end(&mut b).unwrap();
                format!("{} bytes, {}", b.len(), hash_bytes(&b))
            }
        };
        got.insert(path, what);
    }
    let want: BTreeMap<String, String> = [
        ("big", format!("{} bytes, {}", big.len(), hash_bytes(&big))),
        ("link", "-> top".into()),
        ("small", format!("5 bytes, {}", hash_bytes(b"small"))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(got, want);

    for (path, msg) in [("nope", "not found"), ("dir/link", "symbolic link")] {
        let r = t.run(&["dump", "latest", path]);
        r.expect_code(1).expect_clean_error();
        assert!(r.stderr.contains(msg), "{path}: {}", r.stderr);
        assert!(r.stdout.is_empty());
    }
}

fn hash_bytes(b: &[u8]) -> String {
    let p = std::env::temp_dir().join(format!("hbtest-hash-{}", std::process::id()));
    fs::write(&p, b).unwrap();
    let h = hash_file(&p);
    fs::remove_file(&p).unwrap();
    h
}

#[test]
fn cat_prints_every_kind_of_object_decrypted() {
    let t = TestRepo::init();
    let src = t.path("src");
    let data = random_bytes(4, 10_000);
    write(&src.join("f"), &data);
    let b = t.backup(&[&src]);
    let snap_id = b["snapshot_id"].as_str().unwrap();

    let config = t.json(&["cat", "config"]);
    assert_eq!(config["version"], 1);
    let snap = t.json(&["cat", "snapshot", &snap_id[..10]]);
    assert_eq!(snap["id"], snap_id);
    assert_eq!(snap["paths"][0].as_str(), src.to_str());
    let tree = t.json(&["cat", "tree", snap["tree"].as_str().unwrap()]);
    let node = &tree["nodes"][0];
    assert_eq!(node["size"], data.len());
    let blob = node["content"][0].as_str().unwrap();
    let r = t.run(&["cat", "blob", &blob[..16]]);
    r.expect_code(0);
    let mut c = t.command();
    c.args(["cat", "blob", blob]);
    assert_eq!(c.output().unwrap().stdout, data);

    // The pack holding the data blob lists it with its length, and an index lists the pack.
    let holder =
        packs(&t.repo)
            .iter()
            .map(|p| t.json(&["cat", "pack", &name_of(p)]))
            .find(|p| {
                p["blobs"].as_array().unwrap().iter().any(|e| {
                    e["id"] == blob && e["type"] == "data" && e["raw_length"] == data.len()
                })
            })
            .expect("a pack lists the data blob");
    let pack_name = holder["id"].as_str().unwrap().to_string();
    let indexes: Vec<Value> = repo_files(&t.repo, "index")
        .iter()
        .map(|i| t.json(&["cat", "index", &name_of(i)[..8]]))
        .collect();
    assert!(
        indexes.iter().any(|i| i.to_string().contains(&pack_name)),
        "{indexes:#?}"
    );
    let key_name = name_of(&repo_files(&t.repo, "keys")[0]);
    let key = t.json(&["cat", "key", &key_name[..6]]);
    assert!(key.is_object(), "{key:#}");

    for (args, code, msg) in [
        (vec!["cat", "snapshot"], 1, "needs an id"),
        (vec!["cat", "index", "ffffffffffff"], 1, "not found"),
        (vec!["cat", "nonsense"], 2, "invalid value"),
    ] {
        let r = t.run(&args);
        r.expect_code(code);
        assert!(r.stderr.contains(msg), "{args:?}: {}", r.stderr);
    }
}
