//! What a backup reads, from its options: the source paths (given, from `--files-from*`, an
//! instance's data root), the exclude patterns (given and from files) and the stream of
//! `--stdin` / `--stdin-from-command`.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{BackupOptions, SourceError, SourceErrorKind};
use crate::pattern::{Pattern, read_pattern_file};
use crate::{Error, Result};

/// The source paths that exist (absolute, sorted, without duplicates) and those skipped
/// because they do not.
pub(super) struct Sources {
    pub(super) paths: Vec<PathBuf>,
    pub(super) missing: Vec<SourceError>,
}

/// The paths a `--files-from*` file lists: `raw` NUL-separated, `verbatim` one per line as
/// written, otherwise one per line, trimmed, without blank lines and `#` comments.
fn listed(file: &Path, verbatim: bool, raw: bool) -> Result<Vec<PathBuf>> {
    let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
    let sep = if raw { b'\0' } else { b'\n' };
    Ok(bytes
        .split(|&b| b == sep)
        .filter_map(|l| {
            let l = match (raw, verbatim) {
                (true, _) => l,
                (false, true) => l.strip_suffix(b"\r").unwrap_or(l),
                (false, false) => l.trim_ascii(),
            };
            let skip = l.is_empty() || (!raw && !verbatim && l.starts_with(b"#"));
            (!skip).then(|| PathBuf::from(std::ffi::OsStr::from_bytes(l)))
        })
        .collect())
}

/// Resolves the source paths. A path that does not exist is skipped and reported (restic
/// does the same) unless no path exists at all.
pub(super) fn resolve(opts: &BackupOptions) -> Result<Sources> {
    let mut given = opts.paths.clone();
    for (files, verbatim, raw) in [
        (&opts.files_from, false, false),
        (&opts.files_from_verbatim, true, false),
        (&opts.files_from_raw, false, true),
    ] {
        for f in files {
            given.extend(listed(f, verbatim, raw)?);
        }
    }
    if let Some(inst) = &opts.instance {
        given.push(crate::source::instance_data_root(inst)?);
    }
    if given.is_empty() {
        return Err(Error::InvalidInput(
            "nothing to back up: give at least one path".into(),
        ));
    }
    let mut paths = Vec::new();
    let mut missing = Vec::new();
    let mut first_error = None;
    for p in &given {
        let abs = std::path::absolute(p).map_err(|e| Error::io(p, e))?;
        match std::fs::symlink_metadata(&abs) {
            Ok(_) => paths.push(abs),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                missing.push(SourceError {
                    path: abs.display().to_string(),
                    kind: SourceErrorKind::Missing,
                    error: "does not exist; skipped".into(),
                });
                first_error.get_or_insert(Error::io(&abs, e));
            }
            Err(e) => return Err(Error::io(&abs, e)),
        }
    }
    if paths.is_empty() {
        return Err(first_error.expect("a path was given"));
    }
    paths.sort();
    paths.dedup();
    Ok(Sources { paths, missing })
}

/// The exclude patterns: `--exclude`, `--exclude-file`, then the case-insensitive ones.
pub(super) fn excludes(opts: &BackupOptions) -> Result<Vec<Pattern>> {
    let mut v: Vec<Pattern> = opts.excludes.iter().map(Pattern::new).collect();
    for f in &opts.exclude_files {
        v.extend(read_pattern_file(f)?.into_iter().map(Pattern::new));
    }
    v.extend(opts.iexcludes.iter().map(Pattern::ignoring_case));
    for f in &opts.iexclude_files {
        v.extend(
            read_pattern_file(f)?
                .into_iter()
                .map(Pattern::ignoring_case),
        );
    }
    Ok(v)
}

/// The stream of `--stdin` (standard input) or `--stdin-from-command` (the command's
/// output, with the running command, whose exit status decides whether a snapshot is written).
pub(super) type Stream = (Box<dyn Read + Send>, Option<Child>);

/// Refuses stream options that cannot work: a file name that is not one name, `--stdin`
/// with paths, `--stdin-from-command` without a command.
pub(crate) fn check_stream(opts: &BackupOptions) -> Result<()> {
    let name = opts.stdin_filename.as_bytes();
    if let Some(why) = crate::repo::tree::name_problem(name) {
        return Err(Error::InvalidInput(format!(
            "--stdin-filename {:?}: {why}",
            opts.stdin_filename
        )));
    }
    if opts.stdin && !opts.paths.is_empty() {
        return Err(Error::InvalidInput(
            "--stdin backs up standard input only: give no paths (or use --stdin-from-command)"
                .into(),
        ));
    }
    if opts.stdin_from_command && opts.paths.is_empty() {
        return Err(Error::InvalidInput(
            "--stdin-from-command needs a command".into(),
        ));
    }
    Ok(())
}

/// Opens the stream of `--stdin` or starts the command of `--stdin-from-command`.
pub(super) fn stream(opts: &BackupOptions) -> Result<Stream> {
    check_stream(opts)?;
    if opts.stdin {
        return Ok((Box::new(std::io::stdin()), None));
    }
    let (prog, args) = opts.paths.split_first().expect("checked above");
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| Error::InvalidInput(format!("cannot run {}: {e}", prog.display())))?;
    let out = child.stdout.take().expect("stdout is piped");
    Ok((Box::new(out), Some(child)))
}

/// Waits for the command of `--stdin-from-command`: its failure is the backup's.
pub(super) fn finish_command(child: Option<Child>, opts: &BackupOptions) -> Result<()> {
    let Some(mut child) = child else {
        return Ok(());
    };
    let status = child
        .wait()
        .map_err(|e| Error::InvalidInput(format!("waiting for the command: {e}")))?;
    if status.success() {
        return Ok(());
    }
    Err(Error::CommandFailed(format!(
        "{} {}; no snapshot was written",
        opts.paths[0].display(),
        status
    )))
}

/// Where the entry at `rel` in a snapshot of `paths` is in the sources: below the one folder
/// backed up, or below the source named like its first component.
pub(super) fn display(paths: &[PathBuf], rel: &Path) -> PathBuf {
    if let [only] = paths
        && std::fs::metadata(only).is_ok_and(|m| m.is_dir())
    {
        return only.join(rel);
    }
    let first = rel.components().next().map(|c| c.as_os_str());
    paths
        .iter()
        .find(|p| p.file_name() == first)
        .and_then(|p| p.parent())
        .map_or_else(|| rel.to_path_buf(), |d| d.join(rel))
}
