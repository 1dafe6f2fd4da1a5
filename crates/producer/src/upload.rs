//! Uploading local videos to S3 before requesting their encodes (`--upload`).
//!
//! Every file is checked first ([`plan`]): it exists, is a regular file, its object key is valid,
//! its video id is valid, and no two files land on the same key. Then each is uploaded with
//! [`encoding_common::upload`]: files up to 16 MiB in one PutObject, larger ones as a multipart
//! upload, a few parts at a time. A multipart upload that fails, or is stopped by SIGINT or
//! SIGTERM, is aborted, so no part is left behind to be billed (the bucket's lifecycle rule from
//! `scripts/aws/create-buckets.sh` is the safety net for a producer killed outright).
//!
//! The object's `Content-Type` comes from the file's extension ([`content_type`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use encoding_common::S3Uri;
use encoding_common::request::check_video_id;
use encoding_common::upload::{FileUpload, PART_SIZE, upload_file};
use tokio_util::sync::CancellationToken;

use crate::requests::video_id_from_key;
use crate::ui::Progress;

/// S3's largest number of parts.
const MAX_PARTS: u64 = 10_000;

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

pub use encoding_common::upload::UploadError;

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
    /// [`UploadError::Stopped`] when `stop` fires first, another [`UploadError`] when the file
    /// cannot be read, S3 refuses, or the stored object is not the file (its size and CRC32 are
    /// read back). A multipart upload that did not complete is aborted.
    pub async fn upload(
        &self,
        file: &PlannedUpload,
        progress: &Progress,
        stop: &CancellationToken,
    ) -> Result<(), UploadError> {
        let started = Instant::now();
        let upload = FileUpload {
            path: &file.path,
            size: file.size,
            target: &file.target,
            content_type: file.content_type,
            metadata: HashMap::new(),
            tagging: None,
        };
        let stored = upload_file(&self.s3, &upload, &|n| progress.inc(n), stop).await?;
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            file = %file.path.display(),
            uri = %file.target,
            bytes = file.size,
            crc32 = %stored.crc32,
            content_type = file.content_type,
            seconds = (seconds * 100.0).round() / 100.0,
            "uploaded"
        );
        Ok(())
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
