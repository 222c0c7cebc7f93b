//! One module per operation. Each takes a repository and options and returns a summary.

pub mod backup;
pub mod copies;
pub mod copy;
pub mod forget;
pub mod packread;
pub mod progress;
pub mod prune;
pub mod reach;
pub mod restore;
pub mod swampcheck;
pub mod verify;
pub mod walk;
