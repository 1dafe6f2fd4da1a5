//! Prometheus metrics, written with the `prometheus-client` crate (the Prometheus project's own Rust
//! client) and served at `GET /metrics` in the OpenMetrics text format, which Prometheus scrapes
//! natively.
//!
//! The metrics are the store's aggregates at the time of the scrape ([`Counters`]): they are kept
//! in SQLite with the events, so a restart, or a scrape right after a `kill -9`, shows the same
//! figures as the database, and a scrape costs the same whatever the history (a reset looks to
//! Prometheus like a process restart: counters start again from zero).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `encoder_events_total` | counter | `kind` (every kind, zero included; `progress` counts reports) |
//! | `encoder_renditions_total` | counter | `kind`, `quality`: one per quality a stored event names |
//! | `encoder_encode_seconds` | histogram | seconds spent transcoding, per `processed` run |
//! | `encoder_runs_in_progress` | gauge | runs with a `started` event, no outcome yet, and not lost |
//! | `encoder_runs_lost` | gauge | runs that stopped reporting for longer than their lease |

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::summary::Counters;

/// The `Content-Type` of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RenditionLabels {
    kind: String,
    quality: String,
}

/// A histogram as counted elsewhere: its sum, count and non-cumulative bucket counts.
#[derive(Debug)]
struct CountedHistogram {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl EncodeMetric for CountedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The OpenMetrics text exposition of `c` (ends with `# EOF`), of type [`CONTENT_TYPE`].
pub fn encode(c: &Counters) -> String {
    let mut registry = Registry::default();
    let events = Family::<KindLabels, Counter>::default();
    registry.register("encoder_events", "Encoder outcomes recorded, by kind", events.clone());
    for (kind, n) in &c.events {
        events.get_or_create(&KindLabels { kind: kind.clone() }).inc_by(*n);
    }
    let renditions = Family::<RenditionLabels, Counter>::default();
    registry.register(
        "encoder_renditions",
        "Renditions named by the recorded events, by kind and quality",
        renditions.clone(),
    );
    for ((kind, quality), n) in &c.renditions {
        renditions
            .get_or_create(&RenditionLabels {
                kind: kind.clone(),
                quality: quality.clone(),
            })
            .inc_by(*n);
    }
    registry.register(
        "encoder_encode_seconds",
        "Seconds spent transcoding, per processed run",
        CountedHistogram {
            sum: c.encode_sum,
            count: c.encode_count,
            buckets: c.encode_buckets.clone(),
        },
    );
    let gauge = |n: u64| {
        let g = Gauge::<i64>::default();
        g.set(i64::try_from(n).unwrap_or(i64::MAX));
        g
    };
    registry.register(
        "encoder_runs_in_progress",
        "Encoder runs started and not yet ended",
        gauge(c.running),
    );
    registry.register(
        "encoder_runs_lost",
        "Encoder runs that stopped reporting for longer than their lease",
        gauge(c.lost),
    );
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use encoding_common::EventKind;

    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix} in\n{text}"))
    }

    fn counters() -> Counters {
        Counters {
            events: EventKind::ALL.iter().map(|k| (k.as_str().to_owned(), 0)).collect(),
            encode_buckets: [0.5, 1.0, f64::INFINITY].into_iter().map(|b| (b, 0)).collect(),
            ..Counters::default()
        }
    }

    #[test]
    fn nothing_counted_lists_every_kind_at_zero() {
        let text = encode(&counters());
        for kind in EventKind::ALL {
            assert_eq!(
                line(&text, &format!("encoder_events_total{{kind=\"{kind}\"}}")),
                format!("encoder_events_total{{kind=\"{kind}\"}} 0")
            );
        }
        assert!(text.contains("# TYPE encoder_encode_seconds histogram"), "{text}");
        assert_eq!(
            line(&text, "encoder_encode_seconds_count"),
            "encoder_encode_seconds_count 0"
        );
        assert_eq!(line(&text, "encoder_runs_in_progress"), "encoder_runs_in_progress 0");
        assert_eq!(line(&text, "encoder_runs_lost"), "encoder_runs_lost 0");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn counts_renditions_buckets_and_gauges_are_written_as_counted() {
        let mut c = counters();
        c.events.insert("started".into(), 2);
        c.renditions.insert(("started".into(), "720p".into()), 2);
        c.encode_buckets = vec![(0.5, 0), (1.0, 2), (f64::INFINITY, 1)];
        (c.encode_sum, c.encode_count, c.running, c.lost) = (3.5, 3, 1, 4);
        let text = encode(&c);
        assert_eq!(
            line(&text, "encoder_events_total{kind=\"started\"}"),
            "encoder_events_total{kind=\"started\"} 2"
        );
        assert_eq!(
            line(&text, "encoder_renditions_total{kind=\"started\",quality=\"720p\"}"),
            "encoder_renditions_total{kind=\"started\",quality=\"720p\"} 2"
        );
        assert_eq!(
            line(&text, "encoder_encode_seconds_bucket{le=\"1.0\"}"),
            "encoder_encode_seconds_bucket{le=\"1.0\"} 2"
        );
        assert_eq!(
            line(&text, "encoder_encode_seconds_bucket{le=\"+Inf\"}"),
            "encoder_encode_seconds_bucket{le=\"+Inf\"} 3"
        );
        assert_eq!(
            line(&text, "encoder_encode_seconds_sum"),
            "encoder_encode_seconds_sum 3.5"
        );
        assert_eq!(line(&text, "encoder_runs_in_progress"), "encoder_runs_in_progress 1");
        assert_eq!(line(&text, "encoder_runs_lost"), "encoder_runs_lost 4");
    }
}
