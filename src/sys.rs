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
