//! The media side of a run, behind a narrow seam: transcode the downloaded source into the asked
//! renditions and verify each before anything is published, and package them for streaming
//! (HLS, DASH) with the manifests read back.
//!
//! [`Media`] is what the work needs; [`FfmpegMedia`] is the real one: the `transcode` crate on a
//! blocking thread (the async runtime keeps renewing the lease meanwhile), progress logged every
//! few seconds, cancelled with the run, then [`crate::verify`] on every output. The work's unit
//! tests stand in for it with a media that writes small files.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use transcode::chunk::{ByteRanges, Chunk, Plan as ChunkPlan};
use transcode::package::{Manifests, PackagedFile};
use transcode::{CancelHandle, RenditionSpec, TranscodeError, TranscodeOptions, TranscodeReport};

use crate::progress::Progress;

/// One rendition written and verified.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedFile {
    /// The MP4 file.
    pub path: PathBuf,
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// File size in bytes.
    pub bytes: u64,
    /// Its duration (the decoded source's span).
    pub duration_seconds: f64,
    /// Whether it carries (AAC) audio.
    pub audio: bool,
}

/// What a transcode made.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// The renditions, in the order asked.
    pub files: Vec<EncodedFile>,
    /// Video frames decoded from the source.
    pub frames: u64,
    /// The source's duration, when known.
    pub source_seconds: Option<f64>,
    /// Wall-clock seconds of the transcode.
    pub encode_seconds: f64,
}

/// What to package for streaming.
#[derive(Debug, Clone)]
pub struct PackageJob {
    /// The renditions (name, MP4 file), in the order asked.
    pub renditions: Vec<(String, PathBuf)>,
    /// The downloaded source (for its subtitles).
    pub source: PathBuf,
    /// Where the package is written.
    pub dir: PathBuf,
    /// The media folder's version (unique per run).
    pub version: String,
    /// Which manifests.
    pub manifests: Manifests,
}

/// A stream packaged and read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Packaged {
    /// Media, track playlists and pictures: stored first.
    pub media: Vec<PackagedFile>,
    /// The manifests and the thumbnail track: stored last.
    pub entry_points: Vec<PackagedFile>,
    /// Seconds.
    pub duration_seconds: f64,
    /// The video codec strings, one per rendition, and the audio's (`avc1.64001f`, `mp4a.40.2`).
    pub codecs: Vec<String>,
    /// Subtitle tracks in the manifests.
    pub subtitles: usize,
}

/// Where a stitch's audio comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum StitchAudio {
    /// The downloaded source: its audio is encoded once for every rendition.
    Source(PathBuf),
    /// The source's audio as the split Job encoded it ahead ([`Media::encode_audio`]): copied.
    Encoded(PathBuf),
}

/// The source's audio, encoded ahead of the stitch.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedAudio {
    /// The AAC file.
    pub path: PathBuf,
    /// Its duration in seconds.
    pub seconds: f64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Why a transcode made nothing to publish.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The source is not a usable video: a retry cannot help.
    #[error("the source is not a usable video: {0}")]
    Rejected(String),
    /// The run was told to stop.
    #[error("cancelled")]
    Cancelled,
    /// Anything else (a rendition that fails verification included): a retry may help.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Turns a source file into verified renditions.
pub trait Media: Send + Sync {
    /// Transcodes `input` into one file per spec under `out_dir`, telling `progress` how far it
    /// is, stopping when `cancel` fires.
    fn encode(
        &self,
        input: PathBuf,
        renditions: Vec<RenditionSpec>,
        out_dir: PathBuf,
        cancel: CancellationToken,
        progress: Progress,
    ) -> impl Future<Output = Result<Encoded, MediaError>> + Send;

    /// Packages verified renditions for streaming (HLS, DASH) and reads the manifests back.
    fn package(&self, job: PackageJob) -> impl Future<Output = Result<Packaged, MediaError>> + Send;

    /// Probes `input` and plans its chunks of about `split_seconds`; `None` when it is not to be
    /// split (too short, no video, unreadable: the whole-request path then decides its fate).
    fn plan(&self, input: PathBuf, split_seconds: f64) -> impl Future<Output = Option<ChunkPlan>> + Send;

    /// For each of `chunks` (of a plan of `input`), the byte ranges of `input` its encode reads;
    /// `None` when the chunks need the whole source (not an MP4 or QuickTime file, or the ranges
    /// cannot be told).
    fn source_ranges(&self, input: PathBuf, chunks: Vec<Chunk>)
    -> impl Future<Output = Option<Vec<ByteRanges>>> + Send;

    /// Encodes `chunk` of `input` into one video-only MP4 per spec under `out_dir` (each holding
    /// exactly the chunk's frames, starting with a keyframe); returns them in the specs' order.
    fn encode_chunk(
        &self,
        input: PathBuf,
        renditions: Vec<RenditionSpec>,
        chunk: Chunk,
        out_dir: PathBuf,
        cancel: CancellationToken,
        progress: Progress,
    ) -> impl Future<Output = Result<Encoded, MediaError>> + Send;

    /// Encodes the audio of `input` into `output` (an AAC file the stitch copies); `None` when
    /// it has no audio. Stops when `cancel` fires.
    fn encode_audio(
        &self,
        input: PathBuf,
        output: PathBuf,
        cancel: CancellationToken,
    ) -> impl Future<Output = Result<Option<EncodedAudio>, MediaError>> + Send;

    /// Joins each rendition's chunks (`chunks[r]`, in order) into `outputs[r]`, with `audio`
    /// (encoded once for all, or copied), and verifies each result as a whole transcode's.
    fn stitch(
        &self,
        chunks: Vec<Vec<PathBuf>>,
        audio: StitchAudio,
        outputs: Vec<PathBuf>,
    ) -> impl Future<Output = Result<Encoded, MediaError>> + Send;
}

/// How often progress is logged while encoding.
const PROGRESS_EVERY: Duration = Duration::from_secs(3);
/// How often the transcode's progress is handed to the lifecycle (which reports it less often).
const SHARE_EVERY: Duration = Duration::from_millis(500);

/// The real media path: FFmpeg's libraries through the `transcode` crate.
#[derive(Debug, Clone, Default)]
pub struct FfmpegMedia;

impl Media for FfmpegMedia {
    async fn encode(
        &self,
        input: PathBuf,
        renditions: Vec<RenditionSpec>,
        out_dir: PathBuf,
        cancel: CancellationToken,
        progress: Progress,
    ) -> Result<Encoded, MediaError> {
        let started = Instant::now();
        let report = on_a_blocking_thread(cancel, move |handle| {
            let mut last_log = Instant::now();
            let mut last_share = Instant::now();
            let mut on_progress = |p: &transcode::Progress| {
                if last_share.elapsed() >= SHARE_EVERY {
                    last_share = Instant::now();
                    progress.encoding(p.percent(), p.fps);
                }
                if last_log.elapsed() >= PROGRESS_EVERY {
                    last_log = Instant::now();
                    tracing::info!(
                        percent = p.percent().map(|x| (x * 10.0).round() / 10.0),
                        frames = p.frames,
                        fps = (p.fps * 10.0).round() / 10.0,
                        position_seconds = (p.position_seconds * 100.0).round() / 100.0,
                        "encoding"
                    );
                }
            };
            let report = transcode::transcode(
                &input,
                &renditions,
                &out_dir,
                &TranscodeOptions::default(),
                &mut on_progress,
                handle,
            )?;
            for out in &report.outputs {
                crate::verify::check_rendition(out, &report).map_err(Verify)?;
            }
            Ok(report)
        })
        .await?;
        let encode_seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            frames = report.frames_decoded,
            encode_seconds,
            fps = report.frames_decoded as f64 / encode_seconds.max(1e-6),
            "transcoded"
        );
        Ok(encoded(&report, encode_seconds))
    }

    async fn package(&self, job: PackageJob) -> Result<Packaged, MediaError> {
        package_on_a_blocking_thread(job).await
    }

    async fn plan(&self, input: PathBuf, split_seconds: f64) -> Option<ChunkPlan> {
        let probed = tokio::task::spawn_blocking(move || transcode::probe(&input)).await;
        match probed {
            Ok(Ok(info)) => transcode::chunk::plan(&info, split_seconds),
            Ok(Err(e)) => {
                tracing::info!(error = %e, "the source cannot be probed for a split; encoding it whole");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "the probe thread failed; encoding the source whole");
                None
            }
        }
    }

    async fn source_ranges(&self, input: PathBuf, chunks: Vec<Chunk>) -> Option<Vec<ByteRanges>> {
        let started = Instant::now();
        let found = tokio::task::spawn_blocking(move || transcode::chunk::source_ranges(&input, &chunks)).await;
        match found {
            Ok(Ok(ranges)) => {
                tracing::info!(
                    chunks = ranges.as_ref().map(Vec::len),
                    seconds = started.elapsed().as_secs_f64(),
                    "told the source's bytes each chunk reads"
                );
                ranges
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the source's bytes per chunk cannot be told; every chunk fetches the whole source");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "the ranges thread failed; every chunk fetches the whole source");
                None
            }
        }
    }

    async fn encode_chunk(
        &self,
        input: PathBuf,
        renditions: Vec<RenditionSpec>,
        chunk: Chunk,
        out_dir: PathBuf,
        cancel: CancellationToken,
        progress: Progress,
    ) -> Result<Encoded, MediaError> {
        let started = Instant::now();
        let index = chunk.index;
        let report = on_a_blocking_thread(cancel, move |handle| {
            // How far through the chunk (the position is the source's).
            let (from, to) = (chunk.start_seconds, chunk.end_seconds);
            let mut last_share = Instant::now();
            let mut on_progress = |p: &transcode::Progress| {
                if last_share.elapsed() >= SHARE_EVERY {
                    last_share = Instant::now();
                    let percent = (to > from).then(|| (p.position_seconds - from) / (to - from) * 100.0);
                    progress.encoding(percent, p.fps);
                }
            };
            let report = transcode::chunk::transcode_chunk(
                &input,
                &renditions,
                &chunk,
                &out_dir,
                &TranscodeOptions::default(),
                &mut on_progress,
                handle,
            )?;
            Ok(report)
        })
        .await?;
        let encode_seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            chunk = index,
            frames = report.frames_decoded,
            encode_seconds,
            "encoded the chunk"
        );
        Ok(encoded(&report, encode_seconds))
    }

    async fn encode_audio(
        &self,
        input: PathBuf,
        output: PathBuf,
        cancel: CancellationToken,
    ) -> Result<Option<EncodedAudio>, MediaError> {
        let started = Instant::now();
        let report = on_a_blocking_thread(cancel, move |handle| {
            Ok(transcode::chunk::encode_audio(&input, &output, handle)?)
        })
        .await?;
        Ok(report.map(|r| {
            tracing::info!(
                seconds = r.seconds,
                bytes = r.bytes,
                packets = r.packets,
                encode_seconds = started.elapsed().as_secs_f64(),
                "encoded the audio for the stitch"
            );
            EncodedAudio {
                path: r.output,
                seconds: r.seconds,
                bytes: r.bytes,
            }
        }))
    }

    async fn stitch(
        &self,
        chunks: Vec<Vec<PathBuf>>,
        audio: StitchAudio,
        outputs: Vec<PathBuf>,
    ) -> Result<Encoded, MediaError> {
        let started = Instant::now();
        let (reports, source_seconds) = on_a_blocking_thread(CancellationToken::new(), move |_| {
            let (how, source) = match &audio {
                StitchAudio::Source(s) => (transcode::chunk::StitchAudio::Encode(s), Some(s)),
                StitchAudio::Encoded(a) => (transcode::chunk::StitchAudio::Copy(a), None),
            };
            let reports = transcode::chunk::stitch_ladder(&chunks, how, &outputs)?;
            // Without the source at hand, its length is what the stitched file spans.
            let (has_audio, source_seconds) = match source {
                Some(s) => {
                    let info = transcode::probe(s)?;
                    (info.audio.is_some(), info.duration_seconds)
                }
                None => (
                    true,
                    reports
                        .first()
                        .map(|r| r.video_seconds.max(r.audio_seconds.unwrap_or(0.0))),
                ),
            };
            for r in &reports {
                crate::verify::check_stitched(r, has_audio).map_err(Verify)?;
            }
            Ok((reports, source_seconds))
        })
        .await?;
        let encode_seconds = started.elapsed().as_secs_f64();
        let mut files = Vec::with_capacity(reports.len());
        for r in &reports {
            let v = transcode::probe(&r.output)
                .ok()
                .and_then(|i| i.video)
                .ok_or_else(|| MediaError::Failed(anyhow::anyhow!("{} cannot be read back", r.output.display())))?;
            files.push(EncodedFile {
                path: r.output.clone(),
                width: v.width,
                height: v.height,
                bytes: r.bytes,
                duration_seconds: r.video_seconds,
                audio: r.audio_seconds.is_some(),
            });
        }
        tracing::info!(
            renditions = files.len(),
            chunks = reports.first().map_or(0, |r| r.chunks),
            encode_seconds,
            "stitched"
        );
        Ok(Encoded {
            frames: reports.first().map_or(0, |r| r.frames),
            source_seconds,
            encode_seconds,
            files,
        })
    }
}

/// What a transcode's `report` made, in `encode_seconds`.
fn encoded(report: &TranscodeReport, encode_seconds: f64) -> Encoded {
    Encoded {
        files: report
            .outputs
            .iter()
            .map(|o| EncodedFile {
                path: o.path.clone(),
                width: o.width,
                height: o.height,
                bytes: o.bytes,
                duration_seconds: report.decoded_seconds,
                audio: report.has_audio,
            })
            .collect(),
        frames: report.frames_decoded,
        source_seconds: report.source.duration_seconds,
        encode_seconds,
    }
}

/// Runs `work` on a blocking thread, its [`CancelHandle`] cancelled when `cancel` fires, in the
/// caller's span; maps what can go wrong to a [`MediaError`].
async fn on_a_blocking_thread<T: Send + 'static>(
    cancel: CancellationToken,
    work: impl FnOnce(&CancelHandle) -> Result<T, Failure> + Send + 'static,
) -> Result<T, MediaError> {
    let handle = CancelHandle::new();
    let bridge = {
        let handle = handle.clone();
        tokio::spawn(async move {
            cancel.cancelled().await;
            handle.cancel();
        })
    };
    let span = tracing::Span::current();
    let result = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        work(&handle)
    })
    .await;
    bridge.abort();
    match result {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(Failure::Transcode(TranscodeError::Cancelled))) => Err(MediaError::Cancelled),
        Ok(Err(Failure::Transcode(e))) if e.is_rejection() => Err(MediaError::Rejected(e.to_string())),
        Ok(Err(Failure::Transcode(e))) => Err(MediaError::Failed(anyhow::Error::new(e).context("transcoding"))),
        Ok(Err(Failure::Verify(Verify(e)))) => Err(MediaError::Failed(e)),
        Err(e) => Err(MediaError::Failed(anyhow::anyhow!("the transcode thread failed: {e}"))),
    }
}

async fn package_on_a_blocking_thread(job: PackageJob) -> Result<Packaged, MediaError> {
    let span = tracing::Span::current();
    let started = Instant::now();
    let result = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let package = transcode::package::package(&job.renditions, &job.source, &job.dir, &job.version, job.manifests)?;
        transcode::package::verify(&package)?;
        Ok::<_, TranscodeError>(package)
    })
    .await;
    let package = match result {
        Ok(Ok(p)) => p,
        // Packaging our own verified renditions: a failure is never the source's fault.
        Ok(Err(e)) => {
            return Err(MediaError::Failed(
                anyhow::Error::new(e).context("packaging the stream"),
            ));
        }
        Err(e) => return Err(MediaError::Failed(anyhow::anyhow!("the packaging thread failed: {e}"))),
    };
    let set = &package.set;
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        files = package.media.len() + package.entry_points.len(),
        subtitles = set.subtitles.len(),
        skipped_subtitles = package.skipped_subtitles.len(),
        "packaged the stream"
    );
    Ok(Packaged {
        codecs: set
            .videos
            .iter()
            .map(|(_, t)| t)
            .chain(set.audio.iter())
            .map(|t| t.codecs.clone())
            .collect(),
        subtitles: set.subtitles.len(),
        duration_seconds: set.duration,
        media: package.media,
        entry_points: package.entry_points,
    })
}

/// A rendition that failed verification.
#[derive(Debug)]
struct Verify(anyhow::Error);

/// What can go wrong on the blocking thread.
#[derive(Debug)]
enum Failure {
    Transcode(TranscodeError),
    Verify(Verify),
}

impl From<TranscodeError> for Failure {
    fn from(e: TranscodeError) -> Self {
        Self::Transcode(e)
    }
}

impl From<Verify> for Failure {
    fn from(e: Verify) -> Self {
        Self::Verify(e)
    }
}
