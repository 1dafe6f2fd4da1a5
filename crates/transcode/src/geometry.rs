//! Picture geometry: which way up a video is shown, its displayed size, and the rendition size.
//!
//! Pure arithmetic, so every rule of the contract is unit-tested here: rotation and reflection from
//! the container's display matrix, sample aspect ratio applied (square pixels), the quality naming
//! the short side, even dimensions, and never upscaling.

/// How a decoded picture must be turned to be shown upright, as filters for libavfilter.
///
/// Derived from the stream's display matrix the way the `ffmpeg` tool's autorotation does it, so
/// a file plays the same after our transcode as it does in a player that honours the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Orientation {
    /// A `transpose` filter direction (`clock`, `cclock`, `clock_flip`, `cclock_flip`), which
    /// swaps width and height.
    pub transpose: Option<&'static str>,
    /// Mirror left to right.
    pub hflip: bool,
    /// Mirror top to bottom.
    pub vflip: bool,
    /// The rotation the matrix asks for, in degrees counter-clockwise as `ffprobe` prints it
    /// (a phone portrait clip is usually -90); kept for reports.
    pub rotation_degrees: i32,
}

impl Orientation {
    /// The orientation for a display matrix (nine 16.16/2.30 fixed-point numbers), or upright when
    /// there is none.
    pub fn from_display_matrix(matrix: Option<[i32; 9]>) -> Self {
        let Some(m) = matrix else {
            return Self::default();
        };
        let Some(rotation) = display_rotation(&m) else {
            return Self::default();
        };
        // The angle to turn the picture clockwise, normalised to [0, 360).
        let mut theta = -rotation.round();
        theta -= 360.0 * (theta / 360.0 + 0.9 / 360.0).floor();
        let near = |a: f64| (theta - a).abs() < 1.0;
        let mut o = Self {
            rotation_degrees: rotation.round() as i32,
            ..Self::default()
        };
        if near(90.0) {
            o.transpose = Some(if m[3] > 0 { "cclock_flip" } else { "clock" });
        } else if near(180.0) {
            o.hflip = m[0] < 0;
            o.vflip = m[4] < 0;
        } else if near(270.0) {
            o.transpose = Some(if m[3] < 0 { "clock_flip" } else { "cclock" });
        } else if theta.abs() < 1.0 || near(360.0) {
            o.vflip = m[4] < 0;
        }
        // Any other angle (not a multiple of 90°) is left as stored: phones and cameras do not
        // write such matrices, and turning by an arbitrary angle would need a larger canvas.
        o
    }

    /// Whether the shown picture has width and height swapped relative to the stored one.
    pub fn swaps_dimensions(&self) -> bool {
        self.transpose.is_some()
    }

    /// The filters that apply this orientation, comma separated, or `None` when upright.
    pub fn filters(&self) -> Option<String> {
        let mut f: Vec<String> = Vec::new();
        if let Some(t) = self.transpose {
            f.push(format!("transpose=dir={t}"));
        }
        if self.hflip {
            f.push("hflip".into());
        }
        if self.vflip {
            f.push("vflip".into());
        }
        (!f.is_empty()).then(|| f.join(","))
    }
}

/// The rotation of a display matrix in degrees counter-clockwise, like libavutil's
/// `av_display_rotation_get`; `None` for a degenerate matrix.
fn display_rotation(m: &[i32; 9]) -> Option<f64> {
    let fp = |x: i32| f64::from(x) / 65536.0;
    let scale0 = fp(m[0]).hypot(fp(m[3]));
    let scale1 = fp(m[1]).hypot(fp(m[4]));
    if scale0 == 0.0 || scale1 == 0.0 {
        return None;
    }
    let rotation = (fp(m[1]) / scale1).atan2(fp(m[0]) / scale0).to_degrees();
    Some(-rotation)
}

/// The displayed size of a picture: sample aspect ratio applied to the width (as players do), then
/// width and height swapped when the orientation turns it by 90°.
pub fn display_size(width: u32, height: u32, sar: (i32, i32), orientation: &Orientation) -> (f64, f64) {
    let (num, den) = sar;
    let w = if num > 0 && den > 0 {
        f64::from(width) * f64::from(num) / f64::from(den)
    } else {
        f64::from(width)
    };
    let h = f64::from(height);
    if orientation.swaps_dimensions() { (h, w) } else { (w, h) }
}

/// The rendition size for a displayed size and a quality's short side: the short side becomes
/// `short_side` (or stays as it is when the source is smaller: never upscale), the long side keeps
/// the displayed aspect ratio, and both are even (H.264 4:2:0 needs it), at least 2.
pub fn rendition_size(display: (f64, f64), short_side: u32) -> (u32, u32) {
    let (w, h) = display;
    let portrait = h > w;
    let (short, long) = if portrait { (w, h) } else { (h, w) };
    let floor_even = |x: f64| ((x / 2.0).floor() as u32 * 2).max(2);
    let round_even = |x: f64| ((x / 2.0).round() as u32 * 2).max(2);
    let new_short = if f64::from(short_side) < short {
        short_side & !1
    } else {
        floor_even(short)
    };
    let new_long = round_even(long * f64::from(new_short) / short).min(floor_even(long));
    if portrait {
        (new_short, new_long)
    } else {
        (new_long, new_short)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: i32 = 1 << 16;
    const W: i32 = 1 << 30;

    fn matrix(a: i32, b: i32, c: i32, d: i32) -> [i32; 9] {
        [a, b, 0, c, d, 0, 0, 0, W]
    }

    #[test]
    fn no_matrix_or_identity_means_upright() {
        assert_eq!(Orientation::from_display_matrix(None), Orientation::default());
        let o = Orientation::from_display_matrix(Some(matrix(ONE, 0, 0, ONE)));
        assert_eq!(o.filters(), None);
        assert!(!o.swaps_dimensions());
    }

    #[test]
    fn a_phone_portrait_matrix_turns_clockwise_and_swaps_dimensions() {
        // What phones write for a portrait capture: ffprobe prints rotation -90.
        let o = Orientation::from_display_matrix(Some(matrix(0, ONE, -ONE, 0)));
        assert_eq!(o.rotation_degrees, -90);
        assert_eq!(o.transpose, Some("clock"));
        assert!(o.swaps_dimensions());
        assert_eq!(o.filters().as_deref(), Some("transpose=dir=clock"));
    }

    #[test]
    fn rotation_90_turns_counter_clockwise() {
        let o = Orientation::from_display_matrix(Some(matrix(0, -ONE, ONE, 0)));
        assert_eq!(o.rotation_degrees, 90);
        assert_eq!(o.transpose, Some("cclock"));
    }

    #[test]
    fn rotation_180_flips_both_ways() {
        let o = Orientation::from_display_matrix(Some(matrix(-ONE, 0, 0, -ONE)));
        assert_eq!(o.filters().as_deref(), Some("hflip,vflip"));
        assert!(!o.swaps_dimensions());
    }

    #[test]
    fn rotation_with_reflection_uses_a_flipping_transpose() {
        // Rotation -90 plus a mirror: ffprobe shows -90, the matrix's determinant is negative.
        let o = Orientation::from_display_matrix(Some(matrix(0, ONE, ONE, 0)));
        assert_eq!(o.transpose, Some("cclock_flip"));
        let o = Orientation::from_display_matrix(Some(matrix(0, -ONE, -ONE, 0)));
        assert_eq!(o.transpose, Some("clock_flip"));
    }

    #[test]
    fn a_vertical_mirror_alone_is_a_vflip() {
        let o = Orientation::from_display_matrix(Some(matrix(ONE, 0, 0, -ONE)));
        assert_eq!(o.filters().as_deref(), Some("vflip"));
    }

    #[test]
    fn a_degenerate_matrix_is_ignored() {
        let o = Orientation::from_display_matrix(Some([0; 9]));
        assert_eq!(o, Orientation::default());
    }

    #[test]
    fn sample_aspect_ratio_widens_the_displayed_picture() {
        let up = Orientation::default();
        assert_eq!(display_size(720, 576, (64, 45), &up), (1024.0, 576.0));
        assert_eq!(display_size(640, 480, (0, 1), &up), (640.0, 480.0));
        let turned = Orientation::from_display_matrix(Some(matrix(0, ONE, -ONE, 0)));
        assert_eq!(display_size(1920, 1080, (1, 1), &turned), (1080.0, 1920.0));
    }

    #[test]
    fn the_quality_names_the_short_side() {
        assert_eq!(rendition_size((1280.0, 720.0), 480), (854, 480));
        assert_eq!(rendition_size((1920.0, 1080.0), 720), (1280, 720));
        assert_eq!(rendition_size((1080.0, 1920.0), 720), (720, 1280));
        assert_eq!(rendition_size((3840.0, 2160.0), 1080), (1920, 1080));
        assert_eq!(rendition_size((1024.0, 576.0), 480), (854, 480));
    }

    #[test]
    fn a_smaller_source_is_never_upscaled() {
        assert_eq!(rendition_size((1280.0, 720.0), 1080), (1280, 720));
        assert_eq!(rendition_size((320.0, 240.0), 720), (320, 240));
        assert_eq!(rendition_size((426.0, 240.0), 2160), (426, 240));
    }

    #[test]
    fn odd_sizes_become_even_without_growing() {
        assert_eq!(rendition_size((161.0, 121.0), 360), (160, 120));
        assert_eq!(rendition_size((1081.0, 721.0), 720), (1080, 720));
        assert_eq!(rendition_size((3.0, 3.0), 360), (2, 2));
    }

    #[test]
    fn every_result_is_even_and_keeps_the_aspect_ratio() {
        for (w, h) in [
            (1080.0, 720.0),
            (960.0, 400.0),
            (176.0, 144.0),
            (640.0, 428.0),
            (1137.8, 480.0),
        ] {
            for q in [360, 480, 720, 1080] {
                let (rw, rh) = rendition_size((w, h), q);
                assert_eq!((rw % 2, rh % 2), (0, 0), "{w}x{h}@{q}");
                assert!(f64::from(rw) <= w + 1.0 && f64::from(rh) <= h + 1.0, "{w}x{h}@{q} grew");
                let (aspect_in, aspect_out) = (w / h, f64::from(rw) / f64::from(rh));
                assert!(
                    (aspect_in - aspect_out).abs() / aspect_in < 0.02,
                    "{w}x{h}@{q}: {rw}x{rh}"
                );
            }
        }
    }
}
