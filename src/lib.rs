//! hydrabackup: zero-downtime, deduplicating, encrypted backups of HydrAIDE data roots.
//!
//! Layers, bottom to top: [`crypto`] (keys, AEAD, keyed ids), [`backend`] (byte storage),
//! [`repo`] (the repository format), [`source`] (what is backed up), [`ops`] (one module per
//! operation). The binary's `cli` module only parses flags and prints results.
#![deny(missing_docs)]

pub mod backend;
pub mod chunker;
pub mod crypto;
pub mod error;
pub mod failpoint;
pub mod hyd;
pub mod id;
pub mod logical;
pub mod metrics;
pub mod ops;
pub mod pattern;
pub mod repo;
pub mod retention;
pub mod server;
pub mod source;
pub mod sys;
pub mod timespec;

pub use error::{Error, Result};
pub use id::Id;
