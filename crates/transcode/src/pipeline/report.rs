//! What a transcode tells its caller: [`Progress`] while it runs, a [`TranscodeReport`] when it
//! is done, and the count of the video decode both are made from ([`DecodeStats`]), with the
//! policy that decides whether that decode was complete and whole enough to publish.
//!
//! Plain arithmetic on counts and timestamps: no FFmpeg object lives here, so every rule is
//! unit-tested without media.

use std::path::PathBuf;
use std::time::Duration;

use ffmpeg_next::Rational;
use serde::Serialize;

use super::time::ts_seconds;
use crate::error::{Result, TranscodeError};
use crate::probe::{MediaInfo, VideoInfo};

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

/// The count of the video decode: frames, errors, and the timestamps the frames were given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct DecodeStats {
    /// Frames decoded.
    pub(super) frames: u64,
    /// Packets the decoder refused, frames it could not give, and frames it concealed damage in.
    pub(super) errors: u64,
    /// The first frame's timestamp, in `time_base` units.
    pub(super) first_pts: Option<i64>,
    /// The latest frame's timestamp, in `time_base` units.
    pub(super) last_pts: Option<i64>,
    /// A frame's nominal duration in `time_base` units, for frames without a timestamp.
    pub(super) frame_step: i64,
    /// The video stream's time base.
    pub(super) time_base: Rational,
}

impl DecodeStats {
    /// Nothing decoded yet, from a stream in `time_base` whose frames last `frame_step`.
    pub(super) fn new(time_base: Rational, frame_step: i64) -> Self {
        Self {
            frames: 0,
            errors: 0,
            first_pts: None,
            last_pts: None,
            frame_step,
            time_base,
        }
    }

    /// Counts one decoded frame and gives its timestamp: its own `ts` (already moved to start at
    /// zero), or one step after the last frame when it has none, and always after the last one:
    /// encoders need strictly increasing timestamps, and a variable-frame-rate or damaged source
    /// may repeat one.
    pub(super) fn next_frame(&mut self, ts: Option<i64>) -> i64 {
        self.frames += 1;
        let pts = match ts {
            Some(t) => t,
            None => self.last_pts.map_or(0, |p| p + self.frame_step),
        };
        let pts = match self.last_pts {
            Some(last) if pts <= last => last + 1,
            _ => pts,
        };
        self.first_pts.get_or_insert(pts);
        self.last_pts = Some(pts);
        pts
    }

    /// The span of decoded video, in seconds, the last frame's duration included.
    pub(super) fn span_seconds(&self) -> f64 {
        match (self.first_pts, self.last_pts) {
            (Some(first), Some(last)) => ts_seconds(last - first + self.frame_step, self.time_base),
            _ => 0.0,
        }
    }

    /// Where the decoded video ends, in seconds from the start of the input.
    pub(super) fn end_seconds(&self) -> f64 {
        self.last_pts
            .map_or(0.0, |last| ts_seconds(last + self.frame_step, self.time_base))
    }

    /// The progress so far, `elapsed` after the transcode started.
    pub(super) fn progress(&self, duration: Option<f64>, elapsed: Duration) -> Progress {
        let elapsed = elapsed.as_secs_f64().max(1e-6);
        Progress {
            frames: self.frames,
            position_seconds: self.last_pts.map_or(0.0, |p| ts_seconds(p, self.time_base)),
            duration_seconds: duration,
            fps: self.frames as f64 / elapsed,
        }
    }

    /// Rejects a decode that ended early or was too damaged (see [`tolerated_errors`] and
    /// [`MIN_DECODED_SHARE`]), against what the stream (`info`) and the container
    /// (`container_seconds`) announce.
    pub(super) fn check_complete(&self, info: &VideoInfo, container_seconds: Option<f64>) -> Result<()> {
        if self.frames == 0 {
            return Err(TranscodeError::Undecodable(format!(
                "no frame could be decoded ({} decode errors)",
                self.errors
            )));
        }
        if let Some(announced) = info.frames {
            if (self.frames as f64) < announced as f64 * MIN_DECODED_SHARE {
                return Err(TranscodeError::Truncated(format!(
                    "{} of {} announced frames decoded ({:.2} s of {:.2} s)",
                    self.frames,
                    announced,
                    self.span_seconds(),
                    info.duration_seconds.or(container_seconds).unwrap_or(0.0)
                )));
            }
        } else if let Some(announced) = info.duration_seconds.or(container_seconds) {
            let end = self.end_seconds();
            if end < announced * MIN_DECODED_SHARE && announced - end > 0.5 {
                return Err(TranscodeError::Truncated(format!(
                    "the video stops at {end:.2} s of the {announced:.2} s announced ({} frames decoded)",
                    self.frames
                )));
            }
        }
        self.check_damage()
    }

    /// Rejects a decode with more errors than [`tolerated_errors`] allows for what it decoded:
    /// the part of [`check_complete`](Self::check_complete) that holds for a window of the source
    /// too (whose length is not the announced one).
    pub(super) fn check_damage(&self) -> Result<()> {
        let allowed = tolerated_errors(self.frames);
        if self.errors > allowed {
            return Err(TranscodeError::Damaged {
                errors: self.errors,
                decoded: self.frames,
                allowed,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::video_info;
    use super::*;

    /// 25 frames per second in a 1/12800 time base, as libavformat gives an MP4 at 25 fps.
    fn stats() -> DecodeStats {
        DecodeStats::new(Rational::new(1, 12_800), 512)
    }

    /// `frames` decoded at their nominal timestamps, `errors` of them damaged.
    fn decoded(frames: i64, errors: u64) -> DecodeStats {
        let mut s = stats();
        for i in 0..frames {
            s.next_frame(Some(i * 512));
        }
        s.errors = errors;
        s
    }

    fn video(frames: Option<u64>, duration_seconds: Option<f64>) -> VideoInfo {
        VideoInfo {
            frames,
            duration_seconds,
            ..video_info(64, 48)
        }
    }

    #[test]
    fn percent_needs_a_known_duration_and_stays_between_0_and_100() {
        let at = |position_seconds, duration_seconds| Progress {
            frames: 1,
            position_seconds,
            duration_seconds,
            fps: 1.0,
        };
        assert_eq!(at(5.0, Some(20.0)).percent(), Some(25.0));
        assert_eq!(at(21.0, Some(20.0)).percent(), Some(100.0));
        assert_eq!(at(-1.0, Some(20.0)).percent(), Some(0.0));
        assert_eq!(at(5.0, Some(0.0)).percent(), None);
        assert_eq!(at(5.0, None).percent(), None);
    }

    #[test]
    fn five_errors_are_tolerated_then_five_percent() {
        for (frames, tolerated) in [(0, 5), (119, 5), (120, 6), (1_000, 50)] {
            assert_eq!(tolerated_errors(frames), tolerated, "for {frames} frames");
        }
    }

    #[test]
    fn frames_keep_their_timestamps_and_a_repeated_or_missing_one_moves_forward() {
        let mut s = stats();
        assert_eq!(s.next_frame(None), 0);
        assert_eq!(s.next_frame(Some(512)), 512);
        assert_eq!(s.next_frame(Some(512)), 513, "a repeat moves one unit on");
        assert_eq!(s.next_frame(Some(100)), 514, "a step back moves one unit on");
        assert_eq!(s.next_frame(None), 1_026, "a missing one is a frame step on");
        assert_eq!(s.next_frame(Some(5_120)), 5_120, "a gap is kept");
        assert_eq!((s.frames, s.first_pts, s.last_pts), (6, Some(0), Some(5_120)));
    }

    #[test]
    fn the_span_and_the_end_count_the_last_frame_in_full() {
        let s = decoded(50, 0);
        assert_eq!(s.span_seconds(), 2.0);
        assert_eq!(s.end_seconds(), 2.0);
        let mut late = stats();
        late.next_frame(Some(12_800));
        late.next_frame(Some(13_312));
        assert_eq!(late.span_seconds(), 0.08);
        assert_eq!(late.end_seconds(), 1.08);
        assert_eq!(stats().span_seconds(), 0.0);
        assert_eq!(stats().end_seconds(), 0.0);
    }

    #[test]
    fn progress_is_the_latest_position_and_frames_per_second_of_wall_time() {
        let p = decoded(50, 0).progress(Some(4.0), Duration::from_secs(2));
        assert_eq!(p.frames, 50);
        assert!((p.position_seconds - 1.96).abs() < 1e-9, "{p:?}");
        assert_eq!(p.duration_seconds, Some(4.0));
        assert_eq!(p.fps, 25.0);
        assert!(stats().progress(None, Duration::ZERO).fps.is_finite());
    }

    #[test]
    fn a_decode_with_no_frame_is_undecodable() {
        let err = decoded(0, 3).check_complete(&video(None, None), None).unwrap_err();
        assert!(matches!(err, TranscodeError::Undecodable(_)), "{err:?}");
        assert!(
            err.to_string().contains("no frame could be decoded (3 decode errors)"),
            "{err}"
        );
    }

    #[test]
    fn fewer_than_nine_tenths_of_the_announced_frames_is_truncated() {
        let info = video(Some(100), Some(4.0));
        assert!(decoded(90, 0).check_complete(&info, None).is_ok());
        let err = decoded(89, 0).check_complete(&info, None).unwrap_err();
        assert!(matches!(err, TranscodeError::Truncated(_)), "{err:?}");
        assert!(
            err.to_string()
                .contains("89 of 100 announced frames decoded (3.56 s of 4.00 s)"),
            "{err}"
        );
    }

    #[test]
    fn without_a_frame_count_the_announced_duration_decides() {
        // 2 s decoded of 4 s: early by more than a tenth and by more than half a second.
        let err = decoded(50, 0)
            .check_complete(&video(None, Some(4.0)), None)
            .unwrap_err();
        assert!(
            err.to_string().contains("stops at 2.00 s of the 4.00 s announced"),
            "{err}"
        );
        // The container's duration stands in for the stream's.
        assert!(decoded(50, 0).check_complete(&video(None, None), Some(4.0)).is_err());
        assert!(decoded(90, 0).check_complete(&video(None, None), Some(4.0)).is_ok());
        // Short of nine tenths but by less than half a second: a short clip, not a cut-off one.
        assert!(decoded(10, 0).check_complete(&video(None, Some(0.8)), None).is_ok());
    }

    #[test]
    fn more_errors_than_tolerated_is_damage() {
        let info = video(Some(200), None);
        assert!(decoded(200, 10).check_complete(&info, None).is_ok());
        let err = decoded(200, 11).check_complete(&info, None).unwrap_err();
        assert!(
            matches!(
                err,
                TranscodeError::Damaged {
                    errors: 11,
                    decoded: 200,
                    allowed: 10
                }
            ),
            "{err:?}"
        );
    }
}
