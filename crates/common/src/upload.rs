//! Storing a local file in S3, as the encoder stores its renditions and the producer its sources.
//!
//! Files up to [`MULTIPART_THRESHOLD`] go in one PutObject; larger ones as a multipart upload in
//! parts of [`PART_SIZE`], a few parts at a time. A multipart upload that fails, or is stopped
//! through its [`CancellationToken`], is aborted, so no part is left behind to be billed (the
//! bucket's lifecycle rule from `scripts/aws/create-buckets.sh` is the safety net for a process
//! killed outright).
//!
//! The answer to CompleteMultipartUpload can be lost or unreadable although S3 assembled the
//! object (a dropped connection; moto answers in a shape the SDK rejects). Each multipart upload
//! therefore marks its object with a token of its own in the user metadata ([`UPLOAD_TOKEN`]),
//! and a completion whose answer is missing counts as done only when HeadObject shows the object
//! with this token and every byte. That look needs `s3:GetObject`; without it, an unreadable
//! answer stays a failure.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::S3Uri;
use crate::aws::error_reason;

/// Files larger than this are uploaded in parts.
pub const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// The size of one part (S3 allows 5 MiB to 5 GiB, and at most 10,000 parts: 156 GiB here).
pub const PART_SIZE: u64 = 16 * 1024 * 1024;
/// Parts uploaded at the same time.
const PARTS_IN_FLIGHT: usize = 4;
/// User-metadata key of the token that identifies one multipart upload's object.
pub const UPLOAD_TOKEN: &str = "upload-token";

/// Why an upload did not finish. A multipart upload has been aborted either way.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// The cancellation token fired first.
    #[error("stopped")]
    Stopped,
    /// The local file could not be read.
    #[error("reading {}: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// S3 refused or could not be reached.
    #[error("{action} {uri}: {reason}")]
    S3 {
        /// What was being done ("uploading", "uploading part 3 of", ...).
        action: String,
        /// The object.
        uri: String,
        /// S3's code and message, or the connection failure.
        reason: String,
    },
}

/// One file to store.
#[derive(Debug, Clone)]
pub struct FileUpload<'a> {
    /// The local file.
    pub path: &'a Path,
    /// Its size in bytes (read by the caller, who usually needs it anyway).
    pub size: u64,
    /// Where it goes.
    pub target: &'a S3Uri,
    /// The object's `Content-Type`.
    pub content_type: &'a str,
    /// The object's user metadata.
    pub metadata: HashMap<String, String>,
}

/// Uploads `file` through `s3`, calling `on_bytes` with each part's size as it is stored (the
/// whole size at once for a single PutObject).
///
/// # Errors
///
/// [`UploadError::Stopped`] when `stop` fires first, [`UploadError::Read`] when the file cannot
/// be read, [`UploadError::S3`] when S3 refuses. A multipart upload is aborted in every case.
pub async fn upload_file(
    s3: &aws_sdk_s3::Client,
    file: &FileUpload<'_>,
    on_bytes: &(dyn Fn(u64) + Send + Sync),
    stop: &CancellationToken,
) -> Result<(), UploadError> {
    if file.size > MULTIPART_THRESHOLD {
        return upload_in_parts(s3, file, on_bytes, stop).await;
    }
    let body = ByteStream::from_path(file.path)
        .await
        .map_err(|e| read_error(file.path, &e))?;
    let put = s3
        .put_object()
        .bucket(&file.target.bucket)
        .key(&file.target.key)
        .content_type(file.content_type)
        .content_length(file.size as i64)
        .set_metadata(Some(file.metadata.clone()))
        .body(body)
        .send();
    tokio::select! {
        r = put => { r.map_err(|e| s3_error("uploading", file.target, &e))?; }
        () = stop.cancelled() => return Err(UploadError::Stopped),
    }
    on_bytes(file.size);
    Ok(())
}

async fn upload_in_parts(
    s3: &aws_sdk_s3::Client,
    file: &FileUpload<'_>,
    on_bytes: &(dyn Fn(u64) + Send + Sync),
    stop: &CancellationToken,
) -> Result<(), UploadError> {
    let uri = file.target;
    let token = uuid::Uuid::new_v4().to_string();
    let mut metadata = file.metadata.clone();
    metadata.insert(UPLOAD_TOKEN.to_owned(), token.clone());
    let upload_id = s3
        .create_multipart_upload()
        .bucket(&uri.bucket)
        .key(&uri.key)
        .content_type(file.content_type)
        .set_metadata(Some(metadata))
        .send()
        .await
        .map_err(|e| s3_error("starting the multipart upload of", uri, &e))?
        .upload_id
        .ok_or_else(|| UploadError::S3 {
            action: "starting the multipart upload of".into(),
            uri: uri.to_string(),
            reason: "S3 returned no upload id".into(),
        })?;
    let parts = file.size.div_ceil(PART_SIZE);
    tracing::info!(file = %file.path.display(), %uri, parts, part_size = PART_SIZE, "multipart upload started");
    let result = tokio::select! {
        r = send_parts(s3, file, &upload_id, &token, on_bytes) => r,
        () = stop.cancelled() => Err(UploadError::Stopped),
    };
    if let Err(why) = &result {
        let abort = s3
            .abort_multipart_upload()
            .bucket(&uri.bucket)
            .key(&uri.key)
            .upload_id(&upload_id)
            .send()
            .await;
        match abort {
            Ok(_) => tracing::warn!(%uri, %why, "multipart upload aborted"),
            Err(e) => tracing::error!(
                %uri,
                %why,
                error = %error_reason(&e),
                "aborting the multipart upload failed; the bucket's lifecycle rule will remove its parts"
            ),
        }
    }
    result
}

/// Uploads every part (a few at a time) and completes the upload. Dropping the future stops the
/// parts under way.
async fn send_parts(
    s3: &aws_sdk_s3::Client,
    file: &FileUpload<'_>,
    upload_id: &str,
    token: &str,
    on_bytes: &(dyn Fn(u64) + Send + Sync),
) -> Result<(), UploadError> {
    let uri = file.target;
    let mut ranges = (0..file.size.div_ceil(PART_SIZE)).map(|n| {
        let offset = n * PART_SIZE;
        (n as i32 + 1, offset, PART_SIZE.min(file.size - offset))
    });
    let mut tasks = JoinSet::new();
    let mut done = Vec::new();
    loop {
        while tasks.len() < PARTS_IN_FLIGHT {
            let Some((number, offset, length)) = ranges.next() else {
                break;
            };
            let part = PartUpload {
                s3: s3.clone(),
                path: file.path.to_owned(),
                uri: uri.clone(),
                upload_id: upload_id.to_owned(),
                number,
                offset,
                length,
            };
            tasks.spawn(part.send());
        }
        let Some(joined) = tasks.join_next().await else { break };
        let (part, length) = joined.map_err(|e| UploadError::S3 {
            action: "uploading a part of".into(),
            uri: uri.to_string(),
            reason: format!("the part's task stopped: {e}"),
        })??;
        tracing::debug!(%uri, part = part.part_number(), bytes = length, "part uploaded");
        on_bytes(length);
        done.push(part);
    }
    done.sort_by_key(|p| p.part_number());
    let completed = s3
        .complete_multipart_upload()
        .bucket(&uri.bucket)
        .key(&uri.key)
        .upload_id(upload_id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done)).build())
        .send()
        .await;
    let Err(e) = completed else { return Ok(()) };
    let head = s3.head_object().bucket(&uri.bucket).key(&uri.key).send().await.ok();
    let ours = head.as_ref().is_some_and(|h| {
        h.content_length == Some(file.size as i64)
            && h.metadata().and_then(|m| m.get(UPLOAD_TOKEN)).map(String::as_str) == Some(token)
    });
    if !ours {
        return Err(s3_error("completing the multipart upload of", uri, &e));
    }
    tracing::debug!(%uri, error = %error_reason(&e), "the completion answer was unreadable, but the object is stored whole");
    Ok(())
}

/// One part of a multipart upload, owned, so it can run on its own task.
struct PartUpload {
    s3: aws_sdk_s3::Client,
    path: PathBuf,
    uri: S3Uri,
    upload_id: String,
    number: i32,
    offset: u64,
    length: u64,
}

impl PartUpload {
    async fn send(self) -> Result<(CompletedPart, u64), UploadError> {
        let body = ByteStream::read_from()
            .path(&self.path)
            .offset(self.offset)
            .length(Length::Exact(self.length))
            .build()
            .await
            .map_err(|e| read_error(&self.path, &e))?;
        let out = self
            .s3
            .upload_part()
            .bucket(&self.uri.bucket)
            .key(&self.uri.key)
            .upload_id(&self.upload_id)
            .part_number(self.number)
            .content_length(self.length as i64)
            .body(body)
            .send()
            .await
            .map_err(|e| s3_error(&format!("uploading part {} of", self.number), &self.uri, &e))?;
        let part = CompletedPart::builder()
            .part_number(self.number)
            .set_e_tag(out.e_tag)
            .set_checksum_crc32(out.checksum_crc32)
            .build();
        Ok((part, self.length))
    }
}

fn read_error(path: &Path, e: &dyn std::error::Error) -> UploadError {
    let mut reason = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    UploadError::Read {
        path: path.to_owned(),
        reason,
    }
}

fn s3_error<E, R>(action: &str, uri: &S3Uri, e: &aws_sdk_s3::error::SdkError<E, R>) -> UploadError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    UploadError::S3 {
        action: action.to_owned(),
        uri: uri.to_string(),
        reason: error_reason(e),
    }
}
