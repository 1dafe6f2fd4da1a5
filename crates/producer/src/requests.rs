//! The requests a run sends: built for an S3 object from the flags ([`Template`]), or read from a
//! JSON Lines file ([`parse_lines`]). Either way every request is validated by the shared
//! [`EncodeRequest`] rules and has a `request_id` before anything is sent.

use std::fmt;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};
use encoding_common::format::parse_formats;
use encoding_common::request::{MAX_VIDEO_ID_LEN, check_video_id};
use encoding_common::{EncodeRequest, Format, Quality, RequestError, S3Uri};

use crate::config::Config;

/// What to ask for each source: the flags `--quality`, `--one-message`, `--count`, `--output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The renditions, in the order asked, without repeats, never empty.
    pub qualities: Vec<Quality>,
    /// All qualities in one request (`qualities`) instead of one request per quality.
    pub one_message: bool,
    /// Copies of each request, video ids suffixed `-1` to `-N` when more than one.
    pub count: u32,
    /// Where the renditions go; `None` leaves it to the encoder's `OUTPUT_URI`.
    pub output: Option<S3Uri>,
    /// The formats asked for (`--format`); `None` leaves them to the encoder's `FORMATS`.
    pub formats: Option<Vec<Format>>,
}

impl Template {
    /// The template the flags describe.
    ///
    /// # Errors
    ///
    /// When no quality is given, `--count` is 0, or `--output` is not an `s3://` URI.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let output = config
            .output
            .as_deref()
            .filter(|o| !o.is_empty())
            .map(|o| S3Uri::parse("output", o, false))
            .transpose()?;
        if config.count == 0 {
            bail!("--count must be at least 1");
        }
        let mut qualities = Vec::new();
        for q in &config.qualities {
            if !qualities.contains(q) {
                qualities.push(*q);
            }
        }
        if qualities.is_empty() {
            bail!("--quality is required");
        }
        let formats = if config.formats.is_empty() {
            None
        } else {
            Some(parse_formats(
                &config.formats.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
            )?)
        };
        // A stream is one ladder: every quality in one request, so one Job packages them all.
        let streaming = formats.iter().flatten().any(|f| f.is_streaming());
        Ok(Self {
            qualities,
            formats,
            one_message: config.one_message || streaming,
            count: config.count,
            output,
        })
    }

    /// The requests for `source`, named `video_id` (suffixed per copy), each with a fresh
    /// `request_id`.
    ///
    /// # Errors
    ///
    /// [`RequestError::VideoId`] when `video_id` (with its suffix) breaks the naming rule.
    pub fn requests(&self, source: &S3Uri, video_id: &str) -> Result<Vec<EncodeRequest>, RequestError> {
        check_video_id(video_id)?;
        let groups: Vec<Vec<Quality>> = if self.one_message {
            vec![self.qualities.clone()]
        } else {
            self.qualities.iter().map(|q| vec![*q]).collect()
        };
        let mut requests = Vec::with_capacity(groups.len() * self.count as usize);
        for copy in 1..=self.count {
            let id = if self.count > 1 {
                format!("{video_id}-{copy}")
            } else {
                video_id.to_owned()
            };
            for group in &groups {
                let mut r = EncodeRequest::new(id.clone(), source.clone(), group.clone())?;
                r.output.clone_from(&self.output);
                r.formats.clone_from(&self.formats);
                r.request_id = Some(new_request_id());
                requests.push(r);
            }
        }
        Ok(requests)
    }
}

/// The requests for `--source`: the template applied to the source object, named `--video-id` or
/// after the object's file name.
///
/// # Errors
///
/// When the source, the output or the video id is invalid, or `--count` is 0.
pub fn for_source(config: &Config, source: &str) -> anyhow::Result<Vec<EncodeRequest>> {
    let source = S3Uri::parse("source", source, true)?;
    let template = Template::from_config(config)?;
    let video_id = match config.video_id.as_deref().filter(|v| !v.is_empty()) {
        Some(v) => v.to_owned(),
        None => video_id_from_key(&source.key),
    };
    Ok(template.requests(&source, &video_id)?)
}

/// A fresh request id (a random UUID).
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A video id from an object key or file name: the name without extension, unsafe characters as
/// `-`, no leading `.`, at most 128 characters; `video` when nothing is left.
pub fn video_id_from_key(key: &str) -> String {
    let name = key.rsplit('/').next().unwrap_or(key);
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    let mut id: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    while id.starts_with('.') {
        id.remove(0);
    }
    id.truncate(MAX_VIDEO_ID_LEN);
    if id.is_empty() { "video".into() } else { id }
}

/// A request read from a file, with the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRequest {
    /// 1-based line number in the file.
    pub line: usize,
    /// The request, validated, with a `request_id` (the file's, or a fresh one).
    pub request: EncodeRequest,
}

/// A line that is not a valid request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidLine {
    /// 1-based line number in the file.
    pub line: usize,
    /// Why the line is refused.
    pub reason: String,
}

impl fmt::Display for InvalidLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// A JSON Lines file, read and checked in full.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileRequests {
    /// The valid requests, in file order.
    pub requests: Vec<LineRequest>,
    /// The refused lines, in file order.
    pub invalid: Vec<InvalidLine>,
}

/// Reads `path` (`-` for standard input) and checks every line; see [`parse_lines`].
///
/// # Errors
///
/// When the file cannot be read.
pub fn read_file(path: &Path) -> anyhow::Result<FileRequests> {
    let bytes = if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading requests from standard input")?;
        buf
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
    };
    Ok(parse_lines(&bytes))
}

/// Checks every line of a JSON Lines text: each non-blank line that does not start with `#` must be
/// one request in the queue's message format, accepted by [`EncodeRequest::from_json`]. A
/// `request_id` may appear on one line only; lines without one get a fresh one.
pub fn parse_lines(text: &[u8]) -> FileRequests {
    let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
    let mut out = FileRequests::default();
    let mut ids: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, raw) in text.split(|b| *b == b'\n').enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let invalid = |reason: String| InvalidLine { line, reason };
        let Ok(body) = std::str::from_utf8(raw) else {
            out.invalid.push(invalid("not valid UTF-8".into()));
            continue;
        };
        let body = body.trim();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        match EncodeRequest::from_json(body) {
            Ok(mut request) => {
                match &request.request_id {
                    Some(id) => {
                        if let Some(first) = ids.insert(id.clone(), line) {
                            ids.insert(id.clone(), first);
                            out.invalid
                                .push(invalid(format!("request_id {id:?} was already used on line {first}")));
                            continue;
                        }
                    }
                    None => request.request_id = Some(new_request_id()),
                }
                out.requests.push(LineRequest { line, request });
            }
            Err(e) => out.invalid.push(invalid(e.to_string())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Config {
        let mut full = vec![
            "producer",
            "--queue-url",
            "http://q",
            "--source",
            "s3://media-in/uploads/My Clip.final.mov",
        ];
        full.extend_from_slice(args);
        Config::try_load_from(full).unwrap()
    }

    fn build(args: &[&str]) -> anyhow::Result<Vec<EncodeRequest>> {
        let c = config(args);
        for_source(&c, c.source.as_deref().unwrap())
    }

    #[test]
    fn one_message_per_quality_by_default() {
        let reqs = build(&["--quality", "480p", "--quality", "720p", "--quality", "480p"]).unwrap();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].qualities, vec![Quality::P480]);
        assert_eq!(reqs[1].qualities, vec![Quality::P720]);
        assert_eq!(reqs[0].video_id, "My-Clip.final");
        assert_ne!(reqs[0].request_id, reqs[1].request_id);
        for r in &reqs {
            assert_eq!(EncodeRequest::from_json(&r.to_json()).unwrap(), *r);
        }
    }

    #[test]
    fn one_message_puts_all_qualities_in_one_request() {
        let reqs = build(&["--quality", "480p,720p", "--one-message"]).unwrap();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].qualities, vec![Quality::P480, Quality::P720]);
        assert!(reqs[0].to_json().contains("\"qualities\""));
    }

    #[test]
    fn formats_go_in_every_request_and_a_stream_is_one_request_of_every_quality() {
        let reqs = build(&["--quality", "480p,720p", "--format", "mp4"]).unwrap();
        assert_eq!(reqs.len(), 2, "MP4 files alone: one message per quality as before");
        assert_eq!(reqs[0].formats, Some(vec![Format::Mp4]));
        let reqs = build(&["--quality", "480p,720p", "--format", "hls", "--format", "dash"]).unwrap();
        assert_eq!(reqs.len(), 1, "one stream, one Job");
        assert_eq!(reqs[0].qualities, vec![Quality::P480, Quality::P720]);
        assert_eq!(reqs[0].formats, Some(vec![Format::Hls, Format::Dash]));
        assert!(reqs[0].to_json().contains(r#""formats":["hls","dash"]"#));
        assert_eq!(
            build(&["--quality", "480p"]).unwrap()[0].formats,
            None,
            "the encoder's FORMATS decides"
        );
        let err = build(&["--quality", "480p", "--format", "hls,hls"]).unwrap_err();
        assert!(format!("{err:#}").contains("repeats hls"), "{err:#}");
        let mut full = vec![
            "producer",
            "--queue-url",
            "http://q",
            "--source",
            "s3://in-b/a.mp4",
            "--quality",
            "480p",
        ];
        full.extend(["--format", "webm"]);
        let err = Config::try_load_from(full).unwrap_err().to_string();
        assert!(err.contains("unknown format \"webm\""), "{err}");
    }

    #[test]
    fn count_makes_suffixed_copies() {
        let reqs = build(&["--quality", "360p", "--count", "3", "--video-id", "demo"]).unwrap();
        let ids: Vec<&str> = reqs.iter().map(|r| r.video_id.as_str()).collect();
        assert_eq!(ids, ["demo-1", "demo-2", "demo-3"]);
    }

    #[test]
    fn invalid_inputs_are_refused_before_sending() {
        let mut c = config(&["--quality", "360p"]);
        assert!(for_source(&c, "http://x/y").is_err());
        c.video_id = Some(".bad".into());
        assert!(for_source(&c, "s3://in-b/a.mp4").is_err());
        c.video_id = None;
        c.count = 0;
        assert!(for_source(&c, "s3://in-b/a.mp4").is_err());
        assert!(build(&["--quality", "360p", "--output", "nope"]).is_err());
    }

    #[test]
    fn video_ids_from_keys_are_safe() {
        assert_eq!(video_id_from_key("uploads/big-buck-bunny.mov"), "big-buck-bunny");
        assert_eq!(video_id_from_key(".hidden.mp4"), "hidden");
        assert_eq!(video_id_from_key("a/é b.mp4"), "--b");
        assert_eq!(video_id_from_key("noext"), "noext");
        assert_eq!(video_id_from_key("..."), "video");
        check_video_id(&video_id_from_key(&"x".repeat(300))).unwrap();
    }

    #[test]
    fn a_file_of_valid_lines_gives_every_request_in_order() {
        let text = "\u{feff}# renditions for the launch\r\n\
            {\"video_id\":\"a\",\"source\":\"s3://in-b/a.mp4\",\"quality\":\"720p\",\"request_id\":\"r-a\"}\r\n\
            \n   \n\
            {\"video_id\":\"b\",\"source\":\"s3://in-b/b.mov\",\"qualities\":[\"480p\",\"1080p\"],\"output\":\"s3://out-b/x\"}\n";
        let parsed = parse_lines(text.as_bytes());
        assert!(parsed.invalid.is_empty(), "{:?}", parsed.invalid);
        let lines: Vec<usize> = parsed.requests.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 5]);
        assert_eq!(parsed.requests[0].request.request_id.as_deref(), Some("r-a"));
        let b = &parsed.requests[1].request;
        assert_eq!(b.qualities, [Quality::P480, Quality::P1080]);
        assert!(b.list_form);
        let generated = b.request_id.as_deref().unwrap();
        assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");
    }

    #[test]
    fn each_invalid_line_is_named_with_its_number_and_reason() {
        let text = [
            r#"{"video_id":"a","source":"s3://in-b/a.mp4","quality":"720p","request_id":"same"}"#,
            r#"{"video_id":"b","source":"s3://in-b/b.mp4","qualty":"720p"}"#,
            "# fine",
            r#"{"video_id":"c","source":"s3://in-b/c.mp4","quality":"721p"}"#,
            "not json",
            r#"{"video_id":"d","source":"s3://in-b/d.mp4","quality":"360p","request_id":"same"}"#,
            r#"{"video_id":"e","source":"s3://in-b/e.mp4","quality":"360p"}"#,
        ]
        .join("\n");
        let parsed = parse_lines(text.as_bytes());
        let lines: Vec<usize> = parsed.requests.iter().map(|r| r.line).collect();
        assert_eq!(lines, [1, 7]);
        let bad: Vec<String> = parsed.invalid.iter().map(ToString::to_string).collect();
        assert_eq!(bad.len(), 4, "{bad:?}");
        assert!(
            bad[0].starts_with("line 2: ") && bad[0].contains("unknown field `qualty`"),
            "{bad:?}"
        );
        assert!(
            bad[1].starts_with("line 4: ") && bad[1].contains("unknown quality \"721p\""),
            "{bad:?}"
        );
        assert!(bad[2].starts_with("line 5: "), "{bad:?}");
        assert_eq!(bad[3], "line 6: request_id \"same\" was already used on line 1");
    }

    #[test]
    fn a_line_that_is_not_utf8_is_invalid() {
        let parsed = parse_lines(b"{\"video_id\":\"\xff\"}\n");
        assert_eq!(
            parsed.invalid,
            [InvalidLine {
                line: 1,
                reason: "not valid UTF-8".into()
            }]
        );
    }
}
