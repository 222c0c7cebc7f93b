//! Snapshots: immutable records of one backup run, stored sealed under `snapshots/<hash>`.

use serde::{Deserialize, Serialize};

use crate::Id;

/// Counters of one backup run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SnapshotSummary {
    /// Files new since the parent.
    pub files_new: u64,
    /// Files changed since the parent.
    pub files_changed: u64,
    /// Files unchanged since the parent.
    pub files_unchanged: u64,
    /// Directories.
    pub dirs: u64,
    /// Files read (not reused from the parent).
    pub files_read: u64,
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Total size of all files in the snapshot.
    pub total_bytes: u64,
    /// Data blobs added to the repository.
    pub data_blobs_added: u64,
    /// Tree blobs added.
    pub tree_blobs_added: u64,
    /// Plaintext bytes of the blobs added.
    pub bytes_added: u64,
    /// Bytes stored for them (compressed, sealed).
    pub bytes_stored: u64,
    /// Files that could not be read (or were quarantined).
    pub errors: u64,
    /// Swamps not seen in the parent.
    #[serde(default)]
    pub swamps_new: u64,
    /// Swamps reused from the parent without reading.
    #[serde(default)]
    pub swamps_unchanged: u64,
    /// Swamps that only grew: read from where the parent's capture ended.
    #[serde(default)]
    pub swamps_appended: u64,
    /// Swamps rewritten (compacted, replaced) since the parent: read whole.
    #[serde(default)]
    pub swamps_rewritten: u64,
    /// Swamps in the parent that are gone, and Swamps destroyed during the run.
    #[serde(default)]
    pub swamps_gone: u64,
    /// Swamps stored raw because no consistent copy could be made.
    #[serde(default)]
    pub swamps_quarantined: u64,
    /// Files and folders that vanished between the walk and their read (not stored, no error).
    #[serde(default)]
    pub files_gone: u64,
    /// FIFOs, sockets and devices found and not backed up.
    #[serde(default)]
    pub special_files: u64,
    /// Wall time, seconds.
    pub duration_secs: f64,
}

impl std::ops::AddAssign<&SnapshotSummary> for SnapshotSummary {
    /// Adds every counter (durations too), for merging the parts of a parallel walk.
    fn add_assign(&mut self, o: &SnapshotSummary) {
        self.files_new += o.files_new;
        self.files_changed += o.files_changed;
        self.files_unchanged += o.files_unchanged;
        self.dirs += o.dirs;
        self.files_read += o.files_read;
        self.bytes_read += o.bytes_read;
        self.total_bytes += o.total_bytes;
        self.data_blobs_added += o.data_blobs_added;
        self.tree_blobs_added += o.tree_blobs_added;
        self.bytes_added += o.bytes_added;
        self.bytes_stored += o.bytes_stored;
        self.errors += o.errors;
        self.duration_secs += o.duration_secs;
        self.swamps_new += o.swamps_new;
        self.swamps_unchanged += o.swamps_unchanged;
        self.swamps_appended += o.swamps_appended;
        self.swamps_rewritten += o.swamps_rewritten;
        self.swamps_gone += o.swamps_gone;
        self.swamps_quarantined += o.swamps_quarantined;
        self.files_gone += o.files_gone;
        self.special_files += o.special_files;
    }
}

/// HydrAIDE catalogue totals of a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CatalogueSummary {
    /// Swamps captured.
    pub swamps: u64,
    /// Live entries over all Swamps.
    pub entries: u64,
    /// Oldest CreatedAt, unix ns.
    pub oldest_ns: Option<i64>,
    /// Newest last write (file mtime; header ModifiedAt in earlier versions), unix ns.
    pub newest_ns: Option<i64>,
    /// Swamps quarantined.
    pub quarantined: u64,
}

/// A snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    /// When the backup started, RFC 3339 with nanoseconds, UTC.
    pub time: String,
    /// Host name.
    pub host: String,
    /// User name.
    pub user: String,
    /// Absolute source paths, sorted.
    pub paths: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Exclude patterns used.
    pub excludes: Vec<String>,
    /// Snapshot this one was based on.
    pub parent: Option<Id>,
    /// Root tree.
    pub tree: Id,
    /// Counters.
    pub summary: SnapshotSummary,
    /// HydrAIDE catalogue totals, when the source was a data root.
    #[serde(default)]
    pub catalogue: Option<CatalogueSummary>,
    /// Root of the name index (Swamp name → path; see `repo::names`), when Swamps were captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<Id>,
    /// The snapshot this one is a copy of (`copy` from another repository), by its id there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<Id>,
    /// Program version that wrote it.
    pub program: String,
}

impl Snapshot {
    /// The snapshot time as a timestamp (epoch when unparsable).
    pub fn timestamp(&self) -> jiff::Timestamp {
        self.time.parse().unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }
}
