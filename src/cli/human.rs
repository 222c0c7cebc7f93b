//! Human-readable output of each command's outcome (the `--json` document is the outcome
//! itself). Lines for stdout are printed only without `-q`; warnings go to stderr.

use hydrabackup::ops::copy;
use hydrabackup::ops::forget::ForgetSummary;
use hydrabackup::ops::prune::PruneSummary;
use hydrabackup::ops::show::ShowOutcome;
use hydrabackup::ops::snapshots::SnapshotsOutcome;
use hydrabackup::ops::stats::StatsOutcome;
use hydrabackup::ops::{backup, ls, restore, verify};
use hydrabackup::repo::tree::NodeKind;

use super::human_bytes as human;

/// `backup`: the decision log of a dry run, source errors and special files, the totals.
pub fn backup(out: &backup::Outcome, quiet: bool, say: &dyn Fn(String)) {
    if !quiet {
        for d in out.decisions.iter().flatten() {
            let name = d
                .name
                .as_deref()
                .map(|n| format!(" [{n}]"))
                .unwrap_or_default();
            say(format!(
                "{:<11} {}{name}: {} ({} read)",
                d.decision,
                d.path,
                d.reason,
                human(d.bytes_read)
            ));
        }
    }
    for e in &out.source_errors {
        eprintln!("hydrabackup: warning: {}: {}", e.path, e.error);
    }
    if !quiet {
        for f in &out.special {
            eprintln!(
                "hydrabackup: skipped {}: {} (not backed up)",
                f.path, f.kind
            );
        }
    }
    let s = &out.summary;
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
}

/// `snapshots`: a table.
pub fn snapshots(out: &SnapshotsOutcome) {
    println!(
        "{:<10} {:<24} {:<16} {:>10} {:>8} {:<16} paths",
        "id", "time", "host", "size", "swamps", "tags"
    );
    for e in &out.0 {
        let s = &e.snapshot;
        let t = s.timestamp().strftime("%Y-%m-%d %H:%M:%S UTC").to_string();
        let sw = s.catalogue.as_ref().map_or(0, |c| c.swamps);
        println!(
            "{:<10} {:<24} {:<16} {:>10} {:>8} {:<16} {}",
            e.short_id,
            t,
            s.host,
            human(s.summary.total_bytes),
            sw,
            s.tags.join(","),
            s.paths.join(" ")
        );
    }
    println!("{} snapshot(s)", out.0.len());
}

/// `ls`: one line per entry.
pub fn ls(out: &ls::LsOutcome) {
    for e in &out.0 {
        let kind = match e.kind {
            NodeKind::Dir => 'd',
            NodeKind::File => '-',
            NodeKind::Symlink => 'l',
        };
        println!("{kind}{:04o} {:>12} /{}", e.mode, e.size, e.path);
    }
}

/// `restore`: the paths of a dry run, the totals, the entries not restored (stderr).
pub fn restore(out: &restore::Outcome, quiet: bool, json: bool, say: &dyn Fn(String)) {
    let s = &out.summary;
    if out.dry_run && !quiet && !json {
        for p in &s.paths {
            println!("would restore {p}");
        }
    }
    say(format!(
        "{} snapshot {}: {} files, {} dirs, {} symlinks, {} from {} packs",
        if out.dry_run {
            "would restore"
        } else {
            "restored"
        },
        out.snapshot_id.short(),
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
}

/// `verify`: the damage found (stderr, also with `-q`) and what was checked.
pub fn verify(out: &verify::Outcome, say: &dyn Fn(String)) {
    let r = &out.report;
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
    if out.ok {
        say("no errors were found".into());
    }
}

fn time(ns: i64) -> String {
    if ns == 0 {
        return "-".into();
    }
    jiff::Timestamp::from_nanosecond(ns as i128)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| "-".into())
}

/// `find --key`: per Swamp and key, the snapshots holding it (`*` where the value changed).
pub fn find_key(out: &hydrabackup::ops::find_key::Outcome) {
    println!(
        "{} matching Treasure(s) in {} snapshot(s)",
        out.found.len(),
        out.snapshots
    );
    for f in &out.found {
        println!("{}  {}", f.swamp, f.key);
        for s in &f.seen {
            let t = s.modified_ns.map_or_else(|| "-".to_string(), time);
            let mark = if s.changed { "*" } else { " " };
            println!("  {mark} {} {} {:>10} {}", s.snapshot, s.time, s.size, t);
        }
    }
}

/// `show`: the totals, then one row per Swamp.
pub fn show(out: &ShowOutcome) {
    let t = &out.totals;
    println!(
        "snapshot {} of {}: {} swamps, {} entries, {} bytes, {} quarantined",
        out.snapshot_id.short(),
        out.time,
        t.swamps,
        t.entries,
        t.bytes,
        t.quarantined
    );
    println!(
        "{:<40} {:>3} {:>12} {:>9} {:>7} {:<19} {:<19} {:<11} path",
        "name", "fmt", "size", "entries", "blocks", "created", "modified", "decision"
    );
    for s in &out.swamps {
        println!(
            "{:<40} {:>3} {:>12} {:>9} {:>7} {:<19} {:<19} {:<11} {}{}",
            s.name.as_deref().unwrap_or("?"),
            s.format,
            s.size,
            s.entries,
            s.blocks,
            time(s.created_ns),
            time(s.modified_ns),
            s.decision,
            s.path,
            s.problem
                .as_deref()
                .map(|x| format!("  ({x})"))
                .or(s.records.map(|r| {
                    let same = if s.byte_identical == Some(true) {
                        ", byte-identical"
                    } else {
                        ""
                    };
                    format!("  (logical: {r} records{same})")
                }))
                .unwrap_or_default()
        );
        for k in s.keys.iter().flatten() {
            let t = k.modified_ns.map_or_else(|| "-".to_string(), time);
            println!("    {:>10} {:<19} {}", k.size, t, k.key);
        }
    }
}

/// `stats`.
pub fn stats(s: &StatsOutcome) {
    println!("snapshots        {}", s.snapshots);
    println!("packs            {} ({})", s.packs, human(s.pack_bytes));
    println!(
        "blobs            {} data, {} tree",
        s.data_blobs, s.tree_blobs
    );
    println!("unique content   {}", human(s.unique_bytes));
    println!(
        "stored           {} (compression {:.2}x)",
        human(s.stored_bytes),
        s.compression_ratio
    );
    println!(
        "all snapshots    {} (deduplication {:.1}x)",
        human(s.logical_bytes),
        s.dedup_ratio
    );
}

/// `copy`: one line per snapshot, then the totals.
pub fn copy(out: &copy::Outcome) {
    let s = &out.summary;
    for c in &s.copied {
        match &c.target {
            Some(t) => println!("copied {} -> {}  {}", &c.source[..8], &t[..8], c.time),
            None => println!("would copy {}  {}", &c.source[..8], c.time),
        }
    }
    println!(
        "{} snapshot(s) {}, {} already there; {} data and {} tree blobs ({}) added, {} read{}",
        s.copied.len(),
        if s.dry_run { "to copy" } else { "copied" },
        s.already_there,
        s.data_blobs_added,
        s.tree_blobs_added,
        human(s.bytes_added),
        human(s.bytes_read),
        if s.same_ids {
            ""
        } else {
            " (the repositories do not share blob ids: every blob is read; see init --copy-params)"
        }
    );
}

/// `forget`: per group, what is kept and removed, then the totals.
pub fn forget(s: &ForgetSummary) {
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

/// `prune`: used and unused space, then what was (or would be) deleted and rewritten.
pub fn prune(s: &PruneSummary) {
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
