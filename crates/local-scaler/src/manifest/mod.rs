//! The ScaledJob manifest: the fields local-scaler applies, with KEDA's and Kubernetes' defaults.
//!
//! The schema is KEDA's CRD (`config/crd/bases/keda.sh_scaledjobs.yaml`, a copy in
//! `/work/shared/keda-crds/`); the defaults come from the KEDA source at `v2.20.2`:
//! `apis/keda/v1alpha1/scaledjob_types.go` (`maxReplicaCount` 100, `minReplicaCount` 0),
//! `apis/keda/v1alpha1/withtriggers_types.go` (`pollingInterval` 30 s),
//! `pkg/scaling/executor/scale_jobs.go` (history limits 100 each; an empty `restartPolicy`
//! becomes `OnFailure`) and `pkg/scalers/aws_sqs_queue_scaler.go` (`queueLength` 5,
//! `activationQueueLength` 0, `scaleOnInFlight` true, `scaleOnDelayed` false). The Job defaults
//! are Kubernetes' (`backoffLimit` 6, `terminationGracePeriodSeconds` 30).
//!
//! A file may hold several YAML documents (a kustomize build, say): the one with
//! `kind: ScaledJob` is used. Everything local-scaler cannot apply on one machine is listed in
//! [`ScaledJob::ignored`] so the runner can say so at start-up.
//!
//! Two layers: `raw` mirrors the YAML as serde reads it (every field optional as in the CRD,
//! nothing checked, no defaults); this module holds the typed manifest and turns the raw one into
//! it, applying the defaults and checking each value with the error messages a user sees.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::plan::{ReplicaBounds, Strategy, StrategyName, parse_running_percentage};

mod raw;

use raw::{RawJobSpec, RawPodFailureRule, RawScaledJob, RawTrigger};

/// KEDA's polling interval when the ScaledJob sets none.
pub const DEFAULT_POLLING_INTERVAL: Duration = Duration::from_secs(30);
/// KEDA's `successfulJobsHistoryLimit` and `failedJobsHistoryLimit` when unset.
pub const DEFAULT_HISTORY_LIMIT: usize = 100;
/// Kubernetes' `backoffLimit` when unset.
pub const DEFAULT_BACKOFF_LIMIT: u32 = 6;
/// Kubernetes' `terminationGracePeriodSeconds` when unset.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);
/// The aws-sqs-queue scaler's `queueLength` (target per Job) when unset.
pub const DEFAULT_SQS_QUEUE_LENGTH: i64 = 5;
/// The trigger type local-scaler reads.
pub const SQS_TRIGGER_TYPE: &str = "aws-sqs-queue";

/// Why a manifest cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The manifest's path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not YAML, or a field has the wrong type.
    #[error("the ScaledJob manifest is not valid YAML for a ScaledJob")]
    Yaml(#[source] serde_yaml_ng::Error),
    /// No document has `kind: ScaledJob`.
    #[error("the manifest holds no document with kind: ScaledJob")]
    NoScaledJob,
    /// More than one document has `kind: ScaledJob`.
    #[error("the manifest holds {0} ScaledJobs; local-scaler runs exactly one")]
    SeveralScaledJobs(usize),
    /// A value breaks the CRD's schema or something local-scaler relies on.
    #[error("invalid ScaledJob: {0}")]
    Invalid(String),
}

/// How Kubernetes restarts a failed Job's pod; decides whether a Job waiting for a retry counts
/// as pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// A new pod per retry: between retries no pod runs, so KEDA counts the Job as pending.
    Never,
    /// The container restarts inside the same pod, which stays `Running`: not pending.
    OnFailure,
}

/// The aws-sqs-queue trigger's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsTrigger {
    /// `queueURL`: a queue URL, or a queue's short name.
    pub queue_url: Option<String>,
    /// `queueURLFromEnv`: the container variable holding the queue URL.
    pub queue_url_from_env: Option<String>,
    /// `queueLength`: messages per Job (the metric's target average value).
    pub queue_length: i64,
    /// `activationQueueLength`: the trigger is active only above this length.
    pub activation_queue_length: i64,
    /// `scaleOnInFlight`: count `ApproximateNumberOfMessagesNotVisible`.
    pub scale_on_in_flight: bool,
    /// `scaleOnDelayed`: count `ApproximateNumberOfMessagesDelayed`.
    pub scale_on_delayed: bool,
    /// `awsRegion`: used only when the AWS configuration names no region.
    pub aws_region: Option<String>,
    /// `awsEndpoint`: not used locally (the standard `AWS_ENDPOINT_URL` is), kept for the log.
    pub aws_endpoint: Option<String>,
}

/// What a `podFailurePolicy` rule does with a failed process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureAction {
    /// Fail the Job at once, whatever `backoffLimit` allows.
    FailJob,
    /// Start a replacement without counting the failure towards `backoffLimit`.
    Ignore,
    /// Count the failure as usual.
    Count,
}

/// A `podFailurePolicy` rule on exit codes (`onExitCodes`), for the encoder container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitCodeRule {
    /// The action when the rule matches.
    pub action: FailureAction,
    /// `operator: In` (true) or `NotIn` (false).
    pub inclusive: bool,
    /// The exit codes (a process killed by signal N has exit code 128 + N, as in a container).
    pub values: Vec<i32>,
}

impl ExitCodeRule {
    /// Whether a failed process with this exit code matches.
    #[must_use]
    pub fn matches(&self, exit_code: i32) -> bool {
        self.values.contains(&exit_code) == self.inclusive
    }
}

/// The Job template (`jobTargetRef`) settings local-scaler applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobTemplate {
    /// `activeDeadlineSeconds`: the longest a Job may stay active, retries included.
    pub active_deadline: Option<Duration>,
    /// `backoffLimit`: retries before the Job is marked failed.
    pub backoff_limit: u32,
    /// `template.spec.terminationGracePeriodSeconds`: from SIGTERM to SIGKILL.
    pub termination_grace_period: Duration,
    /// `template.spec.restartPolicy`.
    pub restart_policy: RestartPolicy,
    /// The container's name (`envSourceContainerName`, or the first container's).
    pub container_name: String,
    /// The container's `args`, passed to the encoder (its `command` is the image's path).
    pub args: Vec<String>,
    /// The container's literal `env` entries (`value:`), in manifest order, without the
    /// ones in `pod_paths`.
    pub env: Vec<(String, String)>,
    /// Literal `env` entries whose value is a path inside one of the container's
    /// `volumeMounts` (`WORK_DIR: /scratch`): such a path exists only in the pod, so these are
    /// not set unless local-scaler's environment sets them (then the encoder's default applies).
    pub pod_paths: Vec<(String, String)>,
    /// `podFailurePolicy` rules on the encoder's exit codes, in order (the first match wins).
    pub exit_code_rules: Vec<ExitCodeRule>,
}

/// A ScaledJob, reduced to what local-scaler applies.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaledJob {
    /// `metadata.name`: the prefix of every Job's name.
    pub name: String,
    /// `pollingInterval`.
    pub polling_interval: Duration,
    /// `minReplicaCount` and `maxReplicaCount` as written.
    pub bounds: ReplicaBounds,
    /// `scalingStrategy.strategy` as written (absent = `default`).
    pub requested_strategy: StrategyName,
    /// The strategy KEDA would use: `custom` without a parseable percentage becomes `default`.
    pub strategy: Strategy,
    /// `successfulJobsHistoryLimit`.
    pub successful_jobs_history_limit: usize,
    /// `failedJobsHistoryLimit`.
    pub failed_jobs_history_limit: usize,
    /// The one aws-sqs-queue trigger.
    pub trigger: SqsTrigger,
    /// The Job template.
    pub job: JobTemplate,
    /// What the manifest asks for that local-scaler does not do, one sentence each.
    pub ignored: Vec<String>,
}

impl ScaledJob {
    /// Reads and parses a manifest file.
    ///
    /// # Errors
    ///
    /// [`ManifestError::Read`] when the file cannot be read, otherwise as [`ScaledJob::from_yaml`].
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text)
    }

    /// Parses the one ScaledJob among the YAML documents of `text`.
    ///
    /// # Errors
    ///
    /// A [`ManifestError`] when the YAML is malformed, holds no or several ScaledJobs, or the
    /// ScaledJob breaks the CRD or lacks what local-scaler needs (one aws-sqs-queue trigger, a
    /// container).
    pub fn from_yaml(text: &str) -> Result<Self, ManifestError> {
        let mut found = Vec::new();
        for document in serde_yaml_ng::Deserializer::from_str(text) {
            let value = Value::deserialize(document).map_err(ManifestError::Yaml)?;
            if value.get("kind").and_then(Value::as_str) == Some("ScaledJob") {
                found.push(value);
            }
        }
        let value = match found.len() {
            0 => return Err(ManifestError::NoScaledJob),
            1 => found.remove(0),
            n => return Err(ManifestError::SeveralScaledJobs(n)),
        };
        let raw: RawScaledJob = serde_yaml_ng::from_value(value).map_err(ManifestError::Yaml)?;
        raw.into_scaled_job()
    }
}

fn invalid(message: impl Into<String>) -> ManifestError {
    ManifestError::Invalid(message.into())
}

/// A non-negative integer field, checked against the CRD's `minimum`.
fn at_least(field: &str, value: Option<i64>, minimum: i64) -> Result<Option<i64>, ManifestError> {
    match value {
        Some(v) if v < minimum => Err(invalid(format!("{field} must be at least {minimum}, not {v}"))),
        other => Ok(other),
    }
}

fn seconds(value: i64) -> Duration {
    Duration::from_secs(value.unsigned_abs())
}

/// A YAML scalar as the string Kubernetes would store (the CRD types these as strings; a bare
/// `5` or `true` is accepted for convenience).
fn scalar_text(field: &str, value: &Value) -> Result<String, ManifestError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        _ => Err(invalid(format!("{field} must be a string"))),
    }
}

/// Go's `strconv.ParseBool`, which KEDA's typed metadata uses.
fn go_bool(field: &str, text: &str) -> Result<bool, ManifestError> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(invalid(format!("{field}: {text:?} is not a boolean"))),
    }
}

fn go_int(field: &str, text: &str) -> Result<i64, ManifestError> {
    text.trim()
        .parse()
        .map_err(|_| invalid(format!("{field}: {text:?} is not an integer")))
}

impl RawScaledJob {
    fn into_scaled_job(self) -> Result<ScaledJob, ManifestError> {
        let spec = self.spec;
        let mut ignored = Vec::new();

        if self
            .metadata
            .annotations
            .get("autoscaling.keda.sh/paused")
            .is_some_and(|v| matches!(scalar_text("paused", v).as_deref(), Ok("true")))
        {
            ignored.push("the paused annotation: local-scaler always scales".to_owned());
        }

        let polling = at_least("pollingInterval", spec.polling_interval, 1)?.map_or(DEFAULT_POLLING_INTERVAL, seconds);
        let min = at_least("minReplicaCount", spec.min_replica_count, 0)?;
        let max = at_least("maxReplicaCount", spec.max_replica_count, 1)?;
        let history = |field, value| -> Result<usize, ManifestError> {
            Ok(at_least(field, value, 0)?.map_or(DEFAULT_HISTORY_LIMIT, |v| usize::try_from(v).unwrap_or(usize::MAX)))
        };
        let successful_jobs_history_limit = history("successfulJobsHistoryLimit", spec.successful_jobs_history_limit)?;
        let failed_jobs_history_limit = history("failedJobsHistoryLimit", spec.failed_jobs_history_limit)?;

        let strategy_spec = spec.scaling_strategy;
        let requested_strategy = match strategy_spec.strategy.as_deref() {
            None | Some("" | "default") => StrategyName::Default,
            Some("custom") => StrategyName::Custom,
            Some("accurate") => StrategyName::Accurate,
            Some("eager") => StrategyName::Eager,
            Some(other) => {
                return Err(invalid(format!(
                    "scalingStrategy.strategy {other:?} is none of default, custom, accurate, eager"
                )));
            }
        };
        let percentage = strategy_spec
            .custom_scaling_running_job_percentage
            .as_deref()
            .and_then(parse_running_percentage);
        let strategy = Strategy::select(
            requested_strategy,
            strategy_spec.custom_scaling_queue_length_deduction,
            percentage,
        );
        if !strategy_spec.pending_pod_conditions.is_empty() {
            ignored.push(
                "scalingStrategy.pendingPodConditions: processes have no pod conditions; \
                 pending is decided as described in the README"
                    .to_owned(),
            );
        }
        if spec.rollout.is_some() || spec.rollout_strategy.is_some() {
            ignored.push("rollout: the manifest is read once at start-up".to_owned());
        }

        let trigger = sqs_trigger(spec.triggers, strategy_spec.multiple_scalers_calculation, &mut ignored)?;
        let job = job_template(
            spec.job_target_ref,
            spec.env_source_container_name.as_deref(),
            &mut ignored,
        )?;

        Ok(ScaledJob {
            name: self.metadata.name,
            polling_interval: polling,
            bounds: ReplicaBounds { min, max },
            requested_strategy,
            strategy,
            successful_jobs_history_limit,
            failed_jobs_history_limit,
            trigger,
            job,
            ignored,
        })
    }
}

fn sqs_trigger(
    triggers: Vec<RawTrigger>,
    multiple_scalers_calculation: Option<String>,
    ignored: &mut Vec<String>,
) -> Result<SqsTrigger, ManifestError> {
    if triggers.len() != 1 {
        return Err(invalid(format!(
            "local-scaler reads exactly one trigger (of type {SQS_TRIGGER_TYPE}), found {}; \
             several triggers and multipleScalersCalculation are not supported",
            triggers.len()
        )));
    }
    if multiple_scalers_calculation.is_some() {
        ignored.push("scalingStrategy.multipleScalersCalculation: there is one trigger".to_owned());
    }
    let trigger = triggers.into_iter().next().expect("checked: one trigger");
    if trigger.kind != SQS_TRIGGER_TYPE {
        return Err(invalid(format!(
            "trigger type {:?} is not supported; local-scaler reads {SQS_TRIGGER_TYPE}",
            trigger.kind
        )));
    }
    if trigger.authentication_ref.is_some() {
        ignored.push("triggers[0].authenticationRef: the standard AWS credential chain is used".to_owned());
    }
    if trigger.metric_type.as_deref().is_some_and(|t| t != "AverageValue") {
        ignored.push("triggers[0].metricType: AverageValue is assumed".to_owned());
    }

    let mut text = BTreeMap::new();
    for (key, value) in &trigger.metadata {
        text.insert(key.as_str(), scalar_text(key, value)?);
    }
    let non_empty = |key: &str| text.get(key).filter(|v| !v.is_empty()).cloned();
    let int = |key: &str, default: i64| -> Result<i64, ManifestError> {
        non_empty(key).map_or(Ok(default), |v| go_int(key, &v))
    };
    let boolean = |key: &str, default: bool| -> Result<bool, ManifestError> {
        non_empty(key).map_or(Ok(default), |v| go_bool(key, &v))
    };

    let queue_url = non_empty("queueURL");
    let queue_url_from_env = non_empty("queueURLFromEnv");
    if queue_url.is_none() && queue_url_from_env.is_none() {
        return Err(invalid("the aws-sqs-queue trigger needs queueURL or queueURLFromEnv"));
    }
    let queue_length = int("queueLength", DEFAULT_SQS_QUEUE_LENGTH)?;
    if queue_length < 0 {
        return Err(invalid("queueLength must not be negative"));
    }
    let aws_endpoint = non_empty("awsEndpoint");
    if let Some(endpoint) = &aws_endpoint {
        ignored.push(format!(
            "triggers[0].metadata.awsEndpoint {endpoint:?}: the standard AWS_ENDPOINT_URL applies"
        ));
    }
    if non_empty("identityOwner").is_some() {
        ignored.push("triggers[0].metadata.identityOwner: the standard AWS chain is used".to_owned());
    }
    Ok(SqsTrigger {
        queue_url,
        queue_url_from_env,
        queue_length,
        activation_queue_length: int("activationQueueLength", 0)?,
        scale_on_in_flight: boolean("scaleOnInFlight", true)?,
        scale_on_delayed: boolean("scaleOnDelayed", false)?,
        aws_region: non_empty("awsRegion"),
        aws_endpoint,
    })
}

fn job_template(
    job: RawJobSpec,
    env_source_container_name: Option<&str>,
    ignored: &mut Vec<String>,
) -> Result<JobTemplate, ManifestError> {
    let active_deadline = at_least("activeDeadlineSeconds", job.active_deadline_seconds, 1)?.map(seconds);
    let backoff_limit = at_least("backoffLimit", job.backoff_limit, 0)?
        .map_or(DEFAULT_BACKOFF_LIMIT, |v| u32::try_from(v).unwrap_or(u32::MAX));
    if job.parallelism.is_some_and(|p| p != 1) || job.completions.is_some_and(|c| c != 1) {
        ignored.push("jobTargetRef.parallelism/completions: every Job runs one process".to_owned());
    }
    let rules = job.pod_failure_policy.map(|p| p.rules).unwrap_or_default();

    let pod = job.template.spec;
    let termination_grace_period = at_least("terminationGracePeriodSeconds", pod.termination_grace_period_seconds, 0)?
        .map_or(DEFAULT_GRACE_PERIOD, seconds);
    let restart_policy = match pod.restart_policy.as_deref() {
        Some("Never") => RestartPolicy::Never,
        // KEDA sets OnFailure when the template has none (generateJobs).
        None | Some("" | "OnFailure") => RestartPolicy::OnFailure,
        Some(other) => {
            return Err(invalid(format!(
                "restartPolicy {other:?}: a Job's pods need Never or OnFailure"
            )));
        }
    };

    if pod.containers.len() > 1 {
        ignored.push("containers[1..]: only the encoder container runs".to_owned());
    }
    let mut containers = pod.containers;
    let index = match env_source_container_name {
        Some(name) => containers
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| invalid(format!("envSourceContainerName {name:?} names no container")))?,
        None if containers.is_empty() => {
            return Err(invalid("jobTargetRef.template.spec.containers is empty"));
        }
        None => 0,
    };
    let container = containers.swap_remove(index);

    let exit_code_rules = exit_code_rules(rules, &container.name, ignored)?;

    let mut env = Vec::new();
    let mut pod_paths = Vec::new();
    let mut unresolved = Vec::new();
    for var in container.env {
        if var.value_from.is_some() {
            unresolved.push(var.name);
            continue;
        }
        let value = match &var.value {
            Some(value) => scalar_text(&var.name, value)?,
            None => String::new(),
        };
        let in_pod = container.volume_mounts.iter().any(|m| {
            let mount = m.mount_path.trim_end_matches('/');
            !mount.is_empty() && (value == mount || value.strip_prefix(mount).is_some_and(|r| r.starts_with('/')))
        });
        if in_pod {
            pod_paths.push((var.name, value));
        } else {
            env.push((var.name, value));
        }
    }
    if !unresolved.is_empty() {
        ignored.push(format!(
            "env {}: valueFrom (ConfigMap, Secret, field) is not resolved; set these in the \
             environment of local-scaler",
            unresolved.join(", ")
        ));
    }
    if !container.env_from.is_empty() {
        ignored.push(
            "envFrom: Secrets and ConfigMaps are not read; set the variables in the environment \
             of local-scaler"
                .to_owned(),
        );
    }

    Ok(JobTemplate {
        active_deadline,
        backoff_limit,
        termination_grace_period,
        restart_policy,
        container_name: container.name,
        args: container.args,
        env,
        pod_paths,
        exit_code_rules,
    })
}

/// The `onExitCodes` rules that concern the encoder container; `onPodConditions` rules have no
/// local meaning and are listed as ignored.
fn exit_code_rules(
    rules: Vec<RawPodFailureRule>,
    container: &str,
    ignored: &mut Vec<String>,
) -> Result<Vec<ExitCodeRule>, ManifestError> {
    let mut kept = Vec::new();
    for (index, rule) in rules.into_iter().enumerate() {
        let action = match rule.action.as_str() {
            "FailJob" => FailureAction::FailJob,
            "Ignore" => FailureAction::Ignore,
            "Count" => FailureAction::Count,
            "FailIndex" => {
                ignored.push(format!(
                    "podFailurePolicy.rules[{index}]: FailIndex needs an indexed Job"
                ));
                continue;
            }
            other => {
                return Err(invalid(format!(
                    "podFailurePolicy.rules[{index}].action {other:?} is unknown"
                )));
            }
        };
        if rule.on_pod_conditions.is_some() {
            ignored.push(format!(
                "podFailurePolicy.rules[{index}].onPodConditions: processes have no pod conditions"
            ));
        }
        let Some(codes) = rule.on_exit_codes else {
            continue;
        };
        if codes.container_name.as_deref().is_some_and(|name| name != container) {
            continue;
        }
        let inclusive = match codes.operator.as_str() {
            "In" => true,
            "NotIn" => false,
            other => {
                return Err(invalid(format!(
                    "podFailurePolicy.rules[{index}].onExitCodes.operator {other:?} is neither In nor NotIn"
                )));
            }
        };
        kept.push(ExitCodeRule {
            action,
            inclusive,
            values: codes.values,
        });
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../tests/fixtures/encoder-scaledjob.yaml");

    fn with_spec(spec: &str) -> String {
        format!("apiVersion: keda.sh/v1alpha1\nkind: ScaledJob\nmetadata:\n  name: t\nspec:\n{spec}")
    }

    const MINIMAL: &str = "  jobTargetRef:
    template:
      spec:
        containers:
          - name: encoder
  triggers:
    - type: aws-sqs-queue
      metadata:
        queueURLFromEnv: QUEUE_URL
";

    #[test]
    fn the_fixture_manifest_parses_with_every_field_applied() {
        let job = ScaledJob::from_yaml(FIXTURE).unwrap();
        assert_eq!(job.name, "encoder");
        assert_eq!(job.polling_interval, Duration::from_secs(2));
        assert_eq!(
            job.bounds,
            ReplicaBounds {
                min: Some(0),
                max: Some(4)
            }
        );
        assert_eq!(job.requested_strategy, StrategyName::Custom);
        assert_eq!(
            job.strategy,
            Strategy::Custom {
                deduction: 1,
                running_percentage: 0.5
            }
        );
        assert_eq!(job.successful_jobs_history_limit, 3);
        assert_eq!(job.failed_jobs_history_limit, 2);
        assert_eq!(
            job.trigger,
            SqsTrigger {
                queue_url: None,
                queue_url_from_env: Some("QUEUE_URL".into()),
                queue_length: 1,
                activation_queue_length: 0,
                scale_on_in_flight: true,
                scale_on_delayed: false,
                aws_region: Some("us-east-1".into()),
                aws_endpoint: Some("http://moto.keda-demo.svc:5000".into()),
            }
        );
        assert_eq!(job.job.active_deadline, Some(Duration::from_secs(600)));
        assert_eq!(job.job.backoff_limit, 1);
        assert_eq!(job.job.termination_grace_period, Duration::from_secs(25));
        assert_eq!(job.job.restart_policy, RestartPolicy::Never);
        assert_eq!(job.job.container_name, "encoder");
        assert_eq!(
            job.job.env,
            vec![
                (
                    "QUEUE_URL".to_owned(),
                    "http://moto.keda-demo.svc:5000/123456789012/encode-requests".to_owned()
                ),
                ("OUTPUT_URI".to_owned(), "s3://media-out/renditions".to_owned()),
                (
                    "ANALYZER_URL".to_owned(),
                    "http://result-analyzer.keda-demo.svc:8080".to_owned()
                ),
                ("VISIBILITY_TIMEOUT_SECONDS".to_owned(), "120".to_owned()),
                ("RECEIVE_WAIT_SECONDS".to_owned(), "5".to_owned()),
                ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
            ]
        );
        assert_eq!(
            job.job.pod_paths,
            vec![("WORK_DIR".to_owned(), "/scratch/work".to_owned())]
        );
        assert_eq!(
            job.job.exit_code_rules,
            vec![ExitCodeRule {
                action: FailureAction::FailJob,
                inclusive: true,
                values: vec![2],
            }]
        );
        // The analyzer token comes from a Secret and cannot be resolved locally.
        assert!(job.ignored.iter().any(|s| s.contains("ANALYZER_TOKEN")));
        assert!(job.ignored.iter().any(|s| s.contains("onPodConditions")));
        assert!(job.ignored.iter().any(|s| s.contains("awsEndpoint")));
    }

    #[test]
    fn defaults_are_keda_and_kubernetes_defaults() {
        let job = ScaledJob::from_yaml(&with_spec(MINIMAL)).unwrap();
        assert_eq!(job.polling_interval, Duration::from_secs(30));
        assert_eq!(job.bounds, ReplicaBounds::default());
        assert_eq!(job.strategy, Strategy::Default);
        assert_eq!(job.successful_jobs_history_limit, 100);
        assert_eq!(job.failed_jobs_history_limit, 100);
        assert_eq!(job.trigger.queue_length, 5);
        assert_eq!(job.trigger.activation_queue_length, 0);
        assert!(job.trigger.scale_on_in_flight);
        assert!(!job.trigger.scale_on_delayed);
        assert_eq!(job.job.active_deadline, None);
        assert_eq!(job.job.backoff_limit, 6);
        assert_eq!(job.job.termination_grace_period, Duration::from_secs(30));
        assert_eq!(job.job.restart_policy, RestartPolicy::OnFailure);
        assert!(job.ignored.is_empty(), "{:?}", job.ignored);
    }

    #[test]
    fn custom_strategy_with_an_unparseable_percentage_becomes_default() {
        let yaml = with_spec(&format!(
            "{MINIMAL}  scalingStrategy:\n    strategy: custom\n    customScalingRunningJobPercentage: \"half\"\n"
        ));
        let job = ScaledJob::from_yaml(&yaml).unwrap();
        assert_eq!(job.requested_strategy, StrategyName::Custom);
        assert_eq!(job.strategy, Strategy::Default);
    }

    #[test]
    fn the_scaledjob_is_found_among_several_documents() {
        let yaml = format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: x\n---\n{}",
            with_spec(MINIMAL)
        );
        assert_eq!(ScaledJob::from_yaml(&yaml).unwrap().name, "t");
        let twice = format!("{}---\n{}", with_spec(MINIMAL), with_spec(MINIMAL));
        assert!(matches!(
            ScaledJob::from_yaml(&twice),
            Err(ManifestError::SeveralScaledJobs(2))
        ));
        assert!(matches!(
            ScaledJob::from_yaml("kind: Deployment\n"),
            Err(ManifestError::NoScaledJob)
        ));
    }

    #[test]
    fn metadata_booleans_and_numbers_parse_like_keda() {
        let yaml = with_spec(
            "  jobTargetRef:
    template:
      spec:
        containers: [{name: encoder}]
  triggers:
    - type: aws-sqs-queue
      metadata:
        queueURL: encode-requests
        queueLength: \"3\"
        activationQueueLength: 2
        scaleOnInFlight: \"F\"
        scaleOnDelayed: \"1\"
",
        );
        let trigger = ScaledJob::from_yaml(&yaml).unwrap().trigger;
        assert_eq!(trigger.queue_url.as_deref(), Some("encode-requests"));
        assert_eq!((trigger.queue_length, trigger.activation_queue_length), (3, 2));
        assert!(!trigger.scale_on_in_flight);
        assert!(trigger.scale_on_delayed);

        let bad = yaml.replace("\"F\"", "\"no\"");
        assert!(matches!(ScaledJob::from_yaml(&bad), Err(ManifestError::Invalid(m)) if m.contains("scaleOnInFlight")));
    }

    #[test]
    fn manifests_local_scaler_cannot_run_are_rejected() {
        let no_url = with_spec(&MINIMAL.replace("queueURLFromEnv: QUEUE_URL", "queueLength: \"1\""));
        assert!(ScaledJob::from_yaml(&no_url).is_err());
        let other_trigger = with_spec(&MINIMAL.replace("aws-sqs-queue", "rabbitmq"));
        assert!(ScaledJob::from_yaml(&other_trigger).is_err());
        let bad_strategy = with_spec(&format!("{MINIMAL}  scalingStrategy:\n    strategy: greedy\n"));
        assert!(ScaledJob::from_yaml(&bad_strategy).is_err());
        let zero_polling = with_spec(&format!("{MINIMAL}  pollingInterval: 0\n"));
        assert!(ScaledJob::from_yaml(&zero_polling).is_err());
        let always = with_spec(&MINIMAL.replace(
            "        containers:",
            "        restartPolicy: Always\n        containers:",
        ));
        assert!(ScaledJob::from_yaml(&always).is_err());
    }

    #[test]
    fn a_not_in_rule_matches_every_other_exit_code() {
        let not_in = ExitCodeRule {
            action: FailureAction::Count,
            inclusive: false,
            values: vec![143],
        };
        assert!(not_in.matches(137) && !not_in.matches(143));
    }

    #[test]
    fn env_source_container_name_picks_the_container() {
        let yaml = with_spec(
            "  envSourceContainerName: encoder
  jobTargetRef:
    template:
      spec:
        containers:
          - name: sidecar
            env: [{name: A, value: sidecar}]
          - name: encoder
            args: [\"--verbose\"]
            env: [{name: A, value: encoder}, {name: EMPTY}]
  triggers:
    - type: aws-sqs-queue
      metadata: {queueURLFromEnv: QUEUE_URL}
",
        );
        let job = ScaledJob::from_yaml(&yaml).unwrap().job;
        assert_eq!(job.container_name, "encoder");
        assert_eq!(job.args, vec!["--verbose".to_owned()]);
        assert_eq!(
            job.env,
            vec![
                ("A".to_owned(), "encoder".to_owned()),
                ("EMPTY".to_owned(), String::new())
            ]
        );
    }
}
