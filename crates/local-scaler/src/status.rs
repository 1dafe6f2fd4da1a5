//! What local-scaler itself prints: whole lines on stdout ([`print_line`]), and the live one-line
//! status on a terminal.
//!
//! The status line is shown only when stderr is a terminal: it is redrawn in place (`\r`, erase line) and
//! erased before any log record is written (see [`crate::telemetry`]). Encoder processes that
//! write to the same terminal (without `--job-logs`) may still interleave with it.

use std::io::{self, IsTerminal as _, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether a status line is on screen now.
static SHOWN: AtomicBool = AtomicBool::new(false);

const ERASE_LINE: &[u8] = b"\r\x1b[2K";

/// Writes one line to stdout. A reader that went away (`| head -0`) is not an error.
///
/// # Errors
///
/// Any other write error.
pub fn print_line(line: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    match writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Erases the status line if one is shown.
pub fn erase(out: &mut impl Write) {
    if SHOWN.swap(false, Ordering::SeqCst) {
        let _ = out.write_all(ERASE_LINE);
    }
}

/// The status line writer.
#[derive(Debug)]
pub struct StatusLine {
    enabled: bool,
}

impl StatusLine {
    /// Enabled when stderr is a terminal.
    #[must_use]
    pub fn for_stderr() -> Self {
        Self {
            enabled: io::stderr().is_terminal(),
        }
    }

    /// Whether anything is drawn at all.
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Draws `text` in place of the previous status.
    pub fn show(&self, text: &str) {
        if !self.enabled {
            return;
        }
        let mut stderr = io::stderr().lock();
        let _ = stderr.write_all(ERASE_LINE);
        let _ = stderr.write_all(text.as_bytes());
        let _ = stderr.flush();
        SHOWN.store(true, Ordering::SeqCst);
    }

    /// Erases the status (before the final summary).
    pub fn clear(&self) {
        if self.enabled {
            let mut stderr = io::stderr().lock();
            erase(&mut stderr);
            let _ = stderr.flush();
        }
    }
}
