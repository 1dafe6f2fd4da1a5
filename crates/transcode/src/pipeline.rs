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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use ffmpeg::codec::{self, Id};
use ffmpeg::format::context::Output;
use ffmpeg::util::channel_layout::ChannelLayout;
use ffmpeg::util::format::sample::{Sample, Type as SampleType};
use ffmpeg::{Dictionary, Packet, Rational, decoder, encoder, filter, frame, picture};
use ffmpeg_next as ffmpeg;
use ffmpeg_next::ffi;
use serde::Serialize;

use crate::error::{FfmpegContext, Result, TranscodeError};
use crate::geometry::rendition_size;
use crate::ladder::{self, VideoSettings};
use crate::probe::{self, MediaInfo, VideoInfo};

/// One rendition to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionSpec {
    /// The file stem: the rendition is written to `{output_dir}/{name}.mp4`.
    pub name: String,
    /// The short side of the displayed picture, in pixels (never upscaled).
    pub short_side: u32,
}

/// Encoder settings shared by every rendition of a transcode.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscodeOptions {
    /// The x264 preset.
    pub preset: String,
    /// The x264 constant-quality target.
    pub crf: u8,
}

impl Default for TranscodeOptions {
    fn default() -> Self {
        Self {
            preset: ladder::DEFAULT_PRESET.to_owned(),
            crf: ladder::DEFAULT_CRF,
        }
    }
}

/// Where a transcode is, passed to the progress callback about twice a second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Video frames decoded so far.
    pub frames: u64,
    /// The position reached in the source, in seconds.
    pub position_seconds: f64,
    /// The source's duration, when known.
    pub duration_seconds: Option<f64>,
    /// Decoded frames per second of wall time, so far.
    pub fps: f64,
}

impl Progress {
    /// How far along, 0 to 100, when the duration is known.
    pub fn percent(&self) -> Option<f64> {
        self.duration_seconds
            .filter(|d| *d > 0.0)
            .map(|d| (self.position_seconds / d * 100.0).clamp(0.0, 100.0))
    }
}

/// Stops a running transcode from another thread. Clones share the same flag.
#[derive(Debug, Clone, Default)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    /// A handle that has not been cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the transcode to stop; it returns [`TranscodeError::Cancelled`] soon after.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// One finished rendition.
#[derive(Debug, Clone, Serialize)]
pub struct RenditionOutput {
    /// The spec's name.
    pub name: String,
    /// The MP4 file written.
    pub path: PathBuf,
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Video frames encoded.
    pub frames: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// The encoder settings, in words.
    pub settings: String,
}

/// What a successful transcode did.
#[derive(Debug, Clone, Serialize)]
pub struct TranscodeReport {
    /// The source as probed.
    pub source: MediaInfo,
    /// Video frames decoded from the source.
    pub frames_decoded: u64,
    /// Damaged frames (decode errors) tolerated by the policy.
    pub decode_errors: u64,
    /// The span of decoded video, in seconds.
    pub decoded_seconds: f64,
    /// Whether the renditions carry audio.
    pub has_audio: bool,
    /// Whether HDR was tone-mapped to SDR BT.709.
    pub tone_mapped: bool,
    /// Whether the source was deinterlaced.
    pub deinterlaced: bool,
    /// The renditions, in the order asked.
    pub outputs: Vec<RenditionOutput>,
    /// Wall-clock seconds of the whole transcode.
    pub elapsed_seconds: f64,
}

/// How many decode errors the damage policy tolerates for `frames` frames: a few at the start of a
/// stream cut mid-GOP (a broadcast capture), and up to 5% after that. More means the file is
/// broken, and publishing it would spread visible corruption.
pub fn tolerated_errors(frames: u64) -> u64 {
    (frames / 20).max(5)
}

/// The share of the announced frames (or duration) that must decode; less means the input ends
/// early (a cut-off upload).
pub const MIN_DECODED_SHARE: f64 = 0.9;

/// Transcodes `input` into one MP4 per rendition in `output_dir`, decoding the source once.
///
/// # Errors
///
/// A rejection ([`TranscodeError::is_rejection`]) when the input is not a usable video, with the
/// reason; [`TranscodeError::Cancelled`] when `cancel` was used; other variants for failures that
/// may be transient. On any error no output file is left behind.
pub fn transcode(
    input: &Path,
    renditions: &[RenditionSpec],
    output_dir: &Path,
    options: &TranscodeOptions,
    progress: &mut dyn FnMut(&Progress),
    cancel: &CancelHandle,
) -> Result<TranscodeReport> {
    if renditions.is_empty() {
        return Err(TranscodeError::Options("no rendition asked for".into()));
    }
    let started = Instant::now();
    let mut guard = OutputGuard::default();
    let report = run(
        input, renditions, output_dir, options, progress, cancel, &mut guard, started,
    )?;
    guard.keep();
    Ok(report)
}

/// Deletes the files it holds unless told to keep them.
#[derive(Default)]
struct OutputGuard {
    paths: Vec<PathBuf>,
    keep: bool,
}

impl OutputGuard {
    fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for OutputGuard {
    fn drop(&mut self) {
        if !self.keep {
            for p in &self.paths {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    input_path: &Path,
    renditions: &[RenditionSpec],
    output_dir: &Path,
    options: &TranscodeOptions,
    progress: &mut dyn FnMut(&Progress),
    cancel: &CancelHandle,
    guard: &mut OutputGuard,
    started: Instant,
) -> Result<TranscodeReport> {
    let mut ictx = probe::open_input(input_path)?;
    let info = probe::describe(&ictx);
    let Some(vinfo) = info.video.clone() else {
        return Err(no_video_reason(&ictx));
    };
    if vinfo.width == 0 || vinfo.height == 0 {
        return Err(TranscodeError::Undecodable(
            "the video stream declares no picture size".into(),
        ));
    }
    // SAFETY: reading a plain field of the open input.
    let start_us = match unsafe { (*ictx.as_ptr()).start_time } {
        t if t == ffi::AV_NOPTS_VALUE => 0,
        t => t,
    };

    let mut video = VideoPipe::open(&ictx, &vinfo, start_us, renditions.len())?;
    let mut audio = match &info.audio {
        Some(a) => Some(AudioPipe::open(&ictx, a.index, start_us)?),
        None => None,
    };

    let fps = if vinfo.frame_rate > 0.0 { vinfo.frame_rate } else { 30.0 };
    std::fs::create_dir_all(output_dir).map_err(|source| TranscodeError::Io {
        path: output_dir.display().to_string(),
        source,
    })?;
    let display = (vinfo.display_width, vinfo.display_height);
    let mut muxes = Vec::with_capacity(renditions.len());
    for spec in renditions {
        let (width, height) = rendition_size(display, spec.short_side);
        let settings = VideoSettings::new(width.min(height), fps, &options.preset, options.crf);
        let path = output_dir.join(format!("{}.mp4", spec.name));
        guard.paths.push(path.clone());
        muxes.push(RenditionMux::create(
            spec,
            path,
            (width, height),
            &settings,
            &video,
            audio.as_ref().map(|a| &a.encoder),
            renditions.len(),
        )?);
    }

    let mut outputs = Renditions::spawn(muxes)?;

    let duration = vinfo.duration_seconds.or(info.duration_seconds);
    let mut last_report = Instant::now();
    let mut read_errors = 0u32;
    loop {
        if cancel.is_cancelled() {
            return Err(TranscodeError::Cancelled);
        }
        // A fresh packet each time: reading into a used one would leak its data.
        let mut packet = Packet::empty();
        match packet.read(&mut ictx) {
            Ok(()) => read_errors = 0,
            Err(ffmpeg::Error::Eof) => break,
            Err(_) => {
                // A damaged or cut-off file: skip what cannot be read, stop if nothing more can be.
                read_errors += 1;
                if read_errors > 32 {
                    break;
                }
                continue;
            }
        }
        let index = packet.stream();
        if index == video.index {
            video.decode(Some(&packet), &mut outputs)?;
        } else if let Some(a) = audio.as_mut().filter(|a| a.index == index) {
            a.decode(Some(&packet), &mut outputs)?;
        }
        if last_report.elapsed() >= Duration::from_millis(500) {
            last_report = Instant::now();
            progress(&video.progress(duration, started));
        }
    }
    if cancel.is_cancelled() {
        return Err(TranscodeError::Cancelled);
    }
    video.decode(None, &mut outputs)?;
    if let Some(a) = audio.as_mut() {
        a.decode(None, &mut outputs)?;
    }
    check_complete(&video, &vinfo, info.duration_seconds)?;
    progress(&video.progress(duration, started));

    let results = outputs.finish()?;
    Ok(TranscodeReport {
        source: info,
        frames_decoded: video.frames,
        decode_errors: video.errors,
        decoded_seconds: video.decoded_span(),
        has_audio: audio.is_some(),
        tone_mapped: video.tone_mapped,
        deinterlaced: video.deinterlaced,
        outputs: results,
        elapsed_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The rejection for a file with no usable video stream, saying what it holds instead.
fn no_video_reason(ictx: &ffmpeg::format::context::Input) -> TranscodeError {
    let has = |t| ictx.streams().any(|s| s.parameters().medium() == t);
    let cover_art = ictx.streams().any(|s| {
        s.disposition()
            .contains(ffmpeg::format::stream::Disposition::ATTACHED_PIC)
    });
    TranscodeError::NoVideo(if cover_art {
        "no video stream: the only picture is cover art (an attached picture), so this is an audio file"
    } else if has(ffmpeg::media::Type::Audio) {
        "no video stream: this is an audio-only file"
    } else {
        "no video stream in the file"
    })
}

/// Rejects an input whose decode ended early or was too damaged (see [`tolerated_errors`] and
/// [`MIN_DECODED_SHARE`]).
fn check_complete(video: &VideoPipe, info: &VideoInfo, container_seconds: Option<f64>) -> Result<()> {
    if video.frames == 0 {
        return Err(TranscodeError::Undecodable(format!(
            "no frame could be decoded ({} decode errors)",
            video.errors
        )));
    }
    if let Some(announced) = info.frames {
        if (video.frames as f64) < announced as f64 * MIN_DECODED_SHARE {
            return Err(TranscodeError::Truncated(format!(
                "{} of {} announced frames decoded ({:.2} s of {:.2} s)",
                video.frames,
                announced,
                video.decoded_span(),
                info.duration_seconds.or(container_seconds).unwrap_or(0.0)
            )));
        }
    } else if let Some(announced) = info.duration_seconds.or(container_seconds) {
        let end = video.decoded_end();
        if end < announced * MIN_DECODED_SHARE && announced - end > 0.5 {
            return Err(TranscodeError::Truncated(format!(
                "the video stops at {end:.2} s of the {announced:.2} s announced ({} frames decoded)",
                video.frames
            )));
        }
    }
    let allowed = tolerated_errors(video.frames);
    if video.errors > allowed {
        return Err(TranscodeError::Damaged {
            errors: video.errors,
            decoded: video.frames,
            allowed,
        });
    }
    Ok(())
}

/// Decoding and filtering of the video stream, feeding every rendition's encoder.
struct VideoPipe {
    index: usize,
    decoder: decoder::Video,
    stream_tb: Rational,
    /// The input's start time in stream units, subtracted so outputs start at zero.
    offset: i64,
    sar: Rational,
    /// The filters shared by every rendition: deinterlace, orientation, tone mapping.
    pre_filters: Vec<String>,
    tone_mapped: bool,
    deinterlaced: bool,
    graph: Option<Graph>,
    frames: u64,
    errors: u64,
    first_pts: Option<i64>,
    last_pts: Option<i64>,
    /// A frame's nominal duration in stream units, for frames without a timestamp.
    frame_step: i64,
    decoded: frame::Video,
    filtered: frame::Video,
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

/// A configured filter graph and the input it was built for.
struct Graph {
    graph: filter::Graph,
    key: (u32, u32, ffmpeg::format::Pixel),
    sink_tb: Rational,
}

impl Graph {
    /// Hands a picture to the graph's source `in`.
    fn push(&mut self, frame: &frame::Video) -> std::result::Result<(), ffmpeg::Error> {
        self.graph
            .get("in")
            .expect("the graph has its source")
            .source()
            .add(frame)
    }

    /// Tells the graph's source that no picture follows, so the filters give back what they hold.
    fn end_input(&mut self) -> std::result::Result<(), ffmpeg::Error> {
        self.graph.get("in").expect("the graph has its source").source().flush()
    }
}

impl VideoPipe {
    fn open(ictx: &ffmpeg::format::context::Input, info: &VideoInfo, start_us: i64, renditions: usize) -> Result<Self> {
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
        let sar = match info.sample_aspect_ratio {
            (n, d) if n > 0 && d > 0 => Rational::new(n, d),
            _ => Rational::new(1, 1),
        };
        let mut pre_filters = Vec::new();
        if info.interlaced {
            pre_filters.push("bwdif=mode=send_frame:parity=auto:deint=interlaced".to_owned());
        }
        if let Some(f) = info.orientation.filters() {
            pre_filters.push(f);
        }
        let tone_mapped = info.is_hdr() && filter::find("zscale").is_some() && filter::find("tonemap").is_some();
        if tone_mapped {
            pre_filters.push(tone_map_filters(info));
        }
        let fps = if info.frame_rate > 0.0 { info.frame_rate } else { 30.0 };
        let step =
            (f64::from(stream_tb.denominator()) / (fps * f64::from(stream_tb.numerator().max(1)))).round() as i64;
        Ok(Self {
            index: info.index,
            decoder,
            stream_tb,
            offset: rescale(start_us, Rational::new(1, ffi::AV_TIME_BASE), stream_tb),
            sar,
            deinterlaced: info.interlaced,
            pre_filters,
            tone_mapped,
            graph: None,
            frames: 0,
            errors: 0,
            first_pts: None,
            last_pts: None,
            frame_step: step.max(1),
            decoded: frame::Video::empty(),
            filtered: frame::Video::empty(),
        })
    }

    /// Sends a packet (or, with `None`, the end of stream) and passes every frame that comes out,
    /// through the shared filters, to every rendition.
    fn decode(&mut self, packet: Option<&Packet>, outputs: &mut Renditions) -> Result<()> {
        let sent = match packet {
            Some(p) => self.decoder.send_packet(p),
            None => self.decoder.send_eof(),
        };
        if sent.is_err() && packet.is_some() {
            self.errors += 1;
        }
        loop {
            match self.decoder.receive_frame(&mut self.decoded) {
                Ok(()) => self.on_frame(outputs)?,
                Err(ffmpeg::Error::Eof) => break,
                Err(ffmpeg::Error::Other { errno }) if errno == ffi::EAGAIN => break,
                Err(_) => {
                    self.errors += 1;
                    break;
                }
            }
        }
        if packet.is_none() {
            self.flush_graph(outputs)?;
        }
        Ok(())
    }

    fn on_frame(&mut self, outputs: &mut Renditions) -> Result<()> {
        self.frames += 1;
        // A frame the decoder had to conceal damage in counts as a decode error too.
        // SAFETY: reading plain fields of a frame the decoder just filled.
        let (error_flags, flags) = unsafe {
            (
                (*self.decoded.as_ptr()).decode_error_flags,
                (*self.decoded.as_ptr()).flags,
            )
        };
        if error_flags != 0 || flags & ffi::AV_FRAME_FLAG_CORRUPT != 0 {
            self.errors += 1;
        }
        let pts = match self.decoded.timestamp().or(self.decoded.pts()) {
            Some(t) => t - self.offset,
            None => self.last_pts.map_or(0, |p| p + self.frame_step),
        };
        // Encoders need strictly increasing timestamps; a variable-frame-rate or damaged source
        // may repeat one.
        let pts = match self.last_pts {
            Some(last) if pts <= last => last + 1,
            _ => pts,
        };
        self.first_pts.get_or_insert(pts);
        self.last_pts = Some(pts);
        self.decoded.set_pts(Some(pts));

        if self.pre_filters.is_empty() {
            return outputs.send_video(&self.decoded, self.stream_tb);
        }
        let key = (self.decoded.width(), self.decoded.height(), self.decoded.format());
        if self.graph.as_ref().is_none_or(|g| g.key != key) {
            // The picture changed size or format mid-stream: drain the old graph, build anew.
            self.flush_graph(outputs)?;
            self.graph = Some(self.build_graph(key)?);
        }
        let graph = self.graph.as_mut().expect("built above");
        graph.push(&self.decoded).ctx("filtering a video frame")?;
        self.drain_graph(outputs)
    }

    /// The shared filters (deinterlace, turn upright, tone-map), once for every rendition.
    fn build_graph(&self, key: (u32, u32, ffmpeg::format::Pixel)) -> Result<Graph> {
        let (w, h, pix) = key;
        let spec = format!("[in]{}[out]", self.pre_filters.join(","));
        let graph = simple_graph(&video_buffer_args(w, h, pix, self.stream_tb, self.sar), &spec, 0)?;
        let sink_tb = graph.sink_tb;
        Ok(Graph {
            graph: graph.graph,
            key,
            sink_tb,
        })
    }

    fn drain_graph(&mut self, outputs: &mut Renditions) -> Result<()> {
        let Some(graph) = self.graph.as_mut() else {
            return Ok(());
        };
        let mut sink = graph.graph.get("out").expect("sink exists");
        loop {
            match sink.sink().frame(&mut self.filtered) {
                Ok(()) => outputs.send_video(&self.filtered, graph.sink_tb)?,
                Err(ffmpeg::Error::Eof) => break,
                Err(ffmpeg::Error::Other { errno }) if errno == ffi::EAGAIN => break,
                Err(e) => return Err(e).ctx("reading filtered video"),
            }
        }
        Ok(())
    }

    fn flush_graph(&mut self, outputs: &mut Renditions) -> Result<()> {
        if let Some(graph) = self.graph.as_mut() {
            graph.end_input().ctx("flushing the video filters")?;
            self.drain_graph(outputs)?;
        }
        Ok(())
    }

    fn decoded_span(&self) -> f64 {
        match (self.first_pts, self.last_pts) {
            (Some(first), Some(last)) => ts_seconds(last - first + self.frame_step, self.stream_tb),
            _ => 0.0,
        }
    }

    fn decoded_end(&self) -> f64 {
        self.last_pts
            .map_or(0.0, |last| ts_seconds(last + self.frame_step, self.stream_tb))
    }

    fn progress(&self, duration: Option<f64>, started: Instant) -> Progress {
        let elapsed = started.elapsed().as_secs_f64().max(1e-6);
        Progress {
            frames: self.frames,
            position_seconds: self.last_pts.map_or(0.0, |p| ts_seconds(p, self.stream_tb)),
            duration_seconds: duration,
            fps: self.frames as f64 / elapsed,
        }
    }
}

/// zscale/tonemap filters that turn PQ or HLG BT.2020 into SDR BT.709 (Hable curve).
fn tone_map_filters(info: &VideoInfo) -> String {
    let tin = info.color_transfer.as_deref().unwrap_or("smpte2084");
    let pin = info.color_primaries.as_deref().unwrap_or("bt2020");
    let min = match info.color_space.as_deref() {
        Some("bt2020c") => "2020_cl",
        _ => "2020_ncl",
    };
    let rin = match info.color_range.as_deref() {
        Some("pc") => "full",
        _ => "limited",
    };
    format!(
        "zscale=tin={tin}:pin={pin}:min={min}:rin={rin}:t=linear:npl=100,format=gbrpf32le,\
         zscale=p=bt709,tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv,format=yuv420p"
    )
}

/// Audio: decoded once, resampled and downmixed to stereo, encoded once to AAC-LC; every
/// rendition gets the same packets.
struct AudioPipe {
    index: usize,
    decoder: decoder::Audio,
    graph: Option<filter::Graph>,
    encoder: encoder::Audio,
    stream_tb: Rational,
    offset: i64,
    next_pts: i64,
    decoded: frame::Audio,
    filtered: frame::Audio,
    packet: Packet,
}

impl AudioPipe {
    fn open(ictx: &ffmpeg::format::context::Input, index: usize, start_us: i64) -> Result<Self> {
        let stream = ictx.stream(index).expect("index comes from this input");
        let mut ctx =
            codec::context::Context::from_parameters(stream.parameters()).ctx("reading the audio parameters")?;
        // SAFETY: as for video.
        unsafe { (*ctx.as_mut_ptr()).pkt_timebase = stream.time_base().into() };
        let id = ctx.id();
        if decoder::find(id).is_none() {
            return Err(TranscodeError::UnsupportedCodec(format!("{} (audio)", id.name())));
        }
        let decoder = ctx.decoder().audio().map_err(|e| {
            TranscodeError::Undecodable(format!("the {} audio decoder cannot open the stream: {e}", id.name()))
        })?;
        let rate = match decoder.rate() {
            r if (8_000..=ladder::MAX_AUDIO_SAMPLE_RATE).contains(&r) && AAC_RATES.contains(&r) => r,
            _ => ladder::MAX_AUDIO_SAMPLE_RATE,
        };
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
        let stream_tb = stream.time_base();
        Ok(Self {
            index,
            decoder,
            graph: None,
            encoder,
            stream_tb,
            offset: rescale(start_us, Rational::new(1, ffi::AV_TIME_BASE), stream_tb),
            next_pts: 0,
            decoded: frame::Audio::empty(),
            filtered: frame::Audio::empty(),
            packet: Packet::empty(),
        })
    }

    fn decode(&mut self, packet: Option<&Packet>, outputs: &mut Renditions) -> Result<()> {
        // Audio errors are not fatal: a damaged audio packet is dropped, as players do.
        let _ = match packet {
            Some(p) => self.decoder.send_packet(p),
            None => self.decoder.send_eof(),
        };
        while self.decoder.receive_frame(&mut self.decoded).is_ok() {
            self.on_frame(outputs)?;
        }
        if packet.is_none() {
            if let Some(graph) = self.graph.as_mut() {
                graph
                    .get("in")
                    .expect("source exists")
                    .source()
                    .flush()
                    .ctx("flushing the audio filters")?;
                self.drain_graph(outputs)?;
            }
            self.encoder.send_eof().ctx("flushing the AAC encoder")?;
            write_audio_packets(&mut self.encoder, &mut self.packet, outputs)?;
        }
        Ok(())
    }

    fn on_frame(&mut self, outputs: &mut Renditions) -> Result<()> {
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
        if self.graph.is_none() {
            self.graph = Some(self.build_graph(rate)?);
        }
        let graph = self.graph.as_mut().expect("built above");
        graph
            .get("in")
            .expect("source exists")
            .source()
            .add(&self.decoded)
            .ctx("filtering audio")?;
        self.drain_graph(outputs)
    }

    fn build_graph(&self, in_rate: i32) -> Result<filter::Graph> {
        let layout = match self.decoded.channel_layout() {
            l if l.bits() != 0 && l.channels() == i32::from(self.decoded.channels()) => l,
            _ => ChannelLayout::default(i32::from(self.decoded.channels())),
        };
        let args = format!(
            "time_base=1/{in_rate}:sample_rate={in_rate}:sample_fmt={}:channel_layout=0x{:x}",
            self.decoded.format().name(),
            layout.bits()
        );
        let mut graph = filter::Graph::new();
        graph
            .add(&filter::find("abuffer").expect("libavfilter has abuffer"), "in", &args)
            .ctx("creating the audio filter source")?;
        graph
            .add(
                &filter::find("abuffersink").expect("libavfilter has abuffersink"),
                "out",
                "",
            )
            .ctx("creating the audio filter sink")?;
        let spec = format!(
            "[in]aresample={},aformat=sample_fmts=fltp:channel_layouts=stereo[out]",
            self.encoder.rate()
        );
        graph
            .output("in", 0)
            .and_then(|p| p.input("out", 0))
            .and_then(|p| p.parse(&spec))
            .ctx("parsing the audio filters")?;
        graph.validate().ctx("configuring the audio filters")?;
        graph
            .get("out")
            .expect("sink exists")
            .sink()
            .set_frame_size(self.encoder.frame_size());
        Ok(graph)
    }

    fn drain_graph(&mut self, outputs: &mut Renditions) -> Result<()> {
        let Some(graph) = self.graph.as_mut() else {
            return Ok(());
        };
        loop {
            match graph.get("out").expect("sink exists").sink().frame(&mut self.filtered) {
                Ok(()) => {
                    self.encoder.send_frame(&self.filtered).ctx("encoding audio")?;
                    write_audio_packets(&mut self.encoder, &mut self.packet, outputs)?;
                }
                Err(ffmpeg::Error::Eof) => break,
                Err(ffmpeg::Error::Other { errno }) if errno == ffi::EAGAIN => break,
                Err(e) => return Err(e).ctx("reading filtered audio"),
            }
        }
        Ok(())
    }
}

/// Passes every packet the AAC encoder has ready to every rendition.
fn write_audio_packets(encoder: &mut encoder::Audio, packet: &mut Packet, outputs: &mut Renditions) -> Result<()> {
    while encoder.receive_packet(packet).is_ok() {
        outputs.send_audio(packet, encoder.time_base())?;
    }
    Ok(())
}

/// Sample rates the AAC encoder accepts, up to 48 kHz.
const AAC_RATES: [u32; 9] = [8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000];

/// One rendition: its encoder and its MP4 muxer.
struct RenditionMux {
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
    /// Scales the shared frames to this rendition's size; built for the first frame's format.
    scale: Option<Graph>,
    scaled: frame::Video,
}

impl RenditionMux {
    fn create(
        spec: &RenditionSpec,
        path: PathBuf,
        (width, height): (u32, u32),
        settings: &VideoSettings,
        video: &VideoPipe,
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
        enc.set_time_base(video.stream_tb);
        enc.set_aspect_ratio(Rational::new(1, 1));
        let fps = Rational::from(1.0 / ts_seconds(video.frame_step, video.stream_tb));
        enc.set_frame_rate(Some(fps));
        enc.set_color_range(ffmpeg::color::Range::MPEG);
        if video.tone_mapped {
            enc.set_color_primaries(ffmpeg::color::Primaries::BT709);
            enc.set_color_transfer_characteristic(ffmpeg::color::TransferCharacteristic::BT709);
            enc.set_colorspace(ffmpeg::color::Space::BT709);
        } else {
            enc.set_color_primaries(video.decoder.color_primaries());
            enc.set_color_transfer_characteristic(video.decoder.color_transfer_characteristic());
            enc.set_colorspace(video.decoder.color_space());
        }
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
        ost.set_time_base(video.stream_tb);
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
            name: spec.name.clone(),
            path,
            width,
            height,
            octx,
            enc_tb: video.stream_tb,
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

    /// The worker's loop, on its own thread: scale and encode every frame, write every audio
    /// packet, until the end (then finish the file) or until the sender goes away (then stop).
    fn run(mut self, rx: mpsc::Receiver<Msg>) -> Result<RenditionOutput> {
        for msg in rx {
            match msg {
                Msg::Video(frame, tb) => self.on_frame(&frame, tb)?,
                Msg::Audio(packet, tb) => self.write_audio(&packet, tb)?,
                Msg::End => {
                    self.flush_scale()?;
                    self.encode_video(None)?;
                    return self.finish();
                }
            }
        }
        Err(TranscodeError::Cancelled)
    }

    fn on_frame(&mut self, frame: &frame::Video, tb: Rational) -> Result<()> {
        let key = (frame.width(), frame.height(), frame.format());
        if self.scale.as_ref().is_none_or(|g| g.key != key) {
            self.flush_scale()?;
            let sar = match frame.aspect_ratio() {
                r if r.numerator() > 0 && r.denominator() > 0 => r,
                _ => Rational::new(1, 1),
            };
            // Full range becomes limited; a limited (or unmarked) source is left as it is, so the
            // scaler can pass a picture of the right size and format through untouched.
            let full_range = frame.color_range() == ffmpeg::color::Range::JPEG
                || matches!(
                    frame.format(),
                    ffmpeg::format::Pixel::YUVJ420P | ffmpeg::format::Pixel::YUVJ422P | ffmpeg::format::Pixel::YUVJ444P
                );
            let range = if full_range { ":out_range=tv" } else { "" };
            let spec = format!(
                "[in]scale=w={}:h={}{range}:flags=bicubic,format=yuv420p,setsar=1[out]",
                self.width, self.height
            );
            // One thread: every rendition already scales on a thread of its own, beside x264's
            // pool, so slice threads inside the scaler would only add hand-offs.
            let g = simple_graph(&video_buffer_args(key.0, key.1, key.2, tb, sar), &spec, 1)?;
            self.scale = Some(Graph {
                graph: g.graph,
                key,
                sink_tb: g.sink_tb,
            });
        }
        let graph = self.scale.as_mut().expect("built above");
        graph.push(frame).ctx("scaling a video frame")?;
        self.drain_scale()
    }

    fn drain_scale(&mut self) -> Result<()> {
        loop {
            let Some(graph) = self.scale.as_mut() else {
                return Ok(());
            };
            let sink_tb = graph.sink_tb;
            match graph
                .graph
                .get("out")
                .expect("sink exists")
                .sink()
                .frame(&mut self.scaled)
            {
                Ok(()) => {
                    let pts = self.scaled.pts().map(|p| rescale(p, sink_tb, self.enc_tb));
                    self.scaled.set_pts(pts);
                    // Keyframes come from the ladder's GOP, not from the source's picture types.
                    self.scaled.set_kind(picture::Type::None);
                    let frame = std::mem::replace(&mut self.scaled, frame::Video::empty());
                    let sent = self.encode_video(Some(&frame));
                    self.scaled = frame;
                    sent?;
                }
                Err(ffmpeg::Error::Eof) => return Ok(()),
                Err(ffmpeg::Error::Other { errno }) if errno == ffi::EAGAIN => return Ok(()),
                Err(e) => return Err(e).ctx("reading scaled video"),
            }
        }
    }

    fn flush_scale(&mut self) -> Result<()> {
        if let Some(graph) = self.scale.as_mut() {
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

    fn write_audio(&mut self, packet: &Packet, enc_tb: Rational) -> Result<()> {
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

    fn finish(mut self) -> Result<RenditionOutput> {
        self.octx
            .write_trailer()
            .ctx(format!("finishing {}", self.path.display()))?;
        let bytes = std::fs::metadata(&self.path)
            .map_err(|source| TranscodeError::Io {
                path: self.path.display().to_string(),
                source,
            })?
            .len();
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
}

/// x264's `threads` for one of `renditions` encoders running side by side.
fn x264_threads(renditions: usize) -> String {
    if renditions <= 1 {
        return "auto".into();
    }
    std::thread::available_parallelism().map_or(2, |n| n.get()).to_string()
}

/// What the decoding thread sends each rendition's worker.
enum Msg {
    /// A picture (a new reference to the shared frame) and its time base.
    Video(frame::Video, Rational),
    /// An AAC packet (shared by every rendition) and its time base.
    Audio(Packet, Rational),
    /// Everything was sent: finish the file.
    End,
}

/// Frames in flight to each worker: enough to keep it busy, few enough to bound memory.
const WORKER_QUEUE: usize = 16;

/// The renditions, each scaled, encoded and muxed on a thread of its own, so that the scalers
/// and the encoders of a ladder run in parallel while the source is decoded once.
struct Renditions {
    workers: Vec<(mpsc::SyncSender<Msg>, std::thread::JoinHandle<Result<RenditionOutput>>)>,
}

impl Renditions {
    fn spawn(muxes: Vec<RenditionMux>) -> Result<Self> {
        let mut workers = Vec::with_capacity(muxes.len());
        for mux in muxes {
            let (tx, rx) = mpsc::sync_channel(WORKER_QUEUE);
            let handle = std::thread::Builder::new()
                .name(format!("rendition-{}", mux.name))
                .spawn(move || mux.run(rx))
                .map_err(|source| TranscodeError::Io {
                    path: "a rendition thread".into(),
                    source,
                })?;
            workers.push((tx, handle));
        }
        Ok(Self { workers })
    }

    fn send_video(&mut self, frame: &frame::Video, tb: Rational) -> Result<()> {
        for i in 0..self.workers.len() {
            let mut shared = frame::Video::empty();
            // SAFETY: a new reference to the same buffers; both frames are valid.
            let r = unsafe { ffi::av_frame_ref(shared.as_mut_ptr(), frame.as_ptr()) };
            if r < 0 {
                return Err(ffmpeg::Error::from(r)).ctx("sharing a frame with a rendition");
            }
            self.send(i, Msg::Video(shared, tb))?;
        }
        Ok(())
    }

    fn send_audio(&mut self, packet: &Packet, tb: Rational) -> Result<()> {
        for i in 0..self.workers.len() {
            self.send(i, Msg::Audio(packet.clone(), tb))?;
        }
        Ok(())
    }

    fn send(&mut self, i: usize, msg: Msg) -> Result<()> {
        if self.workers[i].0.send(msg).is_ok() {
            return Ok(());
        }
        // The worker stopped on an error of its own: that error is the one to report.
        let (_, handle) = self.workers.remove(i);
        Err(match handle.join() {
            Ok(Err(e)) => e,
            _ => TranscodeError::Options("a rendition worker stopped unexpectedly".into()),
        })
    }

    /// Tells every worker that all was sent and collects the finished renditions, in order.
    fn finish(mut self) -> Result<Vec<RenditionOutput>> {
        let workers = std::mem::take(&mut self.workers);
        let mut results = Vec::with_capacity(workers.len());
        let mut first_error = None;
        for (tx, handle) in workers {
            let _ = tx.send(Msg::End);
            drop(tx);
            match handle.join() {
                Ok(Ok(out)) => results.push(out),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(TranscodeError::Options("a rendition worker panicked".into()));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(results),
        }
    }
}

impl Drop for Renditions {
    /// Stops the workers that are still running (their channel closes) and waits for them, so no
    /// thread outlives the transcode and every file is closed before the partial ones are removed.
    fn drop(&mut self) {
        for (tx, handle) in self.workers.drain(..) {
            drop(tx);
            let _ = handle.join();
        }
    }
}

/// A graph with one video source `in` and one sink `out` around `spec`, its filters running on
/// `threads` slice threads (0: one per core).
struct SimpleGraph {
    graph: filter::Graph,
    sink_tb: Rational,
}

fn video_buffer_args(w: u32, h: u32, pix: ffmpeg::format::Pixel, tb: Rational, sar: Rational) -> String {
    format!(
        "video_size={w}x{h}:pix_fmt={}:time_base={}/{}:pixel_aspect={}/{}",
        ffi::AVPixelFormat::from(pix) as i32,
        tb.numerator(),
        tb.denominator(),
        sar.numerator(),
        sar.denominator(),
    )
}

fn simple_graph(buffer_args: &str, spec: &str, threads: i32) -> Result<SimpleGraph> {
    let mut graph = filter::Graph::new();
    // SAFETY: a plain field of the graph we own, set before any filter is added (libavfilter reads
    // it when the first one is).
    unsafe { (*graph.as_mut_ptr()).nb_threads = threads };
    graph
        .add(
            &filter::find("buffer").expect("libavfilter has buffer"),
            "in",
            buffer_args,
        )
        .ctx("creating a video filter source")?;
    graph
        .add(
            &filter::find("buffersink").expect("libavfilter has buffersink"),
            "out",
            "",
        )
        .ctx("creating a video filter sink")?;
    graph
        .output("in", 0)
        .and_then(|p| p.input("out", 0))
        .and_then(|p| p.parse(spec))
        .ctx(format!("parsing the video filters {spec:?}"))?;
    graph
        .validate()
        .ctx(format!("configuring the video filters {spec:?}"))?;
    let sink_tb = graph.get("out").expect("sink exists").sink().time_base();
    Ok(SimpleGraph { graph, sink_tb })
}

fn rescale(ts: i64, from: Rational, to: Rational) -> i64 {
    // SAFETY: pure arithmetic.
    unsafe { ffi::av_rescale_q(ts, from.into(), to.into()) }
}

fn ts_seconds(ts: i64, tb: Rational) -> f64 {
    ts as f64 * f64::from(tb.numerator()) / f64::from(tb.denominator())
}
