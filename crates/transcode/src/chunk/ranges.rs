//! The bytes of a source one chunk's encode reads, so that a chunk Job can fetch those alone
//! (ranged GETs into a sparse file of the source's size) instead of the whole source.
//!
//! Only MP4 and QuickTime sources, whose index (`moov`) gives every sample's place: the ranges
//! are every top-level box but the media data (`mdat`, of which only the box header), the first
//! second of packets (what opening the file probes), and the packets of every stream from where
//! [`transcode_chunk()`](super::transcode_chunk) seeks to a little after the chunk's end. Read
//! from a file that holds only these bytes, the chunk's encode has the pictures it has from the
//! whole file (a test compares them).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use ffmpeg_next as ffmpeg;

use crate::chunk::encode::SEEK_MARGINS_SECONDS;
use crate::chunk::plan::Chunk;
use crate::error::{FfmpegContext, Result, TranscodeError};
use crate::pipeline::{next_packet, start_time_us};
use crate::probe::open_input;

/// Seconds of packets read after the chunk's end: more than the decoder's delay (reordering and
/// frame threads) between the packet read and the picture that ends the chunk.
const AFTER_END_SECONDS: f64 = 2.0;
/// Seconds of packets at the start of the file that opening it reads to probe the streams.
const PROBED_SECONDS: f64 = 1.0;

/// The byte ranges (`start..end`, sorted, apart) of `input` that encoding `chunk` reads, or
/// `None` when `input` is not an MP4 or QuickTime file (the chunk then needs the whole source).
///
/// # Errors
///
/// As [`probe()`](crate::probe()) when the file cannot be opened; [`TranscodeError::Io`] when it
/// cannot be read; [`TranscodeError::Chunk`] when its boxes do not add up to its size.
pub fn source_ranges(input: &Path, chunk: &Chunk) -> Result<Option<Vec<(u64, u64)>>> {
    let io = |source| TranscodeError::Io {
        path: input.display().to_string(),
        source,
    };
    let mut ictx = open_input(input)?;
    if !ictx.format().name().split(',').any(|n| n == "mp4" || n == "mov") {
        return Ok(None);
    }
    let mut ranges = boxes(&mut File::open(input).map_err(io)?, input)?;
    let start_us = start_time_us(&ictx);
    let seconds = |ts: Option<i64>, tb: ffmpeg::Rational| ts.map(|t| t as f64 * f64::from(tb) - start_us as f64 / 1e6);
    let time_bases: Vec<ffmpeg::Rational> = ictx.streams().map(|s| s.time_base()).collect();
    let mut read_errors = 0;
    // The first second, as the open probes it.
    ictx.seek(start_us, ..start_us).ok();
    while let Some(p) = next_packet(&mut ictx, &mut read_errors) {
        if seconds(p.dts(), time_bases[p.stream()]).is_some_and(|t| t > PROBED_SECONDS) {
            break;
        }
        push(&mut ranges, &p);
    }
    // The chunk, from where its encode seeks.
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
    Ok(Some(merged(ranges)))
}

/// The packet's bytes, when it says where they are.
fn push(ranges: &mut Vec<(u64, u64)>, p: &ffmpeg::Packet) {
    if let Ok(pos) = u64::try_from(p.position())
        && p.size() > 0
    {
        ranges.push((pos, pos + p.size() as u64));
    }
}

/// Every top-level box of the file, but only the header of a media data (`mdat`) box.
fn boxes(file: &mut File, path: &Path) -> Result<Vec<(u64, u64)>> {
    let io = |source| TranscodeError::Io {
        path: path.display().to_string(),
        source,
    };
    let len = file.metadata().map_err(io)?.len();
    let bad = |why: String| TranscodeError::Chunk(format!("{}: {why}", path.display()));
    let mut ranges = Vec::new();
    let mut at = 0u64;
    while at < len {
        let mut head = [0u8; 16];
        file.seek(SeekFrom::Start(at)).map_err(io)?;
        let n = (len - at).min(16) as usize;
        file.read_exact(&mut head[..n]).map_err(io)?;
        if n < 8 {
            return Err(bad(format!("{n} bytes after the last box at {at}")));
        }
        let size32 = u32::from_be_bytes(head[..4].try_into().expect("4 bytes"));
        let (size, header) = match size32 {
            0 => (len - at, 8),
            1 if n == 16 => (u64::from_be_bytes(head[8..16].try_into().expect("8 bytes")), 16),
            1 => return Err(bad(format!("a box at {at} cut short"))),
            s => (u64::from(s), 8),
        };
        if size < header || at + size > len {
            return Err(bad(format!("a box of {size} bytes at {at} in a file of {len}")));
        }
        let end = if &head[4..8] == b"mdat" { at + header } else { at + size };
        ranges.push((at, end));
        at += size;
    }
    Ok(ranges)
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

    /// Writes `bytes` to a fresh file and reads its boxes.
    fn boxes_of(name: &str, bytes: &[u8]) -> Result<Vec<(u64, u64)>> {
        let path = std::env::temp_dir().join(format!("ranges-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        let got = boxes(&mut File::open(&path).unwrap(), &path);
        std::fs::remove_file(&path).unwrap();
        got
    }

    fn mp4_box(kind: &[u8; 4], body: usize) -> Vec<u8> {
        let mut b = ((8 + body) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.resize(8 + body, 7);
        b
    }

    #[test]
    fn every_box_is_kept_but_the_media_data_of_which_only_the_header() {
        let mut file = mp4_box(b"ftyp", 16);
        file.extend(mp4_box(b"mdat", 1000));
        file.extend(mp4_box(b"moov", 100));
        assert_eq!(boxes_of("good", &file).unwrap(), vec![(0, 24), (24, 32), (1032, 1140)]);
        // A 64-bit size, and a last box that runs to the end of the file (size 0).
        let mut big = vec![0, 0, 0, 1];
        big.extend_from_slice(b"mdat");
        big.extend_from_slice(&32u64.to_be_bytes());
        big.resize(32, 7);
        let mut file = mp4_box(b"ftyp", 16);
        file.extend(big);
        let mut last = mp4_box(b"moov", 10);
        last[..4].copy_from_slice(&0u32.to_be_bytes());
        file.extend(last);
        assert_eq!(boxes_of("sizes", &file).unwrap(), vec![(0, 24), (24, 40), (56, 74)]);
    }

    #[test]
    fn boxes_that_do_not_add_up_to_the_file_are_an_error() {
        let mut file = mp4_box(b"ftyp", 16);
        file.extend(mp4_box(b"moov", 100));
        file.truncate(file.len() - 1);
        let e = boxes_of("short", &file).unwrap_err().to_string();
        assert!(e.contains("a box of 108 bytes at 24 in a file of 131"), "{e}");
        let mut file = mp4_box(b"ftyp", 16);
        file.extend_from_slice(&[0, 0, 0]);
        let e = boxes_of("tail", &file).unwrap_err().to_string();
        assert!(e.contains("3 bytes after the last box at 24"), "{e}");
        let e = boxes_of("tiny", &[0, 0, 0, 4, b'f', b'r', b'e', b'e'])
            .unwrap_err()
            .to_string();
        assert!(e.contains("a box of 4 bytes at 0"), "{e}");
    }

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
        let e = source_ranges(&missing, &chunk).unwrap_err().to_string();
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
