//! One track of a rendition as CMAF media: the video (or the audio) of an MP4 file remuxed, not
//! re-encoded, into a fragmented MP4 file of its own, one fragment per 2-second keyframe interval,
//! and what the manifests need to know about it (byte ranges, times, bitrates, codec string).

use std::path::{Path, PathBuf};

use ffmpeg::{Dictionary, codec, encoder, media};
use ffmpeg_next as ffmpeg;

use super::boxes::{self, Layout};
use crate::error::{FfmpegContext, Result, TranscodeError};

/// Which track of the source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The video stream.
    Video,
    /// The audio stream.
    Audio,
}

/// A track written as fragmented MP4, and what the manifests say of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    /// The fragmented MP4 file.
    pub path: PathBuf,
    /// Its byte layout.
    pub layout: Layout,
    /// Its RFC 6381 codec string (`avc1.64001f`, `mp4a.40.2`).
    pub codecs: String,
    /// Picture size (video).
    pub size: Option<(u32, u32)>,
    /// Frames per second, measured: frames over duration (video).
    pub frame_rate: Option<f64>,
    /// Sample rate and channels (audio).
    pub audio: Option<(u32, u16)>,
    /// The highest bitrate of one fragment, bits per second.
    pub peak_bitrate: u64,
    /// Bits per second over the whole track.
    pub average_bitrate: u64,
    /// Seconds.
    pub duration: f64,
}

/// How long an audio fragment lasts (video fragments follow the keyframes).
const AUDIO_FRAGMENT_MICROSECONDS: &str = "2000000";

/// Remuxes the `kind` track of `input` into the fragmented MP4 `output`.
///
/// # Errors
///
/// When `input` has no such track, or FFmpeg or the file system fails.
pub fn write_track(input: &Path, kind: Kind, output: &Path) -> Result<Track> {
    let mut ictx = ffmpeg::format::input(input).ctx(format!("opening {}", input.display()))?;
    let wanted = match kind {
        Kind::Video => media::Type::Video,
        Kind::Audio => media::Type::Audio,
    };
    let ist = ictx
        .streams()
        .best(wanted)
        .ok_or_else(|| TranscodeError::Package(format!("{} has no {kind:?} stream", input.display())))?;
    let index = ist.index();
    let itb = ist.time_base();
    let params = ist.parameters();
    let codecs = codec_string(&params)?;
    // SAFETY: reading plain fields of the stream's codec parameters.
    let (width, height, rate, channels) = unsafe {
        let p = &*params.as_ptr();
        (p.width, p.height, p.sample_rate, p.ch_layout.nb_channels)
    };

    let mut octx = ffmpeg::format::output_as(output, "mp4").ctx(format!("creating {}", output.display()))?;
    let mut ost = octx.add_stream(encoder::find(params.id())).ctx("adding the stream")?;
    ost.set_parameters(params);
    // SAFETY: clearing the codec tag lets the MP4 muxer choose its own (`avc1`, `mp4a`).
    unsafe { (*(*ost.as_mut_ptr()).codecpar).codec_tag = 0 };
    ost.set_time_base(itb);
    let mut opts = Dictionary::new();
    match kind {
        Kind::Video => opts.set(
            "movflags",
            "+cmaf+frag_keyframe+empty_moov+default_base_moof+skip_trailer+global_sidx",
        ),
        Kind::Audio => {
            opts.set(
                "movflags",
                "+cmaf+empty_moov+default_base_moof+skip_trailer+global_sidx",
            );
            opts.set("frag_duration", AUDIO_FRAGMENT_MICROSECONDS);
        }
    }
    octx.write_header_with(opts)
        .ctx(format!("writing the header of {}", output.display()))?;
    let otb = octx.stream(0).expect("the stream was added").time_base();
    let mut frames = 0u64;
    for (stream, mut packet) in ictx.packets() {
        if stream.index() != index {
            continue;
        }
        frames += 1;
        packet.set_stream(0);
        packet.set_position(-1);
        packet.rescale_ts(itb, otb);
        packet
            .write_interleaved(&mut octx)
            .ctx(format!("writing {}", output.display()))?;
    }
    octx.write_trailer().ctx(format!("finishing {}", output.display()))?;

    let mut file = std::fs::File::open(output).map_err(|e| TranscodeError::Io {
        path: output.display().to_string(),
        source: e,
    })?;
    let layout =
        boxes::read_layout(&mut file).map_err(|e| TranscodeError::Package(format!("{}: {e}", output.display())))?;
    let ticks: u64 = layout.fragments.iter().map(|f| f.duration).sum();
    let duration = ticks as f64 / f64::from(layout.timescale.max(1));
    let (peak, bits) = layout.fragments.iter().fold((0u64, 0u64), |(peak, bits), f| {
        let size = (f.bytes.end - f.bytes.start) * 8;
        let secs = f.duration as f64 / f64::from(layout.timescale.max(1));
        let rate = if secs > 0.0 {
            (size as f64 / secs).round() as u64
        } else {
            0
        };
        (peak.max(rate), bits + size)
    });
    let average = if duration > 0.0 {
        (bits as f64 / duration).round() as u64
    } else {
        0
    };
    Ok(Track {
        path: output.to_owned(),
        codecs,
        size: (kind == Kind::Video).then_some((width.max(0) as u32, height.max(0) as u32)),
        frame_rate: (kind == Kind::Video && duration > 0.0).then(|| frames as f64 / duration),
        audio: (kind == Kind::Audio).then_some((rate.max(0) as u32, channels.max(0) as u16)),
        peak_bitrate: peak.max(average),
        average_bitrate: average,
        duration,
        layout,
    })
}

/// The RFC 6381 codec string of a stream: `avc1.PPCCLL` from the H.264 configuration record,
/// `mp4a.40.N` for AAC by its object type.
fn codec_string(params: &codec::Parameters) -> Result<String> {
    // SAFETY: the extradata pointer and size belong to the stream's codec parameters.
    let (extradata, profile) = unsafe {
        let p = &*params.as_ptr();
        let data = if p.extradata.is_null() || p.extradata_size <= 0 {
            &[][..]
        } else {
            std::slice::from_raw_parts(p.extradata, p.extradata_size as usize)
        };
        (data, p.profile)
    };
    match params.id() {
        codec::Id::H264 => avc1(extradata),
        // AAC object types: 2 LC, 5 HE (SBR), 29 HE v2; FFmpeg's profile is the object type - 1.
        codec::Id::AAC => Ok(format!("mp4a.40.{}", if profile >= 0 { profile + 1 } else { 2 })),
        other => Err(TranscodeError::Package(format!("no codec string for {other:?}"))),
    }
}

/// `avc1.PPCCLL` from an `avcC` record, or from the SPS of Annex B extradata.
pub(crate) fn avc1(extradata: &[u8]) -> Result<String> {
    let sps = match extradata {
        // avcC: version 1, then profile, compatibility, level.
        [1, p, c, l, ..] => [*p, *c, *l],
        _ => {
            let start = extradata
                .windows(4)
                .position(|w| w == [0, 0, 0, 1] || w[..3] == [0, 0, 1])
                .ok_or_else(|| TranscodeError::Package("no H.264 configuration in the stream".into()))?;
            let after = if extradata[start..].starts_with(&[0, 0, 0, 1]) {
                start + 4
            } else {
                start + 3
            };
            match extradata.get(after..after + 4) {
                Some([nal, p, c, l]) if nal & 0x1f == 7 => [*p, *c, *l],
                _ => return Err(TranscodeError::Package("no H.264 SPS in the stream".into())),
            }
        }
    };
    Ok(format!("avc1.{:02x}{:02x}{:02x}", sps[0], sps[1], sps[2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_avc1_string_comes_from_the_configuration_record_or_the_sps() {
        // High profile (100 = 0x64), no constraints, level 3.1 (31 = 0x1f).
        assert_eq!(avc1(&[1, 0x64, 0x00, 0x1f, 0xff, 0xe1]).unwrap(), "avc1.64001f");
        assert_eq!(
            avc1(&[0, 0, 0, 1, 0x67, 0x4d, 0x40, 0x28, 0xaa]).unwrap(),
            "avc1.4d4028"
        );
        assert!(avc1(&[]).is_err());
        assert!(avc1(&[0, 0, 0, 1, 0x68, 1, 2, 3]).is_err(), "a PPS is not an SPS");
    }
}
