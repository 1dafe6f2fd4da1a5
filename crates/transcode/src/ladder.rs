//! The encoding ladder: H.264 and AAC settings per rendition size.
//!
//! Every rung uses capped CRF: constant quality (`crf`) for efficient files, with a VBV cap
//! (`maxrate`, `bufsize` = 2 × maxrate) so a rendition never exceeds what its size is streamed at.
//! Keyframes come every [`KEYFRAME_SECONDS`] with scene-cut keyframes off, so the renditions of
//! one source have their keyframes on the same frames and can later be packaged together for
//! adaptive streaming (HLS/DASH) without re-encoding. Audio is encoded once per source, AAC-LC
//! stereo at [`AUDIO_BITRATE`], and shared by every rendition.

/// Seconds between keyframes (the GOP length), the same in every rendition.
pub const KEYFRAME_SECONDS: f64 = 2.0;
/// x264's speed/efficiency trade-off used for every rendition.
pub const DEFAULT_PRESET: &str = "veryfast";
/// Constant-quality target (lower is better and larger).
pub const DEFAULT_CRF: u8 = 23;
/// AAC-LC bit rate, in bits per second, for stereo.
pub const AUDIO_BITRATE: usize = 128_000;
/// Highest audio sample rate kept; higher rates are resampled to it.
pub const MAX_AUDIO_SAMPLE_RATE: u32 = 48_000;

/// The settings of one rung.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rung {
    /// The short side of the picture this rung is for.
    pub short_side: u32,
    /// The VBV maximum rate, in kbit/s.
    pub maxrate_kbps: u32,
}

/// The ladder, smallest first. A size between rungs uses the next rung up.
pub const LADDER: [Rung; 6] = [
    Rung {
        short_side: 360,
        maxrate_kbps: 1_000,
    },
    Rung {
        short_side: 480,
        maxrate_kbps: 1_800,
    },
    Rung {
        short_side: 720,
        maxrate_kbps: 4_000,
    },
    Rung {
        short_side: 1080,
        maxrate_kbps: 7_000,
    },
    Rung {
        short_side: 1440,
        maxrate_kbps: 12_000,
    },
    Rung {
        short_side: 2160,
        maxrate_kbps: 20_000,
    },
];

/// The rung for an output whose short side is `short_side` pixels.
pub fn rung_for(short_side: u32) -> Rung {
    LADDER
        .into_iter()
        .find(|r| short_side <= r.short_side)
        .unwrap_or(LADDER[LADDER.len() - 1])
}

/// The x264 settings for one rendition, as the options libavcodec's libx264 wrapper takes them.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoSettings {
    /// x264 preset.
    pub preset: String,
    /// Constant-quality target.
    pub crf: u8,
    /// VBV maximum rate, kbit/s.
    pub maxrate_kbps: u32,
    /// VBV buffer, kbit.
    pub bufsize_kbits: u32,
    /// Frames between keyframes.
    pub keyint: u32,
    /// How full the VBV buffer is when the encode starts, as a share of it (x264's `vbv-init`);
    /// `None`: x264's own (0.9), right for the start of a video.
    pub vbv_init: Option<f64>,
}

impl VideoSettings {
    /// Settings for an output with short side `short_side` at `fps` frames per second.
    pub fn new(short_side: u32, fps: f64, preset: &str, crf: u8) -> Self {
        let rung = rung_for(short_side);
        Self {
            preset: preset.to_owned(),
            crf,
            maxrate_kbps: rung.maxrate_kbps,
            bufsize_kbits: rung.maxrate_kbps * 2,
            keyint: keyint_for(fps),
            vbv_init: None,
        }
    }

    /// The `x264-params` string: GOP and VBV, scene-cut keyframes off so renditions align, and
    /// closed GOPs (every keyframe an IDR, libavcodec asks x264 for open ones unless told), so
    /// that a segment or a chunk starting at a keyframe needs nothing before it.
    pub fn x264_params(&self) -> String {
        let params = format!(
            "keyint={k}:min-keyint={k}:scenecut=0:open-gop=0:vbv-maxrate={m}:vbv-bufsize={b}",
            k = self.keyint,
            m = self.maxrate_kbps,
            b = self.bufsize_kbits
        );
        match self.vbv_init {
            Some(v) => format!("{params}:vbv-init={v}"),
            None => params,
        }
    }

    /// A one-line description for logs and reports.
    pub fn describe(&self) -> String {
        format!(
            "libx264 preset={} crf={} profile=high {}",
            self.preset,
            self.crf,
            self.x264_params()
        )
    }
}

/// Frames in [`KEYFRAME_SECONDS`] at `fps`, for a frame rate that may be unknown (0) or absurd.
pub fn keyint_for(fps: f64) -> u32 {
    let fps = if fps.is_finite() && (1.0..=240.0).contains(&fps) {
        fps
    } else {
        30.0
    };
    ((fps * KEYFRAME_SECONDS).round() as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_quality_has_its_rung_and_in_between_sizes_round_up() {
        assert_eq!(rung_for(480).maxrate_kbps, 1_800);
        assert_eq!(rung_for(240).short_side, 360);
        assert_eq!(rung_for(576).short_side, 720);
        assert_eq!(rung_for(4320).short_side, 2160);
    }

    #[test]
    fn keyframes_come_every_two_seconds() {
        assert_eq!(keyint_for(30000.0 / 1001.0), 60);
        assert_eq!(keyint_for(25.0), 50);
        assert_eq!(keyint_for(60.0), 120);
        assert_eq!(keyint_for(0.0), 60);
        assert_eq!(keyint_for(f64::NAN), 60);
    }

    #[test]
    fn x264_params_carry_gop_and_vbv() {
        let s = VideoSettings::new(720, 25.0, DEFAULT_PRESET, DEFAULT_CRF);
        assert_eq!(
            s.x264_params(),
            "keyint=50:min-keyint=50:scenecut=0:open-gop=0:vbv-maxrate=4000:vbv-bufsize=8000"
        );
    }
}
