//! Streaming output end to end: a request for HLS and DASH goes through the queue, the encoder
//! and S3; the stored folder is fetched back as a CDN would serve it and played by hls.js and
//! dash.js in Chromium; the manifests' content types, the subtitles of a real Matroska file, and
//! a second request for the same stream (a duplicate, nothing made again) are checked.

use std::path::Path;

use serde_json::json;
use test_support::players::{self, Entry};
use test_support::{Kind, Stack, assert_exit, media};

/// Downloads every object under `prefix` of the output bucket into `dir`, keeping the layout.
async fn fetch_folder(stack: &Stack, prefix: &str, dir: &Path) -> Vec<String> {
    let keys: Vec<String> = stack
        .output_keys()
        .await
        .into_iter()
        .filter(|k| k.starts_with(prefix))
        .collect();
    for key in &keys {
        let local = dir.join(&key[prefix.len()..]);
        std::fs::create_dir_all(local.parent().unwrap()).unwrap();
        stack.aws.get_file(&stack.output_bucket, key, &local).await;
    }
    keys.iter().map(|k| k[prefix.len()..].to_owned()).collect()
}

async fn content_type(stack: &Stack, key: &str) -> String {
    let head = stack
        .aws
        .s3()
        .await
        .head_object()
        .bucket(&stack.output_bucket)
        .key(key)
        .send()
        .await;
    head.unwrap_or_else(|e| panic!("{key}: {e}"))
        .content_type()
        .unwrap_or_default()
        .to_owned()
}

/// 10 s of a 854x480 test pattern with a tone: long enough for a player to be forced to each
/// level in turn and still have segments of it to show.
fn clip(path: &Path) {
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=854x480:rate=30:duration=10",
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=10"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"])
        .arg(path)
        .status()
        .expect("ffmpeg runs (install Debian's ffmpeg: scripts/test.sh does)");
    assert!(status.success());
}

async fn a_stream_request_is_stored_as_hls_and_dash_and_plays_in_real_players(kind: Kind) {
    let stack = Stack::start(kind, "stream", 60).await;
    let source = stack.tmp.join("clip.mp4");
    clip(&source);
    let uri = stack.upload(&source, "clip.mp4").await;
    let request = json!({"video_id": "clip", "source": uri, "qualities": ["480p", "360p"], "formats": ["hls", "dash"], "request_id": "req-stream"});
    stack.send(&request.to_string()).await;
    assert_exit(&stack.encoder(&[]), 0, &format!("{kind}: the encoder"));
    assert_eq!(stack.events("processed").await.len(), 1, "{kind}");

    let dir = stack.tmp.join("clip");
    let files = fetch_folder(&stack, "renditions/clip/", &dir).await;
    for name in ["master.m3u8", "manifest.mpd", "poster.jpg", "thumbnails.vtt"] {
        assert!(files.iter().any(|f| f == name), "{kind}: {name} missing from {files:?}");
    }
    assert!(
        !files.iter().any(|f| f == "480p.mp4"),
        "{kind}: no MP4 files were asked for: {files:?}"
    );
    let media_files: Vec<&String> = files.iter().filter(|f| f.starts_with("stream/")).collect();
    assert_eq!(
        media_files.iter().filter(|f| f.ends_with(".mp4")).count(),
        3,
        "{kind}: two renditions and the audio: {files:?}"
    );
    for (key, expected) in [
        ("master.m3u8", "application/vnd.apple.mpegurl"),
        ("manifest.mpd", "application/dash+xml"),
        ("thumbnails.vtt", "text/vtt"),
        ("poster.jpg", "image/jpeg"),
    ] {
        assert_eq!(
            content_type(&stack, &format!("renditions/clip/{key}")).await,
            expected,
            "{kind}: {key}"
        );
    }
    let track = media_files.iter().find(|f| f.ends_with("/480p.mp4")).unwrap();
    assert_eq!(
        content_type(&stack, &format!("renditions/clip/{track}")).await,
        "video/mp4",
        "{kind}"
    );

    for entry in [Entry::Hls, Entry::Dash] {
        let report = players::serve_and_play(&dir, entry).unwrap_or_else(|e| panic!("{kind}: the harness: {e}"));
        report.check().unwrap_or_else(|e| panic!("{kind}: {entry:?}: {e}"));
        assert_eq!(
            report.level_sizes(),
            [(640, 360), (854, 480)],
            "{kind}: {}",
            report.summary()
        );
        assert!(
            (report.duration.unwrap_or(0.0) - 10.0).abs() < 0.3,
            "{kind}: {}",
            report.summary()
        );
    }

    // The same stream asked for again by another request: a duplicate, nothing made again.
    let mut again = request.clone();
    again["request_id"] = json!("req-again");
    stack.send(&again.to_string()).await;
    assert_exit(&stack.encoder(&[]), 0, &format!("{kind}: the encoder, again"));
    assert_eq!(stack.events("duplicate").await.len(), 1, "{kind}");
    let after: Vec<String> = stack.output_keys().await;
    assert_eq!(after.len(), files.len(), "{kind}: no second media folder");
    assert_eq!(stack.depth().await, (0, 0), "{kind}");
}

async fn the_subtitles_of_a_matroska_source_become_webvtt_renditions_in_both_manifests(kind: Kind) {
    let Some(source) = media("mkv_h264_ac3_srt.mkv") else {
        return;
    };
    let stack = Stack::start(kind, "stream-subs", 60).await;
    let uri = stack.upload(&source, "subs.mkv").await;
    let request = json!({"video_id": "subs", "source": uri, "quality": "360p", "formats": ["mp4", "hls", "dash"]});
    stack.send(&request.to_string()).await;
    assert_exit(
        &stack.encoder(&[("FORMATS", "mp4")]),
        0,
        &format!("{kind}: the encoder"),
    );
    let dir = stack.tmp.join("subs");
    let files = fetch_folder(&stack, "renditions/subs/", &dir).await;
    assert!(
        files.iter().any(|f| f == "360p.mp4"),
        "{kind}: the MP4 asked for too: {files:?}"
    );
    assert!(
        files.iter().any(|f| f.ends_with("/subtitles-0.vtt")),
        "{kind}: {files:?}"
    );
    let master = std::fs::read_to_string(dir.join("master.m3u8")).unwrap();
    assert!(
        master.contains("TYPE=SUBTITLES") && master.contains("SUBTITLES=\"subs\""),
        "{kind}: {master}"
    );
    let mpd = std::fs::read_to_string(dir.join("manifest.mpd")).unwrap();
    assert!(
        mpd.contains("contentType=\"text\" mimeType=\"text/vtt\""),
        "{kind}: {mpd}"
    );
    let vtt_name = files.iter().find(|f| f.ends_with("/subtitles-0.vtt")).unwrap();
    let vtt = std::fs::read_to_string(dir.join(vtt_name)).unwrap();
    assert!(vtt.starts_with("WEBVTT") && vtt.contains(" --> "), "{kind}: {vtt}");
}

test_support::on_both_emulators!(
    a_stream_request_is_stored_as_hls_and_dash_and_plays_in_real_players,
    the_subtitles_of_a_matroska_source_become_webvtt_renditions_in_both_manifests,
);
