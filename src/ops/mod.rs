//! One module per operation. Each command is `ops::<cmd>::run(&repo, &Options, &Progress)`
//! returning its outcome, which serialises to the command's `--json` document. The operation
//! takes the repository lock and loads the index itself; the options derive `clap::Args`, so
//! the command line declares no option a second time.

pub mod backup;
pub mod cat;
pub mod copies;
pub mod copy;
pub mod diff;
pub mod dump;
pub mod find;
pub mod find_key;
pub mod forget;
pub mod init;
pub mod key;
pub mod ls;
pub mod mount;
pub mod mountfs;
pub mod objlock;
pub mod packread;
pub mod policy;
pub mod progress;
pub mod prune;
pub mod reach;
pub mod repair;
pub mod restore;
pub mod show;
pub mod snapshots;
pub mod stats;
pub mod swampcheck;
pub mod tag;
pub mod unlock;
pub mod verify;
pub mod walk;
pub mod watch;
