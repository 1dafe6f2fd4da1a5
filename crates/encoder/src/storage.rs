//! The S3 side of a run, behind a narrow seam: look at the source, download it (for a chunk, only
//! its byte ranges, each read conditional on the source's ETag), find existing renditions, upload
//! new ones (multipart for large files, aborted when the run is stopped; the stored size and CRC32
//! read back); and for a split request, small objects (the plan, the ranges, the stitch claim by
//! conditional write), the chunk folder's listing and its removal.
//!
//! [`Store`] is what the work needs; [`S3Store`] is the real one over the AWS SDK (tested against
//! both emulators below). The work's unit tests stand in for it with an in-memory store.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;

use anyhow::Context;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use encoding_common::S3Uri;
use encoding_common::upload::{FileUpload, Stored, UploadError, upload_file};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// The tag of every object a split stores beside the outputs (the plan, the stitch claim, the
/// chunks): the buckets' lifecycle rule expires what a split that never completes leaves behind
/// (`scripts/aws/create-buckets.sh`, `SPLIT_EXPIRY_DAYS`).
pub const SPLIT_TAGGING: &str = "video-encoding=split";

/// How much of a download is gathered before it is written to the file.
const WRITE_BUFFER: usize = 1024 * 1024;

/// The source object as S3 describes it.
#[derive(Debug, Clone)]
pub struct SourceObject {
    /// Its ETag (identifies the content version for the duplicate check).
    pub etag: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Why the source object cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// There is no such object (or bucket): the request can never succeed.
    #[error("the source object {0} does not exist")]
    Missing(String),
    /// Anything else: access, network, throttling.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Why a transfer stopped.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The run was told to stop.
    #[error("cancelled")]
    Cancelled,
    /// S3 or the disk failed.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// What a run does with S3.
pub trait Store: Send + Sync {
    /// Looks up the source object without downloading it.
    fn head_source(&self, uri: &S3Uri) -> impl Future<Output = Result<SourceObject, SourceError>> + Send;

    /// Downloads `uri` to `path`, stopping early when `cancel` fires; returns the bytes written.
    fn download(
        &self,
        uri: &S3Uri,
        path: &Path,
        cancel: &CancellationToken,
    ) -> impl Future<Output = Result<u64, TransferError>> + Send;

    /// Fetches only `ranges` of `uri` (start inclusive, end exclusive, sorted, apart) into `path`,
    /// a sparse file of `object.size` bytes whose other bytes read as zeros, and only while the
    /// object's ETag is `object.etag` (each read is conditional: a source replaced meanwhile is
    /// an error, never a file of two contents). Stops early when `cancel` fires; returns the
    /// bytes fetched.
    fn download_ranges(
        &self,
        uri: &S3Uri,
        object: &SourceObject,
        ranges: &[(u64, u64)],
        path: &Path,
        cancel: &CancellationToken,
    ) -> impl Future<Output = Result<u64, TransferError>> + Send;

    /// The user metadata of an existing object, or `None` when there is none.
    fn existing_metadata(
        &self,
        uri: &S3Uri,
    ) -> impl Future<Output = anyhow::Result<Option<HashMap<String, String>>>> + Send;

    /// Uploads `path` to `uri` as `content_type` with `metadata` (and the tags `tagging`, URL
    /// encoded, when given); returns what is stored, read back.
    fn upload(
        &self,
        path: &Path,
        uri: &S3Uri,
        content_type: &str,
        metadata: &HashMap<String, String>,
        tagging: Option<&str>,
        cancel: &CancellationToken,
    ) -> impl Future<Output = Result<Stored, TransferError>> + Send;

    /// A small object's bytes (a plan, a claim), or `None` when there is none.
    fn read_small(&self, uri: &S3Uri) -> impl Future<Output = anyhow::Result<Option<Vec<u8>>>> + Send;

    /// Stores a small object, tagged [`SPLIT_TAGGING`] (it belongs to a split); with
    /// `only_if_absent`, only when there is none yet (S3's conditional write,
    /// `If-None-Match: *`). Returns whether it was written.
    fn write_small(
        &self,
        uri: &S3Uri,
        body: Vec<u8>,
        content_type: &str,
        only_if_absent: bool,
    ) -> impl Future<Output = anyhow::Result<bool>> + Send;

    /// The names of the objects under the folder `prefix` (their keys after `prefix/`).
    fn list(&self, prefix: &S3Uri) -> impl Future<Output = anyhow::Result<Vec<String>>> + Send;

    /// Deletes the objects `uris` (all in one bucket); a missing one is not an error.
    fn delete(&self, uris: &[S3Uri]) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// S3 access for a run.
#[derive(Debug, Clone)]
pub struct S3Store {
    s3: aws_sdk_s3::Client,
}

impl S3Store {
    /// Storage through `s3`.
    pub fn new(s3: aws_sdk_s3::Client) -> Self {
        Self { s3 }
    }
}

impl Store for S3Store {
    async fn head_source(&self, uri: &S3Uri) -> Result<SourceObject, SourceError> {
        match self.s3.head_object().bucket(&uri.bucket).key(&uri.key).send().await {
            Ok(out) => Ok(SourceObject {
                etag: out.e_tag.unwrap_or_default(),
                size: out.content_length.unwrap_or(0).max(0) as u64,
            }),
            Err(e) if is_not_found(&e) => Err(SourceError::Missing(uri.to_string())),
            Err(e) => Err(SourceError::Other(
                anyhow::Error::new(e).context(format!("looking up the source {uri}")),
            )),
        }
    }

    async fn download(&self, uri: &S3Uri, path: &Path, cancel: &CancellationToken) -> Result<u64, TransferError> {
        let out = tokio::select! {
            r = self.s3.get_object().bucket(&uri.bucket).key(&uri.key).send() => r,
            _ = cancel.cancelled() => return Err(TransferError::Cancelled),
        }
        .with_context(|| format!("downloading {uri}"))?;
        let mut file = tokio::fs::File::create(path)
            .await
            .with_context(|| format!("creating {}", path.display()))?;
        write_body(out.body, &mut file, uri, path, cancel).await
    }

    async fn download_ranges(
        &self,
        uri: &S3Uri,
        object: &SourceObject,
        ranges: &[(u64, u64)],
        path: &Path,
        cancel: &CancellationToken,
    ) -> Result<u64, TransferError> {
        use tokio::io::AsyncSeekExt;
        let mut file = tokio::fs::File::create(path)
            .await
            .with_context(|| format!("creating {}", path.display()))?;
        file.set_len(object.size)
            .await
            .with_context(|| format!("sizing {}", path.display()))?;
        let mut total = 0u64;
        for &(start, end) in ranges {
            if start >= end || end > object.size {
                return Err(TransferError::Failed(anyhow::anyhow!(
                    "the range {start}..{end} is not within the {} bytes of {uri}",
                    object.size
                )));
            }
            let get = self
                .s3
                .get_object()
                .bucket(&uri.bucket)
                .key(&uri.key)
                .range(format!("bytes={start}-{}", end - 1))
                .if_match(&object.etag)
                .send();
            let out = tokio::select! {
                r = get => r,
                _ = cancel.cancelled() => return Err(TransferError::Cancelled),
            };
            let out = match out {
                Ok(out) => out,
                Err(e) if is_precondition_failed(&e) => {
                    return Err(TransferError::Failed(anyhow::anyhow!(
                        "{uri} changed since it was looked up (its ETag is no longer {})",
                        object.etag
                    )));
                }
                Err(e) => {
                    return Err(TransferError::Failed(
                        anyhow::Error::new(e).context(format!("downloading bytes {start}..{end} of {uri}")),
                    ));
                }
            };
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .with_context(|| format!("writing {}", path.display()))?;
            let bytes = write_body(out.body, &mut file, uri, path, cancel).await?;
            if bytes != end - start {
                return Err(TransferError::Failed(anyhow::anyhow!(
                    "downloading bytes {start}..{end} of {uri}: {bytes} bytes came"
                )));
            }
            total += bytes;
        }
        Ok(total)
    }

    async fn existing_metadata(&self, uri: &S3Uri) -> anyhow::Result<Option<HashMap<String, String>>> {
        match self.s3.head_object().bucket(&uri.bucket).key(&uri.key).send().await {
            Ok(out) => Ok(Some(out.metadata.unwrap_or_default())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(anyhow::Error::new(e).context(format!("looking up {uri}"))),
        }
    }

    /// [`encoding_common::upload`]: in parts when it is large, the file's CRC32 checked by S3 and
    /// read back with its size afterwards. A stop or failure in the middle of a multipart upload
    /// aborts it, so no part is left behind.
    async fn upload(
        &self,
        path: &Path,
        uri: &S3Uri,
        content_type: &str,
        metadata: &HashMap<String, String>,
        tagging: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<Stored, TransferError> {
        let size = tokio::fs::metadata(path)
            .await
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        let file = FileUpload {
            path,
            size,
            target: uri,
            content_type,
            metadata: metadata.clone(),
            tagging,
        };
        match upload_file(&self.s3, &file, &|_| {}, cancel).await {
            Ok(stored) => Ok(stored),
            Err(UploadError::Stopped) => Err(TransferError::Cancelled),
            Err(e) => Err(TransferError::Failed(e.into())),
        }
    }

    async fn read_small(&self, uri: &S3Uri) -> anyhow::Result<Option<Vec<u8>>> {
        match self.s3.get_object().bucket(&uri.bucket).key(&uri.key).send().await {
            Ok(out) => {
                let body = out.body.collect().await.with_context(|| format!("reading {uri}"))?;
                Ok(Some(body.into_bytes().to_vec()))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(anyhow::Error::new(e).context(format!("reading {uri}"))),
        }
    }

    async fn write_small(
        &self,
        uri: &S3Uri,
        body: Vec<u8>,
        content_type: &str,
        only_if_absent: bool,
    ) -> anyhow::Result<bool> {
        let mut put = self
            .s3
            .put_object()
            .bucket(&uri.bucket)
            .key(&uri.key)
            .content_type(content_type)
            .tagging(SPLIT_TAGGING)
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32)
            .body(body.into());
        if only_if_absent {
            put = put.if_none_match("*");
        }
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) if only_if_absent && is_precondition_failed(&e) => Ok(false),
            Err(e) => Err(anyhow::Error::new(e).context(format!("storing {uri}"))),
        }
    }

    async fn list(&self, prefix: &S3Uri) -> anyhow::Result<Vec<String>> {
        let folder = format!("{}/", prefix.key.trim_end_matches('/'));
        let mut names = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&prefix.bucket)
            .prefix(&folder)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.with_context(|| format!("listing {prefix}/"))?;
            names.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key()?.strip_prefix(&folder).map(str::to_owned)),
            );
        }
        Ok(names)
    }

    async fn delete(&self, uris: &[S3Uri]) -> anyhow::Result<()> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        let Some(first) = uris.first() else { return Ok(()) };
        // DeleteObjects takes at most 1 000 keys.
        for batch in uris.chunks(1000) {
            let objects = batch
                .iter()
                .map(|u| ObjectIdentifier::builder().key(&u.key).build())
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .s3
                .delete_objects()
                .bucket(&first.bucket)
                .delete(Delete::builder().set_objects(Some(objects)).quiet(true).build()?)
                .send()
                .await
                .with_context(|| format!("deleting {} objects in {}", batch.len(), first.bucket))?;
            if let Some(e) = out.errors().first() {
                anyhow::bail!(
                    "deleting {}: {}",
                    e.key().unwrap_or("?"),
                    e.message().or(e.code()).unwrap_or("refused")
                );
            }
        }
        Ok(())
    }
}

/// Writes a GetObject `body` to `file` where it stands, stopping early when `cancel` fires;
/// returns the bytes written.
async fn write_body(
    mut body: aws_sdk_s3::primitives::ByteStream,
    file: &mut tokio::fs::File,
    uri: &S3Uri,
    path: &Path,
    cancel: &CancellationToken,
) -> Result<u64, TransferError> {
    // A write of a file goes to a blocking thread: one per MiB, not one per network read.
    let mut file = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut bytes = 0u64;
    loop {
        let chunk = tokio::select! {
            c = body.try_next() => c.with_context(|| format!("downloading {uri}"))?,
            _ = cancel.cancelled() => return Err(TransferError::Cancelled),
        };
        let Some(chunk) = chunk else { break };
        bytes += chunk.len() as u64;
        file.write_all(&chunk)
            .await
            .with_context(|| format!("writing {}", path.display()))?;
    }
    file.flush()
        .await
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(bytes)
}

/// Whether a conditional request was refused (412): a conditional write because the object
/// exists, a conditional read because its ETag is another.
fn is_precondition_failed<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    match e {
        SdkError::ServiceError(se) => {
            se.err().code() == Some("PreconditionFailed") || se.raw().status().as_u16() == 412
        }
        _ => false,
    }
}

/// Whether an S3 error means "no such object or bucket" (HEAD answers a bare 404).
fn is_not_found<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    match e {
        SdkError::ServiceError(se) => {
            matches!(se.err().code(), Some("NoSuchKey" | "NotFound" | "NoSuchBucket"))
                || se.raw().status().as_u16() == 404
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use encoding_common::upload::PART_SIZE;
    use test_support::{Emulator, Kind, TempDir};

    /// The shared emulator, a bucket of the test's own, storage on it, and scratch space.
    async fn setup(kind: Kind) -> (&'static Emulator, String, S3Store, TempDir) {
        let aws = Emulator::shared(kind);
        let bucket = aws.unique("parts");
        aws.bucket(&bucket).await;
        let storage = S3Store::new(aws.s3().await);
        (aws, bucket, storage, TempDir::new("storage"))
    }

    fn uri(bucket: &str, key: &str) -> S3Uri {
        S3Uri {
            bucket: bucket.into(),
            key: key.into(),
        }
    }

    async fn a_large_rendition_is_uploaded_in_parts_with_its_metadata(kind: Kind) {
        let (aws, bucket, storage, dir) = setup(kind).await;
        let size = 2 * PART_SIZE as usize + 12_345;
        let path = dir.noise_file("big.mp4", size);
        let meta = HashMap::from([("source-key".to_owned(), "k".to_owned())]);
        let stored = storage
            .upload(
                &path,
                &uri(&bucket, "r/big.mp4"),
                "video/mp4",
                &meta,
                None,
                &CancellationToken::new(),
            )
            .await
            .unwrap();
        assert_eq!(stored.size, size as u64);
        let head = aws
            .s3()
            .await
            .head_object()
            .bucket(&bucket)
            .key("r/big.mp4")
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_type(), Some("video/mp4"));
        assert_eq!(
            head.metadata().and_then(|m| m.get("source-key")).map(String::as_str),
            Some("k")
        );
    }

    async fn a_stopped_multipart_upload_is_aborted_and_leaves_nothing(kind: Kind) {
        let (aws, bucket, storage, dir) = setup(kind).await;
        let path = dir.noise_file("big.mp4", 2 * PART_SIZE as usize);
        let stop = CancellationToken::new();
        stop.cancel();
        let result = storage
            .upload(
                &path,
                &uri(&bucket, "r/big.mp4"),
                "video/mp4",
                &HashMap::new(),
                None,
                &stop,
            )
            .await;
        assert!(matches!(result, Err(TransferError::Cancelled)), "{result:?}");
        let s3 = aws.s3().await;
        let uploads = s3.list_multipart_uploads().bucket(&bucket).send().await.unwrap();
        assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
        assert!(
            storage
                .existing_metadata(&uri(&bucket, "r/big.mp4"))
                .await
                .unwrap()
                .is_none()
        );
    }

    async fn a_missing_source_is_told_apart_from_other_failures(kind: Kind) {
        let (_aws, bucket, storage, _dir) = setup(kind).await;
        assert!(matches!(
            storage.head_source(&uri(&bucket, "nope.mp4")).await,
            Err(SourceError::Missing(_))
        ));
        let other_bucket = S3Uri {
            bucket: "no-such-bucket".into(),
            key: "a.mp4".into(),
        };
        assert!(matches!(
            storage.head_source(&other_bucket).await,
            Err(SourceError::Missing(_))
        ));
    }

    /// What a split keeps beside the outputs: the plan (written once), the stitch claim (won by
    /// one writer), the listing of the chunks, and their removal.
    async fn small_objects_are_written_once_listed_and_removed(kind: Kind) {
        let (aws, bucket, storage, dir) = setup(kind).await;
        let folder = uri(&bucket, "r/v/chunks/p-1");
        let claim = folder.join("stitch.json");
        assert_eq!(storage.read_small(&claim).await.unwrap(), None);
        assert!(
            storage
                .write_small(&claim, b"{\"chunk\":2}".to_vec(), "application/json", true)
                .await
                .unwrap()
        );
        assert!(
            !storage
                .write_small(&claim, b"{\"chunk\":0}".to_vec(), "application/json", true)
                .await
                .unwrap(),
            "a second claim loses"
        );
        assert_eq!(
            storage.read_small(&claim).await.unwrap().as_deref(),
            Some(&b"{\"chunk\":2}"[..])
        );
        assert!(
            storage
                .write_small(&folder.join("plan.json"), b"{}".to_vec(), "application/json", false)
                .await
                .unwrap()
        );
        let chunk = dir.noise_file("c.mp4", 1000);
        for name in ["480p.chunk-00000.mp4", "480p.chunk-00001.mp4"] {
            storage
                .upload(
                    &chunk,
                    &folder.join(name),
                    "video/mp4",
                    &HashMap::new(),
                    Some(SPLIT_TAGGING),
                    &CancellationToken::new(),
                )
                .await
                .unwrap();
        }
        // A neighbour whose key starts the same is not in the folder.
        storage
            .write_small(
                &uri(&bucket, "r/v/chunks/p-10/plan.json"),
                b"{}".to_vec(),
                "application/json",
                false,
            )
            .await
            .unwrap();
        let mut names = storage.list(&folder).await.unwrap();
        names.sort();
        // Every object of the split carries the tag the lifecycle rule expires.
        let s3 = aws.s3().await;
        for name in &names {
            let tags = s3
                .get_object_tagging()
                .bucket(&bucket)
                .key(folder.join(name).key)
                .send()
                .await
                .unwrap();
            let tags: Vec<(&str, &str)> = tags.tag_set().iter().map(|t| (t.key(), t.value())).collect();
            assert_eq!(tags, [("video-encoding", "split")], "{name}");
        }
        assert_eq!(
            names,
            [
                "480p.chunk-00000.mp4",
                "480p.chunk-00001.mp4",
                "plan.json",
                "stitch.json"
            ]
        );
        let uris: Vec<S3Uri> = names.iter().map(|n| folder.join(n)).collect();
        storage.delete(&uris).await.unwrap();
        assert!(storage.list(&folder).await.unwrap().is_empty());
        assert_eq!(
            storage.list(&uri(&bucket, "r/v/chunks/p-10")).await.unwrap(),
            ["plan.json"]
        );
        storage.delete(&uris).await.unwrap();
    }

    /// A chunk run's fetch: only the ranges asked, in a file of the object's size, zeros between;
    /// refused once the object is replaced, and for a range past its end.
    async fn ranges_are_fetched_into_a_sparse_file_while_the_object_is_unchanged(kind: Kind) {
        let (aws, bucket, storage, dir) = setup(kind).await;
        let size = 300_000usize;
        let source = dir.noise_file("source.mp4", size);
        let whole = std::fs::read(&source).unwrap();
        let target = uri(&bucket, "in/source.mp4");
        let none = CancellationToken::new();
        storage
            .upload(&source, &target, "video/mp4", &HashMap::new(), None, &none)
            .await
            .unwrap();
        let object = storage.head_source(&target).await.unwrap();
        let ranges = [(0, 100), (5_000, 70_000), (size as u64 - 10, size as u64)];
        let path = dir.path().join("sparse");
        let fetched = storage
            .download_ranges(&target, &object, &ranges, &path, &none)
            .await
            .unwrap();
        assert_eq!(fetched, 100 + 65_000 + 10);
        let got = std::fs::read(&path).unwrap();
        assert_eq!(got.len(), size);
        for (i, (g, w)) in got.iter().zip(&whole).enumerate() {
            let inside = ranges.iter().any(|&(a, b)| (a..b).contains(&(i as u64)));
            assert_eq!(*g, if inside { *w } else { 0 }, "byte {i}");
        }
        let past = storage
            .download_ranges(&target, &object, &[(10, size as u64 + 1)], &path, &none)
            .await
            .unwrap_err();
        assert!(
            format!("{past:#}").contains("is not within the 300000 bytes"),
            "{past:#}"
        );
        // Replaced since it was looked up: the read is refused.
        let other = dir.noise_file("other.mp4", 1000);
        aws.s3()
            .await
            .put_object()
            .bucket(&bucket)
            .key("in/source.mp4")
            .body(aws_sdk_s3::primitives::ByteStream::from_path(&other).await.unwrap())
            .send()
            .await
            .unwrap();
        let changed = storage
            .download_ranges(&target, &object, &[(0, 100)], &path, &none)
            .await
            .unwrap_err();
        assert!(
            format!("{changed:#}").contains("changed since it was looked up"),
            "{changed:#}"
        );
        let stop = CancellationToken::new();
        stop.cancel();
        let object = storage.head_source(&target).await.unwrap();
        let stopped = storage
            .download_ranges(&target, &object, &[(0, 100)], &path, &stop)
            .await;
        assert!(matches!(stopped, Err(TransferError::Cancelled)), "{stopped:?}");
    }

    test_support::on_both_emulators!(
        ranges_are_fetched_into_a_sparse_file_while_the_object_is_unchanged,
        small_objects_are_written_once_listed_and_removed,
        a_large_rendition_is_uploaded_in_parts_with_its_metadata,
        a_stopped_multipart_upload_is_aborted_and_leaves_nothing,
        a_missing_source_is_told_apart_from_other_failures,
    );
}
