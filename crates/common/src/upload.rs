//! Storing a local file in S3, as the encoder stores its renditions and the producer its sources.
//!
//! Files up to [`MULTIPART_THRESHOLD`] go in one PutObject; larger ones as a multipart upload in
//! parts of [`PART_SIZE`], a few parts at a time. A multipart upload that fails, or is stopped
//! through its [`CancellationToken`], is aborted, so no part is left behind to be billed: a
//! stopped one at once (the grace period is short), a failed one for up to half a minute while S3
//! cannot be reached. The bucket's lifecycle rule from `scripts/aws/create-buckets.sh` is the
//! safety net for a process killed outright.
//!
//! # One checksum from create to complete
//!
//! Every upload carries the file's CRC32, computed here from the bytes on disk, and S3 checks it:
//!
//! - a single PutObject sends the whole file's CRC32 (`x-amz-checksum-crc32`);
//! - a multipart upload is created with algorithm CRC32 and checksum type `FULL_OBJECT`; each
//!   UploadPart sends its part's CRC32, and CompleteMultipartUpload names every part with its
//!   ETag and CRC32 and gives the whole file's CRC32, which S3 checks against the assembled
//!   object.
//!
//! Mixing the shapes (an upload created without an algorithm whose parts carry the SDK's own
//! CRC32s) is what real S3 and LocalStack refuse with `InvalidPart`. A full-object CRC32 is also
//! the same value for both shapes, so the check after the upload is one comparison: HeadObject
//! (with checksum mode on) must show the file's size and its CRC32 ([`Stored`]). That look needs
//! `s3:GetObject` on the object, which both programs' policies grant.
//!
//! # A completion whose answer cannot be read
//!
//! A completion that fails (an error code, a lost connection) is a failure: the upload is aborted
//! and the caller retries (the encoder releases its message; a retry overwrites the object with the
//! same bytes). One case is looked at more closely: S3 answered *success* (HTTP 2xx) in a body the
//! SDK cannot read. moto does this on every completion (its answer's root element is
//! `CompleteMultipartUploadResponse` where S3 writes `CompleteMultipartUploadResult`). Such an
//! upload counts as done only when HeadObject proves the object is this upload's: the token this
//! upload put in the user metadata ([`UPLOAD_TOKEN`]), the file's size and the file's full-object
//! CRC32. Anything less, and it is a failure like the others.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::S3Uri;
use crate::aws::error_reason;

/// Files larger than this are uploaded in parts.
pub const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// The size of one part (S3 allows 5 MiB to 5 GiB, and at most 10,000 parts: 156 GiB here).
pub const PART_SIZE: u64 = 16 * 1024 * 1024;
/// Parts uploaded at the same time.
pub const PARTS_IN_FLIGHT: usize = 4;
/// How much of the file one read takes while sending (the SDK's default, 4 KiB, makes every
/// 16 MiB part 4096 trips to a blocking thread, which cost more than the network on loopback).
const READ_BUFFER: usize = 1024 * 1024;
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
    /// S3 answered, but the object it holds is not the file.
    #[error("the stored {uri} is not the file: {found}, expected {expected}")]
    Mismatch {
        /// The object.
        uri: String,
        /// The file's size and CRC32.
        expected: Stored,
        /// What HeadObject showed.
        found: Stored,
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
    /// The object's tags, URL-encoded (`key=value&...`), for a lifecycle rule to find it.
    pub tagging: Option<&'a str>,
}

/// What S3 holds after an upload, as checked: the object's size and its full-object CRC32.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Bytes.
    pub size: u64,
    /// The CRC32 of every byte, base64 as S3 writes it (`x-amz-checksum-crc32`); empty when S3
    /// showed none.
    pub crc32: String,
}

impl std::fmt::Display for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let crc = if self.crc32.is_empty() { "none" } else { &self.crc32 };
        write!(f, "{} bytes, CRC32 {crc}", self.size)
    }
}

/// Uploads `file` through `s3`, calling `on_bytes` with each part's size as it is stored (the
/// whole size at once for a single PutObject), then checks what S3 holds.
///
/// # Errors
///
/// [`UploadError::Stopped`] when `stop` fires first, [`UploadError::Read`] when the file cannot
/// be read, [`UploadError::S3`] when S3 refuses, [`UploadError::Mismatch`] when the stored object
/// is not the file. A multipart upload is aborted in every case but the last (it completed).
pub async fn upload_file(
    s3: &aws_sdk_s3::Client,
    file: &FileUpload<'_>,
    on_bytes: &(dyn Fn(u64) + Send + Sync),
    stop: &CancellationToken,
) -> Result<Stored, UploadError> {
    let expected = if file.size > MULTIPART_THRESHOLD {
        upload_in_parts(s3, file, on_bytes, stop).await?
    } else {
        put_whole(s3, file, on_bytes, stop).await?
    };
    verify(s3, file.target, expected).await
}

async fn put_whole(
    s3: &aws_sdk_s3::Client,
    file: &FileUpload<'_>,
    on_bytes: &(dyn Fn(u64) + Send + Sync),
    stop: &CancellationToken,
) -> Result<Stored, UploadError> {
    let crc = crc_of(file.path, 0, file.size).await?;
    let expected = Stored {
        size: file.size,
        crc32: encode_crc(crc.clone().finalize()),
    };
    let body = ByteStream::read_from()
        .path(file.path)
        .buffer_size(READ_BUFFER)
        .build()
        .await
        .map_err(|e| read_error(file.path, &e))?;
    let put = s3
        .put_object()
        .bucket(&file.target.bucket)
        .key(&file.target.key)
        .content_type(file.content_type)
        .content_length(file.size as i64)
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .checksum_crc32(&expected.crc32)
        .set_metadata(Some(file.metadata.clone()))
        .set_tagging(file.tagging.map(str::to_owned))
        .body(body)
        .send();
    tokio::select! {
        r = put => { r.map_err(|e| s3_error("uploading", file.target, &e))?; }
        () = stop.cancelled() => return Err(UploadError::Stopped),
    }
    on_bytes(file.size);
    Ok(expected)
}

async fn upload_in_parts(
    s3: &aws_sdk_s3::Client,
    file: &FileUpload<'_>,
    on_bytes: &(dyn Fn(u64) + Send + Sync),
    stop: &CancellationToken,
) -> Result<Stored, UploadError> {
    let uri = file.target;
    if stop.is_cancelled() {
        return Err(UploadError::Stopped);
    }
    let token = uuid::Uuid::new_v4().to_string();
    let mut metadata = file.metadata.clone();
    metadata.insert(UPLOAD_TOKEN.to_owned(), token.clone());
    let upload_id = s3
        .create_multipart_upload()
        .bucket(&uri.bucket)
        .key(&uri.key)
        .content_type(file.content_type)
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .checksum_type(ChecksumType::FullObject)
        .set_metadata(Some(metadata))
        .set_tagging(file.tagging.map(str::to_owned))
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
        // Stopped: one try (the SDK's retries), the grace period is short. Failed: S3 may be
        // down for a while, and parts left behind are billed until the lifecycle rule removes
        // them, so keep trying for about half a minute.
        let patient = !matches!(why, UploadError::Stopped);
        abort(s3, uri, &upload_id, why, patient).await;
    }
    result
}

/// Aborts a multipart upload, trying for about 30 s when `patient`; logs the outcome.
async fn abort(s3: &aws_sdk_s3::Client, uri: &S3Uri, upload_id: &str, why: &UploadError, patient: bool) {
    let mut wait = std::time::Duration::from_secs(1);
    let mut waited = std::time::Duration::ZERO;
    loop {
        let abort = s3
            .abort_multipart_upload()
            .bucket(&uri.bucket)
            .key(&uri.key)
            .upload_id(upload_id)
            .send()
            .await;
        match abort {
            Ok(_) => {
                tracing::warn!(%uri, %why, "multipart upload aborted");
                return;
            }
            Err(e) if patient && waited < ABORT_PATIENCE => {
                tracing::warn!(%uri, error = %error_reason(&e), retry_in_seconds = wait.as_secs(), "aborting the multipart upload failed; trying again");
                tokio::time::sleep(wait).await;
                waited += wait;
                wait = (wait * 2).min(std::time::Duration::from_secs(8));
            }
            Err(e) => {
                tracing::error!(
                    %uri,
                    %why,
                    error = %error_reason(&e),
                    "aborting the multipart upload failed; the bucket's lifecycle rule will remove its parts"
                );
                return;
            }
        }
    }
}

/// How long a failed upload keeps trying to abort itself.
const ABORT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Uploads every part (a few at a time) and completes the upload with the whole file's CRC32.
/// Dropping the future stops the parts under way.
async fn send_parts(
    s3: &aws_sdk_s3::Client,
    file: &FileUpload<'_>,
    upload_id: &str,
    token: &str,
    on_bytes: &(dyn Fn(u64) + Send + Sync),
) -> Result<Stored, UploadError> {
    let uri = file.target;
    let mut ranges = (0..file.size.div_ceil(PART_SIZE)).map(|n| {
        let offset = n * PART_SIZE;
        (n as i32 + 1, offset, PART_SIZE.min(file.size - offset))
    });
    let mut tasks = JoinSet::new();
    let mut done: Vec<(CompletedPart, crc32fast::Hasher)> = Vec::new();
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
        let (part, crc, length) = joined.map_err(|e| UploadError::S3 {
            action: "uploading a part of".into(),
            uri: uri.to_string(),
            reason: format!("the part's task stopped: {e}"),
        })??;
        tracing::debug!(%uri, part = part.part_number(), bytes = length, "part uploaded");
        on_bytes(length);
        done.push((part, crc));
    }
    done.sort_by_key(|(p, _)| p.part_number());
    let mut whole = crc32fast::Hasher::new();
    for (_, crc) in &done {
        whole.combine(crc);
    }
    let expected = Stored {
        size: file.size,
        crc32: encode_crc(whole.finalize()),
    };
    let parts = done.into_iter().map(|(p, _)| p).collect();
    let completed = s3
        .complete_multipart_upload()
        .bucket(&uri.bucket)
        .key(&uri.key)
        .upload_id(upload_id)
        .checksum_crc32(&expected.crc32)
        .checksum_type(ChecksumType::FullObject)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await;
    match completed {
        Ok(_) => Ok(expected),
        Err(e) if success_unreadable(&e) && stored_by(s3, uri, &expected, token).await => {
            tracing::debug!(%uri, error = %error_reason(&e), "the completion answer was unreadable; HeadObject shows this upload's token, size and CRC32");
            Ok(expected)
        }
        Err(e) => Err(s3_error("completing the multipart upload of", uri, &e)),
    }
}

/// Whether S3 answered success (2xx) in a body the SDK could not read.
fn success_unreadable<E>(e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> bool {
    match e {
        aws_sdk_s3::error::SdkError::ServiceError(se) => se.raw().status().is_success(),
        aws_sdk_s3::error::SdkError::ResponseError(re) => re.raw().status().is_success(),
        _ => false,
    }
}

/// Whether the object at `uri` is this upload's: its token, the file's size and CRC32.
async fn stored_by(s3: &aws_sdk_s3::Client, uri: &S3Uri, expected: &Stored, token: &str) -> bool {
    let Ok(head) = s3
        .head_object()
        .bucket(&uri.bucket)
        .key(&uri.key)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
    else {
        return false;
    };
    head.metadata().and_then(|m| m.get(UPLOAD_TOKEN)).map(String::as_str) == Some(token)
        && head.content_length == Some(expected.size as i64)
        && head.checksum_crc32.as_deref() == Some(expected.crc32.as_str())
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
    async fn send(self) -> Result<(CompletedPart, crc32fast::Hasher, u64), UploadError> {
        let crc = crc_of(&self.path, self.offset, self.length).await?;
        let checksum = encode_crc(crc.clone().finalize());
        let body = ByteStream::read_from()
            .path(&self.path)
            .buffer_size(READ_BUFFER)
            .offset(self.offset)
            .length(Length::Exact(self.length))
            .build()
            .await
            .map_err(|e| read_error(&self.path, &e))?;
        let action = || format!("uploading part {} of", self.number);
        let out = self
            .s3
            .upload_part()
            .bucket(&self.uri.bucket)
            .key(&self.uri.key)
            .upload_id(&self.upload_id)
            .part_number(self.number)
            .content_length(self.length as i64)
            .checksum_crc32(&checksum)
            .body(body)
            .send()
            .await
            .map_err(|e| s3_error(&action(), &self.uri, &e))?;
        // S3 checked the part against our CRC32; an answer naming another one is a broken store.
        if let Some(answered) = out.checksum_crc32.as_deref()
            && answered != checksum
        {
            return Err(UploadError::S3 {
                action: action(),
                uri: self.uri.to_string(),
                reason: format!("S3 answered CRC32 {answered} for a part whose CRC32 is {checksum}"),
            });
        }
        let part = CompletedPart::builder()
            .part_number(self.number)
            .set_e_tag(out.e_tag)
            .checksum_crc32(checksum)
            .build();
        Ok((part, crc, self.length))
    }
}

/// Reads back what S3 holds at `uri` and compares it with the file.
async fn verify(s3: &aws_sdk_s3::Client, uri: &S3Uri, expected: Stored) -> Result<Stored, UploadError> {
    let head = s3
        .head_object()
        .bucket(&uri.bucket)
        .key(&uri.key)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .map_err(|e| s3_error("checking the stored", uri, &e))?;
    let found = Stored {
        size: head.content_length.unwrap_or(0).max(0) as u64,
        crc32: head.checksum_crc32.unwrap_or_default(),
    };
    check_stored(uri, expected, found)
}

/// The stored object is the file when its size and CRC32 are the file's.
fn check_stored(uri: &S3Uri, expected: Stored, found: Stored) -> Result<Stored, UploadError> {
    if found == expected {
        Ok(expected)
    } else {
        Err(UploadError::Mismatch {
            uri: uri.to_string(),
            expected,
            found,
        })
    }
}

/// The CRC32 of `length` bytes of `path` from `offset`, read on a blocking thread.
async fn crc_of(path: &Path, offset: u64, length: u64) -> Result<crc32fast::Hasher, UploadError> {
    let owned = path.to_owned();
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<crc32fast::Hasher> {
        use std::io::{Seek, SeekFrom};
        let mut f = std::fs::File::open(&owned)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut crc = crc32fast::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut left = length;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = f.read(&mut buf[..want])?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the file ends {left} bytes early"),
                ));
            }
            crc.update(&buf[..n]);
            left -= n as u64;
        }
        Ok(crc)
    })
    .await;
    match read {
        Ok(Ok(crc)) => Ok(crc),
        Ok(Err(e)) => Err(read_error(path, &e)),
        Err(e) => Err(read_error(path, &e)),
    }
}

/// A CRC32 as S3 writes it: the four big-endian bytes, base64.
fn encode_crc(crc: u32) -> String {
    aws_smithy_types::base64::encode(crc.to_be_bytes())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crc32_is_written_as_s3_writes_it() {
        // CRC32 of "hello world" is 0x0d4a1185; S3 shows its big-endian bytes in base64.
        assert_eq!(encode_crc(crc32fast::hash(b"hello world")), "DUoRhQ==");
    }

    #[test]
    fn part_crcs_combine_into_the_whole_files_crc() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut whole = crc32fast::Hasher::new();
        for chunk in data.chunks(30_000) {
            let mut part = crc32fast::Hasher::new();
            part.update(chunk);
            whole.combine(&part);
        }
        assert_eq!(whole.finalize(), crc32fast::hash(&data));
    }

    #[test]
    fn a_stored_object_of_another_size_or_crc_is_not_the_file() {
        let uri = S3Uri {
            bucket: "b".into(),
            key: "k".into(),
        };
        let file = Stored {
            size: 10,
            crc32: "DUoRhQ==".into(),
        };
        assert!(check_stored(&uri, file.clone(), file.clone()).is_ok());
        for found in [
            Stored {
                size: 11,
                ..file.clone()
            },
            Stored {
                crc32: "AAAAAA==".into(),
                ..file.clone()
            },
            Stored {
                crc32: String::new(),
                ..file.clone()
            },
        ] {
            let err = check_stored(&uri, file.clone(), found).unwrap_err();
            assert!(matches!(err, UploadError::Mismatch { .. }), "{err:?}");
            assert!(
                err.to_string().starts_with("the stored s3://b/k is not the file: "),
                "{err}"
            );
        }
    }
}
