//! The S3 side of a run, behind a narrow seam: look at the source, download it, find existing
//! renditions, upload new ones (multipart for large files, aborted when the run is stopped; the
//! stored size and CRC32 read back).
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

    /// The user metadata of an existing object, or `None` when there is none.
    fn existing_metadata(
        &self,
        uri: &S3Uri,
    ) -> impl Future<Output = anyhow::Result<Option<HashMap<String, String>>>> + Send;

    /// Uploads `path` to `uri` as `content_type` with `metadata`; returns what is stored, read
    /// back.
    fn upload(
        &self,
        path: &Path,
        uri: &S3Uri,
        content_type: &str,
        metadata: &HashMap<String, String>,
        cancel: &CancellationToken,
    ) -> impl Future<Output = Result<Stored, TransferError>> + Send;
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
        let mut body = out.body;
        let mut file = tokio::fs::File::create(path)
            .await
            .with_context(|| format!("creating {}", path.display()))?;
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
        };
        match upload_file(&self.s3, &file, &|_| {}, cancel).await {
            Ok(stored) => Ok(stored),
            Err(UploadError::Stopped) => Err(TransferError::Cancelled),
            Err(e) => Err(TransferError::Failed(e.into())),
        }
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
            .upload(&path, &uri(&bucket, "r/big.mp4"), "video/mp4", &HashMap::new(), &stop)
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

    test_support::on_both_emulators!(
        a_large_rendition_is_uploaded_in_parts_with_its_metadata,
        a_stopped_multipart_upload_is_aborted_and_leaves_nothing,
        a_missing_source_is_told_apart_from_other_failures,
    );
}
