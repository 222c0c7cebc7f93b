//! `copy`: open both repositories, lock both (shared), copy, report.

use std::sync::Arc;

use hydrabackup::Result;
use hydrabackup::ops::copy::{CopyOptions, copy};
use hydrabackup::ops::progress::Progress;
use serde_json::json;

use super::args::{CopyArgs, Global};
use super::{finish, human, open, open_from, print_json, progress, with_damaged};

/// `copy --from-repo SRC [SNAPSHOT...]`.
pub fn copy_cmd(g: &Global, a: CopyArgs) -> Result<i32> {
    let src = open_from(&a.from)?;
    let dst = open(g)?;
    let _src_lock = src.lock(false, "copy (source)")?;
    let _dst_lock = dst.lock(false, "copy")?;
    let opts = CopyOptions {
        snapshots: a.snapshots,
        host: a.host,
        tag: a.tag,
        dry_run: a.dry_run,
    };
    let p = Arc::new(Progress::default());
    let disp = progress::start(p.clone(), "copy", !g.quiet && !g.json);
    let s = copy(&src, &dst, &opts, &p);
    drop(disp);
    let s = s?;
    if g.json {
        print_json(&with_damaged(json!(s), &[&src, &dst]));
    } else if !g.quiet {
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
    finish(&[&src, &dst], 0)
}
