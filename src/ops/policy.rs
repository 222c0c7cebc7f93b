//! The retention policy stored in the repository (`policy set`, `policy show`), applied by
//! `forget` without arguments and by `purge` (repo-format.md §7c).

use serde::{Deserialize, Serialize};

use crate::backend::FileKind;
use crate::ops::forget::{self, ForgetOptions};
use crate::ops::progress::Progress;
use crate::ops::prune::PruneOptions;
use crate::repo::Repository;
use crate::{Error, Id, Result};

/// A retention policy as stored in `policy/<id>` (sealed CBOR).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPolicy {
    /// Format version, 1.
    pub version: u32,
    /// When it was set (RFC 3339, UTC).
    pub time: String,
    /// Host it was set from.
    pub host: String,
    /// User who set it.
    pub user: String,
    /// Compact policy as `forget --policy` takes it (e.g. `7d,4w,12m`).
    pub retention: String,
    /// `--keep-within` span, if any.
    #[serde(default)]
    pub keep_within: Option<String>,
    /// Tags whose snapshots are always kept.
    #[serde(default)]
    pub keep_tags: Vec<String>,
    /// Grouping (`host,paths` by default).
    pub group_by: String,
}

impl StoredPolicy {
    /// The forget options that apply this policy.
    pub fn forget_options(&self) -> ForgetOptions {
        ForgetOptions {
            policy: Some(self.retention.clone()),
            keep_within: self.keep_within.clone(),
            keep_tags: self.keep_tags.clone(),
            group_by: self.group_by.clone(),
            ..ForgetOptions::default()
        }
    }
}

/// Options of `policy set`.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicySetOptions {
    /// Compact policy: e.g. `7d,4w,12m` (as `forget --policy`).
    #[arg(long)]
    pub retention: String,
    /// Also keep every snapshot within this span of the newest one (e.g. `30d`).
    #[arg(long)]
    pub keep_within: Option<String>,
    /// Always keep snapshots with this tag (repeatable).
    #[arg(long = "keep-tag")]
    pub keep_tags: Vec<String>,
    /// Apply the policy per group of snapshots sharing these (host, paths, tags).
    #[arg(long, default_value = "host,paths")]
    pub group_by: String,
}

/// What `policy set` / `policy show` report.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The policy's object id.
    pub id: Id,
    /// The policy.
    pub policy: StoredPolicy,
    /// Older policy objects removed (`policy set`).
    pub replaced: u64,
}

/// The stored policy, if any. Normally there is one object; several mean that a writer could
/// store a new one but not remove the old one, and nothing is applied until `policy set` is
/// run again with the right to delete.
pub fn load(repo: &Repository) -> Result<Option<(Id, StoredPolicy)>> {
    let names = repo.backend().list(FileKind::Policy)?;
    match names.as_slice() {
        [] => Ok(None),
        [(name, _)] => {
            let id = Id::from_hex(name)
                .ok_or_else(|| Error::corrupt(format!("policy {name}"), "bad name"))?;
            let p: StoredPolicy = repo.load_object(FileKind::Policy, name)?;
            if p.version != 1 {
                return Err(Error::InvalidInput(format!(
                    "stored policy version {} is not supported by this hydrabackup",
                    p.version
                )));
            }
            Ok(Some((id, p)))
        }
        many => Err(Error::InvalidInput(format!(
            "the repository holds {} retention policies (a new one was stored where the old one could not be removed); run `policy set` where deleting is allowed to choose one",
            many.len()
        ))),
    }
}

/// Stores `opts` as the repository's policy and removes the policies it replaces.
pub fn set(repo: &Repository, opts: &PolicySetOptions, _progress: &Progress) -> Result<Outcome> {
    let policy = StoredPolicy {
        version: 1,
        time: jiff::Timestamp::now().to_string(),
        host: crate::sys::hostname(),
        user: crate::sys::username(),
        retention: opts.retention.clone(),
        keep_within: opts.keep_within.clone(),
        keep_tags: opts.keep_tags.clone(),
        group_by: opts.group_by.clone(),
    };
    let fo = policy.forget_options();
    fo.check()?;
    if fo.retention()?.is_empty() {
        return Err(Error::InvalidInput(
            "the policy keeps nothing: give at least one rule (e.g. --retention 7d,4w,12m)".into(),
        ));
    }
    let _lock = repo.lock(true, "policy set")?;
    let old = repo.backend().list(FileKind::Policy)?;
    let id = repo.save_object(FileKind::Policy, &policy)?;
    let mut replaced = 0;
    for (name, _) in old.iter().filter(|(n, _)| *n != id.to_hex()) {
        repo.backend()
            .remove(FileKind::Policy, name)
            .map_err(|e| {
                Error::InvalidInput(format!(
                    "the new policy is stored but the old one could not be removed ({e}); forget by policy refuses until `policy set` succeeds where deleting is allowed"
                ))
            })?;
        replaced += 1;
    }
    Ok(Outcome {
        id,
        policy,
        replaced,
    })
}

/// The stored policy (an error when there is none).
pub fn show(repo: &Repository, _progress: &Progress) -> Result<Outcome> {
    let (id, policy) = load(repo)?.ok_or_else(no_policy)?;
    Ok(Outcome {
        id,
        policy,
        replaced: 0,
    })
}

fn no_policy() -> Error {
    Error::InvalidInput(
        "no retention policy is stored in the repository: store one with `hydrabackup policy set --retention 7d,4w,12m`"
            .into(),
    )
}

/// `forget` options with the stored policy filled in when `opts` names no snapshots and no
/// rule (forget without arguments); otherwise `opts` as given.
pub fn apply_stored(repo: &Repository, opts: &ForgetOptions) -> Result<ForgetOptions> {
    if !opts.snapshots.is_empty() || !opts.retention()?.is_empty() {
        return Ok(opts.clone());
    }
    let (_, p) = load(repo)?.ok_or_else(|| {
        Error::InvalidInput(
            "no snapshots, no policy given and no policy stored: name snapshots, give --keep-* / --policy, or store a policy with `hydrabackup policy set --retention 7d,4w,12m` (forget never removes everything by default)".into(),
        )
    })?;
    let stored = p.forget_options();
    // A grouping given on the command line (not the default) wins over the stored one.
    let group_by = if opts.group_by == ForgetOptions::default().group_by {
        stored.group_by
    } else {
        opts.group_by.clone()
    };
    Ok(ForgetOptions {
        policy: stored.policy,
        keep_within: stored.keep_within,
        keep_tags: stored.keep_tags,
        group_by,
        ..opts.clone()
    })
}

/// `purge`: forget by the stored policy, then prune.
pub fn purge(
    repo: &Repository,
    opts: &PruneOptions,
    progress: &Progress,
) -> Result<forget::Outcome> {
    let fo = ForgetOptions {
        prune: true,
        prune_options: opts.clone(),
        ..ForgetOptions::default()
    };
    forget::run(repo, &apply_stored(repo, &fo)?, progress)
}
