//! What an operation over SFTP can fail with, and which `io::Error` each failure becomes.

use std::io::{self, ErrorKind};

use ssh2::ErrorCode;

// SFTP status codes (draft-ietf-secsh-filexfer) that map to distinct I/O error kinds.
pub(super) const FX_NO_SUCH_FILE: i32 = 2;
pub(super) const FX_PERMISSION_DENIED: i32 = 3;
pub(super) const FX_NO_CONNECTION: i32 = 6;
pub(super) const FX_CONNECTION_LOST: i32 = 7;
pub(super) const FX_OP_UNSUPPORTED: i32 = 8;
pub(super) const FX_NO_SUCH_PATH: i32 = 10;
pub(super) const FX_FILE_ALREADY_EXISTS: i32 = 11;
pub(super) const FX_WRITE_PROTECT: i32 = 12;
pub(super) const FX_NO_SPACE_ON_FILESYSTEM: i32 = 14;
pub(super) const FX_QUOTA_EXCEEDED: i32 = 15;

/// What an operation inside a connection can fail with.
pub(super) enum Fail {
    /// A libssh2 or SFTP status error.
    Ssh(ssh2::Error),
    /// An error from a file handle's `Read`/`Write`, or one made up here.
    Io(io::Error),
}

impl From<ssh2::Error> for Fail {
    fn from(e: ssh2::Error) -> Self {
        Fail::Ssh(e)
    }
}

impl From<io::Error> for Fail {
    /// File handles' `Read`/`Write` turn SFTP status codes into `io::Error`s of kind `Other`
    /// that keep only ssh2's message; the codes that matter are recovered from it.
    fn from(e: io::Error) -> Self {
        if e.kind() != ErrorKind::Other {
            return Fail::Io(e);
        }
        let msg = e.to_string();
        let code = [
            FX_NO_SPACE_ON_FILESYSTEM,
            FX_QUOTA_EXCEEDED,
            FX_PERMISSION_DENIED,
            FX_WRITE_PROTECT,
        ]
        .into_iter()
        .find(|&c| msg == ssh2::Error::from_errno(ErrorCode::SFTP(c)).message());
        match code {
            Some(c) => Fail::Io(ssh_io(&ssh2::Error::from_errno(ErrorCode::SFTP(c)))),
            None => Fail::Io(io::Error::other(format!("SFTP: {msg}"))),
        }
    }
}

impl Fail {
    /// Whether the connection is unusable after this error (transport failure, time-out).
    pub(super) fn fatal(&self) -> bool {
        match self {
            Fail::Ssh(e) => match e.code() {
                ErrorCode::Session(_) => true,
                ErrorCode::SFTP(c) => c == FX_NO_CONNECTION || c == FX_CONNECTION_LOST,
            },
            // Handle reads and writes report libssh2 failures as `Other`.
            Fail::Io(e) => !matches!(
                e.kind(),
                ErrorKind::NotFound
                    | ErrorKind::AlreadyExists
                    | ErrorKind::PermissionDenied
                    | ErrorKind::UnexpectedEof
                    | ErrorKind::InvalidData
                    | ErrorKind::StorageFull
                    | ErrorKind::QuotaExceeded
            ),
        }
    }

    pub(super) fn into_io(self) -> io::Error {
        match self {
            Fail::Io(e) => e,
            Fail::Ssh(e) => ssh_io(&e),
        }
    }
}

/// An `io::Error` of a fitting kind for a libssh2 / SFTP error.
pub(super) fn ssh_io(e: &ssh2::Error) -> io::Error {
    let kind = match e.code() {
        ErrorCode::SFTP(FX_NO_SUCH_FILE | FX_NO_SUCH_PATH) => ErrorKind::NotFound,
        ErrorCode::SFTP(FX_PERMISSION_DENIED | FX_WRITE_PROTECT) => ErrorKind::PermissionDenied,
        ErrorCode::SFTP(FX_FILE_ALREADY_EXISTS) => ErrorKind::AlreadyExists,
        ErrorCode::SFTP(FX_OP_UNSUPPORTED) => ErrorKind::Unsupported,
        ErrorCode::SFTP(FX_NO_SPACE_ON_FILESYSTEM) => {
            return io::Error::from_raw_os_error(libc::ENOSPC);
        }
        ErrorCode::SFTP(FX_QUOTA_EXCEEDED) => return io::Error::from_raw_os_error(libc::EDQUOT),
        ErrorCode::SFTP(FX_NO_CONNECTION | FX_CONNECTION_LOST) => ErrorKind::ConnectionAborted,
        ErrorCode::Session(-9 | -30) => ErrorKind::TimedOut,
        ErrorCode::Session(-7 | -13 | -43) => ErrorKind::ConnectionAborted,
        ErrorCode::Session(-18 | -19 | -48) => ErrorKind::PermissionDenied,
        _ => ErrorKind::Other,
    };
    let what = match e.code() {
        ErrorCode::SFTP(_) => "SFTP server",
        ErrorCode::Session(_) => "SSH",
    };
    io::Error::new(kind, format!("{what}: {}", e.message()))
}

/// Whether the server says there is no such file or folder.
pub(super) fn is_not_found(f: &Fail) -> bool {
    match f {
        Fail::Ssh(e) => matches!(e.code(), ErrorCode::SFTP(FX_NO_SUCH_FILE | FX_NO_SUCH_PATH)),
        Fail::Io(e) => e.kind() == ErrorKind::NotFound,
    }
}

/// A failed write, told apart as a full disk: SFTP version 3 (OpenSSH) reports ENOSPC as a bare
/// "failure", so the server's free space (`statvfs@openssh.com`) decides.
pub(super) fn full_disk(f: &mut ssh2::File, e: io::Error, needed: u64) -> Fail {
    let e = Fail::from(e);
    if let Fail::Io(io) = &e
        && io.kind() == ErrorKind::Other
        && let Ok(vfs) = f.statvfs()
        && vfs.f_bavail.saturating_mul(vfs.f_frsize) < needed
    {
        return Fail::Io(io::Error::from_raw_os_error(libc::ENOSPC));
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds() {
        let e = |c| ssh_io(&ssh2::Error::from_errno(c)).kind();
        assert_eq!(e(ErrorCode::SFTP(FX_NO_SUCH_FILE)), ErrorKind::NotFound);
        assert_eq!(
            e(ErrorCode::SFTP(FX_PERMISSION_DENIED)),
            ErrorKind::PermissionDenied
        );
        assert_eq!(
            ssh_io(&ssh2::Error::from_errno(ErrorCode::SFTP(
                FX_NO_SPACE_ON_FILESYSTEM
            )))
            .raw_os_error(),
            Some(libc::ENOSPC)
        );
        assert_eq!(e(ErrorCode::Session(-9)), ErrorKind::TimedOut);
        // The same codes, as a file handle's Write reports them.
        let via_write = |c| {
            let io: io::Error = ssh2::Error::from_errno(ErrorCode::SFTP(c)).into();
            Fail::from(io)
        };
        let full = via_write(FX_NO_SPACE_ON_FILESYSTEM);
        assert!(!full.fatal());
        assert_eq!(full.into_io().raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(
            via_write(FX_PERMISSION_DENIED).into_io().kind(),
            ErrorKind::PermissionDenied
        );
        let lost: io::Error = ssh2::Error::from_errno(ErrorCode::Session(-43)).into();
        assert!(Fail::from(lost).fatal());
    }
}
