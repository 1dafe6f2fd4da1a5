//! Uploading local videos to S3 before requesting their encodes (`--upload`).
//!
//! Every file is checked first ([`plan`]): it exists, is a regular file, its object key is valid,
//! its video id is valid, and no two files land on the same key. Then each is uploaded: files up
//! to [`MULTIPART_THRESHOLD`] in one PutObject, larger ones as a multipart upload in parts of
//! [`PART_SIZE`], a few parts at a time. A multipart upload that fails, or is stopped by SIGINT or
//! SIGTERM, is aborted, so no part is left behind to be billed (the bucket's lifecycle rule from
//! `scripts/aws/create-buckets.sh` is the safety net for a producer killed outright).
//!
//! The object's `Content-Type` comes from the file's extension ([`content_type`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_types::byte_stream::Length;
use encoding_common::S3Uri;
use encoding_common::request::check_video_id;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::aws_error;
use crate::requests::video_id_from_key;
use crate::ui::Progress;

/// Files larger than this are uploaded in parts.
pub const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// The size of one part (S3 allows 5 MiB to 5 GiB, and at most 10,000 parts: 156 GiB here).
pub const PART_SIZE: u64 = 16 * 1024 * 1024;
/// Parts uploaded at the same time.
const PARTS_IN_FLIGHT: usize = 4;
/// S3's largest number of parts.
const MAX_PARTS: u64 = 10_000;
/// User-metadata key of the token that identifies one multipart upload's object.
const UPLOAD_TOKEN: &str = "upload-token";

/// The `Content-Type` of a video file, from its extension (case-insensitive).
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "mp4" | "m4v" => "video/mp4",
        "mov" | "qt" => "video/quicktime",
        "webm" => "video/webm",
        "mkv" => "video/x-matroska",
        "ts" | "m2ts" | "mts" => "video/mp2t",
        "avi" => "video/x-msvideo",
        "3gp" => "video/3gpp",
        _ => "application/octet-stream",
    }
}

/// A local file, checked, and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedUpload {
    /// The local file.
    pub path: PathBuf,
    /// The object it becomes: the input prefix joined with the file name.
    pub target: S3Uri,
    /// Its size in bytes, when checked.
    pub size: u64,
    /// The object's `Content-Type`.
    pub content_type: &'static str,
    /// The video id its requests carry.
    pub video_id: String,
}

/// Checks every file and decides where it goes, before anything is uploaded. `video_id` names the
/// video of a single file; otherwise each video is named after its file.
///
/// # Errors
///
/// One error listing every file that cannot be uploaded, and why.
pub fn plan(files: &[PathBuf], input: &S3Uri, video_id: Option<&str>) -> anyhow::Result<Vec<PlannedUpload>> {
    let mut planned: Vec<PlannedUpload> = Vec::new();
    let mut problems = Vec::new();
    for path in files {
        match plan_one(path, input, video_id.filter(|_| files.len() == 1)) {
            Ok(p) => {
                if let Some(other) = planned.iter().find(|o| o.target == p.target) {
                    problems.push(format!(
                        "{} and {} would both be uploaded to {}",
                        other.path.display(),
                        path.display(),
                        p.target
                    ));
                } else {
                    planned.push(p);
                }
            }
            Err(e) => problems.push(format!("{}: {e:#}", path.display())),
        }
    }
    if !problems.is_empty() {
        bail!("cannot upload: {}", problems.join("; "));
    }
    Ok(planned)
}

fn plan_one(path: &Path, input: &S3Uri, video_id: Option<&str>) -> anyhow::Result<PlannedUpload> {
    let meta = std::fs::metadata(path).context("cannot read it")?;
    if !meta.is_file() {
        bail!("not a regular file");
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("the file name is not valid UTF-8")?;
    // Parsed back, so that an object key S3 would refuse is caught here.
    let target = S3Uri::parse("source", &input.join(name).to_string(), true)?;
    let video_id = video_id.map_or_else(|| video_id_from_key(name), str::to_owned);
    check_video_id(&video_id)?;
    if meta.len().div_ceil(PART_SIZE) > MAX_PARTS {
        bail!("larger than {} parts of {PART_SIZE} bytes", MAX_PARTS);
    }
    Ok(PlannedUpload {
        path: path.to_owned(),
        target,
        size: meta.len(),
        content_type: content_type(path),
        video_id,
    })
}

/// Why an upload did not finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// The run was stopped (SIGINT, SIGTERM); a multipart upload was aborted.
    #[error("stopped")]
    Stopped,
    /// Reading the file or S3 failed; a multipart upload was aborted.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Uploads files to S3.
#[derive(Debug, Clone)]
pub struct Uploader {
    s3: aws_sdk_s3::Client,
}

impl Uploader {
    /// Uploads through `s3` (built with `encoding_common::aws::s3_client`).
    pub fn new(s3: aws_sdk_s3::Client) -> Self {
        Self { s3 }
    }

    /// Uploads one planned file, counting its bytes on `progress`.
    ///
    /// # Errors
    ///
    /// [`UploadError::Stopped`] when `stop` fires first, [`UploadError::Failed`] when the file
    /// cannot be read or S3 refuses. A multipart upload is aborted either way.
    pub async fn upload(
        &self,
        file: &PlannedUpload,
        progress: &Progress,
        stop: &CancellationToken,
    ) -> Result<(), UploadError> {
        let started = Instant::now();
        let uri = &file.target;
        if file.size <= MULTIPART_THRESHOLD {
            let body = ByteStream::from_path(&file.path)
                .await
                .with_context(|| format!("reading {}", file.path.display()))?;
            let put = self
                .s3
                .put_object()
                .bucket(&uri.bucket)
                .key(&uri.key)
                .content_type(file.content_type)
                .content_length(file.size as i64)
                .body(body)
                .send();
            tokio::select! {
                r = put => { r.map_err(aws_error).with_context(|| format!("uploading {uri}"))?; }
                () = stop.cancelled() => return Err(UploadError::Stopped),
            }
            progress.inc(file.size);
        } else {
            self.upload_in_parts(file, progress, stop).await?;
        }
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            file = %file.path.display(),
            %uri,
            bytes = file.size,
            content_type = file.content_type,
            seconds = (seconds * 100.0).round() / 100.0,
            "uploaded"
        );
        Ok(())
    }

    async fn upload_in_parts(
        &self,
        file: &PlannedUpload,
        progress: &Progress,
        stop: &CancellationToken,
    ) -> Result<(), UploadError> {
        let uri = &file.target;
        // Marks this upload's object, to recognise it if the completion answer is lost.
        let token = uuid::Uuid::new_v4().to_string();
        let upload_id = self
            .s3
            .create_multipart_upload()
            .bucket(&uri.bucket)
            .key(&uri.key)
            .content_type(file.content_type)
            .metadata(UPLOAD_TOKEN, &token)
            .send()
            .await
            .map_err(aws_error)
            .with_context(|| format!("starting the multipart upload of {uri}"))?
            .upload_id
            .context("S3 returned no upload id")?;
        let parts = file.size.div_ceil(PART_SIZE);
        tracing::info!(file = %file.path.display(), %uri, parts, part_size = PART_SIZE, "multipart upload started");
        let result = tokio::select! {
            r = self.send_parts(file, &upload_id, &token, progress) => r.map_err(UploadError::Failed),
            () = stop.cancelled() => Err(UploadError::Stopped),
        };
        if let Err(e) = &result {
            let abort = self
                .s3
                .abort_multipart_upload()
                .bucket(&uri.bucket)
                .key(&uri.key)
                .upload_id(&upload_id)
                .send()
                .await;
            match abort {
                Ok(_) => tracing::warn!(%uri, why = %e, "multipart upload aborted"),
                Err(abort_error) => tracing::error!(
                    %uri,
                    why = %e,
                    error = %crate::aws_reason(&abort_error),
                    "aborting the multipart upload failed; the bucket's lifecycle rule will remove its parts"
                ),
            }
        }
        result
    }

    /// Uploads every part (a few at a time) and completes the upload. Dropping the future stops
    /// the parts under way.
    async fn send_parts(
        &self,
        file: &PlannedUpload,
        upload_id: &str,
        token: &str,
        progress: &Progress,
    ) -> anyhow::Result<()> {
        let uri = &file.target;
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
                    s3: self.s3.clone(),
                    path: file.path.clone(),
                    uri: uri.clone(),
                    upload_id: upload_id.to_owned(),
                    number,
                    offset,
                    length,
                };
                tasks.spawn(part.send());
            }
            let Some(joined) = tasks.join_next().await else { break };
            let (part, length) = joined.context("a part upload stopped unexpectedly")??;
            tracing::debug!(%uri, part = part.part_number(), bytes = length, "part uploaded");
            progress.inc(length);
            done.push(part);
        }
        done.sort_by_key(|p| p.part_number());
        let completed = self
            .s3
            .complete_multipart_upload()
            .bucket(&uri.bucket)
            .key(&uri.key)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done)).build())
            .send()
            .await;
        let Err(e) = completed else { return Ok(()) };
        // The answer to a completion can be lost or unreadable although S3 assembled the object (a
        // dropped connection; moto answers in a shape the SDK rejects). It is this upload's
        // object, whole, when it carries this upload's token and has every byte. (This look needs
        // s3:GetObject, which the producer's IAM role does not have: on AWS, where the answer is
        // readable, an unreadable one stays a failure.)
        let head = self
            .s3
            .head_object()
            .bucket(&uri.bucket)
            .key(&uri.key)
            .send()
            .await
            .ok();
        let ours = head.as_ref().is_some_and(|h| {
            h.content_length == Some(file.size as i64)
                && h.metadata().and_then(|m| m.get(UPLOAD_TOKEN)).map(String::as_str) == Some(token)
        });
        if !ours {
            return Err(aws_error(e).context(format!("completing the multipart upload of {uri}")));
        }
        tracing::debug!(%uri, error = %crate::aws_reason(&e), "the completion answer was unreadable, but the object is stored whole");
        Ok(())
    }
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
    async fn send(self) -> anyhow::Result<(CompletedPart, u64)> {
        let body = ByteStream::read_from()
            .path(&self.path)
            .offset(self.offset)
            .length(Length::Exact(self.length))
            .build()
            .await
            .with_context(|| format!("reading {}", self.path.display()))?;
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
            .map_err(aws_error)
            .with_context(|| format!("uploading part {} of {}", self.number, self.uri))?;
        let part = CompletedPart::builder()
            .part_number(self.number)
            .set_e_tag(out.e_tag)
            .set_checksum_crc32(out.checksum_crc32)
            .build();
        Ok((part, self.length))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_follow_the_extension() {
        for (name, expected) in [
            ("a.mp4", "video/mp4"),
            ("A.MP4", "video/mp4"),
            ("a.mov", "video/quicktime"),
            ("a.webm", "video/webm"),
            ("a.mkv", "video/x-matroska"),
            ("a.ts", "video/mp2t"),
            ("a.avi", "video/x-msvideo"),
            ("a.3gp", "video/3gpp"),
            ("a.flv", "application/octet-stream"),
            ("noext", "application/octet-stream"),
        ] {
            assert_eq!(content_type(Path::new(name)), expected, "{name}");
        }
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("producer-plan-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        dir
    }

    #[test]
    fn a_plan_names_each_video_after_its_file_under_the_prefix() {
        let dir = temp_dir("names");
        let a = dir.join("My Talk.mov");
        std::fs::write(&a, b"1234").unwrap();
        let input = S3Uri::parse("input", "s3://in-b/uploads/", false).unwrap();
        let p = plan(std::slice::from_ref(&a), &input, None).unwrap();
        assert_eq!(p[0].target.to_string(), "s3://in-b/uploads/My Talk.mov");
        assert_eq!(p[0].video_id, "My-Talk");
        assert_eq!(p[0].size, 4);
        assert_eq!(p[0].content_type, "video/quicktime");
        let named = plan(std::slice::from_ref(&a), &input, Some("talk-2024")).unwrap();
        assert_eq!(named[0].video_id, "talk-2024");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_plan_refuses_missing_files_directories_and_collisions_all_at_once() {
        let dir = temp_dir("refuse");
        let a = dir.join("a.mp4");
        let b = dir.join("sub/a.mp4");
        std::fs::write(&a, b"x").unwrap();
        std::fs::write(&b, b"y").unwrap();
        let input = S3Uri::parse("input", "s3://in-b", false).unwrap();
        let err = plan(&[a, dir.join("missing.mp4"), dir.join("sub"), b], &input, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.mp4: cannot read it"), "{err}");
        assert!(err.contains("sub: not a regular file"), "{err}");
        assert!(err.contains("would both be uploaded to s3://in-b/a.mp4"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
