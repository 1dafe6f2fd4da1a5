//! The encoder: the program each KEDA ScaledJob Job runs once.
//!
//! A run takes at most one message from the queue and ends:
//!
//! | outcome | what happened | exit code |
//! |---|---|---|
//! | processed | every rendition stored in S3 and verified, message deleted | 0 |
//! | duplicate | the renditions already existed for the same source and settings; message deleted | 0 |
//! | empty | no message within `RECEIVE_WAIT_SECONDS` | 0 |
//! | rejected | the request can never succeed; message moved to the dead-letter queue | 0 |
//! | failed | something that may pass on a retry failed; message released at once | 1 |
//! | configuration error | a setting is missing or invalid; nothing was received | 2 |
//! | killed | SIGTERM or SIGINT; work stopped, message released at once, `killed` reported | 143 |
//!
//! `encoder transcode --input FILE --quality Q --output-dir DIR` runs the same probe-and-transcode
//! path on a local file, without AWS.

mod config;
mod local;
mod queue;
mod report;
pub mod signals;
mod storage;
mod verify;
mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use config::{WorkerArgs, WorkerConfig};
pub use worker::Outcome;

/// Command line of `encoder`.
#[derive(Debug, Parser)]
#[command(
    name = "encoder",
    version,
    about = "Takes one encode request from SQS, transcodes the video, stores the renditions in S3, and exits.",
    long_about = "Takes one encode request from SQS, transcodes the video with FFmpeg's libraries, stores the \
renditions in S3, reports to the result analyzer, deletes the message and exits. Without a subcommand it runs \
as the ScaledJob worker. Exit codes: 0 processed, duplicate, queue empty or invalid message dead-lettered; \
1 failed (message released for a retry); 2 configuration error; 143 stopped by SIGTERM/SIGINT (message released)."
)]
pub struct Cli {
    /// A subcommand; without one, run as the queue worker.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Worker settings.
    #[command(flatten)]
    pub worker: WorkerArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Transcode a local file with the worker's exact probe-and-transcode path, without AWS.
    Transcode(local::TranscodeArgs),
    /// Print what a local media file holds, as JSON.
    Probe(local::ProbeArgs),
}

/// Runs the command line and maps its outcome to the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Some(Command::Transcode(args)) => local::transcode(&args),
        Some(Command::Probe(args)) => {
            signals::resume();
            local::probe(&args)
        }
        None => run_worker(cli.worker),
    }
}

fn run_worker(args: WorkerArgs) -> ExitCode {
    let config = match WorkerConfig::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "configuration error");
            return ExitCode::from(Outcome::ConfigError.exit_code());
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::from(Outcome::Failed.exit_code());
        }
    };
    let outcome = runtime.block_on(worker::run(config));
    // A blocking transcode thread that is still winding down must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    ExitCode::from(outcome.exit_code())
}
