//! Completion notices and waiting callers: with `RESULT_QUEUE_URL` set, every request that ends
//! gets one notice on the results queue, read back here; `producer --wait` waits for its own
//! requests' notices while the encoders run, and exits 0 only when all were processed.

use std::process::Stdio;
use std::time::Duration;

use encoding_common::notice::{Notice, NoticeOutcome};
use serde_json::json;
use test_support::{Kind, LineCollector, Stack, assert_exit, bin, clean_command, media, streams, wait_exit};

/// Every message on `queue`, received and deleted.
async fn drain(stack: &Stack, queue: &str) -> Vec<String> {
    let sqs = stack.aws.sqs().await;
    let mut bodies = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive from the results queue")
            .messages
            .unwrap_or_default();
        if got.is_empty() {
            return bodies;
        }
        for m in got {
            sqs.delete_message()
                .queue_url(queue)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete");
            bodies.push(m.body().unwrap_or_default().to_owned());
        }
    }
}

async fn a_processed_and_a_rejected_request_each_get_one_notice_with_their_outputs_and_reason(kind: Kind) {
    let Some(source) = media("h264_aac_720p30_5s.mp4") else {
        return;
    };
    let stack = Stack::start(kind, "notices", 60).await;
    let results = stack.aws.queue(&stack.aws.unique("results"), &[]).await;
    let uri = stack.upload(&source, "clip.mp4").await;
    stack
        .send(
            &json!({"video_id": "clip", "source": uri, "qualities": ["360p", "480p"], "request_id": "req-ok"})
                .to_string(),
        )
        .await;
    stack
        .send(&json!({"video_id": "gone", "source": stack.source_uri("gone.mp4"), "quality": "360p", "request_id": "req-gone"}).to_string())
        .await;
    for run in 1..=2 {
        assert_exit(
            &stack.encoder(&[("RESULT_QUEUE_URL", &results)]),
            0,
            &format!("{kind}: encoder run {run}"),
        );
    }
    let mut notices: Vec<Notice> = drain(&stack, &results)
        .await
        .iter()
        .map(|b| Notice::from_json(b).unwrap_or_else(|e| panic!("{kind}: not a notice ({e}): {b}")))
        .collect();
    notices.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    assert_eq!(notices.len(), 2, "{kind}: one notice per request: {notices:?}");

    let gone = &notices[0];
    assert_eq!(
        (gone.request_id.as_str(), gone.outcome),
        ("req-gone", NoticeOutcome::Rejected)
    );
    assert!(
        gone.reason.as_deref().unwrap_or("").contains("does not exist"),
        "{kind}: {gone:?}"
    );
    assert!(gone.outputs.is_empty());

    let ok = &notices[1];
    assert_eq!((ok.request_id.as_str(), ok.video_id.as_str()), ("req-ok", "clip"));
    assert_eq!(ok.outcome, NoticeOutcome::Processed);
    assert_eq!(ok.frames, Some(149), "{kind}: the clip's frames: {ok:?}");
    assert!(ok.encode_seconds.unwrap_or(0.0) > 0.0 && ok.source_seconds.is_some());
    assert_eq!(ok.outputs.len(), 2);
    for (out, quality) in ok.outputs.iter().zip(["360p", "480p"]) {
        let key = format!("renditions/clip/{quality}.mp4");
        assert_eq!(out.uri, format!("s3://{}/{key}", stack.output_bucket), "{kind}");
        let probe = stack.rendition("clip", quality).await;
        let local = std::fs::metadata(stack.tmp.join(format!("clip-{quality}.mp4")))
            .unwrap()
            .len();
        assert_eq!(
            out.size,
            Some(local),
            "{kind}: the notice's size is the stored object's"
        );
        let v = streams(&probe, "video");
        assert_eq!(
            (out.width, out.height),
            (
                v[0]["width"].as_u64().map(|w| w as u32),
                v[0]["height"].as_u64().map(|h| h as u32)
            )
        );
        assert_eq!(out.video_codec.as_deref(), Some("h264"));
        assert_eq!(out.audio_codec.as_deref(), Some("aac"));
        let d = test_support::num(&probe["format"]["duration"]);
        assert!(
            (out.duration_seconds.unwrap_or(0.0) - d).abs() < 0.1,
            "{kind}: {out:?} against {d}"
        );
    }
    assert_eq!(stack.depth().await, (0, 0), "{kind}");
}

async fn producer_wait_exits_0_once_every_request_it_sent_is_processed_and_leaves_other_notices(kind: Kind) {
    let Some(source) = media("h264_aac_1080x720_1s.mp4") else {
        return;
    };
    let stack = Stack::start(kind, "wait", 60).await;
    let results = stack.aws.queue(&stack.aws.unique("results"), &[]).await;
    // A notice of someone else's request, already waiting on the results queue.
    let foreign = Notice::new("someone-else", "other", NoticeOutcome::Processed).to_json();
    stack
        .aws
        .sqs()
        .await
        .send_message()
        .queue_url(&results)
        .message_body(&foreign)
        .send()
        .await
        .unwrap();
    let uri = stack.upload(&source, "clip.mp4").await;
    let args = [
        "--source",
        &uri,
        "--quality",
        "360p",
        "--quality",
        "480p",
        "--video-id",
        "clip",
        "--wait",
        "--result-queue-url",
        &results,
        "--wait-timeout-seconds",
        "240",
    ];
    let mut cmd = clean_command(&bin("producer"), &args, &stack.env);
    cmd.stdout(Stdio::null());
    let mut producer = cmd.spawn().expect("start the producer");
    let lines = LineCollector::new(producer.stderr.take().unwrap());
    assert!(
        test_support::wait_for_line(&lines, "waiting for the outcomes", Duration::from_secs(60)),
        "{kind}: {}",
        lines.lines().join("\n")
    );
    assert_eq!(
        wait_exit(&mut producer, Duration::from_secs(3)),
        None,
        "{kind}: it waits"
    );
    for run in 1..=2 {
        assert_exit(
            &stack.encoder(&[("RESULT_QUEUE_URL", &results)]),
            0,
            &format!("{kind}: encoder run {run}"),
        );
    }
    let code = wait_exit(&mut producer, Duration::from_secs(60));
    let log = lines.lines().join("\n");
    assert_eq!(code, Some(0), "{kind}: {log}");
    assert_eq!(log.matches("outcome=processed").count(), 2, "{kind}: {log}");
    // Its own notices were taken; the other one is still there for its caller.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(drain(&stack, &results).await, [foreign], "{kind}");
}

async fn producer_wait_exits_1_naming_a_rejected_request(kind: Kind) {
    let stack = Stack::start(kind, "wait-reject", 60).await;
    let results = stack.aws.queue(&stack.aws.unique("results"), &[]).await;
    let missing = stack.source_uri("missing.mp4");
    let args = [
        "--source",
        &missing,
        "--quality",
        "360p",
        "--video-id",
        "missing",
        "--wait",
        "--result-queue-url",
        &results,
    ];
    let mut cmd = clean_command(&bin("producer"), &args, &stack.env);
    cmd.stdout(Stdio::null());
    let mut producer = cmd.spawn().expect("start the producer");
    let lines = LineCollector::new(producer.stderr.take().unwrap());
    assert!(test_support::wait_for_line(
        &lines,
        "waiting for the outcomes",
        Duration::from_secs(60)
    ));
    assert_exit(&stack.encoder(&[("RESULT_QUEUE_URL", &results)]), 0, "encoder");
    let code = wait_exit(&mut producer, Duration::from_secs(60));
    let log = lines.lines().join("\n");
    assert_eq!(code, Some(1), "{kind}: {log}");
    assert!(
        log.contains("1 request(s) not processed: missing (request_id"),
        "{kind}: {log}"
    );
    assert!(log.contains("rejected, the source object"), "{kind}: {log}");
}

async fn producer_wait_gives_up_at_its_time_limit_naming_what_is_pending(kind: Kind) {
    let stack = Stack::start(kind, "wait-limit", 60).await;
    let results = stack.aws.queue(&stack.aws.unique("results"), &[]).await;
    let out = stack.producer(&[
        "--source",
        &stack.source_uri("a.mp4"),
        "--quality",
        "360p",
        "--video-id",
        "slow",
        "--wait",
        "--result-queue-url",
        &results,
        "--wait-timeout-seconds",
        "2",
    ]);
    assert_exit(&out, 1, &format!("{kind}: producer"));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("1 request(s) with no outcome yet: slow (request_id"),
        "{kind}: {log}"
    );
}

test_support::on_both_emulators!(
    a_processed_and_a_rejected_request_each_get_one_notice_with_their_outputs_and_reason,
    producer_wait_exits_0_once_every_request_it_sent_is_processed_and_leaves_other_notices,
    producer_wait_exits_1_naming_a_rejected_request,
    producer_wait_gives_up_at_its_time_limit_naming_what_is_pending,
);
