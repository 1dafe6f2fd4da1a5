use std::path::{Path, PathBuf};

/// The binary under test.
pub fn local_scaler() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_local-scaler"));
    // Nothing from the developer's environment may leak into the run.
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_")
            || name.starts_with("LOCAL_SCALER_")
            || ["QUEUE_URL", "ENCODER_BIN", "LOG_FORMAT", "OUTPUT_URI"].contains(&name.as_str())
        {
            command.env_remove(name);
        }
    }
    command.env("RUST_LOG", "info").kill_on_drop(true);
    command
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A fresh directory for one test, removed when dropped.
pub fn scratch(name: &str) -> TempDir {
    TempDir::new(&format!("local-scaler-it-{name}"))
}

use test_support::{Emulator, TempDir};

/// A new queue on the emulator holding `bodies`; returns its URL.
pub async fn queue_with(aws: &Emulator, name: &str, bodies: &[&str]) -> String {
    let sqs = aws.sqs().await;
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    for body in bodies {
        sqs.send_message()
            .queue_url(&url)
            .message_body(*body)
            .send()
            .await
            .unwrap();
    }
    url
}

/// Points a local-scaler run at the emulator.
pub fn configure(aws: &Emulator, command: &mut tokio::process::Command) {
    command.envs(aws.env());
}

/// A ScaledJob manifest for the fake SQS encoder, written into `dir`.
pub fn write_manifest(dir: &Path, deadline_seconds: u32, grace_seconds: u32) -> PathBuf {
    let yaml = format!(
        "apiVersion: keda.sh/v1alpha1
kind: ScaledJob
metadata:
  name: fake
spec:
  pollingInterval: 1
  maxReplicaCount: 3
  successfulJobsHistoryLimit: 2
  failedJobsHistoryLimit: 2
  triggers:
    - type: aws-sqs-queue
      metadata:
        queueURLFromEnv: QUEUE_URL
        queueLength: \"1\"
        awsRegion: us-east-1
  jobTargetRef:
    activeDeadlineSeconds: {deadline_seconds}
    backoffLimit: 0
    template:
      spec:
        restartPolicy: Never
        terminationGracePeriodSeconds: {grace_seconds}
        containers:
          - name: encoder
            image: encoder:dev
            env:
              - name: AWS_ENDPOINT_URL
                value: http://moto.in-cluster.invalid:5000
              - name: OUTPUT_URI
                value: s3://from-manifest/renditions
              - name: RECEIVE_WAIT_SECONDS
                value: \"1\"
"
    );
    let path = dir.join("scaledjob.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// The JSON lines the fake SQS encoder wrote.
pub fn encoder_log(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The last stdout line of a run: its JSON summary.
pub fn summary(stdout: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(stdout);
    let last = text.lines().last().unwrap_or_else(|| panic!("no summary on stdout"));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("summary is not JSON ({e}): {last}"))
}
