//! One module per command noun.

pub mod contacts;
pub mod events;
pub mod fetch;
pub mod handoff;
pub mod host;
pub mod limits;
pub mod place;
pub mod rings;
pub mod share;
pub mod status;
pub mod ticket;
pub mod transfers;

use std::path::{Path, PathBuf};

use crate::error::CliError;

/// Makes a user path absolute against the client's working directory (the
/// daemon never uses its own).
pub fn absolute(p: &Path) -> Result<PathBuf, CliError> {
    std::path::absolute(p).map_err(|e| CliError::bad_input(format!("{}: {e}", p.display())))
}
