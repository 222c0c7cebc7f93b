//! `unlock`: removes stale locks (or all of them) and temporaries left by crashed writers.

use serde::Serialize;

use crate::Result;
use crate::ops::progress::Progress;
use crate::repo::Repository;

/// Options of `unlock`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct UnlockOptions {
    /// Remove all locks, even live ones.
    #[arg(long)]
    pub remove_all: bool,
}

/// What `unlock` removed (the `--json` document).
#[derive(Debug, Clone, Serialize)]
pub struct UnlockOutcome {
    /// Names of the lock files removed.
    pub removed: Vec<String>,
    /// Leftover temporary files removed.
    pub temporaries_removed: u64,
}

/// Removes the locks `opts` selects and the stale temporaries.
pub fn run(repo: &Repository, opts: &UnlockOptions, _progress: &Progress) -> Result<UnlockOutcome> {
    let removed = crate::repo::lock::unlock(repo.backend().as_ref(), repo.keys(), opts.remove_all)?;
    let temporaries_removed = repo.backend().remove_stale_temporaries()?;
    Ok(UnlockOutcome {
        removed,
        temporaries_removed,
    })
}
