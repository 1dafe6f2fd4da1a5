//! What the encoder tells the result analyzer (`POST /events`), one JSON object per outcome.
//!
//! Every encoder run has a `run_id`; it reports `started` when it has a message (with the lease it
//! holds it under, `lease_seconds`), `progress` every few seconds while it works (stage, percent,
//! frames per second), then exactly one terminal event (`processed`, `killed`, `failed`,
//! `rejected`, `duplicate`, `split`, `chunk`), or only `empty` when the queue had nothing for it.
//! The analyzer pairs a run's events to draw one bar per run, and calls a run that stopped
//! reporting for longer than its lease `lost`.
//!
//! A split request's runs say so: the run that split it ends `split` (with `chunks`), each chunk
//! run carries `chunk` and `chunks` on every event and ends `chunk` when its chunk is stored, and
//! the run that stitches the chunks carries `chunks` and ends `processed`, once for the request.
//!
//! [`Event::validate`] holds the rules an event must keep beyond its JSON shape; the analyzer
//! refuses (422) an event that breaks one, and the encoder's own reports keep them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The kind of an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A run took a message and began work.
    Started,
    /// Every rendition was stored and verified, and the message deleted.
    Processed,
    /// The run was stopped by SIGTERM/SIGINT; its message was released for another run.
    Killed,
    /// The run failed; its message was released for a retry.
    Failed,
    /// The request can never succeed; the message went to the dead-letter queue.
    Rejected,
    /// The renditions already existed for the same source and settings; the message was deleted.
    Duplicate,
    /// The queue had no message within the long-poll wait.
    Empty,
    /// A running run's report of how far it is (`stage`, `percent`, `fps`); not an outcome.
    Progress,
    /// The request was split: its plan stored and one chunk message per missing chunk sent
    /// (`chunks` says how many the plan has); the request's message was deleted.
    Split,
    /// A chunk (`chunk` of `chunks`) was stored and verified, or found stored; its message was
    /// deleted. The request is `processed` once, by the run that stitches the chunks.
    Chunk,
}

impl EventKind {
    /// Every kind, in the order the dashboard shows them.
    pub const ALL: [EventKind; 10] = [
        Self::Started,
        Self::Processed,
        Self::Killed,
        Self::Failed,
        Self::Rejected,
        Self::Duplicate,
        Self::Empty,
        Self::Progress,
        Self::Split,
        Self::Chunk,
    ];

    /// The lowercase name used on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Processed => "processed",
            Self::Killed => "killed",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
            Self::Duplicate => "duplicate",
            Self::Empty => "empty",
            Self::Progress => "progress",
            Self::Split => "split",
            Self::Chunk => "chunk",
        }
    }

    /// Whether this kind ends a run (every kind but `started` and `progress`).
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Started | Self::Progress)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown event kind.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "unknown event kind {0:?}: expected one of started, processed, killed, failed, rejected, duplicate, empty, progress, split, chunk"
)]
pub struct UnknownKind(pub String);

impl FromStr for EventKind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

/// One outcome, as posted to `POST /events`. Only `kind` is required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// Identifies one encoder run (one process), to pair `started` with its outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The request's `video_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_id: Option<String>,
    /// The renditions asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub qualities: Vec<String>,
    /// The request's `request_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The SQS message id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// How many times SQS has delivered this message (1 on the first try).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_count: Option<u32>,
    /// The host (pod) name of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Why: the rejection or failure reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Seconds from the run's start to this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_seconds: Option<f64>,
    /// Seconds spent transcoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encode_seconds: Option<f64>,
    /// Video frames decoded from the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<u64>,
    /// Decoded frames per second of transcoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    /// Duration of the source, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_seconds: Option<f64>,
    /// The stored renditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    /// The lease the run holds its message under (its visibility timeout), in seconds: a run with
    /// no report for longer than this is `lost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_seconds: Option<u64>,
    /// What a `progress` report's run is doing: `downloading`, `encoding` or `uploading`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// How far the stage is, 0 to 100, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// A chunk run's chunk, from 0 (with `chunks`): every event of a run that encodes one chunk of
    /// a split request carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<u32>,
    /// How many chunks the request's plan has: on a `split` event, on every event of a chunk run,
    /// and on every event of the run that stitches them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<u32>,
}

impl Event {
    /// An event of `kind` with nothing else filled in.
    pub fn new(kind: EventKind) -> Self {
        Self {
            kind,
            run_id: None,
            video_id: None,
            qualities: Vec::new(),
            request_id: None,
            message_id: None,
            receive_count: None,
            host: None,
            reason: None,
            elapsed_seconds: None,
            encode_seconds: None,
            frames: None,
            fps: None,
            source_seconds: None,
            outputs: Vec::new(),
            lease_seconds: None,
            stage: None,
            percent: None,
            chunk: None,
            chunks: None,
        }
    }
}

/// Longest identifier (`run_id`, `request_id`, `message_id`, `host`) accepted: the encoder's are a
/// UUID, a `request_id` of at most 128 characters, an SQS message id and a pod name.
pub const MAX_ID_LEN: usize = 256;
/// Longest output URI accepted: `s3://`, a bucket name (63) and a key (1024 bytes), with room.
pub const MAX_URI_LEN: usize = 2048;

/// The stages a `progress` report may name.
pub const STAGES: [&str; 5] = ["downloading", "splitting", "encoding", "stitching", "uploading"];

/// An event that breaks one of [`Event::validate`]'s rules; the message names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidEvent(pub String);

impl Event {
    /// Checks the rules an event must keep beyond its JSON shape, and writes its qualities by
    /// their contract names (`4k` becomes `2160p`, so the two count together).
    ///
    /// # Errors
    ///
    /// [`InvalidEvent`] naming the first rule broken: a `started` event without `run_id`, an empty
    /// or over-long identifier, control characters, an invalid `video_id`, an unknown or repeated
    /// quality, a negative or non-finite figure, a `receive_count` of 0.
    pub fn validate(mut self) -> Result<Event, InvalidEvent> {
        let bad = |m: String| InvalidEvent(m);
        let text = |field: &str, value: &str, max: usize| -> Result<(), InvalidEvent> {
            if value.chars().count() > max {
                return Err(bad(format!("{field} must be at most {max} characters")));
            }
            if value.chars().any(char::is_control) {
                return Err(bad(format!("{field} must not contain control characters")));
            }
            Ok(())
        };
        match &self.run_id {
            Some(run) if run.is_empty() => return Err(bad("run_id must not be empty".into())),
            Some(run) => text("run_id", run, MAX_ID_LEN)?,
            None if self.kind == EventKind::Started => {
                return Err(bad(
                    "a started event needs a run_id, to be paired with its outcome".into()
                ));
            }
            None => {}
        }
        if let Some(v) = &self.video_id {
            crate::request::check_video_id(v).map_err(|err| bad(err.to_string()))?;
        }
        for (field, value) in [
            ("request_id", &self.request_id),
            ("message_id", &self.message_id),
            ("host", &self.host),
        ] {
            if let Some(v) = value {
                text(field, v, MAX_ID_LEN)?;
            }
        }
        // `reason` is free text (multi-line error chains included), bounded by the body limit.
        for o in &self.outputs {
            text("outputs", o, MAX_URI_LEN)?;
        }
        let mut qualities = Vec::with_capacity(self.qualities.len());
        for q in &self.qualities {
            let q: crate::Quality = q.parse().map_err(|err: crate::RequestError| bad(err.to_string()))?;
            let name = q.as_str().to_owned();
            if qualities.contains(&name) {
                return Err(bad(format!("quality {name} is listed twice")));
            }
            qualities.push(name);
        }
        self.qualities = qualities;
        for (field, value) in [
            ("elapsed_seconds", self.elapsed_seconds),
            ("encode_seconds", self.encode_seconds),
            ("fps", self.fps),
            ("source_seconds", self.source_seconds),
        ] {
            if let Some(v) = value
                && !(v.is_finite() && v >= 0.0)
            {
                return Err(bad(format!("{field} must be a number of zero or more, got {v}")));
            }
        }
        if let Some(p) = self.percent
            && !(p.is_finite() && (0.0..=100.0).contains(&p))
        {
            return Err(bad(format!("percent must be 0 to 100, got {p}")));
        }
        if let Some(stage) = &self.stage
            && !STAGES.contains(&stage.as_str())
        {
            return Err(bad(format!(
                "stage must be one of {}, got {stage:?}",
                STAGES.join(", ")
            )));
        }
        if self.lease_seconds == Some(0) {
            return Err(bad("lease_seconds must be at least 1".into()));
        }
        if self.receive_count == Some(0) {
            return Err(bad("receive_count counts deliveries: it starts at 1".into()));
        }
        match (self.chunk, self.chunks) {
            (_, Some(n)) if n < 2 => return Err(bad(format!("chunks must be at least 2, got {n}"))),
            (Some(_), None) => return Err(bad("chunk needs chunks, the plan's number of chunks".into())),
            (Some(i), Some(n)) if i >= n => {
                return Err(bad(format!("chunk must be below chunks ({n}), got {i}")));
            }
            _ => {}
        }
        match self.kind {
            EventKind::Chunk if self.chunk.is_none() => {
                return Err(bad("a chunk event needs chunk and chunks".into()));
            }
            EventKind::Split if self.chunks.is_none() || self.chunk.is_some() => {
                return Err(bad("a split event needs chunks, and no chunk".into()));
            }
            _ => {}
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> Event {
        serde_json::from_str(json).expect("an event")
    }

    #[test]
    fn a_complete_encoder_report_is_valid_and_4k_is_written_2160p() {
        let e = event(
            r#"{"kind":"processed","run_id":"r1","video_id":"big-buck-bunny","qualities":["720p","4k"],
                "request_id":"q1","message_id":"m1","receive_count":1,"host":"encoder-abc",
                "elapsed_seconds":12.5,"encode_seconds":9.25,"frames":300,"fps":32.4,"source_seconds":10,
                "outputs":["s3://out/big-buck-bunny/720p.mp4"]}"#,
        )
        .validate()
        .expect("valid");
        assert_eq!(e.qualities, ["720p", "2160p"]);
    }

    #[test]
    fn events_that_break_a_rule_are_refused_with_the_rule() {
        for (json, expected) in [
            (r#"{"kind":"started"}"#, "needs a run_id"),
            (r#"{"kind":"failed","run_id":""}"#, "run_id must not be empty"),
            (r#"{"kind":"processed","video_id":"../etc"}"#, "video_id"),
            (r#"{"kind":"processed","qualities":["721p"]}"#, "721p"),
            (r#"{"kind":"processed","qualities":["720p","720p"]}"#, "listed twice"),
            (r#"{"kind":"processed","encode_seconds":-1}"#, "encode_seconds"),
            (r#"{"kind":"processed","receive_count":0}"#, "receive_count"),
            (r#"{"kind":"processed","host":"a\u0000b"}"#, "control characters"),
            (
                r#"{"kind":"progress","run_id":"r","percent":101}"#,
                "percent must be 0 to 100",
            ),
            (
                r#"{"kind":"progress","run_id":"r","stage":"dancing"}"#,
                "stage must be one of",
            ),
            (r#"{"kind":"started","run_id":"r","lease_seconds":0}"#, "lease_seconds"),
            (
                r#"{"kind":"chunk","run_id":"r","chunks":3}"#,
                "a chunk event needs chunk",
            ),
            (r#"{"kind":"started","run_id":"r","chunk":1}"#, "chunk needs chunks"),
            (
                r#"{"kind":"started","run_id":"r","chunk":3,"chunks":3}"#,
                "chunk must be below chunks (3)",
            ),
            (
                r#"{"kind":"split","run_id":"r","chunks":1}"#,
                "chunks must be at least 2",
            ),
            (r#"{"kind":"split","run_id":"r"}"#, "a split event needs chunks"),
            (r#"{"kind":"split","run_id":"r","chunk":0,"chunks":2}"#, "and no chunk"),
        ] {
            let err = event(json).validate().expect_err(json);
            assert!(err.0.contains(expected), "{json}: {err}");
        }
    }

    #[test]
    fn the_events_of_a_split_request_are_valid() {
        for json in [
            r#"{"kind":"split","run_id":"r","chunks":3}"#,
            r#"{"kind":"started","run_id":"r","chunk":0,"chunks":3,"stage":"encoding"}"#,
            r#"{"kind":"chunk","run_id":"r","chunk":2,"chunks":3}"#,
            r#"{"kind":"processed","run_id":"r","chunks":3}"#,
            r#"{"kind":"progress","run_id":"r","chunks":3,"stage":"stitching"}"#,
        ] {
            event(json).validate().unwrap_or_else(|e| panic!("{json}: {e}"));
        }
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>().unwrap(), k);
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
        assert!("procesed".parse::<EventKind>().is_err());
    }

    #[test]
    fn an_event_serializes_only_what_it_has() {
        let mut e = Event::new(EventKind::Processed);
        e.video_id = Some("v".into());
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"kind":"processed","video_id":"v"}"#
        );
    }

    #[test]
    fn unknown_fields_in_an_event_are_refused() {
        assert!(serde_json::from_str::<Event>(r#"{"kind":"processed","vidoe_id":"v"}"#).is_err());
    }
}
