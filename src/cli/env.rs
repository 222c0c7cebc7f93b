//! The environment variables that configure the backends (README, "Where repositories live"):
//! the one place they are read. Only the variables of the location's scheme are looked at, so a
//! stray S3 setting cannot break a local repository.

use std::path::PathBuf;

use hydrabackup::backend::s3::MAX_LIST_PAGE;
use hydrabackup::backend::{BackendOptions, RestOptions, S3Options, Scheme, Secret, SftpOptions};
use hydrabackup::{Error, Result};

/// The backend options for `location`, from the environment.
pub(crate) fn backend_options(location: &str) -> Result<BackendOptions> {
    let mut o = BackendOptions::default();
    match Scheme::of(location) {
        Scheme::Local => {}
        Scheme::Rest => o.rest = rest()?,
        Scheme::S3 => o.s3 = s3()?,
        Scheme::Sftp => o.sftp = sftp()?,
    }
    Ok(o)
}

fn nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `HYDRABACKUP_REST_USER` / `HYDRABACKUP_REST_PASSWORD` (when the URL has no credentials) and
/// `HYDRABACKUP_REST_CACERT`.
fn rest() -> Result<RestOptions> {
    Ok(RestOptions {
        credentials: std::env::var("HYDRABACKUP_REST_USER").ok().map(|u| {
            let p = std::env::var("HYDRABACKUP_REST_PASSWORD").unwrap_or_default();
            (u, Secret::new(p))
        }),
        ca_cert: std::env::var_os("HYDRABACKUP_REST_CACERT").map(PathBuf::from),
    })
}

/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, the region from
/// `AWS_DEFAULT_REGION` or `AWS_REGION` (default `us-east-1`), and `HYDRABACKUP_S3_LIST_PAGE`
/// (tests force small listing pages).
fn s3() -> Result<S3Options> {
    const LIST_PAGE: &str = "HYDRABACKUP_S3_LIST_PAGE";
    let mut o = S3Options {
        access_key_id: nonempty("AWS_ACCESS_KEY_ID"),
        secret_access_key: nonempty("AWS_SECRET_ACCESS_KEY").map(Secret::new),
        session_token: nonempty("AWS_SESSION_TOKEN").map(Secret::new),
        ..S3Options::default()
    };
    if let Some(r) = nonempty("AWS_DEFAULT_REGION").or_else(|| nonempty("AWS_REGION")) {
        o.region = r;
    }
    if let Some(v) = nonempty(LIST_PAGE) {
        o.list_page = v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIST_PAGE).contains(n))
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "{LIST_PAGE}={v:?}: expected a number from 1 to {MAX_LIST_PAGE}"
                ))
            })?;
    }
    Ok(o)
}

/// `HYDRABACKUP_SFTP_PORT`, `$USER` (or `$LOGNAME`), `HYDRABACKUP_SFTP_KNOWN_HOSTS` (default
/// `~/.ssh/known_hosts`), `HYDRABACKUP_SFTP_KEY` (default `~/.ssh/id_ed25519` and
/// `~/.ssh/id_rsa`, those that exist), `HYDRABACKUP_SFTP_KEY_PASSPHRASE` and `SSH_AUTH_SOCK`.
fn sftp() -> Result<SftpOptions> {
    let port =
        match nonempty("HYDRABACKUP_SFTP_PORT") {
            Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| {
                Error::InvalidInput(format!("invalid HYDRABACKUP_SFTP_PORT {p:?}"))
            })?),
            None => None,
        };
    let ssh_dir = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".ssh"));
    let known_hosts = match nonempty("HYDRABACKUP_SFTP_KNOWN_HOSTS") {
        Some(p) => PathBuf::from(p),
        None => ssh_dir
            .as_ref()
            .map(|d| d.join("known_hosts"))
            .ok_or_else(|| {
                Error::InvalidInput(
                    "no known_hosts file: $HOME is not set; set HYDRABACKUP_SFTP_KNOWN_HOSTS"
                        .into(),
                )
            })?,
    };
    let (keys, keys_first) = match nonempty("HYDRABACKUP_SFTP_KEY") {
        Some(k) => (vec![PathBuf::from(k)], true),
        None => (
            ssh_dir
                .iter()
                .flat_map(|d| [d.join("id_ed25519"), d.join("id_rsa")])
                .filter(|p| p.is_file())
                .collect(),
            false,
        ),
    };
    Ok(SftpOptions {
        port,
        user: nonempty("USER").or_else(|| nonempty("LOGNAME")),
        known_hosts,
        keys,
        keys_first,
        passphrase: nonempty("HYDRABACKUP_SFTP_KEY_PASSPHRASE").map(Secret::new),
        use_agent: std::env::var_os("SSH_AUTH_SOCK").is_some_and(|s| !s.is_empty()),
    })
}

/// The root of the local caches: `--cache-dir` / `HYDRABACKUP_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/hydrabackup`, else `$HOME/.cache/hydrabackup`; `None` with `--no-cache` or
/// when none of these is set.
pub(crate) fn cache_root(no_cache: bool, explicit: Option<&std::path::Path>) -> Option<PathBuf> {
    if no_cache {
        return None;
    }
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("hydrabackup"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".cache").join("hydrabackup"))
}
