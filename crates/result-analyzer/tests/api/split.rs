//! A request split into chunks, as the analyzer records it: the run that split it, its chunk runs
//! (one killed and redone, one found stored), its stitch run; `/get/count` (one processed line for
//! the request, and the kill), `GET /requests/{id}` at each step, `/runs`, `/summary` and
//! `/metrics`; and a database of the schema before chunk runs (5), brought up to date in place.

use chrono::Utc;
use encoding_common::{Event, EventKind};
use regex::Regex;
use serde_json::{Value, json};

use crate::aggregates::{Rng, Step, answers, assert_same, play, stream};
use crate::helpers::{DbPath, TestApp, TestDir, spawn_app, spawn_with};

/// The request split into three chunks.
pub const REQUEST: &str = "req-long-film";
const VIDEO: &str = "long-film";

/// An event of the split request's run `run`, with `fields` on top.
fn event(kind: &str, run: &str, fields: Value) -> Value {
    let mut e = json!({"kind": kind, "run_id": run, "request_id": REQUEST, "video_id": VIDEO, "qualities": ["720p"]});
    e.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
    e
}

/// `GET /requests/{REQUEST}`: its outcome, whether it is final, whether it was processed.
async fn standing(app: &TestApp) -> (Option<String>, bool, bool, Value) {
    let v = app.get_json(&format!("/requests/{REQUEST}")).await;
    (
        v["outcome"].as_str().map(str::to_owned),
        v["final"].as_bool().expect("final"),
        v["processed"].as_bool().expect("processed"),
        v["split"].clone(),
    )
}

/// Asserts that the request is not over yet, with `stored` of its 3 chunks stored, and no
/// outcome unless `outcome`.
async fn at_work(app: &TestApp, outcome: Option<&str>, stored: u64, when: &str) {
    assert_eq!(
        standing(app).await,
        (
            outcome.map(str::to_owned),
            false,
            false,
            json!({"chunks": 3, "chunks_stored": stored})
        ),
        "{when}"
    );
}

/// Plays the split request through `app`, checking where it stands after each step: the run
/// that splits it, chunk 0 stored, chunk 1 killed then stored by a second run, chunk 2 stored
/// and found stored by a redelivery, the stitch run processed, and a redelivered stitch.
pub async fn play_split_request(app: &TestApp) {
    app.event(event("started", "split-run", json!({"lease_seconds": 600})))
        .await;
    app.event(event("split", "split-run", json!({"chunks": 3}))).await;
    at_work(app, None, 0, "split: its chunks are queued").await;

    let chunk = |i: u32| json!({"chunk": i, "chunks": 3, "lease_seconds": 600});
    app.event(event("started", "chunk-0", chunk(0))).await;
    app.event(event("chunk", "chunk-0", chunk(0))).await;
    at_work(app, None, 1, "chunk 0 stored").await;

    app.event(event("started", "chunk-1", chunk(1))).await;
    let resp = app
        .post_json(
            "/events",
            &event(
                "progress",
                "chunk-1",
                json!({"chunk": 1, "chunks": 3, "stage": "encoding", "percent": 40.0}),
            ),
        )
        .await;
    assert_eq!(resp.status(), 202);
    app.event(event("killed", "chunk-1", chunk(1))).await;
    at_work(app, Some("killed"), 1, "chunk 1 killed: its message comes again").await;
    app.event(event("started", "chunk-1-again", chunk(1))).await;
    at_work(app, None, 1, "chunk 1 at work again").await;
    app.event(event("chunk", "chunk-1-again", chunk(1))).await;

    app.event(event("started", "chunk-2", chunk(2))).await;
    app.event(event("chunk", "chunk-2", chunk(2))).await;
    app.event(event("started", "chunk-2-again", chunk(2))).await;
    app.event(event(
        "duplicate",
        "chunk-2-again",
        json!({"chunk": 2, "chunks": 3, "reason": "chunk 2 is stored"}),
    ))
    .await;
    at_work(
        app,
        None,
        3,
        "every chunk stored, one found stored: not a duplicate request",
    )
    .await;

    let stitch = json!({"chunks": 3, "lease_seconds": 600});
    app.event(event("started", "stitch", stitch.clone())).await;
    at_work(app, None, 3, "stitching").await;
    let outputs = json!({"chunks": 3, "outputs": ["s3://out/long-film/720p.mp4"], "encode_seconds": 4.0});
    let done = app.event(event("processed", "stitch", outputs.clone())).await;
    assert_eq!(done["kind"], "processed");
    assert_eq!(
        standing(app).await,
        (
            Some("processed".into()),
            true,
            true,
            json!({"chunks": 3, "chunks_stored": 3})
        ),
        "stitched: processed, once"
    );
    // A redelivered stitch message: stored as a duplicate, and the request stays processed.
    app.event(event("started", "stitch-again", stitch)).await;
    let again = app.event(event("processed", "stitch-again", outputs)).await;
    assert_eq!(again["kind"], "duplicate");
    assert_eq!(standing(app).await.0.as_deref(), Some("processed"));
}

/// The runs of `/runs`, by run id.
async fn runs(app: &TestApp) -> std::collections::BTreeMap<String, Value> {
    let page = app.get_json("/runs?limit=100").await;
    page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["run_id"].as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

#[tokio::test]
async fn a_split_request_counts_once_in_get_count_and_is_final_only_once_stitched() {
    let app = spawn_app("split-request").await;
    play_split_request(&app).await;

    let body = app.get("/get/count").await.text().await.unwrap();
    let line = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d";
    let want = Regex::new(&format!(
        r#"^\["{line} - kill count 1", "{line} - processed count 1"\]$"#
    ))
    .unwrap();
    assert!(
        want.is_match(&body),
        "one kill line (chunk 1's run) and one processed line (the stitch): {body}"
    );
}

#[tokio::test]
async fn a_chunk_runs_rejection_makes_its_request_rejected_for_good() {
    let app = spawn_app("split-rejected").await;
    app.event(event("split", "split-run", json!({"chunks": 3}))).await;
    app.event(event(
        "rejected",
        "chunk-0",
        json!({"chunk": 0, "chunks": 3, "reason": "the plan is gone"}),
    ))
    .await;
    assert_eq!(
        standing(&app).await,
        (
            Some("rejected".into()),
            true,
            false,
            json!({"chunks": 3, "chunks_stored": 0})
        )
    );
    let v = app.get_json(&format!("/requests/{REQUEST}")).await;
    assert_eq!(v["reason"], "the plan is gone");
}

#[tokio::test]
async fn runs_carry_their_chunk_and_the_summary_counts_the_split_request_once() {
    let app = spawn_app("split-figures").await;
    play_split_request(&app).await;
    app.event(json!({"kind": "processed", "run_id": "whole", "request_id": "short", "qualities": ["720p"]}))
        .await;

    let runs = runs(&app).await;
    let part = |id: &str| {
        let r = &runs[id];
        (r.get("chunk").cloned(), r.get("chunks").cloned(), r["outcome"].clone())
    };
    assert_eq!(part("split-run"), (None, Some(json!(3)), json!("split")));
    assert_eq!(part("chunk-0"), (Some(json!(0)), Some(json!(3)), json!("chunk")));
    assert_eq!(part("chunk-1"), (Some(json!(1)), Some(json!(3)), json!("killed")));
    assert_eq!(
        part("chunk-2-again"),
        (Some(json!(2)), Some(json!(3)), json!("duplicate"))
    );
    assert_eq!(part("stitch"), (None, Some(json!(3)), json!("processed")));
    assert_eq!(
        part("whole"),
        (None, None, json!("processed")),
        "a whole request's run has neither field"
    );
    assert_eq!(runs["chunk-1"]["progress"]["stage"], "encoding");

    let s = app.get_json("/summary").await;
    assert_eq!(
        s["split"],
        json!({"requests": 1, "chunk_runs": 5, "chunks_stored": 3}),
        "{s}"
    );
    let counts = &s["counts"];
    assert_eq!(
        (
            &counts["processed"],
            &counts["split"],
            &counts["chunk"],
            &counts["duplicate"]
        ),
        (&json!(2), &json!(1), &json!(3), &json!(2)),
        "the split request is processed once, beside the whole one: {counts}"
    );
    assert_eq!(s["processed_per_quality"], json!({"720p": 2}));

    let metrics = crate::oracle::samples(&app.get("/metrics").await.text().await.unwrap());
    assert_eq!(metrics["encoder_events_total{kind=\"split\"}"], 1.0);
    assert_eq!(metrics["encoder_events_total{kind=\"chunk\"}"], 3.0);
    assert_eq!(metrics["encoder_events_total{kind=\"processed\"}"], 2.0);

    // The same after a restart, and nothing after a reset.
    let app = spawn_with(app.stop().await, |_| {}).await;
    assert_eq!(app.get_json("/summary").await["split"], s["split"]);
    app.post("/reset").await;
    assert_eq!(
        app.get_json("/summary").await["split"],
        json!({"requests": 0, "chunk_runs": 0, "chunks_stored": 0})
    );
    assert_eq!(app.get(&format!("/requests/{REQUEST}")).await.status(), 404);
}

/// What a database of schema 5 had: the tables of 6 without the chunk columns and
/// `request_chunks`, the totals without the split figures.
fn downgrade_to_schema_5(db: &std::path::Path) {
    let db = rusqlite::Connection::open(db).unwrap();
    let version: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 6, "the schema this analyzer writes");
    db.execute_batch(
        "ALTER TABLE runs DROP COLUMN chunk;
         ALTER TABLE runs DROP COLUMN chunks;
         ALTER TABLE requests DROP COLUMN chunks;
         DROP TABLE request_chunks;
         UPDATE state SET totals = json_remove(totals, '$.split_requests', '$.chunk_runs', '$.chunks_stored');
         PRAGMA user_version = 5;",
    )
    .unwrap();
}

#[tokio::test]
async fn a_database_of_schema_5_keeps_its_aggregates_and_gains_the_chunk_columns() {
    // A history of whole requests, as a version-5 analyzer kept it (it refused chunk events),
    // part of it pruned: counting the events again would lose what only the aggregates hold.
    let app = spawn_with(TestDir::new("schema-5"), |_| {}).await;
    let mut rng = Rng::new(5);
    let t0 = Utc::now() - chrono::Duration::hours(3);
    let whole = |s: &Step| match s {
        Step::Store(e) | Step::Progress(e) => e.chunks.is_none(),
    };
    let steps: Vec<Step> = stream(&mut rng, "v5", 300, &[Some(3600), Some(1_000_000_000)], true)
        .into_iter()
        .filter(whole)
        .collect();
    play(&app, &steps, t0, &mut rng).await;
    app.store.sync().await.unwrap();
    let pruned = app.store.prune(t0 + chrono::Duration::minutes(5), 40).await.unwrap();
    assert_eq!(pruned, 40);
    let before = answers(&app.client, &app.url).await;
    let get_count = app.get("/get/count").await.text().await.unwrap();
    let dir = app.stop().await;
    downgrade_to_schema_5(&dir.db());

    let app = spawn_with(dir, |_| {}).await;
    assert_same(&answers(&app.client, &app.url).await, &before, "schema 5 opened");
    assert_eq!(app.get("/get/count").await.text().await.unwrap(), get_count);
    let version: i64 = rusqlite::Connection::open(app.store.path())
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 6);

    // And it records split requests from there on, across a restart.
    play_split_request(&app).await;
    let app = spawn_with(app.stop().await, |_| {}).await;
    let s = app.get_json("/summary").await;
    assert_eq!(s["split"], json!({"requests": 1, "chunk_runs": 5, "chunks_stored": 3}));
    assert_eq!(
        s["counts"]["processed"].as_u64(),
        before.summary["counts"]["processed"].as_u64().map(|n| n + 1)
    );
    assert_eq!(runs(&app).await["chunk-0"]["chunk"], 0);
    let mut late = Event::new(EventKind::Chunk);
    (late.run_id, late.request_id, late.chunk, late.chunks) =
        (Some("late".into()), Some(REQUEST.into()), Some(0), Some(3));
    app.store.record(late).await.unwrap();
    assert_eq!(
        app.get_json("/summary").await["split"]["chunks_stored"],
        3,
        "a chunk stored again counts once"
    );
}

#[tokio::test]
async fn a_stitch_heard_of_first_counts_its_request_as_split_once() {
    let app = spawn_app("split-stitch-first").await;
    let stitched = json!({"kind": "processed", "run_id": "stitch", "request_id": "q", "chunks": 4});
    app.event(stitched).await;
    app.event(json!({"kind": "chunk", "run_id": "late-chunk", "request_id": "q", "chunk": 3, "chunks": 4}))
        .await;
    assert_eq!(
        app.get_json("/summary").await["split"],
        json!({"requests": 1, "chunk_runs": 1, "chunks_stored": 1})
    );
    let v = app.get_json("/requests/q").await;
    assert_eq!(
        (&v["outcome"], &v["final"], &v["split"]),
        (
            &json!("processed"),
            &json!(true),
            &json!({"chunks": 4, "chunks_stored": 1})
        ),
        "a late chunk changes nothing of a processed request: {v}"
    );
}
