//! `restore`: rebuild a snapshot's files under a target folder. Packs are read in parallel,
//! each once, in offset order; every blob's id is checked before its bytes are written. In a
//! folder the restore made (or an empty target) a file is created under its real name with
//! `O_EXCL`, never replacing what appeared there meanwhile; elsewhere (`--overwrite` into an
//! existing folder) under a short temporary name renamed when complete. Everything is created
//! through folder handles ([`target`]), so nothing outside the target is ever written, and an
//! entry that cannot be written is reported while the rest is still restored.

mod plan;
mod target;

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use rayon::prelude::*;
use serde::Serialize;

pub use plan::walk_tree;
use plan::{Entry, Plan};
use target::Target;

use crate::ops::packread::{PackReads, Read};
use crate::ops::progress::Progress;
use crate::repo::Repository;
use crate::repo::blob::BlobType;
use crate::repo::index::Index;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::Node;
use crate::{Error, Result};

mod run;
pub use run::{Outcome, run};

/// Options of a restore.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RestoreOptions {
    /// Snapshot id (prefix) or `latest`; `SNAPSHOT:PATH` restores the contents of the folder
    /// PATH of the snapshot into the target.
    #[arg(required_unless_present = "at")]
    pub snapshot: Option<String>,
    /// Restore the newest snapshot taken at or before this time instead of an id.
    #[arg(long, conflicts_with = "snapshot")]
    pub at: Option<String>,
    /// Only restore Swamps whose name matches this glob (repeatable; `*` stays within one
    /// name part, `**` crosses them).
    #[arg(long = "swamp")]
    pub swamps: Vec<String>,
    /// Folder to restore into.
    #[arg(
        long,
        short,
        required_unless_present = "raw",
        default_value = "-",
        hide_default_value = true
    )]
    pub target: PathBuf,
    /// Only restore paths matching this glob (repeatable); a match on a directory restores
    /// everything below it. Without a leading `/` a pattern matches at any depth, with one
    /// from the snapshot root, as --exclude of backup.
    #[arg(long = "include", value_name = "PATTERN")]
    pub includes: Vec<String>,
    /// Like --include, ignoring case (repeatable).
    #[arg(long = "iinclude", value_name = "PATTERN")]
    pub iincludes: Vec<String>,
    /// Leave out paths matching this glob, and everything below them (repeatable).
    #[arg(long = "exclude", value_name = "PATTERN")]
    pub excludes: Vec<String>,
    /// Like --exclude, ignoring case (repeatable).
    #[arg(long = "iexclude", value_name = "PATTERN")]
    pub iexcludes: Vec<String>,
    /// Delete what the target holds that the snapshot does not, in the folders restored
    /// (implies --overwrite; never follows a symlink, never leaves the target).
    #[arg(long)]
    pub delete: bool,
    /// After restoring, read every restored file again and check it against the snapshot (a
    /// logical Swamp: its records against the live-set digest). Not with the record filters
    /// (--key, --modified-after/--modified-before), whose Swamps differ from the snapshot's.
    #[arg(long, conflicts_with_all = ["keys", "modified_after", "modified_before"])]
    pub verify: bool,
    /// Show what would be restored.
    #[arg(long)]
    pub dry_run: bool,
    /// Restore into a non-empty folder, replacing files of the same name.
    #[arg(long)]
    pub overwrite: bool,
    /// Restore quarantined Swamps as the bytes that were on disk, not their loadable prefix.
    #[arg(long)]
    pub raw_quarantined: bool,
    /// Only these Treasures (repeatable; needs --swamp): each Swamp restored holds just them.
    #[arg(long = "key", requires = "swamps")]
    pub keys: Vec<String>,
    /// Print the value bytes of the --key Treasures to stdout instead of writing files.
    #[arg(long, requires = "keys", conflicts_with_all = ["dry_run", "overwrite"])]
    pub raw: bool,
    /// Only Treasures whose modified time (their MessagePack `updatedAt`) is at or after this.
    #[arg(long, requires = "swamps")]
    pub modified_after: Option<String>,
    /// Only Treasures whose modified time is before this.
    #[arg(long, requires = "swamps")]
    pub modified_before: Option<String>,
}

impl RestoreOptions {
    /// The record filter of `--key`, `--modified-after` and `--modified-before`, if any.
    pub fn record_filter(&self) -> Result<Option<RecordFilter>> {
        let t = |s: &Option<String>| -> Result<Option<i64>> {
            s.as_deref()
                .map(|s| crate::timespec::parse(s).map(|t| t.as_nanosecond() as i64))
                .transpose()
        };
        let f = RecordFilter {
            keys: self.keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
            after: t(&self.modified_after)?,
            before: t(&self.modified_before)?,
        };
        Ok((!f.keys.is_empty() || f.after.is_some() || f.before.is_some()).then_some(f))
    }
}

/// Which Treasures of a Swamp a restore keeps.
#[derive(Debug, Clone, Default)]
pub struct RecordFilter {
    /// Only these keys (all when empty).
    pub keys: std::collections::BTreeSet<Vec<u8>>,
    /// Modified at or after (unix ns).
    pub after: Option<i64>,
    /// Modified before (unix ns).
    pub before: Option<i64>,
}

impl RecordFilter {
    /// Whether the record is kept; a time window keeps only Treasures that carry a time.
    pub fn keeps(&self, key: &[u8], value: &[u8]) -> bool {
        if !self.keys.is_empty() && !self.keys.contains(key) {
            return false;
        }
        if self.after.is_none() && self.before.is_none() {
            return true;
        }
        match crate::logical::msgpack::modified_ns(value).ok().flatten() {
            Some(t) => self.after.is_none_or(|a| t >= a) && self.before.is_none_or(|b| t < b),
            None => false,
        }
    }
}

/// What a restore did (or would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreSummary {
    /// Files restored.
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Packs read.
    pub packs_read: u64,
    /// Files not restored because their data is damaged (restore exits 13 then).
    pub damaged: Vec<NotRestored>,
    /// Entries not restored because the target refused them, e.g. a folder in the way of a
    /// file (restore exits 3 then).
    pub failed: Vec<NotRestored>,
    /// Paths (relative) of the files, for dry runs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// With `--raw`: the values of the `--key` Treasures found, in Swamp and key order.
    #[serde(skip)]
    pub raw: Vec<u8>,
    /// Entries `--delete` removed from the target (relative paths).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<String>,
    /// Files `--verify` read back and found as in the snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<u64>,
    /// Include and exclude patterns that matched nothing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unmatched_patterns: Vec<String>,
}

/// An entry that could not be restored.
#[derive(Debug, Clone, Serialize)]
pub struct NotRestored {
    /// Path relative to the snapshot root.
    pub path: String,
    /// Why.
    pub error: String,
}

/// The permission bits a restored entry gets: the recorded ones, but set-user-id and
/// set-group-id only where the entry has the recorded owner and group. Restore does not change
/// ownership, so a crafted or foreign snapshot cannot make a set-user-id program of whoever
/// restores (root, typically).
fn safe_mode(f: &File, n: &Node) -> io::Result<u32> {
    let mut mode = n.mode & 0o7777;
    if mode & 0o6000 != 0 {
        let md = f.metadata()?;
        if md.uid() != n.uid {
            mode &= !0o4000;
        }
        if md.gid() != n.gid {
            mode &= !0o2000;
        }
    }
    Ok(mode)
}

/// Sets a restored file's or folder's permission bits and modification time through its handle.
fn set_meta(f: &File, n: &Node) -> io::Result<()> {
    f.set_permissions(fs::Permissions::from_mode(safe_mode(f, n)?))?;
    let d = std::time::Duration::from_nanos(n.mtime_ns.unsigned_abs());
    let t = if n.mtime_ns >= 0 {
        std::time::UNIX_EPOCH.checked_add(d)
    } else {
        std::time::UNIX_EPOCH.checked_sub(d)
    }
    .unwrap_or(std::time::UNIX_EPOCH);
    f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
}

/// Candidate temporary names of file number `fi`: short whatever the file's name, and distinct
/// from every other file's.
fn temp_names(fi: usize) -> impl Iterator<Item = Vec<u8>> {
    (0..100).map(move |k| match k {
        0 => format!(".hydrabackup-tmp.{fi}").into_bytes(),
        _ => format!(".hydrabackup-tmp.{fi}.{k}").into_bytes(),
    })
}

/// What was not restored, and which files are given up (nothing more is written to them).
struct Lost<'p> {
    plan: &'p Plan,
    /// Told of each path as it is given up.
    progress: &'p Progress,
    dead: Vec<AtomicBool>,
    /// (damaged data?, path, why)
    list: Mutex<Vec<(bool, PathBuf, String)>>,
}

impl Lost<'_> {
    fn note(&self, damaged: bool, path: PathBuf, why: String) {
        self.progress.error(path.display(), &why);
        self.list
            .lock()
            .expect("lost list")
            .push((damaged, path, why));
    }

    /// Gives up file `fi` because its data is damaged (the first reason is kept).
    fn damaged(&self, fi: usize, why: &str) {
        if !self.dead[fi].swap(true, Ordering::AcqRel) {
            let path = self.plan.path(&self.plan.files[fi]);
            self.note(true, path, why.to_string());
        }
    }

    /// Records that `path` could not be written; no space left stops the whole restore.
    fn failed(&self, path: PathBuf, e: io::Error) -> Result<()> {
        if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) {
            return Err(Error::io(path, e));
        }
        self.note(false, path, e.to_string());
        Ok(())
    }

    /// Gives up file `fi` because the target refused it.
    fn file_failed(&self, fi: usize, e: io::Error) -> Result<()> {
        if self.dead[fi].swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.failed(self.plan.path(&self.plan.files[fi]), e)
    }

    /// Gives up file `fi` whose completion failed: a logical Swamp whose records do not
    /// rebuild is damaged data, anything else the target's refusal.
    fn finish_failed(&self, fi: usize, e: io::Error) -> Result<()> {
        if e.kind() == io::ErrorKind::InvalidData && self.plan.files[fi].node.logical().is_some() {
            self.damaged(fi, &e.to_string());
            return Ok(());
        }
        self.file_failed(fi, e)
    }

    fn is_dead(&self, fi: usize) -> bool {
        self.dead[fi].load(Ordering::Acquire)
    }
}

/// The error for entries whose folder could not be restored.
fn folder_lost() -> io::Error {
    io::Error::other("its folder could not be restored")
}

/// Restores `snap` as `opts` say (`opts.snapshot` and `opts.at` are not used). The caller
/// holds a shared lock and passes the loaded index; [`run`] does all that.
pub fn restore(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    opts: &RestoreOptions,
    progress: &Progress,
) -> Result<RestoreSummary> {
    let by_name = opts.includes.is_empty()
        && opts.iincludes.is_empty()
        && opts.excludes.is_empty()
        && opts.iexcludes.is_empty()
        && !opts.delete
        && !opts.swamps.is_empty();
    let mut plan = match &snap.names {
        Some(names) if by_name => plan::by_names(repo, index, &snap.tree, names, &opts.swamps)?,
        _ => plan::by_walk(repo, index, &snap.tree, opts)?,
    };
    if opts.raw_quarantined {
        for f in &mut plan.files {
            if let Some(s) = f.node.swamp.as_mut().filter(|s| !s.raw.is_empty()) {
                f.node.content = std::mem::take(&mut s.raw);
                f.node.size = s.raw_size;
            }
        }
    }
    let filter = opts.record_filter()?;
    if filter.is_some() && opts.verify {
        return Err(Error::InvalidInput(
            "--verify checks whole files; it does not go with --key, --modified-after or \
             --modified-before"
                .into(),
        ));
    }
    if filter.is_some() {
        // Only Swamps are cut down to records; other files are left out (and, as excluded
        // ones, kept by --delete).
        let (swamps, others) = std::mem::take(&mut plan.files)
            .into_iter()
            .partition(|f| f.node.swamp.as_ref().is_some_and(|s| s.format >= 2));
        plan.files = swamps;
        let others: Vec<Entry> = others;
        plan.excluded
            .extend(others.into_iter().map(|f| (f.dir, f.node.name)));
    }
    if opts.raw {
        let mut summary = RestoreSummary::default();
        let keys = filter.map(|f| f.keys).unwrap_or_default();
        for f in &plan.files {
            for (_, v) in crate::logical::treasure::values(repo, index, &f.node, &keys)? {
                summary.raw.extend_from_slice(&v);
                summary.bytes += v.len() as u64;
                summary.files += 1;
            }
        }
        if summary.files == 0 {
            return Err(Error::NotFound(format!(
                "Treasure {} in the Swamps matching {}",
                opts.keys.join(" or "),
                opts.swamps.join(" or ")
            )));
        }
        return Ok(summary);
    }
    let files = &plan.files;
    let mut summary = RestoreSummary {
        unmatched_patterns: std::mem::take(&mut plan.unmatched),
        ..RestoreSummary::default()
    };
    if !opts.swamps.is_empty() && files.is_empty() && plan.dirs() == 0 {
        return Err(Error::NotFound(format!(
            "Swamp matching {} in this snapshot",
            opts.swamps.join(" or ")
        )));
    }
    summary.files = files.len() as u64;
    summary.dirs = plan.dirs() as u64;
    summary.symlinks = plan.links.len() as u64;
    summary.bytes = files.iter().map(|f| f.node.size).sum();
    progress.total(files.len() as u64, summary.bytes);

    // Where each blob goes: pack → blob (by offset) → (file, offset) list. A file whose blobs
    // are not all indexed, or whose indexed lengths do not add up to its size (a forged index
    // record can do that), is damaged: it is left out and reported, the others are restored.
    let mut reads: PackReads<Vec<(usize, u64)>> = PackReads::default();
    let mut unplanned: Vec<(usize, String)> = Vec::new();
    for (fi, f) in files.iter().enumerate() {
        let mut off = 0u64;
        let mut locs = Vec::with_capacity(f.node.content.len());
        let mut why = None;
        for id in &f.node.content {
            let Some(loc) = index.get(BlobType::Data, id) else {
                why = Some(format!("blob {id} is not in the index"));
                break;
            };
            locs.push((loc, off));
            off += loc.entry.raw_len as u64;
        }
        if why.is_none() && off != f.node.content_len() {
            why = Some("the indexed blob sizes do not add up to the file size".into());
        }
        if let Some(why) = why {
            unplanned.push((fi, why));
            continue;
        }
        for (loc, off) in locs {
            reads.at(&loc, Vec::new).push((fi, off));
        }
    }
    summary.packs_read = reads.packs() as u64;
    // The names this restore creates, per folder. Temporary names never equal a name this restore creates in the same folder: a file
    // renamed into place would replace another's temporary file.
    let taken: HashSet<(usize, &[u8])> = plan.folders[1..]
        .iter()
        .map(|f| (f.parent, f.name.as_slice()))
        .chain(
            files
                .iter()
                .chain(&plan.links)
                .map(|e| (e.dir, e.node.name.as_slice())),
        )
        .collect();
    if opts.dry_run {
        // What --delete would remove, where the target's folders already exist.
        if opts.delete
            && let Ok(tgt) = Target::open(&opts.target, &plan.folders)
        {
            let ok = vec![true; plan.folders.len()];
            summary.deleted = delete_extra(&plan, &tgt, &ok, &taken, true).0;
        }
        summary.damaged = unplanned
            .iter()
            .map(|(fi, why)| NotRestored {
                path: plan.path(&files[*fi]).display().to_string(),
                error: why.clone(),
            })
            .collect();
        summary.paths = files
            .iter()
            .map(|f| plan.path(f).display().to_string())
            .collect();
        return Ok(summary);
    }

    let target = &opts.target;
    let mut non_empty = false;
    if target.exists() {
        non_empty = fs::read_dir(target)
            .map_err(|e| Error::io(target, e))?
            .next()
            .is_some();
        if non_empty && !opts.overwrite && !opts.delete {
            return Err(Error::InvalidInput(format!(
                "target {} is not empty; use --overwrite to restore into it",
                target.display()
            )));
        }
    }
    fs::create_dir_all(target).map_err(|e| Error::io(target, e))?;
    let tgt = Target::open(target, &plan.folders).map_err(|e| Error::io(target, e))?;
    let lost = Lost {
        plan: &plan,
        progress,
        dead: files.iter().map(|_| AtomicBool::new(false)).collect(),
        list: Mutex::new(Vec::new()),
    };
    for (fi, why) in &unplanned {
        lost.damaged(*fi, why);
    }

    // Folders, parents first; a folder that cannot be made takes everything below it along.
    // A folder this restore made (or an empty target) is fresh: its files are written under
    // their real names directly, elsewhere under temporary names renamed when complete.
    let mut folder_ok = vec![true; plan.folders.len()];
    let mut fresh = vec![!non_empty; plan.folders.len()];
    for i in 1..plan.folders.len() {
        folder_ok[i] = folder_ok[plan.folders[i].parent];
        if folder_ok[i] {
            match tgt.make_dir(i) {
                Ok(made) => fresh[i] = made,
                Err(e) => {
                    folder_ok[i] = false;
                    lost.failed(plan.folder_path(i), e)?;
                }
            }
        }
    }
    let w = Writer {
        plan: &plan,
        tgt: &tgt,
        lost: &lost,
        folder_ok: &folder_ok,
        fresh: &fresh,
        taken: &taken,
        slots: files.iter().map(|_| Slot::default()).collect(),
        filter: filter.as_ref(),
        progress,
    };
    let result = w.write_all(repo, index, &reads);
    // Unfinished files given up (or all of them, when the restore stops) go: they were created
    // by this restore, under a temporary name or in a folder it made.
    for (fi, slot) in w.slots.iter().enumerate() {
        if let Some(Some(name)) = slot.name.get()
            && !slot.finished.load(Ordering::Acquire)
            && (result.is_err() || lost.is_dead(fi))
            && let Ok(dir) = tgt.dir(files[fi].dir)
        {
            tgt.remove(&dir, name);
        }
    }
    result?;

    for l in &plan.links {
        let r = if folder_ok[l.dir] {
            tgt.dir(l.dir).and_then(|dir| {
                let to = l.node.target.as_deref().unwrap_or_default();
                tgt.symlink(&dir, &l.node.name, to, l.node.mtime_ns, fresh[l.dir])
            })
        } else {
            Err(folder_lost())
        };
        if let Err(e) = r {
            lost.failed(plan.path(l), e)?;
        }
    }
    if opts.delete {
        let (deleted, failed) = delete_extra(&plan, &tgt, &folder_ok, &taken, false);
        summary.deleted = deleted;
        for (path, e) in failed {
            lost.failed(path, e)?;
        }
    }
    // Folder metadata last, deepest first, so creating children does not disturb it.
    for (i, f) in plan.folders.iter().enumerate().rev() {
        if let Some(n) = &f.node
            && folder_ok[i]
        {
            let r = tgt
                .dir(i)
                .and_then(|fd| fd.try_clone())
                .and_then(|fd| set_meta(&File::from(fd), n));
            if let Err(e) = r {
                lost.failed(plan.folder_path(i), e)?;
            }
        }
    }
    if opts.verify {
        crate::failpoint::hook("restore-verify", target);
        summary.verified = Some(verify_files(repo, index, &plan, &tgt, &lost, &folder_ok));
    }
    let mut list = lost.list.into_inner().expect("lost list");
    list.sort();
    for (damaged, path, error) in list {
        let e = NotRestored {
            path: path.display().to_string(),
            error,
        };
        if damaged {
            summary.damaged.push(e);
        } else {
            summary.failed.push(e);
        }
    }
    // No fsync per file (as restic and borg): durability against power loss is the page
    // cache's, so run `sync` before pulling the plug. A killed restore can leave a partial file
    // under its real name in a folder it made; its modification time is not the snapshot's
    // (set last), and a restore with --overwrite rewrites it.
    Ok(summary)
}

/// `--delete`: removes every entry of a restored folder that the snapshot does not have there
/// (folders with all they hold, never following a symlink; with `dry`, nothing); returns
/// their paths and the entries that could not be removed.
fn delete_extra(
    plan: &Plan,
    tgt: &Target<'_>,
    folder_ok: &[bool],
    taken: &HashSet<(usize, &[u8])>,
    dry: bool,
) -> (Vec<String>, Vec<(PathBuf, io::Error)>) {
    let kept: HashSet<(usize, &[u8])> = plan
        .excluded
        .iter()
        .map(|(d, n)| (*d, n.as_slice()))
        .collect();
    let (mut deleted, mut failed) = (Vec::new(), Vec::new());
    for (i, f) in plan.folders.iter().enumerate() {
        let complete = if i == 0 { plan.whole } else { f.node.is_some() };
        if !complete || !folder_ok[i] {
            continue;
        }
        let r = tgt.dir(i).and_then(|dir| {
            for name in target::names(&dir)? {
                if taken.contains(&(i, name.as_slice())) || kept.contains(&(i, name.as_slice())) {
                    continue;
                }
                let path = plan.folder_path(i).join(std::ffi::OsStr::from_bytes(&name));
                match if dry {
                    Ok(())
                } else {
                    tgt.remove_all(&dir, &name)
                } {
                    Ok(()) => deleted.push(path.display().to_string()),
                    Err(e) => failed.push((path, e)),
                }
            }
            Ok(())
        });
        // A folder of the plan missing from the target (dry runs) holds nothing to delete.
        if let Err(e) = r
            && !dry
        {
            failed.push((plan.folder_path(i), e));
        }
    }
    deleted.sort();
    (deleted, failed)
}

/// `--verify`: reads every restored file back (through its folder's handle, not following a
/// symlink) and checks each blob-sized piece against the blob's id. A file that differs is
/// reported as not restored; returns how many files matched.
fn verify_files(
    repo: &Repository,
    index: &Index,
    plan: &Plan,
    tgt: &Target<'_>,
    lost: &Lost<'_>,
    folder_ok: &[bool],
) -> u64 {
    use std::io::Read;
    let check = |f: &Entry| -> io::Result<Option<String>> {
        let mut file = tgt.open_read(&*tgt.dir(f.dir)?, &f.node.name)?;
        // A logical Swamp is rebuilt, not copied: its live set must be the one captured.
        if let Some(l) = f.node.logical() {
            return Ok(
                match crate::hyd::replay::replay(std::io::BufReader::new(file)) {
                    Ok(r) if r.digest() == l.digest => None,
                    Ok(_) => Some("records differ from the snapshot".into()),
                    Err(e) => Some(format!("does not load: {e}")),
                },
            );
        }
        let mut buf = Vec::new();
        for id in &f.node.content {
            let Some(loc) = index.get(BlobType::Data, id) else {
                return Ok(Some(format!("blob {id} is not in the index")));
            };
            buf.resize(loc.entry.raw_len as usize, 0);
            if let Err(e) = file.read_exact(&mut buf) {
                return Ok(Some(format!("shorter than in the snapshot ({e})")));
            }
            if repo.keys().blob_id(&buf) != *id {
                return Ok(Some("content differs from the snapshot".into()));
            }
        }
        if file.read(&mut [0u8; 1])? != 0 {
            return Ok(Some("longer than in the snapshot".into()));
        }
        Ok(None)
    };
    let ok = AtomicUsize::new(0);
    plan.files.par_iter().enumerate().for_each(|(fi, f)| {
        if lost.is_dead(fi) || !folder_ok[f.dir] {
            return;
        }
        let why = match check(f) {
            Ok(None) => {
                ok.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(Some(why)) => why,
            Err(e) => e.to_string(),
        };
        lost.note(false, plan.path(f), format!("verification failed: {why}"));
    });
    ok.into_inner() as u64
}

/// A file of the plan as it is written.
#[derive(Default)]
struct Slot {
    /// The name it was created under (its real name in a fresh folder, else a temporary
    /// one), or `None` when it could not be created (reported then).
    name: OnceLock<Option<Vec<u8>>>,
    /// Complete under its real name.
    finished: AtomicBool,
    /// A blob of zeros was not written: the length is set when the file is finished.
    holes: AtomicBool,
}

/// What writing the files needs: the plan, the target and each file's state.
struct Writer<'a> {
    plan: &'a Plan,
    tgt: &'a Target<'a>,
    lost: &'a Lost<'a>,
    folder_ok: &'a [bool],
    /// Folders this restore made: files there are created under their real names.
    fresh: &'a [bool],
    /// The names this restore creates, per folder (never used as temporary names).
    taken: &'a HashSet<(usize, &'a [u8])>,
    slots: Vec<Slot>,
    filter: Option<&'a RecordFilter>,
    progress: &'a Progress,
}

impl Writer<'_> {
    /// Creates file `fi`: under its real name in a fresh folder (never replacing an entry
    /// that appeared there meanwhile), else under a temporary name.
    fn create(&self, fi: usize) -> io::Result<(File, Vec<u8>)> {
        let f = &self.plan.files[fi];
        if !self.folder_ok[f.dir] {
            return Err(folder_lost());
        }
        let dir = self.tgt.dir(f.dir)?;
        #[cfg(feature = "test-hooks")]
        crate::failpoint::hook("restore-create", &self.plan.path(f));
        if self.fresh[f.dir] {
            let file = self.tgt.create_new(&dir, &f.node.name)?;
            return Ok((file, f.node.name.clone()));
        }
        self.tgt
            .create_temp(&dir, temp_names(fi), |n| self.taken.contains(&(f.dir, n)))
    }

    /// File `fi` open for writing, created by the first caller; `Ok(None)` when it was given
    /// up (its creation failed and was reported).
    fn open(&self, fi: usize) -> Result<Option<File>> {
        let mut made = None;
        let mut failed = Ok(());
        let name = self.slots[fi].name.get_or_init(|| match self.create(fi) {
            Ok((file, name)) => {
                made = Some(file);
                Some(name)
            }
            Err(e) => {
                failed = self.lost.file_failed(fi, e);
                None
            }
        });
        failed?;
        if made.is_some() {
            return Ok(made);
        }
        let Some(name) = name else {
            return Ok(None);
        };
        let f = &self.plan.files[fi];
        match self
            .tgt
            .dir(f.dir)
            .and_then(|dir| self.tgt.reopen(&dir, name))
        {
            Ok(file) => Ok(Some(file)),
            Err(e) => self.lost.file_failed(fi, e).map(|()| None),
        }
    }

    /// Finishes the complete file `fi`: a logical Swamp's record stream is rewritten in place
    /// as a `.hyd` file, a filtered Swamp cut down; then its metadata is set (the modification
    /// time last of all) and a temporary file renamed to its real name.
    fn finish(&self, fi: usize, file: &File) -> io::Result<()> {
        let f = &self.plan.files[fi];
        let slot = &self.slots[fi];
        if slot.holes.load(Ordering::Acquire) {
            file.set_len(f.node.content_len())?;
        }
        let filter = self.filter;
        let select = |k: &[u8], v: &[u8]| filter.is_none_or(|r| r.keeps(k, v));
        if f.node.logical().is_some() {
            crate::logical::rebuild::rebuild_file(file, &f.node, filter.map(|_| &select as _))?;
        } else if filter.is_some() && f.node.swamp.as_ref().is_some_and(|s| s.format >= 2) {
            crate::logical::rebuild::filter_file(file, f.node.size, &select)?;
        }
        set_meta(file, &f.node)?;
        let name = slot
            .name
            .get()
            .and_then(|n| n.as_deref())
            .ok_or_else(folder_lost)?;
        if name != f.node.name.as_slice() {
            let dir = self.tgt.dir(f.dir)?;
            self.tgt.rename(&dir, name, &f.node.name)?;
        }
        slot.finished.store(true, Ordering::Release);
        Ok(())
    }

    /// Finishes file `fi` and counts it, or gives it up.
    fn complete(&self, fi: usize, file: &File) -> Result<()> {
        match self.finish(fi, file) {
            Ok(()) => {
                self.progress.done(1, 0);
                Ok(())
            }
            Err(e) => self.lost.finish_failed(fi, e),
        }
    }

    /// Writes every file, the blobs pack by pack; a file is created when its first blob is
    /// written and finished when its last one is. Files that fail are given up (in `lost`);
    /// only running out of space stops everything.
    fn write_all(
        &self,
        repo: &Repository,
        index: &Index,
        reads: &PackReads<Vec<(usize, u64)>>,
    ) -> Result<()> {
        let (files, lost) = (&self.plan.files, self.lost);
        // Writes still to come per file; the write that brings it to zero finishes the file.
        let remaining: Vec<AtomicUsize> = files.iter().map(|_| AtomicUsize::new(0)).collect();
        for (_, targets) in reads.blobs() {
            for &(fi, _) in targets {
                remaining[fi].fetch_add(1, Ordering::Relaxed);
            }
        }
        // Files without content are created and finished right away.
        files.par_iter().enumerate().try_for_each(|(fi, _)| {
            if lost.is_dead(fi) || remaining[fi].load(Ordering::Relaxed) != 0 {
                return Ok(());
            }
            match self.open(fi)? {
                Some(file) => self.complete(fi, &file),
                None => Ok(()),
            }
        })?;

        // Blobs that cannot be read or do not verify mark their files as damaged; everything
        // else is still restored. Damaged files are removed when the writing is done.
        reads.read(repo, index, BlobType::Data, |_, _, blobs| {
            let mut open: HashMap<usize, File> = HashMap::new();
            for Read {
                value: targets,
                blob,
                ..
            } in blobs
            {
                // A copy that fails was passed over for another copy the index lists.
                let blob = match blob {
                    Ok(b) => b,
                    Err(why) => {
                        for &(fi, _) in targets {
                            lost.damaged(fi, &why);
                        }
                        continue;
                    }
                };
                let plain = blob.plain();
                let zeros = plain.iter().all(|&b| b == 0);
                for &(fi, off) in targets {
                    if lost.is_dead(fi) {
                        continue;
                    }
                    if let std::collections::hash_map::Entry::Vacant(v) = open.entry(fi) {
                        match self.open(fi)? {
                            Some(file) => v.insert(file),
                            None => continue,
                        };
                    }
                    // Zeros need no write: the file gets its length when finished (sparse).
                    if zeros {
                        self.slots[fi].holes.store(true, Ordering::Release);
                    } else if let Err(e) = open[&fi].write_all_at(plain, off) {
                        open.remove(&fi);
                        lost.file_failed(fi, e)?;
                        continue;
                    }
                    crate::failpoint::hit("restore-wrote");
                    if remaining[fi].fetch_sub(1, Ordering::AcqRel) == 1 {
                        // The last write of this file: every other one is done.
                        let file = open.remove(&fi).expect("opened above");
                        self.complete(fi, &file)?;
                    }
                }
                self.progress
                    .done(0, plain.len() as u64 * targets.len() as u64);
            }
            Ok(())
        })
    }
}
