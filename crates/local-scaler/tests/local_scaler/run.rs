use std::collections::BTreeSet;
use std::process::Output;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use test_support::{Emulator, Kind};

use crate::helpers::{configure, encoder_log, fixture, local_scaler, queue_with, scratch, summary, write_manifest};

/// Runs local-scaler on the fake SQS encoder until it exits (at most `limit`).
async fn run_until_done(
    aws: &Emulator,
    queue_url: &str,
    dir: &std::path::Path,
    manifest: &std::path::Path,
    limit: Duration,
) -> Output {
    let mut command = local_scaler();
    configure(aws, &mut command);
    command
        .arg("run")
        .arg("--scaledjob")
        .arg(manifest)
        .arg("--until-empty")
        .arg("--encoder-bin")
        .arg(fixture("fake-sqs-encoder.py"))
        .env("QUEUE_URL", queue_url)
        .env("FAKE_ENCODER_LOG", dir.join("encoder.jsonl"));
    tokio::time::timeout(limit, command.output())
        .await
        .unwrap_or_else(|_| panic!("local-scaler did not finish within {limit:?}"))
        .unwrap()
}

async fn every_message_is_processed_and_an_empty_queue_ends_the_run_with_status_0(kind: Kind) {
    let aws = Emulator::shared(kind);
    let bodies = ["m1", "m2", "m3", "m4", "m5"];
    let url = queue_with(aws, &aws.unique("work"), &bodies).await;
    let dir = scratch("all-processed");
    let manifest = write_manifest(&dir, 60, 2);

    let output = run_until_done(aws, &url, &dir, &manifest, Duration::from_secs(120)).await;

    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = summary(&output.stdout);
    assert_eq!(summary["ending"], "queue_empty");
    assert_eq!(summary["failed"], 0);
    assert!(summary["succeeded"].as_u64().unwrap() >= 5, "{summary}");

    let log = encoder_log(&dir.join("encoder.jsonl"));
    let processed: BTreeSet<&str> = log
        .iter()
        .filter(|l| l["event"] == "processed")
        .map(|l| l["body"].as_str().unwrap())
        .collect();
    assert_eq!(processed, bodies.into_iter().collect());
    for line in &log {
        // The environment of local-scaler overrides the manifest's literal endpoint...
        assert_eq!(line["endpoint"], aws.url.as_str(), "{line}");
        // ...the other literals apply, and the Job gets the queue local-scaler watches.
        assert_eq!(line["output_uri"], "s3://from-manifest/renditions", "{line}");
        assert_eq!(line["queue_url"], url.as_str(), "{line}");
        assert!(line["host"].as_str().unwrap().starts_with("fake-"), "{line}");
    }

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("scaling decision"), "every decision is logged");
    assert!(
        stderr.contains("removed a finished Job from the history"),
        "successfulJobsHistoryLimit 2 prunes"
    );
}

async fn a_job_past_its_deadline_is_terminated_and_the_run_ends_with_status_1(kind: Kind) {
    let aws = Emulator::shared(kind);
    let url = queue_with(aws, &aws.unique("slow"), &["hang"]).await;
    let dir = scratch("deadline");
    let (deadline, grace) = (5, 2);
    let manifest = write_manifest(&dir, deadline, grace);

    let started = Instant::now();
    let output = run_until_done(aws, &url, &dir, &manifest, Duration::from_secs(60)).await;
    let elapsed = started.elapsed();

    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = summary(&output.stdout);
    assert_eq!(summary["deadline_exceeded"], 1, "{summary}");
    assert_eq!(summary["unexpected_failures"], 1, "{summary}");
    let log = encoder_log(&dir.join("encoder.jsonl"));
    assert!(log.iter().any(|l| l["event"] == "hanging"), "{log:?}");
    assert!(
        log.iter().any(|l| l["event"] == "term"),
        "the encoder got SIGTERM: {log:?}"
    );
    assert!(!log.iter().any(|l| l["event"] == "processed"), "{log:?}");
    // Deadline, then at most the grace period, then one polling interval and the final check.
    assert!(
        elapsed < Duration::from_secs(u64::from(deadline + grace) + 10),
        "{elapsed:?}"
    );
}

async fn sigterm_to_local_scaler_stops_the_encoders_first_and_exits_143(kind: Kind) {
    let aws = Emulator::shared(kind);
    let url = queue_with(aws, &aws.unique("stop"), &["hang"]).await;
    let dir = scratch("sigterm");
    let manifest = write_manifest(&dir, 600, 5);
    let log_path = dir.join("encoder.jsonl");

    let mut command = local_scaler();
    configure(aws, &mut command);
    let child = command
        .arg("run")
        .arg("--scaledjob")
        .arg(&manifest)
        .arg("--encoder-bin")
        .arg(fixture("fake-sqs-encoder.py"))
        .env("QUEUE_URL", &url)
        .env("FAKE_ENCODER_LOG", &log_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());

    let waiting = Instant::now();
    while !encoder_log(&log_path).iter().any(|l| l["event"] == "hanging") {
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "the encoder never took the message"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stopped = Instant::now();
    kill(pid, Signal::SIGTERM).unwrap();
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("local-scaler did not stop")
        .unwrap();

    assert_eq!(
        output.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "the encoder stops at SIGTERM, well within the grace period"
    );
    assert!(encoder_log(&log_path).iter().any(|l| l["event"] == "term"));
    let summary = summary(&output.stdout);
    assert_eq!(summary["ending"], "terminated");
    assert_eq!(summary["stopped"], 1, "{summary}");
}

#[tokio::test]
async fn configuration_errors_end_the_run_with_status_2() {
    let dir = scratch("config");
    let missing = local_scaler()
        .args(["run", "--scaledjob"])
        .arg(dir.join("absent.yaml"))
        .output()
        .await
        .unwrap();
    assert_eq!(missing.status.code(), Some(2), "{missing:?}");

    let manifest = write_manifest(&dir, 60, 1);
    let no_encoder = local_scaler()
        .args(["run", "--scaledjob"])
        .arg(&manifest)
        .args(["--queue-url", "http://127.0.0.1:9/1/q", "--encoder-bin"])
        .arg(dir.join("no-such-encoder"))
        .output()
        .await
        .unwrap();
    assert_eq!(no_encoder.status.code(), Some(2), "{no_encoder:?}");
    assert!(String::from_utf8_lossy(&no_encoder.stderr).contains("no-such-encoder"));

    // The manifest's queueURLFromEnv names QUEUE_URL, which is unset: no queue to watch.
    let no_queue = local_scaler()
        .args(["run", "--scaledjob"])
        .arg(&manifest)
        .arg("--encoder-bin")
        .arg(fixture("fake-encoder.sh"))
        .output()
        .await
        .unwrap();
    assert_eq!(no_queue.status.code(), Some(2), "{no_queue:?}");
}

test_support::on_both_emulators!(
    every_message_is_processed_and_an_empty_queue_ends_the_run_with_status_0,
    a_job_past_its_deadline_is_terminated_and_the_run_ends_with_status_1,
    sigterm_to_local_scaler_stops_the_encoders_first_and_exits_143,
);
