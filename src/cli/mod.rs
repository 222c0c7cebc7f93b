//! The command-line front end: parses flags, opens the repository, calls one operation and
//! prints its result (human text, or JSON with --json). Errors become one line and an exit code.

mod args;
mod env;
mod human;
mod password;
mod progress;

use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches};
use hydrabackup::backend;
use hydrabackup::crypto::KdfParams;
use hydrabackup::ops::progress::Progress;
use hydrabackup::ops::prune::PruneSummary;
use hydrabackup::ops::{self, key};
use hydrabackup::repo::Repository;
use hydrabackup::{Error, Result};
use serde::Serialize;
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
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
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
        // Colours only on a terminal: a log file or a pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
    let json = cli.global.json;
    // `-v` shows each command's start and end, and every line logged meanwhile carries its name.
    let _span = tracing::info_span!("command", cmd = matches.subcommand_name()).entered();
    let started = std::time::Instant::now();
    tracing::info!("started");
    let result = dispatch(cli);
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        ok = result.is_ok(),
        "finished"
    );
    match result {
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
    Ok(Arc::from(backend::open_with(
        loc,
        &env::backend_options(loc)?,
    )?))
}

pub(crate) fn open(g: &Global) -> Result<Repository> {
    let b = backend_of(g)?;
    if !b.exists()? {
        return Err(Error::RepoNotFound(b.location()));
    }
    Ok(
        Repository::open_with(b, &password::password(g, false)?, g.key_hint.as_deref())?
            .with_cache_root(env::cache_root(g.no_cache, g.cache_dir.as_deref())),
    )
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

/// Opens the other repository of `copy` / `init --copy-params`.
pub(crate) fn open_from(f: &args::FromRepo) -> Result<Repository> {
    let loc = f.from_repo.as_deref().ok_or_else(|| {
        Error::InvalidInput(
            "no source repository given: use --from-repo or HYDRABACKUP_FROM_REPOSITORY".into(),
        )
    })?;
    let b: Arc<dyn backend::Backend> =
        Arc::from(backend::open_with(loc, &env::backend_options(loc)?)?);
    if !b.exists()? {
        return Err(Error::RepoNotFound(b.location()));
    }
    Repository::open(b, &password::from_password(f)?)
}

/// `n` bytes for people: `512 B`, `1.5 KiB`, `3.2 GiB`. Not indicatif's `HumanBytes`, which
/// prints two decimals (`1.46 KiB`): the human output is pinned by snapshot tests and scripts.
pub(crate) fn human_bytes(n: u64) -> String {
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

/// Prints an outcome as the `--json` document (keys sorted, as a `serde_json::Value` has them).
fn print_outcome<T: Serialize>(out: &T) {
    print_json(&serde_json::to_value(out).expect("outcomes serialize"));
}

/// Runs `op` with a progress display labelled `label` (a terminal only, not with -q or --json).
fn with_progress<T>(g: &Global, label: &'static str, op: impl FnOnce(&Progress) -> T) -> T {
    let p = Arc::new(Progress::default());
    let disp = progress::start(p.clone(), label, !g.quiet && !g.json);
    let r = op(&p);
    drop(disp);
    r
}

/// The warnings of a prune: forged copies (even with -q: a client with the password may be
/// compromised) and, when it refused, the damaged snapshots that made it refuse.
fn warn_prune(repo: &Repository, r: Result<Option<&PruneSummary>, &Error>) {
    match r {
        Ok(Some(s)) if s.copies_damaged > 0 => eprintln!(
            "hydrabackup: warning: {} blob copies were missing, damaged or forged; intact copies were kept instead",
            s.copies_damaged
        ),
        Err(Error::PruneDamaged(_)) => {
            warn_damaged(&[repo]);
        }
        _ => {}
    }
}

fn dispatch(cli: Cli) -> Result<i32> {
    let g = &cli.global;
    let say = |s: String| {
        if !g.quiet && !g.json {
            println!("{s}");
        }
    };
    let human = !g.quiet && !g.json;
    let none = Progress::default();
    match cli.cmd {
        Command::Init(a) => {
            let b = backend_of(g)?;
            if b.exists()? {
                return Err(Error::RepoExists(b.location()));
            }
            let mut cfg = a.opts.config(None)?;
            if a.opts.copy_params {
                cfg = a.opts.config(Some(open_from(&a.from)?.config()))?;
            }
            let pw = password::password(g, true)?;
            let out = ops::init::run(b, &pw, kdf(g), cfg)?;
            if g.json {
                print_outcome(&out);
            }
            say(format!(
                "created repository {} at {}",
                out.id.short(),
                out.repository
            ));
            say("keep the password safe: without it the data cannot be recovered".into());
            Ok(0)
        }
        Command::Backup(a) => {
            a.check()?;
            let repo = open(g)?;
            let out = with_progress(g, "backup", |p| ops::backup::run(&repo, &a, p))?;
            if g.json {
                print_outcome(&out);
            }
            human::backup(&out, g.quiet, &say);
            finish(&[&repo], if out.source_errors.is_empty() { 0 } else { 3 })
        }
        Command::Snapshots(a) => {
            let repo = open(g)?;
            let out = ops::snapshots::run(&repo, &a, &none)?;
            if g.json {
                print_outcome(&out);
            } else if !g.quiet {
                human::snapshots(&out);
            }
            finish(&[&repo], 0)
        }
        Command::Ls(a) => {
            let repo = open(g)?;
            let out = ops::ls::run(&repo, &a, &none)?;
            if g.json {
                print_outcome(&out);
            } else if !g.quiet {
                human::ls(&out);
            }
            finish(&[&repo], 0)
        }
        Command::Restore(a) => {
            let repo = open(g)?;
            let out = with_progress(g, "restore", |p| ops::restore::run(&repo, &a, p))?;
            if a.raw {
                use std::io::Write;
                let mut o = std::io::stdout().lock();
                o.write_all(&out.summary.raw)
                    .and_then(|()| o.flush())
                    .map_err(|e| Error::io("stdout", e))?;
                return Ok(0);
            }
            if g.json {
                print_outcome(&out);
            }
            human::restore(&out, g.quiet, g.json, &say);
            let s = &out.summary;
            // Damaged snapshots are named whatever else happened; damaged data decides first.
            let skipped = warn_damaged(&[&repo]);
            match (s.damaged.len(), s.failed.len()) {
                (0, 0) if skipped > 0 => Err(Error::SnapshotsSkipped(skipped)),
                (0, 0) => Ok(0),
                (0, n) => Err(Error::RestoreIncomplete(n)),
                (n, _) => Err(Error::RestoreDamaged(n)),
            }
        }
        Command::Verify(a) => {
            let repo = open(g)?;
            let out = with_progress(g, "verify", |p| ops::verify::run(&repo, &a, p))?;
            if g.json {
                print_outcome(&out);
            } else {
                human::verify(&out, &say);
            }
            if out.ok {
                Ok(0)
            } else {
                Err(Error::Damaged(out.report.problems.len()))
            }
        }
        Command::Show(a) => {
            let repo = open(g)?;
            let out = ops::show::run(&repo, &a, &none)?;
            if g.json {
                print_outcome(&out);
            } else if !g.quiet {
                human::show(&out);
            }
            finish(&[&repo], 0)
        }
        Command::Find(a) => {
            let repo = open(g)?;
            let out = ops::find_key::run(&repo, &a, &none)?;
            if g.json {
                print_outcome(&out);
            } else if !g.quiet {
                human::find_key(&out);
            }
            finish(&[&repo], 0)
        }
        Command::Key(k) => key_cmd(g, k),
        Command::Stats(a) => {
            let repo = open(g)?;
            let out = ops::stats::run(&repo, &a, &none)?;
            if g.json {
                print_outcome(&out);
            } else if !g.quiet {
                human::stats(&out);
            }
            finish(&[&repo], 0)
        }
        Command::Copy(a) => {
            let src = open_from(&a.from)?;
            let dst = open(g)?;
            let out = with_progress(g, "copy", |p| ops::copy::run(&dst, &src, &a.opts, p))?;
            if g.json {
                print_outcome(&out);
            } else if !g.quiet {
                human::copy(&out);
            }
            finish(&[&src, &dst], 0)
        }
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
        Command::Forget(a) => {
            a.check()?;
            let repo = open(g)?;
            let r = with_progress(g, "prune", |p| ops::forget::run(&repo, &a, p));
            warn_prune(&repo, r.as_ref().map(|o| o.prune.as_ref()));
            let out = r?;
            if g.json {
                print_outcome(&out);
            } else if human {
                human::forget(&out.summary);
                if let Some(p) = &out.prune {
                    human::prune(p);
                }
            }
            finish(&[&repo], 0)
        }
        Command::Prune(a) => {
            a.check()?;
            let repo = open(g)?;
            let r = with_progress(g, "prune", |p| ops::prune::run(&repo, &a, p));
            warn_prune(&repo, r.as_ref().map(|o| Some(&o.summary)));
            let out = r?;
            if g.json {
                print_outcome(&out);
            } else if human {
                human::prune(&out.summary);
            }
            finish(&[&repo], 0)
        }
        Command::Unlock(a) => {
            let repo = open(g)?;
            let out = ops::unlock::run(&repo, &a, &none)?;
            if g.json {
                print_outcome(&out);
            }
            say(format!(
                "removed {} lock(s) and {} leftover temporary file(s)",
                out.removed.len(),
                out.temporaries_removed
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
    let short = |n: &Option<String>| n.as_deref().map_or("", |n| &n[..12]).to_string();
    let out = match k {
        KeyCommand::List => {
            let keys = key::list(&repo)?;
            if g.json {
                print_outcome(&keys);
            } else if !g.quiet {
                for k in &keys.0 {
                    let cur = if k.current { "*" } else { " " };
                    println!(
                        "{cur}{} {:<12} {:<16} {}",
                        &k.id[..12],
                        k.user,
                        k.host,
                        k.created
                    );
                }
            }
            return Ok(0);
        }
        KeyCommand::Add(np) => {
            let pw = password::new_password(np.new_password_file.as_deref())?;
            let out = key::add(&repo, &pw, kdf(g))?;
            say(format!("added key {}", short(&out.added)));
            out
        }
        KeyCommand::Remove { id } => {
            let out = key::remove(&repo, &id)?;
            say(format!("removed key {}", short(&out.removed)));
            out
        }
        KeyCommand::Passwd(np) => {
            let pw = password::new_password(np.new_password_file.as_deref())?;
            let out = key::passwd(&repo, &pw, kdf(g))?;
            say(format!(
                "password changed: key {} replaces {}",
                short(&out.added),
                short(&out.removed)
            ));
            out
        }
    };
    if g.json {
        print_outcome(&out);
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
