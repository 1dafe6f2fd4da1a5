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
//! [`plan`] is the pure arithmetic; [`manifest`] the ScaledJob YAML; [`env`] the encoder's
//! environment; [`queue`] the SQS counts; [`jobs`] the Jobs (retries, deadlines, failure
//! policy); [`process`] one encoder process (start, signals, exit); [`history`] the finished Jobs
//! kept; [`chaos`] the seeded kills; [`runner`] the polling loop; [`status`] and [`telemetry`]
//! what is printed. See the crate's README for how this maps to KEDA.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

pub mod chaos;
pub mod env;
pub mod history;
pub mod jobs;
pub mod manifest;
pub mod plan;
pub mod process;
pub mod queue;
pub mod runner;
pub mod status;
pub mod telemetry;

use chaos::ChaosSignal;
use plan::{PlanInput, QueueMetric, ReplicaBounds, Strategy, StrategyName};

/// Exit status when the configuration is unusable (bad flags, manifest, queue URL, binary).
pub const EXIT_CONFIG: u8 = 2;

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "local-scaler", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print, as one JSON object, how many Jobs KEDA 2.20 would create for a queue state.
    Plan(PlanArgs),
    /// Run a ScaledJob manifest on this machine: one encoder process per Job.
    Run(RunArgs),
}

/// `local-scaler plan`: the inputs of one scaling decision.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// The trigger's metric: messages counted on the queue (for aws-sqs-queue, visible plus in
    /// flight by default).
    #[arg(long, env = "LOCAL_SCALER_QUEUE_LENGTH", value_parser = clap::value_parser!(i64).range(0..))]
    pub queue_length: i64,

    /// Messages per Job: the trigger's `queueLength` (KEDA's aws-sqs-queue default is 5).
    #[arg(long, env = "LOCAL_SCALER_TARGET", default_value_t = 1, value_parser = clap::value_parser!(i64).range(0..))]
    pub target: i64,

    /// The trigger's `activationQueueLength`: no Jobs unless the metric is above it (and
    /// `--min-replicas` is 0).
    #[arg(long, env = "LOCAL_SCALER_ACTIVATION", default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..))]
    pub activation: i64,

    /// Unfinished Jobs (KEDA's runningJobCount), pending ones included.
    #[arg(long, env = "LOCAL_SCALER_RUNNING", default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..))]
    pub running: i64,

    /// Of the unfinished Jobs, those with no pod running yet (KEDA's pendingJobCount); at most
    /// `--running`.
    #[arg(long, env = "LOCAL_SCALER_PENDING", default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..))]
    pub pending: i64,

    /// The ScaledJob's `minReplicaCount`.
    #[arg(long, env = "LOCAL_SCALER_MIN_REPLICAS", default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..))]
    pub min_replicas: i64,

    /// The ScaledJob's `maxReplicaCount` [default: 100, KEDA's default, which is then not
    /// reduced by --min-replicas].
    #[arg(long, env = "LOCAL_SCALER_MAX_REPLICAS", value_parser = clap::value_parser!(i64).range(1..))]
    pub max_replicas: Option<i64>,

    /// The scaling strategy (`scalingStrategy.strategy`).
    #[arg(long, env = "LOCAL_SCALER_STRATEGY", value_enum, default_value_t = StrategyName::Default)]
    pub strategy: StrategyName,

    /// `customScalingQueueLengthDeduction`, for `--strategy custom` [default: 0].
    #[arg(long, env = "LOCAL_SCALER_CUSTOM_DEDUCTION", allow_negative_numbers = true)]
    pub custom_deduction: Option<i64>,

    /// `customScalingRunningJobPercentage` as a fraction (0.5 = half), for `--strategy custom`;
    /// without it KEDA uses `default` instead.
    #[arg(long, env = "LOCAL_SCALER_CUSTOM_PERCENTAGE", allow_negative_numbers = true)]
    pub custom_percentage: Option<f64>,
}

impl PlanArgs {
    /// The decision's input.
    ///
    /// # Errors
    ///
    /// When `--pending` exceeds `--running`: KEDA counts pending Jobs among the running ones.
    pub fn to_input(&self) -> Result<PlanInput, ConfigError> {
        if self.pending > self.running {
            return Err(ConfigError(format!(
                "--pending {} exceeds --running {}: KEDA counts pending Jobs among the running \
                 (unfinished) ones",
                self.pending, self.running
            )));
        }
        Ok(PlanInput {
            metric: Some(QueueMetric {
                queue_length: self.queue_length,
                target: self.target,
                activation: self.activation,
            }),
            running: self.running,
            pending: self.pending,
            bounds: ReplicaBounds {
                min: Some(self.min_replicas),
                max: self.max_replicas,
            },
            strategy: Strategy::select(self.strategy, self.custom_deduction, self.custom_percentage),
        })
    }
}

/// `local-scaler run`: the ScaledJob to run and the local settings.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The ScaledJob manifest (YAML; other documents in the file are skipped).
    #[arg(long, env = "LOCAL_SCALER_SCALEDJOB", value_name = "FILE")]
    pub scaledjob: PathBuf,

    /// The queue to watch; also given to every encoder as QUEUE_URL. Without it, the trigger's
    /// queueURL, then the variable its queueURLFromEnv names.
    #[arg(long, env = "QUEUE_URL")]
    pub queue_url: Option<String>,

    /// The encoder binary [default: `encoder` next to this executable].
    #[arg(long, env = "ENCODER_BIN", value_name = "PATH")]
    pub encoder_bin: Option<PathBuf>,

    /// Exit once the queue is empty (nothing visible, in flight or delayed) and no Job is
    /// unfinished: 0 when no Job failed unexpectedly, 1 otherwise.
    #[arg(long, env = "LOCAL_SCALER_UNTIL_EMPTY", value_parser = clap::builder::FalseyValueParser::new())]
    pub until_empty: bool,

    /// Chaos: the share of Jobs (0 to 1) killed at a random moment of their run.
    #[arg(long, env = "LOCAL_SCALER_CHAOS_KILL_SHARE", default_value_t = 0.0, value_parser = share)]
    pub chaos_kill_share: f64,

    /// Chaos: the random seed; the same seed replays the same kills [default: random, logged].
    #[arg(long, env = "LOCAL_SCALER_CHAOS_SEED")]
    pub chaos_seed: Option<u64>,

    /// Chaos: the signal sent (term: SIGTERM then SIGKILL after the grace period).
    #[arg(long, env = "LOCAL_SCALER_CHAOS_SIGNAL", value_enum, default_value_t = ChaosSignal::Term)]
    pub chaos_signal: ChaosSignal,

    /// Chaos: kills fall uniformly within this many seconds after a Job's creation.
    #[arg(long, env = "LOCAL_SCALER_CHAOS_WINDOW", default_value_t = 10.0, value_parser = positive_seconds)]
    pub chaos_window: f64,

    /// Seconds a freshly started encoder still counts as a pending Job (imitates pod start-up).
    #[arg(long, env = "LOCAL_SCALER_PENDING_SECONDS", default_value_t = 0.0, value_parser = non_negative_seconds)]
    pub pending_seconds: f64,

    /// Write each Job's output to DIR/<job>.log (removed with the Job from the history) instead
    /// of local-scaler's stdout and stderr.
    #[arg(long, env = "LOCAL_SCALER_JOB_LOGS", value_name = "DIR")]
    pub job_logs: Option<PathBuf>,
}

fn share(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err("must be between 0 and 1".to_owned())
    }
}

fn non_negative_seconds(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err("must be a number of seconds, 0 or more".to_owned())
    }
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    match non_negative_seconds(text)? {
        v if v > 0.0 => Ok(v),
        _ => Err("must be more than 0 seconds".to_owned()),
    }
}

/// A configuration problem: the program exits with [`EXIT_CONFIG`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

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
            print_line(&serde_json::to_string(&plan)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => runner::run(args).await,
    }
}

/// Writes one line to stdout. A reader that went away (`| head -0`) is not an error.
///
/// # Errors
///
/// Any other write error.
pub fn print_line(line: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// The exit status for an error: [`EXIT_CONFIG`] for configuration errors, 1 otherwise.
#[must_use]
pub fn exit_code_for(error: &anyhow::Error) -> ExitCode {
    let config = error
        .chain()
        .any(|e| e.is::<ConfigError>() || e.is::<manifest::ManifestError>());
    ExitCode::from(if config { EXIT_CONFIG } else { 1 })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn plan_flags_map_to_the_decision_input() {
        let cli = Cli::try_parse_from([
            "local-scaler",
            "plan",
            "--queue-length",
            "10",
            "--max-replicas",
            "3",
            "--strategy",
            "custom",
            "--custom-deduction",
            "1",
            "--custom-percentage",
            "0.5",
            "--running",
            "2",
            "--pending",
            "1",
        ])
        .unwrap();
        let Command::Plan(args) = cli.command else {
            panic!("plan expected")
        };
        let input = args.to_input().unwrap();
        assert_eq!(
            input.bounds,
            ReplicaBounds {
                min: Some(0),
                max: Some(3)
            }
        );
        assert_eq!(
            input.strategy,
            Strategy::Custom {
                deduction: 1,
                running_percentage: 0.5
            }
        );
        assert_eq!(input.metric.unwrap().target, 1, "--target defaults to 1");
    }

    #[test]
    fn more_pending_than_running_jobs_is_a_configuration_error() {
        let cli = Cli::try_parse_from(["local-scaler", "plan", "--queue-length", "1", "--pending", "2"]).unwrap();
        let Command::Plan(args) = cli.command else {
            panic!("plan expected")
        };
        let error = anyhow::Error::from(args.to_input().unwrap_err());
        assert_eq!(exit_code_for(&error), ExitCode::from(EXIT_CONFIG));
    }

    #[test]
    fn the_chaos_share_must_be_a_fraction() {
        let parse = |share: &str| {
            Cli::try_parse_from([
                "local-scaler",
                "run",
                "--scaledjob",
                "x.yaml",
                "--chaos-kill-share",
                share,
            ])
        };
        assert!(parse("0.25").is_ok());
        assert!(parse("1.5").is_err());
        assert!(parse("-0.1").is_err());
    }
}
