//! The original example's routes answer byte for byte as it did.

use chrono::{NaiveDateTime, Utc};
use regex::Regex;
use serde_json::json;

use crate::helpers::{TestApp, content_type, spawn_app};

/// Posts to a legacy route and returns (status, content type, body).
async fn legacy(app: &TestApp, path: &str) -> (u16, String, String) {
    let resp = app.post(path).await;
    let status = resp.status().as_u16();
    let ct = content_type(&resp);
    (status, ct, resp.text().await.expect("a body"))
}

async fn get_count(app: &TestApp) -> (u16, String, String) {
    let resp = app.get("/get/count").await;
    let status = resp.status().as_u16();
    let ct = content_type(&resp);
    (status, ct, resp.text().await.expect("a body"))
}

/// The lines of a `/get/count` body, checked to be written exactly like Python's `json.dumps`.
fn lines(body: &str) -> Vec<String> {
    let list: Vec<String> = serde_json::from_str(body).expect("a JSON list of strings");
    let python = format!(
        "[{}]",
        list.iter().map(|l| format!("\"{l}\"")).collect::<Vec<_>>().join(", ")
    );
    assert_eq!(body, python, "written like json.dumps");
    list
}

#[tokio::test]
async fn create_count_answers_exactly_like_the_original() {
    let app = spawn_app("create").await;
    assert_eq!(
        legacy(&app, "/create/count").await,
        (
            200,
            "application/json".into(),
            r#"{"message": "Count incremented"}"#.into()
        )
    );
}

#[tokio::test]
async fn kill_count_answers_exactly_like_the_original() {
    let app = spawn_app("kill").await;
    assert_eq!(
        legacy(&app, "/kill/count").await,
        (
            200,
            "application/json".into(),
            r#"{"message": "Kill incremented"}"#.into()
        )
    );
}

#[tokio::test]
async fn reset_answers_exactly_like_the_original() {
    let app = spawn_app("reset").await;
    assert_eq!(
        legacy(&app, "/reset").await,
        (
            200,
            "application/json".into(),
            r#"{"message": "Reset Successfully"}"#.into()
        )
    );
}

#[tokio::test]
async fn get_count_is_an_empty_list_before_anything_is_recorded() {
    let app = spawn_app("empty").await;
    assert_eq!(get_count(&app).await, (200, "application/json".into(), "[]".into()));
}

#[tokio::test]
async fn get_count_lists_each_kind_numbered_from_one_in_recorded_order_with_utc_times() {
    let app = spawn_app("count").await;
    let before = Utc::now().naive_utc();
    for path in [
        "/create/count",
        "/create/count",
        "/kill/count",
        "/create/count",
        "/kill/count",
    ] {
        assert_eq!(legacy(&app, path).await.0, 200);
    }
    let after = Utc::now().naive_utc();
    let (status, ct, body) = get_count(&app).await;
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    let line = Regex::new(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) - (processed|kill) count (\d+)$").unwrap();
    let got: Vec<(String, u32)> = lines(&body)
        .iter()
        .map(|l| {
            let c = line
                .captures(l)
                .unwrap_or_else(|| panic!("{l:?} is not in the original format"));
            let at = NaiveDateTime::parse_from_str(&c[1], "%Y-%m-%d %H:%M:%S").expect("a time");
            // Whole seconds, UTC: between the second before the first post and after the last.
            assert!(
                at >= before - chrono::Duration::seconds(1) && at <= after,
                "{at} is not UTC now"
            );
            (c[2].to_owned(), c[3].parse().unwrap())
        })
        .collect();
    let want: Vec<(String, u32)> = [
        ("processed", 1),
        ("processed", 2),
        ("kill", 1),
        ("processed", 3),
        ("kill", 2),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_owned(), n))
    .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn reset_forgets_everything_and_counting_starts_again_from_one() {
    let app = spawn_app("reset-count").await;
    legacy(&app, "/create/count").await;
    legacy(&app, "/kill/count").await;
    app.event(json!({"kind": "started", "run_id": "r1"})).await;
    legacy(&app, "/reset").await;
    assert_eq!(get_count(&app).await.2, "[]");
    assert_eq!(app.get_json("/events").await["events"], json!([]));
    legacy(&app, "/create/count").await;
    let body = get_count(&app).await.2;
    assert!(
        Regex::new(r#"^\["\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} - processed count 1"\]$"#)
            .unwrap()
            .is_match(&body),
        "{body}"
    );
}

#[tokio::test]
async fn processed_and_killed_events_from_the_encoder_count_in_get_count_and_other_kinds_do_not() {
    let app = spawn_app("mixed").await;
    for kind in [
        "started",
        "processed",
        "failed",
        "rejected",
        "empty",
        "killed",
        "duplicate",
    ] {
        app.event(json!({"kind": kind, "run_id": format!("run-{kind}")})).await;
    }
    let got = lines(&get_count(&app).await.2);
    let kinds: Vec<&str> = got.iter().map(|l| l.split(" - ").nth(1).unwrap()).collect();
    assert_eq!(kinds, ["processed count 1", "kill count 1"]);
}

#[tokio::test]
async fn a_request_processed_twice_counts_once_and_the_second_is_stored_as_a_duplicate() {
    let app = spawn_app("dup").await;
    let first = app
        .event(json!({"kind": "processed", "run_id": "a", "request_id": "req-1"}))
        .await;
    let second = app
        .event(json!({"kind": "processed", "run_id": "b", "request_id": "req-1"}))
        .await;
    assert_eq!(first["kind"], "processed");
    assert_eq!(second["kind"], "duplicate");
    assert!(
        second["reason"].as_str().unwrap().contains("already counted"),
        "{second}"
    );
    assert_eq!(lines(&get_count(&app).await.2).len(), 1);
}
