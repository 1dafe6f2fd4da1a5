//! The work on one request, from the source lookup to stored renditions: find the source, skip
//! the work when the renditions are already stored for the same source and settings, download,
//! transcode and verify, upload.
//!
//! The work knows nothing of the message: it answers [`Done`] or a [`Stop`], and the lifecycle
//! ([`crate::lifecycle`]) decides the message's fate from that. It reaches S3 and FFmpeg through
//! the [`Store`] and [`Media`] seams.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Instant;

use encoding_common::identity::{rendition_metadata, same_rendition, same_request};
use encoding_common::notice::NoticeOutput;
use encoding_common::{EncodeRequest, Quality, S3Uri};
use tokio_util::sync::CancellationToken;
use transcode::RenditionSpec;

use crate::media::{Encoded, Media, MediaError};
use crate::progress::{Progress, Stage};
use crate::storage::{SourceError, Store, TransferError};

/// What the work achieved.
#[derive(Debug)]
pub enum Done {
    /// New renditions stored.
    Encoded {
        /// What the transcode made.
        encoded: Encoded,
        /// The stored renditions, in the order asked.
        outputs: Vec<NoticeOutput>,
    },
    /// The renditions were already stored for the same source and settings; `same_request` when
    /// by this very request (an earlier delivery that did not get to delete the message).
    AlreadyStored {
        /// Stored by this request.
        same_request: bool,
        /// Their URIs.
        outputs: Vec<NoticeOutput>,
    },
}

/// Why the work stopped short.
#[derive(Debug)]
pub enum Stop {
    /// The request can never succeed.
    Reject(String),
    /// Something failed that may pass.
    Fail(anyhow::Error),
    /// A signal, or the lease was lost.
    Cancelled,
}

impl From<TransferError> for Stop {
    fn from(e: TransferError) -> Self {
        match e {
            TransferError::Cancelled => Self::Cancelled,
            TransferError::Failed(e) => Self::Fail(e),
        }
    }
}

impl From<MediaError> for Stop {
    fn from(e: MediaError) -> Self {
        match e {
            MediaError::Rejected(_) => Self::Reject(e.to_string()),
            MediaError::Cancelled => Self::Cancelled,
            MediaError::Failed(e) => Self::Fail(e),
        }
    }
}

/// The work on one request.
pub trait Work: Send + Sync {
    /// Does the work for `request` in run `run_id`, telling `progress` how far it is, stopping
    /// when `cancel` fires.
    fn work_on(
        &self,
        request: &EncodeRequest,
        run_id: &str,
        cancel: &CancellationToken,
        progress: &Progress,
    ) -> impl Future<Output = Result<Done, Stop>> + Send;
}

/// The real work: S3 through `store`, FFmpeg through `media`.
#[derive(Debug)]
pub struct Job<S, M> {
    /// S3.
    pub store: S,
    /// The transcode.
    pub media: M,
    /// Where renditions go when the request names no `output` (the encoder's `OUTPUT_URI`).
    pub default_output: Option<S3Uri>,
    /// Scratch space: each run works in a directory of its own under it, removed at the end.
    pub work_dir: PathBuf,
}

impl<S: Store, M: Media> Work for Job<S, M> {
    async fn work_on(
        &self,
        request: &EncodeRequest,
        run_id: &str,
        cancel: &CancellationToken,
        progress: &Progress,
    ) -> Result<Done, Stop> {
        let targets = self.targets(request)?;
        let source = match self.store.head_source(&request.source).await {
            Ok(s) => s,
            Err(e @ SourceError::Missing(_)) => return Err(Stop::Reject(e.to_string())),
            Err(SourceError::Other(e)) => return Err(Stop::Fail(e)),
        };
        let metadata = |q: Quality| rendition_metadata(request, &source.etag, q);

        // At-least-once delivery: skip the work when every rendition is already stored from the
        // same source content with the same settings.
        if let Some(same_request) = self.already_stored(&targets, &metadata).await? {
            return Ok(Done::AlreadyStored {
                same_request,
                outputs: targets
                    .iter()
                    .map(|(_, u)| NoticeOutput {
                        uri: u.to_string(),
                        size: None,
                        duration_seconds: None,
                        video_codec: None,
                        audio_codec: None,
                        width: None,
                        height: None,
                    })
                    .collect(),
            });
        }

        let scratch = Scratch::create(&self.work_dir, run_id).map_err(Stop::Fail)?;
        let input = scratch.path.join("source");
        let t = Instant::now();
        progress.stage(Stage::Downloading);
        let bytes = self.store.download(&request.source, &input, cancel).await?;
        if bytes != source.size {
            return Err(Stop::Fail(anyhow::anyhow!(
                "downloaded {bytes} bytes of the {} announced for {}",
                source.size,
                request.source
            )));
        }
        tracing::info!(bytes, seconds = t.elapsed().as_secs_f64(), source = %request.source, "downloaded the source");
        if cancel.is_cancelled() {
            return Err(Stop::Cancelled);
        }

        let specs = targets
            .iter()
            .map(|(q, _)| RenditionSpec {
                name: q.as_str().to_owned(),
                short_side: q.short_side(),
            })
            .collect();
        progress.stage(Stage::Encoding);
        let encoded = self
            .media
            .encode(input, specs, scratch.path.join("out"), cancel.clone(), progress.clone())
            .await?;
        if encoded.files.len() != targets.len() {
            return Err(Stop::Fail(anyhow::anyhow!(
                "the transcode made {} renditions of the {} asked",
                encoded.files.len(),
                targets.len()
            )));
        }
        progress.stage(Stage::Uploading);
        let mut outputs = Vec::new();
        for ((q, uri), file) in targets.iter().zip(&encoded.files) {
            let object = self.store.upload(&file.path, uri, &metadata(*q), cancel).await?;
            tracing::info!(%uri, bytes = object.size, crc32 = %object.crc32, width = file.width, height = file.height, "stored the rendition");
            outputs.push(NoticeOutput {
                uri: uri.to_string(),
                size: Some(object.size),
                duration_seconds: Some(file.duration_seconds),
                video_codec: Some("h264".into()),
                audio_codec: file.audio.then(|| "aac".into()),
                width: Some(file.width),
                height: Some(file.height),
            });
        }
        Ok(Done::Encoded { encoded, outputs })
    }
}

impl<S: Store, M: Media> Job<S, M> {
    /// Each asked quality and where it goes.
    fn targets(&self, request: &EncodeRequest) -> Result<Vec<(Quality, S3Uri)>, Stop> {
        request
            .qualities
            .iter()
            .map(|q| {
                request
                    .rendition_uri(self.default_output.as_ref(), *q)
                    .map(|uri| (*q, uri))
                    .ok_or_else(|| {
                        Stop::Reject("the request has no \"output\" and the encoder has no OUTPUT_URI".into())
                    })
            })
            .collect()
    }

    /// `Some(same_request)` when every target is stored as this request would make it.
    async fn already_stored(
        &self,
        targets: &[(Quality, S3Uri)],
        metadata: &impl Fn(Quality) -> HashMap<String, String>,
    ) -> Result<Option<bool>, Stop> {
        let mut all_by_this_request = true;
        for (q, uri) in targets {
            let expected = metadata(*q);
            match self.store.existing_metadata(uri).await.map_err(Stop::Fail)? {
                Some(found) if same_rendition(&found, &expected) => {
                    all_by_this_request &= same_request(&found, &expected);
                }
                _ => return Ok(None),
            }
        }
        Ok(Some(all_by_this_request))
    }
}

/// A scratch directory for one run, removed when dropped.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn create(work_dir: &Path, run_id: &str) -> anyhow::Result<Self> {
        let path = work_dir.join(format!("encoder-{run_id}"));
        std::fs::create_dir_all(&path)
            .map_err(|e| anyhow::anyhow!("creating the scratch directory {}: {e}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests;
