//! Command-line definitions (clap). No logic lives here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Zero-downtime, deduplicating, encrypted backups of HydrAIDE data roots.
#[derive(Parser, Debug)]
#[command(name = "hydrabackup", version, about, propagate_version = true)]
pub struct Cli {
    /// Global options.
    #[command(flatten)]
    pub global: Global,
    /// The command.
    #[command(subcommand)]
    pub cmd: Command,
}

/// Options every command takes.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Repository location: a local or mounted path, `sftp:USER@HOST:PATH`,
    /// `s3:https://HOST/BUCKET[/PREFIX]` or `rest:https://[USER:PASS@]HOST:PORT/REPO`.
    #[arg(
        short = 'r',
        long = "repo",
        env = "HYDRABACKUP_REPOSITORY",
        global = true
    )]
    pub repo: Option<String>,
    /// Read the password from this file (first line).
    #[arg(long, env = "HYDRABACKUP_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Run this shell command and use its first output line as the password.
    #[arg(long, env = "HYDRABACKUP_PASSWORD_COMMAND", global = true)]
    pub password_command: Option<String>,
    /// Machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Try only the key file whose id starts with this (see `key list`); no other key file is
    /// tried, so a planted expensive one costs nothing.
    #[arg(long, env = "HYDRABACKUP_KEY_HINT", global = true)]
    pub key_hint: Option<String>,
    /// Argon2id memory in KiB for keys created by this command (tests use small values).
    #[arg(long, env = "HYDRABACKUP_KDF_MEMORY", global = true, hide = true)]
    pub kdf_memory: Option<u32>,
    /// Argon2id iterations for keys created by this command.
    #[arg(long, env = "HYDRABACKUP_KDF_ITERATIONS", global = true, hide = true)]
    pub kdf_iterations: Option<u32>,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new repository.
    Init(InitArgs),
    /// Back up files and directories into a new snapshot.
    Backup(BackupArgs),
    /// List snapshots.
    #[command(alias = "list-versions")]
    Snapshots(SnapshotsArgs),
    /// List the files of a snapshot.
    Ls(LsArgs),
    /// Restore a snapshot into a folder.
    Restore(RestoreArgs),
    /// Show a snapshot's HydrAIDE catalogue: every Swamp with its facts (`created` is the
    /// header's CreatedAt, `modified` the file's mtime: its last write).
    Show(ShowArgs),
    /// Check the repository; with --read-data also every stored byte.
    #[command(alias = "check")]
    Verify(VerifyArgs),
    /// Repository size: stored, unique and logical bytes, compression and deduplication.
    Stats,
    /// Manage the passwords (keys) that open the repository.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Copy snapshots from another repository into this one (a second copy, 3-2-1).
    Copy(CopyArgs),
    /// Remove snapshots, by id or by a retention policy (`prune` frees their data).
    Forget(ForgetArgs),
    /// Delete data that no snapshot uses.
    Prune(PruneArgs),
    /// Remove stale locks and files left by crashed writers.
    Unlock(UnlockArgs),
    /// Serve repositories over HTTP(S) for `rest:` locations (TLS, users, append-only).
    Serve(ServeArgs),
    /// Add a user to a users file for `serve`, or change their password.
    ServeUser(ServeUserArgs),
}

/// `init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Target pack size in MiB.
    #[arg(long, default_value_t = 16)]
    pub pack_size: u32,
    /// zstd level for data blobs (0 disables compression).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub compression: i32,
    /// Average chunk size in KiB (a power of two).
    #[arg(long, default_value_t = 1024)]
    pub chunk_avg: u32,
    /// With --from-repo: take its chunker parameters and blob-id secret, so that `copy`
    /// between the two moves only missing blobs and backups into either deduplicate alike.
    #[arg(long, requires = "from_repo")]
    pub copy_params: bool,
    /// The other repository.
    #[command(flatten)]
    pub from: FromRepo,
}

/// Another repository to read from (`copy`, `init --copy-params`).
#[derive(Args, Debug, Clone)]
pub struct FromRepo {
    /// Its location.
    #[arg(long, env = "HYDRABACKUP_FROM_REPOSITORY")]
    pub from_repo: Option<String>,
    /// Read its password from this file (first line).
    #[arg(long, env = "HYDRABACKUP_FROM_PASSWORD_FILE")]
    pub from_password_file: Option<PathBuf>,
    /// Run this shell command and use its first output line as its password.
    #[arg(long, env = "HYDRABACKUP_FROM_PASSWORD_COMMAND")]
    pub from_password_command: Option<String>,
}

/// `copy`.
#[derive(Args, Debug)]
pub struct CopyArgs {
    /// Snapshots of the source to copy (ids, prefixes or `latest`); default: all.
    pub snapshots: Vec<String>,
    /// The source repository (required).
    #[command(flatten)]
    pub from: FromRepo,
    /// Only snapshots of this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Only snapshots with this tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// Count what would be copied, write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `backup`.
#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Files and directories to back up (a HydrAIDE data root, typically).
    #[arg(required_unless_present = "instance")]
    pub paths: Vec<PathBuf>,
    /// Back up the data root of this HydrAIDE instance (from ~/.hydraide/metadata.json).
    #[arg(long)]
    pub instance: Option<String>,
    /// Only capture Swamps modified since this time; older ones are taken from the parent.
    #[arg(long)]
    pub since: Option<String>,
    /// Show Swamp names in the decision log (they may be confidential).
    #[arg(long)]
    pub show_names: bool,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Host name to record instead of this machine's.
    #[arg(long)]
    pub host: Option<String>,
    /// Skip paths matching this glob (repeatable); with a `/` it matches the whole path.
    #[arg(long = "exclude")]
    pub excludes: Vec<String>,
    /// Read and chunk everything, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Compare with this snapshot instead of the latest of the same host and paths.
    #[arg(long)]
    pub parent: Option<String>,
    /// Re-read every file.
    #[arg(long)]
    pub force: bool,
    /// Record this time as the snapshot's instead of now (e.g. "2026-11-20 14:00").
    #[arg(long)]
    pub time: Option<String>,
}

/// `snapshots`.
#[derive(Args, Debug)]
pub struct SnapshotsArgs {
    /// Only snapshots of this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Only snapshots with this tag.
    #[arg(long)]
    pub tag: Option<String>,
}

/// `ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// Snapshot id (prefix) or `latest`.
    pub snapshot: String,
    /// Only list below this path of the snapshot.
    pub path: Option<String>,
}

/// `show`.
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Snapshot id (prefix) or `latest`.
    pub snapshot: String,
    /// Only Swamps whose name matches this glob (e.g. `users/profiles/*`).
    #[arg(long)]
    pub swamp: Option<String>,
}

/// `restore`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Snapshot id (prefix) or `latest`.
    #[arg(required_unless_present = "at")]
    pub snapshot: Option<String>,
    /// Restore the newest snapshot taken at or before this time instead of an id.
    #[arg(long, conflicts_with = "snapshot")]
    pub at: Option<String>,
    /// Only restore Swamps whose name matches this glob (repeatable).
    #[arg(long = "swamp")]
    pub swamps: Vec<String>,
    /// Folder to restore into.
    #[arg(long, short)]
    pub target: PathBuf,
    /// Only restore paths matching this glob (repeatable).
    #[arg(long = "include")]
    pub includes: Vec<String>,
    /// Show what would be restored.
    #[arg(long)]
    pub dry_run: bool,
    /// Restore into a non-empty folder, replacing files of the same name.
    #[arg(long)]
    pub overwrite: bool,
    /// Restore quarantined Swamps as the bytes that were on disk, not their loadable prefix.
    #[arg(long)]
    pub raw_quarantined: bool,
}

/// `verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Read, decrypt and re-hash every blob.
    #[arg(long)]
    pub read_data: bool,
    /// Read only a subset: `N/M` (group N of M) or `P%`.
    #[arg(long, conflicts_with = "read_data")]
    pub read_data_subset: Option<String>,
    /// Check only the data of Swamps whose name matches this glob (repeatable).
    #[arg(long = "swamp")]
    pub swamps: Vec<String>,
}

/// `key` subcommands.
#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// List keys.
    List,
    /// Add a key for a new password.
    Add(NewPassword),
    /// Remove a key by id (prefix).
    Remove {
        /// Key id or unique prefix.
        id: String,
    },
    /// Change the password of the key in use.
    Passwd(NewPassword),
}

/// Where a new password comes from.
#[derive(Args, Debug)]
pub struct NewPassword {
    /// Read the new password from this file.
    #[arg(long, env = "HYDRABACKUP_NEW_PASSWORD_FILE")]
    pub new_password_file: Option<PathBuf>,
}

/// `unlock`.
#[derive(Args, Debug)]
pub struct UnlockArgs {
    /// Remove all locks, even live ones.
    #[arg(long)]
    pub remove_all: bool,
}

/// `forget`.
#[derive(Args, Debug)]
pub struct ForgetArgs {
    /// Snapshot ids (or prefixes) to remove; without them, the policy decides.
    pub snapshots: Vec<String>,
    /// Compact policy: e.g. `7d,4w,12m` (units l=last, h, d, w, m, y).
    #[arg(long)]
    pub policy: Option<String>,
    /// Keep the newest N snapshots.
    #[arg(long)]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours that have one.
    #[arg(long)]
    pub keep_hourly: Option<u32>,
    /// ... of each of the last N days.
    #[arg(long)]
    pub keep_daily: Option<u32>,
    /// ... of each of the last N weeks.
    #[arg(long)]
    pub keep_weekly: Option<u32>,
    /// ... of each of the last N months.
    #[arg(long)]
    pub keep_monthly: Option<u32>,
    /// ... of each of the last N years.
    #[arg(long)]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot within this span of the newest one (e.g. `30d`, `1y6m`).
    #[arg(long)]
    pub keep_within: Option<String>,
    /// Keep snapshots with this tag (repeatable).
    #[arg(long = "keep-tag")]
    pub keep_tags: Vec<String>,
    /// Only consider snapshots of this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Only consider snapshots with this tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// Apply the policy per group of snapshots sharing these (comma-separated: host, paths,
    /// tags; empty: one group).
    #[arg(long, default_value = "host,paths")]
    pub group_by: String,
    /// Show what would be removed.
    #[arg(long)]
    pub dry_run: bool,
    /// Prune afterwards.
    #[arg(long)]
    pub prune: bool,
    /// With --prune: unused space (percent of used) to leave in partly used packs.
    #[arg(long, default_value_t = 5.0)]
    pub max_unused: f64,
    /// With --prune: prune even though some snapshots are damaged (do not decode): the data only they use
    /// counts as unused and is deleted. Without it prune refuses (exit 13).
    #[arg(long)]
    pub ignore_damaged_snapshots: bool,
}

/// `prune`.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Show what would be deleted and rewritten.
    #[arg(long)]
    pub dry_run: bool,
    /// Unused space (percent of used) to leave in partly used packs rather than rewrite them.
    #[arg(long, default_value_t = 5.0)]
    pub max_unused: f64,
    /// Prune even though some snapshots are damaged (do not decode): the data only they use
    /// counts as unused and is deleted. Without it prune refuses (exit 13).
    #[arg(long)]
    pub ignore_damaged_snapshots: bool,
}

/// `serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Folder holding the repositories (one subfolder each).
    #[arg(long)]
    pub path: PathBuf,
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: String,
    /// TLS certificate chain (PEM): serve HTTPS.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Users file (`hydrabackup serve-user`); clients authenticate with HTTP Basic.
    #[arg(long, required_unless_present = "no_auth")]
    pub users: Option<PathBuf>,
    /// Serve without authentication (trusted networks only).
    #[arg(long, conflicts_with = "users")]
    pub no_auth: bool,
    /// Refuse to delete anything but locks: clients can add backups, never remove them.
    #[arg(long)]
    pub append_only: bool,
    /// Each user may only use the repository named like them.
    #[arg(long, requires = "users")]
    pub private_repos: bool,
    /// Connections served at once (idle ones give way to new clients; others wait in a queue).
    #[arg(long, default_value_t = 64)]
    pub max_connections: usize,
    /// Seconds a client has for the TLS handshake and for each request head, and a new
    /// connection waits for a free slot before it is answered 503.
    #[arg(long, default_value_t = 10)]
    pub request_timeout: u64,
}

/// `serve-user`.
#[derive(Args, Debug)]
pub struct ServeUserArgs {
    /// The users file (created when missing).
    #[arg(long)]
    pub users: PathBuf,
    /// The user name.
    pub user: String,
    /// Where the password comes from.
    #[command(flatten)]
    pub password: NewPassword,
}
