//! The figures recomputed from scratch, the slow way the analyzer used to answer: every stored
//! event (and every progress report) read in order and folded, with no aggregate. The aggregate
//! tests compare the analyzer's answers with this.
//!
//! The rules, as the README gives them: a run starts at its `started` report (or its first
//! report's time less the `elapsed_seconds` it gives, in whole milliseconds), ends at its outcome,
//! and without one is running until its last report plus its lease (120 s when it gave none), then
//! lost; the peak sweeps the runs' intervals, ends before starts at the same instant; percentiles
//! are nearest-rank. A run's `chunk` and `chunks` are the latest any of its reports gave; a split
//! request is a request id some stored event carrying `chunks` names, a chunk stored is a request
//! id, plan size and chunk some stored `chunk` event names.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use encoding_common::{Event, EventKind};
use serde_json::{Value, json};

/// One report in the order the analyzer took it.
#[derive(Debug, Clone)]
pub enum Report {
    /// A stored event, as `GET /events` lists it.
    Stored(Value),
    /// A progress report and when it was received.
    Progress(Box<(Event, DateTime<Utc>)>),
}

/// The answers recomputed.
#[derive(Debug, Clone, PartialEq)]
pub struct Recomputed {
    /// `GET /summary`.
    pub summary: Value,
    /// `GET /runs`, every run, by run id.
    pub runs: BTreeMap<String, Value>,
    /// The samples of `GET /metrics`: `name{labels}` to value.
    pub metrics: BTreeMap<String, f64>,
}

#[derive(Debug, Default)]
struct RunState {
    start: i64,
    end: Option<i64>,
    outcome: Option<String>,
    video_id: Option<String>,
    qualities: Vec<String>,
    host: Option<String>,
    last_report: i64,
    lease: Option<u64>,
    progress: Option<Value>,
    chunk: Option<u32>,
    chunks: Option<u32>,
}

fn micros(t: &str) -> i64 {
    t.parse::<DateTime<Utc>>().expect("an RFC 3339 time").timestamp_micros()
}

fn time(us: i64) -> Value {
    json!(DateTime::from_timestamp_micros(us).unwrap())
}

/// The event of a `GET /events` entry, and its recording time.
pub fn event_of(stored: &Value) -> (Event, String) {
    let mut body = stored.as_object().expect("an object").clone();
    body.remove("id");
    let at = body.remove("recorded_at").expect("recorded_at");
    (
        serde_json::from_value(Value::Object(body)).expect("an event"),
        at.as_str().unwrap().to_owned(),
    )
}

fn percentiles(mut v: Vec<f64>) -> Value {
    v.sort_by(f64::total_cmp);
    let pick = |q: f64| (!v.is_empty()).then(|| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]);
    json!({"count": v.len(), "p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99), "max": v.last()})
}

/// Recomputes every figure from `reports` at `now`.
pub fn recompute(reports: &[Report], now: DateTime<Utc>) -> Recomputed {
    let now = now.timestamp_micros();
    let mut counts: BTreeMap<String, u64> = EventKind::ALL.iter().map(|k| (k.to_string(), 0)).collect();
    let mut per_quality: BTreeMap<String, u64> = BTreeMap::new();
    let mut renditions: BTreeMap<(String, String), u64> = BTreeMap::new();
    let (mut secs, mut fps) = (Vec::new(), Vec::new());
    let (mut first, mut last) = (None, None);
    let mut runs: BTreeMap<String, RunState> = BTreeMap::new();
    let mut split_requests: BTreeSet<String> = BTreeSet::new();
    let mut chunks_stored: BTreeSet<(String, u32, u32)> = BTreeSet::new();
    for report in reports {
        let (e, at, stored) = match report {
            Report::Stored(v) => {
                let (e, at) = event_of(v);
                let us = micros(&at);
                first.get_or_insert(us);
                last = Some(us);
                (e, us, true)
            }
            Report::Progress(p) => (p.0.clone(), p.1.timestamp_micros(), false),
        };
        *counts.entry(e.kind.to_string()).or_default() += 1;
        if stored {
            for q in &e.qualities {
                *renditions.entry((e.kind.to_string(), q.clone())).or_default() += 1;
            }
            if let (Some(rid), Some(n)) = (&e.request_id, e.chunks) {
                split_requests.insert(rid.clone());
                if let (EventKind::Chunk, Some(i)) = (e.kind, e.chunk) {
                    chunks_stored.insert((rid.clone(), n, i));
                }
            }
            if e.kind == EventKind::Processed {
                for q in &e.qualities {
                    *per_quality.entry(q.clone()).or_default() += 1;
                }
                secs.extend(e.encode_seconds);
                fps.extend(e.fps);
            }
        }
        let Some(id) = &e.run_id else { continue };
        let r = runs.entry(id.clone()).or_insert_with(|| RunState {
            start: if e.kind == EventKind::Started {
                at
            } else {
                at - ((e.elapsed_seconds.unwrap_or(0.0) * 1000.0) as i64) * 1000
            },
            last_report: at,
            ..RunState::default()
        });
        if e.video_id.is_some() {
            r.video_id.clone_from(&e.video_id);
        }
        if e.host.is_some() {
            r.host.clone_from(&e.host);
        }
        if e.lease_seconds.is_some() {
            r.lease = e.lease_seconds;
        }
        if !e.qualities.is_empty() {
            r.qualities.clone_from(&e.qualities);
        }
        r.chunk = e.chunk.or(r.chunk);
        r.chunks = e.chunks.or(r.chunks);
        r.last_report = r.last_report.max(at);
        if e.kind.is_terminal() {
            (r.end, r.outcome) = (Some(at), Some(e.kind.to_string()));
        }
        if e.kind == EventKind::Progress {
            r.progress = Some(json!({"stage": e.stage, "percent": e.percent, "fps": e.fps, "at": time(at)}));
        }
    }

    let (mut running, mut lost) = (0u64, 0u64);
    let mut edges: Vec<(i64, i32)> = Vec::new();
    let mut listed = BTreeMap::new();
    for (id, r) in &runs {
        let lease = r.lease.unwrap_or(120);
        let expiry = r.last_report + lease as i64 * 1_000_000;
        let (end, outcome, until) = match r.end {
            Some(end) => (Some(end), r.outcome.clone(), end),
            None if expiry < now => {
                lost += 1;
                (Some(expiry), Some("lost".to_owned()), expiry)
            }
            None => {
                running += 1;
                (None, None, now)
            }
        };
        if until > r.start {
            edges.extend([(r.start, 1), (until, -1)]);
        }
        let mut run = json!({
            "run_id": id, "start": time(r.start), "end": end.map(time), "outcome": outcome,
            "video_id": r.video_id, "qualities": r.qualities, "host": r.host,
            "last_report_at": time(r.last_report), "lease_seconds": lease, "progress": r.progress,
        });
        // Only the runs of a split request have them.
        for (key, value) in [("chunk", r.chunk), ("chunks", r.chunks)] {
            if let Some(v) = value {
                run[key] = json!(v);
            }
        }
        listed.insert(id.clone(), run);
    }
    edges.sort_unstable();
    let (mut at_once, mut peak) = (0i64, 0i64);
    for (_, d) in edges {
        at_once += i64::from(d);
        peak = peak.max(at_once);
    }

    let mut summary_counts: BTreeMap<String, u64> = counts.clone();
    summary_counts.insert("lost".into(), lost);
    let summary = json!({
        "counts": summary_counts,
        "processed_per_quality": per_quality,
        "encode_seconds": percentiles(secs.clone()),
        "fps": percentiles(fps),
        "first_event": first.map(time),
        "last_event": last.map(time),
        "runs": runs.len(),
        "peak_concurrent_runs": peak,
        "runs_in_progress": running,
        "split": {
            "requests": split_requests.len(),
            "chunk_runs": runs.values().filter(|r| r.chunk.is_some()).count(),
            "chunks_stored": chunks_stored.len(),
        },
    });

    let mut metrics = BTreeMap::new();
    for (kind, n) in &counts {
        metrics.insert(format!("encoder_events_total{{kind=\"{kind}\"}}"), *n as f64);
    }
    for ((kind, q), n) in &renditions {
        metrics.insert(
            format!("encoder_renditions_total{{kind=\"{kind}\",quality=\"{q}\"}}"),
            *n as f64,
        );
    }
    let bounds = [
        0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    ];
    for b in bounds {
        let n = secs.iter().filter(|s| **s <= b).count();
        metrics.insert(format!("encoder_encode_seconds_bucket{{le=\"{b:?}\"}}"), n as f64);
    }
    metrics.insert("encoder_encode_seconds_bucket{le=\"+Inf\"}".into(), secs.len() as f64);
    metrics.insert("encoder_encode_seconds_count".into(), secs.len() as f64);
    metrics.insert("encoder_encode_seconds_sum".into(), secs.iter().sum());
    metrics.insert("encoder_runs_in_progress".into(), running as f64);
    metrics.insert("encoder_runs_lost".into(), lost as f64);
    Recomputed {
        summary,
        runs: listed,
        metrics,
    }
}

/// The samples of an OpenMetrics text: `name{labels}` to value.
pub fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').expect("a sample line");
            (name.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}
