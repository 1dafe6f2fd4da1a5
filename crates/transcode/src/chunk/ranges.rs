//! The bytes of a source each chunk's encode reads, so that a chunk Job can fetch those alone
//! (ranged GETs into a sparse file of the source's size) instead of the whole source.
//!
//! Only MP4 and QuickTime sources, whose index (`moov`) gives every sample's place: a chunk's
//! ranges are every top-level box but the media data (`mdat`, of which only the box header), the
//! first second of packets (what opening the file probes), and the packets of every stream from
//! where [`transcode_chunk()`](super::transcode_chunk) seeks to a little after the chunk's end.
//! Read from a file that holds only these bytes, the chunk's encode has the pictures it has from
//! the whole file (a test compares them).

use std::fs::File;
use std::path::Path;

use ffmpeg_next as ffmpeg;

use crate::chunk::encode::SEEK_MARGINS_SECONDS;
use crate::chunk::plan::Chunk;
use crate::error::{FfmpegContext, Result, TranscodeError};
use crate::package::boxes::top_level;
use crate::pipeline::{next_packet, start_time_us};
use crate::probe::open_input;

/// Byte ranges of a file, `start..end`, sorted and apart.
pub type ByteRanges = Vec<(u64, u64)>;

/// Seconds of packets read after the chunk's end: more than the decoder's delay (reordering and
/// frame threads) between the packet read and the picture that ends the chunk.
const AFTER_END_SECONDS: f64 = 2.0;
/// Seconds of packets at the start of the file that opening it reads to probe the streams.
const PROBED_SECONDS: f64 = 1.0;

/// For each of `chunks` (of a plan of `input`), the byte ranges of `input` that encoding it
/// reads; `None` when `input` is not an MP4 or QuickTime file (its
/// chunks then need the whole source). The file is opened, and its boxes read, once for all.
///
/// # Errors
///
/// As [`probe()`](crate::probe()) when the file cannot be opened; [`TranscodeError::Io`] when it
/// cannot be read; [`TranscodeError::Chunk`] when its boxes do not add up to its size.
pub fn source_ranges(input: &Path, chunks: &[Chunk]) -> Result<Option<Vec<ByteRanges>>> {
    let mut ictx = open_input(input)?;
    if !ictx.format().name().split(',').any(|n| n == "mp4" || n == "mov") {
        return Ok(None);
    }
    let mut file = File::open(input).map_err(|source| TranscodeError::Io {
        path: input.display().to_string(),
        source,
    })?;
    let boxes = top_level(&mut file).map_err(|e| TranscodeError::Chunk(format!("{}: {e}", input.display())))?;
    let mut common: Vec<(u64, u64)> = boxes
        .iter()
        .map(|b| {
            let end = if &b.kind == b"mdat" { b.content } else { b.end };
            (b.start as u64, end as u64)
        })
        .collect();
    let start_us = start_time_us(&ictx);
    let seconds = |ts: Option<i64>, tb: ffmpeg::Rational| ts.map(|t| t as f64 * f64::from(tb) - start_us as f64 / 1e6);
    let time_bases: Vec<ffmpeg::Rational> = ictx.streams().map(|s| s.time_base()).collect();
    let mut read_errors = 0;
    // The first second, as the open probes it: right after the open, reading starts there.
    while let Some(p) = next_packet(&mut ictx, &mut read_errors) {
        if seconds(p.dts(), time_bases[p.stream()]).is_some_and(|t| t > PROBED_SECONDS) {
            break;
        }
        push(&mut common, &p);
    }
    let mut all = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let mut ranges = common.clone();
        // From where its encode seeks.
        let seek_seconds = (chunk.start_seconds - SEEK_MARGINS_SECONDS[0]).max(0.0);
        let at = start_us.saturating_add((seek_seconds * 1e6) as i64);
        ictx.seek(at, ..at).ctx("seeking to the chunk")?;
        let stop = (!chunk.is_last()).then_some(chunk.end_seconds + AFTER_END_SECONDS);
        while let Some(p) = next_packet(&mut ictx, &mut read_errors) {
            if let Some(stop) = stop
                && seconds(p.dts(), time_bases[p.stream()]).is_some_and(|t| t > stop)
            {
                break;
            }
            push(&mut ranges, &p);
        }
        all.push(merged(ranges));
    }
    Ok(Some(all))
}

/// The packet's bytes, when it says where they are.
fn push(ranges: &mut Vec<(u64, u64)>, p: &ffmpeg::Packet) {
    if let Ok(pos) = u64::try_from(p.position())
        && p.size() > 0
    {
        ranges.push((pos, pos + p.size() as u64));
    }
}

/// `ranges` sorted, those that touch or overlap joined.
fn merged(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_cannot_be_opened_is_an_error() {
        let chunk = Chunk {
            plan_id: "p".into(),
            index: 0,
            count: 2,
            start_frame: 0,
            end_frame: 60,
            start_seconds: 0.0,
            end_seconds: 2.0,
            frame_rate: 30.0,
        };
        let missing = std::env::temp_dir().join("ranges-no-such-file.mp4");
        let e = source_ranges(&missing, &[chunk]).unwrap_err().to_string();
        assert!(e.contains("ranges-no-such-file.mp4"), "{e}");
    }

    #[test]
    fn touching_and_overlapping_ranges_are_joined() {
        assert_eq!(
            merged(vec![(10, 20), (0, 5), (5, 8), (15, 30), (40, 41)]),
            vec![(0, 8), (10, 30), (40, 41)]
        );
    }
}
