//! Stopping on SIGINT (Ctrl-C) or SIGTERM (Kubernetes deleting the Job's pod).
//!
//! The first signal asks the run to stop: a multipart upload under way is aborted, the batch being
//! sent is finished, nothing further is uploaded or sent, and the summary says what was and was not
//! done; the exit status is then 130 (SIGINT) or 143 (SIGTERM). A second signal exits at once.

use std::sync::{Arc, OnceLock};

pub use encoding_common::shutdown::Signal;
use encoding_common::shutdown::Signals;
use tokio_util::sync::CancellationToken;

/// The run was stopped by a signal (carried as the source of the run's error).
#[derive(Debug, thiserror::Error)]
#[error("stopped by {0}")]
pub struct Interrupted(pub Signal);

/// The stop request of one run.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    token: CancellationToken,
    signal: Arc<OnceLock<Signal>>,
}

impl Stop {
    /// A stop request that only [`Stop::request`] fires (for tests and library use).
    pub fn manual() -> Self {
        Self::default()
    }

    /// A stop request fired by SIGINT or SIGTERM; a second signal exits the process at once.
    ///
    /// # Errors
    ///
    /// When the signal handlers cannot be installed.
    pub fn on_signals() -> std::io::Result<Self> {
        let stop = Self::default();
        let mut signals = Signals::install()?;
        let handle = stop.clone();
        tokio::spawn(async move {
            let mut first = true;
            loop {
                let received = signals.recv().await;
                if !first {
                    tracing::warn!(signal = %received, "second signal: exiting now");
                    std::process::exit(received.exit_code().into());
                }
                first = false;
                tracing::warn!(signal = %received, "stopping: finishing the batch under way, aborting uploads (again to exit now)");
                handle.request(received);
            }
        });
        Ok(stop)
    }

    /// Asks the run to stop, as `signal` would.
    pub fn request(&self, signal: Signal) {
        let _ = self.signal.set(signal);
        self.token.cancel();
    }

    /// Fires when the run should stop.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// The signal that stopped the run, if any.
    pub fn signal(&self) -> Option<Signal> {
        self.signal.get().copied()
    }
}
