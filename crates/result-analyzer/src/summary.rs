//! Figures derived from the stored events: the summary (`GET /summary`) and the runs timeline
//! (`GET /runs`, drawn by the dashboard). The Prometheus metrics live in [`crate::metrics`].

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use encoding_common::EventKind;
use serde::Serialize;

use crate::store::StoredEvent;

/// One encoder run, from its first event to its outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// The run's id.
    pub run_id: String,
    /// When it started (its `started` event, or its outcome time less its elapsed seconds).
    pub start: DateTime<Utc>,
    /// When it ended; `None` while it runs.
    pub end: Option<DateTime<Utc>>,
    /// Its outcome; `None` while it runs.
    pub outcome: Option<EventKind>,
    /// The video, when it had a message.
    pub video_id: Option<String>,
    /// The renditions asked for.
    pub qualities: Vec<String>,
    /// The host (pod) it ran on.
    pub host: Option<String>,
}

/// Groups events into encoder runs by `run_id`, ordered by start: a run goes from its `started`
/// event to its outcome (any other kind). A run whose `started` event is missing (an `empty` run,
/// which never takes a message) starts at its outcome less the `elapsed_seconds` it reports.
/// Events without a `run_id` (the legacy routes) belong to no run.
pub fn runs(events: &[StoredEvent]) -> Vec<Run> {
    let mut by_id: BTreeMap<(DateTime<Utc>, String), Run> = BTreeMap::new();
    let mut index: HashMap<String, (DateTime<Utc>, String)> = HashMap::new();
    for e in events {
        let Some(id) = e.event.run_id.clone() else {
            continue;
        };
        let at = e.time();
        let key = index.entry(id.clone()).or_insert_with(|| {
            let start = if e.event.kind == EventKind::Started {
                at
            } else {
                at - Duration::milliseconds((e.event.elapsed_seconds.unwrap_or(0.0) * 1000.0) as i64)
            };
            (start, id.clone())
        });
        let run = by_id.entry(key.clone()).or_insert_with(|| Run {
            run_id: id.clone(),
            start: key.0,
            end: None,
            outcome: None,
            video_id: None,
            qualities: Vec::new(),
            host: None,
        });
        if e.event.video_id.is_some() {
            run.video_id.clone_from(&e.event.video_id);
        }
        if !e.event.qualities.is_empty() {
            run.qualities.clone_from(&e.event.qualities);
        }
        if e.event.host.is_some() {
            run.host.clone_from(&e.event.host);
        }
        if e.event.kind.is_terminal() {
            run.end = Some(at);
            run.outcome = Some(e.event.kind);
        }
    }
    by_id.into_values().collect()
}

/// The most runs in progress at the same moment (a run still going counts until now).
pub fn peak_concurrency(runs: &[Run]) -> usize {
    let now = Utc::now();
    let mut edges: Vec<(DateTime<Utc>, i32)> = Vec::new();
    for r in runs {
        let end = r.end.unwrap_or(now);
        if end > r.start {
            edges.push((r.start, 1));
            edges.push((end, -1));
        }
    }
    // Ends sort before starts at the same instant: a run that ends as another starts is not overlap.
    edges.sort_by_key(|&(t, d)| (t, d));
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        peak = peak.max(now);
    }
    peak as usize
}

/// The answer of `GET /summary`.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Events per kind (every kind listed, zero included).
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
    pub runs: usize,
    /// The most encoder runs at once.
    pub peak_concurrent_runs: usize,
    /// Runs that have started and not ended.
    pub runs_in_progress: usize,
}

/// Percentiles of a sample.
#[derive(Debug, Default, Serialize)]
pub struct Percentiles {
    /// Sample size.
    pub count: usize,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

impl Percentiles {
    fn of(mut values: Vec<f64>) -> Self {
        values.retain(|v| v.is_finite());
        values.sort_by(f64::total_cmp);
        let pick = |q: f64| -> Option<f64> {
            if values.is_empty() {
                return None;
            }
            let i = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
            Some(values[i])
        };
        Self {
            count: values.len(),
            p50: pick(0.5),
            p90: pick(0.9),
            p99: pick(0.99),
            max: values.last().copied(),
        }
    }
}

/// Summarises the events.
pub fn summarize(events: &[StoredEvent]) -> Summary {
    let mut counts: BTreeMap<&'static str, u64> = EventKind::ALL.iter().map(|k| (k.as_str(), 0)).collect();
    let mut per_quality = BTreeMap::new();
    let (mut secs, mut fps) = (Vec::new(), Vec::new());
    for e in events {
        *counts.entry(e.event.kind.as_str()).or_default() += 1;
        if e.event.kind == EventKind::Processed {
            for q in &e.event.qualities {
                *per_quality.entry(q.clone()).or_default() += 1;
            }
            secs.extend(e.event.encode_seconds);
            fps.extend(e.event.fps);
        }
    }
    let runs = runs(events);
    Summary {
        counts,
        processed_per_quality: per_quality,
        encode_seconds: Percentiles::of(secs),
        fps: Percentiles::of(fps),
        first_event: events.first().map(StoredEvent::time),
        last_event: events.last().map(StoredEvent::time),
        runs: runs.len(),
        peak_concurrent_runs: peak_concurrency(&runs),
        runs_in_progress: runs.iter().filter(|r| r.end.is_none()).count(),
    }
}

#[cfg(test)]
mod tests {
    use encoding_common::Event;

    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        "2026-01-17T05:50:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::seconds(seconds)
    }

    fn run(start: i64, end: Option<i64>) -> Run {
        Run {
            run_id: format!("r{start}"),
            start: at(start),
            end: end.map(at),
            outcome: end.map(|_| EventKind::Processed),
            video_id: None,
            qualities: Vec::new(),
            host: None,
        }
    }

    #[test]
    fn a_run_ending_as_another_starts_does_not_overlap_it() {
        assert_eq!(peak_concurrency(&[run(0, Some(10)), run(10, Some(20))]), 1);
        assert_eq!(
            peak_concurrency(&[run(0, Some(10)), run(9, Some(20)), run(5, Some(6))]),
            2
        );
        assert_eq!(peak_concurrency(&[]), 0);
    }

    #[test]
    fn a_run_still_going_counts_until_now() {
        assert_eq!(peak_concurrency(&[run(0, None), run(100, Some(200))]), 2);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let p = Percentiles::of((1..=10).map(f64::from).collect());
        assert_eq!(
            (p.count, p.p50, p.p90, p.p99, p.max),
            (10, Some(5.0), Some(9.0), Some(10.0), Some(10.0))
        );
        assert_eq!(Percentiles::of(Vec::new()).p50, None);
    }

    #[test]
    fn events_without_a_run_id_belong_to_no_run() {
        let stored = |id: i64, kind: EventKind, run: Option<&str>| StoredEvent {
            id,
            recorded_at: at(id).to_rfc3339(),
            event: Event {
                run_id: run.map(str::to_owned),
                ..Event::new(kind)
            },
        };
        let runs = runs(&[
            stored(1, EventKind::Processed, None),
            stored(2, EventKind::Started, Some("a")),
            stored(3, EventKind::Killed, Some("a")),
        ]);
        assert_eq!(runs.len(), 1);
        assert_eq!(
            (runs[0].start, runs[0].end, runs[0].outcome),
            (at(2), Some(at(3)), Some(EventKind::Killed))
        );
    }
}
