//! The command line: `local-scaler plan` and `local-scaler run`, with an environment fallback for
//! every flag. [`PlanArgs::to_input`] and [`RunArgs::to_config`] turn the flags into what
//! [`crate::plan::decide`] and [`crate::runner::run`] take: the runner gets its settings as a
//! plain [`RunConfig`] and knows nothing of the command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::chaos::ChaosSignal;
use crate::error::ConfigError;
use crate::plan::{PlanInput, QueueMetric, ReplicaBounds, Strategy, StrategyName};
use crate::runner::RunConfig;

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

impl RunArgs {
    /// What the runner takes.
    #[must_use]
    pub fn to_config(&self) -> RunConfig {
        RunConfig {
            scaledjob: self.scaledjob.clone(),
            queue_url: self.queue_url.clone(),
            encoder_bin: self.encoder_bin.clone(),
            until_empty: self.until_empty,
            pending_for: Duration::from_secs_f64(self.pending_seconds),
            job_logs: self.job_logs.clone(),
            chaos_kill_share: self.chaos_kill_share,
            chaos_seed: self.chaos_seed,
            chaos_signal: self.chaos_signal,
            chaos_window_seconds: self.chaos_window,
        }
    }
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

#[cfg(test)]
mod tests {
    use std::process::ExitCode;

    use clap::CommandFactory as _;

    use super::*;
    use crate::error::{EXIT_CONFIG, exit_code_for};

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
