//! Shared helpers for the integration tests: a temporary repository driven through the real
//! binary with a clean environment, deterministic test data, tree comparison and repository
//! inspection.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_hydrabackup");

/// Runs the `hydgen` test-data generator with `args`, expecting success.
pub fn hydgen(args: &[&str]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hydgen"))
        .args(args)
        .output()
        .expect("hydgen runs");
    assert!(
        out.status.success(),
        "hydgen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
/// The password every test repository is created with.
pub const PASSWORD: &str = "correct horse battery staple";
/// Safety net against a hanging command (not a synchronisation device).
const TIMEOUT: Duration = Duration::from_secs(120);

#[path = "../shared/cleared_vars.rs"]
mod cleared_vars;
use cleared_vars::CLEARED_VARS;

/// The result of one run of the binary.
#[derive(Debug)]
pub struct Run {
    /// Exit code (None when killed by a signal).
    pub code: Option<i32>,
    /// Terminating signal, if any.
    pub signal: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    fn from_output(o: std::process::Output) -> Run {
        Run {
            code: o.status.code(),
            signal: o.status.signal(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Panics (showing the output) unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit code {code}, got {:?} (signal {:?})\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.signal,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Stdout parsed as one JSON document, or for a long command's stream of JSON lines its
    /// last line (the `summary`, or the `exit_error`); panics with the output otherwise.
    pub fn json(&self) -> Value {
        if let Ok(v) = serde_json::from_str(&self.stdout) {
            return v;
        }
        let last = self.messages().pop().unwrap_or_default();
        assert!(
            matches!(
                last["message_type"].as_str(),
                Some("summary" | "exit_error")
            ),
            "the stream does not end with a summary: {last}\nstdout:\n{}",
            self.stdout
        );
        last
    }

    /// Stdout parsed as JSON lines, one value each (panics with the output if a line is not).
    pub fn messages(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!(
                        "stdout is not JSON lines: {e} in {l:?}\nstdout:\n{}\nstderr:\n{}",
                        self.stdout, self.stderr
                    )
                })
            })
            .collect()
    }

    /// Asserts the error output is one clean line: no panic, no backtrace.
    pub fn expect_clean_error(&self) -> &Run {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "expected a one-line error, got:\n{}",
            self.stderr
        );
        assert!(
            lines[0].starts_with("hydrabackup: error: "),
            "unexpected error line: {}",
            lines[0]
        );
        for bad in ["panicked", "backtrace", "RUST_BACKTRACE", "thread '"] {
            assert!(
                !self.stderr.contains(bad),
                "stderr contains {bad:?}:\n{}",
                self.stderr
            );
        }
        self
    }
}

/// A temporary directory holding a repository (at `repo`) and whatever a test puts next to it.
pub struct TestRepo {
    /// The temporary directory (removed on drop).
    pub dir: TempDir,
    /// The repository location.
    pub repo: PathBuf,
    /// The password used by [`TestRepo::command`].
    pub password: String,
    /// Extra environment for every command (e.g. S3 credentials).
    pub env: Vec<(String, String)>,
}

impl TestRepo {
    /// A temporary directory with no repository yet.
    pub fn new() -> TestRepo {
        let dir = tempfile::Builder::new()
            .prefix("hbtest")
            .tempdir()
            .expect("tempdir");
        let repo = dir.path().join("repo");
        TestRepo {
            dir,
            repo,
            password: PASSWORD.into(),
            env: Vec::new(),
        }
    }

    /// A fresh repository created with `init` and default parameters.
    pub fn init() -> TestRepo {
        Self::init_with(&[])
    }

    /// A fresh repository created with `init` and these extra arguments.
    pub fn init_with(args: &[&str]) -> TestRepo {
        let t = TestRepo::new();
        let mut a = vec!["init", "--json"];
        a.extend_from_slice(args);
        let v = t.run(&a).expect_code(0).json();
        assert_eq!(v["repository"].as_str(), Some(t.repo.to_str().unwrap()));
        t
    }

    /// A path inside the temporary directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The binary with a clean environment, fast Argon2, this repository and its password.
    pub fn command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(BIN);
        for v in CLEARED_VARS {
            c.env_remove(v);
        }
        c.env("HYDRABACKUP_KDF_MEMORY", "64")
            .env("HYDRABACKUP_KDF_ITERATIONS", "1")
            .env("HYDRABACKUP_REPOSITORY", &self.repo)
            .env("HYDRABACKUP_PASSWORD", &self.password)
            .env("HYDRABACKUP_CACHE_DIR", self.path("cache"))
            // A panic would print a backtrace, which the error tests look for.
            .env("RUST_BACKTRACE", "1")
            .stdin(std::process::Stdio::null());
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Runs the binary with `args`.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Run {
        let mut c = self.command();
        c.args(args);
        run_cmd(c)
    }
}

/// Runs a prepared command (see [`TestRepo::command`]) to completion.
pub fn run_cmd(c: std::process::Command) -> Run {
    let mut c = assert_cmd::Command::from_std(c);
    c.timeout(TIMEOUT);
    Run::from_output(c.output().expect("the binary runs"))
}

impl TestRepo {
    /// Runs `args --json`, expects exit 0 and returns the parsed output.
    pub fn json<S: AsRef<OsStr>>(&self, args: &[S]) -> Value {
        let mut a: Vec<&OsStr> = args.iter().map(|s| s.as_ref()).collect();
        a.push(OsStr::new("--json"));
        self.run(&a).expect_code(0).json()
    }

    /// `backup --json PATHS...` expecting exit 0.
    pub fn backup(&self, paths: &[&Path]) -> Value {
        self.backup_args(paths, &[])
    }

    /// `backup --json EXTRA... PATHS...` expecting exit 0.
    pub fn backup_args(&self, paths: &[&Path], extra: &[&str]) -> Value {
        let mut a: Vec<&OsStr> = vec![OsStr::new("backup")];
        a.extend(extra.iter().map(OsStr::new));
        a.extend(paths.iter().map(|p| p.as_os_str()));
        let v = self.json(&a);
        assert!(
            v["snapshot_id"].is_string() || v["dry_run"] == true,
            "no snapshot id: {v}"
        );
        v
    }

    /// `snapshots --json`.
    pub fn snapshots(&self) -> Vec<Value> {
        self.json(&["snapshots"])
            .as_array()
            .expect("snapshots is an array")
            .clone()
    }

    /// `restore SNAP --target TARGET --json EXTRA...` expecting exit 0.
    pub fn restore(&self, snap: &str, target: &Path, extra: &[&str]) -> Value {
        let mut a: Vec<&OsStr> = vec![
            OsStr::new("restore"),
            OsStr::new(snap),
            OsStr::new("--target"),
            target.as_os_str(),
        ];
        a.extend(extra.iter().map(OsStr::new));
        self.json(&a)
    }

    /// `verify --json EXTRA...`, whatever its exit code; returns (code, report).
    pub fn verify(&self, extra: &[&str]) -> (i32, Value) {
        let mut a = vec!["verify", "--json"];
        a.extend_from_slice(extra);
        let r = self.run(&a);
        let code = r.code.unwrap_or_else(|| panic!("verify was killed: {r:?}"));
        (code, r.json())
    }

    /// Asserts `verify` (with `extra`) passes with no problems.
    pub fn assert_verify_ok(&self, extra: &[&str]) -> Value {
        let (code, v) = self.verify(extra);
        assert_eq!(code, 0, "verify {extra:?} failed: {v:#}");
        assert_eq!(v["ok"], true, "{v:#}");
        assert_eq!(v["problems"].as_array().map(Vec::len), Some(0), "{v:#}");
        v
    }
}

// ---------------------------------------------------------------------------------------------
// Test data

/// Deterministic incompressible bytes (splitmix64): distinct seeds give unrelated data.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes a file, creating its parent directories.
pub fn write(path: &Path, data: &[u8]) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).expect("create parent");
    }
    fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Sets a file's (or directory's) mtime and atime.
pub fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    let t = filetime::FileTime::from_unix_time(secs, nanos);
    filetime::set_file_times(path, t, t)
        .unwrap_or_else(|e| panic!("set mtime {}: {e}", path.display()));
}

/// A path from raw bytes (for names that are not UTF-8).
pub fn bytes_path(base: &Path, name: &[u8]) -> PathBuf {
    base.join(OsStr::from_bytes(name))
}

/// Source with `n` files of `size` random bytes each (seeded by `seed`) under `dir`.
pub fn random_files(dir: &Path, seed: u64, n: usize, size: usize) {
    for i in 0..n {
        write(
            &dir.join(format!("file{i:03}.bin")),
            &random_bytes(seed * 1000 + i as u64, size),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Tree comparison

/// What an entry of a scanned tree is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A regular file: size and BLAKE3 of its bytes.
    File { size: u64, hash: String },
    /// A directory.
    Dir,
    /// A symbolic link and its raw target.
    Symlink(Vec<u8>),
}

/// One scanned entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What it is.
    pub content: Content,
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, i64),
}

/// A scanned tree: raw relative path → entry (the root itself is not included).
pub type Tree = BTreeMap<Vec<u8>, Entry>;

/// BLAKE3 of a file's content.
pub fn hash_file(path: &Path) -> String {
    let f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = blake3::Hasher::new();
    h.update_reader(f)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    h.finalize().to_hex().to_string()
}

/// Scans everything below `root` (symlinks are not followed).
pub fn scan(root: &Path) -> Tree {
    let mut out = Tree::new();
    scan_into(root, root, &mut out);
    out
}

fn scan_into(root: &Path, dir: &Path, out: &mut Tree) {
    for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display())) {
        let p = e.expect("dir entry").path();
        let md = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
        let rel = p
            .strip_prefix(root)
            .expect("below root")
            .as_os_str()
            .as_bytes()
            .to_vec();
        let ft = md.file_type();
        let content = if ft.is_dir() {
            scan_into(root, &p, out);
            Content::Dir
        } else if ft.is_symlink() {
            Content::Symlink(
                fs::read_link(&p)
                    .expect("readlink")
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
            )
        } else {
            Content::File {
                size: md.len(),
                hash: hash_file(&p),
            }
        };
        out.insert(
            rel,
            Entry {
                content,
                mode: md.mode() & 0o7777,
                mtime: (md.mtime(), md.mtime_nsec()),
            },
        );
    }
}

/// Shows a raw path readably.
pub fn show(p: &[u8]) -> String {
    p.escape_ascii().to_string()
}

/// Asserts two scanned trees are identical, listing the differences if not.
pub fn assert_same_tree(expected: &Tree, actual: &Tree) {
    if expected == actual {
        return;
    }
    let mut msg = String::new();
    for (k, v) in expected {
        match actual.get(k) {
            None => msg += &format!("missing: {}\n", show(k)),
            Some(a) if a != v => {
                msg += &format!("differs: {}\n  expected {v:?}\n  actual   {a:?}\n", show(k))
            }
            _ => {}
        }
    }
    for k in actual.keys().filter(|k| !expected.contains_key(*k)) {
        msg += &format!("unexpected: {}\n", show(k));
    }
    panic!(
        "trees differ ({} vs {} entries):\n{msg}",
        expected.len(),
        actual.len()
    );
}

/// Asserts that `restored` holds exactly what `source` holds: content, modes, mtimes, links.
pub fn assert_same_dir(source: &Path, restored: &Path) {
    assert_same_tree(&scan(source), &scan(restored));
}

/// Counts (files, dirs, symlinks, file bytes) of a scanned tree.
pub fn counts(t: &Tree) -> (u64, u64, u64, u64) {
    let mut c = (0, 0, 0, 0);
    for e in t.values() {
        match &e.content {
            Content::File { size, .. } => {
                c.0 += 1;
                c.3 += size;
            }
            Content::Dir => c.1 += 1,
            Content::Symlink(_) => c.2 += 1,
        }
    }
    c
}

// ---------------------------------------------------------------------------------------------
// Repository inspection

/// All regular files below `repo/sub`, sorted.
pub fn repo_files(repo: &Path, sub: &str) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(d) else { return };
        for e in rd {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo.join(sub), &mut out);
    out.sort();
    out
}

/// The pack files of a repository.
pub fn packs(repo: &Path) -> Vec<PathBuf> {
    repo_files(repo, "data")
}

/// The file name of a path as a string.
pub fn name_of(p: &Path) -> String {
    p.file_name()
        .expect("file name")
        .to_str()
        .expect("UTF-8 name")
        .to_string()
}

/// Asserts every content-addressed object (packs, index files, snapshots, keys) is complete:
/// its name is the BLAKE3 hash of its bytes. A half-written object under a real name fails this.
pub fn assert_objects_complete(repo: &Path) {
    for sub in ["data", "index", "snapshots", "keys"] {
        for p in repo_files(repo, sub) {
            let h = hash_file(&p);
            assert_eq!(
                h,
                name_of(&p),
                "{} is not complete (its content does not hash to its name)",
                p.display()
            );
        }
    }
}

/// Whether this process runs as root (where permission bits do not block reads).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Flips one bit of a file at `offset`.
pub fn flip_bit(path: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open for damage");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).expect("read byte");
    b[0] ^= 0x10;
    f.write_all_at(&b, offset).expect("write byte");
}

/// Length of the blob area of a pack file (everything before the sealed header and trailer).
pub fn pack_blob_area(path: &Path) -> u64 {
    let bytes = fs::read(path).expect("read pack");
    let n = bytes.len();
    let hl = u32::from_le_bytes(bytes[n - 4..].try_into().unwrap()) as usize;
    assert!(hl + 4 <= n, "pack trailer is implausible");
    (n - 4 - hl) as u64
}

/// A loopback port nothing listens on (at the time of asking).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// Rewrites the latest snapshot so that its file `d/f` sits under `depth` folders named `d`:
/// a tree chain far deeper than any path the system accepts, made through the library.
pub fn deepen_latest(t: &TestRepo, depth: usize) {
    use hydrabackup::backend::FileKind;
    use hydrabackup::repo::blob::{BlobType, seal_blob};
    use hydrabackup::repo::tree::Tree;
    use hydrabackup::repo::writer::PackWriter;

    let backend = hydrabackup::backend::open(t.repo.to_str().unwrap()).unwrap();
    let repo = hydrabackup::repo::Repository::open(backend.into(), t.password.as_bytes()).unwrap();
    let index = repo.load_index().unwrap();
    let (_, mut snap) = repo.find_snapshot("latest").unwrap();
    let root = repo.load_tree(&index, &snap.tree).unwrap();
    let d = root.find(b"d").unwrap().clone();
    let writer = PackWriter::new(&repo, 1, false);
    let tx = writer.sender();
    let mut top = d.subtree.unwrap();
    for _ in 0..depth {
        let mut n = d.clone();
        n.subtree = Some(top);
        let bytes = Tree { nodes: vec![n] }.encode();
        top = repo.keys().blob_id(&bytes);
        tx.send(seal_blob(repo.keys(), BlobType::Tree, top, &bytes, 1))
            .unwrap();
    }
    drop(tx);
    writer.finish(false).unwrap();
    snap.tree = top;
    snap.names = None;
    snap.time = "2030-01-01T00:00:00Z".into();
    repo.save_object(FileKind::Snapshot, &snap).unwrap();
}
