//! HTTP routes: the original example's four, byte for byte, and the richer ones.
//!
//! Every error is answered as JSON, `{"error": "<what is wrong and how to fix it>"}`, with the
//! status that says whose fault it is: 400 malformed, 401 no token, 404 no such route, 405 wrong
//! method, 408 too slow, 413 too large, 415 not JSON, 422 a well-formed event that breaks a rule,
//! 503 the database cannot answer.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use encoding_common::{Event, EventKind};
use serde::Deserialize;
use serde_json::json;
use tower_http::trace::TraceLayer;

use crate::metrics::{self, Metrics};
use crate::store::{EventQuery, Store, StoreError};
use crate::{dashboard, summary};

/// What every handler shares.
#[derive(Clone)]
struct AppState {
    store: Store,
    metrics: Arc<Metrics>,
    /// When set, the bearer token every write route requires.
    token: Option<Arc<str>>,
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
}

/// The router: legacy routes, richer routes, auth on writes, body limit, timeout, tracing.
pub(crate) fn router(store: Store, metrics: Arc<Metrics>, settings: HttpSettings) -> Router {
    let state = AppState {
        store,
        metrics,
        token: settings.token.map(Arc::from),
    };
    let writes = Router::new()
        .route("/create/count", post(create_count))
        .route("/kill/count", post(kill_count))
        .route("/reset", post(reset))
        .route("/events", post(post_event))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let reads = Router::new()
        .route("/get/count", get(get_count))
        .route("/events", get(list_events))
        .route("/summary", get(get_summary))
        .route("/runs", get(get_runs))
        .route("/metrics", get(get_metrics))
        .route("/healthz", get(healthz))
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

async fn record_legacy(store: &Store, kind: EventKind, message: &str) -> Response {
    match store.record(Event::new(kind)).await {
        Ok(_) => raw_json(format!("{{\"message\": \"{message}\"}}")),
        Err(e) => store_error(e),
    }
}

/// `POST /create/count`: one processed event, answered as the original did.
async fn create_count(State(s): State<AppState>) -> Response {
    record_legacy(&s.store, EventKind::Processed, "Count incremented").await
}

/// `POST /kill/count`: one killed event, answered as the original did.
async fn kill_count(State(s): State<AppState>) -> Response {
    record_legacy(&s.store, EventKind::Killed, "Kill incremented").await
}

/// `POST /reset`: forgets every event.
async fn reset(State(s): State<AppState>) -> Response {
    match s.store.reset().await {
        Ok(()) => raw_json("{\"message\": \"Reset Successfully\"}".into()),
        Err(e) => store_error(e),
    }
}

/// `GET /get/count`: every processed and killed event in order, numbered per kind, written the
/// way Python's `json.dumps` writes a list of strings.
async fn get_count(State(s): State<AppState>) -> Response {
    let events = match s.store.legacy_counts().await {
        Ok(e) => e,
        Err(e) => return store_error(e),
    };
    let (mut processed, mut killed) = (0u64, 0u64);
    let lines: Vec<String> = events
        .iter()
        .map(|(at, kind)| {
            let (name, n) = if *kind == EventKind::Killed {
                killed += 1;
                ("kill", killed)
            } else {
                processed += 1;
                ("processed", processed)
            };
            format!("{} - {name} count {n}", at.format("%Y-%m-%d %H:%M:%S"))
        })
        .collect();
    raw_json(python_json_list(&lines))
}

/// A list of strings as Python's `json.dumps` writes it: `["a", "b"]`, ASCII only.
pub(crate) fn python_json_list(items: &[String]) -> String {
    let mut out = String::from("[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('"');
        for c in item.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push(']');
    out
}

/// `POST /events`: one outcome, validated; answered 201 with the stored event once committed.
async fn post_event(State(s): State<AppState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    if !is_json(&headers) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the event as Content-Type: application/json",
        );
    }
    let body = match body {
        Ok(b) => b,
        Err(e) => return error(e.status(), format!("cannot read the request body: {}", e.body_text())),
    };
    // serde would also take an event written as an array of its fields: only objects are events.
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !is_object && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid event: an event is a JSON object, like {\"kind\": \"processed\"}",
        );
    }
    let event: Event = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) if e.is_data() => {
            return error(StatusCode::UNPROCESSABLE_ENTITY, format!("invalid event: {e}"));
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")),
    };
    let event = match event.validate() {
        Ok(e) => e,
        Err(msg) => return error(StatusCode::UNPROCESSABLE_ENTITY, format!("invalid event: {msg}")),
    };
    match s.store.record(event).await {
        Ok(stored) => {
            tracing::debug!(id = stored.id, kind = %stored.event.kind, run_id = stored.event.run_id.as_deref(), "event recorded");
            (StatusCode::CREATED, Json(stored)).into_response()
        }
        Err(e) => store_error(e),
    }
}

/// Whether the request says its body is JSON (`application/json`, parameters allowed).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Filters of `GET /events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsParams {
    kind: Option<String>,
    video_id: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    after_id: Option<i64>,
    limit: Option<u32>,
}

/// Default page of `GET /events` and `GET /runs`.
const DEFAULT_PAGE: u32 = 100;
/// Largest page of `GET /events`.
const MAX_PAGE: u32 = 1000;

fn query_error(e: &QueryRejection) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        format!(
            "{} (times are RFC 3339, e.g. 2026-01-17T05:50:45Z; write a + offset as %2B)",
            e.body_text()
        ),
    )
}

/// `GET /events?kind=&video_id=&since=&until=&after_id=&limit=`: stored events in the order
/// recorded, a page at a time; `next_after_id` is the `after_id` of the next page, or null at the
/// end.
async fn list_events(State(s): State<AppState>, params: Result<Query<EventsParams>, QueryRejection>) -> Response {
    let Query(p) = match params {
        Ok(p) => p,
        Err(e) => return query_error(&e),
    };
    let kind = match p.kind.as_deref().map(str::parse::<EventKind>).transpose() {
        Ok(k) => k,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let limit = p.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("limit must be 1 to {MAX_PAGE}, got {limit}"),
        );
    }
    let after_id = p.after_id.unwrap_or(0);
    if after_id < 0 {
        return error(
            StatusCode::BAD_REQUEST,
            format!("after_id must be 0 or more, got {after_id}"),
        );
    }
    if let (Some(since), Some(until)) = (p.since, p.until)
        && since > until
    {
        return error(StatusCode::BAD_REQUEST, "since must not be later than until");
    }
    let query = EventQuery {
        kind,
        video_id: p.video_id,
        since: p.since,
        until: p.until,
        after_id,
        limit,
    };
    match s.store.events(query).await {
        Ok(events) => {
            let next = if events.len() == limit as usize {
                events.last().map(|e| e.id)
            } else {
                None
            };
            Json(json!({ "events": events, "next_after_id": next })).into_response()
        }
        Err(e) => store_error(e),
    }
}

/// `GET /summary`: counts, percentiles, first and last event, peak concurrency.
async fn get_summary(State(s): State<AppState>) -> Response {
    match s.store.all().await {
        Ok(events) => Json(summary::summarize(&events)).into_response(),
        Err(e) => store_error(e),
    }
}

/// Parameters of `GET /runs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsParams {
    limit: Option<u32>,
}

/// Largest `limit` of `GET /runs`.
const MAX_RUNS: u32 = 10_000;

/// `GET /runs?limit=`: the latest encoder runs (by start), oldest first, and how many there are.
async fn get_runs(State(s): State<AppState>, params: Result<Query<RunsParams>, QueryRejection>) -> Response {
    let Query(p) = match params {
        Ok(p) => p,
        Err(e) => return query_error(&e),
    };
    let limit = p.limit.unwrap_or(DEFAULT_PAGE * 5);
    if !(1..=MAX_RUNS).contains(&limit) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("limit must be 1 to {MAX_RUNS}, got {limit}"),
        );
    }
    match s.store.all().await {
        Ok(events) => {
            let mut runs = summary::runs(&events);
            let total = runs.len();
            runs.drain(..total.saturating_sub(limit as usize));
            Json(json!({ "runs": runs, "total": total })).into_response()
        }
        Err(e) => store_error(e),
    }
}

/// `GET /metrics`: the Prometheus metrics (OpenMetrics text).
async fn get_metrics(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(metrics::CONTENT_TYPE))],
        s.metrics.encode(),
    )
        .into_response()
}

/// `GET /healthz`: 200 when the database answers and the writer runs, 503 otherwise.
async fn healthz(State(s): State<AppState>) -> Response {
    match s.store.ping().await {
        Ok(()) => Json(json!({ "status": "ok" })).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;
    use crate::store::{NoObserver, Synchronous};

    #[tokio::test]
    async fn writes_and_the_health_check_answer_503_once_the_database_writer_has_stopped() {
        let dir = std::env::temp_dir().join(format!("result-analyzer-503-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (store, writer) = Store::open(&dir.join("a.db"), Synchronous::Full, Arc::new(NoObserver)).unwrap();
        tokio::task::spawn_blocking(move || writer.shutdown()).await.unwrap();
        let app = router(
            store,
            Arc::new(Metrics::new()),
            HttpSettings {
                token: None,
                timeout: Duration::from_secs(10),
                max_body_bytes: 1024,
            },
        );
        for (method, uri, body) in [
            ("POST", "/create/count", ""),
            ("POST", "/kill/count", ""),
            ("POST", "/reset", ""),
            ("POST", "/events", r#"{"kind":"failed"}"#),
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
    fn lists_are_written_like_python_json_dumps() {
        assert_eq!(python_json_list(&[]), "[]");
        assert_eq!(python_json_list(&["a".into()]), r#"["a"]"#);
        assert_eq!(python_json_list(&["a".into(), "b \"q\"".into()]), r#"["a", "b \"q\""]"#);
        assert_eq!(python_json_list(&["é".into()]), r#"["\u00e9"]"#);
        assert_eq!(
            python_json_list(&["\u{8}\u{c}\u{7f}😀".into()]),
            r#"["\b\f\u007f\ud83d\ude00"]"#
        );
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
