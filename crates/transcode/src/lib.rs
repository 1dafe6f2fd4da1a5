//! Probe and transcode video files with FFmpeg's libraries (through `ffmpeg-next`).
//!
//! This crate knows nothing of queues or buckets: it turns a local file into H.264/AAC MP4
//! renditions, or explains why it cannot.
//!
//! - [`probe()`] reads what a file holds: streams, displayed size after rotation and sample aspect
//!   ratio, frame rate, duration, audio.
//! - [`transcode()`] decodes once and encodes one rendition per [`RenditionSpec`], upright, with
//!   square pixels, 8-bit 4:2:0 limited range, even dimensions, never upscaled, with a progress
//!   callback and a [`CancelHandle`]. It blocks: run it on a blocking thread.
//! - [`package::package()`] packages the renditions for streaming without re-encoding: one set of
//!   CMAF media behind an HLS master playlist and a DASH MPD, with a poster, seek-bar thumbnails
//!   and the source's text subtitles as WebVTT.
//! - [`chunk`]: a long source split on the keyframe grid ([`chunk::plan()`]), encoded chunk by
//!   chunk ([`chunk::transcode_chunk()`]) and stitched back without re-encoding the video
//!   ([`chunk::stitch()`]).
//! - [`TranscodeError::is_rejection`] tells a bad input (never worth a retry) from a failure.
//!
//! # Layout
//!
//! - [`probe`](mod@probe): what a file holds, read from its container.
//! - [`pipeline`]: the transcode, one module per stage (its own docs draw them): `run` (the
//!   demuxing loop and one thread per rendition), `video` and `audio` (decode once), `mux` (one
//!   rendition: scale, x264, MP4), `graph` (the filter graphs), `report` (progress, the report and
//!   the damage policy), `time` (timestamps).
//! - [`package`]: streaming output, one module per part (its own docs draw the folder): `boxes`
//!   (the byte layout of a fragmented MP4), `cmaf` (a track remuxed), `manifest` (playlists and
//!   MPD), `subtitles`, `thumbnails`.
//! - [`geometry`] (which way up, displayed and rendition sizes) and [`ladder`] (x264 and AAC
//!   settings per size): pure arithmetic the pipeline applies.
//! - [`error`]: why a transcode failed, rejections apart.
//!
//! ```no_run
//! use std::path::Path;
//! use transcode::{CancelHandle, RenditionSpec, TranscodeOptions};
//!
//! let specs = [RenditionSpec { name: "480p".into(), short_side: 480 }];
//! let report = transcode::transcode(
//!     Path::new("in.mov"),
//!     &specs,
//!     Path::new("out"),
//!     &TranscodeOptions::default(),
//!     &mut |p| eprintln!("{:.0}%", p.percent().unwrap_or(0.0)),
//!     &CancelHandle::new(),
//! )?;
//! println!("{}x{}", report.outputs[0].width, report.outputs[0].height);
//! # Ok::<(), transcode::TranscodeError>(())
//! ```

pub mod chunk;
pub mod error;
pub mod geometry;
pub mod ladder;
pub mod package;
pub mod pipeline;
pub mod probe;

pub use error::{Result, TranscodeError};
pub use pipeline::{
    CancelHandle, Progress, RenditionOutput, RenditionSpec, TranscodeOptions, TranscodeReport, transcode,
};
pub use probe::{AudioInfo, MediaInfo, VideoInfo, probe};
