//! The video stage: the source's video decoded once, its timestamps made to start at zero and
//! increase, and its pictures passed through the shared filters (deinterlace, turn upright,
//! tone-map) to a sink, which hands each one to every rendition.
//!
//! It counts what it decodes ([`DecodeStats`]): frames, and decode errors for the damage policy.
//! A packet the decoder refuses, a frame it cannot give and a frame it had to conceal damage in
//! each count as one error; none stops the decode.

use ffmpeg::format::context::Input;
use ffmpeg::{Packet, Rational, codec, decoder, frame};
use ffmpeg_next as ffmpeg;
use ffmpeg_next::ffi;

use super::graph::{Colours, Graph, Picture, SharedFilters, picture_of, sar_or_square, shared_filters};
use super::report::DecodeStats;
use super::time::{frame_step, start_offset};
use crate::error::{FfmpegContext, Result, TranscodeError};
use crate::probe::VideoInfo;

/// Where the pictures go, with their time base: to every rendition.
pub(super) type FrameSink<'a> = dyn FnMut(&frame::Video, Rational) -> Result<()> + 'a;

/// The frame rate to plan with: the stream's, or 30 when it announces none.
pub(crate) fn nominal_fps(info: &VideoInfo) -> f64 {
    if info.frame_rate > 0.0 { info.frame_rate } else { 30.0 }
}

/// Pictures up to this size (1080p, with its 8 rows of padding) decode on one thread in a ladder.
const ONE_THREAD_DECODE_PIXELS: u64 = 1920 * 1088;

/// The video decoder's thread count (0: libavcodec's choice, one frame thread per core plus one).
///
/// For one rendition the decoder is on the critical path, so it gets frame threads. For a ladder
/// up to 1080p, the encoders alone keep every core busy and one core decodes a 1080p H.264 camera
/// stream about four times faster than they encode: frame threads would only add their own
/// overhead, taken from the encoders (measured: the ladder about 4% faster on one thread, a single
/// rendition about 5% slower). Larger pictures decode on every core, so that decoding keeps up.
fn decoder_threads(info: &VideoInfo, renditions: usize) -> usize {
    let pixels = u64::from(info.width) * u64::from(info.height);
    if renditions > 1 && pixels <= ONE_THREAD_DECODE_PIXELS {
        1
    } else {
        0
    }
}

/// Decoding and filtering of the video stream, feeding every rendition's encoder.
pub(super) struct VideoPipe {
    /// The stream's index in the input.
    pub(super) index: usize,
    decoder: decoder::Video,
    /// The input's start time in stream units, subtracted so outputs start at zero.
    offset: i64,
    sar: Rational,
    /// The filters shared by every rendition: deinterlace, orientation, tone mapping.
    shared: SharedFilters,
    /// The shared filters, built for the current picture size and format.
    graph: Option<(Picture, Graph)>,
    /// What was decoded so far, in the stream's time base.
    pub(super) stats: DecodeStats,
    decoded: frame::Video,
    filtered: frame::Video,
}

impl VideoPipe {
    /// Opens the decoder of the stream `info` describes, for `renditions` renditions.
    ///
    /// # Errors
    ///
    /// [`TranscodeError::UnsupportedCodec`] when this FFmpeg has no decoder for the codec,
    /// [`TranscodeError::Undecodable`] when the decoder cannot open the stream.
    pub(super) fn open(ictx: &Input, info: &VideoInfo, start_us: i64, renditions: usize) -> Result<Self> {
        let stream = ictx.stream(info.index).expect("index comes from this input");
        let mut ctx =
            codec::context::Context::from_parameters(stream.parameters()).ctx("reading the video parameters")?;
        ctx.set_threading(codec::threading::Config {
            kind: codec::threading::Type::Frame,
            count: decoder_threads(info, renditions),
            ..Default::default()
        });
        // SAFETY: setting a plain field of a context we own, before it is opened.
        unsafe { (*ctx.as_mut_ptr()).pkt_timebase = stream.time_base().into() };
        if decoder::find(ctx.id()).is_none() {
            return Err(TranscodeError::UnsupportedCodec(info.codec.clone()));
        }
        let decoder = ctx.decoder().video().map_err(|e| {
            TranscodeError::Undecodable(format!("the {} decoder cannot open the stream: {e}", info.codec))
        })?;
        let stream_tb = stream.time_base();
        let (n, d) = info.sample_aspect_ratio;
        Ok(Self {
            index: info.index,
            decoder,
            offset: start_offset(start_us, stream_tb),
            sar: sar_or_square(Rational::new(n, d)),
            shared: shared_filters(info),
            graph: None,
            stats: DecodeStats::new(stream_tb, frame_step(nominal_fps(info), stream_tb)),
            decoded: frame::Video::empty(),
            filtered: frame::Video::empty(),
        })
    }

    /// Whether HDR is tone-mapped to SDR BT.709.
    pub(super) fn tone_mapped(&self) -> bool {
        self.shared.tone_mapped
    }

    /// Whether the pictures are deinterlaced.
    pub(super) fn deinterlaced(&self) -> bool {
        self.shared.deinterlaced
    }

    /// The colour tags of the pictures the renditions get: BT.709 when tone-mapped, else the
    /// source's.
    pub(super) fn colours(&self) -> Colours {
        if self.shared.tone_mapped {
            Colours::BT709
        } else {
            Colours {
                primaries: self.decoder.color_primaries(),
                transfer: self.decoder.color_transfer_characteristic(),
                space: self.decoder.color_space(),
            }
        }
    }

    /// Sends a packet (or, with `None`, the end of stream) and passes every frame that comes out,
    /// through the shared filters, to `sink`.
    pub(super) fn decode(&mut self, packet: Option<&Packet>, sink: &mut FrameSink) -> Result<()> {
        let sent = match packet {
            Some(p) => self.decoder.send_packet(p),
            None => self.decoder.send_eof(),
        };
        if sent.is_err() && packet.is_some() {
            self.stats.errors += 1;
        }
        loop {
            match self.decoder.receive_frame(&mut self.decoded) {
                Ok(()) => self.on_frame(sink)?,
                Err(ffmpeg::Error::Eof) => break,
                Err(ffmpeg::Error::Other { errno }) if errno == ffi::EAGAIN => break,
                Err(_) => {
                    self.stats.errors += 1;
                    break;
                }
            }
        }
        if packet.is_none() {
            self.flush_graph(sink)?;
        }
        Ok(())
    }

    fn on_frame(&mut self, sink: &mut FrameSink) -> Result<()> {
        // A frame the decoder had to conceal damage in counts as a decode error too.
        // SAFETY: reading plain fields of a frame the decoder just filled.
        let (error_flags, flags) = unsafe {
            (
                (*self.decoded.as_ptr()).decode_error_flags,
                (*self.decoded.as_ptr()).flags,
            )
        };
        if error_flags != 0 || flags & ffi::AV_FRAME_FLAG_CORRUPT != 0 {
            self.stats.errors += 1;
        }
        let ts = self.decoded.timestamp().or(self.decoded.pts());
        let pts = self.stats.next_frame(ts.map(|t| t - self.offset));
        self.decoded.set_pts(Some(pts));

        if self.shared.chain.is_none() {
            return sink(&self.decoded, self.stats.time_base);
        }
        let picture = picture_of(&self.decoded);
        if self.graph.as_ref().is_none_or(|(p, _)| *p != picture) {
            // The picture changed size or format mid-stream: drain the old graph, build anew.
            self.flush_graph(sink)?;
            let chain = self.shared.chain.as_deref().expect("checked above");
            let graph = Graph::video(picture, self.stats.time_base, self.sar, chain, 0)?;
            self.graph = Some((picture, graph));
        }
        let (_, graph) = self.graph.as_mut().expect("built above");
        graph.push(&mut self.decoded).ctx("filtering a video frame")?;
        self.drain_graph(sink)
    }

    fn drain_graph(&mut self, sink: &mut FrameSink) -> Result<()> {
        let Some((_, graph)) = self.graph.as_mut() else {
            return Ok(());
        };
        while graph.pull(&mut self.filtered).ctx("reading filtered video")? {
            sink(&self.filtered, graph.sink_tb())?;
        }
        Ok(())
    }

    fn flush_graph(&mut self, sink: &mut FrameSink) -> Result<()> {
        if let Some((_, graph)) = self.graph.as_mut() {
            graph.end_input().ctx("flushing the video filters")?;
            self.drain_graph(sink)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use ffmpeg::format::Pixel;
    use test_support::TempDir;

    use super::*;
    use crate::pipeline::fixtures::video_info;
    use crate::pipeline::graph::Picture;
    use crate::pipeline::mux::sample::{SD, TIME_BASE, write_mp4};

    /// Every picture the pipe gives for the file at `path` (the stream described as probed, then
    /// changed by `adjust`), with its timestamp and time base; and the pipe.
    fn decode_all(path: &Path, adjust: impl FnOnce(&mut VideoInfo)) -> (Vec<(Picture, i64, Rational)>, VideoPipe) {
        let mut ictx = crate::probe::open_input(path).unwrap();
        let mut info = crate::probe::describe(&ictx).video.unwrap();
        adjust(&mut info);
        let mut pipe = VideoPipe::open(&ictx, &info, 0, 1).unwrap();
        let mut out = Vec::new();
        let mut sink = |f: &frame::Video, tb: Rational| {
            out.push((picture_of(f), f.pts().unwrap(), tb));
            Ok(())
        };
        for (stream, packet) in ictx.packets() {
            if stream.index() == pipe.index {
                pipe.decode(Some(&packet), &mut sink).unwrap();
            }
        }
        pipe.decode(None, &mut sink).unwrap();
        (out, pipe)
    }

    fn sample(dir: &TempDir, frames: i64) -> std::path::PathBuf {
        let path = dir.join("source.mp4");
        write_mp4(&path, (64, 48), frames, SD, None);
        path
    }

    #[test]
    fn a_single_rendition_decodes_on_frame_threads_and_a_ladder_up_to_1080p_on_one() {
        assert_eq!(decoder_threads(&video_info(1920, 1080), 1), 0);
        assert_eq!(decoder_threads(&video_info(1920, 1080), 3), 1);
        assert_eq!(decoder_threads(&video_info(3840, 2160), 1), 0);
        assert_eq!(decoder_threads(&video_info(3840, 2160), 3), 0);
    }

    #[test]
    fn every_picture_reaches_the_sink_once_with_increasing_timestamps_from_zero() {
        let dir = TempDir::new("transcode-video");
        let (out, pipe) = decode_all(&sample(&dir, 12), |_| {});
        let pts: Vec<i64> = out.iter().map(|o| o.1).collect();
        assert_eq!(pts, (0..12).map(|n| n * 512).collect::<Vec<_>>());
        assert!(
            out.iter().all(|o| o.0 == (64, 48, Pixel::YUV420P) && o.2 == TIME_BASE),
            "{out:?}"
        );
        assert_eq!((pipe.stats.frames, pipe.stats.errors), (12, 0));
        assert_eq!(pipe.stats.span_seconds(), 12.0 * 0.04);
        assert!(!pipe.tone_mapped() && !pipe.deinterlaced());
        assert_eq!(pipe.colours(), SD);
    }

    #[test]
    fn the_input_start_time_is_taken_off_every_timestamp() {
        let dir = TempDir::new("transcode-video");
        let path = sample(&dir, 3);
        let mut ictx = crate::probe::open_input(&path).unwrap();
        let info = crate::probe::describe(&ictx).video.unwrap();
        // As if the input started two frames (80 ms) in: the first frames go back to zero.
        let mut pipe = VideoPipe::open(&ictx, &info, 80_000, 1).unwrap();
        let mut pts = Vec::new();
        let mut sink = |f: &frame::Video, _: Rational| {
            pts.push(f.pts().unwrap());
            Ok(())
        };
        for (_, packet) in ictx.packets() {
            pipe.decode(Some(&packet), &mut sink).unwrap();
        }
        pipe.decode(None, &mut sink).unwrap();
        assert_eq!(pts, [-1_024, -512, 0]);
    }

    #[test]
    fn a_picture_stored_on_its_side_reaches_the_renditions_upright() {
        let dir = TempDir::new("transcode-video");
        let (out, pipe) = decode_all(&sample(&dir, 4), |info| info.orientation.transpose = Some("clock"));
        assert_eq!(out.len(), 4);
        assert!(out.iter().all(|o| o.0 == (48, 64, Pixel::YUV420P)), "{out:?}");
        assert_eq!(pipe.stats.frames, 4);
    }

    #[test]
    fn an_interlaced_stream_is_deinterlaced_frame_for_frame() {
        let dir = TempDir::new("transcode-video");
        let (out, pipe) = decode_all(&sample(&dir, 6), |info| info.interlaced = true);
        assert_eq!(out.len(), 6);
        assert!(pipe.deinterlaced());
    }

    #[test]
    fn an_hdr_stream_is_tone_mapped_and_its_renditions_tagged_bt709() {
        let dir = TempDir::new("transcode-video");
        let (out, pipe) = decode_all(&sample(&dir, 3), |info| {
            info.color_transfer = Some("smpte2084".into());
            info.color_primaries = Some("smpte170m".into());
        });
        assert_eq!(out.len(), 3);
        assert!(pipe.tone_mapped());
        assert_eq!(pipe.colours(), Colours::BT709);
    }

    #[test]
    fn a_stream_without_a_frame_rate_is_planned_at_30_fps() {
        assert_eq!(nominal_fps(&video_info(64, 48)), 25.0);
        let unknown = VideoInfo {
            frame_rate: 0.0,
            ..video_info(64, 48)
        };
        assert_eq!(nominal_fps(&unknown), 30.0);
    }
}
