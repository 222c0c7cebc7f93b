//! Back up and restore whole trees: the restored tree must be byte-identical to the source with
//! modes, mtimes and symlink targets preserved.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use common::*;

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A tree with every kind of awkward entry; returns nothing, the caller scans it.
fn build_rich_tree(src: &Path) {
    fs::create_dir_all(src).unwrap();
    write(&src.join("empty"), b"");
    fs::create_dir_all(src.join("empty_dir")).unwrap();
    write(&src.join("hello.txt"), b"hello\n");
    chmod(&src.join("hello.txt"), 0o600);
    write(&src.join("script.sh"), b"#!/bin/sh\necho hi\n");
    chmod(&src.join("script.sh"), 0o755);
    write(&src.join("readonly"), b"do not touch");
    chmod(&src.join("readonly"), 0o444);
    write(&src.join("setuid-prog"), b"\x7fELF not really");
    chmod(&src.join("setuid-prog"), 0o4750);
    let odd: &[&[u8]] = &[
        b"with space.txt",
        b"new\nline",
        b"tab\tname",
        b"latin1-\xe9\xff\xfe",
        "ünïcödé-日本語-🎉.txt".as_bytes(),
        b"-leading-dash",
        b"*?[glob]{chars}",
        b".hidden",
        b"trailing space ",
        b"back\\slash",
        b"quote'\"",
    ];
    for (i, name) in odd.iter().enumerate() {
        write(
            &bytes_path(src, name),
            &random_bytes(100 + i as u64, 10 + i * 37),
        );
    }
    write(&src.join("nested/a/b/c/d/e/deep.txt"), b"deep down\n");
    write(&src.join("nested/a/sibling.bin"), &random_bytes(7, 300_000));
    write(
        &bytes_path(&src.join("nested/a/b"), b"odd-\xff-dir/inner"),
        b"inner",
    );
    chmod(&src.join("nested"), 0o750);
    chmod(&src.join("nested/a"), 0o700);
    fs::create_dir_all(src.join("sticky")).unwrap();
    chmod(&src.join("sticky"), 0o1777);
    // Identical content twice (deduplicated within one backup) and a multi-chunk file.
    let dup = random_bytes(8, 200_000);
    write(&src.join("dup1"), &dup);
    write(&src.join("dup2"), &dup);
    write(&src.join("medium.bin"), &random_bytes(9, 2_500_000));
    // Symlinks: relative, absolute, dangling, to a directory, with a non-UTF-8 target.
    fs::create_dir_all(src.join("links")).unwrap();
    symlink("../hello.txt", src.join("links/rel")).unwrap();
    symlink("/etc/hostname", src.join("links/abs")).unwrap();
    symlink("does/not/exist", src.join("links/dangling")).unwrap();
    symlink("../nested", src.join("links/to_dir")).unwrap();
    symlink(
        bytes_path(Path::new(""), b"target-\xff\nx"),
        src.join("links/odd"),
    )
    .unwrap();

    // Distinctive mtimes (with nanoseconds, before 1970 and far in the future), set deepest
    // first so setting a child's does not disturb its directory's.
    let mut all: Vec<_> = scan(src).into_keys().collect();
    all.sort_by_key(|k| std::cmp::Reverse(k.len()));
    for (i, rel) in all.iter().enumerate() {
        let p = bytes_path(src, rel);
        let secs = match i % 4 {
            0 => -86_400 * 400 + i as i64,
            1 => 4_102_444_800 + i as i64,
            _ => 1_234_567_890 + i as i64 * 1000,
        };
        let t = filetime::FileTime::from_unix_time(secs, (i as u32 * 7_654_321) % 1_000_000_000);
        if fs::symlink_metadata(&p).unwrap().file_type().is_symlink() {
            filetime::set_symlink_file_times(&p, t, t).unwrap();
        } else {
            filetime::set_file_times(&p, t, t).unwrap();
        }
    }
}

#[test]
fn rich_tree_round_trips_byte_identical() {
    let t = TestRepo::init();
    let src = t.path("src");
    build_rich_tree(&src);
    let expected = scan(&src);
    let (files, dirs, links, bytes) = counts(&expected);

    let b = t.backup(&[&src]);
    assert_eq!(b["files_new"], files, "{b:#}");
    assert_eq!(b["files_read"], files, "{b:#}");
    assert_eq!(b["total_bytes"], bytes, "{b:#}");
    assert_eq!(b["source_errors"].as_array().unwrap().len(), 0, "{b:#}");
    // dup2 is stored once: less is added than was read.
    assert!(b["bytes_added"].as_u64().unwrap() < bytes, "{b:#}");

    // `ls` lists exactly the source paths (non-UTF-8 bytes shown lossily).
    let ls = t.json(&["ls", "latest"]);
    let listed: BTreeSet<String> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    let want: BTreeSet<String> = expected
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(listed, want);

    let out = t.path("out");
    let r = t.restore("latest", &out, &[]);
    assert_eq!(
        (
            r["files"].clone(),
            r["dirs"].clone(),
            r["symlinks"].clone(),
            r["bytes"].clone()
        ),
        (files.into(), dirs.into(), links.into(), bytes.into()),
        "{r:#}"
    );
    assert_same_tree(&expected, &scan(&out));
    // The source was not touched by the backup.
    assert_same_tree(&expected, &scan(&src));
}

#[test]
fn many_small_files_round_trip() {
    let t = TestRepo::init();
    let src = t.path("src");
    let n = 2000;
    for i in 0..n {
        let p = src.join(format!("d{:02}/f{i:04}", i % 30));
        // Every tenth file repeats another's content; some files are empty.
        let seed = if i % 10 == 0 { 1 } else { i as u64 };
        write(&p, &random_bytes(seed, (i * 13) % 900));
        set_mtime(&p, 1_600_000_000 + i as i64, i as u32 * 1000);
    }
    let expected = scan(&src);
    let b = t.backup(&[&src]);
    assert_eq!(b["files_new"], n, "{b:#}");
    assert_eq!(b["dirs"], 30, "{b:#}");
    let out = t.path("out");
    let r = t.restore("latest", &out, &[]);
    assert_eq!(r["files"], n);
    assert_same_tree(&expected, &scan(&out));
}

#[test]
fn large_sparse_file_round_trips() {
    let t = TestRepo::init();
    let src = t.path("src");
    fs::create_dir_all(&src).unwrap();
    let p = src.join("big.img");
    // Just over 100 MiB; the zeros cost reading and hashing only.
    let size: u64 = 101 * 1024 * 1024 + 12_345;
    let f = fs::File::create(&p).unwrap();
    f.set_len(size).unwrap();
    let regions: [(u64, usize); 4] = [
        (0, 65_536),
        (50 * 1024 * 1024 + 3, 2 * 1024 * 1024),
        (90 * 1024 * 1024, 1024 * 1024),
        (size - 1000, 1000),
    ];
    for (i, (off, len)) in regions.iter().enumerate() {
        f.write_all_at(&random_bytes(40 + i as u64, *len), *off)
            .unwrap();
    }
    drop(f);
    write(&src.join("small"), b"next to a big one");
    let expected = scan(&src);

    let b = t.backup(&[&src]);
    assert_eq!(b["total_bytes"], size + 17, "{b:#}");
    assert_eq!(b["bytes_read"], size + 17, "{b:#}");
    // The zeros are one repeated chunk: what is stored is near the size of the random regions.
    let stored = b["bytes_stored"].as_u64().unwrap();
    assert!(
        stored < 12 * 1024 * 1024,
        "stored {stored} bytes for ~3 MiB of non-zero data"
    );

    let out = t.path("out");
    t.restore("latest", &out, &[]);
    assert_same_tree(&expected, &scan(&out));
    // Restore writes all-zero chunks as holes (a dense file would allocate all of it).
    let allocated = fs::metadata(out.join("big.img")).unwrap().blocks() * 512;
    assert!(
        allocated < size / 2,
        "restored file allocates {allocated} of {size} bytes"
    );
}

#[test]
fn several_paths_including_a_single_file() {
    let t = TestRepo::init();
    let a = t.path("alpha");
    let b = t.path("beta");
    let c = t.path("gamma.txt");
    random_files(&a, 1, 3, 5000);
    random_files(&b.join("sub"), 2, 2, 7000);
    write(&c, b"a single file");
    chmod(&c, 0o640);
    set_mtime(&c, 1_111_111_111, 222);

    t.backup(&[&a, &b, &c]);
    let ls = t.json(&["ls", "latest"]);
    let top: BTreeSet<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .filter(|p| !p.contains('/'))
        .collect();
    assert_eq!(top, BTreeSet::from(["alpha", "beta", "gamma.txt"]));

    let out = t.path("out");
    t.restore("latest", &out, &[]);
    assert_same_dir(&a, &out.join("alpha"));
    assert_same_dir(&b, &out.join("beta"));
    let (src_md, out_md) = (
        fs::metadata(&c).unwrap(),
        fs::metadata(out.join("gamma.txt")).unwrap(),
    );
    assert_eq!(fs::read(out.join("gamma.txt")).unwrap(), b"a single file");
    assert_eq!(out_md.mode() & 0o7777, 0o640);
    assert_eq!(
        (out_md.mtime(), out_md.mtime_nsec()),
        (src_md.mtime(), src_md.mtime_nsec())
    );
}
