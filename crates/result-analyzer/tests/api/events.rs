//! `POST /events`: what is accepted, what is refused and how; `GET /events`: filters and pages.

use chrono::{DateTime, Duration, Utc};
use encoding_common::{Event, EventKind};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, content_type, spawn_app};

fn processed() -> Value {
    json!({
        "kind": "processed", "run_id": "3b0e7c1e-5d43-4b1f-9f4a-0d7f0b6e2a11", "video_id": "big-buck-bunny",
        "qualities": ["720p", "1080p"], "request_id": "3f0c6a52-3c1e-4d3a-9a55-7d2b1f0f9b11",
        "message_id": "a1b2c3", "receive_count": 1, "host": "encoder-7f9c2-x5kq2", "elapsed_seconds": 41.2,
        "encode_seconds": 35.8, "frames": 600, "fps": 16.8, "source_seconds": 20.0,
        "outputs": ["s3://media-out/renditions/big-buck-bunny/720p.mp4", "s3://media-out/renditions/big-buck-bunny/1080p.mp4"]
    })
}

#[tokio::test]
async fn a_complete_event_is_stored_and_answered_201_with_its_id_and_time() {
    let app = spawn_app("post-ok").await;
    let before = Utc::now();
    let resp = app.post_json("/events", &processed()).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(content_type(&resp), "application/json");
    let stored: Value = resp.json().await.unwrap();
    assert_eq!(stored["id"], 1);
    let at: DateTime<Utc> = stored["recorded_at"].as_str().unwrap().parse().unwrap();
    assert!(at >= before && at <= Utc::now(), "{at}");
    let mut expected = processed();
    expected["id"] = stored["id"].clone();
    expected["recorded_at"] = stored["recorded_at"].clone();
    assert_eq!(stored, expected);
    assert_eq!(app.get_json("/events").await["events"], json!([expected]));
}

#[tokio::test]
async fn an_event_needs_only_its_kind() {
    let app = spawn_app("post-min").await;
    let stored = app.event(json!({"kind": "failed"})).await;
    assert_eq!(stored["kind"], "failed");
}

#[tokio::test]
async fn a_charset_parameter_on_the_content_type_is_accepted() {
    let app = spawn_app("post-charset").await;
    let resp = app
        .post_raw(
            r#"{"kind":"empty","run_id":"r"}"#,
            Some("application/json; charset=utf-8"),
        )
        .await;
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn the_4k_alias_is_stored_under_its_contract_name() {
    let app = spawn_app("post-4k").await;
    let stored = app.event(json!({"kind": "processed", "qualities": ["4k"]})).await;
    assert_eq!(stored["qualities"], json!(["2160p"]));
}

#[tokio::test]
async fn a_body_without_a_content_type_is_refused_415() {
    let app = spawn_app("post-no-ct").await;
    assert_error(
        app.post_raw(r#"{"kind":"processed"}"#, None).await,
        415,
        "application/json",
    )
    .await;
}

#[tokio::test]
async fn a_body_of_another_content_type_is_refused_415() {
    let app = spawn_app("post-text").await;
    for ct in ["text/plain", "application/x-www-form-urlencoded", "application/jsonp"] {
        assert_error(
            app.post_raw(r#"{"kind":"processed"}"#, Some(ct)).await,
            415,
            "application/json",
        )
        .await;
    }
}

#[tokio::test]
async fn malformed_json_is_refused_400() {
    let app = spawn_app("post-malformed").await;
    for body in [
        r#"{"kind": "processed""#,
        "not json",
        "",
        r#"{"kind": "processed"} trailing"#,
    ] {
        let msg = assert_error(
            app.post_raw(body, Some("application/json")).await,
            400,
            "malformed JSON",
        )
        .await;
        assert!(msg.contains("line"), "{body:?}: {msg} should say where");
    }
}

#[tokio::test]
async fn an_unknown_kind_is_refused_422_naming_the_kinds() {
    let app = spawn_app("post-kind").await;
    let msg = assert_error(
        app.post_raw(r#"{"kind": "procesed"}"#, Some("application/json")).await,
        422,
        "procesed",
    )
    .await;
    assert!(msg.contains("processed"), "{msg}");
}

#[tokio::test]
async fn an_unknown_field_is_refused_422_naming_it() {
    let app = spawn_app("post-field").await;
    assert_error(
        app.post_raw(r#"{"kind": "processed", "vidoe_id": "x"}"#, Some("application/json"))
            .await,
        422,
        "vidoe_id",
    )
    .await;
}

#[tokio::test]
async fn a_missing_kind_or_a_wrong_type_is_refused_422() {
    let app = spawn_app("post-type").await;
    for (body, needle) in [
        (r#"{"video_id": "x"}"#, "kind"),
        (r#"{"kind": "processed", "frames": "many"}"#, "invalid type"),
        (r#"{"kind": "processed", "qualities": "720p"}"#, "invalid type"),
        (r#"["processed"]"#, "JSON object"),
        (r#""processed""#, "JSON object"),
    ] {
        assert_error(app.post_raw(body, Some("application/json")).await, 422, needle).await;
    }
}

#[tokio::test]
async fn an_event_that_breaks_a_rule_is_refused_422_with_the_rule() {
    let app = spawn_app("post-rule").await;
    for (body, needle) in [
        (json!({"kind": "started"}), "needs a run_id"),
        (json!({"kind": "processed", "video_id": ".hidden"}), "video_id"),
        (json!({"kind": "processed", "qualities": ["721p"]}), "721p"),
        (json!({"kind": "processed", "qualities": ["720p", "720p"]}), "twice"),
        (json!({"kind": "processed", "fps": -3.0}), "fps"),
        (json!({"kind": "processed", "receive_count": 0}), "receive_count"),
        (json!({"kind": "processed", "run_id": "x".repeat(300)}), "at most 256"),
    ] {
        assert_error(app.post_json("/events", &body).await, 422, needle).await;
    }
    assert_eq!(
        app.get_json("/events").await["events"],
        json!([]),
        "nothing refused is stored"
    );
}

async fn seed(app: &TestApp, at: DateTime<Utc>, kind: EventKind, video: &str) {
    let mut e = Event::new(kind);
    e.run_id = Some(format!("run-{video}"));
    e.video_id = Some(video.into());
    app.store.record_at(e, at).await.expect("seeded");
}

fn videos(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{}:{}", e["kind"].as_str().unwrap(), e["video_id"].as_str().unwrap()))
        .collect()
}

#[tokio::test]
async fn events_are_filtered_by_kind_video_and_time() {
    let app = spawn_app("get-filter").await;
    let t0: DateTime<Utc> = "2026-01-17T05:50:00Z".parse().unwrap();
    seed(&app, t0, EventKind::Started, "a").await;
    seed(&app, t0 + Duration::seconds(10), EventKind::Started, "b").await;
    seed(&app, t0 + Duration::seconds(20), EventKind::Processed, "a").await;
    seed(&app, t0 + Duration::seconds(30), EventKind::Failed, "b").await;

    let all = app.get_json("/events").await;
    assert_eq!(videos(&all), ["started:a", "started:b", "processed:a", "failed:b"]);
    assert_eq!(all["next_after_id"], Value::Null);
    assert_eq!(
        videos(&app.get_json("/events?kind=started").await),
        ["started:a", "started:b"]
    );
    assert_eq!(
        videos(&app.get_json("/events?video_id=b").await),
        ["started:b", "failed:b"]
    );
    assert_eq!(
        videos(&app.get_json("/events?video_id=a&kind=processed").await),
        ["processed:a"]
    );
    // since is inclusive, until exclusive; a + offset is written %2B.
    assert_eq!(
        videos(
            &app.get_json("/events?since=2026-01-17T05:50:10Z&until=2026-01-17T05:50:30Z")
                .await
        ),
        ["started:b", "processed:a"]
    );
    assert_eq!(
        videos(&app.get_json("/events?since=2026-01-17T06:50:20%2B01:00").await),
        ["processed:a", "failed:b"]
    );
    assert_eq!(videos(&app.get_json("/events?kind=killed").await), Vec::<String>::new());
}

#[tokio::test]
async fn events_come_a_page_at_a_time_with_the_next_after_id() {
    let app = spawn_app("get-pages").await;
    for i in 0..7 {
        app.event(json!({"kind": "failed", "message_id": format!("m{i}")}))
            .await;
    }
    let mut seen = Vec::new();
    let mut after = 0;
    let mut pages = 0;
    loop {
        let page = app.get_json(&format!("/events?limit=3&after_id={after}")).await;
        pages += 1;
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= 3);
        seen.extend(events.iter().map(|e| e["message_id"].as_str().unwrap().to_owned()));
        match page["next_after_id"].as_i64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(seen, (0..7).map(|i| format!("m{i}")).collect::<Vec<_>>());
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn bad_event_filters_are_refused_400_with_the_reason() {
    let app = spawn_app("get-bad").await;
    for (query, needle) in [
        ("kind=procesed", "unknown event kind"),
        ("since=yesterday", "since"),
        ("until=2026-01-17", "until"),
        ("after_id=abc", "after_id"),
        ("after_id=-1", "after_id"),
        ("limit=0", "limit must be 1 to 1000"),
        ("limit=1001", "limit must be 1 to 1000"),
        ("limit=-5", "limit"),
        ("page=2", "unknown field `page`"),
        (
            "since=2026-01-17T06:00:00Z&until=2026-01-17T05:00:00Z",
            "since must not be later",
        ),
    ] {
        assert_error(app.get(&format!("/events?{query}")).await, 400, needle).await;
    }
}
