//! One video through producer → SQS → encoder → S3 → analyzer, every part real.

use std::time::Duration;

use test_support::{Analyzer, Emulator, Kind, TempDir, assert_exit, bin, ffprobe, media, num, run, streams};

async fn a_video_goes_through_the_whole_pipeline_and_comes_out_as_a_480p_rendition(kind: Kind) {
    let Some(source) = media("h264_aac_720p30_5s.mp4") else {
        return;
    };
    let tmp = TempDir::new("skeleton");
    let aws = Emulator::shared(kind);
    let analyzer = Analyzer::start(&tmp.join("analyzer.db"), None);
    let (queue, dlq) = aws.queue_with_dlq(&aws.unique("encode-requests"), 120, 5).await;
    let (media_in, media_out) = (aws.unique("media-in"), aws.unique("media-out"));
    aws.bucket(&media_in).await;
    aws.bucket(&media_out).await;
    aws.put_file(&media_in, "uploads/clip.mp4", &source).await;

    let mut env = aws.env();
    env.push(("QUEUE_URL".into(), queue.clone()));
    let out = run(
        &bin("producer"),
        &[
            "--source",
            &format!("s3://{media_in}/uploads/clip.mp4"),
            "--quality",
            "480p",
            "--output",
            &format!("s3://{media_out}/renditions"),
            "--json",
        ],
        &env,
        Duration::from_secs(60),
    );
    assert_exit(&out, 0, "producer");
    let sent: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(sent["video_id"], "clip");

    env.push(("ANALYZER_URL".into(), analyzer.url.clone()));
    env.push(("RECEIVE_WAIT_SECONDS".into(), "2".into()));
    env.push(("WORK_DIR".into(), tmp.0.display().to_string()));
    let out = run(&bin("encoder"), &[], &env, Duration::from_secs(300));
    assert_exit(&out, 0, "encoder");

    // The rendition in S3: H.264 854x480 with AAC audio, as long as the source.
    let local = tmp.join("480p.mp4");
    let meta = aws.get_file(&media_out, "renditions/clip/480p.mp4", &local).await;
    assert_eq!(meta.get("source-key").map(String::as_str), Some("uploads/clip.mp4"));
    let probe = ffprobe(&local);
    let video = streams(&probe, "video");
    assert_eq!(video.len(), 1, "{probe}");
    assert_eq!(video[0]["codec_name"], "h264");
    assert_eq!(video[0]["profile"], "High");
    assert_eq!(
        (video[0]["width"].as_u64(), video[0]["height"].as_u64()),
        (Some(854), Some(480))
    );
    assert_eq!(video[0]["pix_fmt"], "yuv420p");
    let audio = streams(&probe, "audio");
    assert_eq!(audio.len(), 1, "{probe}");
    assert_eq!(audio[0]["codec_name"], "aac");
    let source_duration = num(&ffprobe(&source)["format"]["duration"]);
    let out_duration = num(&probe["format"]["duration"]);
    assert!(
        (out_duration - source_duration).abs() <= 0.1,
        "output lasts {out_duration} s, source {source_duration} s"
    );
    assert!(probe["format"]["format_name"].as_str().unwrap_or("").contains("mp4"));

    // The queue is empty, nothing was dead-lettered, nothing else was written.
    assert_eq!(aws.depth(&queue).await, (0, 0));
    assert_eq!(aws.depth(&dlq).await, (0, 0));
    assert_eq!(aws.keys(&media_out).await, vec!["renditions/clip/480p.mp4".to_owned()]);

    // The analyzer counted it, in the original format.
    let count: Vec<String> = serde_json::from_str(&analyzer.get("/get/count").await).expect("a JSON list");
    assert_eq!(count.len(), 1, "{count:?}");
    assert!(count[0].ends_with(" - processed count 1"), "{count:?}");

    // A second run finds the queue empty and exits 0.
    let out = run(&bin("encoder"), &[], &env, Duration::from_secs(60));
    assert_exit(&out, 0, "encoder on an empty queue");
    let summary = analyzer.get_json("/summary").await;
    assert_eq!(summary["counts"]["empty"], 1, "{summary}");
    assert_eq!(summary["counts"]["processed"], 1, "{summary}");
    assert_eq!(summary["counts"]["started"], 1, "{summary}");
}

test_support::on_both_emulators!(a_video_goes_through_the_whole_pipeline_and_comes_out_as_a_480p_rendition);
