//! Pictures of a video for the player: `poster.jpg` (a representative frame, not a black first
//! one) and a seek-bar thumbnail track, `thumbnails.vtt` over one sprite sheet (`sprite.jpg`).
//!
//! A frame every few seconds of the smallest rendition becomes a tile; the poster is the tile
//! moment with the most detail (the largest spread of brightness) between 10% and 90% of the
//! video, taken again from the largest rendition at that moment.

use std::fmt::Write as _;
use std::path::Path;

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::{Rational, codec, encoder, frame, media};
use ffmpeg_next as ffmpeg;

use super::subtitles::vtt_time;
use crate::error::{FfmpegContext, Result, TranscodeError};

/// Width of one tile of the sprite sheet.
pub const TILE_WIDTH: u32 = 160;
/// Tiles per row of the sprite sheet.
const COLUMNS: u32 = 10;
/// The poster's largest width.
const POSTER_WIDTH: u32 = 1280;

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Thumbnails {
    /// Seconds between tiles.
    pub interval: f64,
    /// Tiles in the sprite sheet.
    pub tiles: usize,
    /// One tile's size.
    pub tile: (u32, u32),
    /// When the poster is taken from, seconds.
    pub poster_at: f64,
    /// The poster's size.
    pub poster: (u32, u32),
}

/// Seconds between tiles for a video of `duration` seconds: a tile every 2 s for short clips,
/// 5 s up to 10 minutes, 10 s beyond.
pub fn interval_for(duration: f64) -> f64 {
    if duration < 60.0 {
        2.0
    } else if duration < 600.0 {
        5.0
    } else {
        10.0
    }
}

/// Writes `poster.jpg`, `sprite.jpg` and `thumbnails.vtt` (naming `sprite_url`) into `dir`, from
/// the renditions `small` (tiles) and `large` (poster).
///
/// # Errors
///
/// When a rendition cannot be decoded or a picture cannot be encoded or written.
pub fn write(small: &Path, large: &Path, duration: f64, dir: &Path, sprite_url: &str) -> Result<Thumbnails> {
    let interval = interval_for(duration);
    let frames = sample(small, interval)?;
    if frames.is_empty() {
        return Err(TranscodeError::Package(format!(
            "no frame decoded from {}",
            small.display()
        )));
    }
    let (w, h) = (frames[0].1.width(), frames[0].1.height());
    let tile = (
        TILE_WIDTH,
        even((TILE_WIDTH as f64 * f64::from(h) / f64::from(w.max(1))).round() as u32),
    );
    let mut tiles = Vec::new();
    let mut scaler = scaling::Context::get(
        frames[0].1.format(),
        w,
        h,
        Pixel::YUVJ420P,
        tile.0,
        tile.1,
        scaling::Flags::BILINEAR,
    )
    .ctx("creating the thumbnail scaler")?;
    for (_, f) in &frames {
        let mut t = frame::Video::empty();
        scaler.run(f, &mut t).ctx("scaling a thumbnail")?;
        tiles.push(t);
    }
    // The poster: the most detailed tile moment away from the very start and end.
    let score = |i: usize| spread(&tiles[i]);
    let inside: Vec<usize> = (0..tiles.len())
        .filter(|i| {
            let t = frames[*i].0;
            t >= duration * 0.1 && t <= duration * 0.9
        })
        .collect();
    let candidates = if inside.is_empty() {
        (0..tiles.len()).collect()
    } else {
        inside
    };
    let best = candidates
        .into_iter()
        .max_by(|a, b| score(*a).total_cmp(&score(*b)))
        .expect("at least one tile");
    let poster_at = frames[best].0;
    let poster_frame = frame_at(large, poster_at)?;
    let (pw, ph) = (poster_frame.width(), poster_frame.height());
    let poster_size = if pw > POSTER_WIDTH {
        (
            POSTER_WIDTH,
            even((f64::from(POSTER_WIDTH) * f64::from(ph) / f64::from(pw)).round() as u32),
        )
    } else {
        (pw, ph)
    };
    let mut poster = frame::Video::empty();
    scaling::Context::get(
        poster_frame.format(),
        pw,
        ph,
        Pixel::YUVJ420P,
        poster_size.0,
        poster_size.1,
        scaling::Flags::BICUBIC,
    )
    .ctx("creating the poster scaler")?
    .run(&poster_frame, &mut poster)
    .ctx("scaling the poster")?;
    write_jpeg(&poster, &dir.join("poster.jpg"))?;

    let sheet = sprite(&tiles, tile);
    write_jpeg(&sheet, &dir.join("sprite.jpg"))?;
    let vtt = thumbnail_track(tiles.len(), tile, interval, duration, sprite_url);
    let path = dir.join("thumbnails.vtt");
    std::fs::write(&path, vtt).map_err(|e| TranscodeError::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    Ok(Thumbnails {
        interval,
        tiles: tiles.len(),
        tile,
        poster_at,
        poster: poster_size,
    })
}

fn even(n: u32) -> u32 {
    (n.max(2) / 2) * 2
}

/// The WebVTT thumbnail track: one cue per tile, pointing into the sprite sheet.
pub(crate) fn thumbnail_track(tiles: usize, (w, h): (u32, u32), interval: f64, duration: f64, sprite: &str) -> String {
    let mut out = String::from("WEBVTT\n");
    for i in 0..tiles {
        let start = i as f64 * interval;
        let end = if i + 1 == tiles {
            duration.max(start)
        } else {
            (i + 1) as f64 * interval
        };
        let (col, row) = (i as u32 % COLUMNS, i as u32 / COLUMNS);
        let _ = write!(
            out,
            "\n{} --> {}\n{sprite}#xywh={},{},{w},{h}\n",
            vtt_time(start),
            vtt_time(end),
            col * w,
            row * h
        );
    }
    out
}

/// The spread of a picture's brightness (standard deviation of its luma): a black or flat frame
/// scores near 0.
pub(crate) fn spread(f: &frame::Video) -> f64 {
    let (w, h, stride) = (f.width() as usize, f.height() as usize, f.stride(0));
    let data = f.data(0);
    let (mut sum, mut sq, mut n) = (0f64, 0f64, 0f64);
    for y in 0..h {
        for &v in &data[y * stride..y * stride + w] {
            let v = f64::from(v);
            sum += v;
            sq += v * v;
            n += 1.0;
        }
    }
    if n == 0.0 {
        return 0.0;
    }
    let mean = sum / n;
    (sq / n - mean * mean).max(0.0).sqrt()
}

/// The first decoded frame at or after each multiple of `interval`, with its time.
fn sample(path: &Path, interval: f64) -> Result<Vec<(f64, frame::Video)>> {
    let mut ictx = ffmpeg::format::input(path).ctx(format!("opening {}", path.display()))?;
    let stream = ictx
        .streams()
        .best(media::Type::Video)
        .ok_or_else(|| TranscodeError::Package(format!("{} has no video", path.display())))?;
    let index = stream.index();
    let tb = stream.time_base();
    let mut decoder = codec::context::Context::from_parameters(stream.parameters())
        .ctx("reading the video parameters")?
        .decoder()
        .video()
        .ctx("opening the video decoder")?;
    let mut out = Vec::new();
    let mut next = 0.0;
    let mut decoded = frame::Video::empty();
    let mut take = |decoder: &mut ffmpeg::decoder::Video, out: &mut Vec<(f64, frame::Video)>, next: &mut f64| {
        while decoder.receive_frame(&mut decoded).is_ok() {
            let t = decoded.pts().map_or(0.0, |p| seconds(p, tb));
            if t + 1e-6 >= *next {
                out.push((t, decoded.clone()));
                *next += interval;
            }
        }
    };
    for (s, packet) in ictx.packets() {
        if s.index() != index {
            continue;
        }
        decoder.send_packet(&packet).ctx("decoding a thumbnail frame")?;
        take(&mut decoder, &mut out, &mut next);
    }
    decoder.send_eof().ctx("ending the thumbnail decode")?;
    take(&mut decoder, &mut out, &mut next);
    Ok(out)
}

/// The first frame at or after `at` seconds (seeking to the keyframe before it).
fn frame_at(path: &Path, at: f64) -> Result<frame::Video> {
    let mut ictx = ffmpeg::format::input(path).ctx(format!("opening {}", path.display()))?;
    let stream = ictx
        .streams()
        .best(media::Type::Video)
        .ok_or_else(|| TranscodeError::Package(format!("{} has no video", path.display())))?;
    let index = stream.index();
    let tb = stream.time_base();
    let mut decoder = codec::context::Context::from_parameters(stream.parameters())
        .ctx("reading the video parameters")?
        .decoder()
        .video()
        .ctx("opening the video decoder")?;
    let target = (at * f64::from(ffmpeg::ffi::AV_TIME_BASE)) as i64;
    ictx.seek(target, ..target).ctx("seeking to the poster")?;
    let mut decoded = frame::Video::empty();
    let mut last = None;
    for (s, packet) in ictx.packets() {
        if s.index() != index {
            continue;
        }
        decoder.send_packet(&packet).ctx("decoding the poster")?;
        while decoder.receive_frame(&mut decoded).is_ok() {
            if decoded.pts().map_or(0.0, |p| seconds(p, tb)) + 1e-6 >= at {
                return Ok(decoded.clone());
            }
            last = Some(decoded.clone());
        }
    }
    decoder.send_eof().ctx("ending the poster decode")?;
    if decoder.receive_frame(&mut decoded).is_ok() {
        return Ok(decoded);
    }
    last.ok_or_else(|| TranscodeError::Package(format!("no frame at {at:.2} s in {}", path.display())))
}

fn seconds(ts: i64, tb: Rational) -> f64 {
    ts as f64 * f64::from(tb.numerator()) / f64::from(tb.denominator().max(1))
}

/// The sprite sheet: tiles left to right, `COLUMNS` per row, the rest black.
fn sprite(tiles: &[frame::Video], (w, h): (u32, u32)) -> frame::Video {
    let columns = COLUMNS.min(tiles.len() as u32).max(1);
    let rows = (tiles.len() as u32).div_ceil(columns).max(1);
    let mut sheet = frame::Video::new(Pixel::YUVJ420P, columns * w, rows * h);
    for plane in 0..3 {
        let fill = if plane == 0 { 0 } else { 128 };
        sheet.data_mut(plane).fill(fill);
    }
    for (i, t) in tiles.iter().enumerate() {
        let (col, row) = (i as u32 % columns, i as u32 / columns);
        for plane in 0..3 {
            let shift = u32::from(plane > 0);
            let (pw, ph) = ((w >> shift) as usize, (h >> shift) as usize);
            let (x0, y0) = (((col * w) >> shift) as usize, ((row * h) >> shift) as usize);
            let (src_stride, dst_stride) = (t.stride(plane), sheet.stride(plane));
            for y in 0..ph {
                let src = &t.data(plane)[y * src_stride..y * src_stride + pw];
                let at = (y0 + y) * dst_stride + x0;
                sheet.data_mut(plane)[at..at + pw].copy_from_slice(src);
            }
        }
    }
    sheet
}

/// Encodes a full-range 4:2:0 picture as a JPEG file (quality about 90).
fn write_jpeg(picture: &frame::Video, path: &Path) -> Result<()> {
    let codec =
        encoder::find(codec::Id::MJPEG).ok_or_else(|| TranscodeError::Options("FFmpeg has no MJPEG encoder".into()))?;
    let mut enc = codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .ctx("creating the JPEG encoder")?;
    enc.set_width(picture.width());
    enc.set_height(picture.height());
    enc.set_format(Pixel::YUVJ420P);
    enc.set_time_base(Rational::new(1, 25));
    // SAFETY: fixed quantiser (qscale 3) on the encoder context before it is opened.
    unsafe {
        let ctx = enc.as_mut_ptr();
        (*ctx).flags |= ffmpeg::ffi::AV_CODEC_FLAG_QSCALE as i32;
        (*ctx).global_quality = ffmpeg::ffi::FF_QP2LAMBDA * 3;
    }
    let mut opened = enc.open_as(codec).ctx("opening the JPEG encoder")?;
    let mut f = picture.clone();
    f.set_pts(Some(0));
    // SAFETY: the per-frame quality MJPEG reads with a fixed quantiser.
    unsafe { (*f.as_mut_ptr()).quality = ffmpeg::ffi::FF_QP2LAMBDA * 3 };
    opened.send_frame(&f).ctx("encoding a JPEG")?;
    opened.send_eof().ctx("encoding a JPEG")?;
    let mut packet = ffmpeg::Packet::empty();
    let mut bytes = Vec::new();
    while opened.receive_packet(&mut packet).is_ok() {
        bytes.extend_from_slice(packet.data().unwrap_or_default());
    }
    if bytes.is_empty() {
        return Err(TranscodeError::Package(format!(
            "the JPEG encoder gave nothing for {}",
            path.display()
        )));
    }
    std::fs::write(path, bytes).map_err(|e| TranscodeError::Io {
        path: path.display().to_string(),
        source: e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tile_every_few_seconds_on_a_sheet_ten_wide() {
        assert_eq!(interval_for(30.0), 2.0);
        assert_eq!(interval_for(300.0), 5.0);
        assert_eq!(interval_for(3600.0), 10.0);
        let vtt = thumbnail_track(12, (160, 90), 5.0, 57.5, "sprite.jpg");
        assert!(
            vtt.starts_with("WEBVTT\n\n00:00:00.000 --> 00:00:05.000\nsprite.jpg#xywh=0,0,160,90\n"),
            "{vtt}"
        );
        assert!(
            vtt.contains("00:00:50.000 --> 00:00:55.000\nsprite.jpg#xywh=0,90,160,90\n"),
            "{vtt}"
        );
        assert!(
            vtt.ends_with("00:00:55.000 --> 00:00:57.500\nsprite.jpg#xywh=160,90,160,90\n"),
            "{vtt}"
        );
    }

    #[test]
    fn a_flat_picture_has_no_spread_and_a_detailed_one_has_some() {
        let mut flat = frame::Video::new(Pixel::YUVJ420P, 32, 16);
        flat.data_mut(0).fill(16);
        assert!(spread(&flat) < 1e-9);
        let mut bars = flat.clone();
        let stride = bars.stride(0);
        for y in 0..16 {
            for x in 0..32 {
                bars.data_mut(0)[y * stride + x] = if x < 16 { 20 } else { 220 };
            }
        }
        assert!((spread(&bars) - 100.0).abs() < 1e-6, "{}", spread(&bars));
    }
}
