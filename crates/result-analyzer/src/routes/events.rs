//! `POST /events` (one outcome, or a progress report) and `GET /events` (the stored events, a
//! page at a time).
//!
//! A `progress` report is answered 202 as soon as it is taken: it is not stored as an event but
//! merged into its run (its latest progress, last report and lease) with the next group commit,
//! so a flood of them costs no disk flush of its own and never waits behind the outcomes. It is
//! therefore neither listed by `GET /events`, nor numbered by `/get/count`; `GET /runs` shows each
//! run's latest one.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use encoding_common::{Event, EventKind};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AppState, bad_request, check_window, error, page_limit, query_error, store_error};
use crate::store::EventQuery;

/// A progress report as taken: the report and when it was received.
#[derive(Serialize)]
struct Received {
    recorded_at: String,
    #[serde(flatten)]
    event: Event,
}

/// A progress report: 202 once taken, 422 without a `run_id`.
fn progress(s: &AppState, event: Event) -> Response {
    if event.run_id.is_none() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid event: a progress report needs a run_id, the run it is about",
        );
    }
    match s.store.report_progress(event, None) {
        Ok(taken) => (
            StatusCode::ACCEPTED,
            Json(Received {
                recorded_at: taken.recorded_at,
                event: taken.event,
            }),
        )
            .into_response(),
        Err(e) => store_error(e),
    }
}

/// `POST /events`: one outcome, validated; answered 201 with the stored event once committed.
pub(super) async fn post_event(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
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
    if event.kind == EventKind::Progress {
        return progress(&s, event);
    }
    match s.store.record(event).await {
        Ok(stored) => {
            tracing::debug!(id = stored.id, kind = %stored.event.kind, run_id = stored.event.run_id.as_deref(), "event recorded");
            (StatusCode::CREATED, Json(stored)).into_response()
        }
        Err(e) => store_error(e),
    }
}

/// Whether the request says its body is JSON (`application/json`, parameters allowed).
pub(super) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Filters of `GET /events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsParams {
    kind: Option<String>,
    video_id: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    after_id: Option<i64>,
    limit: Option<u32>,
}

/// Default page of `GET /events`.
const DEFAULT_PAGE: u32 = 100;
/// Largest page of `GET /events`.
const MAX_PAGE: u32 = 1000;

/// `GET /events?kind=&video_id=&since=&until=&after_id=&limit=`: stored events in the order
/// recorded, a page at a time; `next_after_id` is the `after_id` of the next page, or null at the
/// end.
pub(super) async fn list_events(
    State(s): State<AppState>,
    params: Result<Query<EventsParams>, QueryRejection>,
) -> Result<Response, Response> {
    let Query(p) = params.map_err(|e| query_error(&e))?;
    let kind = p
        .kind
        .as_deref()
        .map(str::parse::<EventKind>)
        .transpose()
        .map_err(|e| bad_request(e.to_string()))?;
    let limit = page_limit(p.limit, DEFAULT_PAGE, MAX_PAGE).map_err(bad_request)?;
    let after_id = p.after_id.unwrap_or(0);
    if after_id < 0 {
        return Err(bad_request(format!("after_id must be 0 or more, got {after_id}")));
    }
    check_window(p.since, p.until).map_err(bad_request)?;
    let query = EventQuery {
        kind,
        video_id: p.video_id,
        since: p.since,
        until: p.until,
        after_id,
        limit,
    };
    let events = s.store.events(query).await.map_err(store_error)?;
    let next = if events.len() == limit as usize {
        events.last().map(|e| e.id)
    } else {
        None
    };
    Ok(Json(json!({ "events": events, "next_after_id": next })).into_response())
}
