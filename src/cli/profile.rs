//! Profiles: named sets of options in a TOML file (README, "Profiles"), turned into command-line
//! arguments that clap parses as if given. Every option has a key, its long name (`exclude`,
//! `keep-daily`, `password-file`; a positional its name: `paths`); keys at the top of a profile
//! are global options, tables named like commands (`[prod.backup]`, `[prod.key.add]`) hold that
//! command's. Precedence: command line > environment > profile. A profile value is dropped when
//! the command line gives the option or its environment variable is set (clap knows both).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};
use hydrabackup::{Error, Result};

/// The user's profile file: `$XDG_CONFIG_HOME/hydrabackup/profiles.toml`, else
/// `~/.config/hydrabackup/profiles.toml`.
fn user_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(base.join("hydrabackup").join("profiles.toml"))
}

/// The system-wide profile file.
const SYSTEM_FILE: &str = "/etc/hydrabackup/profiles.toml";

/// A profile loaded from its file.
pub(crate) struct Profile {
    /// Its name.
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// Its table.
    pub table: toml::Table,
}

/// Loads profile `name` from `file`, else from the user's file, else from the system file (the
/// first that defines it).
pub(crate) fn load(name: &str, file: Option<&Path>) -> Result<Profile> {
    let candidates: Vec<PathBuf> = match file {
        Some(f) => vec![f.to_path_buf()],
        None => user_file()
            .into_iter()
            .chain([PathBuf::from(SYSTEM_FILE)])
            .collect(),
    };
    for f in &candidates {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && file.is_none() => continue,
            Err(e) => return Err(Error::io(f, e)),
        };
        let mut doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            Error::InvalidInput(format!(
                "profile file {}: {}",
                f.display(),
                e.message().trim()
            ))
        })?;
        match doc.remove(name) {
            Some(toml::Value::Table(table)) => {
                return Ok(Profile {
                    name: name.into(),
                    file: f.clone(),
                    table,
                });
            }
            Some(_) => {
                return Err(Error::InvalidInput(format!(
                    "profile file {}: {name} is not a table ([{name}])",
                    f.display()
                )));
            }
            None if file.is_some() => break,
            None => continue,
        }
    }
    let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    Err(Error::NotFound(format!(
        "profile {name} (looked in {})",
        looked.join(", ")
    )))
}

/// One profile key resolved against the command it applies to.
pub(crate) struct Setting {
    /// The table it is in (`""` for the global keys, else `backup`, `key.add`, ...).
    pub table: String,
    /// The key.
    pub key: String,
    /// Its value, as the profile has it.
    pub value: toml::Value,
    /// Why it is not used (`None`: it is): the command line gives it, or its environment variable.
    pub overridden: Option<String>,
    /// The arguments it becomes (empty when overridden or a `false` flag).
    pub args: Vec<OsString>,
    /// Whether it is a positional argument (goes after `--`).
    pub positional: bool,
}

/// Every key of `profile`, checked against `cmd` (built, so that global options are known to
/// every subcommand). `given`: the matches of the command line alone (to drop what it gives),
/// `used`: the subcommand path the command line names (only its tables become arguments).
pub(crate) fn settings(
    profile: &Profile,
    cmd: &Command,
    given: Option<&ArgMatches>,
    used: &[String],
) -> Result<Vec<Setting>> {
    let mut out = Vec::new();
    collect(&profile.table, cmd, "", given, Some(used), &mut out)?;
    // A key of the command's table wins over the same global key.
    let leaf = used.join(".");
    let in_leaf: Vec<String> = out
        .iter()
        .filter(|s| s.table == leaf && !leaf.is_empty())
        .map(|s| s.key.clone())
        .collect();
    for s in out.iter_mut().filter(|s| s.table.is_empty()) {
        if in_leaf.contains(&s.key) && s.overridden.is_none() {
            s.overridden = Some(format!("the [{leaf}] table"));
            s.args.clear();
        }
    }
    Ok(out)
}

fn collect(
    table: &toml::Table,
    cmd: &Command,
    path: &str,
    given: Option<&ArgMatches>,
    used: Option<&[String]>,
    out: &mut Vec<Setting>,
) -> Result<()> {
    // The global keys are resolved against the top command, each command's table against it.
    let active = used.is_some_and(|u| path.is_empty() || u.is_empty());
    for (key, value) in table {
        if let toml::Value::Table(sub) = value {
            let Some(sc) = cmd.find_subcommand(key) else {
                return Err(unknown(path, key, "no such command"));
            };
            let name = sc.get_name().to_string();
            let sub_path = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            let next = used.and_then(|u| match u.split_first() {
                Some((first, rest)) if *first == name => Some(rest),
                _ => None,
            });
            let sub_given = given.and_then(|m| m.subcommand_matches(&name));
            collect(sub, sc, &sub_path, sub_given, next, out)?;
            continue;
        }
        let arg = cmd
            .get_arguments()
            .find(|a| {
                a.get_long() == Some(key.as_str())
                    || (a.is_positional() && a.get_id().as_str().replace('_', "-") == *key)
            })
            .filter(|a| !a.is_hide_set() || a.get_long().is_some());
        let Some(arg) = arg.filter(|a| !matches!(a.get_id().as_str(), "profile" | "profile_file"))
        else {
            // A command's option among the global keys: say where it goes.
            let owners: Vec<&str> = cmd
                .get_subcommands()
                .filter(|c| {
                    c.get_arguments()
                        .any(|a| a.get_long() == Some(key.as_str()))
                })
                .map(|c| c.get_name())
                .collect();
            if path.is_empty() && !owners.is_empty() {
                return Err(unknown(
                    path,
                    key,
                    &format!(
                        "not a global option: put it in the table of its command ([NAME.{}])",
                        owners.join("], [NAME.")
                    ),
                ));
            }
            return Err(unknown(path, key, "no such option"));
        };
        if path.is_empty() && !arg.is_global_set() {
            return Err(unknown(
                path,
                key,
                "not a global option: put it in the table of its command",
            ));
        }
        let values: Vec<String> = match value {
            toml::Value::Array(a) => a.iter().map(scalar).collect::<Option<_>>(),
            v => scalar(v).map(|s| vec![s]),
        }
        .ok_or_else(|| {
            unknown(
                path,
                key,
                "value must be a string, number, boolean or a list of them",
            )
        })?;
        let id = arg.get_id().as_str();
        let env = arg
            .get_env()
            .filter(|v| std::env::var_os(v).is_some())
            .map(|v| format!("environment variable {}", v.to_string_lossy()));
        let on_line = given
            .and_then(|m| m.value_source(id))
            .filter(|s| *s == ValueSource::CommandLine)
            .map(|_| "command line".to_string());
        let overridden = on_line.or(env);
        // Checked in every table, used only in the command's own (and the global keys).
        let mut args = to_args(arg, key, path, value, &values)?;
        if overridden.is_some() || !active {
            args.clear();
        }
        out.push(Setting {
            table: path.to_string(),
            key: key.clone(),
            value: value.clone(),
            overridden,
            args,
            positional: arg.is_positional(),
        });
    }
    Ok(())
}

/// The command-line arguments a profile value stands for.
fn to_args(
    arg: &clap::Arg,
    key: &str,
    path: &str,
    value: &toml::Value,
    values: &[String],
) -> Result<Vec<OsString>> {
    let flag = |n: usize| vec![OsString::from(format!("--{key}")); n];
    Ok(match arg.get_action() {
        ArgAction::SetTrue | ArgAction::SetFalse => match value {
            toml::Value::Boolean(true) => flag(1),
            toml::Value::Boolean(false) => Vec::new(),
            _ => return Err(unknown(path, key, "must be true or false")),
        },
        ArgAction::Count => match value {
            toml::Value::Integer(n) if (0..=8).contains(n) => flag(*n as usize),
            toml::Value::Boolean(b) => flag(*b as usize),
            _ => return Err(unknown(path, key, "must be a count (0 to 8)")),
        },
        action => {
            if values.len() != 1 && !matches!(action, ArgAction::Append) && !arg.is_positional() {
                return Err(unknown(path, key, "takes one value, not a list"));
            }
            if arg.is_positional() {
                values.iter().map(OsString::from).collect()
            } else {
                values
                    .iter()
                    .map(|v| OsString::from(format!("--{key}={v}")))
                    .collect()
            }
        }
    })
}

fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(d) => Some(d.to_string()),
        _ => None,
    }
}

fn unknown(path: &str, key: &str, why: &str) -> Error {
    let at = if path.is_empty() {
        String::new()
    } else {
        format!("[{path}] ")
    };
    Error::InvalidInput(format!("profile key {at}{key:?}: {why}"))
}

/// `argv` with the profile's arguments added: options before any `--` of the command line,
/// positional values at the very end (after a `--` of their own when the line has none).
pub(crate) fn extend_args(argv: &[OsString], settings: &[Setting]) -> Vec<OsString> {
    let dashdash = argv.iter().position(|a| a == OsStr::new("--"));
    let (head, tail) = argv.split_at(dashdash.unwrap_or(argv.len()));
    let mut out: Vec<OsString> = head.to_vec();
    out.extend(
        settings
            .iter()
            .filter(|s| !s.positional)
            .flat_map(|s| s.args.iter().cloned()),
    );
    let positional: Vec<OsString> = settings
        .iter()
        .filter(|s| s.positional)
        .flat_map(|s| s.args.iter().cloned())
        .collect();
    out.extend(tail.iter().cloned());
    if !positional.is_empty() {
        if dashdash.is_none() {
            out.push("--".into());
        }
        out.extend(positional);
    }
    out
}

/// Whether a value of `key` is a secret `config show` must not print.
pub(crate) fn is_secret(key: &str) -> bool {
    key.contains("password") && !key.ends_with("-file")
}

/// `value` fit to print: secrets replaced, a password in a URL (`rest:https://u:PASS@h/`)
/// replaced.
pub(crate) fn redact(key: &str, value: &str) -> String {
    if is_secret(key) {
        return "<redacted>".into();
    }
    match (value.find("://"), value.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let auth = &value[s + 3..at];
            match auth.find(':') {
                Some(c) if !auth[..c].contains('/') => format!(
                    "{}{}:<redacted>{}",
                    &value[..s + 3],
                    &auth[..c],
                    &value[at..]
                ),
                _ => value.to_string(),
            }
        }
        _ => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("password-command", "echo x"), "<redacted>");
        assert_eq!(redact("password-file", "/p"), "/p");
        assert_eq!(
            redact("repo", "rest:https://alice:s3cret@h:8000/alice"),
            "rest:https://alice:<redacted>@h:8000/alice"
        );
        assert_eq!(redact("repo", "sftp://u@h//r"), "sftp://u@h//r");
        assert_eq!(redact("repo", "/backup/repo"), "/backup/repo");
    }
}
