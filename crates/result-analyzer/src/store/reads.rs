//! The read side: every answer from the aggregates (one row of totals, an index range of runs, the
//! concurrency tree), so its cost does not grow with the history; and the events themselves, a
//! page at a time.
//!
//! Whether a run is lost is decided here, at read time: a run without an outcome whose expiry
//! (last report plus lease) is before now. The writer needs no timer for it, and a later report
//! makes the run live again, or gives it its real outcome.

use chrono::{DateTime, Utc};
use encoding_common::EventKind;
use rusqlite::{Connection, OptionalExtension, params};

use super::aggregate::{DEFAULT_LEASE_SECONDS, load_totals, progress_of};
use super::peak::peak;
use super::totals::{ENCODE_SECONDS_BUCKETS, Sample};
use super::{EventQuery, StoreError, StoredEvent, decode_rows, parse_time, raw_row, rfc3339, time_of};
use crate::summary::{
    Counters, LOST, LatestEvent, Percentiles, RequestState, Run, RunsPage, SplitState, SplitSummary, Summary, is_final,
};

/// The state of a run without an outcome whose lease has not run out.
const RUNNING: &str = "running";

/// What `GET /runs` asks for.
#[derive(Debug, Clone)]
pub struct RunsQuery {
    /// At most this many.
    pub limit: u32,
    /// Newest first (by start), or oldest first.
    pub newest_first: bool,
    /// Runs that started at or after this.
    pub since: Option<DateTime<Utc>>,
    /// Runs that started before this.
    pub until: Option<DateTime<Utc>>,
    /// Where to continue: a page's `next_cursor`.
    pub cursor: Option<Cursor>,
    /// Only the runs running now (no outcome, lease not run out).
    pub running_only: bool,
}

/// A place in the runs' order: a start and a run id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    start: i64,
    run_id: String,
}

impl Cursor {
    /// Reads a `next_cursor`.
    ///
    /// # Errors
    ///
    /// When it is not one.
    pub fn parse(text: &str) -> Result<Self, String> {
        text.split_once('_')
            .and_then(|(start, run)| Some((start.parse().ok()?, run)))
            .filter(|(_, run)| !run.is_empty())
            .map(|(start, run)| Self {
                start,
                run_id: run.to_owned(),
            })
            .ok_or_else(|| format!("{text:?} is not a cursor: pass a next_cursor of an earlier answer"))
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.start, self.run_id)
    }
}

fn percentiles(s: &Sample) -> Percentiles {
    let ([p50, p90, p99], max) = s.percentiles();
    Percentiles {
        count: s.count,
        p50,
        p90,
        p99,
        max,
    }
}

/// `GET /summary` at `now` (microseconds).
pub(crate) fn summary(conn: &Connection, now: i64) -> Result<Summary, StoreError> {
    let totals = load_totals(conn)?;
    let (peak, running) = peak(conn, now)?;
    let mut counts: std::collections::BTreeMap<&'static str, u64> = EventKind::ALL
        .iter()
        .map(|k| (k.as_str(), totals.counts.get(k.as_str()).copied().unwrap_or(0)))
        .collect();
    counts.insert(LOST, totals.open_runs.saturating_sub(running));
    Ok(Summary {
        counts,
        processed_per_quality: totals.processed_per_quality.clone(),
        encode_seconds: percentiles(&totals.encode_seconds),
        fps: percentiles(&totals.fps),
        first_event: totals.first_event.as_deref().map(parse_time),
        last_event: totals.last_event.as_deref().map(parse_time),
        runs: totals.runs,
        peak_concurrent_runs: peak,
        runs_in_progress: running,
        split: SplitSummary {
            requests: totals.split_requests,
            chunk_runs: totals.chunk_runs,
            chunks_stored: totals.chunks_stored,
        },
    })
}

/// How many runs are running (started, no outcome, not lost) at `now`.
fn running(conn: &Connection, now: i64) -> Result<u64, StoreError> {
    let n = conn
        .prepare_cached("SELECT count(*) FROM runs WHERE end_us IS NULL AND expiry_us >= ?1")?
        .query_row(params![now], |r| r.get(0))?;
    Ok(n)
}

/// `GET /metrics` at `now`.
pub(crate) fn counters(conn: &Connection, now: i64) -> Result<Counters, StoreError> {
    let totals = load_totals(conn)?;
    let running = running(conn, now)?;
    let mut events: std::collections::BTreeMap<String, u64> =
        EventKind::ALL.iter().map(|k| (k.as_str().to_owned(), 0)).collect();
    events.extend(totals.counts.iter().map(|(k, n)| (k.clone(), *n)));
    let mut hist = totals.histogram.clone();
    hist.resize(ENCODE_SECONDS_BUCKETS.len() + 1, 0);
    Ok(Counters {
        events,
        renditions: totals
            .renditions
            .iter()
            .flat_map(|(kind, qs)| qs.iter().map(|(q, n)| ((kind.clone(), q.clone()), *n)))
            .collect(),
        encode_buckets: ENCODE_SECONDS_BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(hist)
            .collect(),
        encode_sum: totals.encode_sum(),
        encode_count: totals.encode_count,
        running,
        lost: totals.open_runs.saturating_sub(running),
    })
}

const RUN_COLUMNS: &str =
    "run_id, start_us, end_us, outcome, video_id, qualities, host, last_report_us, lease_seconds, expiry_us,
     stage, percent, progress_fps, progress_us, chunk, chunks";

/// A `runs` row as the answers show it at `now`: lost when it has no outcome and its expiry has
/// passed.
fn run_of(row: &rusqlite::Row<'_>, now: i64) -> rusqlite::Result<Run> {
    let (end, outcome): (Option<i64>, Option<String>) = (row.get(2)?, row.get(3)?);
    let expiry: i64 = row.get(9)?;
    let (end, outcome) = match end {
        None if expiry < now => (Some(expiry), Some(LOST.to_owned())),
        _ => (end, outcome),
    };
    let qualities: Option<String> = row.get(5)?;
    Ok(Run {
        run_id: row.get(0)?,
        start: time_of(row.get(1)?),
        end: end.map(time_of),
        outcome,
        video_id: row.get(4)?,
        qualities: qualities
            .and_then(|q| serde_json::from_str(&q).ok())
            .unwrap_or_default(),
        host: row.get(6)?,
        last_report_at: time_of(row.get(7)?),
        lease_seconds: row.get::<_, Option<u64>>(8)?.unwrap_or(DEFAULT_LEASE_SECONDS),
        progress: progress_of(row, 10)?,
        chunk: row.get(14)?,
        chunks: row.get(15)?,
    })
}

/// `GET /runs` at `now`.
pub(crate) fn runs(conn: &Connection, q: &RunsQuery, now: i64) -> Result<RunsPage, StoreError> {
    let since = q.since.map_or(i64::MIN, |t| t.timestamp_micros());
    let until = q.until.map_or(i64::MAX, |t| t.timestamp_micros());
    let (order, after) = if q.newest_first { ("DESC", "<") } else { ("", ">") };
    // The runs running now are found through the index of the runs without an outcome (a few at
    // a time: at most the encoders at work), and sorted.
    let (from, running) = if q.running_only {
        ("runs INDEXED BY runs_open", "end_us IS NULL AND expiry_us >= ?6 AND")
    } else {
        ("runs", "?6 = ?6 AND")
    };
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM {from} WHERE {running} start_us >= ?1 AND start_us < ?2
             AND (start_us, run_id) {after} (?3, ?4)
         ORDER BY start_us {order}, run_id {order} LIMIT ?5"
    );
    // Without a cursor, one before the first run: run ids are never empty, and no run starts at
    // the largest time there is.
    let (c_start, c_run) = match &q.cursor {
        Some(c) => (c.start, c.run_id.as_str()),
        None if q.newest_first => (i64::MAX, ""),
        None => (i64::MIN, ""),
    };
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![since, until, c_start, c_run, q.limit, now], |r| {
        Ok((r.get::<_, i64>(1)?, run_of(r, now)?))
    })?;
    let mut out = Vec::new();
    let mut last = None;
    for row in rows {
        let (start, run) = row?;
        last = Some(Cursor {
            start,
            run_id: run.run_id.clone(),
        });
        out.push(run);
    }
    let total = if q.running_only {
        conn.prepare_cached(
            "SELECT count(*) FROM runs INDEXED BY runs_open
             WHERE end_us IS NULL AND expiry_us >= ?3 AND start_us >= ?1 AND start_us < ?2",
        )?
        .query_row(params![since, until, now], |r| r.get(0))?
    } else if q.since.is_none() && q.until.is_none() {
        load_totals(conn)?.runs
    } else {
        conn.prepare_cached("SELECT count(*) FROM runs WHERE start_us >= ?1 AND start_us < ?2")?
            .query_row(params![since, until], |r| r.get(0))?
    };
    let next_cursor = (out.len() == q.limit as usize)
        .then(|| last.map(|c| c.to_string()))
        .flatten();
    Ok(RunsPage {
        runs: out,
        total,
        next_cursor,
    })
}

/// `GET /requests/{request_id}` at `now`; `None` when no event names it.
pub(crate) fn request(conn: &Connection, request_id: &str, now: i64) -> Result<Option<RequestState>, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT r.processed, r.outcome, r.reason, r.outputs, r.last_kind, r.last_run, r.last_at,
                    u.end_us, u.outcome, u.expiry_us, u.lease_seconds, r.chunks,
                    (SELECT count(*) FROM request_chunks c WHERE c.request_id = r.request_id AND c.chunks = r.chunks)
             FROM requests r LEFT JOIN runs u ON u.run_id = r.last_run WHERE r.request_id = ?1",
        )?
        .query_row(params![request_id], |r| {
            let run_state = match (r.get::<_, Option<i64>>(9)?, r.get::<_, Option<i64>>(7)?) {
                (None, _) => None,
                (Some(_), Some(_)) => r.get::<_, Option<String>>(8)?,
                (Some(expiry), None) if expiry < now => Some(LOST.to_owned()),
                (Some(_), None) => Some(RUNNING.to_owned()),
            };
            let processed: bool = r.get(0)?;
            let (stored, reason, outputs): (Option<String>, Option<String>, Option<String>) =
                (r.get(1)?, r.get(2)?, r.get(3)?);
            let outputs = outputs.and_then(|o| serde_json::from_str(&o).ok()).unwrap_or_default();
            let last_run: Option<String> = r.get(5)?;
            // A split request: its chunks stored so far (an index range of at most its plan's
            // chunks, whatever the history).
            let split = match r.get::<_, Option<u32>>(11)? {
                Some(chunks) => Some(SplitState {
                    chunks,
                    chunks_stored: r.get(12)?,
                }),
                None => None,
            };
            let (outcome, reason, outputs) = match run_state.as_deref() {
                _ if processed => (Some("processed".to_owned()), reason, outputs),
                Some(RUNNING) => (None, None, Vec::new()),
                Some(LOST) => {
                    let lease = r.get::<_, Option<u64>>(10)?.unwrap_or(DEFAULT_LEASE_SECONDS);
                    let why = format!(
                        "run {} sent no report for longer than its lease ({lease} s): it is lost, and SQS \
                         delivers the message again",
                        last_run.as_deref().unwrap_or_default()
                    );
                    (run_state.clone(), Some(why), Vec::new())
                }
                // Its outcome as its events left it: none while its chunks are at work, even though
                // the latest run has ended (`split`, `chunk`).
                _ if split.is_some() => (stored, reason, outputs),
                _ => (stored.or_else(|| run_state.clone()), reason, outputs),
            };
            Ok(RequestState {
                request_id: request_id.to_owned(),
                is_final: is_final(outcome.as_deref()),
                outcome,
                reason,
                outputs,
                processed,
                latest: LatestEvent {
                    kind: r.get(4)?,
                    run_id: last_run,
                    recorded_at: parse_time(&r.get::<_, String>(6)?),
                },
                run_state,
                split,
            })
        })
        .optional()?;
    Ok(row)
}

/// One line of `GET /get/count`: its event's id, recording time, kind and number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyLine {
    /// The event's id.
    pub id: i64,
    /// Its `recorded_at`.
    pub recorded_at: String,
    /// `processed` or `killed`.
    pub killed: bool,
    /// Its number within its kind.
    pub n: u64,
}

/// At most `limit` lines of `/get/count` after event `after_id`, in the order recorded.
pub(crate) fn legacy_page(conn: &Connection, after_id: i64, limit: u32) -> Result<Vec<LegacyLine>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, recorded_at, kind, legacy_n FROM events
         WHERE id > ?1 AND kind IN ('processed', 'killed') ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after_id, limit], |r| {
        Ok(LegacyLine {
            id: r.get(0)?,
            recorded_at: r.get(1)?,
            killed: r.get::<_, String>(2)? == "killed",
            n: r.get::<_, Option<u64>>(3)?.unwrap_or(0),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Events matching `query`, in the order recorded.
pub(crate) fn events(conn: &Connection, query: EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
    let mut sql = String::from("SELECT id, recorded_at, body FROM events WHERE id > ?1");
    let mut args: Vec<Box<dyn rusqlite::ToSql + Send>> = vec![Box::new(query.after_id)];
    if let Some(k) = query.kind {
        args.push(Box::new(k.as_str()));
        sql.push_str(&format!(" AND kind = ?{}", args.len()));
    }
    if let Some(v) = query.video_id {
        args.push(Box::new(v));
        sql.push_str(&format!(" AND video_id = ?{}", args.len()));
    }
    if let Some(t) = query.since {
        args.push(Box::new(rfc3339(t)));
        sql.push_str(&format!(" AND recorded_at >= ?{}", args.len()));
    }
    if let Some(t) = query.until {
        args.push(Box::new(rfc3339(t)));
        sql.push_str(&format!(" AND recorded_at < ?{}", args.len()));
    }
    args.push(Box::new(i64::from(query.limit)));
    sql.push_str(&format!(" ORDER BY id LIMIT ?{}", args.len()));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        rusqlite::params_from_iter(args.iter().map(|a| a.as_ref() as &dyn rusqlite::ToSql)),
        raw_row,
    )?;
    decode_rows(rows)
}
