//! What the encoder tells the result analyzer (`POST /events`), one JSON object per outcome.
//!
//! Every encoder run has a `run_id`; it reports `started` when it has a message, then exactly one
//! terminal event (`processed`, `killed`, `failed`, `rejected`, `duplicate`), or only `empty` when
//! the queue had nothing for it. The analyzer pairs a run's events to draw one bar per run.

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
}

impl EventKind {
    /// Every kind, in the order the dashboard shows them.
    pub const ALL: [EventKind; 7] = [
        Self::Started,
        Self::Processed,
        Self::Killed,
        Self::Failed,
        Self::Rejected,
        Self::Duplicate,
        Self::Empty,
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
        }
    }

    /// Whether this kind ends a run (every kind but `started`).
    pub fn is_terminal(self) -> bool {
        self != Self::Started
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown event kind.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown event kind {0:?}: expected one of started, processed, killed, failed, rejected, duplicate, empty")]
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
