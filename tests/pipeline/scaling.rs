//! local-scaler with the real ScaledJob manifest: KEDA's arithmetic deciding how many encoder
//! processes run, measured from the analyzer's events.

use std::time::Duration;

use test_support::{Kind, Stack, assert_exit, bin, media, run};

/// The repository's ScaledJob, with `maxReplicaCount` and `pollingInterval` set for the test.
fn manifest(max_replicas: u32, polling_seconds: u32) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s/base/encoder-scaledjob.yaml");
    let yaml = std::fs::read_to_string(&path).expect("the ScaledJob manifest");
    let mut replaced = (false, false);
    let out: Vec<String> = yaml
        .lines()
        .map(|l| {
            if l.starts_with("  maxReplicaCount:") {
                replaced.0 = true;
                format!("  maxReplicaCount: {max_replicas}")
            } else if l.starts_with("  pollingInterval:") {
                replaced.1 = true;
                format!("  pollingInterval: {polling_seconds}")
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert_eq!(
        replaced,
        (true, true),
        "the manifest's spec no longer has these fields where expected"
    );
    out.join("\n")
}

/// Runs local-scaler with the repository's ScaledJob (at most `max_replicas` Jobs, polling every
/// second) on the stack's queue until it is empty.
pub(crate) fn run_until_empty(stack: &Stack, max_replicas: u32, timeout: Duration) -> std::process::Output {
    let scaledjob = stack.tmp.join("scaledjob.yaml");
    std::fs::write(&scaledjob, manifest(max_replicas, 1)).unwrap();
    let mut env = stack.env.clone();
    env.push(("ENCODER_BIN".into(), bin("encoder").display().to_string()));
    run(
        &bin("local-scaler"),
        &["run", "--scaledjob", &scaledjob.display().to_string(), "--until-empty"],
        &env,
        timeout,
    )
}

async fn twelve_requests_with_max_replicas_three_never_run_more_than_three_encoders_and_each_is_processed_once(
    kind: Kind,
) {
    let Some(source) = media("h264_aac_1080x720_1s.mp4") else {
        return;
    };
    let stack = Stack::start(kind, "scaling", 60).await;
    let uri = stack.upload(&source, "clip.mp4").await;
    assert_exit(
        &stack.producer(&[
            "--source",
            &uri,
            "--quality",
            "360p",
            "--video-id",
            "fan",
            "--count",
            "12",
        ]),
        0,
        "producer",
    );
    let out = run_until_empty(&stack, 3, Duration::from_secs(300));
    assert_exit(&out, 0, "local-scaler");
    let summary: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("a summary line"),
    )
    .expect("the summary is JSON");
    assert_eq!(summary["ending"], "queue_empty", "{summary}");

    // Never more than three encoders at once, as measured by the analyzer; and they did fan out.
    let s = stack.analyzer.get_json("/summary").await;
    let peak = s["peak_concurrent_runs"].as_u64().unwrap();
    assert!(peak <= 3, "{peak} encoders ran at once: {s}");
    assert!(peak >= 2, "the Jobs never ran in parallel: {s}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("scaling decision"), "decisions are logged");

    // Every request processed exactly once.
    assert_eq!(s["counts"]["processed"], 12, "{s}");
    assert_eq!(s["counts"]["duplicate"], 0, "{s}");
    let mut keys = stack.output_keys().await;
    keys.sort();
    let mut expected: Vec<String> = (1..=12).map(|i| format!("renditions/fan-{i}/360p.mp4")).collect();
    expected.sort();
    assert_eq!(keys, expected);
    assert_eq!(stack.depth().await, (0, 0));
}

test_support::on_both_emulators!(
    twelve_requests_with_max_replicas_three_never_run_more_than_three_encoders_and_each_is_processed_once,
);
