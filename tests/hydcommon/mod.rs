//! Helpers for the HydrAIDE integration tests (`tests/hyd_*.rs`): a temporary repository driven
//! through the real `hydrabackup` binary, data roots made by `hydgen`, and comparisons of roots.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hydrabackup::hyd::walk::{Found, walk_root};
use serde_json::Value;
use tempfile::TempDir;

/// Password of every test repository.
pub const PASSWORD: &str = "hyd test password";
/// Safety net against a hanging command (not a synchronisation device).
const TIMEOUT: Duration = Duration::from_secs(300);

#[path = "../shared/cleared_vars.rs"]
mod cleared_vars;
use cleared_vars::CLEARED_VARS;

/// Path of the `hydrabackup` binary.
pub fn hb_bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("hydrabackup")
}

/// Path of the `hydgen` binary.
pub fn hydgen_bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("hydgen")
}

/// The outcome of one command.
#[derive(Debug)]
pub struct Out {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Out {
    /// Panics (showing the output) unless the exit code is `code`.
    #[track_caller]
    pub fn expect(&self, code: i32) -> &Out {
        assert_eq!(
            self.code, code,
            "expected exit code {code}, got {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// Stdout as one JSON document, or a long command's JSON-lines stream's last line (its
    /// `summary`).
    #[track_caller]
    pub fn json(&self) -> Value {
        let last = self.stdout.trim_end().lines().last().unwrap_or_default();
        serde_json::from_str(&self.stdout)
            .or_else(|_| serde_json::from_str(last))
            .unwrap_or_else(|e| {
                panic!(
                    "stdout is not JSON: {e}\nstdout:\n{}\nstderr:\n{}",
                    self.stdout, self.stderr
                )
            })
    }
}

/// Runs a prepared command to completion (with a generous timeout).
pub fn run_command(c: Command) -> Out {
    let mut c = assert_cmd::Command::from_std(c);
    c.timeout(TIMEOUT);
    let o = c.output().expect("command runs");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Runs `hydgen` with `args`.
pub fn hydgen<S: AsRef<OsStr>>(args: &[S]) -> Out {
    let mut c = Command::new(hydgen_bin());
    c.args(args);
    run_command(c)
}

/// `hydgen gen` of a root with `swamps` Swamps of about `size` bytes in all (e.g. "3M"),
/// `v2` percent version-2 files and `v1` percent V1 folders.
pub fn gen_root(root: &Path, seed: u64, swamps: u64, size: &str, v2: u32, v1: u32) {
    hydgen(&[
        "gen".as_ref(),
        "--root".as_ref(),
        root.as_os_str(),
        "--seed".as_ref(),
        seed.to_string().as_ref(),
        "--swamps".as_ref(),
        swamps.to_string().as_ref(),
        "--size".as_ref(),
        size.as_ref(),
        "--v2-percent".as_ref(),
        v2.to_string().as_ref(),
        "--v1-percent".as_ref(),
        v1.to_string().as_ref(),
    ] as &[&OsStr])
    .expect(0);
}

/// `hydgen churn --root ROOT --seed SEED EXTRA...`.
pub fn churn_root(root: &Path, seed: u64, extra: &[&str]) -> Out {
    let mut a: Vec<&OsStr> = vec![
        "churn".as_ref(),
        "--root".as_ref(),
        root.as_os_str(),
        "--seed".as_ref(),
    ];
    let s = seed.to_string();
    a.push(s.as_ref());
    a.extend(extra.iter().map(OsStr::new));
    let o = hydgen(&a);
    o.expect(0);
    o
}

/// `hydgen check --root ROOT` must pass.
#[track_caller]
pub fn assert_hydgen_check(root: &Path) {
    hydgen(&["check".as_ref(), "--root".as_ref(), root.as_os_str()] as &[&OsStr]).expect(0);
}

/// A temporary directory with a repository at `repo`.
pub struct Hb {
    /// Removed on drop.
    pub dir: TempDir,
    /// Repository location.
    pub repo: PathBuf,
    /// Run the binary as this user and group id (root tests that need permissions to bite).
    pub run_as: Option<u32>,
}

impl Hb {
    /// A new repository with default `init` parameters.
    pub fn new() -> Hb {
        Hb::with_init(&[])
    }

    /// A new repository created with these extra `init` arguments.
    pub fn with_init(args: &[&str]) -> Hb {
        Hb::create(args, None)
    }

    /// When this process is root and may switch users: a new repository whose commands all run
    /// as `nobody` (uid/gid 65534), so that permission bits apply to them. `None` otherwise.
    pub fn unprivileged() -> Option<Hb> {
        use std::os::unix::process::CommandExt;
        if !is_root() {
            return None;
        }
        // The binary must be reachable for that user, and switching must be allowed.
        let probe = Command::new(hb_bin())
            .arg("--version")
            .uid(65534)
            .gid(65534)
            .output();
        if !probe.is_ok_and(|o| o.status.success()) {
            return None;
        }
        Some(Hb::create(&[], Some(65534)))
    }

    fn create(args: &[&str], run_as: Option<u32>) -> Hb {
        let dir = tempfile::Builder::new()
            .prefix("hydtest")
            .tempdir()
            .expect("tempdir");
        if run_as.is_some() {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
        }
        let repo = dir.path().join("repo");
        let hb = Hb { dir, repo, run_as };
        let mut a = vec!["init"];
        a.extend_from_slice(args);
        hb.run(&a).expect(0);
        hb
    }

    /// A path in the temporary directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The binary with a clean environment, fast Argon2, this repository and its password.
    pub fn command(&self) -> Command {
        let mut c = Command::new(hb_bin());
        for v in CLEARED_VARS {
            c.env_remove(v);
        }
        c.env("HYDRABACKUP_KDF_MEMORY", "64")
            .env("HYDRABACKUP_KDF_ITERATIONS", "1")
            .env("HYDRABACKUP_REPOSITORY", &self.repo)
            .env("HYDRABACKUP_PASSWORD", PASSWORD)
            .env("HYDRABACKUP_CACHE_DIR", self.path("cache"))
            .stdin(std::process::Stdio::null());
        if let Some(id) = self.run_as {
            use std::os::unix::process::CommandExt;
            c.uid(id).gid(id);
        }
        c
    }

    /// Runs the binary with `args`.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Out {
        let mut c = self.command();
        c.args(args);
        run_command(c)
    }

    /// Runs `args --json`, expecting exit 0; returns the document.
    #[track_caller]
    pub fn json<S: AsRef<OsStr>>(&self, args: &[S]) -> Value {
        let mut a: Vec<&OsStr> = args.iter().map(|s| s.as_ref()).collect();
        a.push(OsStr::new("--json"));
        self.run(&a).expect(0).json()
    }

    /// `backup --json EXTRA... ROOT`, whatever the exit code.
    pub fn backup_any(&self, root: &Path, extra: &[&str]) -> Out {
        let mut a: Vec<&OsStr> = vec![OsStr::new("backup"), OsStr::new("--json")];
        a.extend(extra.iter().map(OsStr::new));
        a.push(root.as_os_str());
        self.run(&a)
    }

    /// `backup --json EXTRA... ROOT`, expecting exit 0.
    #[track_caller]
    pub fn backup(&self, root: &Path, extra: &[&str]) -> Value {
        self.backup_any(root, extra).expect(0).json()
    }

    /// `restore SNAP --target TARGET --json EXTRA...`, expecting exit 0.
    #[track_caller]
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

    /// `show SNAP --json`: the Swamp rows by path.
    #[track_caller]
    pub fn show(&self, snap: &str) -> BTreeMap<String, Value> {
        let v = self.json(&["show", snap]);
        v["swamps"]
            .as_array()
            .expect("swamps array")
            .iter()
            .map(|s| (s["path"].as_str().expect("path").to_string(), s.clone()))
            .collect()
    }

    /// Number of files in the repository folder.
    pub fn repo_file_count(&self) -> usize {
        files_below(&self.repo).len()
    }
}

/// Every regular file below `dir`, as paths relative to it, sorted.
pub fn files_below(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(d) else { return };
        for e in rd {
            let p = e.expect("dir entry").path();
            let md = fs::symlink_metadata(&p).expect("lstat");
            if md.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(rel(root, &p));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `p` relative to `root`, `/`-separated.
pub fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .unwrap_or_else(|_| panic!("{} is not below {}", p.display(), root.display()))
        .to_str()
        .expect("UTF-8 path")
        .to_string()
}

/// A file as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    /// Content.
    pub bytes: Vec<u8>,
    /// Modification time, unix ns.
    pub mtime_ns: i64,
    /// Inode.
    pub ino: u64,
}

/// Every regular file below `root` with its content, by relative path.
pub fn read_files(root: &Path) -> BTreeMap<String, FileState> {
    files_below(root)
        .into_iter()
        .map(|r| {
            let p = root.join(&r);
            let md = fs::metadata(&p).expect("stat");
            let bytes = fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            (
                r,
                FileState {
                    bytes,
                    mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
                    ino: md.ino(),
                },
            )
        })
        .collect()
}

/// Asserts two sets of files have the same paths and contents (a short list of differences
/// otherwise).
#[track_caller]
pub fn assert_same_content(
    expected: &BTreeMap<String, FileState>,
    actual: &BTreeMap<String, FileState>,
) {
    let mut diffs = Vec::new();
    for (k, v) in expected {
        match actual.get(k) {
            None => diffs.push(format!("missing: {k}")),
            Some(a) if a.bytes != v.bytes => diffs.push(format!(
                "differs: {k} ({} bytes expected, {} found)",
                v.bytes.len(),
                a.bytes.len()
            )),
            _ => {}
        }
    }
    for k in actual.keys().filter(|k| !expected.contains_key(*k)) {
        diffs.push(format!("unexpected: {k}"));
    }
    assert!(
        diffs.is_empty(),
        "{} difference(s) ({} files expected, {} found):\n{}",
        diffs.len(),
        expected.len(),
        actual.len(),
        diffs
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A Swamp under a data root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swamp {
    /// A `.hyd` file (relative path).
    Hyd(String),
    /// A V1 folder (relative path) and its files (relative paths).
    V1(String, Vec<String>),
}

impl Swamp {
    /// Relative path of the file or folder.
    pub fn path(&self) -> &str {
        match self {
            Swamp::Hyd(p) | Swamp::V1(p, _) => p,
        }
    }

    /// Relative paths of the files that make it up.
    pub fn files(&self) -> Vec<String> {
        match self {
            Swamp::Hyd(p) => vec![p.clone()],
            Swamp::V1(_, f) => f.clone(),
        }
    }
}

/// The Swamps under `root`, by relative path.
pub fn swamps(root: &Path) -> BTreeMap<String, Swamp> {
    walk_root(root)
        .expect("walk root")
        .into_iter()
        .filter_map(|f| match f {
            Found::Hyd(p) => {
                let r = rel(root, &p);
                Some((r.clone(), Swamp::Hyd(r)))
            }
            Found::V1(v) => {
                let r = rel(root, &v.dir);
                let files = files_below(&v.dir)
                    .into_iter()
                    .map(|f| format!("{r}/{f}"))
                    .collect();
                Some((r.clone(), Swamp::V1(r, files)))
            }
            _ => None,
        })
        .collect()
}

/// The swamp-name of every `.hyd` file under `root` (replayed) and every V1 folder (from meta),
/// by relative path.
pub fn swamp_names(root: &Path) -> BTreeMap<String, String> {
    swamps(root)
        .into_values()
        .filter_map(|s| {
            let p = root.join(s.path());
            let name = match &s {
                Swamp::Hyd(_) => hydrabackup::hyd::replay_file(&p).ok()?.name?,
                Swamp::V1(..) => hydrabackup::hyd::v1::read_meta(&p)?.swamp_name,
            };
            Some((s.path().to_string(), name))
        })
        .collect()
}

/// A JSON number field as u64 (panics with the document if absent).
#[track_caller]
pub fn num(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing in {v:#}"))
}

/// Whether this process runs as root (permission bits then do not block reads).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
