//! The ScaledJob as serde reads it from YAML: the fields of KEDA's CRD that local-scaler reads
//! or reports as ignored, with their YAML names (camelCase), each optional where the CRD allows
//! it to be left out. Unknown fields are skipped. Nothing here is checked and no default is
//! applied: [`super`] does both, turning a [`RawScaledJob`] into a [`super::ScaledJob`].

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml_ng::Value;

/// A document with `kind: ScaledJob`.
#[derive(Debug, Deserialize)]
pub struct RawScaledJob {
    pub metadata: RawMetadata,
    pub spec: RawSpec,
}

/// `metadata`.
#[derive(Debug, Deserialize)]
pub struct RawMetadata {
    pub name: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, Value>,
}

/// `spec`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawSpec {
    pub job_target_ref: RawJobSpec,
    pub polling_interval: Option<i64>,
    pub successful_jobs_history_limit: Option<i64>,
    pub failed_jobs_history_limit: Option<i64>,
    pub env_source_container_name: Option<String>,
    pub min_replica_count: Option<i64>,
    pub max_replica_count: Option<i64>,
    #[serde(default)]
    pub scaling_strategy: RawScalingStrategy,
    pub triggers: Vec<RawTrigger>,
    pub rollout: Option<Value>,
    pub rollout_strategy: Option<String>,
}

/// `spec.scalingStrategy`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawScalingStrategy {
    pub strategy: Option<String>,
    pub custom_scaling_queue_length_deduction: Option<i64>,
    pub custom_scaling_running_job_percentage: Option<String>,
    #[serde(default)]
    pub pending_pod_conditions: Vec<String>,
    pub multiple_scalers_calculation: Option<String>,
}

/// One of `spec.triggers`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawTrigger {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, Value>,
    pub authentication_ref: Option<Value>,
    pub metric_type: Option<String>,
}

/// `spec.jobTargetRef`: the spec of every Job.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawJobSpec {
    pub active_deadline_seconds: Option<i64>,
    pub backoff_limit: Option<i64>,
    pub parallelism: Option<i64>,
    pub completions: Option<i64>,
    pub pod_failure_policy: Option<RawPodFailurePolicy>,
    pub template: RawPodTemplate,
}

/// `spec.jobTargetRef.podFailurePolicy`.
#[derive(Debug, Deserialize)]
pub struct RawPodFailurePolicy {
    #[serde(default)]
    pub rules: Vec<RawPodFailureRule>,
}

/// One of `podFailurePolicy.rules`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawPodFailureRule {
    pub action: String,
    pub on_exit_codes: Option<RawOnExitCodes>,
    pub on_pod_conditions: Option<Value>,
}

/// A rule's `onExitCodes`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawOnExitCodes {
    pub container_name: Option<String>,
    pub operator: String,
    #[serde(default)]
    pub values: Vec<i32>,
}

/// `spec.jobTargetRef.template`.
#[derive(Debug, Deserialize)]
pub struct RawPodTemplate {
    pub spec: RawPodSpec,
}

/// `spec.jobTargetRef.template.spec`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawPodSpec {
    pub termination_grace_period_seconds: Option<i64>,
    pub restart_policy: Option<String>,
    #[serde(default)]
    pub containers: Vec<RawContainer>,
}

/// One of the pod's `containers`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawContainer {
    pub name: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<RawEnvVar>,
    #[serde(default)]
    pub env_from: Vec<Value>,
    #[serde(default)]
    pub volume_mounts: Vec<RawVolumeMount>,
}

/// One of a container's `volumeMounts`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawVolumeMount {
    pub mount_path: String,
}

/// One of a container's `env` entries.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawEnvVar {
    pub name: String,
    pub value: Option<Value>,
    pub value_from: Option<Value>,
}
