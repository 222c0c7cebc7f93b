//! The local cache (README "Local cache"): a second command against a remote repository reads
//! only listings; a damaged cache entry is never used; what the repository lost the cache loses;
//! `--no-cache` writes nothing; 1,000 snapshots list and restore `--at` reading only new ones.

mod common;
mod restcommon;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use common::*;
use restcommon::*;
use serde_json::Value;

/// A loopback TCP proxy that keeps every byte clients send, to count HTTP requests.
/// The bytes one client connection sent.
type Sent = Arc<Mutex<Vec<u8>>>;

struct CountProxy {
    port: u16,
    sent: Arc<Mutex<Vec<Sent>>>,
}

impl CountProxy {
    fn start(target: u16) -> CountProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
        let all = sent.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let log: Sent = Arc::default();
                all.lock().unwrap().push(log.clone());
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                thread::spawn(move || pipe(c2, s2, Some(log)));
                thread::spawn(move || pipe(server, client, None));
            }
        });
        CountProxy { port, sent }
    }

    /// Every request so far as "METHOD PATH", then forgets them.
    fn take(&self) -> Vec<String> {
        let mut out = Vec::new();
        for conn in self.sent.lock().unwrap().iter() {
            let mut b = conn.lock().unwrap();
            let text = String::from_utf8_lossy(&b);
            // A request head starts the stream or follows a CRLF; bodies here are sealed bytes.
            for (i, _) in text.match_indices(" HTTP/1.1\r\n") {
                let start = text[..i].rfind("\r\n").map_or(0, |p| p + 2);
                let line = &text[start..i];
                if ["GET ", "HEAD ", "POST ", "DELETE "]
                    .iter()
                    .any(|m| line.starts_with(m))
                {
                    out.push(line.to_string());
                }
            }
            b.clear();
        }
        out
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, log: Option<Sent>) {
    let mut buf = [0u8; 65536];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(l) = &log {
            l.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// The requests that read objects (snapshots, index files, packs), not listings, keys,
/// config or locks.
fn object_reads(reqs: &[String]) -> Vec<&String> {
    reqs.iter()
        .filter(|r| {
            r.starts_with("GET ")
                && ["/snapshots/", "/index/", "/data/"]
                    .iter()
                    .any(|k| r.contains(k) && !r.ends_with(k))
        })
        .collect()
}

/// A REST server behind a counting proxy, a repository `r` on it and a backed-up HydrAIDE root
/// (two snapshots); returns the location and the source.
fn rest_repo(t: &TestRepo) -> (Server, CountProxy, String, PathBuf) {
    let s = Server::start(t, &["--no-auth"]);
    let port: u16 = s.addr().rsplit_once(':').unwrap().1.parse().unwrap();
    let proxy = CountProxy::start(port);
    let loc = format!("rest:http://127.0.0.1:{}/r", proxy.port);
    hb(t, &loc, None, &["init"]).expect_code(0);
    let src = t.path("src");
    let root = src.to_str().unwrap();
    hydgen(&[
        "gen",
        "--root",
        root,
        "--seed",
        "7",
        "--swamps",
        "60",
        "--size",
        "2M",
        "--v2-percent",
        "20",
        "--v1-percent",
        "10",
    ]);
    hb(t, &loc, None, &["backup", "-q", src.to_str().unwrap()]).expect_code(0);
    hydgen(&["churn", "--root", src.to_str().unwrap(), "--seed", "8"]);
    hb(t, &loc, None, &["backup", "-q", src.to_str().unwrap()]).expect_code(0);
    (s, proxy, loc, src)
}

/// Runs `args --json` against `loc`, expecting exit 0.
fn json(t: &TestRepo, loc: &str, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    hb(t, loc, None, &a).expect_code(0).json()
}

/// The read commands of the tests: snapshots, ls, restore of one Swamp by name into `target`;
/// their outputs and the restored bytes.
fn read_commands(t: &TestRepo, loc: &str, target: &Path) -> (Value, Value, Vec<u8>) {
    let snaps = json(t, loc, &["snapshots"]);
    let ls = json(t, loc, &["ls", "latest"]);
    let show = json(t, loc, &["show", "latest"]);
    let one = show["swamps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["format"] == 3)
        .expect("a .hyd Swamp");
    let name = one["name"].as_str().unwrap();
    let _ = std::fs::remove_dir_all(target);
    let r = json(
        t,
        loc,
        &[
            "restore",
            "latest",
            "--swamp",
            name,
            "--target",
            target.to_str().unwrap(),
        ],
    );
    assert_eq!(r["files"], 1, "{r:#}");
    let bytes = std::fs::read(target.join(one["path"].as_str().unwrap())).unwrap();
    (snaps, ls, bytes)
}

#[test]
fn a_second_command_against_a_rest_repository_reads_only_listings() {
    let t = TestRepo::new();
    let (_s, proxy, loc, _src) = rest_repo(&t);
    let target = t.path("out");
    proxy.take();
    let first = read_commands(&t, &loc, &target);
    let reqs = proxy.take();
    let fetched = object_reads(&reqs);
    // The index file of the second backup and the trees were not cached yet.
    assert!(fetched.iter().any(|r| r.contains("/index/")), "{reqs:#?}");
    assert!(fetched.iter().any(|r| r.contains("/data/")), "{reqs:#?}");

    let second = read_commands(&t, &loc, &target);
    let reqs = proxy.take();
    // The restored Swamp's data blobs are read again (data is not cached); nothing else is.
    let again: Vec<&String> = object_reads(&reqs);
    assert!(
        again.iter().all(|r| r.contains("/data/")),
        "second run read objects: {again:#?}"
    );
    let data_first = fetched.iter().filter(|r| r.contains("/data/")).count();
    assert!(
        again.len() < data_first,
        "{} pack reads, first run {data_first}",
        again.len()
    );
    assert_eq!(first, second, "the cache changes no answer");
    eprintln!(
        "requests reading objects: first run {}, second run {}",
        fetched.len(),
        again.len()
    );
    // What is in the cache: the snapshot list, index files, trees.
    let cache = only_repo_cache(&t);
    for sub in ["snapshots/list", "objects/index", "trees"] {
        assert!(cache.join(sub).exists(), "{sub} missing in the cache");
    }
    // Private, and tagged so that backup tools skip it.
    use std::os::unix::fs::PermissionsExt;
    let mode = cache.join("trees").metadata().unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    let tag = std::fs::read_to_string(t.path("cache/CACHEDIR.TAG")).unwrap();
    assert!(tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55"));
}

/// The one repository folder in the test's cache root.
fn only_repo_cache(t: &TestRepo) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(t.path("cache"))
        .expect("a cache root")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().unwrap()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn damaged_cache_entries_are_dropped_and_read_again() {
    let t = TestRepo::new();
    let (_s, proxy, loc, _src) = rest_repo(&t);
    let target = t.path("out");
    let first = read_commands(&t, &loc, &target);
    let cache = only_repo_cache(&t);
    let trees = files_under(&cache.join("trees"));
    let indexes = files_under(&cache.join("objects/index"));
    assert!(trees.len() >= 2 && !indexes.is_empty());
    // A flipped bit in every cached object; one tree's file holds another tree (a valid blob
    // under the wrong name); the snapshot list is cut short.
    for f in indexes.iter().chain(&trees[1..]) {
        let len = f.metadata().unwrap().len();
        flip_bit(f, len / 2);
    }
    std::fs::copy(&trees[1], &trees[0]).unwrap();
    let list = cache.join("snapshots/list");
    let len = list.metadata().unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&list)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    proxy.take();
    let second = read_commands(&t, &loc, &target);
    assert_eq!(first, second, "damaged cache entries changed an answer");
    let reqs = proxy.take();
    let reads = object_reads(&reqs);
    assert!(reads.iter().any(|r| r.contains("/snapshots/")), "{reqs:#?}");
    assert!(reads.iter().any(|r| r.contains("/index/")), "{reqs:#?}");
    // The damaged files were replaced by good copies: a third run reads no index or snapshot.
    read_commands(&t, &loc, &target);
    let reqs = proxy.take();
    let reads = object_reads(&reqs);
    assert!(reads.iter().all(|r| r.contains("/data/")), "{reads:#?}");
    for f in &indexes {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            hydrabackup::Id::of_stored(&std::fs::read(f).unwrap()).to_hex(),
            name,
            "cached index file {name} was not replaced"
        );
    }
}

#[test]
fn a_snapshot_forgotten_by_another_process_leaves_the_cached_list() {
    let t = TestRepo::init();
    let src = t.path("src");
    random_files(&src, 1, 3, 1000);
    for i in 0..3 {
        t.backup_args(
            &[&src],
            &["--time", &format!("2026-01-0{}T10:00:00Z", i + 1)],
        );
    }
    let ids: Vec<String> = t
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    // Another machine (its own cache) forgets the middle one.
    let mut c = t.command();
    c.env("HYDRABACKUP_CACHE_DIR", t.path("other-cache"))
        .args(["--yes", "forget", &ids[1]]);
    run_cmd(c).expect_code(0);
    let left: Vec<String> = t
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, [ids[0].clone(), ids[2].clone()]);
    let at = t.json(&[
        "restore",
        "--at",
        "2026-01-02T12:00:00Z",
        "--dry-run",
        "--target",
        t.path("out").to_str().unwrap(),
    ]);
    assert_eq!(at["snapshot_id"].as_str(), Some(ids[0].as_str()), "{at:#}");
    // A local repository caches only the snapshot list.
    let cache = only_repo_cache(&t);
    let files = files_under(&cache);
    assert_eq!(files, [cache.join("snapshots/list")]);
}

#[test]
fn no_cache_writes_nothing() {
    let t = TestRepo::new();
    let s = Server::start(&t, &["--no-auth"]);
    let loc = s.location(None, "r");
    hb(&t, &loc, None, &["init"]).expect_code(0);
    let src = t.path("src");
    random_files(&src, 2, 5, 20_000);
    let out = t.path("out");
    for args in [
        vec!["backup", src.to_str().unwrap()],
        vec!["snapshots"],
        vec!["ls", "latest"],
        vec!["restore", "latest", "--target", out.to_str().unwrap()],
    ] {
        let mut a = vec!["--no-cache"];
        a.extend(args);
        hb(&t, &loc, None, &a).expect_code(0);
    }
    assert_same_dir(&src, &out);
    assert!(!t.path("cache").exists(), "--no-cache wrote a cache");
    // Without it the same command does write one.
    hb(&t, &loc, None, &["snapshots"]).expect_code(0);
    assert!(only_repo_cache(&t).join("snapshots/list").exists());
}

/// Stores copies `minutes` of the latest snapshot, copy `i` at minute `i` of 2026-01-01,
/// through the library (a loop of backups would take minutes).
fn store_snapshot_copies(t: &TestRepo, minutes: std::ops::Range<usize>) -> Vec<String> {
    use hydrabackup::backend::FileKind;
    use hydrabackup::repo::Repository;
    let b = hydrabackup::backend::open(t.repo.to_str().unwrap()).unwrap();
    let repo = Repository::open(Arc::from(b), t.password.as_bytes()).unwrap();
    let (_, base) = repo.find_snapshot("latest").unwrap();
    let start: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    minutes
        .map(|i| {
            let mut s = base.clone();
            s.time = (start + jiff::SignedDuration::from_secs(60 * i as i64)).to_string();
            repo.save_object(FileKind::Snapshot, &s).unwrap().to_hex()
        })
        .collect()
}

/// `-v snapshots`: how many snapshot objects were read from the repository (the log line
/// "snapshots read ... fetched=N").
fn fetched(t: &TestRepo, extra: &[&str]) -> (usize, f64) {
    let mut a = vec!["-v", "snapshots", "--json"];
    a.extend_from_slice(extra);
    let start = Instant::now();
    let r = t.run(&a);
    let secs = start.elapsed().as_secs_f64();
    r.expect_code(0);
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains("snapshots read"))
        .unwrap_or_else(|| panic!("no log line: {}", r.stderr));
    let n = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("fetched="))
        .expect("fetched=")
        .parse()
        .unwrap();
    (n, secs)
}

#[test]
fn a_thousand_snapshots_list_and_restore_at_reading_only_the_new_ones() {
    let t = TestRepo::init();
    let src = t.path("src");
    random_files(&src, 3, 4, 5000);
    t.backup(&[&src]);
    let ids = store_snapshot_copies(&t, 0..1000);
    let (n, cold) = fetched(&t, &[]);
    assert_eq!(n, 1001, "a cold cache reads every snapshot");
    let (n, warm) = fetched(&t, &[]);
    assert_eq!(n, 0, "a warm cache reads none");
    let (n, uncached) = fetched(&t, &["--no-cache"]);
    assert_eq!(n, 1001);
    eprintln!("1,001 snapshots: cold {cold:.3}s, warm {warm:.3}s, --no-cache {uncached:.3}s");
    let listed = t.snapshots();
    assert_eq!(listed.len(), 1001);
    // One more, written by another process: only it is read.
    store_snapshot_copies(&t, 1000..1001);
    let (n, _) = fetched(&t, &[]);
    assert_eq!(n, 1, "only the new snapshot is read");
    let (n, _) = fetched(&t, &[]);
    assert_eq!(n, 0);
    // restore --at picks the last snapshot at or before the time, from the cached list.
    let start = Instant::now();
    let at = t.json(&[
        "restore",
        "--at",
        "2026-01-01T08:20:30Z",
        "--target",
        t.path("out").to_str().unwrap(),
    ]);
    eprintln!("restore --at: {:.3}s", start.elapsed().as_secs_f64());
    assert_eq!(
        at["snapshot_id"].as_str(),
        Some(ids[500].as_str()),
        "{at:#}"
    );
    assert_same_dir(&src, &t.path("out"));
}

#[test]
fn the_cache_follows_prune_and_verify_reads_the_repository_itself() {
    let t = TestRepo::new();
    let (_s, _proxy, loc, _src) = rest_repo(&t);
    let target = t.path("out");
    read_commands(&t, &loc, &target);
    // Several processes fill one cold cache at once; all agree.
    std::fs::remove_dir_all(t.path("cache")).unwrap();
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let mut c = t.command();
            c.env("HYDRABACKUP_REPOSITORY", &loc)
                .args(["ls", "latest", "--json"])
                .stdout(std::process::Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    let outs: Vec<_> = runs
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    assert!(outs.iter().all(|o| o.status.success()));
    assert!(outs.windows(2).all(|w| w[0].stdout == w[1].stdout));

    // Forget the first snapshot and prune elsewhere: the cache keeps only what the repository
    // still lists.
    let old = json(&t, &loc, &["snapshots"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut c = t.command();
    c.env("HYDRABACKUP_REPOSITORY", &loc)
        .env("HYDRABACKUP_CACHE_DIR", t.path("other-cache"))
        .args(["--yes", "forget", &old, "--prune"]);
    run_cmd(c).expect_code(0);
    let ls = json(&t, &loc, &["ls", "latest"]);
    assert!(!ls.as_array().unwrap().is_empty());
    let names = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = files_under(dir)
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let cache = only_repo_cache(&t);
    let server = t.path("srv/r");
    assert_eq!(
        names(&cache.join("objects/index")),
        names(&server.join("index"))
    );
    assert_eq!(json(&t, &loc, &["snapshots"]).as_array().unwrap().len(), 1);

    // Damage in the repository that the cache hides from `ls` is found by verify.
    let index = files_under(&server.join("index"));
    flip_bit(&index[0], 40);
    hb(&t, &loc, None, &["ls", "latest"]).expect_code(0);
    hb(&t, &loc, None, &["verify"]).expect_code(13);
}
