//! A run's life as the analyzer sees it: progress reports, runs lost when they stop reporting for
//! longer than their lease (and found again by a late report), and where a request stands
//! (`GET /requests/{request_id}`, which `producer --wait` reads).

use std::time::Duration;

use chrono::Utc;
use encoding_common::{Event, EventKind};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, spawn_app};

fn run_of<'a>(runs: &'a Value, id: &str) -> &'a Value {
    runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run_id"] == id)
        .unwrap_or_else(|| panic!("no run {id} in {runs}"))
}

async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    crate::oracle::samples(&text)[name]
}

async fn progress(app: &TestApp, body: Value) -> Value {
    let resp = app.post_json("/events", &body).await;
    assert_eq!(resp.status(), 202, "a progress report is taken, not stored");
    resp.json().await.unwrap()
}

#[tokio::test]
async fn a_progress_report_is_answered_202_and_shown_as_its_runs_latest_progress() {
    let app = spawn_app("progress").await;
    app.event(json!({"kind": "started", "run_id": "r", "video_id": "v", "lease_seconds": 120}))
        .await;
    let first = progress(
        &app,
        json!({"kind": "progress", "run_id": "r", "stage": "downloading", "percent": 80.0}),
    )
    .await;
    assert_eq!(first["stage"], "downloading");
    let taken = progress(
        &app,
        json!({"kind": "progress", "run_id": "r", "stage": "encoding", "percent": 42.5, "fps": 61.25,
               "lease_seconds": 300}),
    )
    .await;
    assert_eq!(
        (taken["kind"].as_str(), taken["percent"].as_f64()),
        (Some("progress"), Some(42.5))
    );
    app.store.sync().await.unwrap();
    let runs = app.get_json("/runs").await;
    let run = run_of(&runs, "r");
    let time = |v: &Value| v.as_str().unwrap().parse::<chrono::DateTime<Utc>>().unwrap();
    let mut shown = run["progress"].clone();
    assert_eq!(time(&shown["at"]), time(&taken["recorded_at"]));
    shown["at"] = Value::Null;
    assert_eq!(
        shown,
        json!({"stage": "encoding", "percent": 42.5, "fps": 61.25, "at": null})
    );
    assert_eq!(run["lease_seconds"], 300, "the latest lease given");
    assert_eq!(time(&run["last_report_at"]), time(&taken["recorded_at"]));
    assert_eq!(run["outcome"], Value::Null);
    let summary = app.get_json("/summary").await;
    assert_eq!(summary["counts"]["progress"], 2);
    assert_eq!(summary["runs_in_progress"], 1);
    assert_eq!(metric(&app, "encoder_events_total{kind=\"progress\"}").await, 2.0);
    // Not an event: neither listed nor numbered.
    let events = app.get_json("/events").await;
    assert_eq!(events["events"].as_array().unwrap().len(), 1, "{events}");
    assert_eq!(app.get("/get/count").await.text().await.unwrap(), "[]");
}

#[tokio::test]
async fn a_progress_report_before_the_started_report_starts_its_run_its_elapsed_seconds_before() {
    let app = spawn_app("progress-first").await;
    let at = chrono::DateTime::from_timestamp_micros(Utc::now().timestamp_micros() - 30_000_000).unwrap();
    let mut e = Event::new(EventKind::Progress);
    (e.run_id, e.elapsed_seconds, e.stage) = (Some("r".into()), Some(12.5), Some("encoding".into()));
    app.store.report_progress(e, Some(at)).unwrap();
    app.store.sync().await.unwrap();
    let runs = app.get_json("/runs").await;
    let start: chrono::DateTime<Utc> = run_of(&runs, "r")["start"].as_str().unwrap().parse().unwrap();
    assert_eq!(start, at - chrono::Duration::milliseconds(12_500));
    assert_eq!(app.get_json("/summary").await["runs"], 1);
}

#[tokio::test]
async fn a_progress_report_that_breaks_a_rule_is_refused_422() {
    let app = spawn_app("progress-bad").await;
    for (body, needle) in [
        (json!({"kind": "progress", "stage": "encoding"}), "needs a run_id"),
        (
            json!({"kind": "progress", "run_id": "r", "percent": 100.5}),
            "percent must be 0 to 100",
        ),
        (
            json!({"kind": "progress", "run_id": "r", "stage": "resting"}),
            "stage must be one of",
        ),
        (
            json!({"kind": "progress", "run_id": "r", "lease_seconds": 0}),
            "lease_seconds",
        ),
    ] {
        assert_error(app.post_json("/events", &body).await, 422, needle).await;
    }
    assert_eq!(app.get_json("/summary").await["counts"]["progress"], 0);
    let mut e = Event::new(EventKind::Progress);
    e.stage = Some("encoding".into());
    let err = app.store.report_progress(e, None).unwrap_err();
    assert!(err.to_string().contains("needs a run_id"), "{err}");
}

#[tokio::test]
async fn many_progress_reports_between_two_commits_are_merged_into_their_runs() {
    let app = spawn_app("progress-many").await;
    let mut last = Vec::new();
    for i in 0..2000u32 {
        let mut e = Event::new(EventKind::Progress);
        e.run_id = Some(format!("r{}", i % 7));
        e.stage = Some("encoding".into());
        e.percent = Some(f64::from(i / 7) / 10.0);
        last.push(e.clone());
        app.store.report_progress(e, None).unwrap();
    }
    app.event(json!({"kind": "processed", "run_id": "r0"})).await;
    let summary = app.get_json("/summary").await;
    assert_eq!(summary["counts"]["progress"], 2000);
    assert_eq!(summary["runs"], 7);
    let runs = app.get_json("/runs").await;
    for r in 0..7 {
        let want = last
            .iter()
            .rev()
            .find(|e| e.run_id.as_deref() == Some(&format!("r{r}")))
            .unwrap();
        assert_eq!(
            run_of(&runs, &format!("r{r}"))["progress"]["percent"].as_f64(),
            want.percent
        );
    }
    assert_eq!(run_of(&runs, "r0")["outcome"], "processed");
}

#[tokio::test]
async fn a_run_silent_for_longer_than_its_lease_is_lost_everywhere_until_its_late_outcome() {
    let app = spawn_app("lost").await;
    app.event(json!({"kind": "started", "run_id": "r", "request_id": "q", "video_id": "v", "lease_seconds": 1}))
        .await;
    let started = app.get_json("/runs").await;
    assert_eq!(run_of(&started, "r")["outcome"], Value::Null);
    assert_eq!(app.get_json("/summary").await["runs_in_progress"], 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let runs = app.get_json("/runs").await;
    let run = run_of(&runs, "r");
    assert_eq!(run["outcome"], "lost");
    let last: chrono::DateTime<Utc> = run["last_report_at"].as_str().unwrap().parse().unwrap();
    let end: chrono::DateTime<Utc> = run["end"].as_str().unwrap().parse().unwrap();
    assert_eq!(end - last, chrono::Duration::seconds(1), "lost when its lease ran out");
    let summary = app.get_json("/summary").await;
    assert_eq!(
        (summary["counts"]["lost"].as_u64(), summary["runs_in_progress"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(metric(&app, "encoder_runs_lost").await, 1.0);
    assert_eq!(metric(&app, "encoder_runs_in_progress").await, 0.0);
    assert_eq!(app.get_json("/requests/q").await["outcome"], "lost");

    // A late outcome is the run's real one.
    app.event(json!({"kind": "processed", "run_id": "r", "request_id": "q", "outputs": ["s3://o/v/720p.mp4"]}))
        .await;
    assert_eq!(run_of(&app.get_json("/runs").await, "r")["outcome"], "processed");
    let summary = app.get_json("/summary").await;
    assert_eq!(
        (
            summary["counts"]["lost"].as_u64(),
            summary["counts"]["processed"].as_u64()
        ),
        (Some(0), Some(1))
    );
    assert_eq!(metric(&app, "encoder_runs_lost").await, 0.0);
}

#[tokio::test]
async fn a_progress_report_keeps_its_run_running_past_its_first_lease() {
    let app = spawn_app("lost-renewed").await;
    app.event(json!({"kind": "started", "run_id": "r", "lease_seconds": 1}))
        .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    progress(
        &app,
        json!({"kind": "progress", "run_id": "r", "stage": "encoding", "lease_seconds": 1}),
    )
    .await;
    app.store.sync().await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        run_of(&app.get_json("/runs").await, "r")["outcome"],
        Value::Null,
        "1.4 s after its start"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(run_of(&app.get_json("/runs").await, "r")["outcome"], "lost");
    // A report from a lost run finds it again.
    progress(&app, json!({"kind": "progress", "run_id": "r", "stage": "uploading"})).await;
    app.store.sync().await.unwrap();
    assert_eq!(run_of(&app.get_json("/runs").await, "r")["outcome"], Value::Null);
    assert_eq!(app.get_json("/summary").await["counts"]["lost"], 0);
}

#[tokio::test]
async fn a_run_that_gave_no_lease_is_lost_after_the_default_120_s() {
    let app = spawn_app("lost-default").await;
    for (run, seconds_ago) in [("old", 121), ("young", 100)] {
        let mut e = Event::new(EventKind::Started);
        e.run_id = Some(run.into());
        app.store
            .record_at(e, Utc::now() - chrono::Duration::seconds(seconds_ago))
            .await
            .unwrap();
    }
    let runs = app.get_json("/runs").await;
    assert_eq!(run_of(&runs, "old")["outcome"], "lost");
    assert_eq!(run_of(&runs, "young")["outcome"], Value::Null);
    assert_eq!(run_of(&runs, "young")["lease_seconds"], 120);
}

// --- GET /requests/{request_id} ------------------------------------------------------------------

/// The fields `producer --wait` reads, as it reads them.
fn standing(v: &Value) -> (Option<&str>, bool, Option<&str>, Vec<&str>) {
    (
        v["outcome"].as_str(),
        v["final"].as_bool().expect("final is a boolean"),
        v["reason"].as_str(),
        v["outputs"]
            .as_array()
            .expect("outputs is a list")
            .iter()
            .map(|o| o.as_str().unwrap())
            .collect(),
    )
}

#[tokio::test]
async fn a_request_no_event_names_is_404_not_known_yet() {
    let app = spawn_app("request-404").await;
    app.event(json!({"kind": "started", "run_id": "r", "request_id": "other"}))
        .await;
    assert_error(
        app.get("/requests/nope").await,
        404,
        "no event names request_id \"nope\"",
    )
    .await;
    assert_error(app.get("/requests/%FF").await, 400, "request id").await;
}

#[tokio::test]
async fn a_processed_request_is_final_with_its_outputs_and_stays_so_after_a_second_processed() {
    let app = spawn_app("request-processed").await;
    app.event(json!({"kind": "started", "run_id": "r1", "request_id": "batch 7/intro"}))
        .await;
    let working = app.get_json("/requests/batch%207%2Fintro").await;
    assert_eq!(standing(&working), (None, false, None, vec![]), "{working}");
    assert_eq!(working["run_state"], "running");
    let outputs = ["s3://out/intro/480p.mp4", "s3://out/intro/720p.mp4"];
    app.event(json!({"kind": "processed", "run_id": "r1", "request_id": "batch 7/intro", "outputs": outputs}))
        .await;
    let done = app.get_json("/requests/batch%207%2Fintro").await;
    assert_eq!(
        standing(&done),
        (Some("processed"), true, None, outputs.to_vec()),
        "{done}"
    );
    assert_eq!(
        (done["processed"].as_bool(), done["request_id"].as_str()),
        (Some(true), Some("batch 7/intro"))
    );
    // A redelivery's run, stored as a duplicate, changes nothing.
    app.event(json!({"kind": "started", "run_id": "r2", "request_id": "batch 7/intro"}))
        .await;
    app.event(json!({"kind": "processed", "run_id": "r2", "request_id": "batch 7/intro", "outputs": ["s3://x"]}))
        .await;
    let again = app.get_json("/requests/batch%207%2Fintro").await;
    assert_eq!(
        standing(&again),
        (Some("processed"), true, None, outputs.to_vec()),
        "{again}"
    );
    assert_eq!(
        (again["latest"]["kind"].as_str(), again["latest"]["run_id"].as_str()),
        (Some("duplicate"), Some("r2"))
    );
}

#[tokio::test]
async fn a_rejected_request_is_final_with_its_reason_and_a_duplicate_with_its_outputs() {
    let app = spawn_app("request-rejected").await;
    app.event(json!({"kind": "rejected", "run_id": "r1", "request_id": "a", "reason": "not a media file"}))
        .await;
    assert_eq!(
        standing(&app.get_json("/requests/a").await),
        (Some("rejected"), true, Some("not a media file"), vec![])
    );
    app.event(
        json!({"kind": "duplicate", "run_id": "r2", "request_id": "b", "outputs": ["s3://o/v/720p.mp4"],
                     "reason": "already stored for the same source and settings"}),
    )
    .await;
    assert_eq!(
        standing(&app.get_json("/requests/b").await),
        (
            Some("duplicate"),
            true,
            Some("already stored for the same source and settings"),
            vec!["s3://o/v/720p.mp4"]
        )
    );
}

#[tokio::test]
async fn a_failed_request_is_not_final_and_its_retry_decides() {
    let app = spawn_app("request-failed").await;
    app.event(json!({"kind": "started", "run_id": "r1", "request_id": "q"}))
        .await;
    app.event(json!({"kind": "failed", "run_id": "r1", "request_id": "q", "reason": "S3 is down"}))
        .await;
    assert_eq!(
        standing(&app.get_json("/requests/q").await),
        (Some("failed"), false, Some("S3 is down"), vec![])
    );
    app.event(json!({"kind": "started", "run_id": "r2", "request_id": "q"}))
        .await;
    assert_eq!(
        standing(&app.get_json("/requests/q").await),
        (None, false, None, vec![]),
        "retrying"
    );
    app.event(json!({"kind": "killed", "run_id": "r2", "request_id": "q"}))
        .await;
    assert_eq!(
        standing(&app.get_json("/requests/q").await),
        (Some("killed"), false, None, vec![])
    );
    app.event(json!({"kind": "processed", "run_id": "r3", "request_id": "q", "outputs": ["s3://o"]}))
        .await;
    assert_eq!(
        standing(&app.get_json("/requests/q").await),
        (Some("processed"), true, None, vec!["s3://o"])
    );
}

#[tokio::test]
async fn a_request_whose_run_is_lost_is_lost_with_the_reason_and_not_final() {
    let app = spawn_app("request-lost").await;
    let mut e = Event::new(EventKind::Started);
    (e.run_id, e.request_id, e.lease_seconds) = (Some("r".into()), Some("q".into()), Some(60));
    app.store
        .record_at(e, Utc::now() - chrono::Duration::seconds(61))
        .await
        .unwrap();
    let v = app.get_json("/requests/q").await;
    let (outcome, is_final, reason, _) = standing(&v);
    assert_eq!(
        (outcome, is_final, v["run_state"].as_str()),
        (Some("lost"), false, Some("lost"))
    );
    assert!(reason.unwrap().contains("longer than its lease (60 s)"), "{v}");
}
