//! Timestamps: moving them from one time base to another and reading them as seconds.
//!
//! Every stage counts time in the units of some stream (a time base such as 1/12800 or 1/48000);
//! these are the few conversions they share.

use ffmpeg_next::{Rational, ffi};

/// `ts` in `from` units, in `to` units (rounded to the nearest, as libavutil does).
pub(super) fn rescale(ts: i64, from: Rational, to: Rational) -> i64 {
    // SAFETY: pure arithmetic.
    unsafe { ffi::av_rescale_q(ts, from.into(), to.into()) }
}

/// `ts` in `tb` units, in seconds.
pub(crate) fn ts_seconds(ts: i64, tb: Rational) -> f64 {
    ts as f64 * f64::from(tb.numerator()) / f64::from(tb.denominator())
}

/// The input's start time (in microseconds, libavformat's unit) in `tb` units: what a stage
/// subtracts so that its output starts at zero.
pub(super) fn start_offset(start_us: i64, tb: Rational) -> i64 {
    rescale(start_us, Rational::new(1, ffi::AV_TIME_BASE), tb)
}

/// A frame's nominal duration at `fps` in `tb` units, at least one unit.
pub(super) fn frame_step(fps: f64, tb: Rational) -> i64 {
    let step = (f64::from(tb.denominator()) / (fps * f64::from(tb.numerator().max(1)))).round() as i64;
    step.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamp_keeps_its_instant_in_another_time_base() {
        assert_eq!(
            rescale(1_000, Rational::new(1, 1_000), Rational::new(1, 90_000)),
            90_000
        );
        assert_eq!(rescale(1, Rational::new(1, 3), Rational::new(1, 1_000)), 333);
        assert_eq!(rescale(2, Rational::new(1, 3), Rational::new(1, 1_000)), 667);
    }

    #[test]
    fn seconds_are_units_times_the_time_base() {
        assert_eq!(ts_seconds(25_600, Rational::new(1, 12_800)), 2.0);
        assert_eq!(ts_seconds(-1_024, Rational::new(1, 48_000)), -1_024.0 / 48_000.0);
    }

    #[test]
    fn the_start_offset_is_the_start_time_in_stream_units() {
        assert_eq!(start_offset(1_400_000, Rational::new(1, 90_000)), 126_000);
        assert_eq!(start_offset(0, Rational::new(1, 90_000)), 0);
    }

    #[test]
    fn a_frame_step_is_one_frame_in_stream_units_and_never_zero() {
        assert_eq!(frame_step(25.0, Rational::new(1, 12_800)), 512);
        assert_eq!(frame_step(30_000.0 / 1_001.0, Rational::new(1, 30_000)), 1_001);
        assert_eq!(frame_step(25.0, Rational::new(1, 25)), 1);
        assert_eq!(frame_step(60.0, Rational::new(1, 25)), 1);
    }
}
