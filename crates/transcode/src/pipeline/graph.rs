//! The filter graphs (libavfilter) of the pipeline, and the filter chains they run.
//!
//! - The *shared* filters ([`shared_filters`]): deinterlace, turn upright, tone-map HDR to SDR
//!   BT.709; run once on the decoding thread, for every rendition.
//! - Each rendition's *scaler* ([`scale_filters`]): to its size, 8-bit 4:2:0, limited range,
//!   square pixels; run on the rendition's own thread.
//! - The audio *resampler* ([`Graph::audio`]): to the AAC encoder's rate, stereo, float planar, in
//!   frames of the encoder's size.
//!
//! Each is a [`Graph`] with one source `in` and one sink `out`; this module knows nothing of
//! decoders, encoders or files.

use ffmpeg::format::Pixel;
use ffmpeg::util::channel_layout::ChannelLayout;
use ffmpeg::{Frame, Rational, color, filter, frame};
use ffmpeg_next as ffmpeg;
use ffmpeg_next::ffi;

use crate::error::{FfmpegContext, Result};
use crate::probe::VideoInfo;

/// What a video graph is built for: the pictures' width, height and pixel format. A picture that
/// differs (a stream changing size mid-way) needs a new graph.
pub(super) type Picture = (u32, u32, Pixel);

/// The [`Picture`] of a frame.
pub(super) fn picture_of(frame: &frame::Video) -> Picture {
    (frame.width(), frame.height(), frame.format())
}

/// A configured filter graph: a source `in`, the filters, a sink `out`.
pub(super) struct Graph {
    graph: filter::Graph,
    sink_tb: Rational,
}

impl Graph {
    /// A graph taking pictures `picture` in time base `tb` with pixel shape `sar` through `chain`
    /// (filters separated by commas), its filters on `threads` slice threads (0: one per core).
    pub(super) fn video(picture: Picture, tb: Rational, sar: Rational, chain: &str, threads: i32) -> Result<Self> {
        let (w, h, pix) = picture;
        let args = format!(
            "video_size={w}x{h}:pix_fmt={}:time_base={}/{}:pixel_aspect={}/{}",
            ffi::AVPixelFormat::from(pix) as i32,
            tb.numerator(),
            tb.denominator(),
            sar.numerator(),
            sar.denominator(),
        );
        Self::configure(("buffer", &args), "buffersink", chain, Some(threads), "video")
    }

    /// A graph taking audio frames like `first` (its rate, sample format and channels) through
    /// the resampler to `rate` Hz stereo float planar, giving frames of `frame_size` samples.
    pub(super) fn audio(first: &frame::Audio, rate: u32, frame_size: u32) -> Result<Self> {
        let in_rate = first.rate();
        let layout = match first.channel_layout() {
            l if l.bits() != 0 && l.channels() == i32::from(first.channels()) => l,
            _ => ChannelLayout::default(i32::from(first.channels())),
        };
        let args = format!(
            "time_base=1/{in_rate}:sample_rate={in_rate}:sample_fmt={}:channel_layout=0x{:x}",
            first.format().name(),
            layout.bits()
        );
        let chain = format!("aresample={rate},aformat=sample_fmts=fltp:channel_layouts=stereo");
        let mut graph = Self::configure(("abuffer", &args), "abuffersink", &chain, None, "audio")?;
        graph
            .graph
            .get("out")
            .expect("sink exists")
            .sink()
            .set_frame_size(frame_size);
        Ok(graph)
    }

    /// `source` (filter, arguments) → `chain` → `sink`, on `threads` slice threads when given.
    fn configure(source: (&str, &str), sink: &str, chain: &str, threads: Option<i32>, what: &str) -> Result<Self> {
        let mut graph = filter::Graph::new();
        if let Some(threads) = threads {
            // SAFETY: a plain field of the graph we own, set before any filter is added
            // (libavfilter reads it when the first one is).
            unsafe { (*graph.as_mut_ptr()).nb_threads = threads };
        }
        let find = |name| filter::find(name).unwrap_or_else(|| panic!("libavfilter has {name}"));
        graph
            .add(&find(source.0), "in", source.1)
            .ctx(format!("creating the {what} filter source"))?;
        graph
            .add(&find(sink), "out", "")
            .ctx(format!("creating the {what} filter sink"))?;
        let spec = format!("[in]{chain}[out]");
        graph
            .output("in", 0)
            .and_then(|p| p.input("out", 0))
            .and_then(|p| p.parse(&spec))
            .ctx(format!("parsing the {what} filters {spec:?}"))?;
        graph
            .validate()
            .ctx(format!("configuring the {what} filters {spec:?}"))?;
        let sink_tb = graph.get("out").expect("sink exists").sink().time_base();
        Ok(Self { graph, sink_tb })
    }

    /// The time base of what comes out.
    pub(super) fn sink_tb(&self) -> Rational {
        self.sink_tb
    }

    /// Hands a frame to the graph's source, which takes its data: `frame` is left empty.
    pub(super) fn push(&mut self, frame: &mut Frame) -> std::result::Result<(), ffmpeg::Error> {
        self.graph
            .get("in")
            .expect("the graph has its source")
            .source()
            .add(frame)
    }

    /// Tells the graph's source that no frame follows, so the filters give back what they hold.
    pub(super) fn end_input(&mut self) -> std::result::Result<(), ffmpeg::Error> {
        self.graph.get("in").expect("the graph has its source").source().flush()
    }

    /// Takes the next filtered frame into `frame`: `false` when none is ready (more input is
    /// needed) or none will come again (the input ended and everything was taken).
    pub(super) fn pull(&mut self, frame: &mut Frame) -> std::result::Result<bool, ffmpeg::Error> {
        match self
            .graph
            .get("out")
            .expect("the graph has its sink")
            .sink()
            .frame(frame)
        {
            Ok(()) => Ok(true),
            Err(ffmpeg::Error::Eof) => Ok(false),
            Err(ffmpeg::Error::Other { errno }) if errno == ffi::EAGAIN => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// A sample aspect ratio, or square pixels when it is unknown (0 or negative).
pub(super) fn sar_or_square(sar: Rational) -> Rational {
    if sar.numerator() > 0 && sar.denominator() > 0 {
        sar
    } else {
        Rational::new(1, 1)
    }
}

/// The filters every rendition shares, and what they do to the picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SharedFilters {
    /// The chain (deinterlace, turn upright, tone-map, in that order), `None` when nothing is to
    /// be done and the decoded pictures go to the renditions as they are.
    pub(super) chain: Option<String>,
    /// Whether HDR is tone-mapped to SDR BT.709 (only where this FFmpeg has zscale and tonemap).
    pub(super) tone_mapped: bool,
    /// Whether the pictures are deinterlaced.
    pub(super) deinterlaced: bool,
}

/// The shared filters for a video stream.
pub(super) fn shared_filters(info: &VideoInfo) -> SharedFilters {
    let mut filters = Vec::new();
    if info.interlaced {
        filters.push("bwdif=mode=send_frame:parity=auto:deint=interlaced".to_owned());
    }
    if let Some(f) = info.orientation.filters() {
        filters.push(f);
    }
    let tone_mapped = info.is_hdr() && filter::find("zscale").is_some() && filter::find("tonemap").is_some();
    if tone_mapped {
        filters.push(tone_map_filters(info));
    }
    SharedFilters {
        chain: (!filters.is_empty()).then(|| filters.join(",")),
        tone_mapped,
        deinterlaced: info.interlaced,
    }
}

/// zscale/tonemap filters that turn PQ or HLG BT.2020 into SDR BT.709 (Hable curve).
pub(super) fn tone_map_filters(info: &VideoInfo) -> String {
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

/// The colour tags of encoded pictures: primaries, transfer characteristic, matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Colours {
    /// Colour primaries.
    pub(super) primaries: color::Primaries,
    /// Transfer characteristic.
    pub(super) transfer: color::TransferCharacteristic,
    /// Matrix coefficients.
    pub(super) space: color::Space,
}

impl Colours {
    /// What the tone-mapping filters leave: SDR BT.709.
    pub(super) const BT709: Self = Self {
        primaries: color::Primaries::BT709,
        transfer: color::TransferCharacteristic::BT709,
        space: color::Space::BT709,
    };
}

/// Whether a picture is full range (JPEG), by its tag or by its pixel format.
pub(super) fn is_full_range(frame: &frame::Video) -> bool {
    frame.color_range() == color::Range::JPEG
        || matches!(frame.format(), Pixel::YUVJ420P | Pixel::YUVJ422P | Pixel::YUVJ444P)
}

/// The scaler of one rendition: to `width`×`height`, 8-bit 4:2:0, square pixels. Full range
/// becomes limited; a limited (or unmarked) source is left as it is, so the scaler can pass a
/// picture of the right size and format through untouched.
pub(super) fn scale_filters(width: u32, height: u32, full_range: bool) -> String {
    let range = if full_range { ":out_range=tv" } else { "" };
    format!("scale=w={width}:h={height}{range}:flags=bicubic,format=yuv420p,setsar=1")
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{filled_picture, picture, tone, video_info};
    use super::*;
    use ffmpeg::format::Sample;
    use ffmpeg::format::sample::Type as SampleType;

    fn info() -> VideoInfo {
        video_info(64, 48)
    }

    fn hdr(mut info: VideoInfo) -> VideoInfo {
        info.color_transfer = Some("smpte2084".into());
        info.color_primaries = Some("bt2020".into());
        info.color_space = Some("bt2020nc".into());
        info
    }

    /// Every picture that comes out of `graph` after `input`, then the end.
    fn run(graph: &mut Graph, input: &[frame::Video]) -> Vec<frame::Video> {
        let mut out = Vec::new();
        for f in input {
            graph.push(&mut f.clone()).unwrap();
        }
        graph.end_input().unwrap();
        let mut f = frame::Video::empty();
        while graph.pull(&mut f).unwrap() {
            out.push(std::mem::replace(&mut f, frame::Video::empty()));
        }
        out
    }

    fn tb() -> Rational {
        Rational::new(1, 25)
    }

    #[test]
    fn the_scaler_makes_a_64x48_picture_32x24_yuv420p_with_square_pixels() {
        crate::probe::init();
        let input: Vec<_> = (0..3).map(|n| picture(64, 48, Pixel::YUV444P, n)).collect();
        let chain = scale_filters(32, 24, false);
        let mut graph = Graph::video(picture_of(&input[0]), tb(), Rational::new(4, 3), &chain, 1).unwrap();
        let out = run(&mut graph, &input);
        assert_eq!(out.len(), 3);
        for (n, f) in out.iter().enumerate() {
            assert_eq!(picture_of(f), (32, 24, Pixel::YUV420P));
            assert_eq!(f.aspect_ratio(), Rational::new(1, 1));
            assert_eq!(f.pts(), Some(n as i64));
        }
        assert_eq!(graph.sink_tb(), tb());
    }

    #[test]
    fn full_range_black_comes_out_as_limited_range_black() {
        crate::probe::init();
        let mut input = filled_picture(32, 24, Pixel::YUV420P, [0, 128, 128]);
        assert!(!is_full_range(&input));
        input.set_color_range(color::Range::JPEG);
        assert!(is_full_range(&input));
        let chain = scale_filters(32, 24, is_full_range(&input));
        let mut graph = Graph::video(picture_of(&input), tb(), Rational::new(1, 1), &chain, 1).unwrap();
        let out = run(&mut graph, &[input]);
        assert_eq!(out[0].format(), Pixel::YUV420P);
        assert_eq!(out[0].color_range(), color::Range::MPEG);
        assert_eq!(out[0].data(0)[0], 16, "black is 16 in limited range");
    }

    #[test]
    fn the_full_range_pixel_formats_are_full_range_whatever_their_tag() {
        for format in [Pixel::YUVJ420P, Pixel::YUVJ422P, Pixel::YUVJ444P] {
            assert!(
                is_full_range(&filled_picture(32, 24, format, [0, 128, 128])),
                "{format:?}"
            );
        }
    }

    #[test]
    fn a_limited_range_picture_of_the_right_size_passes_the_scaler_untouched() {
        crate::probe::init();
        let input = picture(32, 24, Pixel::YUV420P, 7);
        assert!(!is_full_range(&input));
        let chain = scale_filters(32, 24, is_full_range(&input));
        assert!(!chain.contains("out_range"), "{chain}");
        let mut graph = Graph::video(picture_of(&input), tb(), Rational::new(1, 1), &chain, 1).unwrap();
        let out = run(&mut graph, std::slice::from_ref(&input));
        for plane in 0..3 {
            let rows = |f: &frame::Video| -> Vec<Vec<u8>> {
                let (stride, width) = (f.stride(plane), f.plane_width(plane) as usize);
                f.data(plane).chunks(stride).map(|r| r[..width].to_vec()).collect()
            };
            assert_eq!(rows(&out[0]), rows(&input), "plane {plane}");
        }
    }

    #[test]
    fn a_graph_gives_nothing_before_its_input_and_nothing_after_its_end() {
        crate::probe::init();
        let input = picture(32, 24, Pixel::YUV420P, 0);
        let mut graph = Graph::video(picture_of(&input), tb(), Rational::new(1, 1), "null", 1).unwrap();
        let mut f = frame::Video::empty();
        assert!(!graph.pull(&mut f).unwrap());
        assert_eq!(run(&mut graph, &[input]).len(), 1);
        assert!(!graph.pull(&mut f).unwrap());
    }

    #[test]
    fn an_upright_progressive_sdr_stream_needs_no_shared_filter() {
        assert_eq!(
            shared_filters(&info()),
            SharedFilters {
                chain: None,
                tone_mapped: false,
                deinterlaced: false
            }
        );
    }

    #[test]
    fn the_shared_filters_deinterlace_then_turn_upright_then_tone_map() {
        let mut info = hdr(info());
        info.interlaced = true;
        info.orientation.transpose = Some("clock");
        let shared = shared_filters(&info);
        let chain = shared.chain.unwrap();
        assert!(
            chain.starts_with(
                "bwdif=mode=send_frame:parity=auto:deint=interlaced,transpose=dir=clock,zscale=tin=smpte2084"
            ),
            "{chain}"
        );
        assert!(chain.ends_with("format=yuv420p"), "{chain}");
        assert!(shared.tone_mapped && shared.deinterlaced);
    }

    #[test]
    fn a_picture_stored_on_its_side_comes_out_upright() {
        let mut info = info();
        info.orientation.transpose = Some("clock");
        let chain = shared_filters(&info).chain.unwrap();
        let input = picture(64, 48, Pixel::YUV420P, 0);
        let mut graph = Graph::video(picture_of(&input), tb(), Rational::new(1, 1), &chain, 0).unwrap();
        let out = run(&mut graph, &[input]);
        assert_eq!(picture_of(&out[0]), (48, 64, Pixel::YUV420P));
    }

    #[test]
    fn hdr10_is_tone_mapped_to_8_bit_pictures() {
        let info = hdr(info());
        assert!(
            filter::find("zscale").is_some() && filter::find("tonemap").is_some(),
            "this FFmpeg has no zscale or tonemap filter: HDR sources would not be tone-mapped"
        );
        let chain = shared_filters(&info).chain.unwrap();
        // Tagged as a decoder tags HDR10 pictures: zscale keeps the tags it is not told to change.
        let mut input = picture(64, 48, Pixel::YUV420P10LE, 0);
        input.set_color_primaries(color::Primaries::BT2020);
        input.set_color_transfer_characteristic(color::TransferCharacteristic::SMPTE2084);
        input.set_color_space(color::Space::BT2020NCL);
        input.set_color_range(color::Range::MPEG);
        let mut graph = Graph::video(picture_of(&input), tb(), Rational::new(1, 1), &chain, 0).unwrap();
        let out = run(&mut graph, &[input]);
        assert_eq!(picture_of(&out[0]), (64, 48, Pixel::YUV420P));
        assert_eq!(out[0].color_primaries(), color::Primaries::BT709);
        assert_eq!(
            out[0].color_transfer_characteristic(),
            color::TransferCharacteristic::BT709
        );
    }

    #[test]
    fn tone_mapping_reads_the_source_colours_and_assumes_hdr10_where_they_are_missing() {
        let mut info = info();
        assert!(tone_map_filters(&info).starts_with("zscale=tin=smpte2084:pin=bt2020:min=2020_ncl:rin=limited:"));
        info.color_transfer = Some("arib-std-b67".into());
        info.color_space = Some("bt2020c".into());
        info.color_range = Some("pc".into());
        assert!(tone_map_filters(&info).starts_with("zscale=tin=arib-std-b67:pin=bt2020:min=2020_cl:rin=full:"));
    }

    #[test]
    fn an_unknown_pixel_shape_is_taken_as_square() {
        assert_eq!(sar_or_square(Rational::new(64, 45)), Rational::new(64, 45));
        assert_eq!(sar_or_square(Rational::new(0, 1)), Rational::new(1, 1));
        assert_eq!(sar_or_square(Rational::new(1, 0)), Rational::new(1, 1));
    }

    #[test]
    fn the_resampler_gives_stereo_float_planar_frames_of_the_encoder_size() {
        crate::probe::init();
        let input: Vec<_> = (0..3).map(|n| tone(44_100, 1, 1_000, n * 1_000)).collect();
        let mut graph = Graph::audio(&input[0], 48_000, 1_024).unwrap();
        for mut f in input {
            graph.push(&mut f).unwrap();
        }
        graph.end_input().unwrap();
        let mut f = frame::Audio::empty();
        let mut sizes = Vec::new();
        while graph.pull(&mut f).unwrap() {
            assert_eq!(f.rate(), 48_000);
            assert_eq!(f.channels(), 2);
            assert_eq!(f.channel_layout(), ChannelLayout::STEREO);
            assert_eq!(f.format(), Sample::F32(SampleType::Planar));
            sizes.push(f.samples());
        }
        let total: usize = sizes.iter().sum();
        // 3 000 samples at 44.1 kHz are 3 265.3 at 48 kHz (the resampler's delay, a few more).
        assert!((3_265..3_300).contains(&total), "{total} samples in {sizes:?}");
        assert!(sizes[..sizes.len() - 1].iter().all(|&s| s == 1_024), "{sizes:?}");
    }
}
