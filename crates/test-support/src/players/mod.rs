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
//! [`Options::rate`] (16x: every remaining segment is still fetched and decoded) until the end is
//! reached: the element's `ended`, or dash.js's own end when it comes first ([`EndedAt`]).
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
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::process::read_all;

mod report;
mod server;

pub use report::{EndedAt, HttpError, Level, Mse, PlayerEvent, Report, Switch, Track};
pub use server::{Served, Server, content_type};

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

    #[test]
    fn a_missing_node_package_names_the_install_script() {
        let e = PlayerError::Packages("dashjs is not installed".into());
        assert!(e.to_string().contains("scripts/install-players.sh"), "{e}");
    }
}
