//! One rendition: the shared pictures scaled to its size, encoded by x264 with the ladder's
//! settings, and muxed with the shared AAC packets into an MP4 whose index (`moov`) comes before
//! the media (`mdat`), so players can start before the download ends.
//!
//! A [`RenditionMux`] is driven by whoever owns it (a worker thread in a transcode): it takes
//! pictures and audio packets as they come and writes the file when told to finish.

use std::path::PathBuf;

use ffmpeg::codec::{self, Id};
use ffmpeg::format::context::Output;
use ffmpeg::{Dictionary, Packet, Rational, encoder, frame, picture};
use ffmpeg_next as ffmpeg;

use super::graph::{Colours, Graph, Picture, is_full_range, picture_of, sar_or_square, scale_filters};
use super::report::RenditionOutput;
use super::time::{rescale, ts_seconds};
use crate::error::{FfmpegContext, Result, TranscodeError, file_size};
use crate::ladder::VideoSettings;

/// What a rendition's encoder is told about the pictures it gets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct VideoInput {
    /// The source video stream's time base: the encoder's and the MP4 stream's.
    pub(super) time_base: Rational,
    /// A frame's nominal duration in `time_base` units.
    pub(super) frame_step: i64,
    /// The colour tags of the pictures.
    pub(super) colours: Colours,
}

/// x264's `threads` for one of `renditions` encoders running side by side.
fn x264_threads(renditions: usize) -> String {
    if renditions <= 1 {
        return "auto".into();
    }
    std::thread::available_parallelism().map_or(2, |n| n.get()).to_string()
}

/// One rendition: its scaler, its encoder and its MP4 muxer.
pub(super) struct RenditionMux {
    name: String,
    path: PathBuf,
    width: u32,
    height: u32,
    octx: Output,
    encoder: encoder::Video,
    enc_tb: Rational,
    /// A frame's nominal duration in encoder time base.
    frame_step: i64,
    video_ost: usize,
    audio_ost: Option<usize>,
    settings: String,
    frames: u64,
    packet: Packet,
    /// Scales the shared frames to this rendition's size; built for the current picture.
    scale: Option<(Picture, Graph)>,
    scaled: frame::Video,
}

impl RenditionMux {
    /// Creates `path` (an MP4) for the rendition `name` of `width`×`height`, encoded with
    /// `settings` from pictures described by `video`, with an AAC stream from `audio` when given;
    /// `renditions` are made side by side (it decides x264's threads).
    ///
    /// # Errors
    ///
    /// [`TranscodeError::Options`] when FFmpeg has no libx264; a failure when the file, the
    /// encoder or the header cannot be made.
    pub(super) fn create(
        name: &str,
        path: PathBuf,
        (width, height): (u32, u32),
        settings: &VideoSettings,
        video: &VideoInput,
        audio: Option<&encoder::Audio>,
        renditions: usize,
    ) -> Result<Self> {
        let mut octx = ffmpeg::format::output_as(&path, "mp4").ctx(format!("creating {}", path.display()))?;
        let codec = encoder::find_by_name("libx264")
            .ok_or_else(|| TranscodeError::Options("FFmpeg was built without libx264".into()))?;
        let mut enc = codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()
            .ctx("creating the H.264 encoder")?;
        enc.set_width(width);
        enc.set_height(height);
        enc.set_format(ffmpeg::format::Pixel::YUV420P);
        enc.set_time_base(video.time_base);
        enc.set_aspect_ratio(Rational::new(1, 1));
        let fps = Rational::from(1.0 / ts_seconds(video.frame_step, video.time_base));
        enc.set_frame_rate(Some(fps));
        enc.set_color_range(ffmpeg::color::Range::MPEG);
        enc.set_color_primaries(video.colours.primaries);
        enc.set_color_transfer_characteristic(video.colours.transfer);
        enc.set_colorspace(video.colours.space);
        enc.set_flags(codec::Flags::GLOBAL_HEADER);
        let mut opts = Dictionary::new();
        opts.set("preset", &settings.preset);
        opts.set("crf", &settings.crf.to_string());
        opts.set("profile", "high");
        opts.set("x264-params", &settings.x264_params());
        // libavcodec defaults to one thread. Alone, x264 sizes its own pool (1.5 per core), as the
        // ffmpeg tool lets it; beside other renditions, one thread per core each keeps the cores
        // busy without crowding them (measured in scripts/bench.sh).
        opts.set("threads", &x264_threads(renditions));
        let encoder = enc.open_as_with(codec, opts).ctx("opening the H.264 encoder")?;

        let mut ost = octx.add_stream(codec).ctx("adding the video stream")?;
        ost.set_parameters(&encoder);
        ost.set_time_base(video.time_base);
        let video_ost = ost.index();
        // SAFETY: clearing the codec tag lets the MP4 muxer choose its own (`avc1`).
        unsafe { (*(*ost.as_mut_ptr()).codecpar).codec_tag = 0 };
        let audio_ost = match audio {
            Some(a) => {
                let mut ost = octx.add_stream(encoder::find(Id::AAC)).ctx("adding the audio stream")?;
                ost.set_parameters(a);
                ost.set_time_base(a.time_base());
                // SAFETY: as above.
                unsafe { (*(*ost.as_mut_ptr()).codecpar).codec_tag = 0 };
                Some(ost.index())
            }
            None => None,
        };
        let mut mux_opts = Dictionary::new();
        // The index goes before the media, so players can start before the download ends.
        mux_opts.set("movflags", "+faststart");
        octx.write_header_with(mux_opts)
            .ctx(format!("writing the header of {}", path.display()))?;
        Ok(Self {
            name: name.to_owned(),
            path,
            width,
            height,
            octx,
            enc_tb: video.time_base,
            frame_step: video.frame_step,
            encoder,
            video_ost,
            audio_ost,
            settings: settings.describe(),
            frames: 0,
            packet: Packet::empty(),
            scale: None,
            scaled: frame::Video::empty(),
        })
    }

    /// The rendition's name.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Scales and encodes a picture whose timestamp is in `tb` (it is left empty).
    pub(super) fn push_video(&mut self, frame: &mut frame::Video, tb: Rational) -> Result<()> {
        let picture = picture_of(frame);
        if self.scale.as_ref().is_none_or(|(p, _)| *p != picture) {
            self.flush_scale()?;
            let chain = scale_filters(self.width, self.height, is_full_range(frame));
            // One thread: every rendition already scales on a thread of its own, beside x264's
            // pool, so slice threads inside the scaler would only add hand-offs.
            let graph = Graph::video(picture, tb, sar_or_square(frame.aspect_ratio()), &chain, 1)?;
            self.scale = Some((picture, graph));
        }
        let (_, graph) = self.scale.as_mut().expect("built above");
        graph.push(frame).ctx("scaling a video frame")?;
        self.drain_scale()
    }

    /// Writes an AAC packet whose timestamps are in `enc_tb`; nothing when the rendition has no
    /// audio.
    pub(super) fn push_audio(&mut self, packet: &Packet, enc_tb: Rational) -> Result<()> {
        let Some(index) = self.audio_ost else {
            return Ok(());
        };
        let ost_tb = self.octx.stream(index).expect("stream exists").time_base();
        let mut p = packet.clone();
        p.set_stream(index);
        p.rescale_ts(enc_tb, ost_tb);
        p.write_interleaved(&mut self.octx)
            .ctx(format!("writing audio to {}", self.path.display()))
    }

    /// Encodes what the scaler and the encoder still hold and finishes the file.
    pub(super) fn finish(mut self) -> Result<RenditionOutput> {
        self.flush_scale()?;
        self.encode_video(None)?;
        self.octx
            .write_trailer()
            .ctx(format!("finishing {}", self.path.display()))?;
        let bytes = file_size(&self.path)?;
        Ok(RenditionOutput {
            name: self.name,
            path: self.path,
            width: self.width,
            height: self.height,
            frames: self.frames,
            bytes,
            settings: self.settings,
        })
    }

    fn drain_scale(&mut self) -> Result<()> {
        while let Some((_, graph)) = self.scale.as_mut() {
            if !graph.pull(&mut self.scaled).ctx("reading scaled video")? {
                break;
            }
            let pts = self.scaled.pts().map(|p| rescale(p, graph.sink_tb(), self.enc_tb));
            self.scaled.set_pts(pts);
            // Keyframes come from the ladder's GOP, not from the source's picture types.
            self.scaled.set_kind(picture::Type::None);
            let frame = std::mem::replace(&mut self.scaled, frame::Video::empty());
            let sent = self.encode_video(Some(&frame));
            self.scaled = frame;
            sent?;
        }
        Ok(())
    }

    fn flush_scale(&mut self) -> Result<()> {
        if let Some((_, graph)) = self.scale.as_mut() {
            graph.end_input().ctx("flushing the scaler")?;
            self.drain_scale()?;
        }
        Ok(())
    }

    fn encode_video(&mut self, frame: Option<&frame::Video>) -> Result<()> {
        match frame {
            Some(f) => self.encoder.send_frame(f).ctx("encoding video")?,
            None => self.encoder.send_eof().ctx("flushing the H.264 encoder")?,
        }
        while self.encoder.receive_packet(&mut self.packet).is_ok() {
            self.frames += 1;
            if self.packet.duration() <= 0 {
                // The muxer takes the last frame's length from its packet.
                self.packet.set_duration(self.frame_step);
            }
            let ost_tb = self.octx.stream(self.video_ost).expect("stream exists").time_base();
            self.packet.set_stream(self.video_ost);
            self.packet.rescale_ts(self.enc_tb, ost_tb);
            self.packet
                .write_interleaved(&mut self.octx)
                .ctx(format!("writing video to {}", self.path.display()))?;
        }
        Ok(())
    }
}

/// Small MP4 files written through a rendition muxer, as sources for the other stages' tests.
#[cfg(test)]
pub(super) mod sample {
    use std::path::Path;

    use super::*;
    use crate::ladder;
    use crate::pipeline::fixtures::picture;

    /// The colour tags of an SD (BT.601) stream.
    pub(in crate::pipeline) const SD: Colours = Colours {
        primaries: ffmpeg::color::Primaries::SMPTE170M,
        transfer: ffmpeg::color::TransferCharacteristic::SMPTE170M,
        space: ffmpeg::color::Space::SMPTE170M,
    };

    /// The time base of the samples: 25 frames per second, 512 units each.
    pub(in crate::pipeline) const TIME_BASE: Rational = Rational(1, 12_800);

    /// Writes `frames` pictures of `size` (the fixtures' pattern) at 25 fps, tagged `colours`, as
    /// an MP4 at `path`, with `audio` (the AAC encoder and its packets) when given.
    pub(in crate::pipeline) fn write_mp4(
        path: &Path,
        size: (u32, u32),
        frames: i64,
        colours: Colours,
        audio: Option<(&encoder::Audio, &[(Packet, Rational)])>,
    ) -> RenditionOutput {
        let input = VideoInput {
            time_base: TIME_BASE,
            frame_step: 512,
            colours,
        };
        let settings = VideoSettings::new(size.0.min(size.1), 25.0, ladder::DEFAULT_PRESET, ladder::DEFAULT_CRF);
        let mut mux = RenditionMux::create(
            "sample",
            path.to_owned(),
            size,
            &settings,
            &input,
            audio.map(|a| a.0),
            1,
        )
        .expect("create the sample");
        for n in 0..frames {
            let mut f = picture(size.0, size.1, ffmpeg::format::Pixel::YUV420P, n);
            f.set_pts(Some(n * 512));
            mux.push_video(&mut f, TIME_BASE).expect("encode the sample's video");
        }
        for (packet, tb) in audio.map_or(&[][..], |a| a.1) {
            mux.push_audio(packet, *tb).expect("mux the sample's audio");
        }
        mux.finish().expect("finish the sample")
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use ffmpeg::format::Pixel;
    use test_support::TempDir;

    use super::sample::{SD, TIME_BASE, write_mp4};
    use super::*;
    use crate::ladder;
    use crate::pipeline::audio::AacEncoder;
    use crate::pipeline::fixtures::{picture, tone};

    /// The kinds of an MP4's top-level boxes, in file order.
    fn top_level_boxes(path: &Path) -> Vec<String> {
        let bytes = std::fs::read(path).unwrap();
        let mut boxes = Vec::new();
        let mut at = 0;
        while at + 8 <= bytes.len() {
            let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            boxes.push(String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned());
            at += match size {
                0 => bytes.len() - at,
                1 => u64::from_be_bytes(bytes[at + 8..at + 16].try_into().unwrap()) as usize,
                n => n,
            };
        }
        boxes
    }

    /// One second of AAC packets, as the audio stage gives them.
    fn aac_second() -> (AacEncoder, Vec<(Packet, Rational)>) {
        let mut aac = AacEncoder::new(48_000).unwrap();
        let mut packets = Vec::new();
        let mut sink = |p: &Packet, tb| {
            packets.push((p.clone(), tb));
            Ok(())
        };
        for n in 0..48 {
            aac.push(&mut tone(48_000, 2, 1_000, n * 1_000), &mut sink).unwrap();
        }
        aac.finish(&mut sink).unwrap();
        (aac, packets)
    }

    /// A rendition of `size` made from `pictures` (each at its index, 25 fps), for `renditions`.
    fn mux(path: &Path, size: (u32, u32), pictures: &[frame::Video], renditions: usize) -> RenditionOutput {
        let input = VideoInput {
            time_base: TIME_BASE,
            frame_step: 512,
            colours: SD,
        };
        let settings = VideoSettings::new(size.0.min(size.1), 25.0, ladder::DEFAULT_PRESET, ladder::DEFAULT_CRF);
        let mut mux = RenditionMux::create("test", path.to_owned(), size, &settings, &input, None, renditions).unwrap();
        for (n, f) in pictures.iter().enumerate() {
            let mut f = f.clone();
            f.set_pts(Some(n as i64 * 512));
            mux.push_video(&mut f, TIME_BASE).unwrap();
        }
        mux.finish().unwrap()
    }

    /// The options x264 wrote into the stream (its SEI message), as `name=value` words.
    fn x264_options(path: &Path) -> Vec<String> {
        let bytes = std::fs::read(path).unwrap();
        let at = bytes
            .windows(9)
            .position(|w| w == b"options: ")
            .expect("x264 writes its options into the stream");
        let end = bytes[at..].iter().position(|&b| b == 0).unwrap();
        String::from_utf8_lossy(&bytes[at + 9..at + end])
            .split(' ')
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_index_comes_before_the_media() {
        let dir = TempDir::new("transcode-mux");
        let path = dir.join("faststart.mp4");
        write_mp4(&path, (64, 48), 10, SD, None);
        let boxes = top_level_boxes(&path);
        let moov = boxes.iter().position(|b| b == "moov").expect("a moov box");
        let mdat = boxes.iter().position(|b| b == "mdat").expect("an mdat box");
        assert_eq!(boxes[0], "ftyp", "{boxes:?}");
        assert!(moov < mdat, "{boxes:?}");
    }

    #[test]
    fn a_rendition_reopens_as_h264_of_its_size_with_the_shared_aac_audio() {
        let dir = TempDir::new("transcode-mux");
        let path = dir.join("av.mp4");
        let (aac, packets) = aac_second();
        let out = write_mp4(&path, (64, 48), 25, SD, Some((aac.encoder(), &packets)));
        assert_eq!(
            (out.name.as_str(), out.width, out.height, out.frames),
            ("sample", 64, 48, 25)
        );
        assert_eq!(out.bytes, std::fs::metadata(&path).unwrap().len());
        let info = crate::probe::probe(&path).unwrap();
        assert_eq!(info.stream_count, 2);
        let v = info.video.unwrap();
        assert_eq!((v.codec.as_str(), v.profile.as_deref()), ("h264", Some("High")));
        assert_eq!((v.width, v.height, v.sample_aspect_ratio), (64, 48, (1, 1)));
        assert_eq!(v.pixel_format.as_deref(), Some("yuv420p"));
        assert_eq!(v.color_range.as_deref(), Some("tv"));
        assert_eq!(v.color_primaries.as_deref(), Some("smpte170m"));
        assert_eq!(v.frames, Some(25));
        // The last frame keeps its length: 25 frames at 25 fps last one second.
        assert_eq!(v.duration_seconds, Some(1.0));
        let a = info.audio.unwrap();
        assert_eq!((a.codec.as_str(), a.sample_rate, a.channels), ("aac", 48_000, 2));
        assert!((a.duration_seconds.unwrap() - 1.0).abs() < 0.03, "{a:?}");
    }

    #[test]
    fn pictures_of_any_size_and_format_are_scaled_to_the_rendition_and_none_is_lost() {
        let dir = TempDir::new("transcode-mux");
        let path = dir.join("scaled.mp4");
        // The source changes size and format mid-way: the scaler is built anew, the rest flushed.
        let pictures: Vec<_> = (0..6)
            .map(|n| picture(128, 96, Pixel::YUV444P, n))
            .chain((6..12).map(|n| picture(96, 72, Pixel::YUVJ420P, n)))
            .collect();
        let out = mux(&path, (64, 48), &pictures, 1);
        assert_eq!(out.frames, 12);
        let v = crate::probe::probe(&path).unwrap().video.unwrap();
        assert_eq!((v.width, v.height, v.frames), (64, 48, Some(12)));
        assert_eq!(v.pixel_format.as_deref(), Some("yuv420p"));
    }

    #[test]
    fn x264_gets_the_ladder_settings() {
        let dir = TempDir::new("transcode-mux");
        let path = dir.join("x264.mp4");
        let pictures: Vec<_> = (0..3).map(|n| picture(64, 48, Pixel::YUV420P, n)).collect();
        let out = mux(&path, (64, 48), &pictures, 1);
        assert_eq!(
            out.settings,
            "libx264 preset=veryfast crf=23 profile=high \
             keyint=50:min-keyint=50:scenecut=0:open-gop=0:vbv-maxrate=1000:vbv-bufsize=2000"
        );
        let options = x264_options(&path);
        for want in [
            "keyint=50",
            "scenecut=0",
            "open_gop=0",
            "crf=23.0",
            "vbv_maxrate=1000",
            "vbv_bufsize=2000",
        ] {
            assert!(options.iter().any(|o| o == want), "no {want} in {options:?}");
        }
    }

    #[test]
    fn one_rendition_lets_x264_size_its_pool_and_a_ladder_gives_each_a_thread_per_core() {
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(x264_threads(1), "auto");
        assert_eq!(x264_threads(3), cores.to_string());
    }
}
