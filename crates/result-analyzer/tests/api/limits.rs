//! The bearer token on writes, the body limit, the request timeout, unknown routes and methods.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{DbPath, TestDir, assert_error, event_request_head, raw_read, raw_send, spawn_app, spawn_with};

const TOKEN: &str = "s3cret-token";

const WRITES: [&str; 4] = ["/create/count", "/kill/count", "/reset", "/events"];

#[tokio::test]
async fn with_a_token_every_write_route_without_it_is_refused_401_with_www_authenticate() {
    let app = spawn_with(TestDir::new("auth-missing"), |c| c.token = Some(TOKEN.into())).await;
    for path in WRITES {
        for auth in [
            None,
            Some("Bearer wrong".to_owned()),
            Some(format!("Basic {TOKEN}")),
            Some(TOKEN.to_owned()),
        ] {
            let mut req = app
                .client
                .post(format!("{}{path}", app.url))
                .json(&json!({"kind": "processed"}));
            if let Some(a) = &auth {
                req = req.header("authorization", a);
            }
            let resp = req.send().await.unwrap();
            let www = resp
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            assert_error(resp, 401, "Authorization: Bearer").await;
            assert_eq!(
                www.as_deref(),
                Some("Bearer realm=\"result-analyzer\""),
                "{path} {auth:?}"
            );
        }
    }
    assert_eq!(
        app.get_json("/events").await["events"],
        json!([]),
        "nothing was written"
    );
}

#[tokio::test]
async fn with_a_token_every_write_route_with_it_works() {
    let app = spawn_with(TestDir::new("auth-ok"), |c| c.token = Some(TOKEN.into())).await;
    for path in WRITES {
        let resp = app
            .client
            .post(format!("{}{path}", app.url))
            .bearer_auth(TOKEN)
            .json(&json!({"kind": "processed"}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
    }
}

#[tokio::test]
async fn with_a_token_reads_stay_open() {
    let app = spawn_with(TestDir::new("auth-reads"), |c| c.token = Some(TOKEN.into())).await;
    for path in [
        "/get/count",
        "/events",
        "/summary",
        "/runs",
        "/metrics",
        "/healthz",
        "/",
    ] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn without_a_token_writes_need_no_authorization() {
    let app = spawn_app("auth-none").await;
    assert_eq!(app.post("/create/count").await.status(), 200);
}

#[tokio::test]
async fn an_empty_token_is_refused_at_startup() {
    let mut config = result_analyzer::Config::new("127.0.0.1:0".parse().unwrap(), TestDir::new("auth-empty").db());
    config.token = Some(String::new());
    let err = result_analyzer::Application::build(config).await.expect_err("refused");
    assert!(err.to_string().contains("ANALYZER_TOKEN"), "{err}");
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_413() {
    let app = spawn_app("body-limit").await;
    let reason = "x".repeat(result_analyzer::DEFAULT_MAX_BODY_BYTES);
    let body = json!({"kind": "failed", "reason": reason}).to_string();
    assert_error(app.post_raw(body, Some("application/json")).await, 413, "length limit").await;
}

#[tokio::test]
async fn the_body_limit_is_configurable_and_applies_to_chunked_bodies_too() {
    let app = spawn_with(TestDir::new("body-limit-small"), |c| c.max_body_bytes = 64).await;
    let small = json!({"kind": "failed", "reason": "short"}).to_string();
    assert_eq!(app.post_raw(small, Some("application/json")).await.status(), 201);
    let big = json!({"kind": "failed", "reason": "y".repeat(100)}).to_string();
    // Chunked, without a Content-Length: the limit is enforced while the body is read.
    let mut req = String::from(
        "POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    for chunk in big.as_bytes().chunks(16) {
        req.push_str(&format!(
            "{:x}\r\n{}\r\n",
            chunk.len(),
            std::str::from_utf8(chunk).unwrap()
        ));
    }
    req.push_str("0\r\n\r\n");
    let mut stream = raw_send(app.addr, req.as_bytes()).await;
    let answer = raw_read(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("length limit"), "{answer}");
    assert_eq!(app.get_json("/events").await["events"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_request_slower_than_the_timeout_is_answered_408() {
    let app = spawn_with(TestDir::new("timeout"), |c| c.request_timeout_seconds = 0.3).await;
    let body = r#"{"kind":"failed","reason":"a client that stalls"}"#;
    // The head and half the body, then nothing: the handler waits for the rest until the timeout.
    let mut head = event_request_head(body);
    head.push_str(&body[..10]);
    let started = std::time::Instant::now();
    let mut stream = raw_send(app.addr, head.as_bytes()).await;
    let answer = raw_read(&mut stream, Duration::from_secs(5)).await;
    let waited = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.to_lowercase().contains("content-type: application/json"),
        "{answer}"
    );
    assert!(
        answer.contains(r#"{"error":"the request took longer than 0.3 s"}"#),
        "{answer}"
    );
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(app.get_json("/events").await["events"], json!([]));
}

#[tokio::test]
async fn a_request_within_the_timeout_is_answered_normally() {
    let app = spawn_with(TestDir::new("timeout-ok"), |c| c.request_timeout_seconds = 0.3).await;
    assert_eq!(app.post("/create/count").await.status(), 200);
}

#[tokio::test]
async fn an_unknown_route_is_answered_404_as_json() {
    let app = spawn_app("404").await;
    assert_error(app.get("/nope").await, 404, "no such route").await;
    assert_error(app.post("/create/counts").await, 404, "no such route").await;
}

#[tokio::test]
async fn a_wrong_method_is_answered_405_as_json() {
    let app = spawn_app("405").await;
    assert_error(app.get("/create/count").await, 405, "method").await;
    assert_error(app.post("/get/count").await, 405, "method").await;
    assert_error(
        app.client.delete(format!("{}/events", app.url)).send().await.unwrap(),
        405,
        "method",
    )
    .await;
}
