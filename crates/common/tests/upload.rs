//! `encoding_common::upload` against both emulators: what is stored (read back byte for byte, with
//! its size and CRC32), what is reported, what is left behind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use aws_sdk_s3::types::ChecksumMode;
use encoding_common::S3Uri;
use encoding_common::upload::{FileUpload, MULTIPART_THRESHOLD, PART_SIZE, Stored, UploadError, upload_file};
use test_support::{Emulator, FaultProxy, Kind, TempDir};
use tokio_util::sync::CancellationToken;

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

    fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }
}

/// The shared emulator, a bucket of the test's own on it, and scratch space.
async fn setup(kind: Kind, tag: &str) -> (&'static Emulator, String, TempDir) {
    let aws = Emulator::shared(kind);
    let bucket = aws.unique(tag);
    aws.bucket(&bucket).await;
    (aws, bucket, TempDir::new(&format!("upload-{kind}-{tag}")))
}

async fn upload(
    s3: &aws_sdk_s3::Client,
    path: &std::path::Path,
    target: &S3Uri,
    metadata: HashMap<String, String>,
    stop: &CancellationToken,
    reported: &Reported,
) -> Result<Stored, UploadError> {
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    let file = FileUpload {
        path,
        size,
        target,
        content_type: "video/mp4",
        metadata,
        tagging: None,
    };
    upload_file(s3, &file, &|n| reported.add(n), stop).await
}

/// An S3 client through `proxy` (path-style, as an emulator needs).
async fn s3_through(aws: &Emulator, proxy: &FaultProxy) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(&aws.sdk().await)
        .endpoint_url(proxy.url())
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Uploads a file of `size` bytes and checks everything that can be read back: the bytes, the
/// size, the content type, the metadata, the full-object CRC32, the reports, no upload left.
async fn stored_whole(kind: Kind, tag: &str, size: usize) -> (Stored, usize, u64) {
    let (aws, bucket, dir) = setup(kind, tag).await;
    let proxy = FaultProxy::to_url(&aws.url);
    let s3 = s3_through(aws, &proxy).await;
    let path = dir.noise_file("file.mp4", size);
    let reported = Reported::default();
    let meta = HashMap::from([("source-key".to_owned(), "in/a.mov".to_owned())]);
    let target = uri(&bucket, "out/file.mp4");
    let stored = upload(&s3, &path, &target, meta, &CancellationToken::new(), &reported)
        .await
        .unwrap_or_else(|e| panic!("{kind}: uploading {size} bytes: {e}"));

    let local = std::fs::read(&path).unwrap();
    let crc = aws_smithy_types::base64::encode(crc32fast::hash(&local).to_be_bytes());
    assert_eq!(
        stored,
        Stored {
            size: size as u64,
            crc32: crc.clone()
        },
        "{kind}"
    );
    assert_eq!(reported.bytes.load(Ordering::Relaxed), size as u64, "{kind}");

    let s3 = aws.s3().await;
    let head = s3
        .head_object()
        .bucket(&bucket)
        .key("out/file.mp4")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(size as i64), "{kind}");
    assert_eq!(head.content_type(), Some("video/mp4"), "{kind}");
    assert_eq!(
        head.checksum_crc32(),
        Some(crc.as_str()),
        "{kind}: the stored full-object CRC32"
    );
    let meta = head.metadata().unwrap();
    assert_eq!(meta.get("source-key").map(String::as_str), Some("in/a.mov"), "{kind}");
    let bytes = s3
        .get_object()
        .bucket(&bucket)
        .key("out/file.mp4")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert!(bytes == local, "{kind}: the object is the file, in order");
    assert!(
        aws.multipart_uploads(&bucket).await.is_empty(),
        "{kind}: an upload was left"
    );
    (stored, reported.calls(), proxy.peak_connections())
}

async fn a_file_of_exactly_the_threshold_is_stored_in_one_put_with_its_crc32(kind: Kind) {
    let (_, calls, _) = stored_whole(kind, "at-threshold", MULTIPART_THRESHOLD as usize).await;
    assert_eq!(calls, 1, "{kind}: one PutObject, reported once");
}

async fn a_file_one_byte_over_the_threshold_is_stored_in_two_parts_with_its_crc32(kind: Kind) {
    let (_, calls, _) = stored_whole(kind, "over-threshold", MULTIPART_THRESHOLD as usize + 1).await;
    assert_eq!(calls, 2, "{kind}: two parts, each reported");
}

async fn a_file_of_five_parts_is_sent_in_parallel_and_stored_whole_with_its_crc32(kind: Kind) {
    let (_, calls, peak) = stored_whole(kind, "five-parts", 4 * PART_SIZE as usize + 12_345).await;
    assert_eq!(calls, 5, "{kind}: one report per part");
    assert!(
        peak >= 2,
        "{kind}: the parts went one after another ({peak} connection at most)"
    );
}

async fn a_small_file_is_stored_in_one_put_and_reported_once(kind: Kind) {
    let (_, calls, _) = stored_whole(kind, "small", 100_000).await;
    assert_eq!(calls, 1, "{kind}");
}

async fn a_multipart_upload_stopped_before_or_during_its_parts_is_aborted_and_leaves_nothing(kind: Kind) {
    let (aws, bucket, dir) = setup(kind, "upload-stop").await;
    let s3 = aws.s3().await;
    let path = dir.noise_file("big.mp4", 6 * PART_SIZE as usize + 1);
    let target = uri(&bucket, "big.mp4");

    // Stopped before it starts.
    let stop = CancellationToken::new();
    stop.cancel();
    let reported = Reported::default();
    let result = upload(&s3, &path, &target, HashMap::new(), &stop, &reported).await;
    assert!(matches!(result, Err(UploadError::Stopped)), "{kind}: {result:?}");

    // Stopped once the first part is stored, with others under way.
    let stop = CancellationToken::new();
    let reported = Reported::default();
    let on_bytes = |n| {
        reported.add(n);
        stop.cancel();
    };
    let file = FileUpload {
        path: &path,
        size: std::fs::metadata(&path).unwrap().len(),
        tagging: None,
        target: &target,
        content_type: "video/mp4",
        metadata: HashMap::new(),
    };
    let result = upload_file(&s3, &file, &on_bytes, &stop).await;
    assert!(matches!(result, Err(UploadError::Stopped)), "{kind}: {result:?}");
    assert!(reported.calls() >= 1, "{kind}: the upload was stopped before any part");

    assert!(
        aws.multipart_uploads(&bucket).await.is_empty(),
        "{kind}: ListMultipartUploads shows an upload left behind"
    );
    assert!(aws.keys(&bucket).await.is_empty(), "{kind}: an object was stored");
}

async fn failures_name_the_object_and_s3s_reason(kind: Kind) {
    let (aws, bucket, dir) = setup(kind, "upload-fail").await;
    let s3 = aws.s3().await;
    let reported = Reported::default();
    let go = CancellationToken::new();

    // No such bucket, for one PutObject and for a multipart upload.
    let small = dir.noise_file("small.mp4", 1000);
    let target = uri("no-such-bucket", "a.mp4");
    let err = upload(&s3, &small, &target, HashMap::new(), &go, &reported)
        .await
        .unwrap_err();
    assert!(matches!(err, UploadError::S3 { .. }), "{kind}: {err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with("uploading s3://no-such-bucket/a.mp4: "),
        "{kind}: {text}"
    );
    assert!(text.contains("NoSuchBucket"), "{kind}: {text}");

    let big = dir.noise_file("big.mp4", PART_SIZE as usize + 1);
    let err = upload(&s3, &big, &target, HashMap::new(), &go, &reported)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("starting the multipart upload of s3://no-such-bucket/a.mp4: "),
        "{kind}: {text}"
    );

    // A local file that is not there.
    let missing = dir.join("missing.mp4");
    let target = uri(&bucket, "a.mp4");
    let file = FileUpload {
        path: &missing,
        size: 10,
        target: &target,
        content_type: "video/mp4",
        metadata: HashMap::new(),
        tagging: None,
    };
    let err = upload_file(&s3, &file, &|n| reported.add(n), &go).await.unwrap_err();
    assert!(matches!(err, UploadError::Read { .. }), "{kind}: {err:?}");
    assert!(err.to_string().contains("missing.mp4"), "{kind}: {err}");
    assert_eq!(reported.calls(), 0, "{kind}: nothing was reported as stored");
    assert!(aws.keys(&bucket).await.is_empty(), "{kind}");
}

test_support::on_both_emulators!(
    a_file_of_exactly_the_threshold_is_stored_in_one_put_with_its_crc32,
    a_file_one_byte_over_the_threshold_is_stored_in_two_parts_with_its_crc32,
    a_file_of_five_parts_is_sent_in_parallel_and_stored_whole_with_its_crc32,
    a_small_file_is_stored_in_one_put_and_reported_once,
    a_multipart_upload_stopped_before_or_during_its_parts_is_aborted_and_leaves_nothing,
    failures_name_the_object_and_s3s_reason,
);
