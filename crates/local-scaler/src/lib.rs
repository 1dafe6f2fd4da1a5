//! local-scaler: KEDA's ScaledJob semantics on one machine.
//!
//! Two subcommands share one decision function ([`plan::decide`]):
//!
//! - `local-scaler plan --queue-length 10 --max-replicas 3 ...` prints, as one JSON object, how
//!   many Jobs KEDA 2.20 would create for that queue state.
//! - `local-scaler run --scaledjob k8s/base/encoder-scaledjob.yaml [--until-empty]` reads the
//!   ScaledJob manifest and, every `pollingInterval`, reads the SQS queue's counts, decides like
//!   KEDA and starts one `encoder` process per Job, enforcing the Job template's deadline,
//!   retries and grace period ([`runner`]).
//!
//! # Layout
//!
//! From the ground up, each module importing only modules named before it: [`plan`] is the pure
//! arithmetic; [`status`] and [`telemetry`] what is printed; [`process`] one encoder process
//! (start, signals, exit); [`manifest`] the ScaledJob, read from YAML into a raw serde mirror, then
//! checked and typed; [`error`] configuration errors and exit statuses; [`chaos`] the seeded kills;
//! [`env`](mod@env) the encoder's environment; [`queue`] the SQS counts; [`jobs`] the Jobs (retries,
//! deadlines, failure policy); [`history`] the finished Jobs kept; [`runner`] the polling loop,
//! which takes a plain [`runner::RunConfig`]; [`cli`] the command line. This file only dispatches a
//! subcommand. See the crate's README for how this maps to KEDA.

use std::process::ExitCode;

pub mod chaos;
pub mod cli;
pub mod env;
pub mod error;
pub mod history;
pub mod jobs;
pub mod manifest;
pub mod plan;
pub mod process;
pub mod queue;
pub mod runner;
pub mod status;
pub mod telemetry;

pub use cli::{Cli, Command, PlanArgs, RunArgs};
pub use error::{ConfigError, EXIT_CONFIG, exit_code_for};

/// Runs a subcommand.
///
/// # Errors
///
/// Configuration errors ([`ConfigError`], [`manifest::ManifestError`]) and failures to reach the
/// queue; [`exit_code_for`] maps them to an exit status.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Plan(args) => {
            let plan = plan::decide(&args.to_input()?);
            status::print_line(&serde_json::to_string(&plan)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => runner::run(args.to_config()).await,
    }
}
