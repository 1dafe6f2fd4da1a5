//! The work on one request with S3 and the transcode in memory: what is stored, with which
//! metadata, and which stop reason each failure gives.

use std::collections::HashMap;

use encoding_common::identity::{META_REQUEST_ID, META_SOURCE_ETAG, rendition_metadata};
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
        work_dir: dir.to_path_buf(),
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
