//! What the analyzer does when its database refuses a commit or was damaged: a refused group
//! commit stores and counts nothing of its events, and a damaged database is refused at start-up
//! with the reason, instead of answering wrong figures.

use std::net::SocketAddr;

use result_analyzer::{Application, Config};
use serde_json::json;

use crate::helpers::{DbPath, TestDir, assert_error, spawn_with};

#[tokio::test]
async fn a_refused_commit_stores_and_counts_nothing_of_it_and_the_next_ones_count_right() {
    let dir = TestDir::new("failures-commit");
    let app = spawn_with(dir, |_| {}).await;
    app.event(json!({"kind": "started", "run_id": "r", "video_id": "v", "qualities": ["720p"]}))
        .await;
    let before = app.get_json("/summary").await;
    // SQLite refuses any change of the runs row of a video called "boom", as a full disk would.
    let db = rusqlite::Connection::open(app.store.path()).unwrap();
    db.execute_batch(
        "CREATE TRIGGER boom BEFORE INSERT ON runs WHEN NEW.video_id = 'boom' BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
    )
    .unwrap();
    let refused = app
        .post_json(
            "/events",
            &json!({"kind": "processed", "run_id": "b", "video_id": "boom", "qualities": ["720p"], "encode_seconds": 3.0}),
        )
        .await;
    assert_error(refused, 503, "disk full").await;
    assert_eq!(
        app.get_json("/summary").await,
        before,
        "nothing of the refused event counted"
    );
    assert_eq!(app.get_json("/events").await["events"].as_array().unwrap().len(), 1);

    app.event(
        json!({"kind": "processed", "run_id": "r", "video_id": "v", "qualities": ["720p"], "encode_seconds": 2.0}),
    )
    .await;
    let after = app.get_json("/summary").await;
    assert_eq!(after["counts"]["processed"], 1);
    assert_eq!(after["encode_seconds"]["count"], 1);
    assert_eq!(after["encode_seconds"]["p50"], 2.0);
    assert_eq!(after["runs"], 1);
    // And so after a restart: what was saved is what was counted.
    let app = spawn_with(app.stop().await, |_| {}).await;
    assert_eq!(app.get_json("/summary").await, after);
}

async fn refused_at_start(dir: &TestDir) -> String {
    let config = Config::new(SocketAddr::from(([127, 0, 0, 1], 0)), dir.db());
    let err = Application::build(config)
        .await
        .expect_err("a damaged database is refused");
    err.to_string()
}

#[tokio::test]
async fn a_database_whose_saved_totals_are_damaged_is_refused_at_start_up() {
    let app = spawn_with(TestDir::new("failures-totals"), |_| {}).await;
    app.event(json!({"kind": "failed", "run_id": "r"})).await;
    let dir = app.stop().await;
    let db = rusqlite::Connection::open(dir.db()).unwrap();
    db.execute("UPDATE state SET totals = '{\"counts\": 7}'", []).unwrap();
    drop(db);
    let err = refused_at_start(&dir).await;
    assert!(
        err.contains("the aggregates are inconsistent: the saved totals"),
        "{err}"
    );
    assert!(err.contains(&dir.db().display().to_string()), "names the file: {err}");
}

#[tokio::test]
async fn an_older_database_with_an_event_that_is_not_one_is_refused_at_start_up_naming_it() {
    let dir = TestDir::new("failures-corrupt");
    let db = rusqlite::Connection::open(dir.db()).unwrap();
    db.execute_batch(
        r#"CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, recorded_at TEXT NOT NULL, kind TEXT NOT NULL,
               run_id TEXT, video_id TEXT, request_id TEXT, body TEXT NOT NULL);
           INSERT INTO events (recorded_at, kind, body) VALUES ('2026-01-17T05:50:45.000000Z', 'processed', '{"kind":"processed"}');
           INSERT INTO events (recorded_at, kind, body) VALUES ('2026-01-17T05:50:46.000000Z', 'processed', '{"kind":"procesed"}');"#,
    )
    .unwrap();
    drop(db);
    let err = refused_at_start(&dir).await;
    assert!(err.contains("stored event 2 is not a valid event"), "{err}");
    // Nothing was half counted: the same refusal again.
    assert_eq!(refused_at_start(&dir).await, err);
}
