//! `encoding_common::upload` against moto: what is stored, what is reported, what is left behind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use encoding_common::S3Uri;
use encoding_common::upload::{FileUpload, PART_SIZE, UPLOAD_TOKEN, UploadError, upload_file};
use pipeline_tests::{Moto, TempDir};
use tokio_util::sync::CancellationToken;

const BUCKET: &str = "uploads";

fn uri(bucket: &str, key: &str) -> S3Uri {
    S3Uri {
        bucket: bucket.into(),
        key: key.into(),
    }
}

/// Counts what `upload_file` reports through `on_bytes`.
#[derive(Default)]
struct Reported {
    bytes: AtomicU64,
    calls: AtomicUsize,
}

impl Reported {
    fn add(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

async fn upload(
    s3: &aws_sdk_s3::Client,
    path: &std::path::Path,
    target: &S3Uri,
    metadata: HashMap<String, String>,
    stop: &CancellationToken,
    reported: &Reported,
) -> Result<(), UploadError> {
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    let file = FileUpload {
        path,
        size,
        target,
        content_type: "video/mp4",
        metadata,
    };
    upload_file(s3, &file, &|n| reported.add(n), stop).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_file_is_stored_in_parts_whole_with_its_type_metadata_and_token() {
    let moto = Moto::start();
    moto.bucket(BUCKET).await;
    let s3 = moto.s3().await;
    let dir = TempDir::new("upload-large");
    let size = 3 * PART_SIZE as usize + 12_345;
    let path = dir.noise_file("big.mp4", size);
    let reported = Reported::default();
    let meta = HashMap::from([("source-key".to_owned(), "in/a.mov".to_owned())]);
    let target = uri(BUCKET, "out/big.mp4");
    upload(&s3, &path, &target, meta, &CancellationToken::new(), &reported)
        .await
        .unwrap();

    assert_eq!(reported.bytes.load(Ordering::Relaxed), size as u64);
    assert_eq!(reported.calls.load(Ordering::Relaxed), 4, "one report per part");
    let head = s3.head_object().bucket(BUCKET).key("out/big.mp4").send().await.unwrap();
    assert_eq!(head.content_length(), Some(size as i64));
    assert_eq!(head.content_type(), Some("video/mp4"));
    let meta = head.metadata().unwrap();
    assert_eq!(meta.get("source-key").map(String::as_str), Some("in/a.mov"));
    assert!(meta.get(UPLOAD_TOKEN).is_some_and(|t| t.len() == 36), "{meta:?}");
    let stored = s3
        .get_object()
        .bucket(BUCKET)
        .key("out/big.mp4")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert!(
        stored == std::fs::read(&path).unwrap(),
        "the parts were assembled in order"
    );
    let uploads = s3.list_multipart_uploads().bucket(BUCKET).send().await.unwrap();
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_small_file_is_stored_in_one_put_and_reported_once() {
    let moto = Moto::start();
    moto.bucket(BUCKET).await;
    let s3 = moto.s3().await;
    let dir = TempDir::new("upload-small");
    let path = dir.noise_file("small.mp4", 100_000);
    let reported = Reported::default();
    let meta = HashMap::from([("settings".to_owned(), "crf23".to_owned())]);
    let target = uri(BUCKET, "small.mp4");
    upload(&s3, &path, &target, meta, &CancellationToken::new(), &reported)
        .await
        .unwrap();

    assert_eq!(reported.bytes.load(Ordering::Relaxed), 100_000);
    assert_eq!(reported.calls.load(Ordering::Relaxed), 1);
    let head = s3.head_object().bucket(BUCKET).key("small.mp4").send().await.unwrap();
    assert_eq!(head.content_length(), Some(100_000));
    let meta = head.metadata().unwrap();
    assert_eq!(meta.get("settings").map(String::as_str), Some("crf23"));
    assert!(meta.get(UPLOAD_TOKEN).is_none(), "only multipart uploads carry a token");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_multipart_upload_is_aborted_and_leaves_nothing() {
    let moto = Moto::start();
    moto.bucket(BUCKET).await;
    let s3 = moto.s3().await;
    let dir = TempDir::new("upload-stop");
    let path = dir.noise_file("big.mp4", 2 * PART_SIZE as usize + 1);
    let stop = CancellationToken::new();
    stop.cancel();
    let reported = Reported::default();
    let target = uri(BUCKET, "big.mp4");
    let result = upload(&s3, &path, &target, HashMap::new(), &stop, &reported).await;

    assert!(matches!(result, Err(UploadError::Stopped)), "{result:?}");
    let uploads = s3.list_multipart_uploads().bucket(BUCKET).send().await.unwrap();
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
    let listed = s3.list_objects_v2().bucket(BUCKET).send().await.unwrap();
    assert!(listed.contents().is_empty(), "{:?}", listed.contents());
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_name_the_object_and_s3s_reason() {
    let moto = Moto::start();
    let s3 = moto.s3().await;
    let dir = TempDir::new("upload-fail");
    let reported = Reported::default();
    let go = CancellationToken::new();

    // No such bucket, for one PutObject and for a multipart upload.
    let small = dir.noise_file("small.mp4", 1000);
    let target = uri("no-such-bucket", "a.mp4");
    let err = upload(&s3, &small, &target, HashMap::new(), &go, &reported)
        .await
        .unwrap_err();
    assert!(matches!(err, UploadError::S3 { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.starts_with("uploading s3://no-such-bucket/a.mp4: "), "{text}");
    assert!(text.contains("NoSuchBucket"), "{text}");

    let big = dir.noise_file("big.mp4", PART_SIZE as usize + 1);
    let err = upload(&s3, &big, &target, HashMap::new(), &go, &reported)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("starting the multipart upload of s3://no-such-bucket/a.mp4: "),
        "{text}"
    );

    // A local file that is not there.
    moto.bucket(BUCKET).await;
    let missing = dir.join("missing.mp4");
    let target = uri(BUCKET, "a.mp4");
    let file = FileUpload {
        path: &missing,
        size: 10,
        target: &target,
        content_type: "video/mp4",
        metadata: HashMap::new(),
    };
    let err = upload_file(&s3, &file, &|n| reported.add(n), &go).await.unwrap_err();
    assert!(matches!(err, UploadError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.mp4"), "{err}");
    assert_eq!(
        reported.calls.load(Ordering::Relaxed),
        0,
        "nothing was reported as stored"
    );
}
