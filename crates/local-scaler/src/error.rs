//! Configuration errors, and the exit status each error of a subcommand maps to.

use std::process::ExitCode;

use crate::manifest::ManifestError;

/// Exit status when the configuration is unusable (bad flags, manifest, queue URL, binary).
pub const EXIT_CONFIG: u8 = 2;

/// A configuration problem: the program exits with [`EXIT_CONFIG`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The exit status for an error: [`EXIT_CONFIG`] for configuration errors, 1 otherwise.
#[must_use]
pub fn exit_code_for(error: &anyhow::Error) -> ExitCode {
    let config = error.chain().any(|e| e.is::<ConfigError>() || e.is::<ManifestError>());
    ExitCode::from(if config { EXIT_CONFIG } else { 1 })
}
