//! Where passwords come from: command, file, environment, or a hidden prompt on a terminal.
//! Passwords (and the buffers they are read from) are wiped from memory when dropped.

use std::io::IsTerminal;
use std::path::Path;

use hydrabackup::{Error, Result};
use zeroize::Zeroizing;

use super::args::{FromRepo, Global};

/// A password, wiped from memory when dropped.
pub type Password = Zeroizing<Vec<u8>>;

fn first_line(bytes: &[u8]) -> Password {
    let s = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    Zeroizing::new(s.strip_suffix(b"\r").unwrap_or(s).to_vec())
}

fn from_file(p: &Path) -> Result<Password> {
    let b = Zeroizing::new(std::fs::read(p).map_err(|e| {
        Error::InvalidInput(format!("cannot read password file {}: {e}", p.display()))
    })?);
    Ok(first_line(&b))
}

/// An empty password would let anyone open the repository; refused for new keys.
fn non_empty(p: Password) -> Result<Password> {
    if p.is_empty() {
        return Err(Error::InvalidInput(
            "an empty password is not allowed".into(),
        ));
    }
    Ok(p)
}

/// The password to open (or, with `confirm`, create) the repository.
pub fn password(g: &Global, confirm: bool) -> Result<Password> {
    let p = given_password(g, confirm)?;
    if confirm { non_empty(p) } else { Ok(p) }
}

fn given_password(g: &Global, confirm: bool) -> Result<Password> {
    let given = from_command_file_or_env(
        g.password_command.as_deref(),
        g.password_file.as_deref(),
        "HYDRABACKUP_PASSWORD",
    )?;
    match given {
        Some(p) => Ok(p),
        None => prompt("enter repository password: ", confirm),
    }
}

/// The password of the other repository of `copy` / `init --copy-params`.
pub fn from_password(f: &FromRepo) -> Result<Password> {
    let given = from_command_file_or_env(
        f.from_password_command.as_deref(),
        f.from_password_file.as_deref(),
        "HYDRABACKUP_FROM_PASSWORD",
    )?;
    match given {
        Some(p) => Ok(p),
        None => prompt("enter password of the source repository: ", false),
    }
}

fn from_command_file_or_env(
    command: Option<&str>,
    file: Option<&Path>,
    env: &str,
) -> Result<Option<Password>> {
    if let Some(cmd) = command {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| Error::InvalidInput(format!("password command failed to start: {e}")))?;
        if !out.status.success() {
            return Err(Error::InvalidInput(format!(
                "password command exited with {}",
                out.status
            )));
        }
        return Ok(Some(first_line(&Zeroizing::new(out.stdout))));
    }
    if let Some(p) = file {
        return from_file(p).map(Some);
    }
    Ok(std::env::var(env)
        .ok()
        .map(|p| Zeroizing::new(p.into_bytes())))
}

/// A new password for `key add` / `key passwd`.
pub fn new_password(file: Option<&Path>) -> Result<Password> {
    if let Some(p) = file {
        return non_empty(from_file(p)?);
    }
    if let Ok(p) = std::env::var("HYDRABACKUP_NEW_PASSWORD") {
        return non_empty(Zeroizing::new(p.into_bytes()));
    }
    prompt("enter new password: ", true).map_err(|e| match e {
        Error::NoPassword => Error::InvalidInput(
            "no new password given: use --new-password-file or HYDRABACKUP_NEW_PASSWORD (or run on a terminal)".into(),
        ),
        e => e,
    })
}

fn prompt(msg: &str, confirm: bool) -> Result<Password> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::NoPassword);
    }
    let p = Zeroizing::new(rpassword::prompt_password(msg).map_err(|_| Error::NoPassword)?);
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password("enter it again: ").map_err(|_| Error::NoPassword)?,
        );
        if again != p {
            return Err(Error::InvalidInput("the passwords do not match".into()));
        }
    }
    if p.is_empty() {
        return Err(Error::InvalidInput(
            "an empty password is not allowed".into(),
        ));
    }
    Ok(Zeroizing::new(p.as_bytes().to_vec()))
}
