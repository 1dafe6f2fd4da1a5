//! `GET /summary`, `GET /runs`, `GET /metrics` and `GET /healthz`.

use chrono::{DateTime, Duration, Utc};
use encoding_common::{Event, EventKind};
use serde_json::{Value, json};

use crate::helpers::{TestApp, content_type, spawn_app, spawn_with};

/// A lease long enough that a run seeded without an outcome is still running today.
const LONG_LEASE: u64 = 100 * 365 * 86_400;

/// One run's events at chosen times: `started` at `start`, and `outcome` at `end` when given (a
/// run without one holds a lease long enough to be still running, not lost).
#[allow(clippy::too_many_arguments)]
async fn run(
    app: &TestApp,
    id: &str,
    video: &str,
    qualities: &[&str],
    start: DateTime<Utc>,
    end: Option<(DateTime<Utc>, EventKind)>,
    encode_seconds: Option<f64>,
    fps: Option<f64>,
) {
    let mut e = Event::new(EventKind::Started);
    e.run_id = Some(id.into());
    e.video_id = Some(video.into());
    e.qualities = qualities.iter().map(|q| (*q).to_owned()).collect();
    e.host = Some(format!("encoder-{id}"));
    e.lease_seconds = end.is_none().then_some(LONG_LEASE);
    app.store.record_at(e.clone(), start).await.unwrap();
    if let Some((at, kind)) = end {
        e.kind = kind;
        e.elapsed_seconds = Some((at - start).as_seconds_f64());
        e.encode_seconds = encode_seconds;
        e.fps = fps;
        app.store.record_at(e, at).await.unwrap();
    }
}

fn t(seconds: i64) -> DateTime<Utc> {
    "2026-01-17T05:50:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::seconds(seconds)
}

/// Four runs (a: 0–60 s processed, b: 10–30 s killed, c: from 20 s still running, d: 70–80 s
/// processed), an empty-queue run at 100–120 s, and one legacy `/create/count`.
async fn seed(app: &TestApp) {
    run(
        app,
        "a",
        "v1",
        &["720p", "1080p"],
        t(0),
        Some((t(60), EventKind::Processed)),
        Some(50.0),
        Some(30.0),
    )
    .await;
    run(
        app,
        "b",
        "v2",
        &["720p"],
        t(10),
        Some((t(30), EventKind::Killed)),
        None,
        None,
    )
    .await;
    run(app, "c", "v3", &["480p"], t(20), None, None, None).await;
    run(
        app,
        "d",
        "v4",
        &["720p"],
        t(70),
        Some((t(80), EventKind::Processed)),
        Some(8.0),
        Some(60.0),
    )
    .await;
    let mut empty = Event::new(EventKind::Empty);
    empty.run_id = Some("e".into());
    empty.elapsed_seconds = Some(20.0);
    app.store.record_at(empty, t(120)).await.unwrap();
    assert_eq!(app.post("/create/count").await.status(), 200);
}

#[tokio::test]
async fn the_summary_counts_kinds_and_qualities_and_pairs_runs_by_id() {
    let app = spawn_app("summary").await;
    seed(&app).await;
    let s = app.get_json("/summary").await;
    assert_eq!(
        s["counts"],
        json!({"started": 4, "processed": 3, "killed": 1, "failed": 0, "rejected": 0, "duplicate": 0, "empty": 1,
               "progress": 0, "split": 0, "chunk": 0, "lost": 0})
    );
    assert_eq!(s["processed_per_quality"], json!({"720p": 2, "1080p": 1}));
    assert_eq!(
        s["encode_seconds"],
        json!({"count": 2, "p50": 8.0, "p90": 50.0, "p99": 50.0, "max": 50.0})
    );
    assert_eq!(s["fps"]["p50"], 30.0);
    assert_eq!(s["runs"], 5, "a, b, c, d and the empty run; the legacy event is no run");
    assert_eq!(s["runs_in_progress"], 1);
    // a, b and c overlap from 20 s to 30 s.
    assert_eq!(s["peak_concurrent_runs"], 3);
    assert_eq!(s["first_event"], "2026-01-17T05:50:00Z");
    assert!(
        s["last_event"].as_str().unwrap() > "2026-01-17T05:52:00Z",
        "the legacy event, now"
    );
}

#[tokio::test]
async fn the_summary_of_nothing_is_zeros_and_nulls() {
    let app = spawn_app("summary-empty").await;
    let s = app.get_json("/summary").await;
    assert_eq!(s["counts"]["processed"], 0);
    assert_eq!(
        s["encode_seconds"],
        json!({"count": 0, "p50": null, "p90": null, "p99": null, "max": null})
    );
    assert_eq!(s["first_event"], Value::Null);
    assert_eq!(s["peak_concurrent_runs"], 0);
}

#[tokio::test]
async fn runs_go_from_start_to_outcome_and_an_empty_run_starts_its_elapsed_seconds_before() {
    let app = spawn_app("runs").await;
    seed(&app).await;
    let r = app.get_json("/runs?order=oldest").await;
    assert_eq!(r["total"], 5);
    let runs = r["runs"].as_array().unwrap();
    let brief: Vec<(String, String, Value, Value)> = runs
        .iter()
        .map(|r| {
            (
                r["run_id"].as_str().unwrap().to_owned(),
                r["start"].as_str().unwrap().to_owned(),
                r["end"].clone(),
                r["outcome"].clone(),
            )
        })
        .collect();
    let at = |s: i64| json!(t(s).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
    assert_eq!(
        brief,
        vec![
            ("a".into(), "2026-01-17T05:50:00Z".into(), at(60), json!("processed")),
            ("b".into(), "2026-01-17T05:50:10Z".into(), at(30), json!("killed")),
            ("c".into(), "2026-01-17T05:50:20Z".into(), Value::Null, Value::Null),
            ("d".into(), "2026-01-17T05:51:10Z".into(), at(80), json!("processed")),
            ("e".into(), "2026-01-17T05:51:40Z".into(), at(120), json!("empty")),
        ]
    );
    assert_eq!(runs[0]["qualities"], json!(["720p", "1080p"]));
    assert_eq!(runs[0]["host"], "encoder-a");
    assert_eq!(runs[2]["lease_seconds"], LONG_LEASE);
    assert_eq!(runs[0]["lease_seconds"], 120, "the default lease");
    let latest = app.get_json("/runs?limit=2").await;
    assert_eq!(latest["total"], 5);
    assert_eq!(ids(&latest), ["e", "d"], "newest first by default");
}

fn ids(page: &Value) -> Vec<&str> {
    page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn runs_come_a_page_at_a_time_in_either_order_and_within_a_window() {
    let app = spawn_app("runs-pages").await;
    seed(&app).await;
    let mut seen = Vec::new();
    let mut path = "/runs?limit=2&order=oldest".to_owned();
    loop {
        let page = app.get_json(&path).await;
        seen.extend(ids(&page).into_iter().map(str::to_owned));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/runs?limit=2&order=oldest&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    let page = app.get_json("/runs?limit=3").await;
    assert_eq!(ids(&page), ["e", "d", "c"]);
    let next = page["next_cursor"].as_str().unwrap();
    assert_eq!(
        ids(&app.get_json(&format!("/runs?limit=3&cursor={next}")).await),
        ["b", "a"]
    );
    // Started in [05:50:10, 05:51:10): b and c.
    let window = app
        .get_json("/runs?since=2026-01-17T05:50:10Z&until=2026-01-17T05:51:10Z")
        .await;
    assert_eq!(ids(&window), ["c", "b"]);
    assert_eq!(window["total"], 2);
    assert_eq!(window["next_cursor"], Value::Null);
    // Running now: c alone.
    let running = app.get_json("/runs?state=running").await;
    assert_eq!((ids(&running), running["total"].as_u64()), (vec!["c"], Some(1)));
}

#[tokio::test]
async fn bad_runs_parameters_are_refused_400() {
    let app = spawn_app("runs-bad").await;
    for q in [
        "limit=0",
        "limit=x",
        "limit=10001",
        "page=1",
        "order=sideways",
        "state=lost",
        "cursor=12_",
        "cursor=x_run",
        "cursor=nope",
        "since=2026-01-17T06:00:00Z&until=2026-01-17T05:00:00Z",
    ] {
        crate::helpers::assert_error(app.get(&format!("/runs?{q}")).await, 400, "").await;
    }
}

/// The value of the sample line that starts with `prefix` (labels included).
fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no sample {prefix} in\n{text}"))
        .parse()
        .unwrap()
}

async fn metrics(app: &TestApp) -> String {
    let resp = app.get("/metrics").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        content_type(&resp),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    resp.text().await.unwrap()
}

/// The exposition's lines, sorted: label sets come out in hash order.
fn sorted(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines
}

#[tokio::test]
async fn metrics_count_kinds_and_qualities_time_encodes_and_gauge_runs_in_progress() {
    let app = spawn_app("metrics").await;
    seed(&app).await;
    let m = metrics(&app).await;
    assert_eq!(sample(&m, r#"encoder_events_total{kind="processed"}"#), 3.0);
    assert_eq!(sample(&m, r#"encoder_events_total{kind="started"}"#), 4.0);
    assert_eq!(sample(&m, r#"encoder_events_total{kind="rejected"}"#), 0.0);
    assert_eq!(
        sample(&m, r#"encoder_renditions_total{kind="processed",quality="720p"}"#),
        2.0
    );
    assert_eq!(
        sample(&m, r#"encoder_renditions_total{kind="killed",quality="720p"}"#),
        1.0
    );
    assert_eq!(sample(&m, "encoder_encode_seconds_count"), 2.0);
    assert_eq!(sample(&m, "encoder_encode_seconds_sum"), 58.0);
    assert_eq!(sample(&m, r#"encoder_encode_seconds_bucket{le="10.0"}"#), 1.0);
    assert_eq!(sample(&m, r#"encoder_encode_seconds_bucket{le="60.0"}"#), 2.0);
    assert_eq!(sample(&m, "encoder_runs_in_progress"), 1.0);
    assert_eq!(sample(&m, "encoder_runs_lost"), 0.0);
    assert!(m.contains("# TYPE encoder_events counter"), "{m}");
    assert!(m.contains("# TYPE encoder_runs_in_progress gauge"), "{m}");
    assert!(m.ends_with("# EOF\n"), "{m}");
    // The posted route updates them as well as the seeded store.
    app.event(json!({"kind": "processed", "run_id": "c", "qualities": ["480p"], "encode_seconds": 2.0}))
        .await;
    let m = metrics(&app).await;
    assert_eq!(sample(&m, r#"encoder_events_total{kind="processed"}"#), 4.0);
    assert_eq!(sample(&m, "encoder_runs_in_progress"), 0.0);
    assert_eq!(sample(&m, "encoder_encode_seconds_count"), 3.0);
}

#[tokio::test]
async fn metrics_and_summary_are_the_same_after_a_restart() {
    let app = spawn_app("metrics-restart").await;
    seed(&app).await;
    let (m, s) = (metrics(&app).await, app.get_json("/summary").await);
    let dir = app.stop().await;
    let app = spawn_with(dir, |_| {}).await;
    assert_eq!(sorted(&metrics(&app).await), sorted(&m));
    let mut s2 = app.get_json("/summary").await;
    s2["peak_concurrent_runs"] = s["peak_concurrent_runs"].clone(); // run c extends to "now"
    assert_eq!(s2, s);
}

#[tokio::test]
async fn a_reset_sets_every_metric_back_to_zero() {
    let fresh = metrics(&spawn_app("metrics-fresh").await).await;
    let app = spawn_app("metrics-reset").await;
    seed(&app).await;
    assert_eq!(app.post("/reset").await.status(), 200);
    assert_eq!(sorted(&metrics(&app).await), sorted(&fresh));
}

#[tokio::test]
async fn healthz_answers_ok_when_the_database_answers() {
    let app = spawn_app("healthz").await;
    let resp = app.get("/healthz").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(content_type(&resp), "application/json");
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"status": "ok"}));
}
