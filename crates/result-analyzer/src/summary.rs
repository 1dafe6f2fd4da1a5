//! The answers of the read routes: the summary (`GET /summary`), the runs (`GET /runs`, drawn by
//! the dashboard), the counters behind `GET /metrics`, and a request's state (`GET /requests/{id}`).
//!
//! They are plain data, built by [`crate::store`] from the aggregates it keeps as events are
//! written (never by reading the events back), and rendered by the routes and [`crate::metrics`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The outcome name of a run that stopped reporting for longer than its lease.
pub const LOST: &str = "lost";

/// One encoder run, from its first report to its outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    /// The run's id.
    pub run_id: String,
    /// When it started (its `started` event, or its first report's time less the
    /// `elapsed_seconds` that report gives).
    pub start: DateTime<Utc>,
    /// When it ended: its outcome's time, or, for a lost run, when its lease ran out; `None` while
    /// it runs.
    pub end: Option<DateTime<Utc>>,
    /// Its outcome (an event kind, or `lost`); `None` while it runs.
    pub outcome: Option<String>,
    /// The video, when it had a message.
    pub video_id: Option<String>,
    /// The renditions asked for.
    pub qualities: Vec<String>,
    /// The host (pod) it ran on.
    pub host: Option<String>,
    /// Its latest report of any kind.
    pub last_report_at: DateTime<Utc>,
    /// The lease it reported (`lease_seconds`), or the default when it gave none: with no report
    /// for longer than this after `last_report_at`, a run without an outcome is lost.
    pub lease_seconds: u64,
    /// Its latest progress report, if any.
    pub progress: Option<Progress>,
    /// The chunk it encodes (from 0) when it is a chunk run of a split request; omitted otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk: Option<u32>,
    /// How many chunks its request's plan has, when it is part of a split request: a chunk run
    /// (with `chunk`), the run that split the request (outcome `split`), or the run that stitches
    /// the chunks; omitted otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunks: Option<u32>,
}

/// A run's latest progress report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// `downloading`, `splitting`, `encoding`, `stitching` or `uploading`.
    pub stage: Option<String>,
    /// How far the stage is, 0 to 100, when known.
    pub percent: Option<f64>,
    /// Frames per second, when encoding.
    pub fps: Option<f64>,
    /// When the analyzer received it.
    pub at: DateTime<Utc>,
}

/// A page of `GET /runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunsPage {
    /// The runs, in the order asked for.
    pub runs: Vec<Run>,
    /// Runs in the window asked for (all runs when there is no window).
    pub total: u64,
    /// Where the next page starts (`cursor=`), or `None` at the end.
    pub next_cursor: Option<String>,
}

/// The answer of `GET /summary`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Events per kind (every kind listed, zero included); `progress`: progress reports received
    /// (they are not stored as events); `lost`: runs lost now.
    pub counts: BTreeMap<&'static str, u64>,
    /// Processed renditions per quality.
    pub processed_per_quality: BTreeMap<String, u64>,
    /// Encode seconds of processed runs: percentiles.
    pub encode_seconds: Percentiles,
    /// Decoded frames per second of processed runs: percentiles.
    pub fps: Percentiles,
    /// The first event's time.
    pub first_event: Option<DateTime<Utc>>,
    /// The last event's time.
    pub last_event: Option<DateTime<Utc>>,
    /// Encoder runs recorded (events paired by `run_id`).
    pub runs: u64,
    /// The most encoder runs at once.
    pub peak_concurrent_runs: u64,
    /// Runs that have started, not ended, and are not lost.
    pub runs_in_progress: u64,
    /// The requests encoded in chunks.
    pub split: SplitSummary,
}

/// Split requests, as `GET /summary` counts them. A split request counts once in the processed
/// figures (its stitch run's `processed`); this says how much chunk work was behind them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SplitSummary {
    /// Requests that some event of a split request named (`split`, or a chunk or stitch run's
    /// event: anything carrying `chunks`), each once.
    pub requests: u64,
    /// Chunk runs (runs whose events carry `chunk`), whatever their outcome.
    pub chunk_runs: u64,
    /// Chunks stored: `chunk` events, each chunk of a request (and plan size) once, however many
    /// runs stored it or found it stored.
    pub chunks_stored: u64,
}

/// Nearest-rank percentiles of a sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Sample size.
    pub count: u64,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

/// What `GET /metrics` shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// Stored events per kind, and progress reports under `progress`.
    pub events: BTreeMap<String, u64>,
    /// Qualities named by stored events, per (kind, quality).
    pub renditions: BTreeMap<(String, String), u64>,
    /// The encode-seconds histogram: (upper bound, non-cumulative count), +Inf last.
    pub encode_buckets: Vec<(f64, u64)>,
    /// Sum of the encode seconds observed.
    pub encode_sum: f64,
    /// Encode seconds observed.
    pub encode_count: u64,
    /// Runs started, not ended and not lost.
    pub running: u64,
    /// Runs lost.
    pub lost: u64,
}

/// The answer of `GET /requests/{request_id}`: where a request stands. `producer --wait` reads
/// `outcome`, `final`, `reason` and `outputs` (without a results queue).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestState {
    /// The request.
    pub request_id: String,
    /// Where it stands: `processed` once a run processed it (it stays so), otherwise the outcome
    /// of its latest run: `duplicate`, `rejected`, `failed`, `killed`, `lost`; `None` while that
    /// run is still going. A split request is `None` while its chunks are being encoded (after
    /// `split`, and after a chunk run's `chunk` or `duplicate`), `failed`, `killed` or `lost`
    /// (not final) after such a chunk run, `rejected` when a chunk run was, and `processed` once
    /// its stitch run is.
    pub outcome: Option<String>,
    /// Whether `outcome` is the end of the request: true for `processed`, `duplicate` and
    /// `rejected`; false otherwise, as SQS delivers a failed, killed or lost run's message again
    /// (the analyzer cannot tell a last delivery: the results queue can).
    #[serde(rename = "final")]
    pub is_final: bool,
    /// Why, for `rejected`, `failed`, `lost` (and a `processed` or `duplicate` that skipped the
    /// work).
    pub reason: Option<String>,
    /// The renditions' URIs, for `processed` and `duplicate`.
    pub outputs: Vec<String>,
    /// Whether a `processed` event was recorded for it (it counts once).
    pub processed: bool,
    /// The latest event naming it.
    pub latest: LatestEvent,
    /// The state of that event's run now: `running`, `lost`, or its outcome; `None` without a run.
    pub run_state: Option<String>,
    /// For a request encoded in chunks, how far its chunks are; omitted for any other request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitState>,
}

/// How far the chunks of a split request are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SplitState {
    /// How many chunks its plan has (the latest event carrying `chunks` says).
    pub chunks: u32,
    /// How many of them are stored (distinct chunks with a `chunk` event).
    pub chunks_stored: u64,
}

/// Whether a request whose outcome is `outcome` is over for good.
pub fn is_final(outcome: Option<&str>) -> bool {
    matches!(outcome, Some("processed" | "duplicate" | "rejected"))
}

/// The latest event naming a request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatestEvent {
    /// Its kind.
    pub kind: String,
    /// Its run.
    pub run_id: Option<String>,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}
