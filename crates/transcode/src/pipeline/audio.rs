//! The audio stage: the source's audio decoded once, resampled and downmixed to stereo, encoded
//! once to AAC-LC ([`AacEncoder`]); every rendition gets the same packets.
//!
//! Audio damage is never fatal: a packet the decoder refuses is dropped, as players do.

use ffmpeg::codec::{self, Id};
use ffmpeg::format::context::Input;
use ffmpeg::util::channel_layout::ChannelLayout;
use ffmpeg::util::format::sample::{Sample, Type as SampleType};
use ffmpeg::{Dictionary, Packet, Rational, decoder, encoder, frame};
use ffmpeg_next as ffmpeg;

use super::graph::Graph;
use super::time::{rescale, start_offset};
use crate::error::{FfmpegContext, Result, TranscodeError};
use crate::ladder;

/// Where the encoded packets go, with their time base: to every rendition.
pub(crate) type PacketSink<'a> = dyn FnMut(&Packet, Rational) -> Result<()> + 'a;

/// Sample rates the AAC encoder accepts, up to 48 kHz.
const AAC_RATES: [u32; 9] = [8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000];

/// The rate the AAC encoder runs at for a source at `source` Hz: the same where AAC has it, up to
/// [`ladder::MAX_AUDIO_SAMPLE_RATE`], else that maximum.
pub(super) fn aac_rate(source: u32) -> u32 {
    match source {
        r if (8_000..=ladder::MAX_AUDIO_SAMPLE_RATE).contains(&r) && AAC_RATES.contains(&r) => r,
        _ => ladder::MAX_AUDIO_SAMPLE_RATE,
    }
}

/// The source's audio stream: its decoder, and the encoder its frames go to.
pub(crate) struct AudioPipe {
    /// The stream's index in the input.
    pub(crate) index: usize,
    decoder: decoder::Audio,
    stream_tb: Rational,
    /// The input's start time in stream units, subtracted so the output starts at zero.
    offset: i64,
    /// The first sample after the last frame, in samples: a frame never starts before it.
    next_pts: i64,
    decoded: frame::Audio,
    aac: AacEncoder,
}

impl AudioPipe {
    /// Opens the decoder of stream `index` and an AAC encoder for it.
    ///
    /// # Errors
    ///
    /// [`TranscodeError::UnsupportedCodec`] or [`TranscodeError::Undecodable`] when the stream
    /// cannot be decoded; a failure when the AAC encoder cannot be opened.
    pub(crate) fn open(ictx: &Input, index: usize, start_us: i64) -> Result<Self> {
        let stream = ictx.stream(index).expect("index comes from this input");
        let mut ctx =
            codec::context::Context::from_parameters(stream.parameters()).ctx("reading the audio parameters")?;
        // SAFETY: setting a plain field of a context we own, before it is opened.
        unsafe { (*ctx.as_mut_ptr()).pkt_timebase = stream.time_base().into() };
        let id = ctx.id();
        if decoder::find(id).is_none() {
            return Err(TranscodeError::UnsupportedCodec(format!("{} (audio)", id.name())));
        }
        let decoder = ctx.decoder().audio().map_err(|e| {
            TranscodeError::Undecodable(format!("the {} audio decoder cannot open the stream: {e}", id.name()))
        })?;
        let aac = AacEncoder::new(aac_rate(decoder.rate()))?;
        let stream_tb = stream.time_base();
        Ok(Self {
            index,
            decoder,
            stream_tb,
            offset: start_offset(start_us, stream_tb),
            next_pts: 0,
            decoded: frame::Audio::empty(),
            aac,
        })
    }

    /// The AAC encoder, whose parameters the renditions' audio streams take.
    pub(crate) fn encoder(&self) -> &encoder::Audio {
        self.aac.encoder()
    }

    /// Sends a packet (or, with `None`, the end of stream) and passes every AAC packet that comes
    /// out to `sink`; at the end, the encoder's last packets too.
    pub(crate) fn decode(&mut self, packet: Option<&Packet>, sink: &mut PacketSink) -> Result<()> {
        // Audio errors are not fatal: a damaged audio packet is dropped, as players do.
        let _ = match packet {
            Some(p) => self.decoder.send_packet(p),
            None => self.decoder.send_eof(),
        };
        while self.decoder.receive_frame(&mut self.decoded).is_ok() {
            self.on_frame(sink)?;
        }
        if packet.is_none() {
            self.aac.finish(sink)?;
        }
        Ok(())
    }

    /// Gives the decoded frame its place in samples from the start, never overlapping the last
    /// one, and encodes it.
    fn on_frame(&mut self, sink: &mut PacketSink) -> Result<()> {
        let rate = self.decoded.rate() as i32;
        if rate <= 0 || self.decoded.samples() == 0 {
            return Ok(());
        }
        let in_tb = Rational::new(1, rate);
        let pts = match self.decoded.timestamp().or(self.decoded.pts()) {
            Some(t) => rescale(t - self.offset, self.stream_tb, in_tb),
            None => self.next_pts,
        };
        let pts = pts.max(self.next_pts);
        self.next_pts = pts + self.decoded.samples() as i64;
        self.decoded.set_pts(Some(pts));
        self.aac.push(&mut self.decoded, sink)
    }
}

/// Resampling to stereo at the encoder's rate, then AAC-LC at [`ladder::AUDIO_BITRATE`].
pub(super) struct AacEncoder {
    encoder: encoder::Audio,
    /// Built for the first frame (its rate, format and channels).
    graph: Option<Graph>,
    filtered: frame::Audio,
    packet: Packet,
}

impl AacEncoder {
    /// An AAC-LC stereo encoder at `rate` Hz (one of [`AAC_RATES`]: see [`aac_rate`]).
    ///
    /// # Errors
    ///
    /// [`TranscodeError::Options`] when FFmpeg has no AAC encoder; a failure when it cannot open.
    pub(super) fn new(rate: u32) -> Result<Self> {
        let codec =
            encoder::find(Id::AAC).ok_or_else(|| TranscodeError::Options("FFmpeg has no AAC encoder".into()))?;
        let mut enc = codec::context::Context::new_with_codec(codec)
            .encoder()
            .audio()
            .ctx("creating the AAC encoder")?;
        enc.set_rate(rate as i32);
        enc.set_channel_layout(ChannelLayout::STEREO);
        enc.set_format(Sample::F32(SampleType::Planar));
        enc.set_bit_rate(ladder::AUDIO_BITRATE);
        enc.set_time_base(Rational::new(1, rate as i32));
        // MP4 keeps codec set-up data in its header, not in the stream.
        enc.set_flags(codec::Flags::GLOBAL_HEADER);
        let mut opts = Dictionary::new();
        opts.set("profile", "aac_low");
        let encoder = enc.open_as_with(codec, opts).ctx("opening the AAC encoder")?;
        Ok(Self {
            encoder,
            graph: None,
            filtered: frame::Audio::empty(),
            packet: Packet::empty(),
        })
    }

    /// The encoder, whose parameters an MP4 audio stream takes.
    pub(super) fn encoder(&self) -> &encoder::Audio {
        &self.encoder
    }

    /// Encodes `frame` (its timestamp in samples at its own rate; it is left empty), passing the
    /// packets ready to `sink`.
    pub(super) fn push(&mut self, frame: &mut frame::Audio, sink: &mut PacketSink) -> Result<()> {
        if self.graph.is_none() {
            self.graph = Some(Graph::audio(frame, self.encoder.rate(), self.encoder.frame_size())?);
        }
        let graph = self.graph.as_mut().expect("built above");
        graph.push(frame).ctx("filtering audio")?;
        self.drain(sink)
    }

    /// Encodes what the resampler still holds and what the encoder still holds, passing every
    /// packet to `sink`.
    pub(super) fn finish(&mut self, sink: &mut PacketSink) -> Result<()> {
        if let Some(graph) = self.graph.as_mut() {
            graph.end_input().ctx("flushing the audio filters")?;
            self.drain(sink)?;
        }
        self.encoder.send_eof().ctx("flushing the AAC encoder")?;
        write_packets(&mut self.encoder, &mut self.packet, sink)
    }

    fn drain(&mut self, sink: &mut PacketSink) -> Result<()> {
        let Some(graph) = self.graph.as_mut() else {
            return Ok(());
        };
        while graph.pull(&mut self.filtered).ctx("reading filtered audio")? {
            self.encoder.send_frame(&self.filtered).ctx("encoding audio")?;
            write_packets(&mut self.encoder, &mut self.packet, sink)?;
        }
        Ok(())
    }
}

/// Passes every packet `encoder` has ready to `sink`.
fn write_packets(encoder: &mut encoder::Audio, packet: &mut Packet, sink: &mut PacketSink) -> Result<()> {
    while encoder.receive_packet(packet).is_ok() {
        sink(packet, encoder.time_base())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use test_support::TempDir;

    use super::super::fixtures::{tone, write_wav};
    use super::*;

    /// The packets an encoder gave: timestamp, duration, time base.
    type Packets = Vec<(i64, i64, Rational)>;

    fn collect(packets: &mut Packets) -> impl FnMut(&Packet, Rational) -> Result<()> + '_ {
        |p, tb| {
            packets.push((p.pts().expect("AAC packets carry a timestamp"), p.duration(), tb));
            Ok(())
        }
    }

    /// Every packet follows the one before, one AAC frame (1 024 samples) later.
    fn assert_contiguous(packets: &Packets) {
        for pair in packets.windows(2) {
            assert_eq!(pair[1].0, pair[0].0 + pair[0].1, "{pair:?}");
            assert_eq!(pair[0].1, 1_024, "{pair:?}");
        }
    }

    /// The audio of a WAV file of `samples` at `rate` Hz on `channels` channels, through the pipe.
    fn through_the_pipe(rate: u32, channels: u16, samples: usize) -> (Packets, u32, u16) {
        let dir = TempDir::new("transcode-audio");
        let path = dir.join("tone.wav");
        write_wav(&path, rate, channels, samples);
        let mut ictx = crate::probe::open_input(&path).unwrap();
        let mut pipe = AudioPipe::open(&ictx, 0, 0).unwrap();
        let mut packets = Packets::new();
        let mut sink = collect(&mut packets);
        for (stream, packet) in ictx.packets() {
            assert_eq!(stream.index(), pipe.index);
            pipe.decode(Some(&packet), &mut sink).unwrap();
        }
        pipe.decode(None, &mut sink).unwrap();
        drop(sink);
        (packets, pipe.encoder().rate(), pipe.encoder().channels())
    }

    #[test]
    fn aac_keeps_the_source_rate_where_it_can_and_48_khz_elsewhere() {
        let kept = [8_000, 44_100, 48_000].map(|r| (r, r));
        let changed = [96_000, 7_350, 37_800, 0].map(|r| (r, 48_000));
        for (source, aac) in kept.into_iter().chain(changed) {
            assert_eq!(aac_rate(source), aac, "for {source} Hz");
        }
    }

    /// `samples` of a WAV file at `rate` Hz on `channels` channels through the pipe come out as
    /// stereo AAC at `aac_rate` Hz, every packet after the one before, covering every sample.
    fn assert_through_the_pipe(rate: u32, channels: u16, samples: usize, aac_rate: u32) {
        let (packets, got_rate, got_channels) = through_the_pipe(rate, channels, samples);
        assert_eq!((got_rate, got_channels), (aac_rate, 2));
        assert!(
            packets.iter().all(|p| p.2 == Rational::new(1, aac_rate as i32)),
            "{packets:?}"
        );
        assert_contiguous(&packets);
        // The encoder's priming (1 024 samples before zero), then enough frames for every sample
        // (and the resampler's few samples of delay).
        assert_eq!(packets[0].0, -1_024);
        let end = packets.last().map(|p| p.0 + p.1).unwrap();
        let resampled = (samples as u64 * u64::from(aac_rate) / u64::from(rate)) as i64;
        assert!(
            (resampled..resampled + 1_024 + 64).contains(&end),
            "the audio ends at {end}"
        );
    }

    #[test]
    fn a_mono_44_1_khz_file_becomes_stereo_aac_at_44_1_khz_covering_every_sample() {
        assert_through_the_pipe(44_100, 1, 10_000, 44_100);
    }

    #[test]
    fn a_96_khz_stereo_file_is_resampled_to_48_khz() {
        assert_through_the_pipe(96_000, 2, 19_200, 48_000);
    }

    #[test]
    fn the_encoder_takes_frames_of_any_size_and_gives_one_packet_per_1024_samples() {
        let mut aac = AacEncoder::new(48_000).unwrap();
        let mut packets = Packets::new();
        let mut sink = collect(&mut packets);
        for n in 0..5 {
            aac.push(&mut tone(48_000, 1, 700, n * 700), &mut sink).unwrap();
        }
        aac.finish(&mut sink).unwrap();
        drop(sink);
        assert_contiguous(&packets);
        // 3 500 samples and the priming: 4 416 samples, in 5 frames.
        assert_eq!(packets.len(), 5, "{packets:?}");
    }
}
