//! `local-scaler run`: KEDA's ScaledJob polling loop around local processes.
//!
//! Like KEDA's `startScaleLoop` (`pkg/scaling/scale_handler.go`), the first check happens at
//! start-up and the next ones every `pollingInterval`, start to start. Each check reads the
//! queue's counts, decides with [`crate::plan::decide`] from the unfinished and pending Jobs,
//! starts that many encoder processes, then prunes the history (KEDA's `RequestJobScale` scales,
//! then cleans up). Between checks the loop reacts to process exits and to the Jobs' timers
//! (deadline, grace period, retry, chaos).
//!
//! # Exit status
//!
//! - `0`: with `--until-empty`, the queue was empty (nothing visible, in flight or delayed) while
//!   no Job was unfinished, and no Job failed unexpectedly (see
//!   [`crate::jobs::FinishedJob::is_expected`]: exit 0, exit 143 / SIGTERM, chaos kills are
//!   accepted; a deadline exceeded or another failure is not).
//! - `1`: the same, but some Job failed unexpectedly; or the queue could not be reached at start.
//! - `2`: configuration error (manifest, queue URL, encoder binary, flags).
//! - `130` / `143`: stopped by SIGINT / SIGTERM, after every encoder got SIGTERM and ended (or
//!   was killed after `terminationGracePeriodSeconds`). A second signal kills them at once.
//!
//! A one-line JSON summary of the counts is printed on stdout at the end in every case but a
//! configuration error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use encoding_common::shutdown::{Signal, Signals};
use serde::Serialize;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::{error, info, warn};

use crate::chaos::{Chaos, ChaosConfig, ChaosSignal};
use crate::env::{job_environment, resolve_queue_url};
use crate::error::ConfigError;
use crate::history::{History, Limit};
use crate::jobs::{BACKOFF_BASE, BACKOFF_CAP, FinishedJob, JobSpec, Supervisor, Totals};
use crate::manifest::ScaledJob;
use crate::plan::{self, PlanInput, QueueMetric};
use crate::process::Exited;
use crate::queue::{QueueCounts, SqsQueue};
use crate::status::{StatusLine, print_line};

/// How long one `GetQueueAttributes` may take before the poll counts as failed.
const QUEUE_READ_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the status line is refreshed between events.
const STATUS_REFRESH: Duration = Duration::from_secs(1);

/// What a run needs besides the manifest: the settings of `local-scaler run`'s command line.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The ScaledJob manifest (YAML; other documents in the file are skipped).
    pub scaledjob: PathBuf,
    /// The queue to watch, before the trigger's `queueURL` and `queueURLFromEnv`.
    pub queue_url: Option<String>,
    /// The encoder binary; `None`: `encoder` next to this executable.
    pub encoder_bin: Option<PathBuf>,
    /// End once the queue is empty and no Job is unfinished.
    pub until_empty: bool,
    /// How long a freshly started encoder still counts as a pending Job.
    pub pending_for: Duration,
    /// When set, each Job's output goes to `{dir}/{job}.log` instead of local-scaler's.
    pub job_logs: Option<PathBuf>,
    /// The share of Jobs (0 to 1) chaos kills; 0: no chaos.
    pub chaos_kill_share: f64,
    /// Chaos's seed; `None`: a random one, logged.
    pub chaos_seed: Option<u64>,
    /// The signal chaos sends.
    pub chaos_signal: ChaosSignal,
    /// Chaos hits fall within this many seconds of a Job's creation (kept as given, for the log).
    pub chaos_window_seconds: f64,
}

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Ending {
    QueueEmpty,
    Interrupted,
    Terminated,
}

/// The final line on stdout.
#[derive(Debug, Serialize)]
struct Summary {
    ending: Ending,
    exit_code: u8,
    polls: u64,
    #[serde(flatten)]
    totals: Totals,
}

/// The default encoder binary: `encoder` beside the running executable.
fn default_encoder() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("cannot locate the local-scaler executable")?;
    Ok(me.with_file_name("encoder"))
}

fn check_executable(path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt as _;
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(_) => Err(ConfigError(format!(
            "the encoder binary {} is not an executable file",
            path.display()
        ))),
        Err(error) => Err(ConfigError(format!(
            "the encoder binary {} cannot be used ({error}); build it (cargo build -p encoder) \
             or pass --encoder-bin / ENCODER_BIN",
            path.display()
        ))),
    }
}

/// Runs the loop until the queue is empty (`--until-empty`) or a signal arrives.
///
/// # Errors
///
/// Configuration errors, and failing to set up the queue client or signal handlers.
pub async fn run(config: RunConfig) -> anyhow::Result<ExitCode> {
    let scaled_job = ScaledJob::load(&config.scaledjob).context("cannot use the ScaledJob manifest")?;
    for note in &scaled_job.ignored {
        warn!(ignored = %note, "not applied locally");
    }
    if scaled_job.strategy.name() != scaled_job.requested_strategy {
        warn!(requested = %scaled_job.requested_strategy, used = %scaled_job.strategy.name(), "customScalingRunningJobPercentage is missing or not a number: KEDA uses the default strategy");
    }

    let encoder = match &config.encoder_bin {
        Some(path) => path.clone(),
        None => default_encoder()?,
    };
    check_executable(&encoder)?;
    if let Some(dir) = &config.job_logs {
        std::fs::create_dir_all(dir)
            .map_err(|e| ConfigError(format!("cannot create --job-logs {}: {e}", dir.display())))?;
    }

    let process_env: BTreeMap<String, String> = std::env::vars().collect();
    let trigger = &scaled_job.trigger;
    let (queue_ref, source) =
        resolve_queue_url(config.queue_url.as_deref(), trigger, &process_env, &scaled_job.job.env)
            .map_err(ConfigError)?;
    let queue = SqsQueue::connect(&queue_ref, trigger.aws_region.as_deref())
        .await
        .context("cannot reach the queue")?;
    info!(queue_url = queue.url(), source = ?source, "watching the queue");

    let mut forced = vec![("QUEUE_URL".to_owned(), queue.url().to_owned())];
    if let Some(name) = trigger.queue_url_from_env.as_ref().filter(|n| *n != "QUEUE_URL") {
        forced.push((name.clone(), queue.url().to_owned()));
    }
    let environment = job_environment(&process_env, &scaled_job.job.env, &forced);
    for (name, value) in &scaled_job.job.pod_paths {
        if !process_env.contains_key(name) {
            warn!(variable = %name, manifest_value = %value, "not set: the manifest's value is a path inside the pod's volumes; set it in local-scaler's environment to choose a local directory");
        }
    }
    info!(
        from_manifest = ?environment.from_manifest,
        overridden_by_local_environment = ?environment.overridden_by_process,
        "encoder environment: manifest literals, overridden by local-scaler's environment"
    );

    let spec = JobSpec {
        name: scaled_job.name.clone(),
        program: encoder.clone(),
        args: scaled_job.job.args.clone(),
        env: environment.vars,
        active_deadline: scaled_job.job.active_deadline,
        backoff_limit: scaled_job.job.backoff_limit,
        grace: scaled_job.job.termination_grace_period,
        restart_policy: scaled_job.job.restart_policy,
        exit_code_rules: scaled_job.job.exit_code_rules.clone(),
        pending_for: config.pending_for,
        backoff_base: BACKOFF_BASE,
        backoff_cap: BACKOFF_CAP,
        logs_dir: config.job_logs.clone(),
    };
    let chaos = (config.chaos_kill_share > 0.0).then(|| {
        let seed = config.chaos_seed.unwrap_or_else(rand::random);
        let settings = ChaosConfig {
            share: config.chaos_kill_share,
            seed,
            window: Duration::from_secs_f64(config.chaos_window_seconds),
            signal: config.chaos_signal,
        };
        warn!(chaos_seed = seed, share = settings.share, window_s = config.chaos_window_seconds, signal = ?settings.signal, "chaos enabled: replay with --chaos-seed {seed}");
        Chaos::new(settings)
    });

    info!(
        scaledjob = %scaled_job.name,
        encoder = %encoder.display(),
        polling_interval_s = scaled_job.polling_interval.as_secs(),
        min_replica_count = ?scaled_job.bounds.min,
        max_replica_count = ?scaled_job.bounds.max,
        strategy = %scaled_job.strategy.name(),
        target = trigger.queue_length,
        activation = trigger.activation_queue_length,
        scale_on_in_flight = trigger.scale_on_in_flight,
        scale_on_delayed = trigger.scale_on_delayed,
        active_deadline_s = ?scaled_job.job.active_deadline.map(|d| d.as_secs()),
        backoff_limit = scaled_job.job.backoff_limit,
        grace_s = scaled_job.job.termination_grace_period.as_secs(),
        "local-scaler started"
    );

    let (supervisor, exits) = Supervisor::new(spec, chaos);
    let mut scaler = Scaler {
        history: History::new(
            scaled_job.successful_jobs_history_limit,
            scaled_job.failed_jobs_history_limit,
        ),
        scaled_job,
        queue,
        supervisor,
        until_empty: config.until_empty,
        status: StatusLine::for_stderr(),
        polls: 0,
        last_counts: None,
    };
    scaler.run_loop(exits).await
}

struct Scaler {
    scaled_job: ScaledJob,
    queue: SqsQueue,
    supervisor: Supervisor,
    history: History,
    until_empty: bool,
    status: StatusLine,
    polls: u64,
    last_counts: Option<QueueCounts>,
}

impl Scaler {
    async fn run_loop(&mut self, mut exits: tokio::sync::mpsc::UnboundedReceiver<Exited>) -> anyhow::Result<ExitCode> {
        let mut signals = Signals::install().context("cannot handle SIGINT and SIGTERM")?;
        let interval = self.scaled_job.polling_interval;
        let mut next_poll = Instant::now();
        let mut stopping: Option<Ending> = None;

        let ending = loop {
            if let Some(ending) = stopping
                && self.supervisor.is_idle()
            {
                break ending;
            }
            let now = Instant::now();
            let mut wake = self.supervisor.next_timer();
            if stopping.is_none() {
                wake = Some(wake.map_or(next_poll, |w| w.min(next_poll)));
            }
            if self.status.enabled() {
                let refresh = now + STATUS_REFRESH;
                wake = Some(wake.map_or(refresh, |w| w.min(refresh)));
            }
            let wake = wake.unwrap_or(now + Duration::from_secs(3600));

            tokio::select! {
                signal = signals.recv() => {
                    let ending = match signal {
                        Signal::Interrupt => Ending::Interrupted,
                        Signal::Terminate => Ending::Terminated,
                    };
                    self.on_signal(&mut stopping, ending);
                }
                Some(exited) = exits.recv() => {
                    if let Some(job) = self.supervisor.on_exit(exited, Instant::now()) {
                        self.history.record(job);
                    }
                }
                () = sleep_until(wake) => {
                    let now = Instant::now();
                    for job in self.supervisor.on_timers(now) {
                        self.history.record(job);
                    }
                    if stopping.is_none() && now >= next_poll {
                        next_poll = now + interval;
                        if self.poll().await {
                            break Ending::QueueEmpty;
                        }
                    }
                }
            }
            self.show_status(next_poll, stopping.is_some());
        };
        self.status.clear();
        Ok(self.finish(ending))
    }

    fn on_signal(&mut self, stopping: &mut Option<Ending>, ending: Ending) {
        if stopping.is_some() {
            warn!("second signal: SIGKILL to every encoder");
            self.supervisor.kill_all();
            return;
        }
        let running = self.supervisor.counts(Instant::now()).running;
        info!(
            running,
            grace_s = self.scaled_job.job.termination_grace_period.as_secs(),
            "stopping: SIGTERM to every encoder, then waiting for them"
        );
        *stopping = Some(ending);
        for job in self.supervisor.stop_all(Instant::now()) {
            self.history.record(job);
        }
    }

    /// One KEDA polling cycle. Returns true when `--until-empty` is satisfied.
    async fn poll(&mut self) -> bool {
        self.polls += 1;
        let trigger = &self.scaled_job.trigger;
        let counts = match timeout(QUEUE_READ_TIMEOUT, self.queue.counts()).await {
            Ok(Ok(counts)) => Some(counts),
            Ok(Err(error)) => {
                error!(
                    error = format!("{error:#}"),
                    "cannot read the queue's counts: the trigger counts as failed for this cycle"
                );
                None
            }
            Err(_) => {
                error!(
                    timeout_s = QUEUE_READ_TIMEOUT.as_secs(),
                    "reading the queue's counts timed out: the trigger counts as failed for this cycle"
                );
                None
            }
        };
        self.last_counts = counts;
        let now = Instant::now();
        let jobs = self.supervisor.counts(now);

        if self.until_empty && counts.is_some_and(|c| c.is_empty()) && self.supervisor.is_idle() {
            info!(polls = self.polls, "the queue is empty and no Job is running");
            return true;
        }

        let decision = plan::decide(&PlanInput {
            metric: counts.map(|c| QueueMetric {
                queue_length: c.metric(trigger),
                target: trigger.queue_length,
                activation: trigger.activation_queue_length,
            }),
            running: jobs.running,
            pending: jobs.pending,
            bounds: self.scaled_job.bounds,
            strategy: self.scaled_job.strategy,
        });
        let c = counts.unwrap_or_default();
        info!(
            queue_length = counts.map(|c| c.metric(trigger)),
            visible = c.visible,
            in_flight = c.in_flight,
            delayed = c.delayed,
            running = jobs.running,
            pending = jobs.pending,
            max_scale = decision.max_scale,
            effective_max_scale = decision.effective_max_scale,
            scale_to = decision.scale_to,
            active = decision.active,
            created = decision.jobs_to_create,
            reason = %decision.reason,
            "scaling decision"
        );
        self.supervisor.create_jobs(decision.jobs_to_create, now);
        self.prune_history();
        false
    }

    fn prune_history(&mut self) {
        for (job, limit) in self.history.prune() {
            let (kind, limit) = match limit {
                Limit::Successful(n) => ("successfulJobsHistoryLimit", n),
                Limit::Failed(n) => ("failedJobsHistoryLimit", n),
            };
            info!(job_id = %job.id, outcome = ?job.outcome, history_limit = kind, limit, "removed a finished Job from the history");
            remove_log(&job);
        }
    }

    fn show_status(&self, next_poll: Instant, stopping: bool) {
        if !self.status.enabled() {
            return;
        }
        let jobs = self.supervisor.counts(Instant::now());
        let totals = self.supervisor.totals();
        let queue = self.last_counts.map_or_else(
            || "queue ?".to_owned(),
            |c| {
                format!(
                    "queue {} visible, {} in flight, {} delayed",
                    c.visible, c.in_flight, c.delayed
                )
            },
        );
        let tail = if stopping {
            "stopping".to_owned()
        } else {
            format!(
                "next poll in {}s",
                next_poll.saturating_duration_since(Instant::now()).as_secs()
            )
        };
        self.status.show(&format!(
            "{} | {queue} | jobs {} running ({} pending) | created {} ok {} failed {} chaos {} | {tail}",
            self.scaled_job.name,
            jobs.running,
            jobs.pending,
            totals.created,
            totals.succeeded,
            totals.failed,
            totals.chaos_kills,
        ));
    }

    fn finish(&self, ending: Ending) -> ExitCode {
        let totals = self.supervisor.totals();
        let code: u8 = match ending {
            Ending::QueueEmpty if totals.unexpected_failures == 0 => 0,
            Ending::QueueEmpty => 1,
            Ending::Interrupted => 130,
            Ending::Terminated => 143,
        };
        info!(
            ending = ?ending,
            exit_code = code,
            created = totals.created,
            succeeded = totals.succeeded,
            failed = totals.failed,
            unexpected_failures = totals.unexpected_failures,
            deadline_exceeded = totals.deadline_exceeded,
            chaos_kills = totals.chaos_kills,
            "local-scaler finished"
        );
        let summary = Summary {
            ending,
            exit_code: code,
            polls: self.polls,
            totals,
        };
        let written = serde_json::to_string(&summary)
            .map_err(std::io::Error::other)
            .and_then(|line| print_line(&line));
        if let Err(error) = written {
            error!(%error, "cannot write the summary");
        }
        ExitCode::from(code)
    }
}

fn remove_log(job: &FinishedJob) {
    if let Some(path) = &job.log_file
        && let Err(error) = std::fs::remove_file(path)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        warn!(path = %path.display(), %error, "cannot remove a pruned Job's log file");
    }
}
