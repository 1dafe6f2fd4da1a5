//! The encode request: the JSON body of one SQS message.
//!
//! ```json
//! {"video_id": "big-buck-bunny", "source": "s3://media-in/uploads/big-buck-bunny.mov",
//!  "quality": "720p", "output": "s3://media-out/renditions", "request_id": "3f0c6a52-..."}
//! ```
//!
//! Parsing is strict on purpose: an unknown field, a wrong type, or both (or neither) of `quality`
//! and `qualities` makes the message invalid, because a typo (`"qualty"`) must never silently turn
//! into a default. [`EncodeRequest::from_json`] is the only way in, and it validates every rule of
//! the contract; [`EncodeRequest::to_json`] writes the same wire form back.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::format::{Format, parse_formats};
use crate::part::{self, Part, PartError, WireChunk, WireStitch};

/// Longest accepted `video_id`.
pub const MAX_VIDEO_ID_LEN: usize = 128;
/// Longest accepted `request_id`.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Why a message body is not a valid encode request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// Not JSON, a wrong type, a missing required field or an unknown field.
    #[error("not a valid encode request: {0}")]
    Json(#[from] serde_json::Error),
    /// `video_id` breaks the naming rule.
    #[error("invalid video_id {value:?}: {reason}")]
    VideoId {
        /// The value as received.
        value: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// `source` or `output` is not an `s3://bucket/key` URI.
    #[error("invalid {field} {value:?}: {reason}")]
    Uri {
        /// `source` or `output`.
        field: &'static str,
        /// The value as received.
        value: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A quality name that is not in the ladder.
    #[error("unknown quality {0:?}: expected one of 360p, 480p, 720p, 1080p, 1440p, 2160p (or 4k)")]
    UnknownQuality(String),
    /// Neither `quality` nor `qualities`.
    #[error("one of \"quality\" or \"qualities\" is required")]
    NoQuality,
    /// Both `quality` and `qualities`.
    #[error("give either \"quality\" or \"qualities\", not both")]
    BothQualityFields,
    /// `qualities` is an empty list.
    #[error("\"qualities\" must not be empty")]
    EmptyQualities,
    /// `qualities` names the same rendition twice.
    #[error("\"qualities\" repeats {0}")]
    RepeatedQuality(Quality),
    /// `request_id` is empty, too long or holds control characters.
    #[error("invalid request_id: {0}")]
    RequestId(&'static str),
    /// `formats` is empty, names an unknown format or repeats one.
    #[error("invalid formats: {0}")]
    Formats(#[from] crate::format::FormatsError),
    /// `chunk` or `stitch` is malformed, or both are given.
    #[error("invalid chunk or stitch: {0}")]
    Part(#[from] PartError),
}

/// A rendition size: the short side of the displayed picture, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Quality {
    /// 360 pixels on the short side.
    P360,
    /// 480 pixels on the short side.
    P480,
    /// 720 pixels on the short side.
    P720,
    /// 1080 pixels on the short side.
    P1080,
    /// 1440 pixels on the short side.
    P1440,
    /// 2160 pixels on the short side (`4k` is an alias).
    P2160,
}

impl Quality {
    /// Every quality, smallest first.
    pub const ALL: [Quality; 6] = [
        Self::P360,
        Self::P480,
        Self::P720,
        Self::P1080,
        Self::P1440,
        Self::P2160,
    ];

    /// The contract's name, also the rendition's file name (`720p` → `720p.mp4`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::P360 => "360p",
            Self::P480 => "480p",
            Self::P720 => "720p",
            Self::P1080 => "1080p",
            Self::P1440 => "1440p",
            Self::P2160 => "2160p",
        }
    }

    /// The short side of the displayed picture, in pixels.
    pub fn short_side(self) -> u32 {
        match self {
            Self::P360 => 360,
            Self::P480 => 480,
            Self::P720 => 720,
            Self::P1080 => 1080,
            Self::P1440 => 1440,
            Self::P2160 => 2160,
        }
    }
}

impl fmt::Display for Quality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Quality {
    type Err = RequestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "4k" {
            return Ok(Self::P2160);
        }
        Self::ALL
            .into_iter()
            .find(|q| q.as_str() == s)
            .ok_or_else(|| RequestError::UnknownQuality(s.to_owned()))
    }
}

/// An `s3://bucket/key` location. The key may be empty only where a prefix is meant (`output`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct S3Uri {
    /// The bucket name.
    pub bucket: String,
    /// The object key or prefix, without the leading `/`.
    pub key: String,
}

impl S3Uri {
    /// Parses `s3://bucket/key`. `field` names the request field in error messages.
    ///
    /// # Errors
    ///
    /// [`RequestError::Uri`] when the scheme, the bucket name or (with `key_required`) the key is
    /// missing or malformed.
    pub fn parse(field: &'static str, value: &str, key_required: bool) -> Result<Self, RequestError> {
        let err = |reason: &str| RequestError::Uri {
            field,
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = value
            .strip_prefix("s3://")
            .ok_or_else(|| err("expected s3://bucket/key"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if let Err(reason) = check_bucket(bucket) {
            return Err(err(&format!("bad bucket name: {reason}")));
        }
        if key_required && (key.is_empty() || key.ends_with('/')) {
            return Err(err("the object key is missing"));
        }
        if key.len() > 1024 {
            return Err(err("the object key is longer than 1024 bytes"));
        }
        if key.chars().any(char::is_control) {
            return Err(err("the object key holds control characters"));
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }

    /// The key of `name` under this prefix: `prefix/name`, with exactly one `/` between.
    pub fn join(&self, name: &str) -> S3Uri {
        let prefix = self.key.trim_end_matches('/');
        let key = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        };
        S3Uri {
            bucket: self.bucket.clone(),
            key,
        }
    }
}

impl fmt::Display for S3Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// S3's bucket naming rules (the general-purpose bucket subset that matters for a typo).
fn check_bucket(bucket: &str) -> Result<(), &'static str> {
    if !(3..=63).contains(&bucket.len()) {
        return Err("must be 3 to 63 characters");
    }
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err("only lowercase letters, digits, '-' and '.' are allowed");
    }
    let first_last = [bucket.as_bytes()[0], bucket.as_bytes()[bucket.len() - 1]];
    if first_last.iter().any(|b| !b.is_ascii_alphanumeric()) {
        return Err("must start and end with a letter or digit");
    }
    Ok(())
}

/// Checks the `video_id` rule: 1 to 128 of `A-Z a-z 0-9 . _ -`, not starting with `.`.
///
/// # Errors
///
/// [`RequestError::VideoId`] naming the rule broken.
pub fn check_video_id(value: &str) -> Result<(), RequestError> {
    let err = |reason| RequestError::VideoId {
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(err("must not be empty"));
    }
    if value.len() > MAX_VIDEO_ID_LEN {
        return Err(err("must be at most 128 characters"));
    }
    if value.starts_with('.') {
        return Err(err("must not start with '.'"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(err("only A-Z a-z 0-9 . _ - are allowed"));
    }
    Ok(())
}

/// The wire form, exactly the contract's fields; unknown fields are refused.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRequest {
    video_id: String,
    source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    quality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    qualities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    formats: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chunk: Option<WireChunk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stitch: Option<WireStitch>,
}

/// A validated encode request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeRequest {
    /// Names the output folder: `{output}/{video_id}/{quality}.mp4`.
    pub video_id: String,
    /// The video to encode.
    pub source: S3Uri,
    /// The renditions to make, in the order asked, never empty, without repeats.
    pub qualities: Vec<Quality>,
    /// Whether the request used the list form (`qualities`), kept so it is written back the same way.
    pub list_form: bool,
    /// Where the renditions go; `None` means the encoder's `OUTPUT_URI`.
    pub output: Option<S3Uri>,
    /// Echoed in every report about this request.
    pub request_id: Option<String>,
    /// The output formats asked for, in order, never empty, without repeats; `None` means the
    /// encoder's `FORMATS`.
    pub formats: Option<Vec<Format>>,
    /// The part of a split request this message asks for (sent by the encoder itself), or
    /// `None` for a whole request.
    pub part: Option<Part>,
}

impl EncodeRequest {
    /// A request for one rendition, as the producer builds it.
    ///
    /// # Errors
    ///
    /// [`RequestError::VideoId`] when `video_id` breaks the naming rule.
    pub fn new(video_id: impl Into<String>, source: S3Uri, qualities: Vec<Quality>) -> Result<Self, RequestError> {
        let video_id = video_id.into();
        check_video_id(&video_id)?;
        check_qualities(&qualities)?;
        Ok(Self {
            video_id,
            source,
            list_form: qualities.len() > 1,
            qualities,
            output: None,
            request_id: None,
            formats: None,
            part: None,
        })
    }

    /// Parses and validates a message body.
    ///
    /// # Errors
    ///
    /// A [`RequestError`] naming the first rule the body breaks.
    pub fn from_json(body: &str) -> Result<Self, RequestError> {
        let wire: WireRequest = serde_json::from_str(body)?;
        check_video_id(&wire.video_id)?;
        let source = S3Uri::parse("source", &wire.source, true)?;
        let (qualities, list_form) = match (wire.quality, wire.qualities) {
            (Some(_), Some(_)) => return Err(RequestError::BothQualityFields),
            (None, None) => return Err(RequestError::NoQuality),
            (Some(q), None) => (vec![q.parse()?], false),
            (None, Some(list)) => (
                list.iter().map(|q| q.parse()).collect::<Result<Vec<Quality>, _>>()?,
                true,
            ),
        };
        check_qualities(&qualities)?;
        let output = wire.output.map(|o| S3Uri::parse("output", &o, false)).transpose()?;
        if let Some(id) = &wire.request_id {
            check_request_id(id)?;
        }
        let formats = wire.formats.as_deref().map(parse_formats).transpose()?;
        let part = part::from_wire(wire.chunk, wire.stitch)?;
        Ok(Self {
            video_id: wire.video_id,
            source,
            qualities,
            list_form,
            output,
            request_id: wire.request_id,
            formats,
            part,
        })
    }

    /// The message body for this request, in the contract's wire form.
    pub fn to_json(&self) -> String {
        let names = || self.qualities.iter().map(|q| q.as_str().to_owned());
        let (chunk, stitch) = part::to_wire(self.part.as_ref());
        let wire = WireRequest {
            video_id: self.video_id.clone(),
            source: self.source.to_string(),
            quality: (!self.list_form).then(|| names().next().unwrap_or_default()),
            qualities: self.list_form.then(|| names().collect()),
            output: self.output.as_ref().map(ToString::to_string),
            request_id: self.request_id.clone(),
            formats: self
                .formats
                .as_ref()
                .map(|f| f.iter().map(|f| f.as_str().to_owned()).collect()),
            chunk,
            stitch,
        };
        serde_json::to_string(&wire).expect("a request always serializes")
    }

    /// The video's folder, `{output}/{video_id}`, given the encoder's default output; `None` when
    /// the request has no `output` and there is no default either.
    pub fn video_folder(&self, default_output: Option<&S3Uri>) -> Option<S3Uri> {
        let output = self.output.as_ref().or(default_output)?;
        Some(output.join(&self.video_id))
    }

    /// Where the rendition of `quality` goes, given the encoder's default output.
    ///
    /// Returns `None` when the request has no `output` and there is no default either.
    pub fn rendition_uri(&self, default_output: Option<&S3Uri>, quality: Quality) -> Option<S3Uri> {
        let output = self.output.as_ref().or(default_output)?;
        Some(output.join(&format!("{}/{}.mp4", self.video_id, quality.as_str())))
    }
}

fn check_qualities(qualities: &[Quality]) -> Result<(), RequestError> {
    if qualities.is_empty() {
        return Err(RequestError::EmptyQualities);
    }
    for (i, q) in qualities.iter().enumerate() {
        if qualities[..i].contains(q) {
            return Err(RequestError::RepeatedQuality(*q));
        }
    }
    Ok(())
}

fn check_request_id(id: &str) -> Result<(), RequestError> {
    if id.is_empty() {
        return Err(RequestError::RequestId("must not be empty"));
    }
    if id.len() > MAX_REQUEST_ID_LEN {
        return Err(RequestError::RequestId("must be at most 128 characters"));
    }
    if id.chars().any(char::is_control) {
        return Err(RequestError::RequestId("must not hold control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"{"video_id": "big-buck-bunny", "source": "s3://media-in/uploads/big-buck-bunny.mov",
        "quality": "720p", "output": "s3://media-out/renditions", "request_id": "3f0c6a52"}"#;

    fn parse(body: &str) -> Result<EncodeRequest, RequestError> {
        EncodeRequest::from_json(body)
    }

    #[test]
    fn the_contract_example_parses_with_every_field() {
        let r = parse(VALID).unwrap();
        assert_eq!(r.video_id, "big-buck-bunny");
        assert_eq!(r.source.bucket, "media-in");
        assert_eq!(r.source.key, "uploads/big-buck-bunny.mov");
        assert_eq!(r.qualities, vec![Quality::P720]);
        assert!(!r.list_form);
        assert_eq!(r.output.as_ref().unwrap().to_string(), "s3://media-out/renditions");
        assert_eq!(r.request_id.as_deref(), Some("3f0c6a52"));
    }

    #[test]
    fn formats_are_optional_checked_and_written_back() {
        let r =
            parse(r#"{"video_id":"v","source":"s3://in-b/a.mp4","quality":"480p","formats":["hls","dash"]}"#).unwrap();
        assert_eq!(r.formats, Some(vec![Format::Hls, Format::Dash]));
        assert!(r.to_json().contains(r#""formats":["hls","dash"]"#));
        assert_eq!(parse(&r.to_json()).unwrap(), r);
        assert_eq!(
            parse(VALID).unwrap().formats,
            None,
            "absent: the encoder's FORMATS decides"
        );
        assert!(!parse(VALID).unwrap().to_json().contains("formats"));
        for (body, says) in [
            (
                r#"{"video_id":"v","source":"s3://in-b/a.mp4","quality":"480p","formats":[]}"#,
                "must not be empty",
            ),
            (
                r#"{"video_id":"v","source":"s3://in-b/a.mp4","quality":"480p","formats":["hls","hls"]}"#,
                "repeats hls",
            ),
            (
                r#"{"video_id":"v","source":"s3://in-b/a.mp4","quality":"480p","formats":["webm"]}"#,
                "unknown format \"webm\"",
            ),
            (
                r#"{"video_id":"v","source":"s3://in-b/a.mp4","quality":"480p","formats":"hls"}"#,
                "not a valid encode request",
            ),
        ] {
            let e = parse(body).unwrap_err().to_string();
            assert!(e.contains(says), "{body}: {e}");
        }
    }

    #[test]
    fn a_request_round_trips_through_its_wire_form() {
        let r = parse(VALID).unwrap();
        assert_eq!(parse(&r.to_json()).unwrap(), r);
        let list = parse(r#"{"video_id":"v","source":"s3://in-b/a.mp4","qualities":["480p","4k"]}"#).unwrap();
        assert_eq!(list.qualities, vec![Quality::P480, Quality::P2160]);
        let back = list.to_json();
        assert!(back.contains(r#""qualities":["480p","2160p"]"#), "{back}");
        assert!(!back.contains(r#""quality""#));
        assert_eq!(parse(&back).unwrap(), list);
    }

    #[test]
    fn a_chunk_or_a_stitch_is_parsed_checked_and_written_back() {
        let base = r#""video_id":"v","source":"s3://in-b/k.mp4","qualities":["720p","480p"]"#;
        let chunk = parse(&format!(r#"{{{base},"chunk":{{"plan":"p-0a","index":2,"count":3}}}}"#)).unwrap();
        assert_eq!(
            chunk.part,
            Some(Part::Chunk {
                plan: "p-0a".into(),
                index: 2,
                count: 3
            })
        );
        assert_eq!(EncodeRequest::from_json(&chunk.to_json()).unwrap(), chunk);
        let stitch = parse(&format!(r#"{{{base},"stitch":{{"plan":"p-0a","count":3}}}}"#)).unwrap();
        assert_eq!(stitch.part.as_ref().map(Part::count), Some(3));
        assert_eq!(EncodeRequest::from_json(&stitch.to_json()).unwrap(), stitch);
        assert_eq!(parse(&format!("{{{base}}}")).unwrap().part, None);
        for (part, why) in [
            (
                r#""chunk":{"plan":"p","index":0,"count":2},"stitch":{"plan":"p","count":2}"#,
                "not both",
            ),
            (r#""chunk":{"plan":"P/../x","index":0,"count":2}"#, "invalid plan"),
            (r#""chunk":{"plan":"","index":0,"count":2}"#, "invalid plan"),
            (r#""chunk":{"plan":"p","index":2,"count":2}"#, "invalid index 2"),
            (r#""stitch":{"plan":"p","count":1}"#, "invalid count 1"),
            (r#""stitch":{"plan":"p","count":10001}"#, "invalid count 10001"),
            (r#""chunk":{"plan":"p","index":0}"#, "missing field `count`"),
            (r#""chunk":{"plan":"p","index":0,"count":2,"extra":1}"#, "unknown field"),
            (r#""chunk":{"plan":"p","index":-1,"count":2}"#, "invalid value"),
        ] {
            let err = parse(&format!("{{{base},{part}}}")).unwrap_err().to_string();
            assert!(err.contains(why), "{part}: {err}");
        }
    }

    #[test]
    fn an_unknown_field_is_refused_not_ignored() {
        let err = parse(r#"{"video_id":"v","source":"s3://in-b/a.mp4","qualty":"720p"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `qualty`"), "{err}");
    }

    #[test]
    fn a_wrong_type_is_refused() {
        let err = parse(r#"{"video_id":"v","source":"s3://in-b/a.mp4","quality":720}"#).unwrap_err();
        assert!(matches!(err, RequestError::Json(_)), "{err}");
        let err = parse(r#"{"video_id":"v","source":"s3://in-b/a.mp4","qualities":"720p"}"#).unwrap_err();
        assert!(matches!(err, RequestError::Json(_)), "{err}");
    }

    #[test]
    fn bad_json_and_missing_required_fields_are_refused() {
        assert!(matches!(parse("not json"), Err(RequestError::Json(_))));
        assert!(matches!(parse(""), Err(RequestError::Json(_))));
        assert!(matches!(parse("[]"), Err(RequestError::Json(_))));
        let err = parse(r#"{"source":"s3://in-b/a.mp4","quality":"720p"}"#).unwrap_err();
        assert!(err.to_string().contains("missing field `video_id`"), "{err}");
        let err = parse(r#"{"video_id":"v","quality":"720p"}"#).unwrap_err();
        assert!(err.to_string().contains("missing field `source`"), "{err}");
    }

    #[test]
    fn both_or_neither_quality_fields_are_refused() {
        let both = r#"{"video_id":"v","source":"s3://in-b/a.mp4","quality":"720p","qualities":["480p"]}"#;
        assert!(matches!(parse(both), Err(RequestError::BothQualityFields)));
        let neither = r#"{"video_id":"v","source":"s3://in-b/a.mp4"}"#;
        assert!(matches!(parse(neither), Err(RequestError::NoQuality)));
    }

    #[test]
    fn an_empty_or_repeating_quality_list_is_refused() {
        let empty = r#"{"video_id":"v","source":"s3://in-b/a.mp4","qualities":[]}"#;
        assert!(matches!(parse(empty), Err(RequestError::EmptyQualities)));
        let repeat = r#"{"video_id":"v","source":"s3://in-b/a.mp4","qualities":["720p","480p","720p"]}"#;
        assert!(matches!(
            parse(repeat),
            Err(RequestError::RepeatedQuality(Quality::P720))
        ));
        let alias = r#"{"video_id":"v","source":"s3://in-b/a.mp4","qualities":["4k","2160p"]}"#;
        assert!(matches!(
            parse(alias),
            Err(RequestError::RepeatedQuality(Quality::P2160))
        ));
    }

    #[test]
    fn every_quality_name_and_the_4k_alias_parse() {
        for q in Quality::ALL {
            assert_eq!(q.as_str().parse::<Quality>().unwrap(), q);
        }
        assert_eq!("4k".parse::<Quality>().unwrap(), Quality::P2160);
        for bad in ["720", "720P", "4K", "8k", "", "hd"] {
            assert!(
                matches!(bad.parse::<Quality>(), Err(RequestError::UnknownQuality(_))),
                "{bad}"
            );
        }
        let err = parse(r#"{"video_id":"v","source":"s3://in-b/a.mp4","quality":"721p"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown quality \"721p\""), "{err}");
    }

    #[test]
    fn video_ids_follow_the_naming_rule() {
        for ok in ["a", "Big_Buck.Bunny-2", "0", &"x".repeat(128), "a..b"] {
            check_video_id(ok).unwrap();
        }
        for bad in ["", ".hidden", "a/b", "a b", "ü", "../x", &"x".repeat(129)] {
            let err = check_video_id(bad).unwrap_err();
            assert!(matches!(err, RequestError::VideoId { .. }), "{bad}: {err}");
        }
        let err = parse(r#"{"video_id":"../etc","source":"s3://in-b/a.mp4","quality":"720p"}"#).unwrap_err();
        assert!(err.to_string().contains("invalid video_id"), "{err}");
    }

    #[test]
    fn source_uris_need_the_s3_scheme_a_valid_bucket_and_a_key() {
        for bad in [
            "http://in-b/a.mp4",
            "s3://in-b",
            "s3://in-b/",
            "s3://in-b/dir/",
            "s3:///a.mp4",
            "s3://IN/a.mp4",
            "s3://ab/a.mp4",
            "s3://-ab/a.mp4",
            "/local/file.mp4",
        ] {
            let body = format!(r#"{{"video_id":"v","source":"{bad}","quality":"720p"}}"#);
            let err = parse(&body).unwrap_err();
            assert!(matches!(err, RequestError::Uri { field: "source", .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn output_may_be_a_bare_bucket_or_a_prefix() {
        for (output, expect) in [
            ("s3://out-b", "s3://out-b/v/480p.mp4"),
            ("s3://out-b/", "s3://out-b/v/480p.mp4"),
            ("s3://out-b/renditions", "s3://out-b/renditions/v/480p.mp4"),
            ("s3://out-b/renditions/", "s3://out-b/renditions/v/480p.mp4"),
        ] {
            let body = format!(r#"{{"video_id":"v","source":"s3://in-b/a.mp4","quality":"480p","output":"{output}"}}"#);
            let r = parse(&body).unwrap();
            assert_eq!(r.rendition_uri(None, Quality::P480).unwrap().to_string(), expect);
        }
        let err = parse(r#"{"video_id":"v","source":"s3://in-b/a.mp4","quality":"480p","output":"out"}"#).unwrap_err();
        assert!(matches!(err, RequestError::Uri { field: "output", .. }), "{err}");
    }

    #[test]
    fn without_output_the_encoders_default_is_used_or_none() {
        let r = parse(r#"{"video_id":"v","source":"s3://in-b/a.mp4","quality":"480p"}"#).unwrap();
        assert!(r.rendition_uri(None, Quality::P480).is_none());
        let default = S3Uri::parse("OUTPUT_URI", "s3://def-b/x", false).unwrap();
        assert_eq!(
            r.rendition_uri(Some(&default), Quality::P480).unwrap().to_string(),
            "s3://def-b/x/v/480p.mp4"
        );
    }

    #[test]
    fn request_ids_are_checked() {
        let body =
            |id: &str| format!(r#"{{"video_id":"v","source":"s3://in-b/a.mp4","quality":"480p","request_id":"{id}"}}"#);
        assert!(matches!(parse(&body("")), Err(RequestError::RequestId(_))));
        assert!(matches!(
            parse(&body(&"r".repeat(129))),
            Err(RequestError::RequestId(_))
        ));
        assert!(matches!(parse(&body("a\\nb")), Err(RequestError::RequestId(_))));
        parse(&body("3f0c6a52-3c1e-4d3a-9a55-7d2b1f0f9b11")).unwrap();
    }
}
