//! The encoder: the program each KEDA ScaledJob Job runs once.
//!
//! A run takes at most one message from the queue and ends:
//!
//! | outcome | what happened | exit code |
//! |---|---|---|
//! | processed | every rendition stored in S3 and verified, message deleted | 0 |
//! | duplicate | the renditions already existed for the same source and settings; message deleted | 0 |
//! | split | a long source's plan stored and one chunk message per chunk sent; message deleted; then the audio encoded and stored for the stitch | 0 |
//! | chunk | one chunk of a split request stored (the last one also sends the stitch message); message deleted | 0 |
//! | empty | no message within `RECEIVE_WAIT_SECONDS` | 0 |
//! | rejected | the request can never succeed; message moved to the dead-letter queue | 0 |
//! | failed | something that may pass on a retry failed; message released at once | 1 |
//! | configuration error | a setting is missing or invalid; nothing was received | 2 |
//! | killed | SIGTERM or SIGINT; work stopped, message released at once, `killed` reported | 143 |
//!
//! `encoder transcode --input FILE --quality Q --output-dir DIR` runs the same probe-and-transcode
//! path on a local file, without AWS.
//!
//! # Layout
//!
//! - [`lifecycle`]: the message's lifecycle (receive, lease, report, and delete, release or
//!   dead-letter it) and the outcome, over three seams: the queue ([`queue::Queue`]), the work
//!   ([`work::Work`]) and the reports ([`report::Reports`]).
//! - `lease`: renewing the message's visibility while the work goes on.
//! - [`work`]: the work on one request (source lookup, duplicate check, download, transcode and
//!   verify, packaging for HLS/DASH when asked, upload with the manifests last), over two seams:
//!   S3 ([`storage::Store`]) and the transcode and packager ([`media::Media`]); its `split`
//!   module splits a long request (`SPLIT_SECONDS`) into chunk messages (and, once the request
//!   is deleted, stores the source's audio for the stitch), encodes one chunk per chunk message,
//!   and stitches them on the stitch message.
//! - `notify`: completion notices to the results queue (`RESULT_QUEUE_URL`), a fourth seam of the
//!   lifecycle ([`notify::Notify`]).
//! - `queue`, `storage`, `media`, `report`: the seams and their real implementations (SQS, S3,
//!   FFmpeg through the `transcode` crate, the analyzer over HTTP); `verify`: the checks every
//!   rendition passes before it is stored.
//! - `config`: the settings; `local`: `encoder transcode` and `encoder probe`.
//!
//! The lifecycle and the work are unit-tested with in-memory stand-ins for the seams (every stop
//! reason, the message's fate, the exit code and the reports); the real implementations are tested
//! end to end against moto and LocalStack with real media (`tests/pipeline`).

mod config;
#[cfg(test)]
mod fakes;
mod lease;
pub mod lifecycle;
mod local;
pub mod media;
pub mod notify;
pub mod progress;
pub mod queue;
pub mod report;
pub mod storage;
mod verify;
pub mod work;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use encoding_common::shutdown::Signals;
use tokio_util::sync::CancellationToken;

pub use config::{WorkerArgs, WorkerConfig};
pub use lifecycle::Outcome;

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
            encoding_common::shutdown::resume();
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
    let outcome = runtime.block_on(serve_one(config));
    // A blocking transcode thread that is still winding down must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    ExitCode::from(outcome.exit_code())
}

/// One worker run on the real parts: SQS, S3, FFmpeg, the analyzer.
async fn serve_one(config: WorkerConfig) -> Outcome {
    // Signals first: from here on a SIGTERM is handled, never the default action.
    let shutdown = CancellationToken::new();
    match Signals::install() {
        Ok(mut signals) => {
            let token = shutdown.clone();
            tokio::spawn(async move {
                let signal = signals.recv().await;
                tracing::warn!(%signal, "stopping");
                token.cancel();
            });
        }
        Err(e) => tracing::error!(error = %e, "cannot listen for SIGTERM/SIGINT"),
    }
    let run_id = uuid::Uuid::new_v4().to_string();
    let span = tracing::info_span!("run", run_id = %run_id, message_id = tracing::field::Empty, video_id = tracing::field::Empty);
    let sdk = encoding_common::aws::load_config().await;
    let queue = queue::SqsQueue::new(encoding_common::aws::sqs_client(&sdk), config.queue_url.clone());
    let job = work::Job {
        store: storage::S3Store::new(encoding_common::aws::s3_client(&sdk)),
        media: media::FfmpegMedia,
        default_output: config.default_output.clone(),
        formats: config.formats.clone(),
        work_dir: config.work_dir.clone(),
        split_seconds: config.split_seconds,
    };
    let reporter = report::Reporter::new(config.analyzer_url.as_deref(), config.analyzer_token.as_deref());
    let notices = notify::Notifier::new(encoding_common::aws::sqs_client(&sdk), config.result_queue_url.clone());
    let settings = lifecycle::Settings {
        receive_wait_seconds: config.receive_wait_seconds,
        visibility_timeout: config.visibility_timeout,
        host: config.host.clone(),
    };
    tracing::Instrument::instrument(
        lifecycle::Run::new(
            lifecycle::Parts {
                queue,
                work: job,
                reports: reporter,
                notices,
            },
            settings,
            shutdown,
            run_id,
        )
        .go(),
        span,
    )
    .await
}
