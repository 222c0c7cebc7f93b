//! Facts about the host this process runs on, for lock owners, key files, snapshots and the
//! names of temporary files. A leaf module: it imports nothing from the crate.

/// This machine's host name.
pub fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// The current user's name (`$USER`, else `uid<N>`).
pub fn username() -> String {
    std::env::var("USER").unwrap_or_else(|_| {
        // SAFETY: getuid has no preconditions and cannot fail.
        format!("uid{}", unsafe { libc::getuid() })
    })
}

/// Lowers this process to background priority: CPU niceness at least 10 and the idle I/O
/// class, for every thread it has now (Linux sets both per thread) and so for every thread
/// they start later. Raising a niceness and choosing the idle class need no privilege.
pub fn lower_priority() -> std::io::Result<()> {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_IDLE: libc::c_long = 3;
    const IOPRIO_CLASS_SHIFT: libc::c_long = 13;
    for entry in std::fs::read_dir("/proc/self/task")? {
        let Some(tid) = entry?
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<libc::id_t>().ok())
        else {
            continue;
        };
        // SAFETY: getpriority/setpriority take plain integers and touch no memory of ours; a
        // thread that ended meanwhile makes them fail with ESRCH, which is ignored below.
        unsafe {
            *libc::__errno_location() = 0;
            let now = libc::getpriority(libc::PRIO_PROCESS, tid);
            if *libc::__errno_location() == 0 && now < 10 {
                libc::setpriority(libc::PRIO_PROCESS, tid, 10);
            }
            // SAFETY: ioprio_set takes three integers and touches no memory of ours.
            libc::syscall(
                libc::SYS_ioprio_set,
                IOPRIO_WHO_PROCESS,
                libc::c_long::from(tid),
                IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
            );
        }
    }
    Ok(())
}
