//! The repository config: format version, repository id, chunker and pack parameters and the
//! keyed-hash secret. Stored sealed under the name `config`.

use serde::{Deserialize, Serialize};

use crate::Id;
use crate::backend::{LockMode, ObjectLock};

/// Current repository format version.
pub const FORMAT_VERSION: u32 = 1;

/// FastCDC parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// Smallest chunk, bytes.
    pub min: u32,
    /// Average chunk, bytes.
    pub avg: u32,
    /// Largest chunk, bytes.
    pub max: u32,
    /// Secret seed of the gear table, so chunk boundaries do not fingerprint content.
    pub seed: u64,
}

impl ChunkerParams {
    /// Defaults: 256 KiB / 1 MiB / 4 MiB with a random seed.
    pub fn with_random_seed() -> Self {
        let mut b = [0u8; 8];
        crate::crypto::fill_random(&mut b);
        ChunkerParams {
            min: 256 * 1024,
            avg: 1024 * 1024,
            max: 4 * 1024 * 1024,
            seed: u64::from_le_bytes(b),
        }
    }

    /// Whether the parameters are ones FastCDC accepts and we can hold in memory.
    pub fn is_valid(&self) -> bool {
        (64..=1 << 20).contains(&self.min)
            && self.min <= self.avg
            && self.avg <= self.max
            && (256..=1 << 22).contains(&self.avg)
            && self.max <= 1 << 24
            && self.min.is_multiple_of(2)
            && self.avg.is_multiple_of(2)
            && self.max.is_multiple_of(2)
    }
}

/// The repository config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// Format version; readers refuse versions they do not know.
    pub version: u32,
    /// Random repository id.
    pub id: Id,
    /// Secret for keyed BLAKE3 blob ids.
    pub id_key: Id,
    /// Chunker parameters.
    pub chunker: ChunkerParams,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// zstd level for blobs (0 = store uncompressed).
    pub compression: i32,
    /// Block-aligned chunking of HydrAIDE `.hyd` data.
    pub hyd_chunker: HydChunking,
    /// How `backup` captures `.hyd` files unless `--mode` says otherwise (absent: `auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_mode: Option<crate::logical::BackupMode>,
    /// S3 Object Lock of every object but the locks (absent: none; repo-format.md §1a).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<ObjectLockConfig>,
}

/// The object lock a repository's objects are written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectLockConfig {
    /// `governance` or `compliance`.
    pub mode: LockMode,
    /// The protected period in seconds.
    pub retention_secs: u64,
}

impl ObjectLockConfig {
    /// The lock the backend writes with.
    pub fn lock(&self) -> ObjectLock {
        ObjectLock {
            mode: self.mode,
            retention: std::time::Duration::from_secs(self.retention_secs),
        }
    }
}

impl Config {
    /// A new config with fresh secrets.
    pub fn new() -> Self {
        Config {
            version: FORMAT_VERSION,
            id: Id::random(),
            id_key: Id::random(),
            chunker: ChunkerParams::with_random_seed(),
            pack_size: 16 * 1024 * 1024,
            compression: 1,
            hyd_chunker: HydChunking::with_seed(u64::from_le_bytes(
                Id::random().0[..8].try_into().expect("8 bytes"),
            )),
            backup_mode: None,
            object_lock: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

/// Block-aligned chunking parameters for `.hyd` data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HydChunking {
    /// A chunk is not cut before this many bytes.
    pub min: u32,
    /// Extra bytes after `min` expected before a cut.
    pub avg: u32,
    /// A chunk is always cut once it reaches this many bytes.
    pub max: u32,
    /// Secret seed of the cut decision.
    pub seed: u64,
}

impl HydChunking {
    /// Defaults: 32 KiB minimum, 64 KiB average beyond it, 256 KiB maximum.
    pub fn with_seed(seed: u64) -> Self {
        HydChunking {
            min: 32 << 10,
            avg: 64 << 10,
            max: 256 << 10,
            seed,
        }
    }

    /// Whether a chunk of `chunk_len` bytes ends after the block just added to it (`block_len`
    /// bytes, CRC `crc`): the rule of `repo-format.md` §6a.
    pub(crate) fn cut_after(&self, chunk_len: usize, block_len: usize, crc: u32) -> bool {
        if chunk_len >= self.max as usize {
            return true;
        }
        if chunk_len < self.min as usize {
            return false;
        }
        let mut h = self.seed ^ (u64::from(crc) << 20) ^ block_len as u64;
        // splitmix64 finaliser
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d049bb133111eb);
        h ^= h >> 31;
        h % u64::from(self.avg.max(1)) < block_len as u64
    }
}

/// A compression setting by restic's names (`--compression`), or a zstd level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// The default: zstd level 1 (HydrAIDE blocks are already Snappy-compressed, so higher
    /// levels cost time for little); chunks that do not shrink are stored raw.
    Auto,
    /// No compression.
    Off,
    /// zstd level 1.
    Fastest,
    /// zstd level 9.
    Better,
    /// zstd level 19.
    Max,
    /// A zstd level from 0 (off) to 19.
    Level(i32),
}

impl Compression {
    /// The zstd level this setting means (0: store uncompressed): the one mapping of names to
    /// levels.
    pub fn zstd_level(self) -> i32 {
        match self {
            Compression::Off => 0,
            Compression::Auto | Compression::Fastest => 1,
            Compression::Better => 9,
            Compression::Max => 19,
            Compression::Level(l) => l,
        }
    }

    /// Parses `auto`, `off`, `fastest`, `better`, `max` or a level from 0 to 19 (for clap).
    pub fn parse(s: &str) -> Result<Compression, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "auto" => Compression::Auto,
            "off" => Compression::Off,
            "fastest" => Compression::Fastest,
            "better" => Compression::Better,
            "max" => Compression::Max,
            n => match n.parse::<i32>() {
                Ok(l) if (0..=19).contains(&l) => Compression::Level(l),
                _ => {
                    return Err(format!(
                        "{s:?} is not auto, off, fastest, better, max or a zstd level from 0 to 19"
                    ));
                }
            },
        })
    }
}
