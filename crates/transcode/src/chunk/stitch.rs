//! Stitching: the chunks of one rendition joined, without re-encoding their video, into one MP4
//! with the source's audio encoded once for the whole length (so nothing happens to it at chunk
//! boundaries), the index first.
//!
//! The chunks are checked before anything is written (each present, readable, one H.264 stream,
//! the same picture size, time base and decoder set-up as the first: chunks of another rendition
//! are refused), and while they are copied: each starts with a keyframe where the one before
//! ends (within a frame: a missing, repeated or misplaced chunk is refused), and holds as many
//! frames as its index says. The finished file is read back: its frame count must be the sum of
//! the chunks', its duration theirs within a frame.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};

use ffmpeg::codec::Id;
use ffmpeg::format::context::{Input, Output};
use ffmpeg::{Dictionary, Packet, Rational, encoder, media};
use ffmpeg_next as ffmpeg;
use serde::Serialize;

use super::audio::{AudioIn, StitchAudio};
use crate::error::{FfmpegContext, Result, TranscodeError, file_size};
use crate::pipeline::ts_seconds;
use crate::probe;

/// What a stitch made.
#[derive(Debug, Clone, Serialize)]
pub struct StitchReport {
    /// The MP4 written.
    pub output: PathBuf,
    /// Chunks joined.
    pub chunks: usize,
    /// Video frames in the output: the sum of the chunks'.
    pub frames: u64,
    /// The video's duration, in seconds.
    pub video_seconds: f64,
    /// The audio's duration, in seconds, when the source has audio.
    pub audio_seconds: Option<f64>,
    /// File size in bytes.
    pub bytes: u64,
}

/// Joins `chunks` (one rendition's, in order) into `output`, with the audio of `audio_source`
/// (the source itself) encoded once to AAC as a transcode does; the video is copied.
///
/// # Errors
///
/// As [`stitch_ladder`].
pub fn stitch(chunks: &[PathBuf], audio_source: &Path, output: &Path) -> Result<StitchReport> {
    let mut reports = stitch_ladder(
        &[chunks.to_vec()],
        StitchAudio::Encode(audio_source),
        &[output.to_owned()],
    )?;
    Ok(reports.remove(0))
}

/// Joins the chunks of every rendition (`chunks[r]`, in order) into `outputs[r]`, with the audio
/// `audio` names, encoded once for all of them (as a transcode shares it) or copied; the video
/// is copied. The reports come in the renditions' order.
///
/// # Errors
///
/// [`TranscodeError::Chunk`] when a chunk is missing, unreadable, of another rendition, out of
/// place, when the renditions do not have as many chunks as each other (or as outputs), or when
/// a result fails its checks (frame count, duration); FFmpeg and I/O failures otherwise. On any
/// error no output is left behind.
pub fn stitch_ladder(
    chunks: &[Vec<PathBuf>],
    audio: StitchAudio<'_>,
    outputs: &[PathBuf],
) -> Result<Vec<StitchReport>> {
    if chunks.is_empty() || chunks.len() != outputs.len() {
        return Err(TranscodeError::Chunk(format!(
            "{} renditions of chunks for {} outputs",
            chunks.len(),
            outputs.len()
        )));
    }
    let mut sets = Vec::with_capacity(chunks.len());
    for (r, paths) in chunks.iter().enumerate() {
        if paths.is_empty() {
            return Err(TranscodeError::Chunk("no chunk to stitch".into()));
        }
        if paths.len() != chunks[0].len() {
            return Err(TranscodeError::Chunk(format!(
                "rendition {r} has {} chunks where rendition 0 has {}",
                paths.len(),
                chunks[0].len()
            )));
        }
        let files = paths
            .iter()
            .enumerate()
            .map(|(i, p)| ChunkFile::read(i, p))
            .collect::<Result<Vec<_>>>()?;
        for (i, f) in files.iter().enumerate().skip(1) {
            files[0].check_same(i, f)?;
        }
        sets.push(files);
    }
    let result = write(&sets, audio, outputs).and_then(|written| {
        sets.iter()
            .zip(outputs)
            .zip(written)
            .map(|((files, output), (frames, seconds))| verify(output, files, frames, seconds))
            .collect()
    });
    if result.is_err() {
        for output in outputs {
            let _ = std::fs::remove_file(output);
        }
    }
    result
}

/// What a chunk file must agree on with the others, read before anything is written.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ChunkFile {
    path: PathBuf,
    size: (i32, i32),
    time_base: Rational,
    /// The decoder set-up (SPS and PPS): the same encoder settings give the same bytes.
    extradata: Vec<u8>,
    /// The frames its index announces.
    pub(super) frames: u64,
    /// A frame's duration in `time_base` units, for packets that do not say (MP4's do not).
    step: i64,
}

impl ChunkFile {
    pub(super) fn read(index: usize, path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(TranscodeError::Chunk(format!(
                "chunk {index} is missing: no file at {}",
                path.display()
            )));
        }
        let bad = |why: String| TranscodeError::Chunk(format!("chunk {index} ({}) {why}", path.display()));
        let ictx = probe::open_input(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
        let (stream, count) = (ictx.streams().next(), ictx.streams().count());
        let Some(stream) = stream.filter(|s| count == 1 && s.parameters().medium() == media::Type::Video) else {
            return Err(bad(format!("is not one video stream ({count} streams)")));
        };
        let par = stream.parameters();
        if par.id() != Id::H264 {
            return Err(bad(format!("is {:?}, not H.264", par.id())));
        }
        // SAFETY: reading plain fields (and the extradata they describe) of valid parameters.
        let (size, extradata) = unsafe {
            let p = &*par.as_ptr();
            let extra = match p.extradata_size {
                n if n > 0 && !p.extradata.is_null() => std::slice::from_raw_parts(p.extradata, n as usize).to_vec(),
                _ => Vec::new(),
            };
            ((p.width, p.height), extra)
        };
        let (time_base, frames) = (stream.time_base(), u64::try_from(stream.frames()).unwrap_or(0));
        let rate = stream.avg_frame_rate();
        let step = if rate.numerator() > 0 && rate.denominator() > 0 {
            // One frame at `rate`, in `time_base` units.
            let (tb, fr) = (f64::from(time_base), f64::from(rate));
            (1.0 / (fr * tb)).round() as i64
        } else {
            stream.duration() / i64::try_from(frames.max(1)).unwrap_or(1)
        };
        Ok(Self {
            path: path.to_owned(),
            size,
            time_base,
            extradata,
            frames,
            step: step.max(1),
        })
    }

    /// Refuses chunk `index` unless it can follow this one in one stream.
    fn check_same(&self, index: usize, other: &Self) -> Result<()> {
        let what = if other.size != self.size {
            format!("{}x{} pictures", other.size.0, other.size.1)
        } else if other.time_base != self.time_base {
            format!("the time base {}", other.time_base)
        } else if other.extradata != self.extradata {
            "other encoder settings".to_owned()
        } else {
            return Ok(());
        };
        Err(TranscodeError::Chunk(format!(
            "chunk {index} ({}) has {what} where chunk 0 has {}x{} at {}: chunks of different renditions or encodes",
            other.path.display(),
            self.size.0,
            self.size.1,
            self.time_base
        )))
    }
}

/// Writes the outputs; gives, for each, the video frames written and the video's duration in
/// seconds. The audio is decoded and encoded once, on a thread of its own while the video is
/// copied; each packet goes to every output, after the video packets decoded before it (the same
/// order, so the same bytes, however the two threads run).
fn write(sets: &[Vec<ChunkFile>], audio: StitchAudio<'_>, outputs: &[PathBuf]) -> Result<Vec<(u64, f64)>> {
    let audio = AudioIn::open(audio)?;
    let params = audio.as_ref().map(AudioIn::stream);
    let mut outs = sets
        .iter()
        .zip(outputs)
        .map(|(files, output)| Stitched::create(files, output, params.as_ref()))
        .collect::<Result<Vec<_>>>()?;
    let Some(audio) = audio else {
        return outs.into_iter().map(Stitched::finish).collect();
    };
    // The audio comes from a thread of its own (encoded or read) while this one copies the
    // video and interleaves.
    let (tx, rx) = mpsc::sync_channel::<(Packet, Rational)>(AUDIO_PACKETS_AHEAD);
    std::thread::scope(|scope| {
        let producing = scope.spawn(move || audio.send(&tx));
        // A failed write drops the receiver: the audio thread stops at its next packet.
        let written = interleave(&mut outs, &rx);
        drop(rx);
        let produced = producing
            .join()
            .unwrap_or_else(|_| Err(TranscodeError::Chunk("the audio thread panicked".into())));
        written?;
        produced
    })?;
    outs.into_iter().map(Stitched::finish).collect()
}

/// Audio packets the audio thread may get ahead of the writer (about 20 s of AAC at 48 kHz).
const AUDIO_PACKETS_AHEAD: usize = 1024;

/// Writes every audio packet from `rx` to every output, each after the video before it.
fn interleave(outs: &mut [Stitched<'_>], rx: &Receiver<(Packet, Rational)>) -> Result<()> {
    for (packet, tb) in rx {
        let at = ts_seconds(packet.dts().or(packet.pts()).unwrap_or(0), tb);
        for out in outs.iter_mut() {
            out.video_before(Some(at))?;
            out.audio(&packet, tb)?;
        }
    }
    Ok(())
}

/// One output being written: its muxer, and its chunks' video packets.
struct Stitched<'a> {
    octx: Output,
    path: &'a Path,
    video: VideoPackets<'a>,
    /// The next video packet, read ahead to be compared with the audio.
    next: Option<Packet>,
    /// The chunks' time base, the video's time base in the output, and the audio's.
    chunk_tb: Rational,
    video_tb: Rational,
    audio_tb: Option<Rational>,
}

impl<'a> Stitched<'a> {
    fn create(
        files: &'a [ChunkFile],
        path: &'a Path,
        audio: Option<&(ffmpeg::codec::Parameters, Rational)>,
    ) -> Result<Self> {
        let octx = create(path, &files[0].path, audio)?;
        let mut video = VideoPackets::new(files);
        Ok(Self {
            video_tb: octx.stream(0).expect("added").time_base(),
            audio_tb: octx.stream(1).map(|s| s.time_base()),
            octx,
            path,
            next: video.next()?,
            video,
            chunk_tb: files[0].time_base,
        })
    }

    /// Writes the video packets decoded before `at` seconds (all that are left: `None`).
    fn video_before(&mut self, at: Option<f64>) -> Result<()> {
        while let Some(p) = self.next.as_mut() {
            if at.is_some_and(|at| ts_seconds(p.dts().unwrap_or(0), self.chunk_tb) >= at) {
                break;
            }
            p.set_stream(0);
            p.set_position(-1);
            p.rescale_ts(self.chunk_tb, self.video_tb);
            p.write_interleaved(&mut self.octx)
                .ctx(format!("writing video to {}", self.path.display()))?;
            self.next = self.video.next()?;
        }
        Ok(())
    }

    fn audio(&mut self, packet: &Packet, tb: Rational) -> Result<()> {
        let mut p = packet.clone();
        p.set_stream(1);
        p.rescale_ts(tb, self.audio_tb.expect("audio packets mean an audio stream"));
        p.write_interleaved(&mut self.octx)
            .ctx(format!("writing audio to {}", self.path.display()))
    }

    /// Writes the rest of the video and the index; gives the frames written and their duration.
    fn finish(mut self) -> Result<(u64, f64)> {
        self.video_before(None)?;
        self.octx
            .write_trailer()
            .ctx(format!("finishing {}", self.path.display()))?;
        Ok((
            self.video.written,
            ts_seconds(self.video.end.unwrap_or(0), self.chunk_tb),
        ))
    }
}

/// The output file: the first chunk's video stream, the audio encoder's stream, the index first.
fn create(output: &Path, first_chunk: &Path, audio: Option<&(ffmpeg::codec::Parameters, Rational)>) -> Result<Output> {
    let first = probe::open_input(first_chunk)?;
    let ist = first.streams().next().expect("checked: one video stream");
    let mut octx = ffmpeg::format::output_as(output, "mp4").ctx(format!("creating {}", output.display()))?;
    let mut ost = octx
        .add_stream(encoder::find(Id::H264))
        .ctx("adding the video stream")?;
    ost.set_parameters(ist.parameters());
    ost.set_time_base(ist.time_base());
    // SAFETY: clearing the codec tag lets the MP4 muxer choose its own.
    unsafe { (*(*ost.as_mut_ptr()).codecpar).codec_tag = 0 };
    if let Some((parameters, time_base)) = audio {
        let mut ost = octx.add_stream(encoder::find(Id::AAC)).ctx("adding the audio stream")?;
        ost.set_parameters(parameters.clone());
        ost.set_time_base(*time_base);
        // SAFETY: as above.
        unsafe { (*(*ost.as_mut_ptr()).codecpar).codec_tag = 0 };
    }
    let mut opts = Dictionary::new();
    // The index goes before the media, as in every rendition.
    opts.set("movflags", "+faststart");
    octx.write_header_with(opts)
        .ctx(format!("writing the header of {}", output.display()))?;
    Ok(octx)
}

/// The chunks' video packets in order, each chunk placed where the one before ends.
struct VideoPackets<'a> {
    files: &'a [ChunkFile],
    /// The chunk being read and its index, with the frames read from it and the shift its
    /// timestamps get (set by its first packet).
    current: Option<(usize, Input, u64, Option<i64>)>,
    /// The next chunk to open.
    next: usize,
    /// Where the video written so far ends (the latest timestamp plus its duration).
    end: Option<i64>,
    last_dts: Option<i64>,
    /// Packets given so far.
    written: u64,
}

impl<'a> VideoPackets<'a> {
    fn new(files: &'a [ChunkFile]) -> Self {
        Self {
            files,
            current: None,
            next: 0,
            end: None,
            last_dts: None,
            written: 0,
        }
    }

    /// The next packet, its timestamps in the chunks' time base on the output's timeline.
    fn next(&mut self) -> Result<Option<Packet>> {
        loop {
            let Some((index, ictx, read, shift)) = self.current.as_mut() else {
                let Some(file) = self.files.get(self.next) else {
                    return Ok(None);
                };
                self.current = Some((self.next, probe::open_input(&file.path)?, 0, None));
                self.next += 1;
                continue;
            };
            let file = &self.files[*index];
            let mut packet = Packet::empty();
            match packet.read(ictx) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => {
                    if *read != file.frames {
                        return Err(TranscodeError::Chunk(format!(
                            "chunk {index} ({}) holds {read} frames where its index announces {}",
                            file.path.display(),
                            file.frames
                        )));
                    }
                    self.current = None;
                    continue;
                }
                Err(e) => return Err(e).ctx(format!("reading chunk {index}")),
            }
            let (Some(pts), Some(dts)) = (packet.pts(), packet.dts()) else {
                return Err(TranscodeError::Chunk(format!(
                    "chunk {index} has a packet without a timestamp"
                )));
            };
            let step = match packet.duration() {
                d if d > 0 => d,
                _ => file.step,
            };
            // The muxer takes the last frame's length from its packet.
            packet.set_duration(step);
            let shift = *shift.get_or_insert_with(|| self.end.map_or(0, |end| end - pts));
            if *read == 0 {
                place_first(*index, &packet, pts, shift, step, file.time_base)?;
            }
            *read += 1;
            let (pts, mut dts) = (pts + shift, dts + shift);
            if let Some(last) = self.last_dts.filter(|l| dts <= *l) {
                dts = last + 1;
            }
            if dts > pts {
                return Err(TranscodeError::Chunk(format!(
                    "chunk {index} decodes a frame after showing it: its timestamps overlap the chunk before"
                )));
            }
            packet.set_pts(Some(pts));
            packet.set_dts(Some(dts));
            self.last_dts = Some(dts);
            self.end = Some(self.end.map_or(pts + step, |e| e.max(pts + step)));
            self.written += 1;
            return Ok(Some(packet));
        }
    }
}

/// Refuses a chunk that does not start with a keyframe, or starts more than a frame away from
/// where the chunk before ends.
fn place_first(index: usize, packet: &Packet, pts: i64, shift: i64, step: i64, tb: Rational) -> Result<()> {
    if !packet.is_key() {
        return Err(TranscodeError::Chunk(format!(
            "chunk {index} does not start with a keyframe"
        )));
    }
    if shift.abs() > step {
        return Err(TranscodeError::Chunk(format!(
            "chunk {index} starts at {:.3} s where the chunk before ends at {:.3} s: a chunk is \
             missing, repeated or out of order",
            ts_seconds(pts, tb),
            ts_seconds(pts + shift, tb)
        )));
    }
    Ok(())
}

/// Reads the output back: as many frames as the chunks, as long as they are within a frame.
pub(super) fn verify(output: &Path, files: &[ChunkFile], written: u64, seconds: f64) -> Result<StitchReport> {
    let info = probe::probe(output)?;
    let video = info
        .video
        .as_ref()
        .ok_or_else(|| TranscodeError::Chunk("the stitched file has no video".into()))?;
    let expected: u64 = files.iter().map(|f| f.frames).sum();
    let frames = video.frames.unwrap_or(0);
    if frames != expected || written != expected {
        return Err(TranscodeError::Chunk(format!(
            "the stitched file has {frames} frames ({written} written) where the chunks have {expected}"
        )));
    }
    let got = video.duration_seconds.unwrap_or(0.0);
    let frame = if video.frame_rate > 0.0 {
        1.0 / video.frame_rate
    } else {
        0.1
    };
    if (got - seconds).abs() > frame + 1e-6 {
        return Err(TranscodeError::Chunk(format!(
            "the stitched video lasts {got:.3} s where its chunks last {seconds:.3} s"
        )));
    }
    let bytes = file_size(output)?;
    Ok(StitchReport {
        output: output.to_owned(),
        chunks: files.len(),
        frames,
        video_seconds: got,
        audio_seconds: info.audio.as_ref().and_then(|a| a.duration_seconds),
        bytes,
    })
}
