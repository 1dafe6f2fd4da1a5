//! Real players in tests: an output folder served over HTTP on loopback and played in headless
//! Chromium with hls.js (HLS) or dash.js (DASH), as a viewer's browser would play it.
//!
//! ```no_run
//! use test_support::players::{self, Entry};
//! # let dir = std::path::Path::new("out/big-buck-bunny");
//! // `dir` holds master.m3u8 (or manifest.mpd) and the media it references.
//! let report = players::serve_and_play(dir, Entry::Hls).expect("the harness runs");
//! report.assert_played(); // started, every level forced and shown, the end reached, no error
//! assert_eq!(report.level_sizes(), [(640, 360), (1280, 720)]);
//! let probe = players::ffprobe_served(dir, Entry::Dash).expect("ffprobe reads the MPD over HTTP");
//! ```
//!
//! # What plays
//!
//! [`Server`] serves a folder as S3 or CloudFront would: the content type by extension
//! (`.m3u8` `application/vnd.apple.mpegurl`, `.mpd` `application/dash+xml`, `.m4s`/`.mp4`
//! `video/mp4`, `.m4a` `audio/mp4`, `.vtt` `text/vtt`, `.jpg` `image/jpeg`, ...), single byte
//! ranges (`206`, `416`; `EXT-X-BYTERANGE` and DASH `SegmentBase`/`mediaRange` rely on them),
//! CORS (`Access-Control-Allow-Origin: *`, preflight answered, `Content-Range` exposed: the player
//! page comes from another origin, as a site's page would), and `404` for anything missing. It
//! keeps a log of every request it answered ([`Served`]).
//!
//! [`play`] runs `node tests/players/play.mjs` (see that file for the browser side): Chromium
//! (`/usr/bin/chromium`, or `$CHROMIUM`), puppeteer-core, hls.js and dash.js from
//! `tests/players/node_modules`, installed from the lock file by `scripts/install-players.sh`.
//! The page and the players are served by play.mjs from loopback; any request the page makes to
//! a host other than 127.0.0.1 is blocked and reported, so nothing is loaded from the internet.
//!
//! The player loads the stream muted and must show a frame ([`Report::started`]); with
//! [`Options::force_levels`] (the default) each level is forced in turn and must be reported by
//! the player as playing while the `<video>` element shows frames of that level's size for
//! [`Options::level_seconds`] of playback ([`Report::switches`]); then the rest plays at
//! [`Options::rate`] (16x: every remaining segment is still fetched and decoded) until `ended`.
//!
//! # Failing
//!
//! A stream that does not play is a finding, not an error: [`serve_and_play`] returns
//! `Ok(report)` and [`Report::problems`] says what went wrong (a fatal player error, an HTTP
//! error such as a missing segment, a level never shown, the end never reached, a stall).
//! [`PlayerError`] means the harness itself could not run: node, Chromium or the npm packages
//! missing (the message names the fix), play.mjs failing or hanging. Nothing is ever skipped.
//!
//! Why the server's and the page's HTTP errors count even when the player goes on: hls.js 1.7
//! treats a missing segment as non-fatal (two `fragLoadError`s), skips the gap and reaches
//! `ended`; dash.js 5.2 retries and then raises a fatal error. A malformed manifest is fatal
//! in both (`manifestParsingError`; dash.js `10 parsing failed`).
//!
//! At most `$PLAYERS_AT_ONCE` (default 2) plays run at once in one test binary: a play mostly
//! waits for playback at 1x, but Chromium is heavy and the checks are timed.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::process::read_all;

/// How the harness is installed: said in every message about a missing piece.
const INSTALL: &str = "scripts/install-players.sh";

/// The npm packages play.mjs needs, as `tests/players/node_modules/<name>`.
const PACKAGES: [&str; 3] = ["puppeteer-core", "hls.js", "dashjs"];

/// Which manifest of an output folder to play, and with which player.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// `master.m3u8`, played with hls.js.
    Hls,
    /// `manifest.mpd`, played with dash.js.
    Dash,
}

impl Entry {
    /// The entry point's file name in an output folder (`master.m3u8`, `manifest.mpd`).
    pub fn file_name(self) -> &'static str {
        match self {
            Entry::Hls => "master.m3u8",
            Entry::Dash => "manifest.mpd",
        }
    }

    /// play.mjs's name for the player (`hls`, `dash`).
    pub fn player(self) -> &'static str {
        match self {
            Entry::Hls => "hls",
            Entry::Dash => "dash",
        }
    }
}

/// How one play goes. [`Options::default`] is what [`serve_and_play`] uses.
#[derive(Debug, Clone)]
pub struct Options {
    /// Force every level in turn before playing to the end (default `true`).
    pub force_levels: bool,
    /// Seconds of playback at 1x each forced level must show its own frames for (default 1).
    pub level_seconds: f64,
    /// The playback rate from the last forced level to the end, up to 16 (default 16).
    pub rate: f64,
    /// Seconds without the clock moving that count as a stall and end the play (default 8).
    pub stall: Duration,
    /// The whole play's budget inside the browser (default 60 s); the process is killed a little
    /// after it if it has not ended.
    pub timeout: Duration,
    /// The file to play instead of the entry's usual name (relative to the folder).
    pub manifest: Option<String>,
    /// Let play.mjs log the player's console to stderr (shown in [`PlayerError::Harness`]).
    pub verbose: bool,
    /// The Chromium to use instead of `$CHROMIUM` (default `/usr/bin/chromium`).
    pub chromium: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            force_levels: true,
            level_seconds: 1.0,
            rate: 16.0,
            stall: Duration::from_secs(8),
            timeout: Duration::from_secs(60),
            manifest: None,
            verbose: false,
            chromium: None,
        }
    }
}

/// What the harness could not do (as opposed to what the stream did wrong: [`Report::problems`]).
#[derive(Debug)]
pub enum PlayerError {
    /// `node` is missing, does not run, or is older than 18.
    Node(String),
    /// An npm package of `tests/players/node_modules` is missing.
    Packages(String),
    /// Chromium is missing.
    Chromium(String),
    /// Serving the folder failed.
    Serve(io::Error),
    /// play.mjs exited with an error: Chromium did not start, the harness broke.
    Harness {
        /// Its exit code (128 + signal when killed).
        status: i32,
        /// Its stderr.
        stderr: String,
    },
    /// play.mjs did not end within the play's timeout plus a margin, and was killed.
    Hung {
        /// How long it was given.
        after: Duration,
        /// Its stderr so far.
        stderr: String,
    },
    /// play.mjs printed something that is not a report.
    BadReport {
        /// Why it does not parse.
        error: String,
        /// What it printed.
        stdout: String,
    },
    /// `ffprobe` is missing, failed, or printed no JSON.
    Ffprobe(String),
}

impl fmt::Display for PlayerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlayerError::Node(m) => write!(f, "node: {m} (install Debian's nodejs package: {INSTALL} does)"),
            PlayerError::Packages(m) => write!(f, "the players' npm packages: {m} (run {INSTALL})"),
            PlayerError::Chromium(m) => write!(f, "Chromium: {m} (run {INSTALL}, or set CHROMIUM)"),
            PlayerError::Serve(e) => write!(f, "cannot serve the folder: {e}"),
            PlayerError::Harness { status, stderr } => {
                write!(f, "tests/players/play.mjs failed (exit {status}):\n{stderr}")
            }
            PlayerError::Hung { after, stderr } => {
                write!(
                    f,
                    "tests/players/play.mjs did not end within {after:?} and was killed; stderr:\n{stderr}"
                )
            }
            PlayerError::BadReport { error, stdout } => {
                write!(f, "tests/players/play.mjs printed no report ({error}):\n{stdout}")
            }
            PlayerError::Ffprobe(m) => write!(f, "ffprobe: {m}"),
        }
    }
}

impl std::error::Error for PlayerError {}

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
    /// Every duration the element announced, in order (at most 20).
    #[serde(default)]
    pub durations: Vec<f64>,
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
                "  end reached ({}) at {:.3}/{:?} s, buffered {:?}; durations announced {:?}\n",
                e.by, e.current_time, e.duration, e.buffered, self.durations
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

/// One request the [`Server`] answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Served {
    /// `GET`, `HEAD`, `OPTIONS`, ...
    pub method: String,
    /// The path asked for, decoded, without the query (`/stream_0/seg_001.m4s`).
    pub path: String,
    /// The `Range` header, when there was one.
    pub range: Option<String>,
    /// The status answered.
    pub status: u16,
    /// Body bytes sent (those to send, while they are being sent).
    pub bytes: u64,
}

/// A static file server for one folder on 127.0.0.1 (an ephemeral port), stopped when dropped.
/// See the module's documentation for what it answers.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Served>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `dir` until dropped. Files are read when asked for: a file removed or changed
    /// meanwhile is served as it is then.
    ///
    /// # Errors
    ///
    /// `dir` is not a directory, or no port could be bound.
    pub fn serve(dir: &Path) -> io::Result<Server> {
        let root = dir.canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", dir.display()),
            ));
        }
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::Builder::new()
                .name("players-server".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(conn) = conn else { continue };
                        let (root, log) = (root.clone(), log.clone());
                        std::thread::spawn(move || {
                            let _ = connection(conn, &root, &log);
                        });
                    }
                })?
        };
        Ok(Server {
            addr,
            log,
            stop,
            accept: Some(accept),
        })
    }

    /// The URL of `path` (relative to the folder) on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request answered so far, in order.
    pub fn served(&self) -> Vec<Served> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop up so that it sees `stop`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Answers the requests of one connection (HTTP/1.1 keep-alive) until it closes or idles 30 s.
fn connection(stream: TcpStream, root: &Path, log: &Mutex<Vec<Served>>) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (method, target, version) = (
            parts.next().unwrap_or_default().to_owned(),
            parts.next().unwrap_or_default().to_owned(),
            parts.next().unwrap_or("HTTP/1.0").to_owned(),
        );
        let mut range = None;
        let mut close = version == "HTTP/1.0";
        let mut body_len = 0u64;
        for _ in 0..200 {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let Some((name, value)) = h.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "range" => range = Some(value.to_owned()),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                "content-length" => body_len = value.parse().unwrap_or(0),
                _ => {}
            }
        }
        io::copy(&mut (&mut reader).take(body_len), &mut io::sink())?;

        let response = respond(root, &method, &target, range.as_deref())?;
        // Logged before it is sent: whoever got the answer finds it in the log.
        let entry = {
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            log.push(Served {
                method,
                path: decode_path(&target),
                range,
                status: response.status,
                bytes: if response.body.is_some() { response.len } else { 0 },
            });
            log.len() - 1
        };
        let sent = response.write(&mut out)?;
        log.lock().unwrap_or_else(|e| e.into_inner())[entry].bytes = sent;
        if close {
            return Ok(());
        }
    }
}

/// The answer to one request, before it is written.
struct Response {
    status: u16,
    reason: &'static str,
    /// Header lines beyond those every answer has, each ending in CRLF.
    headers: String,
    /// `Content-Length`.
    len: u64,
    /// The file and the first byte to send `len` bytes of (`None` for `HEAD` and errors).
    body: Option<(std::fs::File, u64)>,
}

impl Response {
    fn bare(status: u16, reason: &'static str, headers: &str) -> Self {
        Self {
            status,
            reason,
            headers: headers.to_owned(),
            len: 0,
            body: None,
        }
    }

    /// Writes it; returns the body bytes sent.
    fn write(self, out: &mut TcpStream) -> io::Result<u64> {
        write!(
            out,
            "HTTP/1.1 {} {}\r\nAccess-Control-Allow-Origin: *\r\n\
             Access-Control-Expose-Headers: Content-Length, Content-Range, Accept-Ranges\r\n\
             Cache-Control: no-store\r\nAccept-Ranges: bytes\r\nContent-Length: {}\r\n{}\r\n",
            self.status, self.reason, self.len, self.headers
        )?;
        let mut sent = 0;
        if let Some((mut file, start)) = self.body {
            file.seek(SeekFrom::Start(start))?;
            sent = io::copy(&mut file.take(self.len), out)?;
        }
        out.flush()?;
        Ok(sent)
    }
}

/// The answer to one request.
fn respond(root: &Path, method: &str, target: &str, range: Option<&str>) -> io::Result<Response> {
    match method {
        "GET" | "HEAD" => {}
        "OPTIONS" => {
            return Ok(Response::bare(
                204,
                "No Content",
                "Access-Control-Allow-Methods: GET, HEAD, OPTIONS\r\n\
                 Access-Control-Allow-Headers: Range, Content-Type\r\nAccess-Control-Max-Age: 600\r\n",
            ));
        }
        _ => {
            return Ok(Response::bare(
                405,
                "Method Not Allowed",
                "Allow: GET, HEAD, OPTIONS\r\n",
            ));
        }
    }
    let Some(path) = resolve(root, target) else {
        return Ok(Response::bare(404, "Not Found", ""));
    };
    let Ok(file) = std::fs::File::open(&path) else {
        return Ok(Response::bare(404, "Not Found", ""));
    };
    let len = file.metadata()?.len();
    let ctype = format!("Content-Type: {}\r\n", content_type(&path));
    let (status, reason, headers, start, count) = match range.map(|r| parse_range(r, len)) {
        None | Some(Range::Whole) => (200, "OK", ctype, 0, len),
        Some(Range::Part(a, b)) => (
            206,
            "Partial Content",
            format!("{ctype}Content-Range: bytes {a}-{b}/{len}\r\n"),
            a,
            b - a + 1,
        ),
        Some(Range::Unsatisfiable) => {
            return Ok(Response::bare(
                416,
                "Range Not Satisfiable",
                &format!("Content-Range: bytes */{len}\r\n"),
            ));
        }
    };
    Ok(Response {
        status,
        reason,
        headers,
        len: count,
        body: (method == "GET").then_some((file, start)),
    })
}

/// A `Range` header read against a file of `len` bytes.
#[derive(Debug, PartialEq)]
enum Range {
    /// Absent, several ranges, or not understood: the whole file (RFC 9110 allows ignoring it).
    Whole,
    /// First and last byte, inclusive.
    Part(u64, u64),
    Unsatisfiable,
}

fn parse_range(header: &str, len: u64) -> Range {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Range::Whole;
    };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Range::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(a), _) if a >= len => Range::Unsatisfiable,
        (Ok(a), Ok(b)) if b >= a => Range::Part(a, b.min(len - 1)),
        (Ok(a), Err(_)) if b.is_empty() => Range::Part(a, len - 1),
        (Err(_), Ok(n)) if a.is_empty() => {
            if n == 0 || len == 0 {
                Range::Unsatisfiable
            } else {
                Range::Part(len - n.min(len), len - 1)
            }
        }
        _ => Range::Whole,
    }
}

/// The path part of a request target, percent-decoded.
fn decode_path(target: &str) -> String {
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The file a request target names under `root`, or `None` for anything outside it or not a file.
fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let decoded = decode_path(target);
    let rel = Path::new(decoded.trim_start_matches('/'));
    if decoded.contains('\0') || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let path = root.join(rel);
    path.is_file().then_some(path)
}

/// The `Content-Type` S3 or CloudFront should be configured to send for a file of the output.
pub fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("m3u8") => "application/vnd.apple.mpegurl",
        Some("mpd") => "application/dash+xml",
        Some("m4s" | "mp4" | "m4v" | "cmfv") => "video/mp4",
        Some("m4a" | "cmfa") => "audio/mp4",
        Some("ts") => "video/mp2t",
        Some("aac") => "audio/aac",
        Some("vtt") => "text/vtt",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript",
        Some("json") => "application/json",
        Some("xml") => "application/xml",
        _ => "application/octet-stream",
    }
}

/// Serves `dir`, plays its `entry` (`master.m3u8` with hls.js, `manifest.mpd` with dash.js) with
/// [`Options::default`], and returns the report with the server's log in [`Report::served`].
/// Assert on it with [`Report::assert_played`] (or [`Report::problems`] to expect a failure).
///
/// # Errors
///
/// The harness could not run: see [`PlayerError`]. A stream that does not play is `Ok`.
pub fn serve_and_play(dir: &Path, entry: Entry) -> Result<Report, PlayerError> {
    serve_and_play_with(dir, entry, &Options::default())
}

/// [`serve_and_play`] with other [`Options`].
///
/// # Errors
///
/// As [`serve_and_play`].
pub fn serve_and_play_with(dir: &Path, entry: Entry, options: &Options) -> Result<Report, PlayerError> {
    let server = Server::serve(dir).map_err(PlayerError::Serve)?;
    let manifest = options.manifest.as_deref().unwrap_or(entry.file_name());
    let mut report = play(&server.url(manifest), entry, options)?;
    report.served = server.served();
    Ok(report)
}

/// [`serve_and_play`] for `master.m3u8`.
///
/// # Errors
///
/// As [`serve_and_play`].
pub fn play_hls(dir: &Path) -> Result<Report, PlayerError> {
    serve_and_play(dir, Entry::Hls)
}

/// [`serve_and_play`] for `manifest.mpd`.
///
/// # Errors
///
/// As [`serve_and_play`].
pub fn play_dash(dir: &Path) -> Result<Report, PlayerError> {
    serve_and_play(dir, Entry::Dash)
}

/// Where the harness is: `node`, play.mjs, and Chromium, each checked.
#[derive(Debug, Clone)]
pub struct Harness {
    /// `node` (18 or later: Debian 12's is 18; `$NODE`, default `node` on `PATH`).
    pub node: PathBuf,
    /// `tests/players/play.mjs`.
    pub script: PathBuf,
    /// Chromium (`$CHROMIUM`, default `/usr/bin/chromium`).
    pub chromium: PathBuf,
}

/// `tests/players` in this checkout.
pub fn players_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/players")
}

/// Checks that everything [`play`] needs is installed, with `chromium` instead of `$CHROMIUM`
/// (default `/usr/bin/chromium`) when given.
///
/// # Errors
///
/// The first missing piece, naming how to install it.
pub fn harness(chromium: Option<&Path>) -> Result<Harness, PlayerError> {
    let node = PathBuf::from(std::env::var_os("NODE").unwrap_or_else(|| "node".into()));
    let out = Command::new(&node)
        .arg("--version")
        .output()
        .map_err(|e| PlayerError::Node(format!("cannot run {} ({e})", node.display())))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if !out.status.success() || major < 18 {
        return Err(PlayerError::Node(format!(
            "{} --version says {version:?}; 18 or later is needed",
            node.display()
        )));
    }
    let dir = players_dir();
    let script = dir.join("play.mjs");
    if !script.is_file() {
        return Err(PlayerError::Packages(format!("{} is missing", script.display())));
    }
    for p in PACKAGES {
        let manifest = dir.join("node_modules").join(p).join("package.json");
        if !manifest.is_file() {
            return Err(PlayerError::Packages(format!(
                "{} is not installed ({} is missing)",
                p,
                manifest.display()
            )));
        }
    }
    let chromium = chromium.map_or_else(
        || PathBuf::from(std::env::var_os("CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into())),
        Path::to_path_buf,
    );
    if !chromium.is_file() {
        return Err(PlayerError::Chromium(format!("{} is missing", chromium.display())));
    }
    Ok(Harness { node, script, chromium })
}

/// Plays the manifest at `url` (served by anyone, with CORS) with `entry`'s player, as the
/// module's documentation describes. [`Report::served`] is left empty.
///
/// # Errors
///
/// The harness could not run: see [`PlayerError`].
pub fn play(url: &str, entry: Entry, options: &Options) -> Result<Report, PlayerError> {
    let h = harness(options.chromium.as_deref())?;
    let _turn = Turn::take();
    let mut cmd = Command::new(&h.node);
    cmd.arg(&h.script)
        .args(["--player", entry.player(), "--url", url])
        .arg("--timeout")
        .arg(options.timeout.as_secs_f64().to_string())
        .arg("--stall")
        .arg(options.stall.as_secs_f64().to_string())
        .arg("--rate")
        .arg(options.rate.to_string())
        .arg("--level-seconds")
        .arg(options.level_seconds.to_string())
        .env("CHROMIUM", &h.chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a hung run is killed with its Chromium.
        .process_group(0);
    if options.force_levels {
        cmd.arg("--force-levels");
    }
    if options.verbose {
        cmd.arg("--verbose");
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| PlayerError::Node(format!("cannot run {} ({e})", h.node.display())))?;
    let stdout = read_all(child.stdout.take().expect("stdout is piped"));
    let stderr = read_all(child.stderr.take().expect("stderr is piped"));
    let text = |t: JoinHandle<Vec<u8>>| String::from_utf8_lossy(&t.join().unwrap_or_default()).into_owned();
    let budget = options.timeout + Duration::from_secs(40);
    let deadline = Instant::now() + budget;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| PlayerError::Node(e.to_string()))? {
            break status;
        }
        if Instant::now() > deadline {
            // SAFETY: kill(2) on the process group of the child this function started.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.wait();
            return Err(PlayerError::Hung {
                after: budget,
                stderr: text(stderr),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (text(stdout), text(stderr));
    let code = crate::exit_code(status);
    if code != 0 {
        return Err(PlayerError::Harness { status: code, stderr });
    }
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_default();
    serde_json::from_str(line).map_err(|e| PlayerError::BadReport {
        error: e.to_string(),
        stdout: format!("{stdout}\nstderr:\n{stderr}"),
    })
}

/// One of the `$PLAYERS_AT_ONCE` plays allowed at once, given back when dropped.
struct Turn;

static PLAYING: (Mutex<usize>, std::sync::Condvar) = (Mutex::new(0), std::sync::Condvar::new());

impl Turn {
    fn take() -> Turn {
        let at_once = std::env::var("PLAYERS_AT_ONCE")
            .ok()
            .and_then(|n| n.parse().ok())
            .filter(|&n: &usize| n > 0)
            .unwrap_or(2);
        let mut playing = PLAYING.0.lock().unwrap_or_else(|e| e.into_inner());
        while *playing >= at_once {
            playing = PLAYING.1.wait(playing).unwrap_or_else(|e| e.into_inner());
        }
        *playing += 1;
        Turn
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        *PLAYING.0.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        PLAYING.1.notify_one();
    }
}

/// `ffprobe -show_programs -show_streams -show_format` of the manifest at `url`, as JSON: for a
/// master playlist, one program per variant; for an MPD, a stream per representation.
///
/// # Errors
///
/// ffprobe is missing, fails (its stderr), or prints no JSON.
pub fn ffprobe_url(url: &str) -> Result<serde_json::Value, PlayerError> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_programs",
            "-show_streams",
            "-show_format",
        ])
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| PlayerError::Ffprobe(format!("cannot run ffprobe ({e}): install Debian's ffmpeg package")))?;
    if !out.status.success() {
        return Err(PlayerError::Ffprobe(format!(
            "ffprobe {url} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| PlayerError::Ffprobe(format!("ffprobe {url} printed no JSON ({e})")))
}

/// Serves `dir` and runs [`ffprobe_url`] on its `entry`; also fails when ffprobe asked for
/// anything the server did not have, or printed errors (ffprobe goes on past a missing segment).
///
/// # Errors
///
/// As [`ffprobe_url`], and [`PlayerError::Ffprobe`] naming the requests answered with an error.
pub fn ffprobe_served(dir: &Path, entry: Entry) -> Result<serde_json::Value, PlayerError> {
    let server = Server::serve(dir).map_err(PlayerError::Serve)?;
    let probe = ffprobe_url(&server.url(entry.file_name()));
    let failed: Vec<_> = server.served().into_iter().filter(|s| s.status >= 400).collect();
    let list = || {
        failed
            .iter()
            .map(|s| format!("{} {} {}", s.status, s.method, s.path))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match probe {
        Err(PlayerError::Ffprobe(m)) if !failed.is_empty() => {
            Err(PlayerError::Ffprobe(format!("{m}; the server answered {}", list())))
        }
        Err(e) => Err(e),
        Ok(_) if !failed.is_empty() => Err(PlayerError::Ffprobe(format!(
            "ffprobe asked for what is not there: {}",
            list()
        ))),
        Ok(probe) => Ok(probe),
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

    #[test]
    fn a_missing_node_package_names_the_install_script() {
        let e = PlayerError::Packages("dashjs is not installed".into());
        assert!(e.to_string().contains("scripts/install-players.sh"), "{e}");
    }

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(parse_range("bytes=0-99", 1000), Range::Part(0, 99));
        assert_eq!(parse_range("bytes=900-1999", 1000), Range::Part(900, 999));
        assert_eq!(parse_range("bytes=100-", 1000), Range::Part(100, 999));
        assert_eq!(parse_range("bytes=-100", 1000), Range::Part(900, 999));
        assert_eq!(parse_range("bytes=-5000", 1000), Range::Part(0, 999));
        assert_eq!(parse_range("bytes=1000-", 1000), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-9", 1000), Range::Whole);
        assert_eq!(parse_range("items=0-1", 1000), Range::Whole);
        assert_eq!(parse_range("bytes=9-1", 1000), Range::Whole);
    }

    #[test]
    fn request_paths_never_leave_the_folder() {
        let root = std::env::temp_dir();
        assert_eq!(resolve(&root, "/../etc/passwd"), None);
        assert_eq!(resolve(&root, "/a/%2e%2e/%2e%2e/etc/passwd"), None);
        assert_eq!(decode_path("/a%20b/c.m4s?x=1"), "/a b/c.m4s");
    }

    #[test]
    fn manifests_and_segments_get_the_content_types_players_expect() {
        assert_eq!(content_type(Path::new("master.m3u8")), "application/vnd.apple.mpegurl");
        assert_eq!(content_type(Path::new("manifest.mpd")), "application/dash+xml");
        assert_eq!(content_type(Path::new("v/seg_001.m4s")), "video/mp4");
        assert_eq!(content_type(Path::new("a.m4a")), "audio/mp4");
        assert_eq!(content_type(Path::new("thumbnails.vtt")), "text/vtt");
        assert_eq!(content_type(Path::new("poster.JPG")), "image/jpeg");
    }
}
