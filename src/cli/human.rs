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
    for p in &out.unmatched_excludes {
        eprintln!("hydrabackup: warning: exclude pattern {p:?} matched nothing");
    }
    if !quiet {
        for f in &out.special {
            eprintln!(
                "hydrabackup: skipped {}: {} (not backed up)",
                f.path, f.kind
            );
        }
    }
    for p in &out.lost_gone {
        eprintln!(
            "hydrabackup: warning: {p}: a prune deleted its stored data during the backup and it is gone from the source: not in the snapshot"
        );
    }
    if out.files_read_again > 0 {
        say(format!(
            "a prune deleted stored data this backup relied on: {} files read again",
            out.files_read_again
        ));
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

/// Notes on source paths that are not what a user may think: a symlink (such as `/dev/stdin`)
/// is stored as a link, a FIFO or device is not read.
pub fn source_notes(paths: &[std::path::PathBuf]) {
    for p in paths {
        let Ok(md) = std::fs::symlink_metadata(p) else {
            continue;
        };
        let ft = md.file_type();
        if ft.is_symlink() {
            let to = std::fs::read_link(p)
                .map(|t| format!(" (to {})", t.display()))
                .unwrap_or_default();
            eprintln!(
                "hydrabackup: note: {} is a symbolic link{to}: the link is stored, not what it points to{}",
                p.display(),
                if p.starts_with("/dev") || p.starts_with("/proc") {
                    "; use --stdin to back up standard input"
                } else {
                    ""
                }
            );
        } else if !ft.is_file() && !ft.is_dir() {
            eprintln!(
                "hydrabackup: note: {} is not a regular file or folder: it is not read; use --stdin (or --stdin-from-command) to back up a stream",
                p.display()
            );
        }
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

/// `ls`: one line per entry; `ls -l` as `ls -l` prints it, with the time in UTC.
pub fn ls(out: &ls::LsOutcome, long: bool) {
    for e in &out.0 {
        let kind = match e.kind {
            NodeKind::Dir => 'd',
            NodeKind::File => '-',
            NodeKind::Symlink => 'l',
        };
        if !long {
            println!("{kind}{:04o} {:>12} /{}", e.mode, e.size, e.path);
            continue;
        }
        let mut perms = String::new();
        for (i, c) in "rwxrwxrwx".chars().enumerate() {
            perms.push(if e.mode & (0o400 >> i) != 0 { c } else { '-' });
        }
        let t = jiff::Timestamp::from_nanosecond(i128::from(e.mtime_ns))
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|_| "?".into());
        let to = e
            .target
            .as_deref()
            .map(|t| format!(" -> {t}"))
            .unwrap_or_default();
        println!(
            "{kind}{perms} {:>5} {:>5} {:>12} {t} /{}{to}",
            e.uid, e.gid, e.size, e.path
        );
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
    for p in &s.deleted {
        say(format!(
            "{} {p}",
            if out.dry_run {
                "would delete"
            } else {
                "deleted"
            }
        ));
    }
    if let Some(n) = s.verified {
        say(format!("verified {n} files against the snapshot"));
    }
    for p in &s.unmatched_patterns {
        eprintln!("hydrabackup: warning: pattern {p:?} matched nothing");
    }
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
    for o in r.short_retention.iter().take(20) {
        let until = o
            .until
            .map_or("not locked".to_string(), |t| format!("locked until {t}"));
        eprintln!("short retention: {} {}: {until}", o.kind, o.name);
    }
    if r.short_retention.len() > 20 {
        eprintln!("  ... and {} more objects", r.short_retention.len() - 20);
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
    if let Some(t) = s.locked_until {
        println!(
            "object lock: the removed snapshot files stay stored (hidden) until {t}; a prune after that frees them"
        );
    }
}

/// A period in its largest whole unit (`30d`, `180h`, `90s`, `2.5s`).
pub fn period(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if d.subsec_nanos() != 0 => format!("{:.1}s", d.as_secs_f64()),
        _ if s > 0 && s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s > 0 && s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s > 0 && s.is_multiple_of(60) => format!("{}min", s / 60),
        _ => format!("{s}s"),
    }
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
        "{would}take out {} unused pack(s), {would}rewrite {} ({} copied), {} unindexed; {} unused left",
        s.packs_deleted,
        s.packs_rewritten,
        human(s.bytes_rewritten),
        s.packs_unindexed,
        human(s.bytes_unused_left)
    );
    let freed = format!(
        "{verb} {} ({} -> {})",
        human(s.pack_bytes_before.saturating_sub(s.pack_bytes_after)),
        human(s.pack_bytes_before),
        human(s.pack_bytes_after),
    );
    if s.instant_delete {
        println!("{would}delete {} pack(s) at once; {freed}", s.packs_removed);
    } else {
        println!(
            "{would}mark {} pack(s) ({}) for deletion, {would}take back {} still in use, {would}delete {} marked earlier ({}); {freed}",
            s.packs_marked,
            human(s.bytes_marked),
            s.packs_recovered,
            s.packs_removed,
            human(s.bytes_removed),
        );
        if s.packs_waiting > 0 || s.index_files_waiting > 0 {
            let held = match s.packs_held_by_locks {
                0 => String::new(),
                n => format!(" ({n} kept by locks of backups that started before their mark)"),
            };
            println!(
                "{} marked pack(s) ({}) and {} index file(s) wait for a prune from {}{held}",
                s.packs_waiting,
                human(s.bytes_waiting),
                s.index_files_waiting,
                s.waiting_until.as_deref().unwrap_or("now"),
            );
        }
    }
    if let Some(l) = &s.object_lock {
        let h = &l.hidden;
        println!(
            "object lock: {} of {} object(s) extended; removed objects: {} version(s) freed ({}), {} still locked ({})",
            l.extended,
            l.objects,
            h.versions_removed,
            human(h.bytes_freed),
            h.versions_locked,
            human(h.bytes_locked)
        );
        if let Some(t) = h.locked_until {
            println!("object lock: that space comes back with the first prune after {t}");
        }
    }
}

/// One line per `watch` cycle.
pub fn watch_cycle(c: &hydrabackup::ops::watch::Cycle) {
    use std::io::Write;
    let what = match (&c.error, &c.snapshot_id) {
        (Some(e), _) => format!(
            "failed, retrying in {:.0} s (changes kept): {e}",
            c.retry_in_secs.unwrap_or(0.0)
        ),
        (None, Some(id)) => format!(
            "snapshot {} ({} Swamps captured, {} files changed, {} read, {} stored, lag {:.1} s)",
            id.short(),
            c.swamps_captured,
            c.files_changed,
            human(c.bytes_read),
            human(c.bytes_stored),
            c.captured_lag_secs
        ),
        (None, None) => "nothing changed".to_string(),
    };
    println!("cycle {} ({}): {what}", c.cycle, c.trigger);
    let _ = std::io::stdout().flush();
}

/// The line `watch` ends with.
pub fn watch_end(o: &hydrabackup::ops::watch::Outcome) {
    println!(
        "stopped after {} cycles: {} snapshots written, {} cycles failed, {} changed paths owed",
        o.cycles, o.snapshots, o.failed_cycles, o.pending_paths
    );
}
