//! Encoding one chunk: the pipeline run over a window of the source, video only.
//!
//! The input is sought to the keyframe at or before the chunk's start (with a margin: a
//! container indexes keyframes by decoding time, which comes before their presentation), decoded
//! from there, and only the chunk's pictures reach the renditions, with the timestamps they have
//! in the unsplit encode. Each rendition's encoder starts afresh, so each starts with an IDR
//! keyframe, on the plan's grid. Audio is left to the stitch, which encodes it once.

use std::path::{Path, PathBuf};

use crate::chunk::plan::Chunk;
use crate::error::{Result, TranscodeError};
use crate::pipeline::{SEEK_LANDED_LATE, Window, transcode_window};
use crate::{CancelHandle, Progress, RenditionSpec, TranscodeOptions, TranscodeReport};

/// How far before a chunk's start the input is sought, first, then again when the decode still
/// starts after the chunk (then from the start of the source). The first is more than the few
/// frames by which a keyframe's decoding time precedes its presentation, so that with an index
/// (MP4, Matroska) the keyframe found is never the one after the start; the others are for
/// containers that seek roughly, and for long source GOPs. Decoding is cheap beside encoding.
pub(crate) const SEEK_MARGINS_SECONDS: [f64; 3] = [1.0, 10.0, 60.0];

/// The file a chunk's rendition is written to, in the chunk's output folder:
/// `{name}.chunk-{index:05}.mp4`.
pub fn chunk_file_name(name: &str, index: usize) -> String {
    format!("{name}.chunk-{index:05}.mp4")
}

/// Encodes `chunk` of `input` into one video-only MP4 per rendition in `output_dir` (named by
/// [`chunk_file_name`]), decoding the source once, from the keyframe at or before the chunk.
///
/// Each file holds exactly the chunk's frames (for the last chunk: from its start to the end of
/// the source), starts with a keyframe, and is timed as the same frames are in the unsplit
/// encode (the first at the chunk's start time). It blocks: run it on a blocking thread.
///
/// # Errors
///
/// [`TranscodeError::Chunk`] when the chunk does not fit its plan or the source (out of range, a
/// frame count other than the plan's); otherwise as [`transcode()`](crate::transcode()). On any
/// error no output file is left behind.
pub fn transcode_chunk(
    input: &Path,
    renditions: &[RenditionSpec],
    chunk: &Chunk,
    output_dir: &Path,
    options: &TranscodeOptions,
    progress: &mut dyn FnMut(&Progress),
    cancel: &CancelHandle,
) -> Result<TranscodeReport> {
    check_chunk(chunk)?;
    let (start_seconds, end_seconds) = chunk.cuts();
    let mut margins = SEEK_MARGINS_SECONDS.iter();
    let report = loop {
        let margin = margins.next().copied().unwrap_or(f64::INFINITY);
        let window = Window {
            seek_seconds: (chunk.start_seconds - margin).max(0.0),
            start_seconds,
            end_seconds,
            file_suffix: format!(".chunk-{:05}", chunk.index),
        };
        match transcode_window(input, renditions, output_dir, options, Some(&window), progress, cancel) {
            // A container without an index (MPEG-TS) seeks by timestamp only roughly, and the
            // decode starts at the next keyframe after where it lands: seek from further back.
            Err(TranscodeError::Chunk(why)) if why.starts_with(SEEK_LANDED_LATE) && window.seek_seconds > 0.0 => {
                tracing::debug!(chunk = chunk.index, margin, %why, "seeking again from further back");
            }
            result => break result?,
        }
    };
    if let Err(e) = check_frames(chunk, &report) {
        for o in &report.outputs {
            let _ = std::fs::remove_file(&o.path);
        }
        return Err(e);
    }
    Ok(report)
}

/// The paths [`transcode_chunk`] writes for `renditions` in `output_dir`.
pub fn chunk_paths(renditions: &[RenditionSpec], chunk: &Chunk, output_dir: &Path) -> Vec<PathBuf> {
    renditions
        .iter()
        .map(|r| output_dir.join(chunk_file_name(&r.name, chunk.index)))
        .collect()
}

/// Refuses a chunk that cannot belong to any plan.
fn check_chunk(chunk: &Chunk) -> Result<()> {
    let problem = if chunk.index >= chunk.count {
        Some(format!("chunk {} of a plan of {}", chunk.index, chunk.count))
    } else if chunk.end_frame <= chunk.start_frame {
        Some(format!(
            "chunk {} ends at frame {} before it starts at frame {}",
            chunk.index, chunk.end_frame, chunk.start_frame
        ))
    } else if !(chunk.frame_rate.is_finite() && chunk.frame_rate > 0.0) {
        Some(format!("chunk {} has no frame rate", chunk.index))
    } else if !(chunk.start_seconds.is_finite() && chunk.start_seconds >= 0.0) {
        Some(format!("chunk {} starts at {} s", chunk.index, chunk.start_seconds))
    } else {
        None
    };
    match problem {
        Some(p) => Err(TranscodeError::Chunk(format!("out of range: {p}"))),
        None => Ok(()),
    }
}

/// Every rendition holds the chunk's frames: exactly, but for the last chunk, which holds
/// whatever the source has after its start.
fn check_frames(chunk: &Chunk, report: &TranscodeReport) -> Result<()> {
    for o in &report.outputs {
        if !chunk.is_last() && o.frames != chunk.frames() {
            return Err(TranscodeError::Chunk(format!(
                "chunk {} of {} has {} frames where the plan has {} (frames {}..{}): the source \
                 does not have the frame rate or the length the plan was made for",
                chunk.index,
                o.name,
                o.frames,
                chunk.frames(),
                chunk.start_frame,
                chunk.end_frame
            )));
        }
    }
    Ok(())
}
