//! Why a transcode did not produce renditions.
//!
//! The variants split in two on purpose. A *rejection* ([`TranscodeError::is_rejection`]) is about
//! the input itself: trying again will fail the same way, so the caller should not retry it (the
//! encoder moves such a message to the dead-letter queue with the reason). Everything else may be
//! transient (disk full, cancelled, an internal FFmpeg failure) and is worth another attempt.

/// The result of transcoding operations.
pub type Result<T, E = TranscodeError> = std::result::Result<T, E>;

/// Why a transcode failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TranscodeError {
    /// The file is not in any container format FFmpeg knows.
    #[error("not a media file: no known container format recognises it")]
    NotMedia,
    /// The container was recognised but cannot be read (a cut-off download, a missing index).
    #[error("the {format} container cannot be read ({detail}): the file is damaged or truncated")]
    Unreadable {
        /// The container format FFmpeg recognised.
        format: String,
        /// FFmpeg's error.
        detail: String,
    },
    /// Nothing in the file is a video: audio only, or cover art only.
    #[error("{0}")]
    NoVideo(&'static str),
    /// The video codec has no decoder in this FFmpeg build.
    #[error("unsupported video codec {0}: no decoder for it")]
    UnsupportedCodec(String),
    /// The video stream could not be decoded at all.
    #[error("the video stream cannot be decoded: {0}")]
    Undecodable(String),
    /// The input ended well before what its header announces.
    #[error("the input ends early: {0}")]
    Truncated(String),
    /// More damaged frames than the policy tolerates.
    #[error(
        "too many damaged frames: {errors} decode errors for {decoded} frames decoded (at most {allowed} tolerated)"
    )]
    Damaged {
        /// Decode errors seen.
        errors: u64,
        /// Frames decoded.
        decoded: u64,
        /// The most errors the policy accepts for this input.
        allowed: u64,
    },
    /// The caller cancelled the transcode.
    #[error("cancelled")]
    Cancelled,
    /// An FFmpeg call failed while doing `context`.
    #[error("FFmpeg failed while {context}: {source}")]
    Ffmpeg {
        /// What was being done.
        context: String,
        /// FFmpeg's error.
        #[source]
        source: ffmpeg_next::Error,
    },
    /// Reading the input or writing an output failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file concerned.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An option given to the transcoder is invalid.
    #[error("invalid transcode options: {0}")]
    Options(String),
    /// The renditions could not be packaged for streaming (HLS/DASH).
    #[error("packaging the stream: {0}")]
    Package(String),
    /// A chunk of a split encode could not be planned, encoded or stitched: the plan does not fit
    /// the source, a chunk file is missing or does not match the others, a check failed.
    #[error("split encode: {0}")]
    Chunk(String),
}

impl TranscodeError {
    /// Whether the input itself is unusable, so that retrying cannot help.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            Self::NotMedia
                | Self::Unreadable { .. }
                | Self::NoVideo(_)
                | Self::UnsupportedCodec(_)
                | Self::Undecodable(_)
                | Self::Truncated(_)
                | Self::Damaged { .. }
        )
    }
}

/// Adds what was being done to an FFmpeg error.
pub(crate) trait FfmpegContext<T> {
    fn ctx(self, context: impl Into<String>) -> Result<T>;
}

impl<T> FfmpegContext<T> for std::result::Result<T, ffmpeg_next::Error> {
    fn ctx(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|source| TranscodeError::Ffmpeg {
            context: context.into(),
            source,
        })
    }
}

/// The size of the file at `path`, in bytes.
pub(crate) fn file_size(path: &std::path::Path) -> Result<u64> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| TranscodeError::Io {
            path: path.display().to_string(),
            source,
        })
}
