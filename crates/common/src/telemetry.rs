//! Logging set-up shared by the four programs.
//!
//! Logs go to stderr so that a program's stdout stays free for its output (the producer's `--json`
//! lines, `local-scaler plan`'s JSON). `LOG_FORMAT=json` switches to one JSON object per line, for
//! log collectors on Kubernetes; anything else gives human-readable text. `RUST_LOG` filters; without
//! it, `info` and above are shown.

use std::io::IsTerminal;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::{EnvFilter, fmt};

/// The format of log lines, from `LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Reads `LOG_FORMAT` (`json`, case-insensitive, selects JSON; anything else is text).
    pub fn from_env() -> Self {
        match std::env::var("LOG_FORMAT") {
            Ok(v) if v.eq_ignore_ascii_case("json") => Self::Json,
            _ => Self::Text,
        }
    }
}

/// Installs the global subscriber, writing to stderr. Call once, first thing in `main`.
///
/// A second call (as in tests) is harmless: the first subscriber stays.
pub fn init() {
    init_with_writer(std::io::stderr);
}

/// As [`init`], writing through `writer` (a program with a live status line erases it first).
///
/// A log line that cannot be written (stderr closed, as in `... 2>&1 | head`) is dropped silently:
/// logging never stops a program.
pub fn init_with_writer<W>(writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .log_internal_errors(false);
    let _ = match LogFormat::from_env() {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .try_init(),
    };
}
