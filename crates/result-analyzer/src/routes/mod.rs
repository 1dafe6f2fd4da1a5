//! HTTP routes: the original example's four, byte for byte ([`legacy`]), the events ([`events`])
//! and the figures ([`figures`]).
//!
//! Every error is answered as JSON, `{"error": "<what is wrong and how to fix it>"}`, with the
//! status that says whose fault it is: 400 malformed, 401 no token, 404 no such route, 405 wrong
//! method, 408 too slow, 413 too large, 415 not JSON, 422 a well-formed event that breaks a rule,
//! 503 the database cannot answer.

mod events;
mod figures;
mod legacy;
mod player;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::json;
use tower_http::trace::TraceLayer;

use crate::dashboard;
use crate::store::{Store, StoreError};

/// What every handler shares.
#[derive(Clone)]
struct AppState {
    store: Store,
    /// When set, the bearer token every write route requires.
    token: Option<Arc<str>>,
    /// Where the output bucket is served over HTTP(S), for the player page.
    player_base: Option<Arc<str>>,
}

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub(crate) struct HttpSettings {
    /// The bearer token of the write routes, if they need one.
    pub token: Option<String>,
    /// How long a request may take, body included, before it is answered 408.
    pub timeout: Duration,
    /// The largest request body, in bytes; larger is answered 413.
    pub max_body_bytes: usize,
    /// `PLAYER_URL_BASE`: where the output bucket is served over HTTP(S).
    pub player_base: Option<String>,
}

/// The router: legacy routes, richer routes, auth on writes, body limit, timeout, tracing.
pub(crate) fn router(store: Store, settings: HttpSettings) -> Router {
    let state = AppState {
        store,
        token: settings.token.map(Arc::from),
        player_base: settings.player_base.map(Arc::from),
    };
    let writes = Router::new()
        .route("/create/count", post(legacy::create_count))
        .route("/kill/count", post(legacy::kill_count))
        .route("/reset", post(legacy::reset))
        .route("/events", post(events::post_event))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let reads = Router::new()
        .route("/get/count", get(legacy::get_count))
        .route("/events", get(events::list_events))
        .route("/summary", get(figures::get_summary))
        .route("/runs", get(figures::get_runs))
        .route("/requests/{request_id}", get(figures::get_request))
        .route("/metrics", get(figures::get_metrics))
        .route("/healthz", get(figures::healthz))
        .route("/player", get(player::page))
        .route("/player/hls.min.js", get(player::hls_js))
        .route("/player/dash.all.min.js", get(player::dash_js))
        .route("/", get(|| async { Html(dashboard::PAGE) }));
    let router = writes
        .merge(reads)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            error(StatusCode::METHOD_NOT_ALLOWED, "this route does not answer this method")
        })
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(middleware::from_fn_with_state(settings.timeout, time_limit));
    // A span and two events per request cost about a tenth of the throughput of `POST /events`
    // even when filtered out: only pay for them when they are shown (`RUST_LOG=tower_http=debug`).
    let router = if tracing::enabled!(target: "tower_http::trace", tracing::Level::DEBUG) {
        router.layer(TraceLayer::new_for_http())
    } else {
        router
    };
    router.with_state(state)
}

/// A JSON body written exactly as given (the legacy routes' bytes matter).
fn raw_json(body: String) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn query_error(e: &QueryRejection) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        format!(
            "{} (times are RFC 3339, e.g. 2026-01-17T05:50:45Z; write a + offset as %2B)",
            e.body_text()
        ),
    )
}

/// A page's `limit`: `default` when not given; it must be 1 to `max` (else why not, for a 400).
fn page_limit(limit: Option<u32>, default: u32, max: u32) -> Result<u32, String> {
    let limit = limit.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(format!("limit must be 1 to {max}, got {limit}"))
    }
}

/// A window's `since` must not be later than its `until` (else why not, for a 400).
fn check_window(since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Result<(), String> {
    match (since, until) {
        (Some(since), Some(until)) if since > until => Err("since must not be later than until".into()),
        _ => Ok(()),
    }
}

/// A 400 saying `message`.
fn bad_request(message: String) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

fn store_error(e: StoreError) -> Response {
    tracing::error!(error = %e, "storage failed");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the database cannot answer now: {e}"),
    )
}

/// Answers 408 when the request (reading its body included) takes longer than `limit`, so a slow
/// or stalled client cannot hold a connection, or a shutdown, for ever.
async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(%method, path, limit_seconds = limit.as_secs_f64(), "request timed out");
            let mut resp = error(
                StatusCode::REQUEST_TIMEOUT,
                format!("the request took longer than {} s", limit.as_secs_f64()),
            );
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            resp
        }
    }
}

async fn require_token(State(state): State<AppState>, headers: HeaderMap, request: Request, next: Next) -> Response {
    if let Some(expected) = &state.token
        && !bearer_matches(&headers, expected)
    {
        tracing::warn!(
            path = request.uri().path(),
            "write refused: missing or wrong bearer token"
        );
        let mut resp = error(
            StatusCode::UNAUTHORIZED,
            "this route requires Authorization: Bearer <ANALYZER_TOKEN>",
        );
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"result-analyzer\""),
        );
        return resp;
    }
    next.run(request).await
}

/// Whether `Authorization` carries `Bearer <expected>` (the scheme's case does not matter).
fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .is_some_and(|(_, given)| constant_time_eq(given.trim().as_bytes(), expected.as_bytes()))
}

/// Compares without returning early on the first difference, so timing does not reveal how much
/// of a guessed token is right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;
    use crate::store::Synchronous;

    #[tokio::test]
    async fn writes_and_the_health_check_answer_503_once_the_database_writer_has_stopped() {
        let dir = std::env::temp_dir().join(format!("result-analyzer-503-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (store, writer) = Store::open(&dir.join("a.db"), Synchronous::Full).unwrap();
        tokio::task::spawn_blocking(move || writer.shutdown()).await.unwrap();
        let app = router(
            store,
            HttpSettings {
                token: None,
                timeout: Duration::from_secs(10),
                max_body_bytes: 1024,
                player_base: None,
            },
        );
        for (method, uri, body) in [
            ("POST", "/create/count", ""),
            ("POST", "/kill/count", ""),
            ("POST", "/reset", ""),
            ("POST", "/events", r#"{"kind":"failed"}"#),
            ("POST", "/events", r#"{"kind":"progress","run_id":"r"}"#),
            ("GET", "/healthz", ""),
        ] {
            let request = Request::builder()
                .method(method)
                .uri(uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{method} {uri}");
            let bytes = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert!(
                v["error"].as_str().unwrap().contains("writer has stopped"),
                "{method} {uri}: {v}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_but_the_token_is_not() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            h
        };
        assert!(bearer_matches(&with("Bearer s3cret"), "s3cret"));
        assert!(bearer_matches(&with("bearer s3cret"), "s3cret"));
        assert!(!bearer_matches(&with("Bearer S3CRET"), "s3cret"));
        assert!(!bearer_matches(&with("Basic s3cret"), "s3cret"));
        assert!(!bearer_matches(&with("s3cret"), "s3cret"));
        assert!(!bearer_matches(&HeaderMap::new(), "s3cret"));
    }

    #[test]
    fn json_content_types_are_recognised_with_parameters() {
        use events::is_json;
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
            h
        };
        assert!(is_json(&with("application/json")));
        assert!(is_json(&with("application/json; charset=utf-8")));
        assert!(is_json(&with("Application/JSON")));
        assert!(!is_json(&with("application/jsonx")));
        assert!(!is_json(&with("text/plain")));
        assert!(!is_json(&HeaderMap::new()));
    }
}
