//! The encoder's promises about its message, whatever happens: lease renewal, signals, dead
//! letters, duplicates, failures, configuration errors. Every test runs the real encoder against
//! each emulator with real media and reads the queue, the buckets and the analyzer back.

use std::time::{Duration, Instant};

use serde_json::json;
use test_support::{Kind, Stack, assert_exit, free_port, make_clip, media, signal, streams, wait_exit, wait_for_line};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn the_lease_is_renewed_so_a_long_encode_is_never_handed_to_a_second_receiver(kind: Kind) {
    let stack = Stack::start(kind, "lease", 6).await;
    let clip = stack.tmp.join("long.mp4");
    // 45 s of 1080p made into three renditions: well over 20 s of work on a 2-core machine.
    make_clip(&clip, 45);
    let source = stack.upload(&clip, "long.mp4").await;
    let body =
        json!({"video_id": "long", "source": source, "qualities": ["1080p", "720p", "480p"], "request_id": "req-long"});
    stack.send(&body.to_string()).await;

    let started = Instant::now();
    let (mut child, lines) = stack.spawn_encoder(&[]);
    // The second receiver starts polling once the encoder holds the message.
    assert!(wait_for_line(&lines, "received a message", Duration::from_secs(30)));
    let stolen = stack.receive_while_running(&mut child).await;
    let code = wait_exit(&mut child, Duration::from_secs(5)).expect("exited");
    let elapsed = started.elapsed();
    assert_eq!(code, 0, "{}", lines.lines().join("\n"));
    assert!(
        elapsed > Duration::from_secs(20),
        "the work took only {elapsed:?}; the test needs over 20 s"
    );
    assert_eq!(
        stolen, 0,
        "a second receiver got the message while it was being encoded"
    );
    assert_eq!(stack.depth().await, (0, 0));
    assert_eq!(stack.get_count().await.len(), 1);

    // Progress was logged while encoding, with percent and frames per second.
    let progress: Vec<String> = lines
        .lines()
        .into_iter()
        .filter(|l| l.contains("}: encoding "))
        .collect();
    assert!(progress.len() >= 3, "progress lines: {progress:?}");
    assert!(
        progress.iter().all(|l| l.contains("percent=") && l.contains("fps=")),
        "{progress:?}"
    );

    // Reports carry the request's identifiers, the receive count, the host and timings.
    let started_events = stack.events("started").await;
    assert_eq!(started_events.len(), 1);
    let s = &started_events[0];
    assert_eq!(s["video_id"], "long");
    assert_eq!(s["request_id"], "req-long");
    assert_eq!(s["receive_count"], 1);
    assert!(s["message_id"].as_str().is_some_and(|m| !m.is_empty()), "{s}");
    assert!(s["host"].as_str().is_some_and(|h| !h.is_empty()), "{s}");
    let processed = stack.events("processed").await;
    let p = &processed[0];
    assert_eq!(p["run_id"], s["run_id"]);
    assert_eq!(p["qualities"], json!(["1080p", "720p", "480p"]));
    assert!(p["encode_seconds"].as_f64().unwrap() > 10.0, "{p}");
    assert_eq!(p["frames"], 1350);
    assert!(p["fps"].as_f64().unwrap() > 0.0, "{p}");
    assert_eq!(p["outputs"].as_array().map(Vec::len), Some(3), "{p}");
}

async fn sigterm_mid_encode_releases_the_message_at_once_reports_the_kill_and_exits_143(kind: Kind) {
    let stack = Stack::start(kind, "sigterm", 60).await;
    let clip = stack.tmp.join("clip.mp4");
    make_clip(&clip, 20);
    let source = stack.upload(&clip, "clip.mp4").await;
    stack
        .send(&json!({"video_id": "clip", "source": source, "quality": "1080p", "request_id": "req-term"}).to_string())
        .await;

    let (mut child, lines) = stack.spawn_encoder(&[]);
    assert!(
        wait_for_line(&lines, "encoding", Duration::from_secs(60)),
        "no progress line: {}",
        lines.lines().join("\n")
    );
    signal(&child, libc::SIGTERM);
    let t = Instant::now();
    let code = wait_exit(&mut child, Duration::from_secs(15)).expect("the encoder stops");
    assert_eq!(code, 143, "{}", lines.lines().join("\n"));
    assert!(t.elapsed() < Duration::from_secs(5), "stopping took {:?}", t.elapsed());

    // Visible again at once (the lease was 60 s), for its second delivery.
    let again = stack
        .aws
        .sqs()
        .await
        .receive_message()
        .queue_url(&stack.queue)
        .wait_time_seconds(2)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default();
    assert_eq!(again.len(), 1, "the message was not released");
    assert!(stack.output_keys().await.is_empty(), "something was published");
    let count = stack.get_count().await;
    assert_eq!(count.len(), 1, "{count:?}");
    assert!(count[0].ends_with(" - kill count 1"), "{count:?}");
    let killed = stack.events("killed").await;
    assert_eq!(killed[0]["request_id"], "req-term");
}

async fn sigkill_mid_encode_publishes_nothing_and_the_message_returns_when_its_lease_ends(kind: Kind) {
    let stack = Stack::start(kind, "sigkill", 6).await;
    let clip = stack.tmp.join("clip.mp4");
    make_clip(&clip, 12);
    let source = stack.upload(&clip, "clip.mp4").await;
    stack
        .send(&json!({"video_id": "clip", "source": source, "quality": "720p"}).to_string())
        .await;

    let (mut child, lines) = stack.spawn_encoder(&[]);
    assert!(wait_for_line(&lines, "downloaded the source", Duration::from_secs(60)));
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, libc::SIGKILL);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)), Some(128 + libc::SIGKILL));
    assert!(stack.output_keys().await.is_empty(), "something partial was published");
    assert_eq!(stack.depth().await, (0, 1), "the message is still leased");

    // When the lease ends, a new run takes it and finishes the work.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let out = stack.encoder(&[]);
    assert_exit(&out, 0, "the run after the kill");
    let probe = stack.rendition("clip", "720p").await;
    assert_eq!(streams(&probe, "video")[0]["height"], 720);
    assert_eq!(stack.depth().await, (0, 0));
}

async fn invalid_requests_go_to_the_dead_letter_queue_with_the_reason_and_are_reported(kind: Kind) {
    let stack = Stack::start(kind, "invalid", 60).await;
    let audio = media("audio_only_aac.mp4");
    let truncated = media("DERIVED_truncated_moov_first.mp4");
    let mut cases: Vec<(String, &str)> = vec![
        ("{not json".into(), "not a valid encode request"),
        (
            json!({"video_id": "v", "source": stack.source_uri("a.mp4"), "qualty": "720p"}).to_string(),
            "unknown field `qualty`",
        ),
        (
            json!({"video_id": "v", "source": stack.source_uri("missing.mp4"), "quality": "720p"}).to_string(),
            "does not exist",
        ),
    ];
    if let (Some(audio), Some(truncated)) = (audio, truncated) {
        let a = stack.upload(&audio, "audio.mp4").await;
        let t = stack.upload(&truncated, "truncated.mp4").await;
        cases.push((
            json!({"video_id": "audio", "source": a, "quality": "480p"}).to_string(),
            "audio-only",
        ));
        cases.push((
            json!({"video_id": "cut", "source": t, "quality": "480p"}).to_string(),
            "57 of 149 announced frames decoded",
        ));
    }
    for (body, _) in &cases {
        stack.send(body).await;
        let out = stack.encoder(&[]);
        assert_exit(&out, 0, &format!("the encoder on {body}"));
    }
    assert_eq!(stack.depth().await, (0, 0), "a rejected message stayed on the queue");
    assert!(
        stack.output_keys().await.is_empty(),
        "a rejected request published something"
    );

    let mut dead = Vec::new();
    for _ in 0..10 {
        dead = stack.dead_letters().await;
        if dead.len() == cases.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    assert_eq!(dead.len(), cases.len(), "dead letters: {dead:?}");
    for (body, reason) in &cases {
        let m = dead
            .iter()
            .find(|m| m.body() == Some(body.as_str()))
            .unwrap_or_else(|| panic!("{body} is not in the dead-letter queue"));
        let why = m
            .message_attributes()
            .and_then(|a| a.get("rejection-reason"))
            .and_then(|v| v.string_value())
            .unwrap_or_default();
        assert!(why.contains(reason), "{body}: reason {why:?} should mention {reason:?}");
    }
    let rejected = stack.events("rejected").await;
    assert_eq!(rejected.len(), cases.len());
    for (event, (_, reason)) in rejected.iter().zip(&cases) {
        assert!(event["reason"].as_str().unwrap_or("").contains(reason), "{event}");
    }
}

async fn without_a_dead_letter_queue_a_rejected_message_is_logged_whole_reported_and_deleted(kind: Kind) {
    let stack = Stack::start(kind, "nodlq", 60).await;
    let sqs = stack.aws.sqs().await;
    let plain = sqs
        .create_queue()
        .queue_name(stack.aws.unique("no-dlq"))
        .send()
        .await
        .expect("create")
        .queue_url
        .expect("url");
    let body = r#"{"video_id":"v","source":"s3://media-in/uploads/a.mp4","quality":"720p","extra":1}"#;
    sqs.send_message()
        .queue_url(&plain)
        .message_body(body)
        .send()
        .await
        .expect("send");
    let out = stack.encoder(&[("QUEUE_URL", &plain)]);
    assert_exit(&out, 0, "the encoder");
    assert!(stderr(&out).contains("no dead-letter queue"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(r#"\"extra\":1"#) || stderr(&out).contains(r#""extra":1"#),
        "{}",
        stderr(&out)
    );
    assert_eq!(stack.aws.depth(&plain).await, (0, 0));
    assert_eq!(stack.events("rejected").await.len(), 1);
}

async fn a_request_whose_renditions_exist_is_skipped_as_a_duplicate(kind: Kind) {
    let Some(source) = media("h264_aac_1080x720_1s.mp4") else {
        return;
    };
    let stack = Stack::start(kind, "duplicate", 60).await;
    let uri = stack.upload(&source, "clip.mp4").await;
    let produce = || stack.producer(&["--source", &uri, "--quality", "480p", "--video-id", "clip"]);
    assert_exit(&produce(), 0, "producer");
    assert_exit(&stack.encoder(&[]), 0, "first run");
    let s3 = stack.aws.s3().await;
    let head = || {
        s3.head_object()
            .bucket(&stack.output_bucket)
            .key("renditions/clip/480p.mp4")
            .send()
    };
    let first = head().await.expect("stored").last_modified;

    // The same request again (another request id): nothing is encoded, nothing rewritten.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_exit(&produce(), 0, "producer");
    let out = stack.encoder(&[]);
    assert_exit(&out, 0, "second run");
    assert!(!stderr(&out).contains("transcoded"), "the duplicate was encoded again");
    assert_eq!(head().await.expect("still stored").last_modified, first);
    assert_eq!(stack.depth().await, (0, 0));
    assert_eq!(stack.events("duplicate").await.len(), 1);
    assert_eq!(stack.get_count().await.len(), 1);

    // A new source content under the same key is encoded again.
    let other = media("video_only_h264_1080x720.mp4").expect("media present");
    stack.upload(&other, "clip.mp4").await;
    assert_exit(&produce(), 0, "producer");
    let out = stack.encoder(&[]);
    assert_exit(&out, 0, "third run");
    assert!(stderr(&out).contains("transcoded"), "a changed source was skipped");
    assert_eq!(stack.get_count().await.len(), 2);
}

async fn a_redelivered_request_is_counted_once(kind: Kind) {
    let Some(source) = media("h264_aac_1080x720_1s.mp4") else {
        return;
    };
    let stack = Stack::start(kind, "redelivery", 60).await;
    let uri = stack.upload(&source, "clip.mp4").await;
    let body = json!({"video_id": "clip", "source": uri, "quality": "360p", "request_id": "same-request"}).to_string();
    stack.send(&body).await;
    stack.send(&body).await;
    assert_exit(&stack.encoder(&[]), 0, "first delivery");
    let out = stack.encoder(&[]);
    assert_exit(&out, 0, "second delivery");
    assert!(stderr(&out).contains("already stored"), "{}", stderr(&out));
    let count = stack.get_count().await;
    assert_eq!(count.len(), 1, "{count:?}");
    assert_eq!(stack.events("duplicate").await.len(), 1);
    assert_eq!(stack.depth().await, (0, 0));
}

async fn when_s3_is_down_the_message_is_released_and_redrive_takes_it_to_the_dead_letter_queue(kind: Kind) {
    let stack = Stack::start_with(kind, "s3down", 60, 2).await;
    stack
        .send(&json!({"video_id": "v", "source": stack.source_uri("a.mp4"), "quality": "720p"}).to_string())
        .await;
    let dead_s3 = format!("http://127.0.0.1:{}", free_port());
    for attempt in 1..=2 {
        let out = stack.encoder(&[("AWS_ENDPOINT_URL_S3", &dead_s3)]);
        assert_exit(&out, 1, &format!("attempt {attempt} with S3 down"));
        // Released at once, not after the 60 s lease.
        assert_eq!(stack.depth().await, (1, 0), "attempt {attempt}");
    }
    let failed = stack.events("failed").await;
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[1]["receive_count"], 2);
    assert!(
        failed[0]["reason"].as_str().unwrap_or("").contains("source"),
        "{}",
        failed[0]
    );
    // The third receive exceeds maxReceiveCount: SQS moves the message to the dead-letter queue.
    let out = stack.encoder(&[("AWS_ENDPOINT_URL_S3", &dead_s3)]);
    assert_exit(&out, 0, "the run after maxReceiveCount");
    assert_eq!(stack.depth().await, (0, 0));
    assert_eq!(stack.dead_letters().await.len(), 1);
}

async fn an_unreachable_analyzer_never_fails_a_job(kind: Kind) {
    let Some(source) = media("video_only_h264_1080x720.mp4") else {
        return;
    };
    let stack = Stack::start(kind, "noanalyzer", 60).await;
    let uri = stack.upload(&source, "clip.mp4").await;
    stack
        .send(&json!({"video_id": "clip", "source": uri, "quality": "480p"}).to_string())
        .await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let t = Instant::now();
    let out = stack.encoder(&[("ANALYZER_URL", &dead)]);
    assert_exit(&out, 0, "the encoder with the analyzer down");
    assert!(
        stderr(&out).contains("the analyzer could not be reached"),
        "{}",
        stderr(&out)
    );
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "reports held the job for {:?}",
        t.elapsed()
    );
    let probe = stack.rendition("clip", "480p").await;
    assert!(
        streams(&probe, "audio").is_empty(),
        "a video-only source stays video-only"
    );
    assert_eq!(stack.depth().await, (0, 0));
}

async fn a_configuration_error_exits_2_without_touching_the_queue(kind: Kind) {
    let stack = Stack::start(kind, "config", 60).await;
    stack
        .send(&json!({"video_id": "v", "source": stack.source_uri("a.mp4"), "quality": "720p"}).to_string())
        .await;
    for (extra, says) in [
        (vec![("QUEUE_URL", "")], "QUEUE_URL is required"),
        (vec![("VISIBILITY_TIMEOUT_SECONDS", "0")], "VISIBILITY_TIMEOUT_SECONDS"),
        (
            vec![("VISIBILITY_TIMEOUT_SECONDS", "soon")],
            "visibility-timeout-seconds",
        ),
        (vec![("OUTPUT_URI", "media-out")], "OUTPUT_URI"),
        (vec![("RECEIVE_WAIT_SECONDS", "30")], "RECEIVE_WAIT_SECONDS"),
    ] {
        let out = stack.encoder(&extra);
        assert_exit(&out, 2, &format!("{extra:?}"));
        assert!(stderr(&out).contains(says), "{extra:?}: {}", stderr(&out));
    }
    assert_eq!(stack.depth().await, (1, 0), "a misconfigured run received the message");
}

test_support::on_both_emulators!(
    the_lease_is_renewed_so_a_long_encode_is_never_handed_to_a_second_receiver,
    sigterm_mid_encode_releases_the_message_at_once_reports_the_kill_and_exits_143,
    sigkill_mid_encode_publishes_nothing_and_the_message_returns_when_its_lease_ends,
    invalid_requests_go_to_the_dead_letter_queue_with_the_reason_and_are_reported,
    without_a_dead_letter_queue_a_rejected_message_is_logged_whole_reported_and_deleted,
    a_request_whose_renditions_exist_is_skipped_as_a_duplicate,
    a_redelivered_request_is_counted_once,
    when_s3_is_down_the_message_is_released_and_redrive_takes_it_to_the_dead_letter_queue,
    an_unreachable_analyzer_never_fails_a_job,
    a_configuration_error_exits_2_without_touching_the_queue,
);
