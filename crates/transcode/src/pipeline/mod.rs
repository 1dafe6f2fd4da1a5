//! The transcode: decode once, filter and encode once per rendition, mux each to MP4.
//!
//! ```text
//!                    ┌─ video decoder ─ [deinterlace, turn upright, tone-map] ─┬─▶ thread: scale ─ x264 ─ MP4
//! demuxer ─ packets ─┤                                                          ├─▶ thread: scale ─ x264 ─ MP4
//!                    └─ audio decoder ─ resample/downmix ─ AAC (once, shared) ──┘   (one per rendition)
//! ```
//!
//! The decoding thread shares each picture (a new reference, no copy) with one worker thread per
//! rendition through a short queue; each worker scales, encodes and muxes its rendition, so the
//! renditions of a ladder are made in parallel from one decode. The whole pipeline is blocking
//! and CPU-bound: callers on an async runtime run it on a blocking thread. It checks its
//! [`CancelHandle`] between packets, so a cancel stops it within one packet's work, and it removes
//! its partial outputs whenever it does not finish.
//!
//! # Layout
//!
//! One module per stage; each imports only those below it (`report` and `time` import no stage):
//!
//! - `run`: [`transcode()`] and its inputs ([`RenditionSpec`], [`TranscodeOptions`],
//!   [`CancelHandle`]): the demuxing loop, the fan-out to one thread per rendition, progress,
//!   cancellation, and the removal of partial outputs; and `transcode_window`, the same over a
//!   window of the source (seek, drop what comes before, video only), for [`crate::chunk`].
//! - `video`: the video decoder and the shared filters, with the count of what it decoded.
//! - `audio`: the audio decoder and the AAC encoder shared by the renditions.
//! - `mux`: one rendition: its scaler, its x264 encoder, its MP4 (index first).
//! - `graph`: the filter graphs and chains (shared filters, scaler, resampler).
//! - `report`: [`Progress`], [`TranscodeReport`], [`RenditionOutput`], and the damage and
//!   completeness policy ([`tolerated_errors`], [`MIN_DECODED_SHARE`]).
//! - `time`: timestamp arithmetic.

mod audio;
#[cfg(test)]
mod fixtures;
mod graph;
mod mux;
mod report;
mod run;
mod time;
mod video;

pub use report::{MIN_DECODED_SHARE, Progress, RenditionOutput, TranscodeReport, tolerated_errors};
pub use run::{CancelHandle, RenditionSpec, TranscodeOptions, transcode};

// For the split encode (`crate::chunk`), which sits above the pipeline: a window of the source,
// the shared audio stage, and the arithmetic both sides must agree on.
pub(crate) use audio::AudioPipe;
pub(crate) use run::{SEEK_LANDED_LATE, Window, next_packet, start_time_us, transcode_window};
pub(crate) use time::ts_seconds;
pub(crate) use video::nominal_fps;

#[cfg(test)]
pub(crate) use fixtures::video_info;
