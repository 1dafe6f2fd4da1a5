//! Test media made on the spot with FFmpeg's libraries: pictures with a pattern, a tone, a WAV
//! file. Nothing here reads a file the tests did not write.

use std::path::Path;

use ffmpeg::codec::{self, Id};
use ffmpeg::format::Pixel;
use ffmpeg::format::sample::{Sample, Type as SampleType};
use ffmpeg::util::channel_layout::ChannelLayout;
use ffmpeg::{Packet, Rational, encoder, frame};
use ffmpeg_next as ffmpeg;

use crate::geometry::Orientation;
use crate::probe::VideoInfo;

/// A picture with a diagonal gradient that moves with `n`, which is also its timestamp.
pub(super) fn picture(width: u32, height: u32, format: Pixel, n: i64) -> frame::Video {
    crate::probe::init();
    let mut f = frame::Video::new(format, width, height);
    // Two bytes a sample for the 10-bit formats the tests use, one for the others.
    let wide = matches!(format, Pixel::YUV420P10LE);
    for plane in 0..f.planes() {
        let (stride, w, h) = (
            f.stride(plane),
            f.plane_width(plane) as usize,
            f.plane_height(plane) as usize,
        );
        let data = f.data_mut(plane);
        for y in 0..h {
            for x in 0..w {
                let v = if plane == 0 {
                    16 + (x * 3 + y * 2 + n as usize * 5) % 220
                } else {
                    64 + (x + y * 3 + plane * 40) % 128
                };
                if wide {
                    let v = (v as u16 * 4).to_le_bytes();
                    data[y * stride + 2 * x..][..2].copy_from_slice(&v);
                } else {
                    data[y * stride + x] = v as u8;
                }
            }
        }
    }
    f.set_pts(Some(n));
    f
}

/// An 8-bit picture with the same value all over each of its three planes.
pub(super) fn filled_picture(width: u32, height: u32, format: Pixel, values: [u8; 3]) -> frame::Video {
    crate::probe::init();
    let mut f = frame::Video::new(format, width, height);
    for (plane, v) in values.into_iter().enumerate() {
        f.data_mut(plane).fill(v);
    }
    f.set_pts(Some(0));
    f
}

/// `samples` of a 440 Hz tone at `rate` Hz on `channels` channels, 16-bit interleaved, starting
/// at sample `pts`.
pub(super) fn tone(rate: u32, channels: u16, samples: usize, pts: i64) -> frame::Audio {
    crate::probe::init();
    let layout = ChannelLayout::default(i32::from(channels));
    let mut f = frame::Audio::new(Sample::I16(SampleType::Packed), samples, layout);
    f.set_rate(rate);
    let data = f.data_mut(0);
    for i in 0..samples {
        let t = (pts + i as i64) as f64 / f64::from(rate);
        let v = ((t * 440.0 * std::f64::consts::TAU).sin() * 8_000.0) as i16;
        for c in 0..usize::from(channels) {
            let at = (i * usize::from(channels) + c) * 2;
            data[at..at + 2].copy_from_slice(&v.to_le_bytes());
        }
    }
    f.set_pts(Some(pts));
    f
}

/// Writes `samples` of [`tone`] at `rate` Hz on `channels` channels as a 16-bit PCM WAV file.
pub(super) fn write_wav(path: &Path, rate: u32, channels: u16, samples: usize) {
    crate::probe::init();
    let tb = Rational::new(1, rate as i32);
    let mut octx = ffmpeg::format::output_as(path, "wav").expect("create the WAV file");
    let codec = encoder::find(Id::PCM_S16LE).expect("FFmpeg has pcm_s16le");
    let mut enc = codec::context::Context::new_with_codec(codec)
        .encoder()
        .audio()
        .unwrap();
    enc.set_rate(rate as i32);
    enc.set_channel_layout(ChannelLayout::default(i32::from(channels)));
    enc.set_format(Sample::I16(SampleType::Packed));
    enc.set_time_base(tb);
    let mut enc = enc.open_as(codec).expect("open the PCM encoder");
    octx.add_stream(codec).unwrap().set_parameters(&enc);
    octx.write_header().unwrap();
    let ost_tb = octx.stream(0).unwrap().time_base();
    let mut write = |enc: &mut encoder::Audio| {
        let mut packet = Packet::empty();
        while enc.receive_packet(&mut packet).is_ok() {
            packet.set_stream(0);
            packet.rescale_ts(tb, ost_tb);
            packet.write_interleaved(&mut octx).unwrap();
        }
    };
    for start in (0..samples).step_by(1_000) {
        enc.send_frame(&tone(rate, channels, (samples - start).min(1_000), start as i64))
            .unwrap();
        write(&mut enc);
    }
    enc.send_eof().unwrap();
    write(&mut enc);
    octx.write_trailer().unwrap();
}

/// What probing says of a progressive, upright, SDR 25 fps stream of `width`×`height`, with
/// nothing announced about its length.
pub(crate) fn video_info(width: u32, height: u32) -> VideoInfo {
    crate::probe::init();
    VideoInfo {
        index: 0,
        codec: "h264".into(),
        profile: None,
        width,
        height,
        pixel_format: Some("yuv420p".into()),
        bit_depth: Some(8),
        sample_aspect_ratio: (1, 1),
        orientation: Orientation::default(),
        rotation: 0,
        display_width: f64::from(width),
        display_height: f64::from(height),
        frame_rate: 25.0,
        frames: None,
        duration_seconds: None,
        interlaced: false,
        color_range: None,
        color_primaries: None,
        color_transfer: None,
        color_space: None,
    }
}
