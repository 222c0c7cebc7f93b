//! One module per operation. Each command is `ops::<cmd>::run(&repo, &Options, &Progress)`
//! returning its outcome, which serialises to the command's `--json` document. The operation
//! takes the repository lock and loads the index itself; the options derive `clap::Args`, so
//! the command line declares no option a second time.

pub mod backup;
pub mod copies;
pub mod copy;
pub mod find_key;
pub mod forget;
pub mod init;
pub mod key;
pub mod ls;
pub mod packread;
pub mod progress;
pub mod prune;
pub mod reach;
pub mod restore;
pub mod show;
pub mod snapshots;
pub mod stats;
pub mod swampcheck;
pub mod unlock;
pub mod verify;
pub mod walk;
