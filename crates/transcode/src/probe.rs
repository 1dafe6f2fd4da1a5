//! Probing: what a media file holds, read from its container without decoding.
//!
//! [`probe`] answers what a person (or the encoder's verification step) wants to know: the
//! container, the duration, the video stream that will be encoded (codec, stored and displayed
//! size, rotation, sample aspect ratio, frame rate, frame count, pixel format, colour, interlacing)
//! and the audio stream that will be kept. Cover art (an attached picture) is never taken for the
//! video stream.

use std::ffi::CStr;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use ffmpeg::ffi;
use ffmpeg::format::context::Input;
use ffmpeg::media::Type;
use ffmpeg_next as ffmpeg;
use serde::Serialize;

use crate::error::{Result, TranscodeError};
use crate::geometry::{Orientation, display_size};

/// What a file holds.
#[derive(Debug, Clone, Serialize)]
pub struct MediaInfo {
    /// The container format as FFmpeg names it (`mov,mp4,m4a,3gp,3g2,mj2`, `matroska,webm`, ...).
    pub format: String,
    /// The container's duration, in seconds, when it announces one.
    pub duration_seconds: Option<f64>,
    /// The video stream that would be encoded, if any.
    pub video: Option<VideoInfo>,
    /// The audio stream that would be kept, if any.
    pub audio: Option<AudioInfo>,
    /// How many streams the container has in all (video, audio, subtitles, data, cover art).
    pub stream_count: usize,
}

/// The video stream chosen for encoding.
#[derive(Debug, Clone, Serialize)]
pub struct VideoInfo {
    /// The stream's index in the container.
    pub index: usize,
    /// The codec (`h264`, `hevc`, `vp9`, ...).
    pub codec: String,
    /// The codec profile (`High`, `Main 10`, ...), when known.
    pub profile: Option<String>,
    /// Stored width, in pixels.
    pub width: u32,
    /// Stored height, in pixels.
    pub height: u32,
    /// The pixel format (`yuv420p`, `yuv420p10le`, ...), when known.
    pub pixel_format: Option<String>,
    /// Bits per sample of the pixel format.
    pub bit_depth: Option<u8>,
    /// Sample aspect ratio (pixel shape), `(0, 1)` when unknown.
    pub sample_aspect_ratio: (i32, i32),
    /// Rotation and reflection from the display matrix.
    #[serde(skip)]
    pub orientation: Orientation,
    /// The rotation in degrees as ffprobe prints it (counter-clockwise; phones write -90), 0 when
    /// none.
    pub rotation: i32,
    /// The displayed width after sample aspect ratio and rotation.
    pub display_width: f64,
    /// The displayed height after sample aspect ratio and rotation.
    pub display_height: f64,
    /// Average frames per second, 0 when unknown.
    pub frame_rate: f64,
    /// The frame count the container announces, when it does.
    pub frames: Option<u64>,
    /// The stream's duration, in seconds, when known.
    pub duration_seconds: Option<f64>,
    /// Whether the stream is flagged interlaced (field order other than progressive).
    pub interlaced: bool,
    /// Colour range (`tv`, `pc`), primaries, transfer and matrix, as FFmpeg names them.
    pub color_range: Option<String>,
    /// Colour primaries (`bt709`, `bt2020`, ...).
    pub color_primaries: Option<String>,
    /// Transfer characteristic (`bt709`, `smpte2084` for PQ, `arib-std-b67` for HLG, ...).
    pub color_transfer: Option<String>,
    /// Matrix coefficients (`bt709`, `bt2020nc`, ...).
    pub color_space: Option<String>,
}

impl VideoInfo {
    /// Whether the stream is HDR (PQ or HLG transfer).
    pub fn is_hdr(&self) -> bool {
        matches!(self.color_transfer.as_deref(), Some("smpte2084" | "arib-std-b67"))
    }
}

/// The audio stream chosen to be kept.
#[derive(Debug, Clone, Serialize)]
pub struct AudioInfo {
    /// The stream's index in the container.
    pub index: usize,
    /// The codec (`aac`, `mp3`, `opus`, ...).
    pub codec: String,
    /// The codec profile (`LC`, ...), when known.
    pub profile: Option<String>,
    /// Samples per second.
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u32,
    /// The stream's duration, in seconds, when known.
    pub duration_seconds: Option<f64>,
}

/// Makes sure FFmpeg is initialised and quiet; cheap to call again.
pub(crate) fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ffmpeg::init();
        // FFmpeg's own log lines would mix with ours; errors are reported through our results.
        ffmpeg::log::set_level(ffmpeg::log::Level::Fatal);
    });
}

/// Opens a file for reading, telling "not media" from "damaged media".
///
/// # Errors
///
/// [`TranscodeError::Io`] when the file cannot be read, [`TranscodeError::NotMedia`] when no
/// container format recognises it, [`TranscodeError::Unreadable`] when one does but its header
/// cannot be read.
pub(crate) fn open_input(path: &Path) -> Result<Input> {
    init();
    let io_err = |source| TranscodeError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut head = Vec::with_capacity(4096);
    File::open(path)
        .map_err(io_err)?
        .take(1 << 20)
        .read_to_end(&mut head)
        .map_err(io_err)?;
    match ffmpeg::format::input(path) {
        Ok(input) => Ok(input),
        Err(e) => match sniff_format(&head) {
            Some(format) => Err(TranscodeError::Unreadable {
                format,
                detail: e.to_string(),
            }),
            None => Err(TranscodeError::NotMedia),
        },
    }
}

/// The container format FFmpeg's probe recognises in the first bytes of a file, if any.
fn sniff_format(head: &[u8]) -> Option<String> {
    if head.is_empty() {
        return None;
    }
    // FFmpeg's probe reads past the buffer by up to AVPROBE_PADDING_SIZE zero bytes.
    let mut buf = head.to_vec();
    buf.extend_from_slice(&[0u8; 64]);
    let probe = ffi::AVProbeData {
        filename: c"".as_ptr(),
        buf: buf.as_mut_ptr(),
        buf_size: head.len() as i32,
        mime_type: std::ptr::null(),
    };
    let mut score = 0;
    // SAFETY: `probe` points into `buf`, which is padded and outlives the call.
    let format = unsafe { ffi::av_probe_input_format2(&probe, 1, &mut score) };
    if format.is_null() || score < ffi::AVPROBE_SCORE_EXTENSION {
        return None;
    }
    // SAFETY: a non-null input format has a static, NUL-terminated name.
    Some(unsafe { cstr((*format).name) }.unwrap_or_default())
}

/// Probes a file.
///
/// A file without video is not an error here (its [`MediaInfo::video`] is `None`): whether that
/// is acceptable is the caller's decision.
///
/// # Errors
///
/// [`TranscodeError::Io`] when the file cannot be read, [`TranscodeError::NotMedia`] when no
/// container format recognises it, [`TranscodeError::Unreadable`] when one does but its header
/// cannot be read.
pub fn probe(path: &Path) -> Result<MediaInfo> {
    let input = open_input(path)?;
    Ok(describe(&input))
}

/// Describes an opened input.
pub(crate) fn describe(input: &Input) -> MediaInfo {
    let duration = input.duration();
    let video = select_video_stream(input).map(|i| video_info(input, i));
    let audio = select_audio_stream(input).map(|i| audio_info(input, i));
    MediaInfo {
        format: input.format().name().to_owned(),
        duration_seconds: (duration > 0).then(|| duration as f64 / f64::from(ffi::AV_TIME_BASE)),
        video,
        audio,
        stream_count: input.streams().count(),
    }
}

/// The video stream to encode: not cover art, with a decoder-visible size, preferring the one with
/// the most frames (a motion photo holds a one-frame still beside its clip), then the default one.
pub(crate) fn select_video_stream(input: &Input) -> Option<usize> {
    input
        .streams()
        .filter(|s| s.parameters().medium() == Type::Video)
        .filter(|s| {
            !s.disposition()
                .contains(ffmpeg::format::stream::Disposition::ATTACHED_PIC)
        })
        .max_by_key(|s| {
            let frames = if s.frames() > 0 {
                s.frames()
            } else {
                (seconds(s.duration(), s.time_base()).unwrap_or(0.0) * rate(s.avg_frame_rate()).max(1.0)) as i64
            };
            let default = s.disposition().contains(ffmpeg::format::stream::Disposition::DEFAULT);
            (frames, default, std::cmp::Reverse(s.index()))
        })
        .map(|s| s.index())
}

/// The audio stream to keep: FFmpeg's choice of the best audio stream (the default track first).
pub(crate) fn select_audio_stream(input: &Input) -> Option<usize> {
    input.streams().best(Type::Audio).map(|s| s.index())
}

/// What the container says about one video stream.
pub(crate) fn video_info(input: &Input, index: usize) -> VideoInfo {
    let stream = input.stream(index).expect("index comes from this input");
    let params = stream.parameters();
    // SAFETY: the parameters belong to a live stream of `input`, borrowed for this function.
    let par = unsafe { &*params.as_ptr() };
    let stream_sar = stream_sar(&stream);
    let sar = if stream_sar.0 > 0 && stream_sar.1 > 0 {
        stream_sar
    } else {
        (par.sample_aspect_ratio.num, par.sample_aspect_ratio.den)
    };
    let orientation = Orientation::from_display_matrix(display_matrix(&stream));
    let (width, height) = (par.width.max(0) as u32, par.height.max(0) as u32);
    let (display_width, display_height) = display_size(width, height, sar, &orientation);
    let avg = rate(stream.avg_frame_rate());
    let frame_rate = if avg > 0.0 { avg } else { rate(stream.rate()) };
    let pix = (par.format >= 0).then(|| {
        ffmpeg::format::Pixel::from(unsafe {
            // SAFETY: `format` of a video stream's parameters is an AVPixelFormat value.
            std::mem::transmute::<i32, ffi::AVPixelFormat>(par.format)
        })
    });
    let descriptor = pix.and_then(|p| p.descriptor());
    VideoInfo {
        index,
        codec: params.id().name().to_owned(),
        profile: profile_name(par),
        width,
        height,
        pixel_format: descriptor.map(|d| d.name().to_owned()),
        // SAFETY: a pixel format descriptor has at least one component.
        bit_depth: descriptor.map(|d| unsafe { (*d.as_ptr()).comp[0].depth as u8 }),
        sample_aspect_ratio: sar,
        rotation: orientation.rotation_degrees,
        orientation,
        display_width,
        display_height,
        frame_rate,
        frames: (stream.frames() > 0).then(|| stream.frames() as u64),
        duration_seconds: seconds(stream.duration(), stream.time_base()),
        interlaced: !matches!(
            par.field_order,
            ffi::AVFieldOrder::AV_FIELD_PROGRESSIVE | ffi::AVFieldOrder::AV_FIELD_UNKNOWN
        ),
        // SAFETY: the name functions return static strings or null for unknown values.
        color_range: unsafe { cstr(ffi::av_color_range_name(par.color_range)) },
        color_primaries: unsafe { cstr(ffi::av_color_primaries_name(par.color_primaries)) },
        color_transfer: unsafe { cstr(ffi::av_color_transfer_name(par.color_trc)) },
        color_space: unsafe { cstr(ffi::av_color_space_name(par.color_space)) },
    }
    .without_unspecified_colour()
}

impl VideoInfo {
    fn without_unspecified_colour(mut self) -> Self {
        for field in [
            &mut self.color_range,
            &mut self.color_primaries,
            &mut self.color_transfer,
            &mut self.color_space,
        ] {
            if matches!(field.as_deref(), Some("unknown" | "unspecified" | "reserved")) {
                *field = None;
            }
        }
        self
    }
}

/// What the container says about one audio stream.
pub(crate) fn audio_info(input: &Input, index: usize) -> AudioInfo {
    let stream = input.stream(index).expect("index comes from this input");
    let params = stream.parameters();
    // SAFETY: as in `video_info`.
    let par = unsafe { &*params.as_ptr() };
    AudioInfo {
        index,
        codec: params.id().name().to_owned(),
        profile: profile_name(par),
        sample_rate: par.sample_rate.max(0) as u32,
        channels: par.ch_layout.nb_channels.max(0) as u32,
        duration_seconds: seconds(stream.duration(), stream.time_base()),
    }
}

fn profile_name(par: &ffi::AVCodecParameters) -> Option<String> {
    // SAFETY: returns a static string or null.
    unsafe { cstr(ffi::avcodec_profile_name(par.codec_id, par.profile)) }
}

fn stream_sar(stream: &ffmpeg::format::stream::Stream) -> (i32, i32) {
    // SAFETY: reading a plain field of a live stream.
    let r = unsafe { (*stream.as_ptr()).sample_aspect_ratio };
    (r.num, r.den)
}

/// The stream's display matrix side data, if it has one.
fn display_matrix(stream: &ffmpeg::format::stream::Stream) -> Option<[i32; 9]> {
    stream
        .side_data()
        .find(|sd| sd.kind() == ffmpeg::codec::packet::side_data::Type::DisplayMatrix)
        .and_then(|sd| {
            let data = sd.data();
            (data.len() >= 36).then(|| {
                std::array::from_fn(|i| i32::from_ne_bytes(data[i * 4..i * 4 + 4].try_into().expect("4 bytes")))
            })
        })
}

/// A duration in stream time-base units as seconds, `None` when unknown.
pub(crate) fn seconds(ts: i64, tb: ffmpeg::Rational) -> Option<f64> {
    (ts > 0 && ts != ffi::AV_NOPTS_VALUE && tb.denominator() != 0)
        .then(|| ts as f64 * f64::from(tb.numerator()) / f64::from(tb.denominator()))
}

/// A rational frame rate as a float, 0 when unknown.
pub(crate) fn rate(r: ffmpeg::Rational) -> f64 {
    if r.numerator() > 0 && r.denominator() > 0 {
        f64::from(r.numerator()) / f64::from(r.denominator())
    } else {
        0.0
    }
}

/// A C string as an owned `String`, `None` for null.
///
/// # Safety
///
/// `p` is null or points to a NUL-terminated string that lives for the call.
unsafe fn cstr(p: *const std::ffi::c_char) -> Option<String> {
    // SAFETY: guaranteed by the caller.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}
