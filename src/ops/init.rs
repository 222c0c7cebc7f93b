//! `init`: creates a repository.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::backend::{Backend, LockMode, parse_retention};
use crate::crypto::KdfParams;
use crate::repo::Repository;
use crate::repo::config::{Compression, Config, ObjectLockConfig};
use crate::{Error, Id, Result};

/// Options of `init`.
#[derive(Debug, Clone, clap::Args)]
pub struct InitOptions {
    /// Target pack size in MiB.
    #[arg(long, default_value_t = 16)]
    pub pack_size: u32,
    /// Compression of data blobs: auto (zstd 1), off, fastest (1), better (9), max (19), or a
    /// zstd level 0-19; `backup --compression` overrides it per run.
    #[arg(long, default_value = "auto", value_parser = Compression::parse)]
    pub compression: Compression,
    /// Average chunk size in KiB (a power of two).
    #[arg(long, default_value_t = 1024)]
    pub chunk_avg: u32,
    /// With --from-repo: take its chunker parameters and blob-id secret, so that `copy`
    /// between the two moves only missing blobs and backups into either deduplicate alike.
    #[arg(long, requires = "from_repo")]
    pub copy_params: bool,
    /// How backups capture HydrAIDE `.hyd` files by default (`backup --mode` overrides it).
    #[arg(long, value_enum)]
    pub mode: Option<crate::logical::BackupMode>,
    /// S3 Object Lock (WORM): write every object but the locks locked in this mode (needs an
    /// `s3:` repository; a new bucket is created with Object Lock).
    #[arg(long, value_enum, requires = "retention")]
    pub object_lock: Option<LockMode>,
    /// With --object-lock: the protected period (e.g. 30d, 2w, 12h, 90s; units s, min, h, d, w,
    /// y). Objects still in use stay locked at least this long while `prune` runs at least
    /// every quarter of it.
    #[arg(long, requires = "object_lock", value_parser = parse_retention)]
    pub retention: Option<Duration>,
}

impl InitOptions {
    /// The configuration these options describe; with `params_from`, its chunker parameters
    /// and blob-id secret.
    pub fn config(&self, params_from: Option<&Config>) -> Result<Config> {
        let mut cfg = Config::new();
        cfg.pack_size = self.pack_size.saturating_mul(1024 * 1024);
        cfg.compression = self.compression.zstd_level();
        cfg.backup_mode = self.mode;
        let avg = self.chunk_avg.saturating_mul(1024);
        if !avg.is_power_of_two() {
            return Err(Error::InvalidInput(
                "--chunk-avg must be a power of two".into(),
            ));
        }
        cfg.chunker.avg = avg;
        cfg.chunker.min = (avg / 4).max(64);
        cfg.chunker.max = avg.saturating_mul(4);
        if let (Some(mode), Some(retention)) = (self.object_lock, self.retention) {
            cfg.object_lock = Some(ObjectLockConfig {
                mode,
                retention_secs: retention.as_secs(),
            });
        }
        if let Some(c) = params_from {
            cfg.id_key = c.id_key;
            cfg.chunker = c.chunker;
            cfg.hyd_chunker = c.hyd_chunker;
        }
        Ok(cfg)
    }
}

/// The repository created (the `--json` document).
#[derive(Debug, Clone, Serialize)]
pub struct InitOutcome {
    /// Its location.
    pub repository: String,
    /// Its id.
    pub id: Id,
    /// The id of its first key.
    pub key: String,
    /// Its object lock, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<ObjectLockConfig>,
}

/// Creates a repository with `config` and one key for `password`.
pub fn run(
    backend: Arc<dyn Backend>,
    password: &[u8],
    kdf: KdfParams,
    config: Config,
) -> Result<InitOutcome> {
    let repo = Repository::init(backend, password, kdf, config)?;
    Ok(InitOutcome {
        repository: repo.backend().location(),
        id: repo.config().id,
        key: repo.key_name().to_string(),
        object_lock: repo.config().object_lock,
    })
}
