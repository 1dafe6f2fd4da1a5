//! Logging set-up: the shared format of `encoding_common::telemetry`, through a writer that
//! erases the live status line (see [`crate::status`]) before each record so the two never mix on
//! a terminal.
//!
//! `RUST_LOG` filters (default `info`); `LOG_FORMAT=json` writes JSON lines, anything else text.
//! Logs go to stderr (stdout carries `plan`'s JSON and `run`'s final summary).

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

use crate::status;

/// Installs the shared subscriber (`encoding_common::telemetry`) with a writer that keeps the
/// status line clear; a second call does nothing.
pub fn init() {
    encoding_common::telemetry::init_with_writer(StatusAwareStderr);
}

/// Makes writers to stderr that first erase the status line, when one is shown.
#[derive(Debug, Clone, Copy)]
struct StatusAwareStderr;

impl<'a> MakeWriter<'a> for StatusAwareStderr {
    type Writer = ClearingStderr;

    fn make_writer(&'a self) -> Self::Writer {
        ClearingStderr
    }
}

#[derive(Debug)]
struct ClearingStderr;

impl Write for ClearingStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut stderr = io::stderr().lock();
        status::erase(&mut stderr);
        // Logging never fails the program: a record that cannot be written is lost.
        let _ = stderr.write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}
