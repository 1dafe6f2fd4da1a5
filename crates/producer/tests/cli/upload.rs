//! `--upload`: local videos go to S3 (in parts when large), then their requests to the queue.

use std::process::Stdio;
use std::time::Duration;

use test_support::{LineCollector, signal, wait_exit, wait_for_line};

use crate::helpers::*;

/// SIGINT's number (2 on every Unix).
const SIGINT: i32 = 2;

/// The stored object's size and content type.
async fn head(s: &Setup, key: &str) -> (i64, String) {
    let h = s
        .aws
        .s3()
        .await
        .head_object()
        .bucket(&s.bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{} should exist: {e:?}", s.uri(key)));
    (
        h.content_length().unwrap_or(-1),
        h.content_type().unwrap_or_default().to_owned(),
    )
}

async fn stored_bytes(s: &Setup, key: &str) -> Vec<u8> {
    let local = s.tmp.join("downloaded");
    s.aws.get_file(&s.bucket, key, &local).await;
    std::fs::read(&local).unwrap()
}

async fn unfinished_uploads(s: &Setup) -> usize {
    s.aws
        .s3()
        .await
        .list_multipart_uploads()
        .bucket(&s.bucket)
        .send()
        .await
        .expect("list multipart uploads")
        .uploads()
        .len()
}

async fn a_real_video_is_uploaded_then_requested_per_quality(kind: Kind) {
    let Some(video) = test_support::media("h264_aac_1080x720_1s.mp4") else {
        return;
    };
    let s = Setup::start(kind, "upload-media").await;
    let out = s.producer(&[
        "--upload",
        video.to_str().unwrap(),
        "--input-uri",
        &s.uri("uploads/"),
        "--quality",
        "480p",
        "--quality",
        "720p",
        "--output",
        "s3://media-out/renditions",
    ]);
    assert_exit(&out, 0);

    let key = "uploads/h264_aac_1080x720_1s.mp4";
    let original = std::fs::read(&video).unwrap();
    assert_eq!(head(&s, key).await, (original.len() as i64, "video/mp4".into()));
    assert!(stored_bytes(&s, key).await == original, "the stored object is the file");

    let got = s.requests().await;
    assert_eq!(got.len(), 2);
    for r in &got {
        assert_eq!(r.video_id, "h264_aac_1080x720_1s");
        assert_eq!(r.source.to_string(), s.uri(key));
        assert_eq!(r.output.as_ref().unwrap().to_string(), "s3://media-out/renditions");
    }
    let mut qualities: Vec<String> = got.iter().map(|r| r.qualities[0].to_string()).collect();
    qualities.sort();
    assert_eq!(qualities, ["480p", "720p"]);
}

async fn a_file_above_16_mib_is_uploaded_in_parts_whole_and_in_order(kind: Kind) {
    let s = Setup::start(kind, "upload-multipart").await;
    let path = s.tmp.join("Big Movie.mov");
    let size = 40 * 1024 * 1024 + 12_345;
    let data = numbered_file(&path, size);
    let env = s.env(&[("INPUT_URI", &s.uri("uploads"))]);
    let out = run(
        &[
            "--upload",
            path.to_str().unwrap(),
            "--quality",
            "720p",
            "--video-id",
            "big-movie",
            "--json",
        ],
        &env,
        None,
    );
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("multipart upload started"), "{}", stderr(&out));
    assert!(stderr(&out).contains("parts=3"), "{}", stderr(&out));

    let key = "uploads/Big Movie.mov";
    assert_eq!(head(&s, key).await, (size as i64, "video/quicktime".into()));
    assert!(stored_bytes(&s, key).await == data, "the parts are assembled in order");
    assert_eq!(unfinished_uploads(&s).await, 0);
    let got = s.requests().await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].video_id, "big-movie");
    assert_eq!(got[0].source.to_string(), s.uri(key));
    assert_eq!(stdout_lines(&out).len(), 1);
}

async fn several_files_are_each_named_after_themselves_with_content_types_from_their_extensions(kind: Kind) {
    let s = Setup::start(kind, "upload-several").await;
    let mut args = vec!["--upload".to_owned()];
    for name in ["a.webm", "b.MKV", "c.ts", "d.avi", "e.3gp", "f.bin"] {
        let path = s.tmp.join(name);
        std::fs::write(&path, name.as_bytes()).unwrap();
        args.push(path.to_str().unwrap().to_owned());
    }
    args.extend(["--input-uri".to_owned(), s.uri("in"), "--quality".into(), "360p".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // VIDEO_ID from the environment (as the Job sets it) cannot name several videos: ignored.
    let out = run(&args, &s.env(&[("VIDEO_ID", "sample")]), None);
    assert_exit(&out, 0);
    for (key, content_type) in [
        ("in/a.webm", "video/webm"),
        ("in/b.MKV", "video/x-matroska"),
        ("in/c.ts", "video/mp2t"),
        ("in/d.avi", "video/x-msvideo"),
        ("in/e.3gp", "video/3gpp"),
        ("in/f.bin", "application/octet-stream"),
    ] {
        assert_eq!(head(&s, key).await.1, content_type, "{key}");
    }
    let ids: Vec<String> = s.requests().await.into_iter().map(|r| r.video_id).collect();
    assert_eq!(ids, ["a", "b", "c", "d", "e", "f"]);
}

async fn a_typed_video_id_with_several_files_and_a_missing_file_are_refused_before_uploading(kind: Kind) {
    let s = Setup::start(kind, "upload-refused").await;
    let a = s.write("a.mp4", "a");
    let b = s.write("b.mp4", "b");
    let input = s.uri("uploads");
    let base = ["--input-uri", &input, "--quality", "360p"];
    let mut named = vec!["--upload", a.to_str().unwrap(), b.to_str().unwrap(), "--video-id", "x"];
    named.extend(base);
    assert_exit(&s.producer(&named), 2);

    let missing = s.tmp.join("missing.mp4");
    let mut with_missing = vec!["--upload", a.to_str().unwrap(), missing.to_str().unwrap()];
    with_missing.extend(base);
    let out = s.producer(&with_missing);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("missing.mp4: cannot read it"), "{}", stderr(&out));
    assert!(s.keys().await.is_empty(), "nothing is uploaded when one file is wrong");
    assert!(s.requests().await.is_empty());
}

async fn a_failed_upload_sends_no_request_for_it(kind: Kind) {
    let s = Setup::start(kind, "upload-nobucket").await;
    let a = s.write("a.mp4", "a");
    let out = s.producer(&[
        "--upload",
        a.to_str().unwrap(),
        "--input-uri",
        "s3://no-such-bucket/uploads",
        "--quality",
        "360p",
    ]);
    assert_exit(&out, 1);
    let log = stderr(&out);
    assert!(
        log.contains("1 upload(s) failed") && log.contains("NoSuchBucket"),
        "{log}"
    );
    assert!(s.requests().await.is_empty());
}

async fn a_dry_run_uploads_nothing_and_prints_the_requests(kind: Kind) {
    let s = Setup::start(kind, "upload-dry").await;
    let a = s.write("clip.mp4", "a");
    let out = s.producer(&[
        "--upload",
        a.to_str().unwrap(),
        "--input-uri",
        "s3://media-in/uploads",
        "--quality",
        "360p,720p",
        "--dry-run",
    ]);
    assert_exit(&out, 0);
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 2);
    let r = encoding_common::EncodeRequest::from_json(&lines[0]).unwrap();
    assert_eq!(r.source.to_string(), "s3://media-in/uploads/clip.mp4");
    assert!(stderr(&out).contains("dry run: would upload"), "{}", stderr(&out));
    assert!(s.keys().await.is_empty());
    assert!(s.requests().await.is_empty());
}

async fn ctrl_c_during_a_multipart_upload_aborts_it_and_sends_nothing(kind: Kind) {
    let s = Setup::start(kind, "upload-sigint").await;
    let path = s.tmp.join("huge.mp4");
    // Sparse: 160 MiB of zeros, ten parts, cheap to make, slow enough to interrupt.
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(160 * 1024 * 1024))
        .unwrap();
    let input = s.uri("uploads");
    let args = [
        "--upload",
        path.to_str().unwrap(),
        "--input-uri",
        &input,
        "--quality",
        "720p",
    ];
    let mut cmd = command(&args, &s.env(&[]));
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    let mut child = cmd.spawn().expect("start the producer");
    let lines = LineCollector::new(child.stderr.take().unwrap());
    assert!(
        wait_for_line(&lines, "multipart upload started", Duration::from_secs(60)),
        "{:?}",
        lines.lines()
    );
    signal(&child, SIGINT);
    let code = wait_exit(&mut child, Duration::from_secs(60));
    let log = lines.lines().join("\n");
    assert_eq!(code, Some(130), "{log}");
    assert!(log.contains("multipart upload aborted"), "{log}");
    assert!(log.contains("stopped by SIGINT"), "{log}");
    assert!(log.contains("not uploaded") && log.contains("huge.mp4"), "{log}");
    assert_eq!(unfinished_uploads(&s).await, 0, "no part is left behind");
    assert!(s.keys().await.is_empty());
    assert!(s.requests().await.is_empty());
}

test_support::on_both_emulators!(
    a_real_video_is_uploaded_then_requested_per_quality,
    a_file_above_16_mib_is_uploaded_in_parts_whole_and_in_order,
    several_files_are_each_named_after_themselves_with_content_types_from_their_extensions,
    a_typed_video_id_with_several_files_and_a_missing_file_are_refused_before_uploading,
    a_failed_upload_sends_no_request_for_it,
    a_dry_run_uploads_nothing_and_prints_the_requests,
    ctrl_c_during_a_multipart_upload_aborts_it_and_sends_nothing,
);
