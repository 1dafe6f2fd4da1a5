//! The player page: `GET /player?request_id=...` plays what a processed request stored (its HLS
//! master playlist, its MPD, or its largest MP4 file) from `PLAYER_URL_BASE`, with the vendored
//! players served by the analyzer itself; every refusal has its status and reason.

use serde_json::json;

use crate::helpers::{DbPath, TestDir, assert_error, content_type, spawn_app, spawn_with};

async fn processed(app: &crate::helpers::TestApp, request_id: &str, outputs: &[&str]) {
    let run = format!("run-{request_id}");
    app.event(json!({"kind": "started", "run_id": run, "video_id": "clip", "request_id": request_id}))
        .await;
    app.event(
        json!({"kind": "processed", "run_id": run, "video_id": "clip", "request_id": request_id, "outputs": outputs}),
    )
    .await;
}

#[tokio::test]
async fn a_processed_stream_gets_a_page_that_plays_it_from_the_public_base() {
    let app = spawn_with(TestDir::new("player"), |c| {
        c.player_url_base = Some("https://cdn.example.com/".into())
    })
    .await;
    processed(
        &app,
        "req-stream",
        &[
            "s3://media-out/renditions/clip/master.m3u8",
            "s3://media-out/renditions/clip/manifest.mpd",
        ],
    )
    .await;
    processed(&app, "req-dash", &["s3://media-out/renditions/d/manifest.mpd"]).await;
    processed(
        &app,
        "req-files",
        &[
            "s3://media-out/renditions/f/480p.mp4",
            "s3://media-out/renditions/f/720p.mp4",
        ],
    )
    .await;

    let resp = app.get("/player?request_id=req-stream").await;
    assert_eq!(resp.status(), 200);
    assert!(content_type(&resp).starts_with("text/html"));
    let page = resp.text().await.unwrap();
    assert!(
        page.contains(r#""url":"https://cdn.example.com/renditions/clip/master.m3u8""#),
        "{page}"
    );
    assert!(page.contains(r#"<script src="/player/hls.min.js">"#), "{page}");
    let dash = app.get("/player?request_id=req-dash").await.text().await.unwrap();
    assert!(
        dash.contains(r#""kind":"dash","url":"https://cdn.example.com/renditions/d/manifest.mpd""#),
        "{dash}"
    );
    assert!(dash.contains(r#"<script src="/player/dash.all.min.js">"#));
    let files = app.get("/player?request_id=req-files").await.text().await.unwrap();
    assert!(
        files.contains(r#""kind":"mp4","url":"https://cdn.example.com/renditions/f/720p.mp4""#),
        "{files}"
    );
    // By video, as the dashboard links it: the newest processed run's outputs (here req-files').
    let by_video = app.get("/player?video_id=clip").await.text().await.unwrap();
    assert!(by_video.contains("renditions/f/720p.mp4"), "{by_video}");

    for (path, version) in [("/player/hls.min.js", "1.7.4"), ("/player/dash.all.min.js", "5.2.1")] {
        let resp = app.get(path).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert!(content_type(&resp).starts_with("text/javascript"), "{path}");
        let body = resp.text().await.unwrap();
        assert!(
            body.len() > 100_000 && body.contains(&format!("\"{version}\"")),
            "{path}"
        );
    }
}

#[tokio::test]
async fn what_cannot_be_played_is_refused_with_its_reason() {
    let app = spawn_app("player-refusals").await;
    processed(&app, "req-s3", &["s3://media-out/renditions/clip/master.m3u8"]).await;
    processed(&app, "req-nothing", &[]).await;
    assert_error(app.get("/player").await, 400, "request_id").await;
    assert_error(app.get("/player?video_id=never").await, 404, "no stored output").await;
    assert_error(app.get("/player?request_id=nobody").await, 404, "no event names").await;
    assert_error(app.get("/player?request_id=req-nothing").await, 404, "no stored output").await;
    assert_error(app.get("/player?request_id=req-s3").await, 409, "PLAYER_URL_BASE").await;
}

#[tokio::test]
async fn a_base_that_is_not_http_is_refused_at_startup() {
    let mut config = result_analyzer::Config::new(([127, 0, 0, 1], 0).into(), TestDir::new("player-base").db());
    config.player_url_base = Some("s3://media-out".into());
    let Err(err) = result_analyzer::Application::build(config).await else {
        panic!("an s3:// PLAYER_URL_BASE was taken");
    };
    let err = err.to_string();
    assert!(err.contains("PLAYER_URL_BASE must be an http(s) URL"), "{err}");
}
