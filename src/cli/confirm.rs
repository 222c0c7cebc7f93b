//! The safety rule for destructive commands (`forget`, `prune`, `key remove`): without `--yes`
//! they first show what they would do, then ask on a terminal; without a terminal they stop
//! there and exit 17 ([`Error::NotConfirmed`]).

use std::io::{IsTerminal, Write};

use hydrabackup::{Error, Result};

/// Asks `question` (y/N) on the terminal after what would be done was shown; anything but a
/// yes, or no terminal to ask on, is [`Error::NotConfirmed`].
pub(crate) fn ask(question: &str) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::NotConfirmed);
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Error::io("stdin", e))?;
    match line.trim() {
        "y" | "Y" | "yes" | "YES" | "Yes" => Ok(()),
        _ => Err(Error::NotConfirmed),
    }
}
