//! Restore against hostile snapshots and hostile targets: crafted trees (made through the library
//! by `craft::Crafter`) with unsafe names, symlinks and extreme depth, and `--overwrite` into a
//! target that already holds symlinks. Whatever happens, nothing outside the target changes.

mod common;
mod craft;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::*;
use craft::Crafter;
use hydrabackup::repo::tree::{Node, NodeKind};
use proptest::prelude::*;

/// A sandbox next to the repository: `box/outside` (sentinel files, a folder, a symlink) and the
/// restore target `box/in/target`, two levels below `box` so that `..` and `../..` land inside.
struct Sandbox {
    root: PathBuf,
    outside: PathBuf,
    target: PathBuf,
}

impl Sandbox {
    fn new(t: &TestRepo, name: &str) -> Sandbox {
        let root = t.path(name);
        let outside = root.join("outside");
        write(&outside.join("victim"), b"sentinel file");
        write(&outside.join("dir/victim"), b"sentinel in a folder");
        write(&outside.join("dir/f"), b"another sentinel");
        std::os::unix::fs::symlink("victim", outside.join("link")).unwrap();
        set_mtime(&outside.join("victim"), 1_000_000, 0);
        let target = root.join("in/target");
        fs::create_dir_all(&target).unwrap();
        Sandbox {
            root,
            outside,
            target,
        }
    }

    /// Everything in the sandbox except the target and what is inside it.
    fn outside_target(&self) -> Tree {
        scan(&self.root)
            .into_iter()
            .filter(|(k, _)| k != b"in/target" && !k.starts_with(b"in/target/"))
            .collect()
    }

    /// The absolute path of `rel` under `outside`, as bytes.
    fn abs(&self, rel: &str) -> Vec<u8> {
        self.outside.join(rel).as_os_str().as_bytes().to_vec()
    }
}

/// Entries directly in the test directory (the repository and the sandboxes).
/// What is next to the box, but the test's cache folder (restore writes the index map there,
/// repo-format.md §5).
fn top_level(t: &TestRepo) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(t.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "cache")
        .collect();
    v.sort();
    v
}

fn restore_args(snap: &str, target: &Path, overwrite: bool) -> Vec<String> {
    let mut a = vec![
        "restore".to_string(),
        snap.to_string(),
        "--target".to_string(),
        target.display().to_string(),
    ];
    if overwrite {
        a.push("--overwrite".into());
    }
    a
}

#[test]
fn unsafe_names_are_damage_that_restore_ls_and_verify_refuse() {
    type Case = (&'static str, fn(&mut Crafter, &Sandbox) -> Vec<Node>);
    let cases: Vec<Case> = vec![
        ("absolute name", |c, s| {
            vec![c.file(&s.abs("planted"), b"planted by an absolute name")]
        }),
        ("dot-dot folder", |c, _| {
            let f = c.file(b"escaped", b"written beside the target");
            vec![c.dir(b"..", vec![f])]
        }),
        ("name with a slash", |c, _| {
            vec![c.file(b"../../outside/victim", b"overwritten through a slash")]
        }),
        ("dot folder", |c, _| {
            let f = c.file(b"x", b"x");
            vec![c.dir(b".", vec![f])]
        }),
        ("empty name", |c, _| vec![c.file(b"", b"no name")]),
        ("NUL in a name", |c, _| vec![c.file(b"a\0b", b"nul")]),
        ("duplicate names", |c, s| {
            let f = c.file(b"victim", b"through a duplicate");
            vec![c.symlink(b"d", &s.abs("dir")), c.dir(b"d", vec![f])]
        }),
        ("unsorted names", |c, _| {
            vec![c.file(b"b", b"b"), c.file(b"a", b"a")]
        }),
        ("symlink with a subtree", |c, s| {
            let f = c.file(b"victim", b"below a symlink");
            let mut l = c.symlink(b"l", &s.abs("dir"));
            l.subtree = c.dir(b"l", vec![f]).subtree;
            vec![l]
        }),
    ];
    for (what, make) in cases {
        let t = TestRepo::init();
        let sb = Sandbox::new(&t, "box");
        let mut c = Crafter::open(&t.repo, &t.password);
        let root = make(&mut c, &sb);
        let snap = c.snapshot(root);
        let before = sb.outside_target();
        let top = top_level(&t);

        let r = t.run(&restore_args(&snap, &sb.target, false));
        r.expect_code(13).expect_clean_error();
        assert!(r.stderr.contains("tree"), "{what}: {}", r.stderr);
        assert_same_tree(&before, &sb.outside_target());
        assert_eq!(
            top,
            top_level(&t),
            "{what}: something appeared next to the box"
        );
        assert!(
            scan(&sb.target).is_empty(),
            "{what}: restore wrote part of a damaged snapshot"
        );

        let ls = t.run(&["ls", &snap]);
        ls.expect_code(13).expect_clean_error();
        let (code, report) = t.verify(&[]);
        assert_eq!(
            code, 13,
            "{what}: verify passed a snapshot with {what}: {report:#}"
        );
        assert!(
            report["problems"].as_array().is_some_and(|p| !p.is_empty()),
            "{what}: {report:#}"
        );
    }
}

#[test]
fn overwrite_never_writes_through_a_symlinked_folder() {
    // Snapshot A holds `d -> outside/dir`; snapshot B holds a folder `d` with files named like
    // the sentinels there. Restoring B over A replaces the symlink with a folder.
    let t = TestRepo::init();
    let sb = Sandbox::new(&t, "box");
    let mut c = Crafter::open(&t.repo, &t.password);
    let link = c.symlink(b"d", &sb.abs("dir"));
    let a = c.snapshot(vec![link]);
    let mut c = Crafter::open(&t.repo, &t.password);
    let files = vec![
        c.file(b"f", b"new f"),
        c.file(b"new", b"new file"),
        c.file(b"victim", b"new victim"),
    ];
    let d = c.dir(b"d", files);
    let b = c.snapshot(vec![d]);

    t.run(&restore_args(&a, &sb.target, false)).expect_code(0);
    assert!(
        fs::symlink_metadata(sb.target.join("d"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let before = sb.outside_target();
    t.run(&restore_args(&b, &sb.target, true)).expect_code(0);
    assert_same_tree(&before, &sb.outside_target());
    let d = sb.target.join("d");
    assert!(
        fs::symlink_metadata(&d).unwrap().is_dir(),
        "d is a folder now"
    );
    assert_eq!(fs::read(d.join("victim")).unwrap(), b"new victim");
    assert_eq!(fs::read(d.join("new")).unwrap(), b"new file");
}

#[test]
fn overwrite_never_writes_through_a_planted_temporary_name() {
    // Symlinks to sentinels wait at every name a temporary file has ever had (old scheme
    // `.NAME.hydrabackup-tmp`, current scheme `.hydrabackup-tmp.N`).
    let t = TestRepo::init();
    let src = t.path("src");
    write(&src.join("f"), b"content of f");
    write(&src.join("sub/g"), &random_bytes(1, 100_000));
    write(&src.join("empty"), b"");
    t.backup(&[&src]);
    let sb = Sandbox::new(&t, "box");
    let sub = sb.target.join("sub");
    fs::create_dir(&sub).unwrap();
    for (dir, names) in [(&sb.target, &["f", "empty"][..]), (&sub, &["g"][..])] {
        for n in names {
            let planted = dir.join(format!(".{n}.hydrabackup-tmp"));
            std::os::unix::fs::symlink(sb.outside.join("victim"), planted).unwrap();
        }
        for i in 0..8 {
            let planted = dir.join(format!(".hydrabackup-tmp.{i}"));
            std::os::unix::fs::symlink(sb.outside.join("dir/victim"), planted).unwrap();
        }
    }
    let before = sb.outside_target();
    t.run(&restore_args("latest", &sb.target, true))
        .expect_code(0);
    assert_same_tree(&before, &sb.outside_target());
    assert_eq!(fs::read(sb.target.join("f")).unwrap(), b"content of f");
    assert_eq!(
        hash_file(&sb.target.join("sub/g")),
        hash_file(&src.join("sub/g"))
    );
    assert_eq!(fs::read(sb.target.join("empty")).unwrap(), b"");
}

/// Walks the restored chain of folders named `d` below `root` level by level (paths stay short:
/// each level is moved up to `root` before it is read) and removes it; returns the depth and
/// the content of the file at the bottom. Recursion and long paths would both fail here.
fn take_apart_chain(root: &Path) -> (usize, Vec<u8>) {
    let mut depth = 0;
    let mut cur = root.join("level0");
    fs::rename(root.join("d"), &cur).unwrap();
    loop {
        let names: Vec<_> = fs::read_dir(&cur)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        depth += 1;
        if names == ["d"] {
            let next = root.join(format!("level{depth}"));
            fs::rename(cur.join("d"), &next).unwrap();
            fs::remove_dir(&cur).unwrap();
            cur = next;
        } else {
            assert_eq!(names, ["bottom"], "level {depth} holds {names:?}");
            let data = fs::read(cur.join("bottom")).unwrap();
            fs::remove_dir_all(&cur).unwrap();
            return (depth, data);
        }
    }
}

#[test]
fn a_snapshot_ten_thousand_folders_deep_restores() {
    const DEPTH: usize = 10_000;
    let t = TestRepo::init();
    let mut c = Crafter::open(&t.repo, &t.password);
    let bottom = c.file(b"bottom", b"at the bottom");
    let chain = c.chain(b"d", DEPTH, vec![bottom]);
    let snap = c.snapshot(vec![chain]);
    let out = t.path("out");
    t.run(&restore_args(&snap, &out, false)).expect_code(0);
    assert_eq!(take_apart_chain(&out), (DEPTH, b"at the bottom".to_vec()));
}

// ---------------------------------------------------------------------------------------------
// Property: no tree, with or without `--overwrite` over planted symlinks, changes anything
// outside the target.

/// An entry of a generated tree (names and link targets index the pools below).
#[derive(Debug, Clone)]
enum Spec {
    File(usize, u8),
    Link(usize, usize),
    Dir(usize, Vec<Spec>),
}

/// Entry names: the first `SAFE` are legal, the rest hostile (`ABS` is replaced by the absolute
/// path of `outside/abs`).
const NAMES: &[&[u8]] = &[
    b"a",
    b"b",
    b"d",
    b"victim",
    b".a.hydrabackup-tmp",
    b".hydrabackup-tmp.0",
    b".hydrabackup-tmp.1",
    &[b'L'; 255],
    b"..",
    b".",
    b"",
    b"x/y",
    b"../esc",
    b"../../outside/victim",
    b"ABS",
    b"n\0ul",
];
const SAFE: usize = 8;

/// A name index, legal six times out of seven.
fn name() -> impl Strategy<Value = usize> {
    prop_oneof![6 => 0..SAFE, 1 => SAFE..NAMES.len()]
}

/// Link targets (`ABS:` is replaced by the absolute path of what follows under `outside`).
const TARGETS: &[&[u8]] = &[
    b"ABS:dir",
    b"ABS:victim",
    b"../../outside",
    b"../../outside/dir",
    b"..",
    b".",
    b"/",
];

fn spec() -> impl Strategy<Value = Spec> {
    let leaf = prop_oneof![
        (name(), any::<u8>()).prop_map(|(n, s)| Spec::File(n, s)),
        (name(), 0..TARGETS.len()).prop_map(|(n, t)| Spec::Link(n, t)),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        (name(), prop::collection::vec(inner, 0..4)).prop_map(|(n, v)| Spec::Dir(n, v))
    })
}

fn name_of_spec(i: usize, sb: &Sandbox) -> Vec<u8> {
    if NAMES[i] == b"ABS" {
        sb.abs("abs")
    } else {
        NAMES[i].to_vec()
    }
}

fn target_of_spec(i: usize, sb: &Sandbox) -> Vec<u8> {
    match TARGETS[i].strip_prefix(b"ABS:") {
        Some(rel) => sb.abs(std::str::from_utf8(rel).unwrap()),
        None => TARGETS[i].to_vec(),
    }
}

fn build(c: &mut Crafter, sb: &Sandbox, specs: &[Spec], sorted: bool) -> Vec<Node> {
    let mut nodes: Vec<Node> = specs
        .iter()
        .map(|s| match s {
            Spec::File(n, seed) => {
                let data = random_bytes(*seed as u64, *seed as usize * 37);
                c.file(&name_of_spec(*n, sb), &data)
            }
            Spec::Link(n, t) => c.symlink(&name_of_spec(*n, sb), &target_of_spec(*t, sb)),
            Spec::Dir(n, v) => {
                let inner = build(c, sb, v, sorted);
                c.dir(&name_of_spec(*n, sb), inner)
            }
        })
        .collect();
    if sorted {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        nodes.dedup_by(|a, b| a.name == b.name);
    }
    nodes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_tree_makes_restore_touch_anything_outside_the_target(
        specs in prop::collection::vec(spec(), 1..6),
        sorted in prop::bool::weighted(0.8),
        planted in prop::collection::vec((0..SAFE, 0..TARGETS.len()), 0..5),
    ) {
        let t = TestRepo::init();
        let sb = Sandbox::new(&t, "box");
        let mut c = Crafter::open(&t.repo, &t.password);
        let root = build(&mut c, &sb, &specs, sorted);
        let top_nodes: Vec<(Vec<u8>, NodeKind)> = root.iter().map(|n| (n.name.clone(), n.kind)).collect();
        let snap = c.snapshot(root);
        // With planted symlinks the target is not empty: restore needs --overwrite.
        for (n, to) in &planted {
            let p = sb.target.join(std::ffi::OsStr::from_bytes(NAMES[*n]));
            let _ = std::os::unix::fs::symlink(
                std::ffi::OsStr::from_bytes(&target_of_spec(*to, &sb)),
                p,
            );
        }
        let before = sb.outside_target();
        let top = top_level(&t);
        let r = t.run(&restore_args(&snap, &sb.target, !planted.is_empty()));
        prop_assert!(
            matches!(r.code, Some(0 | 3 | 13)),
            "unexpected outcome {:?} {:?}\n{}", r.code, r.signal, r.stderr
        );
        prop_assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        assert_same_tree(&before, &sb.outside_target());
        prop_assert_eq!(top, top_level(&t));
        if r.code == Some(0) {
            // A clean exit means the snapshot is there, planted symlinks replaced.
            for (name, kind) in top_nodes {
                let md = fs::symlink_metadata(sb.target.join(std::ffi::OsStr::from_bytes(&name)));
                let ft = md.map_err(|e| TestCaseError::fail(format!("{}: {e}", show(&name))))?.file_type();
                let got = if ft.is_symlink() { NodeKind::Symlink } else if ft.is_dir() { NodeKind::Dir } else { NodeKind::File };
                prop_assert_eq!(got, kind, "{}", show(&name));
            }
        }
    }
}

#[test]
fn set_id_bits_are_kept_only_for_the_recorded_owner() {
    // Restore does not change ownership: a set-user-id file recorded for another owner would
    // become a set-user-id program of whoever restores (root, typically).
    let t = TestRepo::init();
    let me = fs::metadata(t.dir.path()).unwrap();
    let mut c = Crafter::open(&t.repo, &t.password);
    let mut foreign = c.file(b"foreign", b"#!/bin/sh\n");
    (foreign.uid, foreign.gid, foreign.mode) = (4242, 4242, 0o6755);
    let mut own = c.file(b"own", b"#!/bin/sh\n");
    (own.uid, own.gid, own.mode) = (me.uid(), me.gid(), 0o6755);
    let snap = c.snapshot(vec![foreign, own]);
    let out = t.path("out");
    t.run(&restore_args(&snap, &out, false)).expect_code(0);
    let mode = |n: &str| fs::metadata(out.join(n)).unwrap().mode() & 0o7777;
    assert_eq!(mode("foreign"), 0o755);
    assert_eq!(mode("own"), 0o6755);
}
