//! What a play did ([`Report`]): play.mjs's JSON report, read back, and what counts as a problem.

use serde::{Deserialize, Serialize};

use super::Served;
#[cfg(doc)]
use super::{Options, Server};

/// What a player did with one stream: play.mjs's JSON report, plus the server's log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// `hls` or `dash`.
    pub player: String,
    /// The player's version (hls.js `Hls.version`, dash.js `getVersion()`).
    pub version: Option<String>,
    /// The manifest's URL.
    pub url: String,
    /// `playing` fired and the clock moved: a frame was shown.
    pub started: bool,
    /// The video levels (hls.js) or representations (dash.js), in the player's order.
    pub levels: Vec<Level>,
    /// The audio tracks the player found.
    pub audio_tracks: Vec<Track>,
    /// The subtitle tracks the player found. The first is turned on, so that its WebVTT loads.
    pub subtitle_tracks: Vec<Track>,
    /// The most cues the `<video>` element's enabled text tracks held at once (from the first
    /// subtitle track).
    #[serde(default)]
    pub subtitle_cues: u32,
    /// Whether the levels were forced ([`Options::force_levels`]).
    pub forced: bool,
    /// Each forced level, in the order forced.
    pub switches: Vec<Switch>,
    /// The `<video>` element reached its end.
    pub ended: bool,
    /// Where the end was first reached.
    #[serde(default)]
    pub ended_at: Option<EndedAt>,
    /// The duration the `<video>` element reports (seconds), when known.
    pub duration: Option<f64>,
    /// The playback position when the report was made (seconds).
    pub current_time: f64,
    /// The player's errors (non-fatal ones too: the player recovered from those).
    pub errors: Vec<PlayerEvent>,
    /// Responses of status 400 or above the page received.
    pub http_errors: Vec<HttpError>,
    /// Requests to anything but 127.0.0.1, blocked (the page must need nothing from elsewhere).
    pub blocked_requests: Vec<String>,
    /// Media segments the player loaded.
    pub segments_loaded: u32,
    /// Every distinct frame size the `<video>` element showed, in order.
    pub sizes_seen: Vec<(u32, u32)>,
    /// The clock stopped for [`Options::stall`] before the end.
    pub stalled: bool,
    /// [`Options::timeout`] ran out.
    pub timed_out: bool,
    /// What Chromium's Media Source Extensions say they play.
    pub mse: Mse,
    /// Seconds the whole play took, Chromium's start included.
    pub elapsed_seconds: f64,
    /// Every request the [`Server`] answered during the play (empty when the stream was not
    /// served by this harness).
    #[serde(default)]
    pub served: Vec<Served>,
}

/// The `<video>` element when the end was first reached: when it fired `ended`, or when dash.js
/// raised its own PLAYBACK_ENDED, whichever came first. dash.js, when it sees the end before the
/// element fires `ended`, seeks to half a second before the end and pauses, so the position at
/// the end of the play is not where the end was reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndedAt {
    /// What said so: `element` or `dash.js`.
    #[serde(default)]
    pub by: String,
    /// Its playback position (seconds).
    pub current_time: f64,
    /// Its duration then (seconds; null when unknown).
    pub duration: Option<f64>,
    /// Its buffered ranges (seconds).
    pub buffered: Vec<(f64, f64)>,
}

/// One video level (hls.js) or representation (dash.js), as the player read it from the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Level {
    /// Its index in the player's list (what forcing it uses).
    pub index: usize,
    /// Picture width in pixels (0 when the manifest does not say).
    pub width: u32,
    /// Picture height in pixels (0 when the manifest does not say).
    pub height: u32,
    /// `BANDWIDTH` (HLS) or `@bandwidth` (DASH), bit/s.
    pub bitrate: u64,
    /// `AVERAGE-BANDWIDTH` (HLS only), bit/s, when the manifest says.
    #[serde(default)]
    pub average_bitrate: Option<u64>,
    /// `FRAME-RATE` (HLS) or `@frameRate` (DASH), frames per second, when the manifest says.
    #[serde(default)]
    pub frame_rate: Option<f64>,
    /// The codecs string, e.g. `avc1.64001f,mp4a.40.2`.
    pub codecs: String,
}

/// An audio or subtitle track the player found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Track {
    /// Its language (`en`, `fr`, ...), empty when unsaid.
    pub lang: String,
    /// Its name or label, empty when unsaid.
    pub label: String,
}

/// One forced level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Switch {
    /// The index of the level forced.
    pub to_level: usize,
    /// Its size.
    pub width: u32,
    /// Its size.
    pub height: u32,
    /// The player said this level was playing and the `<video>` showed frames of its size for
    /// [`Options::level_seconds`] of playback.
    pub reached: bool,
    /// Seconds from forcing it until then (or until giving up).
    pub seconds: f64,
}

/// An error the player raised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlayerEvent {
    /// The player gave up (hls.js `fatal`; every dash.js `error`; a `<video>` `MediaError`).
    pub fatal: bool,
    /// The player's category (`networkError`, `mediaError`, `dash`, `media`, `pageerror`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// The player's detail (`fragLoadError`, `manifestParsingError`, a message).
    pub details: String,
    /// The URL concerned, when the player says.
    #[serde(default)]
    pub url: Option<String>,
    /// The HTTP status concerned, when the player says.
    #[serde(default)]
    pub status: Option<u16>,
}

/// A response of status 400 or above the page received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpError {
    /// What was asked for.
    pub url: String,
    /// The status.
    pub status: u16,
}

/// What Chromium's Media Source Extensions say they play.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mse {
    /// `video/mp4; codecs="avc1.64001f"` (H.264 High).
    pub h264: bool,
    /// `audio/mp4; codecs="mp4a.40.2"` (AAC-LC).
    pub aac: bool,
}

impl Report {
    /// Everything that went wrong, one sentence each; empty when the stream played as it should:
    /// it started, has levels, every level was forced and shown (when forced), the end was reached
    /// at the duration, and there was no fatal player error, HTTP error (on the page or at the
    /// server), blocked request, stall or timeout.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !self.mse.h264 || !self.mse.aac {
            p.push(format!(
                "this Chromium's MSE cannot play H.264 ({}) or AAC ({})",
                self.mse.h264, self.mse.aac
            ));
        }
        if !self.started {
            p.push("it never started playing".into());
        }
        if self.levels.is_empty() {
            p.push("the player found no video level".into());
        }
        for l in &self.levels {
            if l.width == 0 || l.height == 0 || l.bitrate == 0 {
                p.push(format!(
                    "level {} lacks a size or a bitrate ({}x{}, {} bit/s)",
                    l.index, l.width, l.height, l.bitrate
                ));
            }
        }
        if self.forced {
            for l in &self.levels {
                match self.switches.iter().find(|s| s.to_level == l.index) {
                    None => p.push(format!("level {} ({}x{}) was never forced", l.index, l.width, l.height)),
                    Some(s) if !s.reached => p.push(format!(
                        "level {} ({}x{}) was forced but not shown within {:.1} s",
                        l.index, l.width, l.height, s.seconds
                    )),
                    Some(_) => {}
                }
            }
        }
        if !self.subtitle_tracks.is_empty() && self.subtitle_cues == 0 {
            p.push(format!(
                "the subtitle track {:?} was turned on but no cue was loaded",
                self.subtitle_tracks[0].lang
            ));
        }
        if !self.ended {
            p.push(format!(
                "it did not reach the end (at {:.2} s of {})",
                self.current_time,
                self.duration
                    .map_or("an unknown duration".into(), |d| format!("{d:.2} s"))
            ));
        } else if let Some(d) = self.duration
            && self.end_position() < d - 0.5
        {
            p.push(format!(
                "it ended at {:.2} s, before the duration {d:.2} s",
                self.end_position()
            ));
        }
        for e in self.errors.iter().filter(|e| e.fatal) {
            p.push(format!(
                "fatal {} error {}{}",
                e.kind,
                e.details,
                e.url.as_ref().map_or(String::new(), |u| format!(" ({u})"))
            ));
        }
        for e in &self.http_errors {
            p.push(format!("the page got HTTP {} for {}", e.status, e.url));
        }
        for s in self.served.iter().filter(|s| s.status >= 400) {
            if !self.http_errors.iter().any(|e| e.url.ends_with(&s.path)) {
                p.push(format!("the server answered {} to {} {}", s.status, s.method, s.path));
            }
        }
        for u in &self.blocked_requests {
            p.push(format!("the page asked for {u}, which is not on loopback (blocked)"));
        }
        if self.stalled {
            p.push("playback stalled".into());
        }
        if self.timed_out {
            p.push("the play ran out of time".into());
        }
        p
    }

    /// `Ok` when [`Report::problems`] is empty, else every problem and a summary of the report.
    ///
    /// # Errors
    ///
    /// The problems, one a line, followed by [`Report::summary`].
    pub fn check(&self) -> Result<(), String> {
        let p = self.problems();
        if p.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{} did not play {}:\n- {}\n{}",
            self.player,
            self.url,
            p.join("\n- "),
            self.summary()
        ))
    }

    /// Panics with [`Report::check`]'s message unless the stream played as it should.
    #[track_caller]
    pub fn assert_played(&self) {
        if let Err(e) = self.check() {
            panic!("{e}");
        }
    }

    /// The levels' sizes, smallest first: easy to compare with the ladder.
    pub fn level_sizes(&self) -> Vec<(u32, u32)> {
        let mut s: Vec<_> = self.levels.iter().map(|l| (l.width, l.height)).collect();
        s.sort_unstable();
        s
    }

    /// Where the end was reached: the position when it was first reached, else the position at
    /// the end of the play.
    pub fn end_position(&self) -> f64 {
        self.ended_at.as_ref().map_or(self.current_time, |e| e.current_time)
    }

    /// A few lines for a failure message: the player, levels, switches, end, errors, requests.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} {}: started {}, ended {} at {:.2}/{:?} s, {} segments, sizes seen {:?}, {:.1} s\n",
            self.player,
            self.version.as_deref().unwrap_or("?"),
            self.started,
            self.ended,
            self.current_time,
            self.duration,
            self.segments_loaded,
            self.sizes_seen,
            self.elapsed_seconds
        );
        if let Some(e) = &self.ended_at {
            s += &format!(
                "  end reached ({}) at {:.3}/{:?} s, buffered {:?}\n",
                e.by, e.current_time, e.duration, e.buffered
            );
        }
        for l in &self.levels {
            s += &format!(
                "  level {}: {}x{} {} bit/s (average {:?}), {:?} fps, {}\n",
                l.index, l.width, l.height, l.bitrate, l.average_bitrate, l.frame_rate, l.codecs
            );
        }
        for t in &self.audio_tracks {
            s += &format!("  audio: {:?} {:?}\n", t.lang, t.label);
        }
        for t in &self.subtitle_tracks {
            s += &format!("  subtitles: {:?} {:?}\n", t.lang, t.label);
        }
        if !self.subtitle_tracks.is_empty() {
            s += &format!("  subtitle cues loaded: {}\n", self.subtitle_cues);
        }
        for w in &self.switches {
            s += &format!(
                "  forced {} ({}x{}): reached {} after {:.1} s\n",
                w.to_level, w.width, w.height, w.reached, w.seconds
            );
        }
        for e in &self.errors {
            s += &format!("  error: {e:?}\n");
        }
        let failed: Vec<_> = self.served.iter().filter(|r| r.status >= 400).collect();
        s += &format!(
            "  served {} requests, {} failed: {failed:?}",
            self.served.len(),
            failed.len()
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report of a good play of a 2-level ladder, as play.mjs prints it.
    fn good() -> Report {
        serde_json::from_value(serde_json::json!({
            "player": "hls", "version": "1.7.4", "url": "http://127.0.0.1:1/master.m3u8", "started": true,
            "levels": [
                {"index": 0, "width": 640, "height": 360, "bitrate": 1_000_000, "codecs": "avc1.64001e,mp4a.40.2"},
                {"index": 1, "width": 1280, "height": 720, "bitrate": 4_000_000, "codecs": "avc1.64001f,mp4a.40.2"}
            ],
            "audio_tracks": [{"index": 0, "lang": "en", "label": "English", "codecs": "mp4a.40.2", "default": true}],
            "subtitle_tracks": [], "subtitle_cues": 0, "forced": true,
            "switches": [
                {"to_level": 0, "width": 640, "height": 360, "reached": true, "seconds": 1.5},
                {"to_level": 1, "width": 1280, "height": 720, "reached": true, "seconds": 1.2}
            ],
            "ended": true, "duration": 8.0, "current_time": 8.0,
            "errors": [{"fatal": false, "type": "networkError", "details": "aborted", "url": null, "status": null}],
            "http_errors": [], "blocked_requests": [], "segments_loaded": 9, "video_width": 1280,
            "video_height": 720, "sizes_seen": [[640, 360], [1280, 720]], "stalled": false, "timed_out": false,
            "rate": 16, "mse": {"h264": true, "aac": true}, "elapsed_seconds": 9.5
        }))
        .expect("play.mjs's report parses")
    }

    #[test]
    fn a_good_play_has_no_problem_and_a_non_fatal_error_is_none() {
        let r = good();
        assert_eq!(r.problems(), Vec::<String>::new());
        assert!(r.check().is_ok());
        assert_eq!(r.level_sizes(), [(640, 360), (1280, 720)]);
    }

    #[test]
    fn every_way_a_play_goes_wrong_is_a_problem_of_its_own() {
        type Spoil = fn(&mut Report);
        let cases: [(&str, Spoil); 11] = [
            ("never started", |r| r.started = false),
            ("no video level", |r| r.levels.clear()),
            ("level 1 (1280x720) was forced but not shown", |r| {
                r.switches[1].reached = false
            }),
            ("level 1 (1280x720) was never forced", |r| {
                r.switches.pop();
            }),
            ("did not reach the end (at 3.00 s of 8.00 s)", |r| {
                r.ended = false;
                r.current_time = 3.0;
            }),
            ("ended at 6.00 s, before the duration", |r| r.current_time = 6.0),
            ("ended at 6.00 s, before the duration", |r| {
                r.ended_at = Some(EndedAt {
                    by: "element".into(),
                    current_time: 6.0,
                    duration: Some(6.0),
                    buffered: vec![(0.0, 6.0)],
                })
            }),
            ("fatal networkError error fragLoadError (http://x/a.m4s)", |r| {
                r.errors.push(PlayerEvent {
                    fatal: true,
                    kind: "networkError".into(),
                    details: "fragLoadError".into(),
                    url: Some("http://x/a.m4s".into()),
                    status: Some(404),
                })
            }),
            ("the server answered 404 to GET /v/a.m4s", |r| {
                r.served.push(Served {
                    method: "GET".into(),
                    path: "/v/a.m4s".into(),
                    range: None,
                    status: 404,
                    bytes: 0,
                })
            }),
            ("not on loopback", |r| {
                r.blocked_requests.push("https://cdn.example/hls.js".into())
            }),
            ("no cue was loaded", |r| {
                r.subtitle_tracks.push(Track {
                    lang: "en".into(),
                    label: String::new(),
                })
            }),
        ];
        for (want, spoil) in cases {
            let mut r = good();
            spoil(&mut r);
            let p = r.problems();
            assert!(p.len() == 1 && p[0].contains(want), "{want}: {p:?}");
            assert!(r.check().unwrap_err().contains(want));
        }
    }

    /// dash.js saw the end before the element fired `ended`, then sought to half a second before
    /// the end and paused: the end was reached where dash.js said so.
    #[test]
    fn the_end_counts_where_it_was_first_reached_not_where_the_player_left_the_clock() {
        let mut r = good();
        r.current_time = 7.0;
        r.ended_at = Some(EndedAt {
            by: "dash.js".into(),
            current_time: 8.0,
            duration: Some(8.0),
            buffered: vec![(0.0, 8.0)],
        });
        assert_eq!(r.problems(), Vec::<String>::new());
        assert!(
            r.summary().contains("end reached (dash.js) at 8.000"),
            "{}",
            r.summary()
        );
    }
}
