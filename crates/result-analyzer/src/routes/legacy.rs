//! The original example's four routes, byte for byte: `POST /create/count`, `POST /kill/count`,
//! `POST /reset` and `GET /get/count`.
//!
//! `/get/count` lists every processed and killed event, as the original does, however many there
//! are; it streams the list a page of rows at a time, so its memory does not grow with it. Each
//! line carries the number its event was given when it was stored, so the lines left after old
//! events are pruned (`RETENTION_DAYS`) keep their numbers.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use encoding_common::{Event, EventKind};
use tokio::sync::mpsc;

use super::{AppState, raw_json, store_error};
use crate::store::{LegacyLine, Store, StoreError};

/// Rows read at a time for `/get/count`.
const PAGE: u32 = 2_000;
/// Bytes of `/get/count` sent at a time (more when a page gives more).
const CHUNK: usize = 64 * 1024;

async fn record_legacy(store: &Store, kind: EventKind, message: &str) -> Response {
    match store.record(Event::new(kind)).await {
        Ok(_) => raw_json(format!("{{\"message\": \"{message}\"}}")),
        Err(e) => store_error(e),
    }
}

/// `POST /create/count`: one processed event, answered as the original did.
pub(super) async fn create_count(State(s): State<AppState>) -> Response {
    record_legacy(&s.store, EventKind::Processed, "Count incremented").await
}

/// `POST /kill/count`: one killed event, answered as the original did.
pub(super) async fn kill_count(State(s): State<AppState>) -> Response {
    record_legacy(&s.store, EventKind::Killed, "Kill incremented").await
}

/// `POST /reset`: forgets every event.
pub(super) async fn reset(State(s): State<AppState>) -> Response {
    match s.store.reset().await {
        Ok(()) => raw_json("{\"message\": \"Reset Successfully\"}".into()),
        Err(e) => store_error(e),
    }
}

/// The chunks of a streamed answer, as they are made.
struct Chunks(mpsc::Receiver<Result<Bytes, StoreError>>);

impl futures_core::Stream for Chunks {
    type Item = Result<Bytes, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// `GET /get/count`: every processed and killed event in order, numbered per kind, written the
/// way Python's `json.dumps` writes a list of strings; streamed.
pub(super) async fn get_count(State(s): State<AppState>) -> Response {
    // The first page before the answer starts, so that a database that cannot answer is a 503.
    let store = s.store.clone();
    let first = match tokio::task::spawn_blocking(move || store.legacy_page_blocking(0, PAGE)).await {
        Ok(Ok(page)) => page,
        Ok(Err(e)) => return store_error(e),
        Err(e) => return store_error(StoreError::Task(e.to_string())),
    };
    let (tx, rx) = mpsc::channel(4);
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = String::with_capacity(CHUNK + 4096);
        out.push('[');
        let mut page = first;
        let mut written = 0usize;
        loop {
            for line in &page {
                if written > 0 {
                    out.push_str(", ");
                }
                written += 1;
                push_python_string(&mut out, &legacy_text(line));
            }
            let (Some(last), true) = (page.last(), page.len() == PAGE as usize) else {
                break;
            };
            if out.len() >= CHUNK && tx.blocking_send(Ok(Bytes::from(std::mem::take(&mut out)))).is_err() {
                return; // the client has gone
            }
            page = match store.legacy_page_blocking(last.id, PAGE) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "GET /get/count failed while streaming");
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
        }
        out.push(']');
        let _ = tx.blocking_send(Ok(Bytes::from(out)));
    });
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        Body::from_stream(Chunks(rx)),
    )
        .into_response()
}

/// A line of `/get/count`: `"YYYY-MM-DD HH:MM:SS - processed count N"` (or `kill count N`), UTC.
fn legacy_text(line: &LegacyLine) -> String {
    let name = if line.killed { "kill" } else { "processed" };
    let t = &line.recorded_at;
    // The store writes `recorded_at` as 2026-01-17T05:50:45.123456Z: the date and the time of
    // day are its first 19 characters; anything else is parsed.
    let b = t.as_bytes();
    if b.len() == 27 && b[10] == b'T' && b[26] == b'Z' && t.is_ascii() {
        format!("{} {} - {name} count {}", &t[..10], &t[11..19], line.n)
    } else {
        let at = chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_default();
        format!("{} - {name} count {}", at.format("%Y-%m-%d %H:%M:%S"), line.n)
    }
}

/// A list of strings as Python's `json.dumps` writes it: `["a", "b"]`, ASCII only.
#[cfg(test)]
pub(crate) fn python_json_list(items: &[String]) -> String {
    let mut out = String::from("[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push_python_string(&mut out, item);
    }
    out.push(']');
    out
}

/// A string as Python's `json.dumps` writes it, ASCII only.
fn push_python_string(out: &mut String, item: &str) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_line_shows_its_recording_time_in_whole_seconds_and_its_number() {
        let line = |t: &str, killed| LegacyLine {
            id: 1,
            recorded_at: t.into(),
            killed,
            n: 7,
        };
        assert_eq!(
            legacy_text(&line("2026-01-17T05:50:45.999999Z", false)),
            "2026-01-17 05:50:45 - processed count 7"
        );
        assert_eq!(
            legacy_text(&line("2026-01-17T06:50:45+01:00", true)),
            "2026-01-17 05:50:45 - kill count 7"
        );
    }
}
