//! The completion notice: one SQS message per request on the results queue (`RESULT_QUEUE_URL`),
//! sent by the encoder when the request is over, read by callers (`producer --wait`) waiting for
//! their videos.
//!
//! ```json
//! {"request_id": "3f0c6a52-…", "video_id": "big-buck-bunny", "outcome": "processed",
//!  "outputs": [{"uri": "s3://media-out/renditions/big-buck-bunny/720p.mp4", "size": 4182733,
//!               "duration_seconds": 10.0, "video_codec": "h264", "audio_codec": "aac",
//!               "width": 1280, "height": 720}],
//!  "encode_seconds": 6.1, "frames": 300, "fps": 49.2, "source_seconds": 10.0,
//!  "run_id": "…", "message_id": "…", "receive_count": 1, "finished_at": "2026-12-01T12:00:00Z"}
//! ```
//!
//! A request is over when it was `processed` (its renditions are stored), a `duplicate` (the same
//! renditions were already stored for the same source and settings: they are there), `rejected`
//! (it can never succeed; `reason` says why), or `failed` on its last allowed delivery (the queue
//! moves it to the dead-letter queue next; `reason` is the last error). Delivery is at least once:
//! the notice is sent before the request's message is deleted, so a run killed in between sends it
//! again; on a FIFO results queue [`Notice::deduplication_id`] makes the copies one message.

use serde::{Deserialize, Serialize};

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeOutcome {
    /// The renditions are stored.
    Processed,
    /// The renditions were already stored for the same source and settings.
    Duplicate,
    /// The request can never succeed.
    Rejected,
    /// The last allowed delivery failed.
    Failed,
}

impl NoticeOutcome {
    /// The lowercase name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processed => "processed",
            Self::Duplicate => "duplicate",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
        }
    }

    /// Whether the request's renditions are there to be used.
    pub fn is_ready(self) -> bool {
        matches!(self, Self::Processed | Self::Duplicate)
    }
}

impl std::fmt::Display for NoticeOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stored rendition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoticeOutput {
    /// Where it is.
    pub uri: String,
    /// Its size in bytes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Its duration, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    /// Its video codec (`h264`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_codec: Option<String>,
    /// Its audio codec (`aac`), when it has audio and that is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_codec: Option<String>,
    /// Picture width, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Picture height, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

impl NoticeOutput {
    /// An output known by its URI alone.
    pub fn at(uri: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            size: None,
            duration_seconds: None,
            video_codec: None,
            audio_codec: None,
            width: None,
            height: None,
        }
    }
}

/// The completion notice of one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// The request's identity: its `request_id`, or the digest the encoder gives a request
    /// without one (`encoding_common::identity::request_identity`).
    pub request_id: String,
    /// The request's `video_id`.
    pub video_id: String,
    /// How it ended.
    pub outcome: NoticeOutcome,
    /// Why, for `rejected` and `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The renditions, for `processed` and `duplicate`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<NoticeOutput>,
    /// Seconds spent transcoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encode_seconds: Option<f64>,
    /// Video frames decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<u64>,
    /// Decoded frames per second of transcoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    /// The source's duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_seconds: Option<f64>,
    /// The encoder run that ended it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The request's SQS message id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Its delivery count when it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_count: Option<u32>,
    /// When it ended (RFC 3339, UTC).
    pub finished_at: String,
}

impl Notice {
    /// A notice of `outcome` for `request_id` of `video_id`, finished now.
    pub fn new(request_id: impl Into<String>, video_id: impl Into<String>, outcome: NoticeOutcome) -> Self {
        Self {
            request_id: request_id.into(),
            video_id: video_id.into(),
            outcome,
            reason: None,
            outputs: Vec::new(),
            encode_seconds: None,
            frames: None,
            fps: None,
            source_seconds: None,
            run_id: None,
            message_id: None,
            receive_count: None,
            finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }

    /// The FIFO deduplication id: the same for every copy of this request's notice of this outcome
    /// (at most 128 characters of `A-Za-z0-9` and punctuation, as SQS allows).
    pub fn deduplication_id(&self) -> String {
        let id = format!("{}.{}", self.outcome, self.request_id);
        let allowed = |c: char| c.is_ascii_alphanumeric() || "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~".contains(c);
        if id.len() <= 128 && id.chars().all(allowed) {
            return id;
        }
        // FNV-1a, as the request identity: stable across builds.
        let digest = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("{}.{digest:016x}", self.outcome)
    }

    /// The notice as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a notice serializes")
    }

    /// Reads a notice.
    ///
    /// # Errors
    ///
    /// When `body` is not a notice.
    pub fn from_json(body: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_round_trips_through_its_json() {
        let mut n = Notice::new("r-1", "clip", NoticeOutcome::Processed);
        n.outputs.push(NoticeOutput {
            uri: "s3://o/clip/480p.mp4".into(),
            size: Some(10),
            duration_seconds: Some(5.0),
            video_codec: Some("h264".into()),
            audio_codec: None,
            width: Some(854),
            height: Some(480),
        });
        let json = n.to_json();
        assert!(json.contains(r#""outcome":"processed""#), "{json}");
        assert!(!json.contains("audio_codec"), "{json}");
        assert_eq!(Notice::from_json(&json).unwrap(), n);
    }

    #[test]
    fn copies_of_a_notice_share_a_deduplication_id_that_sqs_accepts() {
        let a = Notice::new("r-1", "v", NoticeOutcome::Processed);
        let b = Notice::new("r-1", "v", NoticeOutcome::Processed);
        assert_eq!(a.deduplication_id(), b.deduplication_id());
        assert_ne!(
            a.deduplication_id(),
            Notice::new("r-1", "v", NoticeOutcome::Rejected).deduplication_id()
        );
        let long = Notice::new("x".repeat(128), "v", NoticeOutcome::Duplicate);
        assert!(long.deduplication_id().len() <= 128);
        let odd = Notice::new("a b", "v", NoticeOutcome::Failed);
        assert!(!odd.deduplication_id().contains(' '));
        assert!(NoticeOutcome::Duplicate.is_ready() && !NoticeOutcome::Failed.is_ready());
    }
}
