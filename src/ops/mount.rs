//! `mount`: the repository's snapshots as a read-only FUSE file system (see
//! [`crate::ops::mountfs`]), served until SIGINT, SIGTERM or an unmount.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::ops::mountfs::SnapshotFs;
use crate::ops::progress::Progress;
use crate::repo::Repository;
use crate::{Error, Result};

/// Options of `mount`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MountOptions {
    /// An empty folder to mount the snapshots on.
    pub mountpoint: PathBuf,
    /// Let users other than the one mounting read the files (needs `user_allow_other` in
    /// /etc/fuse.conf unless root); permissions recorded in the snapshots apply.
    #[arg(long)]
    pub allow_other: bool,
}

/// What was mounted (the `--json` document, printed once mounted and again after).
#[derive(Debug, Clone, Serialize)]
pub struct MountOutcome {
    /// The mount point.
    pub mountpoint: PathBuf,
    /// Snapshots under `snapshots/` and `by-time/`.
    pub snapshots: usize,
    /// Whether it is still mounted (false in the final document).
    pub mounted: bool,
}

/// A mounted file system; [`Mounted::serve`] answers the kernel until it is unmounted.
pub struct Mounted<'a> {
    session: fuser::Session<SnapshotFs<'a>>,
    outcome: MountOutcome,
    /// A shared lock while mounted, so no prune removes data being read.
    _lock: crate::repo::lock::LockGuard,
}

/// Set by SIGINT and SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Mounts the snapshots of `repo` on `opts.mountpoint` (read-only).
pub fn mount<'a>(repo: &'a Repository, opts: &MountOptions) -> Result<Mounted<'a>> {
    let meta = std::fs::metadata(&opts.mountpoint).map_err(|e| {
        Error::InvalidInput(format!("mount point {}: {e}", opts.mountpoint.display()))
    })?;
    if !meta.is_dir() {
        return Err(Error::InvalidInput(format!(
            "mount point {} is not a folder",
            opts.mountpoint.display()
        )));
    }
    // Handlers first: a signal that comes once the mount is announced must unmount it.
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe; sigaction
    // is given a valid, zero-initialised struct and no old-action pointer.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        for sig in [libc::SIGINT, libc::SIGTERM] {
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    let lock = repo.lock(false, "mount")?;
    let snaps = repo.snapshots()?;
    let index = repo.load_index()?;
    let fs = SnapshotFs::new(repo, index, &snaps);
    let mut options = vec![
        fuser::MountOption::RO,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
        fuser::MountOption::FSName("hydrabackup".into()),
        fuser::MountOption::Subtype("hydrabackup".into()),
        fuser::MountOption::DefaultPermissions,
    ];
    if opts.allow_other {
        options.push(fuser::MountOption::AllowOther);
    }
    let session = fuser::Session::new(fs, &opts.mountpoint, &options).map_err(|e| {
        Error::InvalidInput(format!(
            "cannot mount on {}: {e} (FUSE needs /dev/fuse, and root or fusermount3)",
            opts.mountpoint.display()
        ))
    })?;
    Ok(Mounted {
        session,
        outcome: MountOutcome {
            mountpoint: opts.mountpoint.clone(),
            snapshots: snaps.len(),
            mounted: true,
        },
        _lock: lock,
    })
}

impl Mounted<'_> {
    /// What is mounted.
    pub fn outcome(&self) -> &MountOutcome {
        &self.outcome
    }

    /// Answers the kernel until SIGINT or SIGTERM (then unmounts) or until the file system is
    /// unmounted from outside (`umount`, `fusermount3 -u`).
    pub fn serve(mut self) -> Result<MountOutcome> {
        let mut unmounter = self.session.unmount_callable();
        let session = &mut self.session;
        let served = std::thread::scope(|s| {
            let worker = s.spawn(move || session.run());
            while !STOP.load(Ordering::SeqCst) && !worker.is_finished() {
                std::thread::sleep(Duration::from_millis(100));
            }
            if !worker.is_finished() {
                tracing::info!("unmounting");
                if let Err(e) = unmounter.unmount() {
                    tracing::warn!("unmount: {e}");
                }
            }
            worker.join().expect("the FUSE session does not panic")
        });
        served.map_err(|e| Error::InvalidInput(format!("FUSE session: {e}")))?;
        self.outcome.mounted = false;
        Ok(self.outcome)
    }
}

/// Mounts and serves until unmounted (see [`mount`] and [`Mounted::serve`]).
pub fn run(repo: &Repository, opts: &MountOptions, _progress: &Progress) -> Result<MountOutcome> {
    mount(repo, opts)?.serve()
}
