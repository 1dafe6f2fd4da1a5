//! Network faults in the middle of a job: SQS and S3 unreachable for 10 s (a TCP fault proxy sits
//! between the encoder and the emulator and cuts the line; every byte that passes goes to the
//! real emulator). Whatever the encoder does about it, completing through its retries or
//! releasing the message, the request ends with exactly one valid output, counted once, and
//! nothing half-written or left behind.

use std::time::{Duration, Instant};

use aws_sdk_s3::types::ChecksumMode;
use serde_json::json;
use test_support::{
    Fault, FaultProxy, Kind, Stack, assert_exit, make_clip, make_noisy_clip, streams, wait_exit, wait_for_line,
};

/// How long the line stays cut.
const OUTAGE: Duration = Duration::from_secs(10);

/// Waits until the queue shows the message again (visible, not in flight), up to `limit`.
async fn wait_visible(stack: &Stack, limit: Duration) {
    let deadline = Instant::now() + limit;
    while stack.depth().await != (1, 0) {
        assert!(
            Instant::now() < deadline,
            "{}: the message did not come back within {limit:?}: {:?}",
            stack.kind(),
            stack.depth().await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Checks the one stored 1080p rendition: whole (its stored CRC32 is the CRC32 of its bytes),
/// larger than one PutObject takes, and a valid video.
async fn check_the_one_large_rendition(stack: &Stack, video_id: &str) {
    let kind = stack.kind();
    let key = format!("renditions/{video_id}/1080p.mp4");
    assert_eq!(stack.output_keys().await, vec![key.clone()], "{kind}");
    let s3 = stack.aws.s3().await;
    let head = s3
        .head_object()
        .bucket(&stack.output_bucket)
        .key(&key)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .expect("the rendition is stored");
    let size = head.content_length().unwrap_or(0);
    assert!(
        size > 16 * 1024 * 1024,
        "{kind}: the rendition has {size} bytes, not enough for a multipart upload"
    );
    let local = stack.tmp.join("stored-1080p.mp4");
    stack.aws.get_file(&stack.output_bucket, &key, &local).await;
    let bytes = std::fs::read(&local).unwrap();
    let crc = aws_smithy_types::base64::encode(crc32fast::hash(&bytes).to_be_bytes());
    assert_eq!(head.checksum_crc32(), Some(crc.as_str()), "{kind}: the stored CRC32");
    let probe = test_support::ffprobe(&local);
    let video = streams(&probe, "video");
    assert_eq!(
        (video[0]["width"].as_u64(), video[0]["height"].as_u64()),
        (Some(1920), Some(1080))
    );
    let duration = test_support::num(&probe["format"]["duration"]);
    assert!(
        (duration - 24.0).abs() < 0.2,
        "{kind}: the rendition lasts {duration} s"
    );
    assert!(
        stack.aws.multipart_uploads(&stack.output_bucket).await.is_empty(),
        "{kind}: a multipart upload was left behind"
    );
}

/// Counted once; the queue and the dead-letter queue are empty.
async fn check_counted_once(stack: &Stack) {
    let kind = stack.kind();
    let count = stack.get_count().await;
    let processed = count.iter().filter(|l| l.contains(" - processed count ")).count();
    assert_eq!(processed, 1, "{kind}: {count:?}");
    assert_eq!(stack.depth().await, (0, 0), "{kind}");
    assert!(
        stack.dead_letters().await.is_empty(),
        "{kind}: a message was dead-lettered"
    );
}

async fn sqs_and_s3_gone_for_10_s_during_a_multipart_upload_still_end_in_one_whole_rendition(kind: Kind) {
    // A lease of 8 s: a run that cannot release its message gives it back within 8 s.
    let stack = Stack::start(kind, "upload-outage", 8).await;
    let clip = stack.tmp.join("noisy.mp4");
    make_noisy_clip(&clip, 24);
    let source = stack.upload(&clip, "noisy.mp4").await;
    stack
        .send(
            &json!({"video_id": "noisy", "source": source, "quality": "1080p", "request_id": "req-noisy"}).to_string(),
        )
        .await;

    let proxy = FaultProxy::to_url(&stack.aws.url);
    let through_proxy = [("AWS_ENDPOINT_URL", proxy.url())];
    let env: Vec<(&str, &str)> = through_proxy.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (mut child, lines) = stack.spawn_encoder(&env);
    assert!(
        wait_for_line(&lines, "multipart upload started", Duration::from_secs(240)),
        "{kind}: no multipart upload: {}",
        lines.lines().join("\n")
    );
    proxy.cut_for(Fault::Refuse, OUTAGE);
    let code = wait_exit(&mut child, Duration::from_secs(120)).expect("the encoder ends");
    let log = lines.lines().join("\n");
    eprintln!("{kind}: the run that met the outage exited {code}");
    match code {
        // The SDK's retries and the lease outlived the outage.
        0 => {}
        // Failed and released (or, SQS being down too, left to its lease): retried by the next run.
        1 => {
            assert!(log.contains("releasing the message for a retry"), "{kind}: {log}");
            let failed = stack.events("failed").await;
            assert_eq!(failed.len(), 1, "{kind}: {failed:?}");
            assert!(
                stack.output_keys().await.is_empty(),
                "{kind}: something was published by the failed run"
            );
            wait_visible(&stack, Duration::from_secs(30)).await;
            let out = stack.encoder(&env);
            assert_exit(&out, 0, &format!("{kind}: the run after the outage"));
        }
        other => panic!("{kind}: the encoder exited {other}:\n{log}"),
    }
    check_the_one_large_rendition(&stack, "noisy").await;
    check_counted_once(&stack).await;
}

async fn a_lease_renewal_that_meets_10_s_of_outage_keeps_the_message_and_the_job_completes(kind: Kind) {
    // A lease of 15 s, renewed every 5 s: the renewals keep trying through the outage and one of
    // them gets through before the lease runs out.
    let stack = Stack::start(kind, "lease-outage", 15).await;
    let clip = stack.tmp.join("long.mp4");
    make_clip(&clip, 40);
    let source = stack.upload(&clip, "long.mp4").await;
    stack
        .send(&json!({"video_id": "long", "source": source, "qualities": ["1080p", "720p"]}).to_string())
        .await;

    let proxy = FaultProxy::to_url(&stack.aws.url);
    let url = proxy.url();
    let (mut child, lines) = stack.spawn_encoder(&[("AWS_ENDPOINT_URL", &url)]);
    assert!(
        wait_for_line(&lines, "downloaded the source", Duration::from_secs(60)),
        "{kind}: {}",
        lines.lines().join("\n")
    );
    let cut_at = Instant::now();
    proxy.cut_for(Fault::Refuse, OUTAGE);

    // A second receiver, straight to the emulator, polls all along: it must never get the message.
    let stolen = stack.receive_while_running(&mut child).await;
    let code = wait_exit(&mut child, Duration::from_secs(5)).expect("exited");
    let log = lines.lines().join("\n");
    assert_eq!(code, 0, "{kind}: {log}");
    assert!(
        cut_at.elapsed() > OUTAGE,
        "{kind}: the job ended {:?} after the cut, before the line came back: the outage met no renewal",
        cut_at.elapsed()
    );
    assert!(
        log.contains("renewing the lease failed; trying again"),
        "{kind}: no renewal met the outage:\n{log}"
    );
    assert_eq!(stolen, 0, "{kind}: a second receiver got the message during the outage");
    let mut keys = stack.output_keys().await;
    keys.sort();
    assert_eq!(
        keys,
        ["renditions/long/1080p.mp4", "renditions/long/720p.mp4"],
        "{kind}"
    );
    for q in ["1080p", "720p"] {
        let probe = stack.rendition("long", q).await;
        assert_eq!(streams(&probe, "video").len(), 1, "{kind} {q}");
    }
    check_counted_once(&stack).await;
}

test_support::on_both_emulators!(
    sqs_and_s3_gone_for_10_s_during_a_multipart_upload_still_end_in_one_whole_rendition,
    a_lease_renewal_that_meets_10_s_of_outage_keeps_the_message_and_the_job_completes,
);
