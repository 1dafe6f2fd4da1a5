//! HTTP routes.

use std::time::Duration;

use axum::body::Bytes;
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
use tower_http::timeout::TimeoutLayer;

use crate::store::{EventQuery, Store, StoreError};
use crate::{MAX_BODY_BYTES, dashboard, summary};

#[derive(Clone)]
struct AppState {
    store: Store,
    token: Option<String>,
}

/// The router: legacy routes, richer routes, auth on writes, body limit, timeout.
pub fn router(store: Store, token: Option<String>, timeout: Duration) -> Router {
    let state = AppState { store, token };
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
    writes
        .merge(reads)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
        .with_state(state)
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
        format!("the event could not be stored: {e}"),
    )
}

async fn require_token(State(state): State<AppState>, headers: HeaderMap, request: Request, next: Next) -> Response {
    if let Some(expected) = &state.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes())) {
            let mut resp = error(
                StatusCode::UNAUTHORIZED,
                "this route requires Authorization: Bearer <ANALYZER_TOKEN>",
            );
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
    }
    next.run(request).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn record_legacy(store: &Store, kind: EventKind, message: &str) -> Response {
    match store.record(Event::new(kind)).await {
        Ok(_) => raw_json(format!("{{\"message\": \"{message}\"}}")),
        Err(e) => store_error(e),
    }
}

async fn create_count(State(s): State<AppState>) -> Response {
    record_legacy(&s.store, EventKind::Processed, "Count incremented").await
}

async fn kill_count(State(s): State<AppState>) -> Response {
    record_legacy(&s.store, EventKind::Killed, "Kill incremented").await
}

async fn reset(State(s): State<AppState>) -> Response {
    match s.store.reset().await {
        Ok(()) => raw_json("{\"message\": \"Reset Successfully\"}".into()),
        Err(e) => store_error(e),
    }
}

/// `GET /get/count`: every processed and killed event in order, numbered per kind, written the
/// way Python's `json.dumps` writes a list of strings.
async fn get_count(State(s): State<AppState>) -> Response {
    let events = match s.store.all_of(&[EventKind::Processed, EventKind::Killed]).await {
        Ok(e) => e,
        Err(e) => return store_error(e),
    };
    let (mut processed, mut killed) = (0u64, 0u64);
    let lines: Vec<String> = events
        .iter()
        .map(|e| {
            let (name, n) = if e.event.kind == EventKind::Processed {
                processed += 1;
                ("processed", processed)
            } else {
                killed += 1;
                ("kill", killed)
            };
            format!("{} - {name} count {n}", e.time().format("%Y-%m-%d %H:%M:%S"))
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

/// `POST /events`: one outcome, validated; answered once committed.
async fn post_event(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the event as Content-Type: application/json",
        );
    }
    let event: Event = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            return error(StatusCode::UNPROCESSABLE_ENTITY, format!("invalid event: {e}"));
        }
    };
    match s.store.record(event).await {
        Ok(stored) => (StatusCode::CREATED, Json(stored)).into_response(),
        Err(e) => store_error(e),
    }
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

/// Default and largest page of `GET /events`.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

async fn list_events(
    State(s): State<AppState>,
    params: Result<Query<EventsParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(p) = match params {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let kind = match p.kind.as_deref().map(str::parse::<EventKind>).transpose() {
        Ok(k) => k,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let limit = p.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let query = EventQuery {
        kind,
        video_id: p.video_id,
        since: p.since,
        until: p.until,
        after_id: p.after_id.unwrap_or(0),
        limit,
    };
    match s.store.events(query).await {
        Ok(events) => {
            let next = (events.len() == limit as usize)
                .then(|| events.last().map(|e| e.id))
                .flatten();
            Json(json!({ "events": events, "next_after_id": next })).into_response()
        }
        Err(e) => store_error(e),
    }
}

async fn all_events(store: &Store) -> Result<Vec<crate::store::StoredEvent>, Response> {
    store.all_of(&EventKind::ALL).await.map_err(store_error)
}

async fn get_summary(State(s): State<AppState>) -> Response {
    match all_events(&s.store).await {
        Ok(events) => Json(summary::summarize(&events)).into_response(),
        Err(r) => r,
    }
}

async fn get_runs(State(s): State<AppState>) -> Response {
    match all_events(&s.store).await {
        Ok(events) => Json(json!({ "runs": summary::runs(&events) })).into_response(),
        Err(r) => r,
    }
}

async fn get_metrics(State(s): State<AppState>) -> Response {
    match all_events(&s.store).await {
        Ok(events) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            summary::prometheus(&events),
        )
            .into_response(),
        Err(r) => r,
    }
}

async fn healthz(State(s): State<AppState>) -> Response {
    match s.store.ping().await {
        Ok(()) => Json(json!({ "status": "ok" })).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_written_like_python_json_dumps() {
        assert_eq!(python_json_list(&[]), "[]");
        assert_eq!(python_json_list(&["a".into()]), r#"["a"]"#);
        assert_eq!(python_json_list(&["a".into(), "b \"q\"".into()]), r#"["a", "b \"q\""]"#);
        assert_eq!(python_json_list(&["é".into()]), r#"["\u00e9"]"#);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
