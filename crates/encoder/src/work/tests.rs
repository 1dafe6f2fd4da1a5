//! The work on one request with S3 and the transcode in memory: what is stored, with which
//! metadata, and which stop reason each failure gives.

use std::collections::HashMap;

use encoding_common::identity::{META_REQUEST_ID, META_SOURCE_ETAG, rendition_metadata, stream_metadata};
use encoding_common::{EncodeRequest, Quality};
use test_support::TempDir;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::fakes::{FakeMedia, MediaAnswer, MemoryStore, StoreFault};
use crate::progress::Progress;

const SOURCE: &str = "s3://in-b/uploads/clip.mp4";

fn request(json: &str) -> EncodeRequest {
    EncodeRequest::from_json(json).unwrap()
}

fn two_qualities() -> EncodeRequest {
    request(
        r#"{"video_id":"clip","source":"s3://in-b/uploads/clip.mp4","qualities":["480p","720p"],"request_id":"req-1"}"#,
    )
}

/// A job over a store holding the source, with `s3://out-b/r` as the default output.
fn job(dir: &TempDir) -> Job<MemoryStore, FakeMedia> {
    let store = MemoryStore::default();
    store.put(SOURCE, b"the source video", "\"etag-1\"", HashMap::new());
    Job {
        store,
        media: FakeMedia::default(),
        default_output: Some(S3Uri::parse("OUTPUT_URI", "s3://out-b/r", false).unwrap()),
        formats: vec![encoding_common::Format::Mp4],
        work_dir: dir.to_path_buf(),
        split_seconds: 0.0,
    }
}

async fn work(job: &Job<MemoryStore, FakeMedia>, r: &EncodeRequest) -> Result<Done, Stop> {
    job.work_on(r, "run-1", &CancellationToken::new(), &Progress::unread())
        .await
}

fn rejection(result: Result<Done, Stop>) -> String {
    match result {
        Err(Stop::Reject(why)) => why,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn failure(result: Result<Done, Stop>) -> String {
    match result {
        Err(Stop::Fail(e)) => format!("{e:#}"),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn every_rendition_is_made_from_one_transcode_and_stored_with_who_made_it() {
    let dir = TempDir::new("work-stored");
    let job = job(&dir);
    let r = two_qualities();
    let Done::Encoded { encoded, outputs } = work(&job, &r).await.unwrap() else {
        panic!("expected new renditions");
    };
    let uris: Vec<&str> = outputs.iter().map(|o| o.uri.as_str()).collect();
    assert_eq!(uris, ["s3://out-b/r/clip/480p.mp4", "s3://out-b/r/clip/720p.mp4"]);
    assert_eq!(outputs[0].size, Some(14), "the size S3 stored");
    assert_eq!((outputs[1].width, outputs[1].height), (Some(1280), Some(720)));
    assert_eq!(outputs[0].audio_codec.as_deref(), Some("aac"));
    assert_eq!(encoded.frames, 150);
    let calls = job.media.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "one transcode for both renditions");
    assert_eq!(calls[0].1, ["480p", "720p"]);
    for (q, uri) in [(Quality::P480, &outputs[0].uri), (Quality::P720, &outputs[1].uri)] {
        let stored = job.store.get(uri).expect("stored");
        assert_eq!(stored.bytes, format!("rendition {q}").as_bytes());
        assert_eq!(stored.metadata, rendition_metadata(&r, "\"etag-1\"", q));
    }
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "the run's scratch directory is removed"
    );
}

#[tokio::test]
async fn the_output_of_the_request_wins_over_the_default_and_none_at_all_is_a_rejection() {
    let dir = TempDir::new("work-output");
    let mut job = job(&dir);
    let r =
        request(r#"{"video_id":"v","source":"s3://in-b/uploads/clip.mp4","quality":"360p","output":"s3://mine/x"}"#);
    let Done::Encoded { outputs, .. } = work(&job, &r).await.unwrap() else {
        panic!("expected new renditions");
    };
    assert_eq!(outputs[0].uri, "s3://mine/x/v/360p.mp4");
    job.default_output = None;
    let r = request(r#"{"video_id":"v","source":"s3://in-b/uploads/clip.mp4","quality":"360p"}"#);
    assert!(rejection(work(&job, &r).await).contains("no \"output\""));
}

#[tokio::test]
async fn renditions_already_stored_from_the_same_source_and_settings_are_not_made_again() {
    let dir = TempDir::new("work-dup");
    let job = job(&dir);
    let r = two_qualities();
    for q in [Quality::P480, Quality::P720] {
        let uri = format!("s3://out-b/r/clip/{q}.mp4");
        job.store
            .put(&uri, b"old", "\"e\"", rendition_metadata(&r, "\"etag-1\"", q));
    }
    match work(&job, &r).await.unwrap() {
        Done::AlreadyStored { same_request, outputs } => {
            assert!(same_request);
            assert_eq!(outputs.len(), 2);
        }
        other => panic!("expected the work skipped, got {other:?}"),
    }
    assert!(job.media.calls.lock().unwrap().is_empty(), "nothing was transcoded");

    // Stored by another request: a duplicate.
    let other = request(
        r#"{"video_id":"clip","source":"s3://in-b/uploads/clip.mp4","qualities":["480p","720p"],"request_id":"req-2"}"#,
    );
    assert!(matches!(
        work(&job, &other).await.unwrap(),
        Done::AlreadyStored {
            same_request: false,
            ..
        }
    ));
}

#[tokio::test]
async fn a_changed_source_or_a_missing_rendition_is_made_again() {
    let dir = TempDir::new("work-changed");
    let job = job(&dir);
    let r = two_qualities();
    let mut stale = rendition_metadata(&r, "\"etag-1\"", Quality::P480);
    stale.insert(META_SOURCE_ETAG.into(), "\"etag-0\"".into());
    job.store.put("s3://out-b/r/clip/480p.mp4", b"old", "\"e\"", stale);
    job.store.put(
        "s3://out-b/r/clip/720p.mp4",
        b"old",
        "\"e\"",
        rendition_metadata(&r, "\"etag-1\"", Quality::P720),
    );
    assert!(matches!(work(&job, &r).await.unwrap(), Done::Encoded { .. }));
    let stored = job.store.get("s3://out-b/r/clip/480p.mp4").unwrap();
    assert_eq!(stored.metadata[META_SOURCE_ETAG], "\"etag-1\"");
    assert_eq!(stored.metadata[META_REQUEST_ID], "req-1");
}

#[tokio::test]
async fn a_missing_source_is_rejected_and_an_unreachable_store_is_a_failure() {
    let dir = TempDir::new("work-source");
    let mut job = job(&dir);
    let r = request(r#"{"video_id":"v","source":"s3://in-b/uploads/gone.mp4","quality":"360p"}"#);
    assert!(rejection(work(&job, &r).await).contains("does not exist"));
    job.store.fault = StoreFault::Unreachable;
    assert!(failure(work(&job, &two_qualities()).await).contains("dispatch failure"));
}

#[tokio::test]
async fn a_short_download_is_a_failure_and_nothing_is_transcoded() {
    let dir = TempDir::new("work-short");
    let mut job = job(&dir);
    job.store.fault = StoreFault::ShortDownload;
    let why = failure(work(&job, &two_qualities()).await);
    assert!(why.contains("downloaded 8 bytes of the 16 announced"), "{why}");
    assert!(job.media.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn what_the_transcode_says_becomes_a_rejection_a_failure_or_a_stop() {
    let dir = TempDir::new("work-media");
    let mut job = job(&dir);
    job.media.answer = MediaAnswer::Rejected;
    let why = rejection(work(&job, &two_qualities()).await);
    assert!(
        why.starts_with("the source is not a usable video: no video stream"),
        "{why}"
    );
    job.media.answer = MediaAnswer::Failed;
    assert!(failure(work(&job, &two_qualities()).await).contains("lasts 1.000 s"));
    job.media.answer = MediaAnswer::Cancelled;
    assert!(matches!(work(&job, &two_qualities()).await, Err(Stop::Cancelled)));
    assert_eq!(job.store.uris(), [SOURCE], "nothing was published");
}

#[tokio::test]
async fn an_upload_that_fails_or_is_stopped_ends_the_work_that_way() {
    let dir = TempDir::new("work-upload");
    let mut job = job(&dir);
    job.store.fault = StoreFault::UploadFails;
    assert!(failure(work(&job, &two_qualities()).await).contains("InternalError"));
    job.store.fault = StoreFault::UploadStopped;
    assert!(matches!(work(&job, &two_qualities()).await, Err(Stop::Cancelled)));
}

#[tokio::test]
async fn a_cancelled_run_downloads_nothing() {
    let dir = TempDir::new("work-cancel");
    let job = job(&dir);
    let cancel = CancellationToken::new();
    cancel.cancel();
    let result = job
        .work_on(&two_qualities(), "run-1", &cancel, &Progress::unread())
        .await;
    assert!(matches!(result, Err(Stop::Cancelled)), "{result:?}");
    assert!(job.media.calls.lock().unwrap().is_empty());
}

fn streaming(formats: &str) -> EncodeRequest {
    request(&format!(
        r#"{{"video_id":"clip","source":"s3://in-b/uploads/clip.mp4","qualities":["720p","480p"],"request_id":"req-1","formats":{formats}}}"#
    ))
}

#[tokio::test]
async fn a_stream_is_packaged_from_the_renditions_and_its_manifests_are_stored_last() {
    let dir = TempDir::new("work-stream");
    let job = job(&dir);
    let r = streaming(r#"["hls","dash"]"#);
    let Done::Encoded { outputs, .. } = work(&job, &r).await.unwrap() else {
        panic!("expected a new stream");
    };
    let uris: Vec<&str> = outputs.iter().map(|o| o.uri.as_str()).collect();
    assert_eq!(
        uris,
        ["s3://out-b/r/clip/master.m3u8", "s3://out-b/r/clip/manifest.mpd"]
    );
    assert_eq!(
        (outputs[0].width, outputs[0].height),
        (Some(1280), Some(720)),
        "the largest rendition"
    );
    assert_eq!(outputs[0].duration_seconds, Some(5.0));

    let jobs = job.media.packaged.lock().unwrap().clone();
    assert_eq!(jobs.len(), 1);
    let names: Vec<&str> = jobs[0].renditions.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["720p", "480p"]);
    assert_eq!((jobs[0].manifests.hls, jobs[0].manifests.dash), (true, true));
    assert_eq!(jobs[0].version, "run-1", "the media folder is the run's own");
    assert!(
        jobs[0].source.ends_with("source"),
        "subtitles come from the downloaded source"
    );

    // No MP4 files were asked for; the media first, the thumbnail track and manifests last.
    let uploads = job.store.uploads();
    assert!(
        uploads
            .iter()
            .all(|u| !u.ends_with("/720p.mp4") || u.contains("/stream/")),
        "{uploads:?}"
    );
    let last = [
        "s3://out-b/r/clip/thumbnails.vtt",
        "s3://out-b/r/clip/master.m3u8",
        "s3://out-b/r/clip/manifest.mpd",
    ];
    let n = uploads.len();
    assert_eq!(uploads[n - 3..], last, "{uploads:?}");
    assert!(
        uploads[..n - 3].iter().all(|u| !last.contains(&u.as_str())),
        "each once, after all media: {uploads:?}"
    );
    assert!(
        uploads.contains(&"s3://out-b/r/clip/stream/run-1/720p.mp4".to_owned()),
        "{uploads:?}"
    );
    for (suffix, content_type) in [
        ("master.m3u8", "application/vnd.apple.mpegurl"),
        ("manifest.mpd", "application/dash+xml"),
        ("stream/run-1/720p.mp4", "video/mp4"),
        ("stream/run-1/audio.mp4", "audio/mp4"),
        ("stream/run-1/480p.m3u8", "application/vnd.apple.mpegurl"),
        ("poster.jpg", "image/jpeg"),
        ("thumbnails.vtt", "text/vtt"),
    ] {
        let o = job
            .store
            .get(&format!("s3://out-b/r/clip/{suffix}"))
            .unwrap_or_else(|| panic!("{suffix} stored"));
        assert_eq!(o.content_type, content_type, "{suffix}");
        assert_eq!(o.metadata, stream_metadata(&r, "\"etag-1\""), "{suffix}");
    }

    // Delivered again: the manifests say it is done.
    match work(&job, &r).await.unwrap() {
        Done::AlreadyStored { same_request, outputs } => {
            assert!(same_request);
            let uris: Vec<&str> = outputs.iter().map(|o| o.uri.as_str()).collect();
            assert_eq!(
                uris,
                ["s3://out-b/r/clip/master.m3u8", "s3://out-b/r/clip/manifest.mpd"]
            );
        }
        other => panic!("expected the work skipped, got {other:?}"),
    }
    // Asked for other qualities, the stream is made again.
    let other = request(
        r#"{"video_id":"clip","source":"s3://in-b/uploads/clip.mp4","qualities":["480p"],"request_id":"req-1","formats":["hls","dash"]}"#,
    );
    assert!(matches!(work(&job, &other).await.unwrap(), Done::Encoded { .. }));
}

#[tokio::test]
async fn mp4_and_a_stream_together_and_the_encoder_default_for_requests_without_formats() {
    let dir = TempDir::new("work-both");
    let mut job = job(&dir);
    let Done::Encoded { outputs, .. } = work(&job, &streaming(r#"["mp4","hls"]"#)).await.unwrap() else {
        panic!("expected new outputs");
    };
    let uris: Vec<&str> = outputs.iter().map(|o| o.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            "s3://out-b/r/clip/720p.mp4",
            "s3://out-b/r/clip/480p.mp4",
            "s3://out-b/r/clip/master.m3u8"
        ]
    );
    assert!(
        job.store.get("s3://out-b/r/clip/manifest.mpd").is_none(),
        "no DASH asked for"
    );

    // Without "formats", the encoder's FORMATS decides.
    job.formats = vec![encoding_common::Format::Dash];
    let Done::Encoded { outputs, .. } = work(&job, &two_qualities()).await.unwrap() else {
        panic!("expected new outputs");
    };
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].uri, "s3://out-b/r/clip/manifest.mpd");
    let jobs = job.media.packaged.lock().unwrap().clone();
    assert_eq!((jobs[1].manifests.hls, jobs[1].manifests.dash), (false, true));
}

#[tokio::test]
async fn stored_mp4_files_without_the_manifests_are_not_a_finished_stream() {
    let dir = TempDir::new("work-half");
    let job = job(&dir);
    let r = streaming(r#"["mp4","hls"]"#);
    for q in [Quality::P480, Quality::P720] {
        let uri = format!("s3://out-b/r/clip/{q}.mp4");
        job.store
            .put(&uri, b"old", "\"e\"", rendition_metadata(&r, "\"etag-1\"", q));
    }
    assert!(
        matches!(work(&job, &r).await.unwrap(), Done::Encoded { .. }),
        "the master playlist is missing"
    );
}

#[tokio::test]
async fn a_packaging_failure_stores_nothing_and_a_stream_needs_an_output() {
    let dir = TempDir::new("work-package-fails");
    let mut job = job(&dir);
    job.media.package_fails = true;
    assert!(failure(work(&job, &streaming(r#"["mp4","hls"]"#)).await).contains("do not line up"));
    assert_eq!(job.store.uris(), [SOURCE], "not even the MP4 files: nothing is stored");
    job.default_output = None;
    let why = rejection(work(&job, &streaming(r#"["dash"]"#)).await);
    assert!(why.contains("no \"output\""), "{why}");
}

#[test]
fn a_media_version_is_letters_digits_and_dashes() {
    assert_eq!(media_version("run-1"), "run-1");
    assert_eq!(media_version("pod_7/2026-12-01T10:00"), "pod-7-2026-12-01T10-00");
    assert_eq!(media_version(""), "run");
}
