//! Jobs as local processes: one encoder process per Job, with the Kubernetes Job semantics the
//! ScaledJob's `jobTargetRef` asks for.
//!
//! - **Running**: a Job is "running" for KEDA from creation until it finishes
//!   (`getRunningJobCount` counts every Job without a Complete or Failed condition), retries
//!   included. Here: from creation until its last process exits.
//! - **Pending**: KEDA counts an unfinished Job as pending when none of its pods is Running or
//!   Succeeded (`getPendingJobCount`, `isAnyPodRunningOrCompleted`). A process has no scheduling
//!   or image pull: once spawned it runs. So a Job is pending here (a) while it waits for a retry
//!   with `restartPolicy: Never` (the failed pod is gone and the next one not yet started; with
//!   `OnFailure` the pod stays Running while its container restarts), and (b) during the first
//!   `pending_for` after each process start, 0 by default; a larger value imitates slow pod
//!   start-up to watch `accurate` and `eager` react.
//! - **`backoffLimit`**: a failed process (non-zero exit or signal) is retried after Kubernetes'
//!   back-off (10 s, doubling, at most 6 min) until the Job has failed `backoffLimit + 1` times.
//! - **`podFailurePolicy`** (`onExitCodes` rules, first match wins): `FailJob` fails the Job at
//!   once, `Ignore` starts a replacement at once without counting the failure, `Count` counts it
//!   as usual. A process killed by signal N has exit code 128 + N, as a container would.
//! - **`activeDeadlineSeconds`**: counted from the Job's creation, retries included; when reached
//!   the running process gets SIGTERM, and SIGKILL after `terminationGracePeriodSeconds`; the Job
//!   fails with reason DeadlineExceeded whatever the process then exits with.
//! - **Signals**: SIGTERM to the encoder, SIGKILL to its process group; how a process is
//!   started, signalled and waited for is [`crate::process`].

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::chaos::{Chaos, ChaosKill};
use crate::manifest::{ExitCodeRule, FailureAction, RestartPolicy};
use crate::process::{Attempt, ExitInfo, Exited, KillSignal};

/// Kubernetes' first retry delay for a failed Job pod.
pub const BACKOFF_BASE: Duration = Duration::from_secs(10);
/// Kubernetes' longest retry delay.
pub const BACKOFF_CAP: Duration = Duration::from_secs(360);

/// How every Job is run.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// Jobs are named `{name}-{n}`, n counting from 1.
    pub name: String,
    /// The encoder binary.
    pub program: PathBuf,
    /// Its arguments (the container's `args`).
    pub args: Vec<String>,
    /// Its whole environment (see [`crate::env`]); `HOSTNAME` is added per process.
    pub env: BTreeMap<String, String>,
    /// `activeDeadlineSeconds`.
    pub active_deadline: Option<Duration>,
    /// `backoffLimit`.
    pub backoff_limit: u32,
    /// `terminationGracePeriodSeconds`.
    pub grace: Duration,
    /// `restartPolicy`.
    pub restart_policy: RestartPolicy,
    /// `podFailurePolicy` rules on exit codes.
    pub exit_code_rules: Vec<ExitCodeRule>,
    /// How long a fresh process still counts as pending.
    pub pending_for: Duration,
    /// The first retry delay ([`BACKOFF_BASE`] except in tests).
    pub backoff_base: Duration,
    /// The longest retry delay ([`BACKOFF_CAP`] except in tests).
    pub backoff_cap: Duration,
    /// When set, each Job's output goes to `{dir}/{job}.log` instead of local-scaler's.
    pub logs_dir: Option<PathBuf>,
}

impl JobSpec {
    /// The delay before the retry that follows the `failures`-th failure: the base, doubled per
    /// earlier failure, capped.
    #[must_use]
    pub fn backoff_delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        self.backoff_base.saturating_mul(1 << doublings).min(self.backoff_cap)
    }
}

/// Why a Job failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailReason {
    /// It failed `backoffLimit + 1` times.
    BackoffLimitExceeded,
    /// A `podFailurePolicy` rule with action `FailJob` matched.
    PodFailurePolicy,
    /// `activeDeadlineSeconds` passed.
    DeadlineExceeded,
    /// local-scaler was stopped (SIGINT or SIGTERM) while it ran.
    Stopped,
}

/// How a Job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A process exited 0.
    Succeeded,
    /// See the reason.
    Failed(FailReason),
}

/// A finished Job, as kept in the history.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedJob {
    /// Its name.
    pub id: String,
    /// How it ended.
    pub outcome: Outcome,
    /// How many processes it started.
    pub attempts: u32,
    /// How its last process ended (`None` when it never ran one to the end).
    pub last_exit: Option<ExitInfo>,
    /// Whether chaos hit its last process.
    pub hit_by_chaos: bool,
    /// From creation to the end.
    pub duration: Duration,
    /// Its output file, when `--job-logs` is set.
    pub log_file: Option<PathBuf>,
}

impl FinishedJob {
    /// Whether the outcome is one `--until-empty` accepts: success; a stop local-scaler asked
    /// for (shutdown, chaos); or a last process stopped by SIGTERM (exit 143: the encoder released
    /// its message for a retry). A deadline exceeded or any other failure is not.
    #[must_use]
    pub fn is_expected(&self) -> bool {
        match self.outcome {
            Outcome::Succeeded | Outcome::Failed(FailReason::Stopped) => true,
            Outcome::Failed(FailReason::DeadlineExceeded) => false,
            Outcome::Failed(FailReason::BackoffLimitExceeded | FailReason::PodFailurePolicy) => {
                self.hit_by_chaos || self.last_exit.as_ref().is_some_and(ExitInfo::is_sigterm_stop)
            }
        }
    }
}

/// Counters since start-up (the history forgets; these do not).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Jobs created.
    pub created: u64,
    /// Processes started (retries included).
    pub processes: u64,
    /// Jobs succeeded.
    pub succeeded: u64,
    /// Jobs failed, for any reason.
    pub failed: u64,
    /// Of those, by backoffLimit.
    pub backoff_limit_exceeded: u64,
    /// Of those, by a podFailurePolicy rule.
    pub pod_failure_policy: u64,
    /// Of those, by activeDeadlineSeconds.
    pub deadline_exceeded: u64,
    /// Of those, by local-scaler stopping.
    pub stopped: u64,
    /// Failed Jobs that [`FinishedJob::is_expected`] does not accept.
    pub unexpected_failures: u64,
    /// Processes chaos sent a signal to.
    pub chaos_kills: u64,
}

/// KEDA's two Job counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounts {
    /// Unfinished Jobs, pending ones included.
    pub running: i64,
    /// Unfinished Jobs with no process running (see the module documentation).
    pub pending: i64,
}

#[derive(Debug)]
enum JobState {
    Running(Attempt),
    BackingOff { retry_at: Instant },
}

#[derive(Debug)]
struct Job {
    number: u64,
    id: String,
    created: Instant,
    attempts: u32,
    failures: u32,
    state: JobState,
    deadline_exceeded: bool,
    chaos: Option<ChaosKill>,
    last_exit: Option<ExitInfo>,
    last_hit_by_chaos: bool,
}

/// Owns every unfinished Job.
#[derive(Debug)]
pub struct Supervisor {
    spec: JobSpec,
    chaos: Option<Chaos>,
    next_number: u64,
    jobs: BTreeMap<u64, Job>,
    exits: mpsc::UnboundedSender<Exited>,
    stopping: bool,
    totals: Totals,
}

impl Supervisor {
    /// A supervisor, and the receiver on which it reports process exits: pass each to
    /// [`Supervisor::on_exit`].
    #[must_use]
    pub fn new(spec: JobSpec, chaos: Option<Chaos>) -> (Self, mpsc::UnboundedReceiver<Exited>) {
        let (exits, receiver) = mpsc::unbounded_channel();
        let supervisor = Self {
            spec,
            chaos,
            next_number: 1,
            jobs: BTreeMap::new(),
            exits,
            stopping: false,
            totals: Totals::default(),
        };
        (supervisor, receiver)
    }

    /// Counters since start-up.
    #[must_use]
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// No unfinished Job.
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.jobs.is_empty()
    }

    /// KEDA's running and pending counts at `now`.
    #[must_use]
    pub fn counts(&self, now: Instant) -> JobCounts {
        let pending = self
            .jobs
            .values()
            .filter(|job| match &job.state {
                JobState::BackingOff { .. } => self.spec.restart_policy == RestartPolicy::Never,
                JobState::Running(attempt) => now.duration_since(attempt.started) < self.spec.pending_for,
            })
            .count();
        JobCounts {
            running: i64::try_from(self.jobs.len()).unwrap_or(i64::MAX),
            pending: i64::try_from(pending).unwrap_or(i64::MAX),
        }
    }

    /// Creates `count` Jobs, each starting its first process now.
    pub fn create_jobs(&mut self, count: i64, now: Instant) {
        for _ in 0..count.max(0) {
            let number = self.next_number;
            self.next_number += 1;
            let id = format!("{}-{number}", self.spec.name);
            let chaos = self.chaos.as_mut().and_then(Chaos::draw);
            if let Some(kill) = chaos {
                debug!(job_id = %id, after_ms = kill.after.as_millis(), signal = %kill.signal, "chaos: Job chosen as a target");
            }
            let mut job = Job {
                number,
                id,
                created: now,
                attempts: 0,
                failures: 0,
                state: JobState::BackingOff { retry_at: now },
                deadline_exceeded: false,
                chaos,
                last_exit: None,
                last_hit_by_chaos: false,
            };
            self.totals.created += 1;
            self.start_process(&mut job, now);
            self.jobs.insert(number, job);
        }
    }

    fn log_file(&self, job: &Job) -> Option<PathBuf> {
        self.spec
            .logs_dir
            .as_ref()
            .map(|dir| dir.join(format!("{}.log", job.id)))
    }

    fn start_process(&mut self, job: &mut Job, now: Instant) {
        job.attempts += 1;
        let number = job.attempts;
        let mut command = tokio::process::Command::new(&self.spec.program);
        command
            .args(&self.spec.args)
            .env_clear()
            .envs(&self.spec.env)
            .env("HOSTNAME", format!("{}-{number}", job.id))
            .stdin(Stdio::null());
        if let Some(path) = self.log_file(job) {
            let file = OpenOptions::new().create(true).append(true).open(&path);
            match file.and_then(|f| Ok((f.try_clone()?, f))) {
                Ok((out, err)) => {
                    command.stdout(out).stderr(err);
                }
                Err(error) => {
                    warn!(job_id = %job.id, path = %path.display(), %error, "cannot open the Job's log file; its output goes to local-scaler's")
                }
            }
        }
        self.totals.processes += 1;
        job.state = JobState::Running(Attempt::start(command, job.number, &job.id, number, &self.exits, now));
    }

    /// The next moment [`Supervisor::on_timers`] has work: a deadline, a SIGKILL after a grace
    /// period, a retry, a chaos hit.
    #[must_use]
    pub fn next_timer(&self) -> Option<Instant> {
        self.jobs
            .values()
            .flat_map(|job| {
                let deadline = self
                    .spec
                    .active_deadline
                    .filter(|_| !job.deadline_exceeded)
                    .map(|d| job.created + d);
                let chaos = job.chaos.map(|c| job.created + c.after);
                let state = match &job.state {
                    JobState::BackingOff { retry_at } => Some(*retry_at),
                    JobState::Running(a) => a.kill_at.filter(|_| !a.kill_sent),
                };
                [deadline, chaos, state]
            })
            .flatten()
            .min()
    }

    /// Does what is due at `now`; returns the Jobs that finished.
    pub fn on_timers(&mut self, now: Instant) -> Vec<FinishedJob> {
        let mut finished = Vec::new();
        let numbers: Vec<u64> = self.jobs.keys().copied().collect();
        for number in numbers {
            let Some(mut job) = self.jobs.remove(&number) else {
                continue;
            };
            match self.job_timers(&mut job, now) {
                Some(outcome) => finished.push(self.finish(job, outcome, now)),
                None => {
                    self.jobs.insert(number, job);
                }
            }
        }
        finished
    }

    fn job_timers(&mut self, job: &mut Job, now: Instant) -> Option<Outcome> {
        let grace = self.spec.grace;
        if let Some(deadline) = self.spec.active_deadline
            && !job.deadline_exceeded
            && job.created + deadline <= now
        {
            job.deadline_exceeded = true;
            match &mut job.state {
                JobState::Running(attempt) => {
                    warn!(job_id = %job.id, attempt = attempt.number, pid = attempt.pid, deadline_s = deadline.as_secs(), grace_s = grace.as_secs(), "activeDeadlineSeconds reached: SIGTERM, SIGKILL after the grace period");
                    attempt.term_then_kill(now, grace);
                }
                JobState::BackingOff { .. } => {
                    warn!(job_id = %job.id, deadline_s = deadline.as_secs(), "activeDeadlineSeconds reached while waiting for a retry");
                    return Some(Outcome::Failed(FailReason::DeadlineExceeded));
                }
            }
        }
        if let JobState::BackingOff { retry_at } = job.state
            && retry_at <= now
        {
            if self.stopping {
                return Some(Outcome::Failed(FailReason::Stopped));
            }
            self.start_process(job, now);
        }
        if self.stopping {
            // Chaos does not interfere with a shutdown.
            job.chaos = None;
        }
        if let Some(kill) = job.chaos
            && job.created + kill.after <= now
        {
            job.chaos = None;
            let seed = self.chaos.as_ref().map(|c| c.config().seed);
            match &mut job.state {
                JobState::Running(attempt) => {
                    warn!(job_id = %job.id, attempt = attempt.number, pid = attempt.pid, signal = %kill.signal, after_ms = kill.after.as_millis(), chaos_seed = seed, "chaos: killing a Job process");
                    attempt.hit_by_chaos = true;
                    self.totals.chaos_kills += 1;
                    match kill.signal {
                        KillSignal::Term => attempt.term_then_kill(now, grace),
                        KillSignal::Kill => {
                            attempt.send(KillSignal::Kill);
                            attempt.kill_sent = true;
                        }
                    }
                }
                JobState::BackingOff { .. } => {
                    debug!(job_id = %job.id, "chaos: the Job waits for a retry at its moment; spared");
                }
            }
        }
        if let JobState::Running(attempt) = &mut job.state
            && !attempt.kill_sent
            && attempt.kill_at.is_some_and(|at| at <= now)
        {
            warn!(job_id = %job.id, attempt = attempt.number, pid = attempt.pid, "grace period over: SIGKILL to the process group");
            attempt.send(KillSignal::Kill);
            attempt.kill_sent = true;
        }
        None
    }

    /// Handles a process exit; returns the Job when it finished.
    pub fn on_exit(&mut self, exited: Exited, now: Instant) -> Option<FinishedJob> {
        let job = self.jobs.get_mut(&exited.job)?;
        let JobState::Running(attempt) = &job.state else {
            return None;
        };
        if attempt.number != exited.attempt {
            return None;
        }
        let ran_for = now.duration_since(attempt.started);
        job.last_hit_by_chaos = attempt.hit_by_chaos;
        let exit = exited.exit;
        info!(job_id = %job.id, attempt = attempt.number, pid = attempt.pid, exit = %exit, ran_for_ms = ran_for.as_millis(), "Job process ended");
        let succeeded = exit.is_success();
        let action = exit.container_exit_code().and_then(|code| {
            self.spec
                .exit_code_rules
                .iter()
                .find(|rule| rule.matches(code))
                .map(|rule| rule.action)
        });
        job.last_exit = Some(exit);

        let outcome = if job.deadline_exceeded {
            Some(Outcome::Failed(FailReason::DeadlineExceeded))
        } else if succeeded {
            Some(Outcome::Succeeded)
        } else if self.stopping {
            Some(Outcome::Failed(FailReason::Stopped))
        } else {
            match action {
                Some(FailureAction::FailJob) => {
                    info!(job_id = %job.id, "podFailurePolicy: FailJob");
                    Some(Outcome::Failed(FailReason::PodFailurePolicy))
                }
                Some(FailureAction::Ignore) => {
                    info!(job_id = %job.id, "podFailurePolicy: Ignore, replacement started at once");
                    job.state = JobState::BackingOff { retry_at: now };
                    None
                }
                Some(FailureAction::Count) | None => {
                    job.failures += 1;
                    if job.failures > self.spec.backoff_limit {
                        Some(Outcome::Failed(FailReason::BackoffLimitExceeded))
                    } else {
                        let delay = self.spec.backoff_delay(job.failures);
                        info!(job_id = %job.id, failures = job.failures, backoff_limit = self.spec.backoff_limit, retry_in_ms = delay.as_millis(), "Job process failed: retrying after the back-off");
                        job.state = JobState::BackingOff { retry_at: now + delay };
                        None
                    }
                }
            }
        };
        let outcome = outcome?;
        let job = self.jobs.remove(&exited.job)?;
        Some(self.finish(job, outcome, now))
    }

    fn finish(&mut self, job: Job, outcome: Outcome, now: Instant) -> FinishedJob {
        let finished = FinishedJob {
            log_file: self.log_file(&job),
            id: job.id,
            outcome,
            attempts: job.attempts,
            last_exit: job.last_exit,
            hit_by_chaos: job.last_hit_by_chaos,
            duration: now.duration_since(job.created),
        };
        let last_exit = finished
            .last_exit
            .as_ref()
            .map_or_else(|| "none".to_owned(), ToString::to_string);
        match outcome {
            Outcome::Succeeded => {
                self.totals.succeeded += 1;
                info!(job_id = %finished.id, attempts = finished.attempts, duration_ms = finished.duration.as_millis(), "Job succeeded");
            }
            Outcome::Failed(reason) => {
                self.totals.failed += 1;
                match reason {
                    FailReason::BackoffLimitExceeded => self.totals.backoff_limit_exceeded += 1,
                    FailReason::PodFailurePolicy => self.totals.pod_failure_policy += 1,
                    FailReason::DeadlineExceeded => self.totals.deadline_exceeded += 1,
                    FailReason::Stopped => self.totals.stopped += 1,
                }
                if !finished.is_expected() {
                    self.totals.unexpected_failures += 1;
                }
                warn!(job_id = %finished.id, reason = ?reason, attempts = finished.attempts, last_exit, hit_by_chaos = finished.hit_by_chaos, expected = finished.is_expected(), "Job failed");
            }
        }
        finished
    }

    /// Stops everything, as on SIGINT/SIGTERM to local-scaler: SIGTERM to every process (SIGKILL
    /// follows after the grace period, through [`Supervisor::on_timers`]), no more retries.
    /// Returns the Jobs that were waiting for a retry, now finished.
    pub fn stop_all(&mut self, now: Instant) -> Vec<FinishedJob> {
        self.stopping = true;
        let grace = self.spec.grace;
        let mut finished = Vec::new();
        let numbers: Vec<u64> = self.jobs.keys().copied().collect();
        for number in numbers {
            let Some(mut job) = self.jobs.remove(&number) else {
                continue;
            };
            match &mut job.state {
                JobState::Running(attempt) => {
                    info!(job_id = %job.id, attempt = attempt.number, pid = attempt.pid, "stopping: SIGTERM");
                    attempt.term_then_kill(now, grace);
                    self.jobs.insert(number, job);
                }
                JobState::BackingOff { .. } => {
                    finished.push(self.finish(job, Outcome::Failed(FailReason::Stopped), now));
                }
            }
        }
        finished
    }

    /// SIGKILL to every process now (a second Ctrl-C).
    pub fn kill_all(&mut self) {
        for job in self.jobs.values_mut() {
            if let JobState::Running(attempt) = &mut job.state
                && !attempt.kill_sent
            {
                warn!(job_id = %job.id, attempt = attempt.number, pid = attempt.pid, "SIGKILL");
                attempt.send(KillSignal::Kill);
                attempt.kill_sent = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use nix::sys::signal::Signal;
    use test_support::TempDir;

    use super::*;
    use crate::chaos::{ChaosConfig, ChaosSignal};

    fn fake_encoder() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-encoder.sh")
    }

    fn marker_lines(marker: &Path) -> Vec<String> {
        std::fs::read_to_string(marker)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits until the fake encoder has set its SIGTERM trap.
    async fn until_started(marker: &Path) {
        let limit = Instant::now() + Duration::from_secs(20);
        while !marker_lines(marker).iter().any(|l| l == "started") {
            assert!(Instant::now() < limit, "the fake encoder did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn scratch(name: &str) -> TempDir {
        TempDir::new(&format!("local-scaler-{name}"))
    }

    fn spec(env: &[(&str, &str)]) -> JobSpec {
        let mut vars: BTreeMap<String, String> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        vars.insert("PATH".into(), std::env::var("PATH").unwrap_or_default());
        JobSpec {
            name: "test".into(),
            program: fake_encoder(),
            args: Vec::new(),
            env: vars,
            active_deadline: None,
            backoff_limit: 0,
            grace: Duration::from_secs(1),
            restart_policy: RestartPolicy::Never,
            exit_code_rules: Vec::new(),
            pending_for: Duration::ZERO,
            backoff_base: Duration::from_millis(200),
            backoff_cap: Duration::from_secs(1),
            logs_dir: None,
        }
    }

    /// Runs the supervisor's loop until every Job has finished.
    async fn drive(supervisor: &mut Supervisor, exits: &mut mpsc::UnboundedReceiver<Exited>) -> Vec<FinishedJob> {
        let mut finished = Vec::new();
        let limit = Instant::now() + Duration::from_secs(60);
        while !supervisor.is_idle() {
            let wake = supervisor.next_timer().unwrap_or(limit).min(limit);
            assert!(Instant::now() < limit, "the Jobs did not finish within a minute");
            tokio::select! {
                Some(exited) = exits.recv() => finished.extend(supervisor.on_exit(exited, Instant::now())),
                () = tokio::time::sleep_until(wake) => finished.extend(supervisor.on_timers(Instant::now())),
            }
        }
        finished
    }

    #[tokio::test]
    async fn a_job_past_its_deadline_gets_sigterm_and_fails_with_deadline_exceeded() {
        let dir = scratch("deadline-term");
        let marker = dir.join("marker");
        let mut spec = spec(&[("FAKE_ENCODER_MARKER", marker.to_str().unwrap())]);
        spec.active_deadline = Some(Duration::from_secs(1));
        spec.grace = Duration::from_secs(2);
        let (mut supervisor, mut exits) = Supervisor::new(spec, None);
        let started = Instant::now();
        supervisor.create_jobs(1, started);
        let finished = drive(&mut supervisor, &mut exits).await;
        let elapsed = started.elapsed();

        assert_eq!(finished.len(), 1);
        let job = &finished[0];
        assert_eq!(job.outcome, Outcome::Failed(FailReason::DeadlineExceeded));
        assert_eq!(job.last_exit, Some(ExitInfo::Code(143)), "the trap ran");
        assert!(!job.is_expected());
        assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
        assert!(
            elapsed < Duration::from_secs(3),
            "terminated within deadline + grace: {elapsed:?}"
        );
        assert_eq!(marker_lines(&marker), ["started", "term"]);
        assert_eq!(supervisor.totals().deadline_exceeded, 1);
    }

    #[tokio::test]
    async fn a_job_ignoring_sigterm_is_killed_after_the_grace_period() {
        let dir = scratch("deadline-kill");
        let marker = dir.join("marker");
        let mut spec = spec(&[
            ("FAKE_ENCODER_MARKER", marker.to_str().unwrap()),
            ("FAKE_ENCODER_IGNORE_TERM", "1"),
        ]);
        spec.active_deadline = Some(Duration::from_secs(1));
        spec.grace = Duration::from_secs(1);
        let (mut supervisor, mut exits) = Supervisor::new(spec, None);
        let started = Instant::now();
        supervisor.create_jobs(1, started);
        let finished = drive(&mut supervisor, &mut exits).await;
        let elapsed = started.elapsed();

        assert_eq!(finished[0].outcome, Outcome::Failed(FailReason::DeadlineExceeded));
        assert_eq!(finished[0].last_exit, Some(ExitInfo::Signal(Signal::SIGKILL as i32)));
        assert!(elapsed >= Duration::from_secs(2), "deadline + grace: {elapsed:?}");
        assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
        assert_eq!(marker_lines(&marker), ["started", "term-ignored"]);
    }

    #[tokio::test]
    async fn a_failing_job_is_retried_up_to_the_backoff_limit() {
        let mut spec = spec(&[("FAKE_ENCODER_SLEEP", "0"), ("FAKE_ENCODER_EXIT", "1")]);
        spec.backoff_limit = 2;
        let (mut supervisor, mut exits) = Supervisor::new(spec, None);
        let now = Instant::now();
        supervisor.create_jobs(1, now);
        assert_eq!(supervisor.counts(now), JobCounts { running: 1, pending: 0 });

        // After the first failure, the Job waits for its retry: pending under restartPolicy Never.
        let exited = exits.recv().await.unwrap();
        assert!(supervisor.on_exit(exited, Instant::now()).is_none());
        assert_eq!(supervisor.counts(Instant::now()), JobCounts { running: 1, pending: 1 });

        let finished = drive(&mut supervisor, &mut exits).await;
        assert_eq!(finished[0].outcome, Outcome::Failed(FailReason::BackoffLimitExceeded));
        assert_eq!(finished[0].attempts, 3);
        assert_eq!(finished[0].last_exit, Some(ExitInfo::Code(1)));
        assert!(!finished[0].is_expected());
        assert_eq!(supervisor.totals().processes, 3);
        assert_eq!(supervisor.totals().unexpected_failures, 1);
    }

    #[tokio::test]
    async fn pod_failure_policy_rules_fail_at_once_or_ignore_the_failure() {
        let rule = |action, values: Vec<i32>| ExitCodeRule {
            action,
            inclusive: true,
            values,
        };
        let mut fail_job = spec(&[("FAKE_ENCODER_SLEEP", "0"), ("FAKE_ENCODER_EXIT", "2")]);
        fail_job.backoff_limit = 5;
        fail_job.exit_code_rules = vec![rule(FailureAction::FailJob, vec![2])];
        let (mut supervisor, mut exits) = Supervisor::new(fail_job, None);
        supervisor.create_jobs(1, Instant::now());
        let finished = drive(&mut supervisor, &mut exits).await;
        assert_eq!(finished[0].outcome, Outcome::Failed(FailReason::PodFailurePolicy));
        assert_eq!(finished[0].attempts, 1, "no retry despite backoffLimit 5");

        // Ignored failures do not count: with backoffLimit 0 the Job keeps being replaced until
        // its deadline.
        let mut ignore = spec(&[("FAKE_ENCODER_SLEEP", "0"), ("FAKE_ENCODER_EXIT", "3")]);
        ignore.exit_code_rules = vec![rule(FailureAction::Ignore, vec![3])];
        ignore.active_deadline = Some(Duration::from_millis(1500));
        let (mut supervisor, mut exits) = Supervisor::new(ignore, None);
        supervisor.create_jobs(1, Instant::now());
        let finished = drive(&mut supervisor, &mut exits).await;
        assert_eq!(finished[0].outcome, Outcome::Failed(FailReason::DeadlineExceeded));
        assert!(finished[0].attempts > 1, "{}", finished[0].attempts);
    }

    #[tokio::test]
    async fn a_job_that_exits_zero_succeeds_and_a_fresh_process_can_count_as_pending() {
        let mut spec = spec(&[("FAKE_ENCODER_SLEEP", "0")]);
        spec.pending_for = Duration::from_secs(60);
        let (mut supervisor, mut exits) = Supervisor::new(spec, None);
        supervisor.create_jobs(2, Instant::now());
        assert_eq!(supervisor.counts(Instant::now()), JobCounts { running: 2, pending: 2 });
        let finished = drive(&mut supervisor, &mut exits).await;
        assert!(finished.iter().all(|j| j.outcome == Outcome::Succeeded));
        let mut ids: Vec<_> = finished.iter().map(|j| j.id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["test-1", "test-2"]);
    }

    #[tokio::test]
    async fn chaos_kills_its_target_and_the_failure_counts_as_expected() {
        let chaos = Chaos::new(ChaosConfig {
            share: 1.0,
            seed: 5,
            window: Duration::from_millis(300),
            signal: ChaosSignal::Kill,
        });
        let (mut supervisor, mut exits) = Supervisor::new(spec(&[]), Some(chaos));
        supervisor.create_jobs(1, Instant::now());
        let finished = drive(&mut supervisor, &mut exits).await;
        let job = &finished[0];
        assert_eq!(job.outcome, Outcome::Failed(FailReason::BackoffLimitExceeded));
        assert_eq!(job.last_exit, Some(ExitInfo::Signal(Signal::SIGKILL as i32)));
        assert!(job.hit_by_chaos && job.is_expected());
        assert_eq!(supervisor.totals().chaos_kills, 1);
        assert_eq!(supervisor.totals().unexpected_failures, 0);
    }

    #[tokio::test]
    async fn stopping_sends_sigterm_and_ends_waiting_retries() {
        let dir = scratch("stop");
        let marker = dir.join("marker");
        let (mut supervisor, mut exits) =
            Supervisor::new(spec(&[("FAKE_ENCODER_MARKER", marker.to_str().unwrap())]), None);
        supervisor.create_jobs(1, Instant::now());
        until_started(&marker).await;
        assert!(supervisor.stop_all(Instant::now()).is_empty());
        let finished = drive(&mut supervisor, &mut exits).await;
        assert_eq!(finished[0].outcome, Outcome::Failed(FailReason::Stopped));
        assert!(finished[0].is_expected());
        assert_eq!(marker_lines(&marker), ["started", "term"]);
    }

    #[tokio::test]
    async fn job_output_goes_to_its_log_file_when_asked() {
        let dir = scratch("logs");
        let mut spec = spec(&[("FAKE_ENCODER_SLEEP", "0")]);
        spec.logs_dir = Some(dir.to_path_buf());
        let (mut supervisor, mut exits) = Supervisor::new(spec, None);
        supervisor.create_jobs(1, Instant::now());
        let finished = drive(&mut supervisor, &mut exits).await;
        let log = finished[0].log_file.clone().unwrap();
        assert_eq!(log, dir.join("test-1.log"));
        let text = std::fs::read_to_string(log).unwrap();
        assert!(text.contains("fake encoder test-1-1 started"), "{text}");
    }

    #[test]
    fn the_backoff_doubles_from_ten_seconds_up_to_six_minutes() {
        let mut spec = spec(&[]);
        spec.backoff_base = BACKOFF_BASE;
        spec.backoff_cap = BACKOFF_CAP;
        let delays: Vec<u64> = (1..=8).map(|n| spec.backoff_delay(n).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 360, 360]);
    }
}
