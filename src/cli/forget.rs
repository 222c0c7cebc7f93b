//! `forget` and `prune`: parse the policy, take the exclusive lock, run, report.

use std::sync::Arc;

use hydrabackup::ops::forget::{ForgetOptions, ForgetSummary, forget};
use hydrabackup::ops::progress::Progress;
use hydrabackup::ops::prune::{PruneOptions, PruneSummary, prune};
use hydrabackup::repo::Repository;
use hydrabackup::retention::{Policy, parse_span};
use hydrabackup::{Error, Result};
use serde_json::json;

use super::args::{ForgetArgs, Global, PruneArgs};
use super::{finish, human, open, print_json, progress, warn_damaged, with_damaged};

fn policy(a: &ForgetArgs) -> Result<Policy> {
    let mut p = match &a.policy {
        Some(s) => Policy::parse(s)?,
        None => Policy::default(),
    };
    p.merge(Policy {
        last: a.keep_last.unwrap_or(0),
        hourly: a.keep_hourly.unwrap_or(0),
        daily: a.keep_daily.unwrap_or(0),
        weekly: a.keep_weekly.unwrap_or(0),
        monthly: a.keep_monthly.unwrap_or(0),
        yearly: a.keep_yearly.unwrap_or(0),
        within: a.keep_within.as_deref().map(parse_span).transpose()?,
        tags: a.keep_tags.clone(),
    });
    Ok(p)
}

fn check_max_unused(v: f64) -> Result<()> {
    if !(0.0..=100.0).contains(&v) {
        return Err(Error::InvalidInput(format!(
            "--max-unused {v} is not a percentage between 0 and 100"
        )));
    }
    Ok(())
}

/// `forget [--prune]`.
pub fn forget_cmd(g: &Global, a: ForgetArgs) -> Result<i32> {
    check_max_unused(a.max_unused)?;
    let opts = ForgetOptions {
        ids: a.snapshots.clone(),
        policy: policy(&a)?,
        host: a.host.clone(),
        tag: a.tag.clone(),
        group_by: a
            .group_by
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        dry_run: a.dry_run,
    };
    let repo = open(g)?;
    let _lock = repo.lock(!a.dry_run, "forget")?;
    let s = forget(&repo, &opts, &jiff::tz::TimeZone::system())?;
    let pruned = if a.prune {
        Some(run_prune(
            g,
            &repo,
            &PruneOptions {
                dry_run: a.dry_run,
                max_unused_percent: a.max_unused,
                ignore_damaged_snapshots: a.ignore_damaged_snapshots,
            },
        )?)
    } else {
        None
    };
    if g.json {
        let mut v = serde_json::to_value(&s).expect("summary serializes");
        if let Some(p) = &pruned {
            v["prune"] = serde_json::to_value(p).expect("summary serializes");
        }
        print_json(&with_damaged(v, &[&repo]));
    } else if !g.quiet {
        print_forget(&s);
        if let Some(p) = &pruned {
            print_prune(p);
        }
    }
    finish(&[&repo], 0)
}

/// `prune`.
pub fn prune_cmd(g: &Global, a: PruneArgs) -> Result<i32> {
    check_max_unused(a.max_unused)?;
    let repo = open(g)?;
    let _lock = repo.lock(!a.dry_run, "prune")?;
    let s = run_prune(
        g,
        &repo,
        &PruneOptions {
            dry_run: a.dry_run,
            max_unused_percent: a.max_unused,
            ignore_damaged_snapshots: a.ignore_damaged_snapshots,
        },
    )?;
    if g.json {
        print_json(&with_damaged(json!(s), &[&repo]));
    } else if !g.quiet {
        print_prune(&s);
    }
    finish(&[&repo], 0)
}

fn run_prune(g: &Global, repo: &Repository, opts: &PruneOptions) -> Result<PruneSummary> {
    let p = Arc::new(Progress::default());
    let disp = progress::start(p.clone(), "prune", !g.quiet && !g.json);
    let s = prune(repo, opts, &p);
    drop(disp);
    // Even with -q: forged copies mean a client with the password is compromised.
    if let Ok(s) = &s
        && s.copies_damaged > 0
    {
        eprintln!(
            "hydrabackup: warning: {} blob copies were missing, damaged or forged; intact copies were kept instead",
            s.copies_damaged
        );
    }
    if let Err(Error::PruneDamaged(_)) = &s {
        warn_damaged(&[repo]);
    }
    s
}

fn print_forget(s: &ForgetSummary) {
    let verb = if s.dry_run { "would remove" } else { "removed" };
    for g in &s.groups {
        let mut head = Vec::new();
        if let Some(h) = &g.host {
            head.push(format!("host {h}"));
        }
        if let Some(p) = &g.paths {
            head.push(format!("paths {}", p.join(" ")));
        }
        if let Some(t) = &g.tags {
            head.push(format!("tags [{}]", t.join(",")));
        }
        if !head.is_empty() {
            println!("{}:", head.join(", "));
        }
        for k in &g.keep {
            println!(
                "  keep   {}  {}  ({})",
                &k.id[..8],
                k.time,
                k.reasons.join(", ")
            );
        }
        for r in &g.remove {
            println!("  remove {}  {}", &r.id[..8], r.time);
        }
    }
    println!("{verb} {} snapshot(s), kept {}", s.removed, s.kept);
}

fn print_prune(s: &PruneSummary) {
    let (would, verb) = if s.dry_run {
        ("would ", "would free")
    } else {
        ("", "freed")
    };
    println!(
        "{} snapshot(s): {} used in {} blobs, {} unused in {} blobs",
        s.snapshots,
        human(s.bytes_used),
        s.blobs_used,
        human(s.bytes_unused),
        s.blobs_unused
    );
    println!(
        "{would}delete {} pack(s), {would}rewrite {} ({} copied), {} unindexed; {verb} {} ({} -> {}); {} unused left",
        s.packs_deleted,
        s.packs_rewritten,
        human(s.bytes_rewritten),
        s.packs_unindexed,
        human(s.pack_bytes_before.saturating_sub(s.pack_bytes_after)),
        human(s.pack_bytes_before),
        human(s.pack_bytes_after),
        human(s.bytes_unused_left)
    );
}
