//! The work on one request, from the source lookup to stored outputs: find the source, skip the
//! work when the outputs are already stored for the same source and settings, download,
//! transcode and verify, package for streaming when asked (HLS, DASH), upload: the MP4
//! renditions, the stream's media, and the manifests last.
//!
//! A long source is split (`split`, with `SPLIT_SECONDS`): the request's run stores a plan and
//! answers the chunk messages to send; a chunk message's run encodes and stores one chunk; the
//! stitch message's run joins the chunks and stores the outputs as a whole request's run does.
//!
//! The work knows nothing of the message: it answers [`Done`] or a [`Stop`], and the lifecycle
//! ([`crate::lifecycle`]) decides the message's fate from that. It reaches S3 and FFmpeg through
//! the [`Store`] and [`Media`] seams.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Instant;

use encoding_common::identity::{rendition_metadata, same_rendition, same_request, stream_metadata};
use encoding_common::notice::NoticeOutput;
use encoding_common::part::Part;
use encoding_common::{EncodeRequest, Format, Quality, S3Uri};
use tokio_util::sync::CancellationToken;
use transcode::RenditionSpec;
use transcode::chunk::ByteRanges;
use transcode::package::{self, Manifests};

use crate::media::{Encoded, EncodedFile, Media, MediaError, PackageJob, Packaged};
use crate::progress::{Progress, Stage};
use crate::queue::Outgoing;
use crate::storage::{SourceError, SourceObject, Store, TransferError};

mod split;

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
    /// A whole request split into `count` chunks: its plan stored; the lifecycle sends
    /// `messages` (one per chunk not stored yet) before it deletes the request.
    Split {
        /// The plan's chunks.
        count: u32,
        /// The chunk messages to send.
        messages: Vec<Outgoing>,
        /// What the run does once the request is deleted ([`Work::after_split`]).
        then: Option<AfterSplit>,
    },
    /// A chunk stored now (`encoded`: what its encode made) or found stored (`None`).
    Chunk {
        /// What the chunk's encode made, when it ran.
        encoded: Option<Encoded>,
        /// The stitch message, when this chunk's run completed the set and claimed the stitch.
        stitch: Option<Outgoing>,
        /// Why nothing was done, when nothing was.
        note: Option<String>,
    },
}

/// A split run's work once its request is deleted (the chunk Jobs are encoding meanwhile): the
/// source's audio encoded once and stored beside the chunks, for the stitch to copy. It holds
/// the run's scratch directory (the downloaded source) until it is done.
#[derive(Debug)]
pub struct AfterSplit {
    /// The plan's folder.
    folder: S3Uri,
    /// The plan's key.
    key: String,
    /// The downloaded source.
    input: PathBuf,
    /// The run's scratch directory, removed when this is dropped.
    scratch: Option<Scratch>,
}

#[cfg(test)]
impl AfterSplit {
    /// One for plan `key` in `s3://out-b/r/clip/chunks/{key}`, with no source at hand.
    pub(crate) fn for_test(key: &str) -> Self {
        Self {
            folder: S3Uri::parse("test", &format!("s3://out-b/r/clip/chunks/{key}"), false).expect("valid"),
            key: key.to_owned(),
            input: PathBuf::from("/nonexistent/source"),
            scratch: None,
        }
    }

    /// The plan's key.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }
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

    /// What a split run does once its request is deleted (`then`, from [`Done::Split`]), stopping
    /// when `cancel` fires; it cannot fail the request (the stitch does without it).
    fn after_split(&self, then: AfterSplit, cancel: &CancellationToken) -> impl Future<Output = ()> + Send {
        let _ = (then, cancel);
        async {}
    }
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
    /// The formats of a request that names none (the encoder's `FORMATS`).
    pub formats: Vec<Format>,
    /// Scratch space: each run works in a directory of its own under it, removed at the end.
    pub work_dir: PathBuf,
    /// The chunk length of a split request (the encoder's `SPLIT_SECONDS`); 0: never split.
    pub split_seconds: f64,
}

impl<S: Store, M: Media> Work for Job<S, M> {
    async fn work_on(
        &self,
        request: &EncodeRequest,
        run_id: &str,
        cancel: &CancellationToken,
        progress: &Progress,
    ) -> Result<Done, Stop> {
        let plan = self.plan(request)?;
        let source = match self.store.head_source(&request.source).await {
            Ok(s) => s,
            Err(e @ SourceError::Missing(_)) => return Err(Stop::Reject(e.to_string())),
            Err(SourceError::Other(e)) => return Err(Stop::Fail(e)),
        };
        let metadata = |q: Quality| rendition_metadata(request, &source.etag, q);
        let stream_meta = stream_metadata(request, &source.etag);

        if let Some(Part::Chunk {
            plan: key,
            index,
            count,
        }) = &request.part
        {
            if self.already_stored(&plan, &metadata, &stream_meta).await?.is_some() {
                return Ok(Done::Chunk {
                    encoded: None,
                    stitch: None,
                    note: Some("the chunks are stitched already".into()),
                });
            }
            let scratch = Scratch::create(&self.work_dir, run_id).map_err(Stop::Fail)?;
            return self
                .chunk(request, &source, (key, *index, *count), &scratch.path, cancel, progress)
                .await;
        }

        // At-least-once delivery: skip the work when every output is already stored from the
        // same source content with the same settings.
        if let Some(same_request) = self.already_stored(&plan, &metadata, &stream_meta).await? {
            if let Some(Part::Stitch { plan: key, .. }) = &request.part {
                self.remove_plan(request, key).await;
            }
            return Ok(Done::AlreadyStored {
                same_request,
                outputs: plan
                    .output_uris()
                    .iter()
                    .map(|u| NoticeOutput::at(u.to_string()))
                    .collect(),
            });
        }

        let scratch = Scratch::create(&self.work_dir, run_id).map_err(Stop::Fail)?;
        let input = scratch.path.join("source");
        let encoded = match &request.part {
            Some(Part::Stitch { plan: key, count }) => {
                let packaging = plan.stream.is_some();
                self.stitch(
                    request,
                    &source,
                    (key, *count, packaging),
                    &scratch.path,
                    &input,
                    cancel,
                    progress,
                )
                .await?
            }
            _ => {
                self.fetch_source(request, &source, &input, None, cancel, progress)
                    .await?;
                if let Some(mut split) = self.split(request, &source, &input, progress).await? {
                    if let Done::Split { then: Some(then), .. } = &mut split {
                        then.scratch = Some(scratch);
                    }
                    return Ok(split);
                }
                progress.stage(Stage::Encoding);
                self.media
                    .encode(
                        input.clone(),
                        specs(request),
                        scratch.path.join("out"),
                        cancel.clone(),
                        progress.clone(),
                    )
                    .await?
            }
        };
        if encoded.files.len() != request.qualities.len() {
            return Err(Stop::Fail(anyhow::anyhow!(
                "the transcode made {} renditions of the {} asked",
                encoded.files.len(),
                request.qualities.len()
            )));
        }
        let packaged = match &plan.stream {
            Some(stream) => {
                let job = PackageJob {
                    renditions: request
                        .qualities
                        .iter()
                        .zip(&encoded.files)
                        .map(|(q, f)| (q.as_str().to_owned(), f.path.clone()))
                        .collect(),
                    source: input,
                    dir: scratch.path.join("stream"),
                    version: media_version(run_id),
                    manifests: stream.manifests,
                };
                Some(self.media.package(job).await?)
            }
            None => None,
        };
        if cancel.is_cancelled() {
            return Err(Stop::Cancelled);
        }

        progress.stage(Stage::Uploading);
        // The renditions go up at once (each a few parts at a time). Every upload runs to its
        // end, so one that fails never leaves another's multipart upload behind half done.
        let uploads = plan.mp4.iter().zip(&encoded.files).map(|((q, uri), file)| async move {
            let object = self
                .store
                .upload(&file.path, uri, "video/mp4", &metadata(*q), None, cancel)
                .await?;
            tracing::info!(%uri, bytes = object.size, crc32 = %object.crc32, width = file.width, height = file.height, "stored the rendition");
            Ok::<_, Stop>(NoticeOutput {
                uri: uri.to_string(),
                size: Some(object.size),
                duration_seconds: Some(file.duration_seconds),
                video_codec: Some("h264".into()),
                audio_codec: file.audio.then(|| "aac".into()),
                width: Some(file.width),
                height: Some(file.height),
            })
        });
        let mut outputs = futures_util::future::join_all(uploads)
            .await
            .into_iter()
            .collect::<Result<Vec<_>, Stop>>()?;
        if let (Some(stream), Some(packaged)) = (&plan.stream, &packaged) {
            let top = encoded
                .files
                .iter()
                .max_by_key(|f| u64::from(f.width) * u64::from(f.height));
            outputs.extend(self.store_stream(stream, packaged, top, &stream_meta, cancel).await?);
        }
        if let Some(Part::Stitch { plan: key, .. }) = &request.part {
            self.remove_plan(request, key).await;
        }
        Ok(Done::Encoded { encoded, outputs })
    }

    async fn after_split(&self, then: AfterSplit, cancel: &CancellationToken) {
        self.store_audio(then, cancel).await;
    }
}

/// The renditions `request` asks for.
fn specs(request: &EncodeRequest) -> Vec<RenditionSpec> {
    request
        .qualities
        .iter()
        .map(|q| RenditionSpec {
            name: q.as_str().to_owned(),
            short_side: q.short_side(),
        })
        .collect()
}

/// Where each output of a request goes.
#[derive(Debug)]
struct Plan {
    /// The MP4 renditions (format `mp4`): each quality and its file.
    mp4: Vec<(Quality, S3Uri)>,
    /// The stream (formats `hls`, `dash`).
    stream: Option<StreamPlan>,
}

#[derive(Debug)]
struct StreamPlan {
    /// The video's folder: the manifests go in it, the media below it.
    folder: S3Uri,
    manifests: Manifests,
}

impl StreamPlan {
    /// The manifests' names.
    fn entry_points(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.manifests.hls {
            names.push(package::MASTER_PLAYLIST);
        }
        if self.manifests.dash {
            names.push(package::MPD);
        }
        names
    }
}

impl Plan {
    /// Every output a notice names: the MP4 files, then the manifests.
    fn output_uris(&self) -> Vec<S3Uri> {
        let mut uris: Vec<S3Uri> = self.mp4.iter().map(|(_, u)| u.clone()).collect();
        if let Some(s) = &self.stream {
            uris.extend(s.entry_points().into_iter().map(|n| s.folder.join(n)));
        }
        uris
    }
}

/// The media folder's version: the run's id, as letters, digits and dashes. Each run writes a
/// folder of its own, so a re-run never changes a file a player may be reading.
fn media_version(run_id: &str) -> String {
    let v: String = run_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    if v.is_empty() { "run".into() } else { v }
}

impl<S: Store, M: Media> Job<S, M> {
    /// Where each output of `request` goes, in the formats it asks for (or the encoder's).
    fn plan(&self, request: &EncodeRequest) -> Result<Plan, Stop> {
        let no_output = || Stop::Reject("the request has no \"output\" and the encoder has no OUTPUT_URI".into());
        let formats = request.formats.as_deref().unwrap_or(&self.formats);
        let mp4 = if formats.contains(&Format::Mp4) {
            request
                .qualities
                .iter()
                .map(|q| {
                    request
                        .rendition_uri(self.default_output.as_ref(), *q)
                        .map(|uri| (*q, uri))
                        .ok_or_else(no_output)
                })
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        let manifests = Manifests {
            hls: formats.contains(&Format::Hls),
            dash: formats.contains(&Format::Dash),
        };
        let stream = if manifests.hls || manifests.dash {
            let folder = request
                .video_folder(self.default_output.as_ref())
                .ok_or_else(no_output)?;
            Some(StreamPlan { folder, manifests })
        } else {
            None
        };
        Ok(Plan { mp4, stream })
    }

    /// Downloads the source of `request` (described by `source`) to `input`: whole, checking its
    /// size, or, with `ranges`, only those bytes into a sparse file of the source's size (a chunk
    /// run's, [`split`]).
    async fn fetch_source(
        &self,
        request: &EncodeRequest,
        source: &SourceObject,
        input: &Path,
        ranges: Option<&ByteRanges>,
        cancel: &CancellationToken,
        progress: &Progress,
    ) -> Result<(), Stop> {
        let t = Instant::now();
        progress.stage(Stage::Downloading);
        let Some(ranges) = ranges else {
            let bytes = self.store.download(&request.source, input, cancel).await?;
            if bytes != source.size {
                return Err(Stop::Fail(anyhow::anyhow!(
                    "downloaded {bytes} bytes of the {} announced for {}",
                    source.size,
                    request.source
                )));
            }
            tracing::info!(bytes, seconds = t.elapsed().as_secs_f64(), source = %request.source, "downloaded the source");
            return if cancel.is_cancelled() {
                Err(Stop::Cancelled)
            } else {
                Ok(())
            };
        };
        let bytes = self
            .store
            .download_ranges(&request.source, source, ranges, input, cancel)
            .await?;
        tracing::info!(
            bytes,
            of = source.size,
            ranges = ranges.len(),
            seconds = t.elapsed().as_secs_f64(),
            source = %request.source,
            "downloaded the chunk's bytes of the source"
        );
        if cancel.is_cancelled() {
            return Err(Stop::Cancelled);
        }
        Ok(())
    }

    /// `Some(same_request)` when every output is stored as this request would make it: each MP4
    /// rendition, and each manifest (written last, so its presence means its media is there).
    async fn already_stored(
        &self,
        plan: &Plan,
        metadata: &impl Fn(Quality) -> HashMap<String, String>,
        stream_meta: &HashMap<String, String>,
    ) -> Result<Option<bool>, Stop> {
        let mut expected: Vec<(S3Uri, HashMap<String, String>)> =
            plan.mp4.iter().map(|(q, uri)| (uri.clone(), metadata(*q))).collect();
        if let Some(s) = &plan.stream {
            expected.extend(
                s.entry_points()
                    .into_iter()
                    .map(|n| (s.folder.join(n), stream_meta.clone())),
            );
        }
        let mut all_by_this_request = true;
        for (uri, expected) in &expected {
            match self.store.existing_metadata(uri).await.map_err(Stop::Fail)? {
                Some(found) if same_rendition(&found, expected) => {
                    all_by_this_request &= same_request(&found, expected);
                }
                _ => return Ok(None),
            }
        }
        Ok(Some(all_by_this_request))
    }

    /// Stores a packaged stream: its media first, the thumbnail track and the manifests last,
    /// so that a player never finds a manifest naming media that is not there yet, and a re-run
    /// (its media in a folder of its own) replaces the set at once.
    async fn store_stream(
        &self,
        stream: &StreamPlan,
        packaged: &Packaged,
        top: Option<&EncodedFile>,
        metadata: &HashMap<String, String>,
        cancel: &CancellationToken,
    ) -> Result<Vec<NoticeOutput>, Stop> {
        let mut bytes = 0u64;
        for f in &packaged.media {
            let uri = stream.folder.join(&f.name);
            bytes += self
                .store
                .upload(&f.path, &uri, f.content_type, metadata, None, cancel)
                .await?
                .size;
        }
        tracing::info!(folder = %stream.folder, files = packaged.media.len(), bytes, "stored the stream's media");
        let mut outputs = Vec::new();
        for f in &packaged.entry_points {
            let uri = stream.folder.join(&f.name);
            let object = self
                .store
                .upload(&f.path, &uri, f.content_type, metadata, None, cancel)
                .await?;
            tracing::info!(%uri, bytes = object.size, "stored");
            if f.name == package::MASTER_PLAYLIST || f.name == package::MPD {
                outputs.push(NoticeOutput {
                    uri: uri.to_string(),
                    size: Some(object.size),
                    duration_seconds: Some(packaged.duration_seconds),
                    video_codec: Some("h264".into()),
                    audio_codec: top.and_then(|t| t.audio.then(|| "aac".into())),
                    width: top.map(|t| t.width),
                    height: top.map(|t| t.height),
                });
            }
        }
        Ok(outputs)
    }
}

/// A scratch directory for one run, removed when dropped.
#[derive(Debug)]
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
