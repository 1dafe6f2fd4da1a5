//! One encoder process: starting it in its own process group, signalling it, waiting for it, and
//! how it ended.
//!
//! A Job ([`crate::jobs`]) runs one `Attempt` at a time. Each attempt's process is waited for
//! by a task of its own, which also delivers the signals the Job asks for ([`KillSignal`]) and
//! reports the end ([`Exited`], with an [`ExitInfo`]) on the channel the Job's owner reads.
//! Signalling from that task, before `wait` has reaped the process, means its pid cannot have
//! been reused yet.
//!
//! SIGTERM goes to the encoder process only (Kubernetes signals the container's main process);
//! SIGKILL goes to its whole process group (Kubernetes kills the container). Each encoder leads
//! its own process group, so a Ctrl-C on the terminal reaches local-scaler alone, which then
//! stops the Jobs itself.

use std::fmt;
use std::os::unix::process::ExitStatusExt as _;
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde::Serialize;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info};

/// The signals local-scaler sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum KillSignal {
    /// SIGTERM to the process: stop gracefully.
    #[serde(rename = "SIGTERM")]
    Term,
    /// SIGKILL to the process group.
    #[serde(rename = "SIGKILL")]
    Kill,
}

impl fmt::Display for KillSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Term => "SIGTERM",
            Self::Kill => "SIGKILL",
        })
    }
}

/// How one process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitInfo {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
    /// It could not be started.
    SpawnFailed(String),
    /// Waiting for it failed.
    WaitFailed(String),
}

impl ExitInfo {
    fn from_status(status: std::process::ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => Self::Code(code),
            (None, Some(signal)) => Self::Signal(signal),
            (None, None) => Self::WaitFailed(format!("{status}")),
        }
    }

    /// Exit code 0.
    #[must_use]
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Code(0))
    }

    /// Stopped by SIGTERM: the encoder's exit code 143 ("released the message and reported the
    /// kill"), or death by the signal itself.
    #[must_use]
    pub fn is_sigterm_stop(&self) -> bool {
        matches!(self, Self::Code(143)) || matches!(self, Self::Signal(s) if *s == Signal::SIGTERM as i32)
    }

    /// The exit code a container would report: the code, or 128 + the signal's number.
    #[must_use]
    pub fn container_exit_code(&self) -> Option<i32> {
        match self {
            Self::Code(code) => Some(*code),
            Self::Signal(signal) => Some(128 + signal),
            Self::SpawnFailed(_) | Self::WaitFailed(_) => None,
        }
    }
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(code) => write!(f, "exit code {code}"),
            Self::Signal(signal) => match Signal::try_from(*signal) {
                Ok(name) => write!(f, "signal {name}"),
                Err(_) => write!(f, "signal {signal}"),
            },
            Self::SpawnFailed(error) => write!(f, "could not start: {error}"),
            Self::WaitFailed(error) => write!(f, "lost: {error}"),
        }
    }
}

/// A process ended; sent by the task that waits for it.
#[derive(Debug)]
pub struct Exited {
    /// The number of its Job.
    pub(crate) job: u64,
    /// Which of the Job's attempts it was ([`Attempt::number`]).
    pub(crate) attempt: u32,
    /// How it ended.
    pub(crate) exit: ExitInfo,
}

/// One process of a Job, from its start until its exit is handled.
#[derive(Debug)]
pub(crate) struct Attempt {
    /// Counts the Job's processes from 1.
    pub(crate) number: u32,
    /// `None` when it could not be started.
    pub(crate) pid: Option<u32>,
    pub(crate) started: Instant,
    /// To the task that waits for the process, which delivers them.
    signals: mpsc::UnboundedSender<KillSignal>,
    /// When SIGKILL is due (after a SIGTERM and the grace period).
    pub(crate) kill_at: Option<Instant>,
    pub(crate) kill_sent: bool,
    pub(crate) hit_by_chaos: bool,
}

impl Attempt {
    /// Spawns `command` as attempt `number` of Job `job` (named `job_id` in the log), in a process
    /// group of its own, with a task that waits for it and reports its end on `exits`. A process
    /// that cannot be started is reported there too, like any exit, so that failures are handled
    /// in one place.
    pub(crate) fn start(
        mut command: Command,
        job: u64,
        job_id: &str,
        number: u32,
        exits: &mpsc::UnboundedSender<Exited>,
        now: Instant,
    ) -> Self {
        let (signals, receiver) = mpsc::unbounded_channel();
        // SIGKILL goes to the group the process leads (see `deliver`).
        command.process_group(0);
        let pid = match command.spawn() {
            Ok(child) => {
                let pid = child.id();
                tokio::spawn(wait_for(child, receiver, exits.clone(), job, number));
                info!(job_id = %job_id, attempt = number, pid, "Job process started");
                pid
            }
            Err(error) => {
                let _ = exits.send(Exited {
                    job,
                    attempt: number,
                    exit: ExitInfo::SpawnFailed(error.to_string()),
                });
                None
            }
        };
        Self {
            number,
            pid,
            started: now,
            signals,
            kill_at: None,
            kill_sent: false,
            hit_by_chaos: false,
        }
    }

    /// Asks the waiting task to deliver `signal`.
    pub(crate) fn send(&self, signal: KillSignal) {
        // The waiting task is gone only when the process already ended.
        let _ = self.signals.send(signal);
    }

    /// SIGTERM now, SIGKILL once `grace` has passed (or earlier, when already due).
    pub(crate) fn term_then_kill(&mut self, now: Instant, grace: Duration) {
        self.send(KillSignal::Term);
        let due = now + grace;
        self.kill_at = Some(self.kill_at.map_or(due, |at| at.min(due)));
    }
}

/// Waits for one process, delivering the signals asked for while it lives. Signalling from here,
/// before `wait` has reaped the process, means its pid cannot have been reused yet.
async fn wait_for(
    mut child: Child,
    mut signals: mpsc::UnboundedReceiver<KillSignal>,
    exits: mpsc::UnboundedSender<Exited>,
    job: u64,
    attempt: u32,
) {
    let exit = loop {
        tokio::select! {
            status = child.wait() => break match status {
                Ok(status) => ExitInfo::from_status(status),
                Err(error) => ExitInfo::WaitFailed(error.to_string()),
            },
            Some(signal) = signals.recv() => {
                if let Some(pid) = child.id() {
                    deliver(pid, signal);
                }
            }
        }
    };
    let _ = exits.send(Exited { job, attempt, exit });
}

fn deliver(pid: u32, signal: KillSignal) {
    let Ok(raw) = i32::try_from(pid) else { return };
    let pid = Pid::from_raw(raw);
    let result = match signal {
        KillSignal::Term => kill(pid, Signal::SIGTERM),
        // The process leads its own group (process_group(0)), so its pid is the group id.
        KillSignal::Kill => killpg(pid, Signal::SIGKILL).or_else(|_| kill(pid, Signal::SIGKILL)),
    };
    if let Err(error) = result {
        debug!(pid = raw, %signal, %error, "signal not delivered (the process is ending)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_counts_as_exit_code_128_plus_its_number() {
        assert_eq!(ExitInfo::Signal(9).container_exit_code(), Some(137));
        assert_eq!(ExitInfo::Code(2).container_exit_code(), Some(2));
        assert_eq!(ExitInfo::SpawnFailed("x".into()).container_exit_code(), None);
    }
}
