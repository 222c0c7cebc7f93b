//! The library's error type: one enum whose variants say what went wrong, to which object, and
//! map to the documented exit codes.

use std::io;

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in hydrabackup's library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No repository at the given location.
    #[error(
        "repository {0} does not exist: check the location (-r/--repo or HYDRABACKUP_REPOSITORY)"
    )]
    RepoNotFound(String),
    /// A repository location with a scheme hydrabackup does not know.
    #[error(
        "unknown location scheme {0:?}: use a path, local:PATH, sftp:, s3: or rest: (a local folder whose name has a colon needs local:)"
    )]
    UnknownScheme(String),
    /// The command whose output was being backed up (`--stdin-from-command`) failed.
    #[error("the command failed: {0}")]
    CommandFailed(String),
    /// `init` over an existing repository.
    #[error("a repository already exists at {0}")]
    RepoExists(String),
    /// Another process holds a conflicting lock.
    #[error("repository is locked: {0}")]
    Locked(String),
    /// No key file opens with the given password.
    #[error("wrong password: no key in the repository opens with it")]
    WrongPassword,
    /// No password was given and none can be asked for.
    #[error("no password given: use --password-file, --password-command or HYDRABACKUP_PASSWORD")]
    NoPassword,
    /// A storage operation failed.
    #[error("{op} {name}: {source}")]
    Backend {
        /// What was attempted (read, write, list, ...).
        op: &'static str,
        /// The object or path concerned.
        name: String,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
        /// Whether repeating the operation may succeed (a dropped connection, a time-out, a
        /// server error or throttling), as the backend that failed judged it.
        transient: bool,
    },
    /// An object of the repository is damaged or does not decode.
    #[error("{object} is damaged: {reason} (run `hydrabackup verify`)")]
    Corrupt {
        /// The object, e.g. `pack 3fa2…`.
        object: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A requested object (snapshot, blob, key) is not there.
    #[error("{0} not found")]
    NotFound(String),
    /// A user-supplied argument is not usable.
    #[error("{0}")]
    InvalidInput(String),
    /// hydrabackup itself failed (a worker thread stopped, a library refused valid input): a bug,
    /// not the user's mistake nor damage.
    #[error("internal error: {0} (please report this)")]
    Internal(String),
    /// A local file operation (source or restore target) failed.
    #[error("{path}: {source}")]
    Io {
        /// The path concerned.
        path: String,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// `verify` found damage; the report lists it.
    #[error("verify found {0} problem(s) in the repository")]
    Damaged(usize),
    /// Snapshots that do not open or decode were skipped; the command did its work with the rest.
    #[error(
        "{0} damaged snapshot(s) skipped (named above); everything else was done (run `hydrabackup verify`)"
    )]
    SnapshotsSkipped(usize),
    /// `prune` refuses to run while snapshots are damaged: their data would look unused.
    #[error(
        "{0} damaged snapshot(s) (named above): prune would delete the data only they use; remove them with `hydrabackup forget ID` or run prune with --ignore-damaged-snapshots"
    )]
    PruneDamaged(usize),
    /// A backup found, before writing its snapshot, that data it relies on was deleted by a
    /// prune while it ran (it ran past the lock staleness window); no snapshot was written.
    #[error(
        "data this backup relies on was deleted by a prune while it ran ({0}): no snapshot was written; run the backup again"
    )]
    BackupLost(String),
    /// A destructive command was neither confirmed on a terminal nor given `--yes`; it did
    /// nothing but show what it would do.
    #[error("nothing was changed: confirm on a terminal or give --yes (above: what would be done)")]
    NotConfirmed,
    /// `restore` left out files whose data is damaged or missing; the rest was restored.
    #[error(
        "{0} file(s) not restored: their data is damaged or missing (run `hydrabackup verify --read-data`)"
    )]
    RestoreDamaged(usize),
    /// `restore` left out entries the target refused (e.g. a folder where a file goes); the rest
    /// was restored.
    #[error("{0} path(s) could not be written to the target; everything else was restored")]
    RestoreIncomplete(usize),
    /// The `--hook-before` command failed, so the command did not run.
    #[error("the --hook-before command failed ({0}); the command did not run")]
    HookBefore(String),
    /// `verify` found objects whose object lock ends sooner than the configured period.
    #[error(
        "{0} object(s) are locked for less than the configured retention (named above); `hydrabackup prune` extends them"
    )]
    RetentionShort(usize),
}

impl Error {
    /// The process exit code for this error (restic's conventions, plus 13 for damage).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::RestoreIncomplete(_) => 3,
            Error::HookBefore(_) => 15,
            Error::RepoNotFound(_) => 10,
            Error::UnknownScheme(_) => 2,
            Error::Locked(_) => 11,
            Error::NotConfirmed => 17,
            Error::WrongPassword => 12,
            Error::Damaged(_)
            | Error::RestoreDamaged(_)
            | Error::Corrupt { .. }
            | Error::SnapshotsSkipped(_)
            | Error::PruneDamaged(_) => 13,
            Error::Backend { source, .. } | Error::Io { source, .. }
                if source.raw_os_error() == Some(libc::ENOSPC) =>
            {
                14
            }
            Error::RetentionShort(_) => 18,
            _ => 1,
        }
    }

    /// Whether repeating the failed operation may succeed: only backend failures that the
    /// backend marked as transient. The retry layer ([`crate::backend::Retry`]) decides by this.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Backend {
                transient: true,
                ..
            }
        )
    }

    /// Shorthand for a permanent [`Error::Backend`].
    pub fn backend(op: &'static str, name: impl Into<String>, source: io::Error) -> Self {
        Error::Backend {
            op,
            name: name.into(),
            source,
            transient: false,
        }
    }

    /// Shorthand for [`Error::Corrupt`].
    pub fn corrupt(object: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            object: object.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl AsRef<std::path::Path>, source: io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}
