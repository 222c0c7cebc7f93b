//! The command-line front end: parses flags, opens the repository, calls one operation and
//! prints its result (human text, or JSON with --json). Errors become one line and an exit code.

mod args;
mod conf;
mod confirm;
mod env;
mod human;
mod password;
mod profile;
mod progress;
mod report;

use std::sync::Arc;

use clap::FromArgMatches;
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
use report::Report;

/// Stack size of the thread that runs a command and of rayon's workers. Source folders and
/// snapshot trees are walked recursively (a few KiB per level), and a deep chain of folders
/// must not overflow: 256 MiB holds tens of thousands of levels, far more than a path within
/// `PATH_MAX` can have. Only touched pages are committed: this costs address space, not memory.
const STACK: usize = 256 << 20;

/// Runs the command line; returns the exit code.
pub fn run() -> i32 {
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
    let (matches, loaded) = match conf::parse(std::env::args_os().collect()) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("hydrabackup: error: {e}");
            return 2;
        }
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // Fails only if the pool already exists, which it cannot before this point.
    let mut pool = rayon::ThreadPoolBuilder::new().stack_size(STACK);
    if let Some(n) = cli.global.threads {
        pool = pool.num_threads(n.into());
    }
    let _ = pool.build_global();
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
    let observe = cli.global.observe.clone();
    let cmd = matches.subcommand_name().unwrap_or_default();
    if (observe.metrics_file.is_some() || observe.metrics_push.is_some())
        && !report::METRIC_COMMANDS.contains(&cmd)
    {
        eprintln!(
            "hydrabackup: error: --metrics-file and --metrics-push apply to {} only",
            report::METRIC_COMMANDS.join(", ")
        );
        return 2;
    }
    // `-v` shows each command's start and end, and every line logged meanwhile carries its name.
    let _span = tracing::info_span!("command", cmd).entered();
    let started = std::time::Instant::now();
    tracing::info!("started");
    let mut rep = Report::new(cmd, &observe);
    let before = report::before(&observe, cmd);
    // A command its before-hook stopped has no after- or failure-hook.
    let ran = before.is_ok();
    let result = before.and_then(|()| dispatch(cli, &mut rep, &matches, loaded.as_ref()));
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        ok = result.is_ok(),
        "finished"
    );
    let (code, error) = match result {
        Ok(code) => (code, None),
        Err(e) => {
            let code = e.exit_code();
            // `verify` has already printed its report (with "ok": false) as the one JSON
            // document on stdout; a second document would make the output unparsable.
            if json
                && !matches!(
                    e,
                    Error::Damaged(_)
                        | Error::NotConfirmed
                        | Error::RestoreDamaged(_)
                        | Error::RestoreIncomplete(_)
                        | Error::SnapshotsSkipped(_)
                        | Error::RetentionShort(_)
                )
            {
                let mut doc = json!({"error": e.to_string(), "exit_code": code});
                if STREAMS.contains(&cmd) {
                    doc["message_type"] = "exit_error".into();
                }
                println!("{doc}");
            }
            eprintln!("hydrabackup: error: {e}");
            (code, Some(e.to_string()))
        }
    };
    rep.write_metrics(&observe, code, started.elapsed());
    if ran {
        report::after(
            &observe,
            cmd,
            &rep,
            code,
            error.as_deref(),
            started.elapsed(),
        );
    }
    code
}

/// The long commands: with `--json` they print a stream of JSON lines (`status`, `error`,
/// `verbose_status`, then the `summary`: the outcome document plus `"message_type"`).
const STREAMS: &[&str] = &[
    "backup", "restore", "verify", "copy", "forget", "prune", "watch",
];

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

/// The backend options for `loc`: the environment's, with the command line's bandwidth limits.
fn backend_options(g: &Global, loc: &str) -> Result<backend::BackendOptions> {
    let mut o = env::backend_options(loc)?;
    o.limits = backend::Limits {
        upload: g.limit_upload.map(|k| u64::from(k) * 1024),
        download: g.limit_download.map(|k| u64::from(k) * 1024),
    };
    Ok(o)
}

pub(crate) fn backend_of(g: &Global) -> Result<Arc<dyn backend::Backend>> {
    let loc = g.repo.as_deref().ok_or_else(|| {
        Error::InvalidInput("no repository given: use -r/--repo or HYDRABACKUP_REPOSITORY".into())
    })?;
    Ok(Arc::from(backend::open_with(
        loc,
        &backend_options(g, loc)?,
    )?))
}

/// Opens the repository for a command that reads or deletes what is stored: a write-only key
/// is refused (exit 16).
pub(crate) fn open(g: &Global) -> Result<Repository> {
    let repo = open_writer(g)?;
    repo.require_full_key()?;
    Ok(repo)
}

/// Opens the repository for `backup` (and `watch`): the commands a write-only key may run.
pub(crate) fn open_writer(g: &Global) -> Result<Repository> {
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
pub(crate) fn open_from(g: &Global, f: &args::FromRepo) -> Result<Repository> {
    let loc = f.from_repo.as_deref().ok_or_else(|| {
        Error::InvalidInput(
            "no source repository given: use --from-repo or HYDRABACKUP_FROM_REPOSITORY".into(),
        )
    })?;
    let b: Arc<dyn backend::Backend> =
        Arc::from(backend::open_with(loc, &backend_options(g, loc)?)?);
    if !b.exists()? {
        return Err(Error::RepoNotFound(b.location()));
    }
    let repo = Repository::open(b, &password::from_password(f)?)?;
    repo.require_full_key()?;
    Ok(repo)
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
pub(crate) fn print_outcome<T: Serialize>(out: &T) {
    print_json(&serde_json::to_value(out).expect("outcomes serialize"));
}

/// Runs `op` with progress shown as `g` asks: the `--json` stream, or a bar labelled `label`
/// on a terminal (naming the current item with `names`), or nothing (-q, not a terminal).
pub(crate) fn with_progress<T>(
    g: &Global,
    label: &'static str,
    names: bool,
    op: impl FnOnce(&Progress) -> T,
) -> T {
    use progress::Mode;
    let mode = match (g.json, g.quiet) {
        (true, _) => Mode::Json,
        (_, true) => Mode::Off,
        _ => Mode::Bar { names },
    };
    let p = match mode {
        Mode::Json => Progress::with_messages(g.verbose > 0),
        _ => Progress::default(),
    };
    let p = Arc::new(p.counting_first(mode.active()));
    let disp = progress::start(p.clone(), label, mode);
    let r = op(&p);
    drop(disp);
    r
}

/// A long command's outcome: kept for the hooks and, with `--json`, printed as the stream's
/// last line, the `summary` message (the outcome's fields plus `"message_type": "summary"`).
pub(crate) fn summary<T: Serialize>(g: &Global, rep: &mut Report, out: &T) {
    let mut v = serde_json::to_value(out).expect("outcomes serialize");
    if let Some(m) = v.as_object_mut() {
        m.insert("message_type".into(), "summary".into());
    }
    let line = v.to_string();
    if g.json {
        println!("{line}");
    }
    rep.summary = Some(line);
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

fn dispatch(
    cli: Cli,
    rep: &mut Report,
    matches: &clap::ArgMatches,
    loaded: Option<&conf::Loaded>,
) -> Result<i32> {
    let g = &cli.global;
    let say = |s: String| {
        if !g.quiet && !g.json {
            println!("{s}");
        }
    };
    let none = Progress::default();
    let human = !g.quiet && !g.json;
    match cli.cmd {
        Command::Init(a) => {
            let b = backend_of(g)?;
            if b.exists()? {
                return Err(Error::RepoExists(b.location()));
            }
            let mut cfg = a.opts.config(None)?;
            if a.opts.copy_params {
                cfg = a.opts.config(Some(open_from(g, &a.from)?.config()))?;
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
            if let Some(l) = out.object_lock {
                let lock = l.lock();
                say(format!(
                    "object lock: {} for {}; run `prune` at least every {} to keep it whole",
                    l.mode.s3_name().to_lowercase(),
                    human::period(lock.retention),
                    human::period(lock.renewal())
                ));
            }
            say("keep the password safe: without it the data cannot be recovered".into());
            Ok(0)
        }
        Command::Backup(a) => {
            a.check()?;
            let repo = open_writer(g)?;
            rep.host = a.host.clone();
            rep.opened(&repo);
            if !g.quiet && !a.stdin_from_command {
                human::source_notes(&a.paths);
            }
            let out = with_progress(g, "backup", a.show_names, |p| {
                ops::backup::run(&repo, &a, p)
            })?;
            summary(g, rep, &out);
            rep.backup(&repo, &out);
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
                human::ls(&out, a.long);
            }
            finish(&[&repo], 0)
        }
        Command::Restore(a) => {
            let repo = open(g)?;
            rep.opened(&repo);
            // --raw writes the values to stdout: no JSON stream there, and no summary line.
            let out = if a.raw && g.json {
                ops::restore::run(&repo, &a, &none)?
            } else {
                with_progress(g, "restore", false, |p| ops::restore::run(&repo, &a, p))?
            };
            rep.restore(&repo, &out);
            if a.raw {
                use std::io::Write;
                let mut o = std::io::stdout().lock();
                o.write_all(&out.summary.raw)
                    .and_then(|()| o.flush())
                    .map_err(|e| Error::io("stdout", e))?;
                return Ok(0);
            }
            summary(g, rep, &out);
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
            // Verify checks the repository itself, never a cached copy.
            let repo = open(g)?.with_cache_root(None);
            rep.opened(&repo);
            let out = with_progress(g, "verify", false, |p| ops::verify::run(&repo, &a, p))?;
            summary(g, rep, &out);
            rep.verify(&repo, &out);
            if !g.json {
                human::verify(&out, &say);
            }
            match out.report.short_retention.len() {
                _ if !out.ok => Err(Error::Damaged(out.report.problems.len())),
                0 => Ok(0),
                n => Err(Error::RetentionShort(n)),
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
            let src = open_from(g, &a.from)?;
            let dst = open(g)?;
            rep.opened(&dst);
            let out = with_progress(g, "copy", false, |p| ops::copy::run(&dst, &src, &a.opts, p))?;
            summary(g, rep, &out);
            rep.copy(&dst, &out);
            if human {
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
            rep.opened(&repo);
            // Without snapshots or rules: the policy stored in the repository (`policy set`).
            let a = ops::policy::apply_stored(&repo, &a)?;
            if !g.yes && !a.prune_options.dry_run {
                let mut dry = a.clone();
                dry.prune_options.dry_run = true;
                forget_cmd(
                    g,
                    &mut Report::new("forget", &Default::default()),
                    &repo,
                    &dry,
                )?;
                confirm::ask("forget (and prune) as shown?")?;
            }
            forget_cmd(g, rep, &repo, &a)
        }
        Command::Prune(a) => {
            a.check()?;
            let repo = open(g)?;
            rep.opened(&repo);
            if !g.yes && !a.dry_run {
                let mut dry = a.clone();
                dry.dry_run = true;
                prune_cmd(
                    g,
                    &mut Report::new("prune", &Default::default()),
                    &repo,
                    &dry,
                )?;
                confirm::ask("prune as shown?")?;
            }
            prune_cmd(g, rep, &repo, &a)
        }
        Command::Dump(a) => {
            let repo = open(g)?;
            let out = ops::dump::run(&repo, &a, &none, &mut std::io::stdout().lock())?;
            // Standard output holds the bytes: the summary goes to stderr.
            if g.json {
                eprintln!(
                    "{}",
                    serde_json::to_string(&out).expect("outcomes serialize")
                );
            }
            finish(&[&repo], 0)
        }
        Command::Cat(a) => {
            let repo = open(g)?;
            match ops::cat::run(&repo, &a, &none)? {
                ops::cat::CatOutcome::Json(v) => print_json(&v),
                ops::cat::CatOutcome::Bytes(b) => {
                    use std::io::Write;
                    std::io::stdout()
                        .write_all(&b)
                        .map_err(|e| Error::io("standard output", e))?;
                }
            }
            Ok(0)
        }
        Command::Mount(a) => {
            let repo = open(g)?;
            let m = ops::mount::mount(&repo, &a)?;
            if g.json {
                print_outcome(m.outcome());
            }
            say(format!(
                "mounted {} snapshot(s) on {}; Ctrl-C or umount to unmount",
                m.outcome().snapshots,
                a.mountpoint.display()
            ));
            let out = m.serve()?;
            if g.json {
                print_outcome(&out);
            }
            say("unmounted".into());
            finish(&[&repo], 0)
        }
        Command::Watch(a) => watch_cmd(g, rep, a),
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
        // conf (issue 17): configuration and the commands restic users reach for.
        c @ (Command::Config(_)
        | Command::Policy(_)
        | Command::Purge(_)
        | Command::Diff(_)
        | Command::Find(_)
        | Command::Tag(_)
        | Command::Repair(_)
        | Command::Completion { .. }
        | Command::Man { .. }) => conf::dispatch(g, c, rep, matches, loaded),
    }
}

/// `forget` (a dry run shows what a confirmed one would do).
fn forget_cmd(
    g: &Global,
    rep: &mut Report,
    repo: &Repository,
    a: &ops::forget::ForgetOptions,
) -> Result<i32> {
    let label = if a.prune { "prune" } else { "forget" };
    if a.prune {
        background(&a.prune_options);
    }
    let r = with_progress(g, label, false, |p| ops::forget::run(repo, a, p));
    warn_prune(repo, r.as_ref().map(|o| o.prune.as_ref()));
    let out = r?;
    summary(g, rep, &out);
    rep.forget(repo, &out);
    if !g.json && !g.quiet {
        human::forget(&out.summary);
        if let Some(p) = &out.prune {
            human::prune(p);
        }
    }
    finish(&[repo], 0)
}

/// Lowers the process to background priority for a prune that will change something, unless
/// `--priority normal`: a prune never hurries at the expense of backups beside it.
fn background(a: &ops::prune::PruneOptions) {
    if !a.dry_run
        && a.priority == ops::prune::Priority::Low
        && let Err(e) = hydrabackup::sys::lower_priority()
    {
        tracing::debug!("could not lower the priority: {e}");
    }
}

/// `prune` (a dry run shows what a confirmed one would do).
fn prune_cmd(
    g: &Global,
    rep: &mut Report,
    repo: &Repository,
    a: &ops::prune::PruneOptions,
) -> Result<i32> {
    background(a);
    let r = with_progress(g, "prune", false, |p| ops::prune::run(repo, a, p));
    warn_prune(repo, r.as_ref().map(|o| Some(&o.summary)));
    let out = r?;
    summary(g, rep, &out);
    rep.prune(repo, &out.summary);
    if !g.json && !g.quiet {
        human::prune(&out.summary);
    }
    finish(&[repo], 0)
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
                    let wo = if k.write_only { " write-only" } else { "" };
                    println!(
                        "{cur}{} {:<12} {:<16} {}{wo}",
                        &k.id[..12],
                        k.user,
                        k.host,
                        k.created
                    );
                }
            }
            return Ok(0);
        }
        KeyCommand::Add(a) => {
            let pw = password::new_password(a.password.new_password_file.as_deref())?;
            let out = match a.write_only {
                true => key::add_write_only(&repo, &pw, kdf(g))?,
                false => key::add(&repo, &pw, kdf(g))?,
            };
            let kind = if a.write_only {
                "write-only key"
            } else {
                "key"
            };
            say(format!("added {kind} {}", short(&out.added)));
            out
        }
        KeyCommand::Remove { id } => {
            if !g.yes {
                let name = key::resolve(&repo, &id)?;
                if g.json {
                    print_json(&json!({ "would_remove": name }));
                }
                say(format!("would remove key {}", &name[..name.len().min(12)]));
                confirm::ask("remove this key?")?;
            }
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

/// Set by SIGTERM and SIGINT while `watch` runs.
static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn request_stop(_: libc::c_int) {
    STOP.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn watch_cmd(g: &Global, rep: &mut Report, a: ops::watch::WatchOptions) -> Result<i32> {
    // Like `backup`, `watch` works with a write-only key (repo-format.md §2a).
    let repo = open_writer(g)?;
    rep.opened(&repo);
    let mut totals = report::WatchTotals::default();
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe; installing a
    // handler has no other memory-safety preconditions.
    unsafe {
        let handler = request_stop as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGINT, handler);
    }
    let out = ops::watch::run_with(&repo, &a, &Progress::default(), &STOP, &mut |c| {
        rep.watch_cycle(&repo, &g.observe, c, &mut totals);
        if g.json {
            json_line(c);
        } else if !g.quiet {
            human::watch_cycle(c);
        }
    })?;
    if g.json {
        json_line(&out);
    } else if !g.quiet {
        human::watch_end(&out);
    }
    Ok(0)
}

/// Prints `v` as one compact JSON line and flushes (the `--json` stream of `watch`).
fn json_line<T: Serialize>(v: &T) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string(v).expect("reports serialize")
    );
    let _ = out.flush();
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
        metrics: a.metrics,
        metrics_listen: a.metrics_listen,
    };
    let json = g.json;
    hydrabackup::server::serve(opts, |addr, metrics| {
        // Always printed (also with -q): scripts and tests read the address from it.
        let metrics = metrics.map(|m| format!("http://{m}/metrics"));
        if json {
            let mut doc = json!({"listening": format!("{scheme}://{addr}")});
            if let Some(m) = &metrics {
                doc["metrics"] = m.clone().into();
            }
            println!("{doc}");
        } else {
            println!("listening on {scheme}://{addr}");
            if let Some(m) = &metrics {
                println!("metrics on {m}");
            }
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
    })?;
    Ok(0)
}
