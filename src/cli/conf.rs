//! The commands of configuration and day-to-day operation: `config show`, `policy`, `purge`,
//! `diff`, `find`, `tag`, `repair`, `completion` and `man` (their dispatch and human output).

use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory};
use hydrabackup::ops::progress::Progress;
use hydrabackup::ops::prune::PruneOptions;
use hydrabackup::ops::{diff, find, find_key, policy, repair, tag};
use hydrabackup::{Error, Result};
use serde_json::{Value, json};

use super::args::{Cli, Command, ConfigCommand, Global, PolicyCommand, RepairCommand};
use super::profile::{self, Profile, Setting};
use super::report::Report;
use super::{finish, human_bytes, open, print_json, print_outcome, summary, with_progress};

/// The profile in use and what its keys became.
pub(crate) type Loaded = (Profile, Vec<Setting>);

/// Runs one of this module's commands.
pub(crate) fn dispatch(
    g: &Global,
    cmd: Command,
    rep: &mut Report,
    matches: &ArgMatches,
    loaded: Option<&Loaded>,
) -> Result<i32> {
    let human = !g.quiet && !g.json;
    let none = Progress::default();
    match cmd {
        Command::Config(ConfigCommand::Show) => config_show(g, matches, loaded),
        Command::Policy(PolicyCommand::Set(a)) => {
            let repo = open(g)?;
            let out = policy::set(&repo, &a, &none)?;
            if g.json {
                print_outcome(&out);
            } else if human {
                println!("policy {} stored", out.id.short());
                print_policy(&out.policy);
            }
            Ok(0)
        }
        Command::Policy(PolicyCommand::Show) => {
            let repo = open(g)?;
            let out = policy::show(&repo, &none)?;
            if g.json {
                print_outcome(&out);
            } else if human {
                print_policy(&out.policy);
            }
            Ok(0)
        }
        Command::Purge(a) => {
            a.check()?;
            let repo = open(g)?;
            rep.opened(&repo);
            let run = |a: &PruneOptions, rep: &mut Report| -> Result<i32> {
                let out = with_progress(g, "prune", false, |p| policy::purge(&repo, a, p))?;
                summary(g, rep, &out);
                rep.forget(&repo, &out);
                if human {
                    super::human::forget(&out.summary);
                    if let Some(p) = &out.prune {
                        super::human::prune(p);
                    }
                }
                finish(&[&repo], 0)
            };
            // The safety rule of forget and prune: show what would be done, then ask.
            if !g.yes && !a.dry_run {
                let mut dry = a.clone();
                dry.dry_run = true;
                run(&dry, &mut Report::new("purge", &Default::default()))?;
                super::confirm::ask("purge as shown?")?;
            }
            run(&a, rep)
        }
        Command::Diff(a) => {
            let repo = open(g)?;
            let out = diff::run(&repo, &a, &none)?;
            if g.json {
                print_outcome(&out);
            } else if human {
                print_diff(&out);
            }
            finish(&[&repo], 0)
        }
        Command::Find(a) => {
            let repo = open(g)?;
            if let Some(k) = a.key_search() {
                let out = find_key::run(&repo, &k, &none)?;
                if g.json {
                    print_outcome(&out);
                } else if human {
                    super::human::find_key(&out);
                }
                return finish(&[&repo], 0);
            }
            let out = find::run(&repo, &a, &none)?;
            if g.json {
                print_outcome(&out);
            } else if human {
                for f in &out.0 {
                    println!(
                        "snapshot {} of {} at {}:",
                        f.snapshot.short(),
                        f.host,
                        f.time
                    );
                    for m in &f.matches {
                        let swamp = m.swamp.as_deref().map(|s| format!("  [{s}]"));
                        println!(
                            "  {:>10}  {}{}",
                            human_bytes(m.size),
                            m.path,
                            swamp.unwrap_or_default()
                        );
                    }
                }
                if out.0.is_empty() {
                    println!(
                        "no snapshot holds a match for {:?}",
                        a.pattern.unwrap_or_default()
                    );
                }
            }
            finish(&[&repo], 0)
        }
        Command::Tag(a) => {
            let repo = open(g)?;
            let out = tag::run(&repo, &a, &none)?;
            if g.json {
                print_outcome(&out);
            } else if human {
                for c in &out.changed {
                    println!(
                        "snapshot {} is now {} (tags: {})",
                        c.old.short(),
                        c.new.short(),
                        c.tags.join(",")
                    );
                }
                println!(
                    "{} snapshot(s) changed, {} unchanged",
                    out.changed.len(),
                    out.unchanged.len()
                );
            }
            Ok(0)
        }
        Command::Repair(RepairCommand::Index(a)) => {
            let repo = open(g)?;
            let out = with_progress(g, "repair", false, |p| repair::index(&repo, &a, p))?;
            summary(g, rep, &out);
            if human {
                for b in &out.damaged_packs {
                    println!("damaged pack {} left out: {}", b.id, b.error);
                }
                let verb = if out.dry_run { "would write" } else { "wrote" };
                println!(
                    "{verb} {} index file(s) for {} pack(s), {} blob(s) ({} pack(s) newly indexed, {} dropped); {} old index file(s) replaced",
                    out.index_files_written,
                    out.packs,
                    out.blobs,
                    out.packs_added,
                    out.packs_dropped,
                    out.index_files_removed
                );
            }
            Ok(0)
        }
        Command::Repair(RepairCommand::Snapshots(a)) => {
            let repo = open(g)?;
            let out = with_progress(g, "repair", false, |p| repair::snapshots(&repo, &a, p))?;
            summary(g, rep, &out);
            if human {
                for r in &out.repaired {
                    let new = r
                        .new
                        .map_or("(dry run)".to_string(), |n| n.short().to_string());
                    println!(
                        "snapshot {} -> {}: {} entr(ies) left out{}",
                        r.old.short(),
                        new,
                        r.removed.len(),
                        if r.forgotten {
                            ", original removed"
                        } else {
                            ""
                        }
                    );
                    for p in &r.removed {
                        println!("  - {p}");
                    }
                }
                println!(
                    "{} snapshot(s) checked, {} repaired",
                    out.checked,
                    out.repaired.len()
                );
            }
            finish(&[&repo], 0)
        }
        Command::Completion { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "hydrabackup",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
        Command::Man { dir } => {
            let written = man_pages(&dir)?;
            if g.json {
                print_json(&json!({"dir": dir, "pages": written}));
            } else if human {
                println!("wrote {} man page(s) to {}", written.len(), dir.display());
            }
            Ok(0)
        }
        _ => Err(Error::Internal("not a configuration command".into())),
    }
}

fn print_policy(p: &policy::StoredPolicy) {
    println!("retention: {}", p.retention);
    if let Some(w) = &p.keep_within {
        println!("keep within: {w}");
    }
    if !p.keep_tags.is_empty() {
        println!("keep tags: {}", p.keep_tags.join(","));
    }
    println!("group by: {}", p.group_by);
    println!("set {} by {}@{}", p.time, p.user, p.host);
}

fn print_diff(out: &diff::Outcome) {
    println!(
        "comparing snapshot {} to {}:",
        out.from.short(),
        out.to.short()
    );
    for c in &out.changes {
        let mark = match c.change {
            diff::Change::Added => "+",
            diff::Change::Removed => "-",
            diff::Change::Modified => "M",
            diff::Change::Metadata => "U",
        };
        let slash = if c.kind == hydrabackup::repo::tree::NodeKind::Dir {
            "/"
        } else {
            ""
        };
        println!("{mark}    {}{slash}", c.path);
    }
    for s in &out.swamps {
        let mark = match s.change {
            diff::Change::Added => "+",
            diff::Change::Removed => "-",
            _ => "M",
        };
        println!("{mark} swamp {}", s.name);
    }
    let t = &out.totals;
    println!(
        "files: {} added ({}), {} removed ({}), {} modified; folders: {} added, {} removed; swamps: {} added, {} removed, {} modified",
        t.files_added,
        human_bytes(t.bytes_added),
        t.files_removed,
        human_bytes(t.bytes_removed),
        t.files_modified,
        t.dirs_added,
        t.dirs_removed,
        t.swamps_added,
        t.swamps_removed,
        t.swamps_modified
    );
}

/// Writes `hydrabackup.1` and one page per command (`hydrabackup-backup.1`, ...) into `dir`.
fn man_pages(dir: &Path) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut cmd = Cli::command();
    cmd.build();
    let mut written = Vec::new();
    // (file name, how the command is typed, the command)
    let mut todo = vec![("hydrabackup".to_string(), "hydrabackup".to_string(), cmd)];
    while let Some((name, typed, c)) = todo.pop() {
        for sub in c
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        {
            todo.push((
                format!("{name}-{}", sub.get_name()),
                format!("{typed} {}", sub.get_name()),
                sub.clone(),
            ));
        }
        let c = c.bin_name(typed);
        let mut buf = Vec::new();
        clap_mangen::Man::new(c)
            .title(name.clone())
            .render(&mut buf)
            .map_err(|e| Error::io(dir, e))?;
        let file = format!("{name}.1");
        let path = dir.join(&file);
        std::fs::write(&path, buf).map_err(|e| Error::io(&path, e))?;
        written.push(file);
    }
    written.sort();
    Ok(written)
}

/// `config show`: the global options in effect and the profile's keys, each with its source.
fn config_show(g: &Global, matches: &ArgMatches, loaded: Option<&Loaded>) -> Result<i32> {
    let mut cmd = Cli::command();
    cmd.build();
    let from_profile = |key: &str| {
        loaded.is_some_and(|(_, s)| {
            s.iter()
                .any(|s| s.table.is_empty() && s.key == key && !s.args.is_empty())
        })
    };
    let mut global = serde_json::Map::new();
    for arg in cmd
        .get_arguments()
        .filter(|a| a.is_global_set() && !a.is_hide_set())
    {
        let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else {
            continue;
        };
        let Some(src) = matches.value_source(id) else {
            continue;
        };
        let source = match src {
            ValueSource::CommandLine if from_profile(long) => "profile".to_string(),
            ValueSource::CommandLine => "command line".to_string(),
            ValueSource::EnvVariable => format!(
                "environment ({})",
                arg.get_env()
                    .map(|e| e.to_string_lossy())
                    .unwrap_or_default()
            ),
            _ => "default".to_string(),
        };
        let raw: Vec<String> = matches
            .get_raw_occurrences(id)
            .map(|o| {
                o.flatten()
                    .map(|v: &std::ffi::OsStr| v.to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let value = match (arg.get_action().takes_values(), raw.as_slice()) {
            (false, _) => match arg.get_action() {
                clap::ArgAction::Count => json!(matches.get_count(id)),
                _ => json!(matches.get_flag(id)),
            },
            (true, [one]) => json!(profile::redact(long, one)),
            (true, many) => json!(
                many.iter()
                    .map(|v| profile::redact(long, v))
                    .collect::<Vec<_>>()
            ),
        };
        if value == json!(false) || value == json!(0) {
            continue;
        }
        global.insert(long.to_string(), json!({"value": value, "source": source}));
    }
    let mut commands = serde_json::Map::new();
    if let Some((_, settings)) = loaded {
        for s in settings.iter().filter(|s| !s.table.is_empty()) {
            let value = redact_value(&s.key, &s.value);
            let entry = json!({
                "value": value,
                "source": "profile",
                "overridden_by": s.overridden,
            });
            commands
                .entry(s.table.clone())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("object")
                .insert(s.key.clone(), entry);
        }
    }
    // The profile's global keys that something else overrides.
    let overridden: Vec<Value> = loaded
        .map(|(_, s)| {
            s.iter()
                .filter(|s| s.table.is_empty())
                .filter_map(|s| {
                    let by = s.overridden.as_ref()?;
                    Some(json!({"key": s.key, "value": redact_value(&s.key, &s.value), "overridden_by": by}))
                })
                .collect()
        })
        .unwrap_or_default();
    let doc = json!({
        "overridden": overridden,
        "profile": loaded.map(|(p, _)| p.name.clone()),
        "profile_file": loaded.map(|(p, _)| p.file.display().to_string()),
        "global": global,
        "commands": commands,
        "precedence": "command line > environment > profile",
    });
    if g.json {
        print_json(&doc);
        return Ok(0);
    }
    match loaded {
        Some((p, _)) => println!("# profile {} from {}", p.name, p.file.display()),
        None => println!("# no profile (-P NAME selects one)"),
    }
    for (k, v) in &global {
        println!(
            "{k} = {}  # {}",
            toml_text(&v["value"]),
            v["source"].as_str().unwrap_or("")
        );
    }
    for o in &overridden {
        println!(
            "# {} = {}  # profile, overridden by the {}",
            o["key"].as_str().unwrap_or(""),
            toml_text(&o["value"]),
            o["overridden_by"].as_str().unwrap_or("")
        );
    }
    for (table, keys) in &commands {
        println!("[{table}]");
        for (k, v) in keys.as_object().expect("object") {
            let note = match v["overridden_by"].as_str() {
                Some(by) => format!("profile, overridden by the {by}"),
                None => "profile".into(),
            };
            println!("{k} = {}  # {note}", toml_text(&v["value"]));
        }
    }
    Ok(0)
}

fn redact_value(key: &str, v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => json!(profile::redact(key, s)),
        toml::Value::Array(a) => Value::Array(a.iter().map(|x| redact_value(key, x)).collect()),
        toml::Value::Integer(i) => json!(i),
        toml::Value::Float(f) => json!(f),
        toml::Value::Boolean(b) => json!(b),
        other => json!(other.to_string()),
    }
}

/// A JSON value written as TOML writes it (strings quoted, lists in brackets).
fn toml_text(v: &Value) -> String {
    match v {
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(toml_text).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

/// The subcommand path the matches name (`["key", "add"]`).
pub(crate) fn used_path(m: &ArgMatches) -> Vec<String> {
    let mut out = Vec::new();
    let mut m = m;
    while let Some((name, sub)) = m.subcommand() {
        out.push(name.to_string());
        m = sub;
    }
    out
}

/// Parses the command line, with the arguments of the profile it selects (`-P`, or
/// `HYDRABACKUP_PROFILE`) added. A bad profile is an error (exit 2).
pub(crate) fn parse(argv: Vec<OsString>) -> Result<(ArgMatches, Option<Loaded>)> {
    let mut cmd = Cli::command();
    cmd.build();
    // A first, lenient pass tells the profile, the subcommand and what the line gives.
    let first = cmd
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(&argv)
        .ok();
    let name = first
        .as_ref()
        .and_then(|m| m.try_get_one::<String>("profile").ok().flatten().cloned());
    let Some(name) = name else {
        return Ok((cmd.get_matches_from(argv), None));
    };
    let file = first.as_ref().and_then(|m| {
        m.try_get_one::<std::path::PathBuf>("profile_file")
            .ok()
            .flatten()
            .cloned()
    });
    let p = profile::load(&name, file.as_deref())?;
    let used = first.as_ref().map(used_path).unwrap_or_default();
    let settings = profile::settings(&p, &cmd, first.as_ref(), &used)?;
    let argv = profile::extend_args(&argv, &settings);
    tracing::debug!(profile = %name, "profile applied");
    Ok((cmd.get_matches_from(argv), Some((p, settings))))
}
