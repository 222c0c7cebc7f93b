//! `show`: a snapshot's HydrAIDE catalogue, totals and one row per Swamp.

use std::path::Path;

use hydrabackup::Result;
use hydrabackup::ops::restore::walk_tree;
use hydrabackup::repo::Repository;
use hydrabackup::repo::filter::SwampFilter;
use serde_json::json;

use super::args::{Global, ShowArgs};

fn time(ns: i64) -> String {
    if ns == 0 {
        return "-".into();
    }
    jiff::Timestamp::from_nanosecond(ns as i128)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| "-".into())
}

/// Runs `show`.
pub fn run(g: &Global, repo: &Repository, a: ShowArgs) -> Result<i32> {
    let (id, snap) = repo.find_snapshot(&a.snapshot)?;
    let index = repo.load_index()?;
    let filter = SwampFilter::new(a.swamp.as_slice())?;
    let mut rows = Vec::new();
    walk_tree(repo, &index, &snap.tree, Path::new(""), &mut |rel, n| {
        if let Some(s) = &n.swamp {
            if filter.selects(n) {
                rows.push((rel.display().to_string(), n.size, s.clone()));
            }
        }
        Ok(())
    })?;
    let entries: u64 = rows.iter().map(|r| r.2.entries).sum();
    let bytes: u64 = rows.iter().map(|r| r.1).sum();
    let quarantined = rows
        .iter()
        .filter(|r| r.2.decision == hydrabackup::repo::tree::Decision::Quarantined)
        .count();
    if g.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(p, size, s)| {
                json!({
                    "path": p, "name": s.name, "format": s.format, "size": size,
                    "entries": s.entries, "blocks": s.blocks,
                    "created_ns": s.created_ns, "modified_ns": s.modified_ns,
                    "decision": s.decision, "problem": s.problem,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "snapshot_id": id.to_hex(),
                "time": snap.time,
                "totals": {"swamps": rows.len(), "entries": entries, "bytes": bytes, "quarantined": quarantined},
                "swamps": v,
            }))
            .expect("JSON values serialize")
        );
        return Ok(0);
    }
    if g.quiet {
        return Ok(0);
    }
    println!(
        "snapshot {} of {}: {} swamps, {entries} entries, {bytes} bytes, {quarantined} quarantined",
        id.short(),
        snap.time,
        rows.len()
    );
    println!(
        "{:<40} {:>3} {:>12} {:>9} {:>7} {:<19} {:<19} {:<11} path",
        "name", "fmt", "size", "entries", "blocks", "created", "modified", "decision"
    );
    for (p, size, s) in &rows {
        println!(
            "{:<40} {:>3} {:>12} {:>9} {:>7} {:<19} {:<19} {:<11} {p}{}",
            s.name.as_deref().unwrap_or("?"),
            s.format,
            size,
            s.entries,
            s.blocks,
            time(s.created_ns),
            time(s.modified_ns),
            s.decision,
            s.problem
                .as_deref()
                .map(|x| format!("  ({x})"))
                .unwrap_or_default()
        );
    }
    Ok(0)
}
