//! The source's audio encoded once, ahead of the stitch: an AAC file (MP4, one stream) that the
//! stitch copies instead of encoding the audio itself.
//!
//! It is the same AAC a stitch would encode (the same decoder, resampler and encoder, fed the
//! same packets), so a stitch that copies it writes the same audio packets as one that encodes.
//! The split Job makes it while the chunk Jobs encode the video, which takes the audio's encode
//! (a single-threaded AAC encode of the whole source) off the stitch, the last step of a split.

use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;

use ffmpeg::codec::Id;
use ffmpeg::format::context::{Input, Output};
use ffmpeg::{Dictionary, Packet, Rational, encoder, media};
use ffmpeg_next as ffmpeg;
use serde::Serialize;

use crate::error::{FfmpegContext, Result, TranscodeError, file_size};
use crate::pipeline::{AudioPipe, CancelHandle, next_packet, start_time_us, ts_seconds};
use crate::probe;

/// Where a stitch's audio comes from.
#[derive(Debug, Clone, Copy)]
pub enum StitchAudio<'a> {
    /// Encoded to AAC from this file (the source), as a transcode does, once for every rendition.
    Encode(&'a Path),
    /// Copied from this file: the source's audio as [`encode_audio`] made
    /// it (the same packets an [`Encode`](Self::Encode) of that source writes).
    Copy(&'a Path),
}

/// What [`encode_audio`] made.
#[derive(Debug, Clone, Serialize)]
pub struct AudioReport {
    /// The file written.
    pub output: PathBuf,
    /// AAC packets in it.
    pub packets: u64,
    /// The audio's duration, in seconds (from the first packet's start to the last one's end).
    pub seconds: f64,
    /// File size in bytes.
    pub bytes: u64,
}

/// Encodes the audio of `source` to AAC as a transcode does, into `output` (MP4 with one audio
/// stream); `None`, writing nothing, when the source has no audio.
///
/// # Errors
///
/// [`TranscodeError::Cancelled`] when `cancel` fires; a failure when the source cannot be read,
/// its audio decoded or the file written. Nothing is left at `output` on error.
pub fn encode_audio(source: &Path, output: &Path, cancel: &CancelHandle) -> Result<Option<AudioReport>> {
    let mut ictx = probe::open_input(source)?;
    let start_us = start_time_us(&ictx);
    let Some(audio) = probe::describe(&ictx).audio else {
        return Ok(None);
    };
    let mut pipe = AudioPipe::open(&ictx, audio.index, start_us)?;
    let written = write(&mut ictx, &mut pipe, output, cancel);
    if written.is_err() {
        let _ = std::fs::remove_file(output);
    }
    written.map(Some)
}

fn write(ictx: &mut Input, pipe: &mut AudioPipe, output: &Path, cancel: &CancelHandle) -> Result<AudioReport> {
    let mut octx = create(output, pipe)?;
    let out_tb = octx.stream(0).expect("added").time_base();
    let (mut packets, mut first, mut end) = (0u64, None, 0i64);
    {
        let mut sink = |p: &Packet, tb: Rational| {
            let mut p = p.clone();
            p.set_stream(0);
            p.set_position(-1);
            p.rescale_ts(tb, out_tb);
            let pts = p.pts().or(p.dts()).unwrap_or(0);
            first.get_or_insert(pts);
            end = end.max(pts + p.duration());
            packets += 1;
            p.write_interleaved(&mut octx)
                .ctx(format!("writing audio to {}", output.display()))
        };
        let mut read_errors = 0;
        while let Some(packet) = next_packet(ictx, &mut read_errors) {
            if cancel.is_cancelled() {
                return Err(TranscodeError::Cancelled);
            }
            if packet.stream() == pipe.index {
                pipe.decode(Some(&packet), &mut sink)?;
            }
        }
        pipe.decode(None, &mut sink)?;
    }
    octx.write_trailer().ctx(format!("finishing {}", output.display()))?;
    if packets == 0 {
        return Err(TranscodeError::Chunk(format!(
            "the audio of the source decodes to nothing: {} has no packet",
            output.display()
        )));
    }
    let bytes = file_size(output)?;
    Ok(AudioReport {
        output: output.to_owned(),
        packets,
        seconds: ts_seconds(end - first.unwrap_or(0), out_tb),
        bytes,
    })
}

fn create(output: &Path, pipe: &AudioPipe) -> Result<Output> {
    let mut octx = ffmpeg::format::output_as(output, "mp4").ctx(format!("creating {}", output.display()))?;
    let mut ost = octx.add_stream(encoder::find(Id::AAC)).ctx("adding the audio stream")?;
    ost.set_parameters(pipe.encoder());
    ost.set_time_base(pipe.encoder().time_base());
    // SAFETY: a plain field of the stream's parameters, before the header is written.
    unsafe { (*(*ost.as_mut_ptr()).codecpar).codec_tag = 0 };
    octx.write_header_with(Dictionary::new())
        .ctx(format!("writing the header of {}", output.display()))?;
    Ok(octx)
}

/// The stitch's audio, opened.
pub(super) enum AudioIn {
    /// The source, and its audio's decoder and AAC encoder.
    Encode(Input, Box<AudioPipe>),
    /// An AAC file ([`encode_audio`]), and its stream's index.
    Copy(Input, usize),
}

impl AudioIn {
    /// `None` when the source has no audio.
    pub(super) fn open(audio: StitchAudio<'_>) -> Result<Option<Self>> {
        match audio {
            StitchAudio::Encode(source) => {
                let ictx = probe::open_input(source)?;
                let start_us = start_time_us(&ictx);
                Ok(match probe::describe(&ictx).audio {
                    Some(a) => {
                        let pipe = AudioPipe::open(&ictx, a.index, start_us)?;
                        Some(Self::Encode(ictx, Box::new(pipe)))
                    }
                    None => None,
                })
            }
            StitchAudio::Copy(file) => {
                let ictx = probe::open_input(file)?;
                let index = ictx
                    .streams()
                    .find(|s| s.parameters().medium() == media::Type::Audio && s.parameters().id() == Id::AAC)
                    .map(|s| s.index())
                    .ok_or_else(|| {
                        TranscodeError::Chunk(format!("the stitch's audio {} has no AAC stream", file.display()))
                    })?;
                Ok(Some(Self::Copy(ictx, index)))
            }
        }
    }

    /// What the outputs' audio stream takes: its parameters and time base.
    pub(super) fn stream(&self) -> (ffmpeg::codec::Parameters, Rational) {
        match self {
            Self::Encode(_, pipe) => (pipe.encoder().into(), pipe.encoder().time_base()),
            Self::Copy(ictx, index) => {
                let s = ictx.stream(*index).expect("found at open");
                let mut parameters = s.parameters();
                // The demuxer reports the file's measured rate; the encoder's nominal one is
                // what a stitch that encodes writes in the outputs' headers.
                // SAFETY: a plain field of parameters this function owns.
                unsafe { (*parameters.as_mut_ptr()).bit_rate = crate::ladder::AUDIO_BITRATE as i64 };
                (parameters, s.time_base())
            }
        }
    }

    /// The audio thread: every AAC packet, in order, with its time base, to `tx`. Stops at the
    /// first packet the writer no longer takes (it failed: its error is the one reported).
    pub(super) fn send(self, tx: &SyncSender<(Packet, Rational)>) -> Result<()> {
        let mut sink = |p: &Packet, tb| {
            tx.send((p.clone(), tb))
                .map_err(|_| TranscodeError::Chunk("the stitch stopped writing".into()))
        };
        match self {
            Self::Encode(mut source, mut pipe) => {
                // What cannot be read is skipped, and reading stops where nothing more can be, as
                // in the transcode; a damaged audio packet is dropped by the decoder, as there too.
                let mut read_errors = 0;
                while let Some(packet) = next_packet(&mut source, &mut read_errors) {
                    if packet.stream() == pipe.index {
                        pipe.decode(Some(&packet), &mut sink)?;
                    }
                }
                pipe.decode(None, &mut sink)
            }
            Self::Copy(mut file, index) => {
                // A file this project wrote: any read error is a damaged copy, not to be skipped.
                let stream = file.stream(index).expect("found at open");
                let tb = stream.time_base();
                // SAFETY: reading a plain field of the open stream's parameters.
                let frame = i64::from(unsafe { (*stream.parameters().as_ptr()).frame_size });
                loop {
                    let mut packet = Packet::empty();
                    match packet.read(&mut file) {
                        Ok(()) if packet.stream() == index => {
                            // The demuxer shortens the last packet to the file's edit list; the
                            // encoder gave it a whole frame, which is what the file stores.
                            if frame > 0 && packet.duration() < frame {
                                packet.set_duration(frame);
                            }
                            sink(&packet, tb)?;
                        }
                        Ok(()) => {}
                        Err(ffmpeg::Error::Eof) => break,
                        Err(e) => return Err(e).ctx("reading the stitch's audio file"),
                    }
                }
                Ok(())
            }
        }
    }
}
