//! Prometheus metrics, kept with the `prometheus-client` crate (the Prometheus project's own Rust
//! client) and served at `GET /metrics` in the OpenMetrics text format, which Prometheus scrapes
//! natively.
//!
//! The metrics are a function of the stored events: the store replays every stored event through
//! [`Metrics`] when it opens, then hands it each group as it is committed, and a reset starts them
//! again from zero. So a restart, or a scrape right after a `kill -9`, shows the same figures as the
//! database (a reset looks to Prometheus like a process restart: counters start again from zero).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `encoder_events_total` | counter | `kind` (every kind, zero included) |
//! | `encoder_renditions_total` | counter | `kind`, `quality`: one per quality an event names |
//! | `encoder_encode_seconds` | histogram | seconds spent transcoding, per `processed` run |
//! | `encoder_runs_in_progress` | gauge | runs with a `started` event and no outcome yet |

use std::collections::HashSet;
use std::sync::Mutex;

use encoding_common::EventKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::store::{Observer, StoredEvent};

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the encode-seconds histogram's buckets: from a short clip to an hour-long film.
const ENCODE_SECONDS_BUCKETS: [f64; 12] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RenditionLabels {
    kind: &'static str,
    quality: String,
}

/// One generation of the metrics: replaced as a whole on reset.
struct State {
    registry: Registry,
    events: Family<KindLabels, Counter>,
    renditions: Family<RenditionLabels, Counter>,
    encode_seconds: Histogram,
    in_progress: Gauge,
    /// Runs with a `started` event and no outcome yet: the gauge is its size.
    open_runs: HashSet<String>,
}

impl State {
    fn new() -> Self {
        let mut registry = Registry::default();
        let events = Family::<KindLabels, Counter>::default();
        registry.register("encoder_events", "Encoder outcomes recorded, by kind", events.clone());
        for kind in EventKind::ALL {
            let _ = events.get_or_create(&KindLabels { kind: kind.as_str() });
        }
        let renditions = Family::<RenditionLabels, Counter>::default();
        registry.register(
            "encoder_renditions",
            "Renditions named by the recorded events, by kind and quality",
            renditions.clone(),
        );
        let encode_seconds = Histogram::new(ENCODE_SECONDS_BUCKETS);
        registry.register(
            "encoder_encode_seconds",
            "Seconds spent transcoding, per processed run",
            encode_seconds.clone(),
        );
        let in_progress = Gauge::default();
        registry.register(
            "encoder_runs_in_progress",
            "Encoder runs started and not yet ended",
            in_progress.clone(),
        );
        Self {
            registry,
            events,
            renditions,
            encode_seconds,
            in_progress,
            open_runs: HashSet::new(),
        }
    }

    fn observe(&mut self, stored: &StoredEvent) {
        let e = &stored.event;
        let kind = e.kind.as_str();
        self.events.get_or_create(&KindLabels { kind }).inc();
        for quality in &e.qualities {
            self.renditions
                .get_or_create(&RenditionLabels {
                    kind,
                    quality: quality.clone(),
                })
                .inc();
        }
        if e.kind == EventKind::Processed
            && let Some(secs) = e.encode_seconds
        {
            self.encode_seconds.observe(secs);
        }
        if let Some(run) = &e.run_id {
            // The encoder reports `started` before its outcome, from one process, one at a time.
            if e.kind == EventKind::Started {
                self.open_runs.insert(run.clone());
            } else {
                self.open_runs.remove(run);
            }
            self.in_progress.set(self.open_runs.len() as i64);
        }
    }
}

/// The analyzer's metrics; an [`Observer`] of the store.
pub struct Metrics {
    state: Mutex<State>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Metrics at zero.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State::new()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The OpenMetrics text exposition (ends with `# EOF`), of type [`CONTENT_TYPE`].
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.state().registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl Observer for Metrics {
    fn committed(&self, events: &[StoredEvent]) {
        let mut state = self.state();
        for e in events {
            state.observe(e);
        }
    }

    fn reset(&self) {
        *self.state() = State::new();
    }
}

#[cfg(test)]
mod tests {
    use encoding_common::Event;

    use super::*;

    fn stored(id: i64, kind: EventKind, run: Option<&str>, qualities: &[&str], secs: Option<f64>) -> StoredEvent {
        let mut event = Event::new(kind);
        event.run_id = run.map(str::to_owned);
        event.qualities = qualities.iter().map(|q| (*q).to_owned()).collect();
        event.encode_seconds = secs;
        StoredEvent {
            id,
            recorded_at: "2026-01-17T05:50:45.000000Z".into(),
            event,
        }
    }

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix} in\n{text}"))
    }

    #[test]
    fn fresh_metrics_list_every_kind_at_zero() {
        let text = Metrics::new().encode();
        for kind in EventKind::ALL {
            assert_eq!(
                line(&text, &format!("encoder_events_total{{kind=\"{kind}\"}}")),
                format!("encoder_events_total{{kind=\"{kind}\"}} 0")
            );
        }
        assert!(text.contains("# TYPE encoder_encode_seconds histogram"), "{text}");
        assert_eq!(line(&text, "encoder_runs_in_progress"), "encoder_runs_in_progress 0");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn events_count_per_kind_and_quality_and_runs_pair_by_id() {
        let m = Metrics::new();
        m.committed(&[
            stored(1, EventKind::Started, Some("a"), &["720p"], None),
            stored(2, EventKind::Started, Some("b"), &["360p", "720p"], None),
            stored(3, EventKind::Processed, Some("a"), &["720p"], Some(3.0)),
        ]);
        let text = m.encode();
        assert_eq!(
            line(&text, "encoder_events_total{kind=\"started\"}"),
            "encoder_events_total{kind=\"started\"} 2"
        );
        assert_eq!(
            line(&text, "encoder_renditions_total{kind=\"started\",quality=\"720p\"}"),
            "encoder_renditions_total{kind=\"started\",quality=\"720p\"} 2"
        );
        assert_eq!(
            line(&text, "encoder_renditions_total{kind=\"processed\",quality=\"720p\"}"),
            "encoder_renditions_total{kind=\"processed\",quality=\"720p\"} 1"
        );
        assert_eq!(
            line(&text, "encoder_encode_seconds_count"),
            "encoder_encode_seconds_count 1"
        );
        assert_eq!(
            line(&text, "encoder_encode_seconds_sum"),
            "encoder_encode_seconds_sum 3.0"
        );
        assert_eq!(line(&text, "encoder_runs_in_progress"), "encoder_runs_in_progress 1");
    }

    #[test]
    fn a_reset_starts_every_metric_again_from_zero() {
        let m = Metrics::new();
        m.committed(&[stored(1, EventKind::Started, Some("a"), &["720p"], None)]);
        m.reset();
        // Label sets come out in hash order: compare the lines as sets.
        let sorted = |text: String| {
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            lines.sort();
            lines
        };
        assert_eq!(sorted(m.encode()), sorted(Metrics::new().encode()));
    }
}
