//! The plan of a split encode: where the chunks begin and end, on the output's keyframe grid.
//!
//! Every rendition has a keyframe every [`KEYFRAME_SECONDS`](crate::ladder::KEYFRAME_SECONDS)
//! ([`keyint_for`] frames, counted from the first output frame, scene cuts off). A chunk starting
//! on a multiple of that GOP starts with the keyframe the unsplit encode would have put there,
//! and its own GOPs fall on the same frames after it: the stitched file has the unsplit one's
//! keyframe grid. Boundaries are output frame indices (the pipeline outputs every decoded frame,
//! timed as in the source from zero), and the same instants in seconds at the source's nominal
//! frame rate.
//!
//! Pure arithmetic: no FFmpeg object lives here.

use serde::{Deserialize, Serialize};

use crate::error::{Result, TranscodeError};
use crate::ladder::keyint_for;
use crate::pipeline::nominal_fps;
use crate::probe::MediaInfo;

/// The layout of [`Plan`] and [`Chunk`]; [`Plan::validate`] refuses a plan of another version.
pub const PLAN_VERSION: u32 = 1;

/// How a source is cut into chunks. Stored as JSON beside the outputs, so that a redelivered
/// request finds it again and every chunk of one output comes from one plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// [`PLAN_VERSION`] when it was made.
    pub version: u32,
    /// Names this plan: a digest of everything below, so two plans of the same source with the
    /// same settings have the same id, and a chunk of another plan is told apart.
    pub id: String,
    /// The source's nominal frame rate, frames per second (what the pipeline plans with).
    pub frame_rate: f64,
    /// Frames per GOP: the keyframe grid every chunk boundary is on.
    pub keyint: u32,
    /// The output frames expected (as the source announces them): the last chunk's end.
    pub frames: u64,
    /// The chunk length asked for, in seconds.
    pub split_seconds: f64,
    /// The chunks, in order, covering `0..frames` without gap or overlap.
    pub chunks: Vec<Chunk>,
}

/// One chunk of a [`Plan`]: what one Job encodes. Self-contained, so a chunk message can carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// The [`Plan::id`] it belongs to.
    pub plan_id: String,
    /// Its place, from 0.
    pub index: usize,
    /// How many chunks the plan has.
    pub count: usize,
    /// The first output frame, a multiple of the plan's `keyint`.
    pub start_frame: u64,
    /// The output frame after the last one. For the last chunk, what the source announces: it
    /// runs to whatever end the source really has.
    pub end_frame: u64,
    /// `start_frame` in seconds from the output's first frame (which is where the source's video
    /// starts: a few frames after the input's start in some transport streams).
    pub start_seconds: f64,
    /// `end_frame` in seconds from the output's first frame.
    pub end_seconds: f64,
    /// The plan's frame rate, for the half-frame margins of the cuts.
    pub frame_rate: f64,
}

impl Plan {
    /// Refuses a plan (read back from storage, say) that this code did not make or that does not
    /// hold together: another [`PLAN_VERSION`], chunks of another plan, out of order, not on the
    /// keyframe grid, or not covering `0..frames` exactly.
    ///
    /// # Errors
    ///
    /// [`TranscodeError::Chunk`], saying what is wrong.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(TranscodeError::Chunk(format!("plan {}: {why}", self.id)));
        if self.version != PLAN_VERSION {
            return bad(format!(
                "version {} where this encoder reads {PLAN_VERSION}",
                self.version
            ));
        }
        if self.chunks.is_empty() || self.keyint == 0 {
            return bad("no chunk".into());
        }
        let mut at = 0;
        for (i, c) in self.chunks.iter().enumerate() {
            if c.plan_id != self.id || c.index != i || c.count != self.chunks.len() {
                return bad(format!(
                    "chunk {i} says it is chunk {} of {} of plan {}",
                    c.index, c.count, c.plan_id
                ));
            }
            if c.start_frame != at || c.end_frame <= c.start_frame || c.start_frame % u64::from(self.keyint) != 0 {
                return bad(format!(
                    "chunk {i} covers frames {}..{} where the chunks before end at {at} (GOPs of {})",
                    c.start_frame, c.end_frame, self.keyint
                ));
            }
            at = c.end_frame;
        }
        if at != self.frames {
            return bad(format!("the chunks end at frame {at}, the source at {}", self.frames));
        }
        Ok(())
    }
}

impl Chunk {
    /// Whether it is the plan's last chunk, which runs to the end of the source.
    pub fn is_last(&self) -> bool {
        self.index + 1 == self.count
    }

    /// The frames it should hold (for the last chunk, as the source announces).
    pub fn frames(&self) -> u64 {
        self.end_frame.saturating_sub(self.start_frame)
    }

    /// Where the chunk's pictures begin and end, in seconds of the output: half a frame before
    /// each boundary, so a timestamp rounded either way falls on the right side. The first chunk
    /// takes everything before its end, the last everything after its start.
    pub(crate) fn cuts(&self) -> (f64, Option<f64>) {
        let half = 0.5 / self.frame_rate;
        let start = if self.index == 0 {
            f64::NEG_INFINITY
        } else {
            self.start_seconds - half
        };
        let end = (!self.is_last()).then_some(self.end_seconds - half);
        (start, end)
    }
}

/// The plan for `info`'s video in chunks of about `split_seconds`, or `None` when it is not worth
/// splitting: `split_seconds` is 0 (or not a positive number), the source has no video or no
/// known length, or it is shorter than two chunks.
///
/// Chunks are whole GOPs, as many as make them closest to `split_seconds`, the GOPs shared out
/// evenly (the first chunks take one more when they do not divide).
pub fn plan(info: &MediaInfo, split_seconds: f64) -> Option<Plan> {
    if !(split_seconds.is_finite() && split_seconds > 0.0) {
        return None;
    }
    let video = info.video.as_ref()?;
    let fps = nominal_fps(video);
    let frames = match video.frames.filter(|f| *f > 0) {
        Some(f) => f,
        None => {
            let seconds = video.duration_seconds.or(info.duration_seconds)?;
            (seconds * fps).round() as u64
        }
    };
    if (frames as f64) < 2.0 * split_seconds * fps {
        return None;
    }
    let keyint = keyint_for(fps);
    let gop = u64::from(keyint);
    let gops = frames.div_ceil(gop);
    let per_chunk = (split_seconds * fps / gop as f64).max(1.0);
    let count = ((gops as f64 / per_chunk).round() as u64).clamp(2, gops.max(2));
    if gops < count {
        return None;
    }
    let mut starts = Vec::with_capacity(count as usize + 1);
    let mut at = 0u64;
    for i in 0..count {
        starts.push(at * gop);
        at += gops / count + u64::from(i < gops % count);
    }
    starts.push(frames);
    let id = plan_id(fps, keyint, frames, split_seconds, &starts);
    let chunks = starts
        .windows(2)
        .enumerate()
        .map(|(index, w)| Chunk {
            plan_id: id.clone(),
            index,
            count: count as usize,
            start_frame: w[0],
            end_frame: w[1],
            start_seconds: w[0] as f64 / fps,
            end_seconds: w[1] as f64 / fps,
            frame_rate: fps,
        })
        .collect();
    Some(Plan {
        version: PLAN_VERSION,
        id,
        frame_rate: fps,
        keyint,
        frames,
        split_seconds,
        chunks,
    })
}

/// `v{version}-` and a 64-bit FNV-1a digest of the plan's figures, in hex: stable across runs and
/// machines (unlike `std`'s hasher), which an id stored in S3 needs.
fn plan_id(fps: f64, keyint: u32, frames: u64, split_seconds: f64, starts: &[u64]) -> String {
    let text = format!("{fps}:{keyint}:{frames}:{split_seconds}:{starts:?}");
    let digest = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("v{PLAN_VERSION}-{digest:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::video_info;
    use crate::probe::VideoInfo;

    /// A 64x48 source at `fps` announcing `frames` and `seconds`.
    fn info(fps: f64, frames: Option<u64>, seconds: Option<f64>) -> MediaInfo {
        MediaInfo {
            format: "mov,mp4,m4a,3gp,3g2,mj2".into(),
            duration_seconds: seconds,
            video: Some(VideoInfo {
                frame_rate: fps,
                frames,
                duration_seconds: seconds,
                ..video_info(64, 48)
            }),
            audio: None,
            stream_count: 1,
        }
    }

    fn bounds(plan: &Plan) -> Vec<(u64, u64)> {
        plan.chunks.iter().map(|c| (c.start_frame, c.end_frame)).collect()
    }

    #[test]
    fn a_20_second_clip_in_6_second_chunks_is_three_chunks_of_whole_gops() {
        let plan = plan(&info(30.0, Some(600), Some(20.0)), 6.0).unwrap();
        assert_eq!((plan.version, plan.keyint, plan.frames), (PLAN_VERSION, 60, 600));
        // Ten 2 s GOPs shared by three chunks: 4, 3, 3.
        assert_eq!(bounds(&plan), [(0, 240), (240, 420), (420, 600)]);
        let c = &plan.chunks[1];
        assert_eq!((c.index, c.count, c.start_seconds, c.end_seconds), (1, 3, 8.0, 14.0));
        assert!(
            plan.chunks
                .iter()
                .all(|c| c.plan_id == plan.id && c.start_frame % 60 == 0)
        );
        assert!(plan.chunks[2].is_last() && !plan.chunks[1].is_last());
        assert_eq!(plan.chunks.iter().map(Chunk::frames).sum::<u64>(), 600);
    }

    #[test]
    fn a_length_that_is_not_whole_gops_ends_in_a_shorter_last_gop() {
        let plan = plan(&info(25.0, Some(1_010), None), 10.0).unwrap();
        // 50-frame GOPs: 21 of them (the last of 10 frames), four chunks of about 10 s.
        assert_eq!(bounds(&plan), [(0, 300), (300, 550), (550, 800), (800, 1_010)]);
    }

    #[test]
    fn the_frame_count_comes_from_the_duration_when_the_source_announces_none() {
        let plan = plan(&info(30_000.0 / 1_001.0, None, Some(60.06)), 20.0).unwrap();
        assert_eq!(plan.frames, 1_800);
        assert_eq!(plan.keyint, 60);
        assert_eq!(bounds(&plan), [(0, 600), (600, 1_200), (1_200, 1_800)]);
        assert!((plan.chunks[1].start_seconds - 20.02).abs() < 1e-9);
    }

    #[test]
    fn nothing_is_split_when_splitting_is_off_the_source_is_short_or_its_length_unknown() {
        let twenty = info(30.0, Some(600), Some(20.0));
        assert!(plan(&twenty, 0.0).is_none());
        assert!(plan(&twenty, -1.0).is_none());
        assert!(plan(&twenty, f64::NAN).is_none());
        // 20 s is shorter than two 10.5 s chunks, and not than two 10 s ones.
        assert!(plan(&twenty, 10.5).is_none());
        assert_eq!(plan(&twenty, 10.0).unwrap().chunks.len(), 2);
        assert!(plan(&info(30.0, None, None), 6.0).is_none());
        let mut no_video = twenty.clone();
        no_video.video = None;
        assert!(plan(&no_video, 6.0).is_none());
    }

    #[test]
    fn chunks_shorter_than_a_gop_are_never_asked_for() {
        let plan = plan(&info(30.0, Some(600), None), 0.5).unwrap();
        assert_eq!(plan.chunks.len(), 10);
        assert!(plan.chunks.iter().all(|c| c.frames() == 60));
    }

    #[test]
    fn a_chunk_is_cut_half_a_frame_before_its_boundaries() {
        let plan = plan(&info(25.0, Some(500), None), 6.0).unwrap();
        let [first, middle, last] = &plan.chunks[..] else {
            panic!("{plan:?}")
        };
        assert_eq!(first.cuts(), (f64::NEG_INFINITY, Some(first.end_seconds - 0.02)));
        assert_eq!(
            middle.cuts(),
            (middle.start_seconds - 0.02, Some(middle.end_seconds - 0.02))
        );
        assert_eq!(last.cuts(), (last.start_seconds - 0.02, None));
    }

    #[test]
    fn a_plan_read_back_is_refused_unless_it_holds_together() {
        let good = plan(&info(30.0, Some(600), None), 6.0).unwrap();
        assert!(good.validate().is_ok());
        let refused = |change: &dyn Fn(&mut Plan)| {
            let mut p = good.clone();
            change(&mut p);
            match p.validate() {
                Err(TranscodeError::Chunk(why)) => why,
                other => panic!("{other:?}"),
            }
        };
        assert!(refused(&|p| p.version = 2).contains("version 2 where this encoder reads 1"));
        assert!(refused(&|p| p.chunks[1].plan_id = "v1-other".into()).contains("of plan v1-other"));
        assert!(refused(&|p| p.chunks.swap(0, 1)).contains("chunk 0 says it is chunk 1"));
        assert!(refused(&|p| p.chunks[1].start_frame = 250).contains("chunk 1 covers frames 250..420"));
        assert!(refused(&|p| p.frames = 700).contains("the chunks end at frame 600, the source at 700"));
        assert!(refused(&|p| p.chunks.clear()).contains("no chunk"));
    }

    #[test]
    fn a_plan_survives_json_and_its_id_names_its_figures() {
        let a = plan(&info(30.0, Some(600), None), 6.0).unwrap();
        let json = serde_json::to_string(&a).unwrap();
        assert!(json.contains("\"version\":1"), "{json}");
        let back: Plan = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);
        assert!(back.validate().is_ok());
        assert_eq!(plan(&info(30.0, Some(600), None), 6.0).unwrap().id, a.id);
        assert_ne!(plan(&info(30.0, Some(601), None), 6.0).unwrap().id, a.id);
        assert_ne!(plan(&info(30.0, Some(600), None), 4.0).unwrap().id, a.id);
        assert!(a.id.starts_with("v1-") && a.id.len() == 19, "{}", a.id);
    }
}
