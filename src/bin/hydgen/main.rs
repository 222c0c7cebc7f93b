//! hydgen: writes, ages, mutates and checks realistic HydrAIDE data roots for
//! testing hydrabackup. The generators are this binary's own modules (test data, not the
//! library's API); they write through `hydrabackup::hyd`.

mod check;
mod churn;
mod datagen;
mod edge;
mod live;
mod livelog;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use check::check;
use churn::{ChurnConfig, churn};
use clap::{Args, Parser, Subcommand};
use datagen::{GenConfig, generate, parse_size};
use hydrabackup::hyd::walk::destroy;
use hydrabackup::hyd::{Layout, SwampName};
use live::{LiveConfig, live};

#[derive(Parser)]
#[command(
    name = "hydgen",
    version,
    about = "Generate and mutate HydrAIDE test data roots"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone, Copy)]
struct LayoutArgs {
    /// Islands the swamp names hash into.
    #[arg(long, default_value_t = 1000)]
    islands: u64,
    /// Hashed folder levels between island and swamp.
    #[arg(long, default_value_t = 1)]
    depth: usize,
    /// Maximum folders per level (sets the hex width of a level).
    #[arg(long, default_value_t = 1000)]
    folders_per_level: usize,
}

impl LayoutArgs {
    fn layout(self) -> Layout {
        Layout {
            all_islands: self.islands,
            depth: self.depth,
            max_folders_per_level: self.folders_per_level,
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a new data root.
    Gen {
        /// Data root to create.
        #[arg(long)]
        root: PathBuf,
        /// Seed; the same seed writes the same bytes.
        #[arg(long)]
        seed: u64,
        /// Number of swamps.
        #[arg(long)]
        swamps: u64,
        /// Approximate total size, e.g. 200M (large swamps shrink to fit).
        #[arg(long, value_parser = size_arg)]
        size: Option<u64>,
        /// Percentage of swamps written as version-2 .hyd files.
        #[arg(long, default_value_t = 0.0)]
        v2_percent: f64,
        /// Percentage of swamps written as V1 folders.
        #[arg(long, default_value_t = 0.0)]
        v1_percent: f64,
        #[command(flatten)]
        layout: LayoutArgs,
    },
    /// Apply one day of activity to a data root.
    Churn {
        /// Data root.
        #[arg(long)]
        root: PathBuf,
        /// Seed.
        #[arg(long)]
        seed: u64,
        /// Percentage of swamps that get appended blocks.
        #[arg(long, default_value_t = 10.0)]
        append_percent: f64,
        /// Percentage of swamps that are compacted.
        #[arg(long, default_value_t = 2.0)]
        compact_percent: f64,
        /// New swamps, as a percentage of the existing ones.
        #[arg(long, default_value_t = 1.0)]
        new_percent: f64,
        /// Percentage of swamps that are deleted.
        #[arg(long, default_value_t = 0.5)]
        delete_percent: f64,
        #[command(flatten)]
        layout: LayoutArgs,
    },
    /// Keep appending and compacting like a live server.
    Live {
        /// Data root.
        #[arg(long)]
        root: PathBuf,
        /// Seed.
        #[arg(long)]
        seed: u64,
        /// Stop when this file exists.
        #[arg(long)]
        stop_file: Option<PathBuf>,
        /// Stop after this many operations.
        #[arg(long)]
        ops: Option<u64>,
        /// JSON-lines log of every state written (appended to).
        #[arg(long)]
        log: Option<PathBuf>,
        /// Pause between operations, in milliseconds.
        #[arg(long, default_value_t = 20)]
        interval_ms: u64,
        /// Percentage of operations that compact.
        #[arg(long, default_value_t = 3.0)]
        compact_percent: f64,
        /// Most blocks appended per operation.
        #[arg(long, default_value_t = 3)]
        max_blocks: u64,
        /// Log the initial state of every file before starting.
        #[arg(long)]
        log_all_initial: bool,
        /// Percentage of operations that rewrite a V1 Swamp folder.
        #[arg(long, default_value_t = 0.0)]
        v1_percent: f64,
    },
    /// Write a version-2 Swamp whose name entry is in block 1, not block 0; prints its path.
    Latemeta(EdgeArgs),
    /// Write a Swamp with an empty-key entry (CRCs hold; HydrAIDE refuses it); prints its path.
    Emptykey(EdgeArgs),
    /// Write a Swamp holding one Treasure of --size bytes (its own block); prints its path.
    Bigentry {
        #[command(flatten)]
        edge: EdgeArgs,
        /// Size of the Treasure, e.g. 600M (at most 4G minus a few bytes).
        #[arg(long, value_parser = size_arg, default_value = "600M")]
        size: u64,
    },
    /// Append half a block to a clean .hyd file and leave it torn (a stalled writer).
    Stall {
        /// The .hyd file.
        #[arg(long)]
        file: PathBuf,
        /// Seed of the block's entries.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Wait for this file to exist, then write the rest of the block.
        #[arg(long)]
        until: Option<PathBuf>,
    },
    /// Destroy a swamp as HydrAIDE does: delete its file (or V1 folder), then the parent
    /// folders left empty.
    Destroy {
        /// Data root.
        #[arg(long)]
        root: PathBuf,
        /// Swamp name (`sanctuary/realm/swamp`), placed by the layout.
        #[arg(long, conflicts_with = "path", required_unless_present = "path")]
        swamp: Option<String>,
        /// The swamp's `.hyd` file or V1 folder, under the root.
        #[arg(long)]
        path: Option<PathBuf>,
        #[command(flatten)]
        layout: LayoutArgs,
    },
    /// Load every swamp; exit non-zero if any does not load.
    Check {
        /// Data root.
        #[arg(long)]
        root: PathBuf,
        /// Also require every `.hyd` file to hold a state this `live --log` recorded.
        #[arg(long)]
        log: Option<PathBuf>,
    },
}

/// Where and what an edge-case Swamp is.
#[derive(Args)]
struct EdgeArgs {
    /// Data root.
    #[arg(long)]
    root: PathBuf,
    /// Swamp name, `sanctuary/realm/swamp`.
    #[arg(long)]
    name: String,
    /// Seed of its entries.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    layout: LayoutArgs,
}

fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s).ok_or_else(|| format!("not a size: {s:?} (try 200M)"))
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hydgen: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cli.cmd {
        Cmd::Gen {
            root,
            seed,
            swamps,
            size,
            v2_percent,
            v1_percent,
            layout,
        } => {
            let r = generate(
                &root,
                &GenConfig {
                    seed,
                    swamps,
                    total_size: size,
                    v2_percent,
                    v1_percent,
                    layout: layout.layout(),
                },
            )?;
            println!(
                "generated {} swamps ({} v3, {} v2, {} v1; {} small, {} medium, {} large), {} bytes",
                r.v3 + r.v2 + r.v1,
                r.v3,
                r.v2,
                r.v1,
                r.classes[0],
                r.classes[1],
                r.classes[2],
                r.bytes
            );
        }
        Cmd::Churn {
            root,
            seed,
            append_percent,
            compact_percent,
            new_percent,
            delete_percent,
            layout,
        } => {
            let r = churn(
                &root,
                &ChurnConfig {
                    seed,
                    append_percent,
                    compact_percent,
                    new_percent,
                    delete_percent,
                    layout: layout.layout(),
                },
            )?;
            println!(
                "churn: {} existing, {} appended ({} blocks), {} compacted, {} deleted, {} created, {} skipped",
                r.existing,
                r.appended,
                r.blocks_appended,
                r.compacted,
                r.deleted,
                r.created,
                r.skipped.len()
            );
        }
        Cmd::Live {
            root,
            seed,
            stop_file,
            ops,
            log,
            interval_ms,
            compact_percent,
            max_blocks,
            log_all_initial,
            v1_percent,
        } => {
            if stop_file.is_none() && ops.is_none() {
                return Err("live needs --stop-file or --ops".into());
            }
            let r = live(
                &root,
                &LiveConfig {
                    seed,
                    stop_file,
                    ops,
                    log,
                    interval: Duration::from_millis(interval_ms),
                    compact_percent,
                    max_blocks_per_op: max_blocks,
                    log_all_initial,
                    v1_percent,
                },
            )?;
            println!(
                "live: {} ops, {} blocks, {} compactions, {} swamps touched, {} V1 rewrites",
                r.ops, r.blocks, r.compactions, r.swamps_touched, r.v1_rewrites
            );
        }
        Cmd::Latemeta(a) => {
            let p = edge::write_latemeta(&a.root, &a.layout.layout(), &a.name, a.seed)?;
            println!("{}", p.display());
        }
        Cmd::Emptykey(a) => {
            let p = edge::write_emptykey(&a.root, &a.layout.layout(), &a.name, a.seed)?;
            println!("{}", p.display());
        }
        Cmd::Bigentry { edge: a, size } => {
            let size = u32::try_from(size).map_err(|_| format!("--size {size} exceeds u32"))?;
            let p = edge::write_bigentry(&a.root, &a.layout.layout(), &a.name, a.seed, size)?;
            println!("{}", p.display());
        }
        Cmd::Stall { file, seed, until } => {
            let s = edge::stall(&file, seed, until.as_deref())?;
            println!(
                "stalled: loadable prefix {} bytes, file {} bytes",
                s.valid_len, s.torn_len
            );
        }
        Cmd::Destroy {
            root,
            swamp,
            path,
            layout,
        } => {
            let path = match (path, swamp) {
                (Some(p), _) => p,
                (None, Some(name)) => {
                    let n = SwampName::parse(&name)
                        .ok_or_else(|| format!("not a swamp name: {name:?}"))?;
                    let hyd = n.hyd_path(&root, &layout.layout());
                    if hyd.exists() {
                        hyd
                    } else {
                        n.base_path(&root, &layout.layout())
                    }
                }
                (None, None) => return Err("destroy needs --swamp or --path".into()),
            };
            destroy(&root, &path).map_err(|e| format!("{}: {e}", path.display()))?;
            println!("destroyed {}", path.display());
        }
        Cmd::Check { root, log } => {
            let mut r = check(&root)?;
            if let Some(log) = log {
                let (matched, failures) = check::check_logged(&root, &log)?;
                println!("hyd files in a logged state: {matched}");
                r.failures.extend(failures);
            }
            println!(
                "hyd files: {} (v3 {}, v2 {}), blocks {}, entries {}, live keys {}, bytes {}",
                r.hyd_files, r.v3, r.v2, r.blocks, r.entries, r.live_keys, r.hyd_bytes
            );
            println!(
                "stale headers: {}, nameless: {}, compact temps: {}, other files: {}",
                r.stale_headers, r.nameless, r.compact_temps, r.others
            );
            println!(
                "v1 swamps: {}, chunks {}, bytes {}",
                r.v1_swamps, r.v1_chunks, r.v1_bytes
            );
            for (p, why) in &r.failures {
                eprintln!("FAIL {}: {why}", p.display());
            }
            if !r.failures.is_empty() {
                println!("failures: {}", r.failures.len());
                return Ok(ExitCode::from(1));
            }
            println!("all swamps load");
        }
    }
    Ok(ExitCode::SUCCESS)
}
