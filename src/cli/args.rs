//! Command-line definitions (clap). No logic lives here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use hydrabackup::ops::backup::BackupOptions;
use hydrabackup::ops::copy::CopyOptions;
use hydrabackup::ops::forget::ForgetOptions;
use hydrabackup::ops::init::InitOptions;
use hydrabackup::ops::ls::LsOptions;
use hydrabackup::ops::prune::PruneOptions;
use hydrabackup::ops::restore::RestoreOptions;
use hydrabackup::ops::show::ShowOptions;
use hydrabackup::ops::snapshots::SnapshotsOptions;
use hydrabackup::ops::stats::StatsOptions;
use hydrabackup::ops::unlock::UnlockOptions;
use hydrabackup::ops::verify::VerifyOptions;
use hydrabackup::ops::watch::WatchOptions;
use hydrabackup::ops::{
    diff::DiffOptions,
    find::FindOptions,
    policy::PolicySetOptions,
    repair::{RepairIndexOptions, RepairSnapshotsOptions},
    tag::TagOptions,
};

/// Zero-downtime, deduplicating, encrypted backups of HydrAIDE data roots.
#[derive(Parser, Debug)]
#[command(
    name = "hydrabackup",
    version,
    about,
    propagate_version = true,
    after_help = "Environment: HYDRABACKUP_REPOSITORY, HYDRABACKUP_PASSWORD, HYDRABACKUP_PASSWORD_FILE, HYDRABACKUP_PASSWORD_COMMAND (and HYDRABACKUP_NEW_PASSWORD[_FILE] for new keys); see the README for the backends' variables."
)]
pub struct Cli {
    /// Global options.
    #[command(flatten)]
    pub global: Global,
    /// The command.
    #[command(subcommand)]
    pub cmd: Command,
}

/// Options every command takes (listed after each command's own).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
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
    /// Read the password from this file (first line). Or give it in HYDRABACKUP_PASSWORD;
    /// with none of these it is asked for on a terminal.
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
    /// Do destructive commands (forget, prune, purge, key remove) without asking.
    #[arg(short = 'y', long, global = true)]
    pub yes: bool,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Try only the key file whose id starts with this (see `key list`); no other key file is
    /// tried, so a planted expensive one costs nothing.
    #[arg(long, env = "HYDRABACKUP_KEY_HINT", global = true)]
    pub key_hint: Option<String>,
    /// Keep no local cache of the repository (README, "Local cache").
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// Where local caches live (default `$XDG_CACHE_HOME/hydrabackup`, else
    /// `~/.cache/hydrabackup`).
    #[arg(long, env = "HYDRABACKUP_CACHE_DIR", global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Use the options of this profile (README, "Profiles").
    #[arg(
        short = 'P',
        long,
        env = "HYDRABACKUP_PROFILE",
        global = true,
        value_name = "NAME"
    )]
    pub profile: Option<String>,
    /// The profile file (default `~/.config/hydrabackup/profiles.toml`, then
    /// `/etc/hydrabackup/profiles.toml`).
    #[arg(
        long,
        env = "HYDRABACKUP_PROFILE_FILE",
        global = true,
        value_name = "PATH"
    )]
    pub profile_file: Option<PathBuf>,
    /// Worker threads for hashing, compression and parallel reads (default: one per core).
    #[arg(long, env = "HYDRABACKUP_THREADS", global = true, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Limit writes to the repository to this many KiB/s.
    #[arg(long, env = "HYDRABACKUP_LIMIT_UPLOAD", global = true, value_name = "KIB_S",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub limit_upload: Option<u32>,
    /// Limit reads from the repository to this many KiB/s.
    #[arg(long, env = "HYDRABACKUP_LIMIT_DOWNLOAD", global = true, value_name = "KIB_S",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub limit_download: Option<u32>,
    /// Metrics and hooks.
    #[command(flatten)]
    pub observe: Observe,
    /// Argon2id memory in KiB for keys created by this command (tests use small values).
    #[arg(long, env = "HYDRABACKUP_KDF_MEMORY", global = true, hide = true)]
    pub kdf_memory: Option<u32>,
    /// Argon2id iterations for keys created by this command.
    #[arg(long, env = "HYDRABACKUP_KDF_ITERATIONS", global = true, hide = true)]
    pub kdf_iterations: Option<u32>,
}

/// Metrics and notification hooks (README, "Monitoring"); plain fields, one profile key each.
#[derive(Args, Debug, Clone, Default)]
pub struct Observe {
    /// Write Prometheus metrics of the run to this file, atomically (node_exporter's textfile
    /// collector); backup, verify, forget, prune, copy and restore.
    #[arg(long, global = true, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// Push the same metrics to this Prometheus Pushgateway (`http://HOST:9091`).
    #[arg(long, global = true, value_name = "URL")]
    pub metrics_push: Option<String>,
    /// Run this shell command before the command; if it fails, the command does not run (exit 15).
    #[arg(long, global = true, value_name = "COMMAND")]
    pub hook_before: Option<String>,
    /// Run this shell command after the command succeeded (outcome in HYDRABACKUP_* variables).
    #[arg(long, global = true, value_name = "COMMAND")]
    pub hook_after: Option<String>,
    /// Run this shell command after the command failed (outcome in HYDRABACKUP_* variables).
    #[arg(long, global = true, value_name = "COMMAND")]
    pub hook_failure: Option<String>,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new repository.
    Init(InitArgs),
    /// Back up files and directories into a new snapshot.
    Backup(BackupOptions),
    /// List snapshots.
    #[command(alias = "list-versions")]
    Snapshots(SnapshotsOptions),
    /// List the files of a snapshot.
    Ls(LsOptions),
    /// Restore a snapshot into a folder.
    Restore(RestoreOptions),
    /// Show a snapshot's HydrAIDE catalogue: every Swamp with its facts (`created` is the
    /// header's CreatedAt, `modified` the file's mtime: its last write).
    Show(ShowOptions),
    /// Check the repository; with --read-data also every stored byte.
    #[command(alias = "check")]
    Verify(VerifyOptions),
    /// Repository size: stored, unique and logical bytes, compression and deduplication.
    Stats(StatsOptions),
    /// Manage the passwords (keys) that open the repository.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Copy snapshots from another repository into this one (a second copy, 3-2-1).
    Copy(CopyArgs),
    /// Remove snapshots, by id or by a retention policy (`prune` frees their data).
    Forget(ForgetOptions),
    /// Delete data that no snapshot uses.
    Prune(PruneOptions),
    /// Remove stale locks and files left by crashed writers.
    Unlock(UnlockOptions),
    /// Serve repositories over HTTP(S) for `rest:` locations (TLS, users, append-only).
    Serve(ServeArgs),
    /// Add a user to a users file for `serve`, or change their password.
    ServeUser(ServeUserArgs),
    /// Back up continuously: capture changed Swamps every interval until SIGTERM.
    Watch(WatchOptions),
    /// Browse the snapshots as a read-only file system (FUSE) until Ctrl-C or unmount.
    Mount(hydrabackup::ops::mount::MountOptions),
    /// Write a file of a snapshot to standard output (a folder as a tar archive).
    Dump(hydrabackup::ops::dump::DumpOptions),
    /// Print a repository object, decrypted (JSON; a data blob as raw bytes), for debugging.
    Cat(hydrabackup::ops::cat::CatOptions),
    // conf (issue 17): configuration and the commands restic users reach for.
    /// Show the settings in effect: profile, environment and command line merged.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The retention policy stored in the repository (`forget` without arguments applies it).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Forget snapshots by the stored retention policy, then prune (HydrAIDE plan's name).
    Purge(PruneOptions),
    /// What changed between two snapshots: files and Swamps added, removed, changed.
    Diff(DiffOptions),
    /// Which snapshots hold a path or Swamp name matching a pattern, newest first; with --key,
    /// which hold Treasures whose key matches (and when each value changed).
    Find(FindOptions),
    /// Add, remove or set tags of snapshots (each is rewritten as a new snapshot).
    Tag(TagOptions),
    /// Rebuild index files from pack headers, or snapshots without their missing data.
    #[command(subcommand)]
    Repair(RepairCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages (one per command) into a folder.
    #[command(hide = true)]
    Man {
        /// The folder (created when missing).
        dir: PathBuf,
    },
}

/// `config` subcommands.
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the merged settings and where each comes from (secrets redacted).
    Show,
}

/// `policy` subcommands.
#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Store a retention policy in the repository.
    Set(PolicySetOptions),
    /// Print the stored retention policy.
    Show,
}

/// `repair` subcommands.
#[derive(Subcommand, Debug)]
pub enum RepairCommand {
    /// Write index files for every pack, read from the pack headers.
    Index(RepairIndexOptions),
    /// Write new snapshots without references to missing or damaged data.
    Snapshots(RepairSnapshotsOptions),
}

/// `init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// The new repository's parameters.
    #[command(flatten)]
    pub opts: InitOptions,
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
    /// The source repository (required).
    #[command(flatten)]
    pub from: FromRepo,
    /// What to copy.
    #[command(flatten)]
    pub opts: CopyOptions,
}

/// `key` subcommands.
#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// List keys.
    List,
    /// Add a key for a new password.
    Add(KeyAddArgs),
    /// Remove a key by id (prefix).
    Remove {
        /// Key id or unique prefix.
        id: String,
    },
    /// Change the password of the key in use.
    Passwd(NewPassword),
}

/// `key add`.
#[derive(Args, Debug)]
pub struct KeyAddArgs {
    /// Where the new password comes from.
    #[command(flatten)]
    pub password: NewPassword,
    /// Make a write-only key: it can run `backup` (and `watch`), never read, list or delete
    /// what is stored (for the database host; see "Protecting backups from a compromised host").
    #[arg(long)]
    pub write_only: bool,
}

/// Where a new password comes from.
#[derive(Args, Debug)]
pub struct NewPassword {
    /// Read the new password from this file (first line). Or give it in
    /// HYDRABACKUP_NEW_PASSWORD; with neither it is asked for on a terminal.
    #[arg(long, env = "HYDRABACKUP_NEW_PASSWORD_FILE")]
    pub new_password_file: Option<PathBuf>,
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
    /// Answer `GET /metrics` (Prometheus) on the main address, behind the same authentication
    /// (a repository named `metrics` is then out of reach).
    #[arg(long)]
    pub metrics: bool,
    /// Answer `GET /metrics` without authentication on this separate plain-HTTP address
    /// (e.g. `127.0.0.1:9300`; port 0: any free port, printed).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
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
