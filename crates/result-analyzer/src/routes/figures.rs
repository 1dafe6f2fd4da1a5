//! The figures: `GET /summary`, `GET /runs`, `GET /metrics`, `GET /requests/{request_id}` and
//! `GET /healthz`. Each answers from the aggregates the store keeps as events are written, so it
//! costs the same at ten events or ten million.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::{AppState, bad_request, check_window, error, page_limit, query_error, store_error};
use crate::metrics;
use crate::store::{Cursor, RunsQuery};

/// `GET /summary`: counts (lost runs included), percentiles, first and last event, peak
/// concurrency.
pub(super) async fn get_summary(State(s): State<AppState>) -> Response {
    match s.store.summary(Utc::now()).await {
        Ok(summary) => Json(summary).into_response(),
        Err(e) => store_error(e),
    }
}

/// Parameters of `GET /runs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunsParams {
    limit: Option<u32>,
    order: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    cursor: Option<String>,
    state: Option<String>,
}

/// Default `limit` of `GET /runs`.
const DEFAULT_RUNS: u32 = 500;
/// Largest `limit` of `GET /runs`.
const MAX_RUNS: u32 = 10_000;

/// `GET /runs?limit=&order=newest|oldest&since=&until=&cursor=&state=running`: encoder runs by
/// start, newest first unless `order=oldest`, started in `[since, until)` when given, only those
/// running now with `state=running`; `total` counts the runs so chosen, `next_cursor` continues the
/// listing (null at the end).
pub(super) async fn get_runs(
    State(s): State<AppState>,
    params: Result<Query<RunsParams>, QueryRejection>,
) -> Result<Response, Response> {
    let Query(p) = params.map_err(|e| query_error(&e))?;
    let limit = page_limit(p.limit, DEFAULT_RUNS, MAX_RUNS).map_err(bad_request)?;
    let newest_first = match p.order.as_deref() {
        None | Some("newest") => true,
        Some("oldest") => false,
        Some(other) => {
            return Err(bad_request(format!("order must be newest or oldest, got {other:?}")));
        }
    };
    check_window(p.since, p.until).map_err(bad_request)?;
    let running_only = match p.state.as_deref() {
        None => false,
        Some("running") => true,
        Some(other) => {
            return Err(bad_request(format!(
                "state must be running (or left out for every run), got {other:?}"
            )));
        }
    };
    let cursor = p
        .cursor
        .as_deref()
        .map(Cursor::parse)
        .transpose()
        .map_err(bad_request)?;
    let query = RunsQuery {
        limit,
        newest_first,
        since: p.since,
        until: p.until,
        cursor,
        running_only,
    };
    let page = s.store.runs(query, Utc::now()).await.map_err(store_error)?;
    Ok(Json(page).into_response())
}

/// `GET /requests/{request_id}`: where the request stands (`outcome`, `final`, `reason`,
/// `outputs`, what `producer --wait` reads), whether it was processed, its latest event and the
/// state of that event's run; 404 when no event names it (not known yet).
pub(super) async fn get_request(
    State(s): State<AppState>,
    request_id: Result<Path<String>, PathRejection>,
) -> Response {
    let Path(request_id) = match request_id {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("the request id: {}", e.body_text())),
    };
    match s.store.request(request_id.clone(), Utc::now()).await {
        Ok(Some(state)) => Json(state).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no event names request_id {request_id:?} (yet)"),
        ),
        Err(e) => store_error(e),
    }
}

/// `GET /metrics`: the Prometheus metrics (OpenMetrics text).
pub(super) async fn get_metrics(State(s): State<AppState>) -> Response {
    match s.store.counters(Utc::now()).await {
        Ok(c) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static(metrics::CONTENT_TYPE))],
            metrics::encode(&c),
        )
            .into_response(),
        Err(e) => store_error(e),
    }
}

/// `GET /healthz`: 200 when the database answers and the writer runs, 503 otherwise.
pub(super) async fn healthz(State(s): State<AppState>) -> Response {
    match s.store.ping().await {
        Ok(()) => Json(json!({ "status": "ok" })).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
