//! The source's text subtitle tracks as WebVTT files, with their language.
//!
//! Text subtitles (SubRip, ASS/SSA, mov_text, WebVTT) are decoded by FFmpeg into ASS dialogue
//! lines; each becomes a WebVTT cue with its timing and plain text (ASS styling overrides dropped,
//! line breaks kept). Image subtitles (DVD, PGS, DVB) cannot be WebVTT without OCR: they are left
//! out, each with a logged reason.

use std::fmt::Write as _;
use std::path::Path;

use ffmpeg::codec::Id;
use ffmpeg::{Rational, codec, media};
use ffmpeg_next as ffmpeg;

use crate::error::{FfmpegContext, Result, TranscodeError};

/// One subtitle track written as WebVTT.
#[derive(Debug, Clone, PartialEq)]
pub struct Subtitles {
    /// The file written.
    pub file: std::path::PathBuf,
    /// Its language from the source's metadata (`und` when none).
    pub language: String,
    /// Its title from the source's metadata, or the language.
    pub name: String,
    /// The cues written.
    pub cues: usize,
}

/// A track left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The stream's index in the source.
    pub stream: usize,
    /// Why.
    pub reason: String,
}

/// One cue.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cue {
    pub start: f64,
    pub end: f64,
    pub text: String,
}

/// Whether a subtitle codec is text (convertible to WebVTT).
fn is_text(id: Id) -> bool {
    matches!(
        id,
        Id::SUBRIP | Id::SRT | Id::ASS | Id::SSA | Id::MOV_TEXT | Id::WEBVTT | Id::TEXT
    )
}

/// Writes every text subtitle track of `source` into `dir` as `subtitles-{n}.vtt`.
///
/// # Errors
///
/// When the source cannot be read or a file cannot be written.
pub fn extract(source: &Path, dir: &Path) -> Result<(Vec<Subtitles>, Vec<Skipped>)> {
    let mut ictx = ffmpeg::format::input(source).ctx(format!("opening {}", source.display()))?;
    // The renditions start at zero where the source starts (its start time subtracted, as the
    // transcode does): so do the cues.
    // SAFETY: reading a plain field of the open input context.
    let origin = match unsafe { (*ictx.as_ptr()).start_time } {
        t if t == ffmpeg::ffi::AV_NOPTS_VALUE => 0.0,
        t => t as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE),
    };
    let mut tracks: Vec<(usize, Rational, codec::decoder::Subtitle, Vec<Cue>, String, String)> = Vec::new();
    let mut skipped = Vec::new();
    for stream in ictx.streams() {
        if stream.parameters().medium() != media::Type::Subtitle {
            continue;
        }
        let id = stream.parameters().id();
        if !is_text(id) {
            let reason = format!("{id:?} subtitles are pictures, not text: WebVTT cannot carry them");
            tracing::warn!(stream = stream.index(), codec = ?id, "subtitle track left out: {reason}");
            skipped.push(Skipped {
                stream: stream.index(),
                reason,
            });
            continue;
        }
        let ctx =
            codec::context::Context::from_parameters(stream.parameters()).ctx("reading the subtitle parameters")?;
        let decoder = match ctx.decoder().subtitle() {
            Ok(d) => d,
            Err(e) => {
                let reason = format!("no decoder for {id:?} subtitles: {e}");
                tracing::warn!(stream = stream.index(), "subtitle track left out: {reason}");
                skipped.push(Skipped {
                    stream: stream.index(),
                    reason,
                });
                continue;
            }
        };
        let meta = stream.metadata();
        let language = meta
            .get("language")
            .filter(|l| !l.is_empty())
            .unwrap_or("und")
            .to_owned();
        let name = meta
            .get("title")
            .filter(|t| !t.is_empty())
            .map_or_else(|| language.clone(), str::to_owned);
        tracks.push((stream.index(), stream.time_base(), decoder, Vec::new(), language, name));
    }
    if tracks.is_empty() {
        return Ok((Vec::new(), skipped));
    }
    // The pass below reads the subtitle packets alone: the demuxer skips the others' data where
    // the container lets it (MP4), instead of reading the whole source a second time.
    let wanted: Vec<usize> = tracks.iter().map(|t| t.0).collect();
    for i in 0..ictx.nb_streams() as usize {
        if !wanted.contains(&i)
            && let Some(mut stream) = ictx.stream_mut(i)
        {
            // SAFETY: setting a plain field of a stream of the open input, before reading.
            unsafe { (*stream.as_mut_ptr()).discard = ffmpeg::ffi::AVDiscard::AVDISCARD_ALL };
        }
    }
    for (stream, packet) in ictx.packets() {
        let Some(t) = tracks.iter_mut().find(|t| t.0 == stream.index()) else {
            continue;
        };
        let mut sub = ffmpeg::Subtitle::new();
        if !t.2.decode(&packet, &mut sub).unwrap_or(false) {
            continue;
        }
        let tb = f64::from(t.1.numerator()) / f64::from(t.1.denominator().max(1));
        let Some(pts) = packet.pts() else { continue };
        let base = pts as f64 * tb - origin;
        let start = base + f64::from(sub.start()) / 1000.0;
        let end = if sub.end() > sub.start() {
            base + f64::from(sub.end()) / 1000.0
        } else {
            base + packet.duration() as f64 * tb
        };
        let text: Vec<String> = sub
            .rects()
            .filter_map(|r| match r {
                ffmpeg::subtitle::Rect::Ass(a) => Some(ass_text(a.get())),
                ffmpeg::subtitle::Rect::Text(t) => Some(t.get().to_owned()),
                _ => None,
            })
            .filter(|t| !t.trim().is_empty())
            .collect();
        if !text.is_empty() && end > start.max(0.0) {
            t.3.push(Cue {
                start: start.max(0.0),
                end,
                text: text.join("\n"),
            });
        }
    }
    let mut written = Vec::new();
    for (n, (_, _, _, cues, language, name)) in tracks.into_iter().enumerate() {
        let file = dir.join(format!("subtitles-{n}.vtt"));
        std::fs::write(&file, webvtt(&cues)).map_err(|e| TranscodeError::Io {
            path: file.display().to_string(),
            source: e,
        })?;
        written.push(Subtitles {
            file,
            language,
            name,
            cues: cues.len(),
        });
    }
    Ok((written, skipped))
}

/// The text of an ASS dialogue line as FFmpeg gives it (`ReadOrder,Layer,Style,Name,MarginL,
/// MarginR,MarginV,Effect,Text`, or a full `Dialogue:` line): override blocks `{...}` dropped,
/// `\N` and `\n` as line breaks, `\h` as a space.
pub(crate) fn ass_text(line: &str) -> String {
    let body = line.strip_prefix("Dialogue:").map(str::trim_start).unwrap_or(line);
    // The text is the tenth field of a Dialogue line, the ninth of FFmpeg's form.
    let fields = if line.starts_with("Dialogue:") { 9 } else { 8 };
    let text = body.splitn(fields + 1, ',').nth(fields).unwrap_or(body);
    let mut out = String::new();
    let mut in_override = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' => in_override = true,
            '}' if in_override => in_override = false,
            _ if in_override => {}
            '\\' => match chars.peek() {
                Some('N' | 'n') => {
                    chars.next();
                    out.push('\n');
                }
                Some('h') => {
                    chars.next();
                    out.push(' ');
                }
                _ => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out.trim().to_owned()
}

/// A WebVTT timestamp.
pub(crate) fn vtt_time(seconds: f64) -> String {
    let ms = (seconds.max(0.0) * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// A WebVTT file of `cues` (text escaped; a cue never holds a blank line or `-->`).
pub(crate) fn webvtt(cues: &[Cue]) -> String {
    let mut out = String::from("WEBVTT\n");
    for c in cues {
        let text: Vec<String> = c
            .text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
                    .replace("-->", "->")
            })
            .collect();
        let _ = write!(
            out,
            "\n{} --> {}\n{}\n",
            vtt_time(c.start),
            vtt_time(c.end),
            text.join("\n")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ass_lines_become_plain_text_with_their_line_breaks() {
        assert_eq!(ass_text("0,0,Default,,0,0,0,,Hello {\\i1}world{\\i0}"), "Hello world");
        assert_eq!(ass_text("3,0,Default,,0,0,0,,one\\Ntwo, three"), "one\ntwo, three");
        assert_eq!(
            ass_text("Dialogue: 0,0:00:01.00,0:00:02.00,Default,,0,0,0,,a\\hb"),
            "a b"
        );
    }

    #[test]
    fn cues_are_written_as_webvtt_with_their_times_and_escaped_text() {
        let vtt = webvtt(&[
            Cue {
                start: 1.0,
                end: 2.5,
                text: "Tom & Jerry\n\n<b>".into(),
            },
            Cue {
                start: 3661.25,
                end: 3662.0,
                text: "a --> b".into(),
            },
        ]);
        assert_eq!(
            vtt,
            "WEBVTT\n\n00:00:01.000 --> 00:00:02.500\nTom &amp; Jerry\n&lt;b&gt;\n\n01:01:01.250 --> 01:01:02.000\na --&gt; b\n"
        );
    }
}
