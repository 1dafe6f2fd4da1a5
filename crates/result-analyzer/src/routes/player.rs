//! The player routes: the page for one request's stream, and the vendored players it loads.

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;

use encoding_common::EventKind;

use super::{AppState, error, store_error};
use crate::player;
use crate::store::EventQuery;

#[derive(Debug, Deserialize)]
pub(super) struct PlayerQuery {
    request_id: Option<String>,
    video_id: Option<String>,
}

/// Events of a video read at a time when looking for its latest outputs.
const PAGE: u32 = 1000;

/// The outputs of the newest `processed` event of `video_id` that names any.
async fn latest_outputs(s: &AppState, video_id: &str) -> Result<Option<Vec<String>>, Response> {
    let mut query = EventQuery {
        kind: Some(EventKind::Processed),
        video_id: Some(video_id.to_owned()),
        limit: PAGE,
        ..EventQuery::default()
    };
    let mut latest = None;
    loop {
        let page = s.store.events(query.clone()).await.map_err(store_error)?;
        let full = page.len() == PAGE as usize;
        if let Some(last) = page.last() {
            query.after_id = last.id;
        }
        if let Some(e) = page.into_iter().rev().find(|e| !e.event.outputs.is_empty()) {
            latest = Some(e.event.outputs);
        }
        if !full {
            return Ok(latest);
        }
    }
}

/// `GET /player?request_id=...` or `?video_id=...`: the page playing what the request (or the
/// video's latest processed run) stored; 400 without either, 404 when nothing playable is
/// recorded, 409 when `PLAYER_URL_BASE` is not set (browsers cannot read `s3://`).
pub(super) async fn page(State(s): State<AppState>, Query(q): Query<PlayerQuery>) -> Response {
    let (name, outputs) = match (
        q.request_id.filter(|r| !r.is_empty()),
        q.video_id.filter(|v| !v.is_empty()),
    ) {
        (Some(request_id), _) => match s.store.request(request_id.clone(), Utc::now()).await {
            Ok(Some(state)) => (request_id, state.outputs),
            Ok(None) => {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("no event names request_id {request_id:?}"),
                );
            }
            Err(e) => return store_error(e),
        },
        (None, Some(video_id)) => match latest_outputs(&s, &video_id).await {
            Ok(Some(outputs)) => (video_id, outputs),
            Ok(None) => {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("video {video_id:?} has no stored output to play"),
                );
            }
            Err(response) => return response,
        },
        (None, None) => return error(StatusCode::BAD_REQUEST, "the player needs ?request_id= or ?video_id="),
    };
    let Some((uri, kind)) = player::pick(&outputs) else {
        return error(StatusCode::NOT_FOUND, format!("{name:?} has no stored output to play"));
    };
    let Some(base) = s.player_base.as_deref() else {
        return error(
            StatusCode::CONFLICT,
            format!("{uri} is in S3: set PLAYER_URL_BASE to the HTTP(S) address its bucket is served from"),
        );
    };
    let Some(url) = player::public_url(base, uri) else {
        return error(StatusCode::NOT_FOUND, format!("{uri} is not an s3:// URI"));
    };
    Html(player::page(&name, &url, kind)).into_response()
}

fn script(body: &'static [u8]) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400")),
        ],
        body,
    )
        .into_response()
}

/// `GET /player/hls.min.js`.
pub(super) async fn hls_js() -> Response {
    script(player::HLS_JS)
}

/// `GET /player/dash.all.min.js`.
pub(super) async fn dash_js() -> Response {
    script(player::DASH_JS)
}
