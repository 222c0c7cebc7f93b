//! The command-line front end: parses flags, opens the repository, calls one operation and
//! prints its result (human text, or JSON with --json). Errors become one line and an exit code.

mod args;
mod copy;
mod forget;
mod password;
mod progress;
mod show;
mod stats;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Parser;
use hydrabackup::backend;
use hydrabackup::crypto::KdfParams;
use hydrabackup::ops::backup::{BackupOptions, backup};
use hydrabackup::ops::progress::Progress;
use hydrabackup::ops::restore::{RestoreOptions, restore, walk_tree};
use hydrabackup::ops::verify::{ReadData, VerifyOptions, verify};
use hydrabackup::repo::Repository;
use hydrabackup::repo::config::Config;
use hydrabackup::repo::tree::NodeKind;
use hydrabackup::{Error, Result};
use serde_json::json;

use args::{Cli, Command, Global, KeyCommand};

/// Stack size of the thread that runs a command and of rayon's workers. Source folders and
/// snapshot trees are walked recursively (a few KiB per level), and a deep chain of folders
/// must not overflow: 256 MiB holds tens of thousands of levels, far more than a path within
/// `PATH_MAX` can have. Only touched pages are committed: this costs address space, not memory.
const STACK: usize = 256 << 20;

/// Runs the command line; returns the exit code.
pub fn run() -> i32 {
    // Fails only if the pool already exists, which it cannot before this point.
    let _ = rayon::ThreadPoolBuilder::new()
        .stack_size(STACK)
        .build_global();
    match std::thread::Builder::new()
        .name("hydrabackup".into())
        .stack_size(STACK)
        .spawn(run_command)
        .map(|t| t.join())
    {
        Ok(Ok(code)) => code,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        // No room for the big stack (strict overcommit): run here, with the usual one.
        Err(_) => run_command(),
    }
}

fn run_command() -> i32 {
    let cli = Cli::parse();
    let level = match (cli.global.quiet, cli.global.verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HYDRABACKUP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    let json = cli.global.json;
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            let code = e.exit_code();
            // `verify` has already printed its report (with "ok": false) as the one JSON
            // document on stdout; a second document would make the output unparsable.
            if json
                && !matches!(
                    e,
                    Error::Damaged(_)
                        | Error::RestoreDamaged(_)
                        | Error::RestoreIncomplete(_)
                        | Error::SnapshotsSkipped(_)
                )
            {
                println!("{}", json!({"error": e.to_string(), "exit_code": code}));
            }
            eprintln!("hydrabackup: error: {e}");
            code
        }
    }
}

fn kdf(g: &Global) -> KdfParams {
    let mut k = KdfParams::default();
    if let Some(m) = g.kdf_memory {
        k.mem_kib = m;
    }
    if let Some(t) = g.kdf_iterations {
        k.iterations = t;
    }
    k
}

pub(crate) fn backend_of(g: &Global) -> Result<Arc<dyn backend::Backend>> {
    let loc = g.repo.as_deref().ok_or_else(|| {
        Error::InvalidInput("no repository given: use -r/--repo or HYDRABACKUP_REPOSITORY".into())
    })?;
    Ok(Arc::from(backend::open(loc)?))
}

pub(crate) fn open(g: &Global) -> Result<Repository> {
    let b = backend_of(g)?;
    if !b.exists()? {
        return Err(Error::RepoNotFound(b.location()));
    }
    Repository::open_with(b, &password::password(g, false)?, g.key_hint.as_deref())
}

/// Prints one warning line per damaged snapshot the repositories skipped; returns how many.
pub(crate) fn warn_damaged(repos: &[&Repository]) -> usize {
    let mut n = 0;
    for d in repos.iter().flat_map(|r| r.damaged_snapshots()) {
        eprintln!(
            "hydrabackup: warning: snapshot {} is damaged and was skipped: {}",
            d.id, d.error
        );
        n += 1;
    }
    n
}

/// A finished command's exit code: `code`, or [`Error::SnapshotsSkipped`] (exit 13) when
/// damaged snapshots were skipped (each named on stderr).
pub(crate) fn finish(repos: &[&Repository], code: i32) -> Result<i32> {
    match warn_damaged(repos) {
        0 => Ok(code),
        n => Err(Error::SnapshotsSkipped(n)),
    }
}

/// `v` (a JSON object) with the list of damaged snapshots the repositories skipped.
pub(crate) fn with_damaged(mut v: serde_json::Value, repos: &[&Repository]) -> serde_json::Value {
    let d: Vec<_> = repos.iter().flat_map(|r| r.damaged_snapshots()).collect();
    v["damaged_snapshots"] = json!(d);
    v
}

/// Opens the other repository of `copy` / `init --copy-params`.
pub(crate) fn open_from(f: &args::FromRepo) -> Result<Repository> {
    let loc = f.from_repo.as_deref().ok_or_else(|| {
        Error::InvalidInput(
            "no source repository given: use --from-repo or HYDRABACKUP_FROM_REPOSITORY".into(),
        )
    })?;
    let b: Arc<dyn backend::Backend> = Arc::from(backend::open(loc)?);
    if !b.exists()? {
        return Err(Error::RepoNotFound(b.location()));
    }
    Repository::open(b, &password::from_password(f)?)
}

pub(crate) fn human(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

pub(crate) fn print_json(v: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON values serialize")
    );
}

fn dispatch(cli: Cli) -> Result<i32> {
    let g = &cli.global;
    let say = |s: String| {
        if !g.quiet && !g.json {
            println!("{s}");
        }
    };
    match cli.cmd {
        Command::Init(a) => {
            let b = backend_of(g)?;
            if b.exists()? {
                return Err(Error::RepoExists(b.location()));
            }
            let mut cfg = Config::new();
            cfg.pack_size = a.pack_size.saturating_mul(1024 * 1024);
            cfg.compression = a.compression;
            let avg = a.chunk_avg.saturating_mul(1024);
            if !avg.is_power_of_two() {
                return Err(Error::InvalidInput(
                    "--chunk-avg must be a power of two".into(),
                ));
            }
            cfg.chunker.avg = avg;
            cfg.chunker.min = (avg / 4).max(64);
            cfg.chunker.max = avg.saturating_mul(4);
            if a.copy_params {
                let from = open_from(&a.from)?;
                let c = from.config();
                cfg.id_key = c.id_key;
                cfg.chunker = c.chunker;
                cfg.hyd_chunker = c.hyd_chunker;
            }
            let pw = password::password(g, true)?;
            let repo = Repository::init(b, &pw, kdf(g), cfg)?;
            if g.json {
                print_json(
                    &json!({"repository": repo.backend().location(), "id": repo.config().id.to_hex(), "key": repo.key_name()}),
                );
            }
            say(format!(
                "created repository {} at {}",
                repo.config().id.short(),
                repo.backend().location()
            ));
            say("keep the password safe: without it the data cannot be recovered".into());
            Ok(0)
        }
        Command::Backup(a) => {
            let mut paths = a.paths;
            if let Some(inst) = &a.instance {
                paths.push(hydrabackup::source::instance_data_root(inst)?);
            }
            let since_ns = match &a.since {
                Some(t) => Some(hydrabackup::timespec::parse(t)?.as_nanosecond() as i64),
                None => None,
            };
            let repo = open(g)?;
            let opts = BackupOptions {
                paths,
                tags: a.tags,
                host: a.host,
                excludes: a.excludes,
                dry_run: a.dry_run,
                parent: a.parent,
                force: a.force,
                since_ns,
                show_names: a.show_names,
                time: a
                    .time
                    .as_deref()
                    .map(hydrabackup::timespec::parse)
                    .transpose()?,
            };
            let p = Arc::new(Progress::default());
            let disp = progress::start(p.clone(), "backup", !g.quiet && !g.json);
            let out = backup(&repo, &opts, &p)?;
            drop(disp);
            let s = &out.summary;
            if g.json {
                let mut v = serde_json::to_value(s).expect("summary serializes");
                v["snapshot_id"] = json!(out.snapshot_id.map(|i| i.to_hex()));
                v["parent"] = json!(out.parent.map(|i| i.to_hex()));
                v["dry_run"] = json!(opts.dry_run);
                v["source_errors"] = serde_json::to_value(&out.errors).expect("errors serialize");
                v["gone"] = json!(out.gone);
                v["special"] = serde_json::to_value(&out.special).expect("special serializes");
                v["quarantine"] =
                    serde_json::to_value(&out.quarantine).expect("quarantine serializes");
                if opts.dry_run {
                    v["decisions"] =
                        serde_json::to_value(&out.decisions).expect("decisions serialize");
                }
                print_json(&with_damaged(v, &[&repo]));
            }
            if opts.dry_run && !g.quiet && !g.json {
                for d in &out.decisions {
                    let name = d
                        .name
                        .as_deref()
                        .map(|n| format!(" [{n}]"))
                        .unwrap_or_default();
                    println!(
                        "{:<11} {}{name}: {} ({} read)",
                        d.decision,
                        d.path,
                        d.reason,
                        human(d.bytes_read)
                    );
                }
            }
            for e in &out.errors {
                eprintln!("hydrabackup: warning: {}: {}", e.path, e.error);
            }
            if !g.quiet {
                for f in &out.special {
                    eprintln!(
                        "hydrabackup: skipped {}: {} (not backed up)",
                        f.path, f.kind
                    );
                }
            }
            say(format!(
                "files: {} new, {} changed, {} unchanged, {} gone during the backup; {} dirs",
                s.files_new, s.files_changed, s.files_unchanged, s.files_gone, s.dirs
            ));
            if s.special_files > 0 {
                say(format!(
                    "{} special files (FIFOs, sockets, devices) not backed up",
                    s.special_files
                ));
            }
            let swamps = s.swamps_new
                + s.swamps_unchanged
                + s.swamps_appended
                + s.swamps_rewritten
                + s.swamps_quarantined;
            if swamps > 0 || s.swamps_gone > 0 {
                say(format!(
                    "swamps: {} new, {} unchanged, {} appended, {} rewritten, {} gone, {} quarantined",
                    s.swamps_new,
                    s.swamps_unchanged,
                    s.swamps_appended,
                    s.swamps_rewritten,
                    s.swamps_gone,
                    s.swamps_quarantined
                ));
            }
            say(format!(
                "read {} in {} files; added {} ({} stored) in {} data blobs and {} tree blobs",
                human(s.bytes_read),
                s.files_read,
                human(s.bytes_added),
                human(s.bytes_stored),
                s.data_blobs_added,
                s.tree_blobs_added
            ));
            match out.snapshot_id {
                Some(id) => say(format!(
                    "snapshot {} saved ({} total, {:.2} s)",
                    id.short(),
                    human(s.total_bytes),
                    s.duration_secs
                )),
                None => say("dry run: nothing was written".into()),
            }
            finish(&[&repo], if out.errors.is_empty() { 0 } else { 3 })
        }
        Command::Snapshots(a) => {
            let repo = open(g)?;
            let snaps: Vec<_> = repo
                .snapshots()?
                .into_iter()
                .filter(|(_, s)| a.host.as_ref().is_none_or(|h| &s.host == h))
                .filter(|(_, s)| a.tag.as_ref().is_none_or(|t| s.tags.contains(t)))
                .collect();
            if g.json {
                let v: Vec<_> = snaps
                    .iter()
                    .map(|(id, s)| {
                        let mut v = serde_json::to_value(s).expect("snapshot serializes");
                        v["id"] = json!(id.to_hex());
                        v["short_id"] = json!(id.short());
                        // Ids serialize as raw bytes (for CBOR); JSON readers want hex.
                        v["tree"] = json!(s.tree.to_hex());
                        v["parent"] = json!(s.parent.map(|p| p.to_hex()));
                        v
                    })
                    .collect();
                print_json(&json!(v));
            } else if !g.quiet {
                println!(
                    "{:<10} {:<24} {:<16} {:>10} {:>8} {:<16} paths",
                    "id", "time", "host", "size", "swamps", "tags"
                );
                for (id, s) in &snaps {
                    let t = s.timestamp().strftime("%Y-%m-%d %H:%M:%S UTC").to_string();
                    let sw = s.catalogue.as_ref().map_or(0, |c| c.swamps);
                    println!(
                        "{:<10} {:<24} {:<16} {:>10} {:>8} {:<16} {}",
                        id.short(),
                        t,
                        s.host,
                        human(s.summary.total_bytes),
                        sw,
                        s.tags.join(","),
                        s.paths.join(" ")
                    );
                }
                println!("{} snapshot(s)", snaps.len());
            }
            finish(&[&repo], 0)
        }
        Command::Ls(a) => {
            let repo = open(g)?;
            let (_, snap) = repo.find_snapshot(&a.snapshot)?;
            let index = repo.load_index()?;
            let prefix = a
                .path
                .as_deref()
                .map(|p| PathBuf::from(p.trim_start_matches('/')));
            let mut rows = Vec::new();
            walk_tree(&repo, &index, &snap.tree, Path::new(""), &mut |rel, n| {
                if prefix.as_ref().is_none_or(|p| rel.starts_with(p)) {
                    rows.push((rel.display().to_string(), n.clone()));
                }
                Ok(())
            })?;
            if g.json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(p, n)| json!({"path": p, "type": n.kind, "size": n.size, "mode": n.mode, "mtime_ns": n.mtime_ns}))
                    .collect();
                print_json(&json!(v));
            } else if !g.quiet {
                for (p, n) in rows {
                    let kind = match n.kind {
                        NodeKind::Dir => 'd',
                        NodeKind::File => '-',
                        NodeKind::Symlink => 'l',
                    };
                    println!("{kind}{:04o} {:>12} /{p}", n.mode, n.size);
                }
            }
            finish(&[&repo], 0)
        }
        Command::Restore(a) => {
            let repo = open(g)?;
            let _lock = repo.lock(false, "restore")?;
            let (id, snap) = match (&a.snapshot, &a.at) {
                (_, Some(at)) => repo.find_snapshot_at(hydrabackup::timespec::parse(at)?)?,
                (Some(s), None) => repo.find_snapshot(s)?,
                (None, None) => {
                    return Err(Error::InvalidInput(
                        "give a snapshot id or --at TIME".into(),
                    ));
                }
            };
            let index = repo.load_index()?;
            let opts = RestoreOptions {
                target: a.target,
                includes: a.includes,
                dry_run: a.dry_run,
                overwrite: a.overwrite,
                swamps: a.swamps,
                raw_quarantined: a.raw_quarantined,
            };
            let p = Arc::new(Progress::default());
            let disp = progress::start(p.clone(), "restore", !g.quiet && !g.json);
            let s = restore(&repo, &index, &snap, &opts, &p)?;
            drop(disp);
            if g.json {
                let mut v = serde_json::to_value(&s).expect("summary serializes");
                v["snapshot_id"] = json!(id.to_hex());
                v["dry_run"] = json!(opts.dry_run);
                print_json(&with_damaged(v, &[&repo]));
            } else if opts.dry_run && !g.quiet {
                for p in &s.paths {
                    println!("would restore {p}");
                }
            }
            say(format!(
                "{} snapshot {}: {} files, {} dirs, {} symlinks, {} from {} packs",
                if opts.dry_run {
                    "would restore"
                } else {
                    "restored"
                },
                id.short(),
                s.files
                    .saturating_sub((s.damaged.len() + s.failed.len()) as u64),
                s.dirs,
                s.symlinks,
                human(s.bytes),
                s.packs_read
            ));
            for d in &s.damaged {
                eprintln!("damaged: {}: {}", d.path, d.error);
            }
            for d in &s.failed {
                eprintln!("not restored: {}: {}", d.path, d.error);
            }
            if !s.damaged.is_empty() {
                warn_damaged(&[&repo]);
                Err(Error::RestoreDamaged(s.damaged.len()))
            } else if !s.failed.is_empty() {
                warn_damaged(&[&repo]);
                Err(Error::RestoreIncomplete(s.failed.len()))
            } else {
                finish(&[&repo], 0)
            }
        }
        Command::Verify(a) => {
            let repo = open(g)?;
            let read_data = match (a.read_data, a.read_data_subset) {
                (true, _) => ReadData::All,
                (false, Some(s)) => ReadData::parse_subset(&s)?,
                (false, None) => ReadData::None,
            };
            let p = Arc::new(Progress::default());
            let disp = progress::start(p.clone(), "verify", !g.quiet && !g.json);
            let r = verify(
                &repo,
                &VerifyOptions {
                    read_data,
                    swamps: a.swamps,
                },
                &p,
            )?;
            drop(disp);
            if g.json {
                let mut v = serde_json::to_value(&r).expect("report serializes");
                v["ok"] = json!(r.ok());
                print_json(&v);
            } else {
                for pr in &r.problems {
                    eprintln!(
                        "damage: {}: {} ({} blob(s))",
                        pr.object,
                        pr.detail,
                        pr.blobs.len()
                    );
                    for af in pr.affected.iter().take(20) {
                        eprintln!("  affects snapshot {} file {}", af.snapshot, af.path);
                    }
                    if pr.affected.len() > 20 {
                        eprintln!("  ... and {} more files", pr.affected.len() - 20);
                    }
                }
                say(format!(
                    "checked {} snapshots, {} index files, {} packs, {} blobs; read {} packs ({}), {} blobs",
                    r.snapshots,
                    r.index_files,
                    r.packs,
                    r.blobs,
                    r.packs_read,
                    human(r.bytes_read),
                    r.blobs_read
                ));
                if !r.unreferenced_packs.is_empty() {
                    say(format!(
                        "{} pack(s) are in no index (left by an interrupted backup; harmless)",
                        r.unreferenced_packs.len()
                    ));
                }
                if r.ok() {
                    say("no errors were found".into());
                }
            }
            if r.ok() {
                Ok(0)
            } else {
                Err(Error::Damaged(r.problems.len()))
            }
        }
        Command::Show(a) => {
            let repo = open(g)?;
            let code = show::run(g, &repo, a)?;
            finish(&[&repo], code)
        }
        Command::Key(k) => key_cmd(g, k),
        Command::Stats => {
            let repo = open(g)?;
            let code = stats::run(g, &repo)?;
            finish(&[&repo], code)
        }
        Command::Copy(a) => copy::copy_cmd(g, a),
        Command::Serve(a) => serve_cmd(g, a),
        Command::ServeUser(a) => {
            let pw = password::new_password(a.password.new_password_file.as_deref())?;
            hydrabackup::server::auth::set_user(&a.users, &a.user, &pw)?;
            if g.json {
                print_json(&json!({"users": a.users, "user": a.user}));
            }
            say(format!("user {} set in {}", a.user, a.users.display()));
            Ok(0)
        }
        Command::Forget(a) => forget::forget_cmd(g, a),
        Command::Prune(a) => forget::prune_cmd(g, a),
        Command::Unlock(a) => {
            let repo = open(g)?;
            let removed = hydrabackup::repo::lock::unlock(
                repo.backend().as_ref(),
                repo.keys().seal_key(),
                a.remove_all,
            )?;
            let temporaries = repo.backend().remove_stale_temporaries()?;
            if g.json {
                print_json(&json!({"removed": removed, "temporaries_removed": temporaries}));
            }
            say(format!(
                "removed {} lock(s) and {temporaries} leftover temporary file(s)",
                removed.len()
            ));
            Ok(0)
        }
    }
}

fn key_cmd(g: &Global, k: KeyCommand) -> Result<i32> {
    let repo = open(g)?;
    let say = |s: String| {
        if !g.quiet && !g.json {
            println!("{s}");
        }
    };
    match k {
        KeyCommand::List => {
            let keys = repo.list_keys()?;
            if g.json {
                let v: Vec<_> = keys
                    .iter()
                    .map(|(n, kf)| json!({"id": n, "current": n == repo.key_name(), "user": kf.user, "host": kf.host, "created": kf.created}))
                    .collect();
                print_json(&json!(v));
            } else if !g.quiet {
                for (n, kf) in keys {
                    let cur = if n == repo.key_name() { "*" } else { " " };
                    println!(
                        "{cur}{} {:<12} {:<16} {}",
                        &n[..12],
                        kf.user,
                        kf.host,
                        kf.created
                    );
                }
            }
        }
        KeyCommand::Add(np) => {
            let pw = password::new_password(np.new_password_file.as_deref())?;
            let name = repo.add_key(&pw, kdf(g))?;
            if g.json {
                print_json(&json!({"added": name}));
            }
            say(format!("added key {}", &name[..12]));
        }
        KeyCommand::Remove { id } => {
            let _lock = repo.lock(true, "key remove")?;
            let names = repo.key_names()?;
            let m: Vec<_> = names.iter().filter(|n| n.starts_with(&id)).collect();
            let name = match m.as_slice() {
                [one] => (*one).clone(),
                [] => return Err(Error::NotFound(format!("key {id}"))),
                _ => return Err(Error::InvalidInput(format!("key prefix {id} is ambiguous"))),
            };
            if name == repo.key_name() {
                return Err(Error::InvalidInput("refusing to remove the key in use; open the repository with another password to remove it".into()));
            }
            repo.remove_key(&name)?;
            if g.json {
                print_json(&json!({"removed": name}));
            }
            say(format!("removed key {}", &name[..12]));
        }
        KeyCommand::Passwd(np) => {
            let pw = password::new_password(np.new_password_file.as_deref())?;
            let _lock = repo.lock(true, "key passwd")?;
            let name = repo.add_key(&pw, kdf(g))?;
            repo.remove_key(repo.key_name())?;
            if g.json {
                print_json(&json!({"added": name, "removed": repo.key_name()}));
            }
            say(format!(
                "password changed: key {} replaces {}",
                &name[..12],
                &repo.key_name()[..12]
            ));
        }
    }
    Ok(0)
}

fn serve_cmd(g: &Global, a: args::ServeArgs) -> Result<i32> {
    // A client that goes away while we write must cost that connection only: writes to it
    // fail with EPIPE instead of ending the process (`main` restores the default for the
    // other commands, so that `hydrabackup ls | head` ends quietly).
    // SAFETY: setting a signal disposition to SIG_IGN has no memory-safety preconditions; no
    // handler runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let tls = a.tls_cert.clone().zip(a.tls_key.clone());
    let scheme = if tls.is_some() { "https" } else { "http" };
    let opts = hydrabackup::server::ServeOptions {
        listen: a.listen,
        root: a.path,
        tls,
        users: a.users,
        append_only: a.append_only,
        private_repos: a.private_repos,
        max_connections: a.max_connections.max(1),
        request_timeout: std::time::Duration::from_secs(a.request_timeout.max(1)),
    };
    let json = g.json;
    hydrabackup::server::serve(opts, |addr| {
        // Always printed (also with -q): scripts and tests read the address from it.
        if json {
            println!("{}", json!({"listening": format!("{scheme}://{addr}")}));
        } else {
            println!("listening on {scheme}://{addr}");
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
    })?;
    Ok(0)
}
