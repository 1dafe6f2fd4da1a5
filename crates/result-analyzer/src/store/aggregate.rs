//! What each event changes in the aggregates, inside the writer's transaction: the totals, the
//! run it belongs to (`runs`), its request (`requests`, [`super::requests`]), the percentile
//! samples (`samples`) and the concurrency edges ([`super::peak`]).
//!
//! The same code counts new events as they are written and, once, the events of a database
//! written by an older analyzer when it is opened ([`super::schema`]), so the two cannot drift.

use std::collections::{BTreeMap, HashMap};

use encoding_common::{Event, EventKind};
use rusqlite::{Connection, OptionalExtension, params};

use super::peak::{PeakCache, PeakChanges};
use super::totals::{SortedValues, Totals, key};
use super::{StoreError, StoredEvent, micros};
use crate::summary::Progress;

/// The lease of a run that did not give one (`lease_seconds` in its reports): the contract's
/// default visibility timeout, `VISIBILITY_TIMEOUT_SECONDS` = 120.
pub const DEFAULT_LEASE_SECONDS: u64 = 120;

/// `samples.metric` of the encode seconds.
const ENCODE_SECONDS: i64 = 0;
/// `samples.metric` of the frames per second.
const FPS: i64 = 1;

/// The insert of a `runs` row, its values in the order [`write_row`] binds them (a macro, so that
/// each statement that extends it stays one literal).
macro_rules! insert_run {
    () => {
        "INSERT INTO runs (run_id, start_us, end_us, outcome, video_id, qualities, host, last_report_us,
                           lease_seconds, expiry_us, stage, percent, progress_fps, progress_us, chunk, chunks)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
    };
}

/// Progress reports of one run received since the last commit, merged: the writer applies them
/// in one go, so a flood of reports costs one row update per run and commit.
#[derive(Debug, Clone)]
pub(crate) struct PendingProgress {
    /// When the first of them was received (a run they create starts then, less its elapsed time).
    pub first_at: i64,
    /// The first one's `elapsed_seconds`.
    pub first_elapsed: Option<f64>,
    /// The latest time among them.
    pub last_at: i64,
    /// The fields they gave, the later overriding the earlier; stage, percent and fps from the
    /// latest.
    pub event: Event,
    /// When the latest was received.
    pub latest_at: i64,
    /// How many they are.
    pub reports: u64,
}

impl PendingProgress {
    /// One report received at `at`.
    pub fn new(event: Event, at: i64) -> Self {
        Self {
            first_at: at,
            first_elapsed: event.elapsed_seconds,
            last_at: at,
            event,
            latest_at: at,
            reports: 1,
        }
    }

    /// Another report of the same run, received after the others.
    pub fn merge(&mut self, later: Event, at: i64) {
        let e = &mut self.event;
        merge_some(&mut e.video_id, later.video_id);
        merge_some(&mut e.host, later.host);
        merge_some(&mut e.lease_seconds, later.lease_seconds);
        merge_some(&mut e.chunk, later.chunk);
        merge_some(&mut e.chunks, later.chunks);
        if !later.qualities.is_empty() {
            e.qualities = later.qualities;
        }
        (e.stage, e.percent, e.fps) = (later.stage, later.percent, later.fps);
        self.last_at = self.last_at.max(at);
        self.latest_at = at;
        self.reports += 1;
    }
}

fn merge_some<T>(into: &mut Option<T>, later: Option<T>) {
    if later.is_some() {
        *into = later;
    }
}

/// What the writer keeps of the aggregates from one commit to the next, so as not to read it
/// back: the rows of the runs at work (no outcome yet) as it last wrote them, so that a run's
/// progress reports and outcome do not read its row back, and the recently changed part of the
/// concurrency tree ([`PeakCache`]). The writer clears it when a commit fails (it may hold what
/// was not committed) and on a reset; the rows are cleared, too, when they grow past
/// [`RUN_CACHE_CAP`] (runs lost long ago), and read again as needed.
#[derive(Debug, Default)]
pub(crate) struct WriterCache {
    rows: HashMap<String, RunRow>,
    peak: PeakCache,
}

/// Most rows of runs a [`WriterCache`] holds: far more runs than work at once.
const RUN_CACHE_CAP: usize = 16_384;

impl WriterCache {
    /// Forgets everything.
    pub fn clear(&mut self) {
        self.rows.clear();
        self.peak.clear();
    }
}

/// A run as `runs` keeps it.
#[derive(Debug, Clone)]
pub(crate) struct RunRow {
    start: i64,
    end: Option<i64>,
    outcome: Option<String>,
    video_id: Option<String>,
    /// JSON array.
    qualities: Option<String>,
    host: Option<String>,
    last_report: i64,
    lease: Option<u64>,
    /// Its latest progress report.
    progress: Option<Progress>,
    /// Its chunk, for a chunk run.
    chunk: Option<u32>,
    /// Its plan's number of chunks, for a run of a split request.
    chunks: Option<u32>,
}

impl RunRow {
    fn expiry(&self) -> i64 {
        expiry(self.last_report, self.lease)
    }

    /// Its interval for the concurrency: to its end, or to its expiry while it has no outcome.
    fn interval(&self) -> Option<(i64, i64)> {
        let end = self.end.unwrap_or_else(|| self.expiry());
        (end > self.start).then_some((self.start, end))
    }
}

/// When a run whose latest report was at `last_report` is lost.
pub(crate) fn expiry(last_report: i64, lease: Option<u64>) -> i64 {
    let lease = lease.unwrap_or(DEFAULT_LEASE_SECONDS).min(i64::MAX as u64 / 1_000_000) as i64;
    last_report.saturating_add(lease * 1_000_000)
}

/// One report applied to a run.
struct Report<'e> {
    kind: EventKind,
    event: &'e Event,
    /// Where a run it creates starts.
    start: i64,
    /// Its latest time.
    at: i64,
    progress: Option<Progress>,
}

/// Where a run whose first report is `kind` at `at` starts: then for `started`, else that much
/// earlier than the report says it has been running.
fn start_of(kind: EventKind, at: i64, elapsed: Option<f64>) -> i64 {
    if kind == EventKind::Started {
        at
    } else {
        // As the runs have always been paired: whole milliseconds.
        at - ((elapsed.unwrap_or(0.0) * 1000.0) as i64) * 1000
    }
}

/// The aggregates' changes of one transaction.
pub(crate) struct Apply<'c> {
    pub(super) conn: &'c Connection,
    /// The totals, changed in place (the writer restores them if the transaction fails).
    pub totals: &'c mut Totals,
    /// What the writer keeps between commits (it clears it if the transaction fails).
    cache: &'c mut WriterCache,
    peak: PeakChanges,
    /// The samples counted by this transaction, per `(metric, key)`, written once each by
    /// [`Apply::finish`].
    samples: BTreeMap<(i64, i64), u64>,
}

/// Whether [`Apply::dedup`] has already written the event's request row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Noted {
    /// Its request row is still to be written.
    No,
    /// A new request, processed: its row is written.
    Yes,
}

impl<'c> Apply<'c> {
    /// Changes to `totals`, `cache` and the tables, through `conn` (inside a transaction).
    pub fn new(conn: &'c Connection, totals: &'c mut Totals, cache: &'c mut WriterCache) -> Self {
        Self {
            conn,
            totals,
            cache,
            peak: PeakChanges::default(),
            samples: BTreeMap::new(),
        }
    }

    /// The number `GET /get/count` gives an event of `kind` stored now ("processed count N").
    pub fn legacy_number(&mut self, kind: EventKind) -> Option<u64> {
        let n = match kind {
            EventKind::Processed => &mut self.totals.legacy_processed,
            EventKind::Killed => &mut self.totals.legacy_killed,
            _ => return None,
        };
        *n += 1;
        Some(*n)
    }

    /// Counts a stored event.
    ///
    /// # Errors
    ///
    /// When SQLite fails.
    pub fn stored(&mut self, s: &StoredEvent, noted: Noted) -> Result<(), StoreError> {
        let e = &s.event;
        let at = micros(&s.recorded_at);
        if e.kind == EventKind::Progress {
            // Stored by an analyzer from before progress reports were merged into their run.
            let pending = PendingProgress::new(e.clone(), at);
            return match &e.run_id {
                Some(run) => self.progress(run, &pending),
                None => {
                    self.totals.count(EventKind::Progress.as_str(), 1);
                    Ok(())
                }
            };
        }
        let kind = e.kind.as_str();
        self.totals.count(kind, 1);
        for q in &e.qualities {
            *self
                .totals
                .renditions
                .entry(kind.to_owned())
                .or_default()
                .entry(q.clone())
                .or_default() += 1;
        }
        if e.kind == EventKind::Processed {
            for q in &e.qualities {
                *self.totals.processed_per_quality.entry(q.clone()).or_default() += 1;
            }
            if let Some(secs) = e.encode_seconds {
                self.totals.observe_encode_seconds(secs);
            }
            self.add_samples(e.encode_seconds, e.fps)?;
        }
        self.totals.first_event.get_or_insert_with(|| s.recorded_at.clone());
        self.totals.last_event = Some(s.recorded_at.clone());
        self.totals.last_id = self.totals.last_id.max(s.id);
        if let Some(run) = &e.run_id {
            self.touch_run(
                run,
                Report {
                    kind: e.kind,
                    event: e,
                    start: start_of(e.kind, at, e.elapsed_seconds),
                    at,
                    progress: None,
                },
            )?;
        }
        if let Some(rid) = &e.request_id
            && noted == Noted::No
        {
            self.note_request(rid, s)?;
        }
        Ok(())
    }

    /// Applies a run's progress reports.
    ///
    /// # Errors
    ///
    /// When SQLite fails.
    pub fn progress(&mut self, run_id: &str, p: &PendingProgress) -> Result<(), StoreError> {
        self.totals.count(EventKind::Progress.as_str(), p.reports);
        let progress = Progress {
            stage: p.event.stage.clone(),
            percent: p.event.percent,
            fps: p.event.fps,
            at: super::time_of(p.latest_at),
        };
        self.touch_run(
            run_id,
            Report {
                kind: EventKind::Progress,
                event: &p.event,
                start: start_of(EventKind::Progress, p.first_at, p.first_elapsed),
                at: p.last_at,
                progress: Some(progress),
            },
        )
    }

    fn touch_run(&mut self, run_id: &str, r: Report<'_>) -> Result<(), StoreError> {
        let old = match self.cache.rows.remove(run_id) {
            Some(row) => row,
            None => {
                // A run never seen is written in one insert; one seen before is read back.
                let fresh = RunRow {
                    start: r.start,
                    end: None,
                    outcome: None,
                    video_id: None,
                    qualities: None,
                    host: None,
                    last_report: r.at,
                    lease: None,
                    progress: None,
                    chunk: None,
                    chunks: None,
                };
                let new = merge(fresh, &r);
                if self.insert_run(run_id, &new)? {
                    self.totals.runs += 1;
                    self.changed(run_id, None, new);
                    return Ok(());
                }
                self.load_run(run_id)?
                    .ok_or_else(|| StoreError::Inconsistent(format!("run {run_id:?} is neither new nor stored")))?
            }
        };
        let row = merge(old.clone(), &r);
        let mut upsert = self.conn.prepare_cached(concat!(
            insert_run!(),
            " ON CONFLICT(run_id) DO UPDATE SET end_us = excluded.end_us, outcome = excluded.outcome,
                 video_id = excluded.video_id, qualities = excluded.qualities, host = excluded.host,
                 last_report_us = excluded.last_report_us, lease_seconds = excluded.lease_seconds,
                 expiry_us = excluded.expiry_us, stage = excluded.stage, percent = excluded.percent,
                 progress_fps = excluded.progress_fps, progress_us = excluded.progress_us,
                 chunk = excluded.chunk, chunks = excluded.chunks",
        ))?;
        write_row(&mut upsert, run_id, &row)?;
        drop(upsert);
        self.changed(run_id, Some(&old), row);
        Ok(())
    }

    /// Inserts the row of a run if there is none yet; returns whether it did.
    fn insert_run(&self, run_id: &str, row: &RunRow) -> Result<bool, StoreError> {
        let mut insert = self
            .conn
            .prepare_cached(concat!(insert_run!(), " ON CONFLICT(run_id) DO NOTHING"))?;
        Ok(write_row(&mut insert, run_id, row)? == 1)
    }

    /// What a run's row going from `old` to `row` changes: the runs without an outcome, the chunk
    /// runs, the concurrency edges, the cached rows of the runs at work.
    fn changed(&mut self, run_id: &str, old: Option<&RunRow>, row: RunRow) {
        if row.chunk.is_some() && old.is_none_or(|o| o.chunk.is_none()) {
            self.totals.chunk_runs += 1;
        }
        let was_open = old.is_some_and(|o| o.end.is_none());
        match (was_open, row.end.is_none()) {
            (false, true) => self.totals.open_runs += 1,
            (true, false) => self.totals.open_runs = self.totals.open_runs.saturating_sub(1),
            _ => {}
        }
        if let Some(i) = old.and_then(RunRow::interval) {
            self.peak.interval(i, -1);
        }
        if let Some(i) = row.interval() {
            self.peak.interval(i, 1);
        }
        if row.end.is_none() {
            if self.cache.rows.len() >= RUN_CACHE_CAP {
                self.cache.rows.clear();
            }
            self.cache.rows.insert(run_id.to_owned(), row);
        }
    }

    fn load_run(&self, run_id: &str) -> Result<Option<RunRow>, StoreError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT start_us, end_us, outcome, video_id, qualities, host, last_report_us, lease_seconds,
                        stage, percent, progress_fps, progress_us, chunk, chunks
                 FROM runs WHERE run_id = ?1",
            )?
            .query_row(params![run_id], |r| {
                Ok(RunRow {
                    start: r.get(0)?,
                    end: r.get(1)?,
                    outcome: r.get(2)?,
                    video_id: r.get(3)?,
                    qualities: r.get(4)?,
                    host: r.get(5)?,
                    last_report: r.get(6)?,
                    lease: r.get(7)?,
                    progress: progress_of(r, 8)?,
                    chunk: r.get(12)?,
                    chunks: r.get(13)?,
                })
            })
            .optional()?;
        Ok(row)
    }

    /// Writes what the transaction changed beyond the rows already written: the concurrency
    /// edges (and the buckets above them) and the totals.
    ///
    /// # Errors
    ///
    /// When SQLite fails.
    pub fn finish(self) -> Result<(), StoreError> {
        self.peak.apply(self.conn, &mut self.cache.peak)?;
        let mut upsert = self.conn.prepare_cached(
            "INSERT INTO samples (metric, key, n) VALUES (?1, ?2, ?3)
             ON CONFLICT(metric, key) DO UPDATE SET n = n + excluded.n",
        )?;
        for ((metric, key), n) in &self.samples {
            upsert.execute(params![metric, key, n])?;
        }
        save_totals(self.conn, self.totals)
    }

    /// Counts a `processed` event's encode seconds and frames per second in their samples
    /// (finite values only, as the percentiles have always been), and moves the percentile marks.
    fn add_samples(&mut self, secs: Option<f64>, fps: Option<f64>) -> Result<(), StoreError> {
        for (metric, v) in [(ENCODE_SECONDS, secs), (FPS, fps)] {
            let Some(v) = v.filter(|v| v.is_finite()) else { continue };
            *self.samples.entry((metric, key(v))).or_default() += 1;
            let mut values = Samples {
                conn: self.conn,
                metric,
                pending: &self.samples,
            };
            let figure = if metric == ENCODE_SECONDS {
                &mut self.totals.encode_seconds
            } else {
                &mut self.totals.fps
            };
            figure.add(v, &mut values)?;
        }
        Ok(())
    }
}

/// The progress in the four columns of a `runs` row from `first` on (stage, percent, fps, time).
pub(crate) fn progress_of(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Option<Progress>> {
    let at: Option<i64> = row.get(first + 3)?;
    Ok(match at {
        Some(at) => Some(Progress {
            stage: row.get(first)?,
            percent: row.get(first + 1)?,
            fps: row.get(first + 2)?,
            at: super::time_of(at),
        }),
        None => None,
    })
}

/// Saves `totals` in `state`.
pub(crate) fn save_totals(conn: &Connection, totals: &Totals) -> Result<(), StoreError> {
    let json = serde_json::to_string(totals).expect("totals serialize");
    conn.prepare_cached("INSERT OR REPLACE INTO state (id, totals) VALUES (1, ?1)")?
        .execute(params![json])?;
    Ok(())
}

/// The totals saved in `state` (zeros when there are none yet).
pub(crate) fn load_totals(conn: &Connection) -> Result<Totals, StoreError> {
    let json: Option<String> = conn
        .prepare_cached("SELECT totals FROM state WHERE id = 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    match json {
        Some(j) => serde_json::from_str(&j).map_err(|e| StoreError::Inconsistent(format!("the saved totals: {e}"))),
        None => Ok(Totals::default()),
    }
}

/// A merged report: `row` with what `r` says.
fn merge(mut row: RunRow, r: &Report<'_>) -> RunRow {
    let e = r.event;
    merge_some(&mut row.video_id, e.video_id.clone());
    merge_some(&mut row.host, e.host.clone());
    merge_some(&mut row.lease, e.lease_seconds);
    merge_some(&mut row.chunk, e.chunk);
    merge_some(&mut row.chunks, e.chunks);
    if !e.qualities.is_empty() {
        row.qualities = Some(serde_json::to_string(&e.qualities).expect("strings serialize"));
    }
    row.last_report = row.last_report.max(r.at);
    if r.kind.is_terminal() {
        row.end = Some(r.at);
        row.outcome = Some(r.kind.as_str().to_owned());
    }
    if r.progress.is_some() {
        row.progress.clone_from(&r.progress);
    }
    row
}

/// Runs `stmt` (an [`insert_run`]) on a `runs` row's values; returns the rows changed.
fn write_row(stmt: &mut rusqlite::CachedStatement<'_>, run_id: &str, row: &RunRow) -> Result<usize, StoreError> {
    let p = row.progress.as_ref();
    Ok(stmt.execute(params![
        run_id,
        row.start,
        row.end,
        row.outcome,
        row.video_id,
        row.qualities,
        row.host,
        row.last_report,
        row.lease,
        row.expiry(),
        p.and_then(|p| p.stage.as_deref()),
        p.and_then(|p| p.percent),
        p.and_then(|p| p.fps),
        p.map(|p| p.at.timestamp_micros()),
        row.chunk,
        row.chunks,
    ])?)
}

/// One metric's rows of `samples`, with the counts of the transaction not yet written, for the
/// percentile marks to walk.
struct Samples<'c> {
    conn: &'c Connection,
    metric: i64,
    pending: &'c BTreeMap<(i64, i64), u64>,
}

impl Samples<'_> {
    /// The first `(key, n)` row of this metric that `sql` (taking the metric and `key`) selects.
    fn row(&self, sql: &str, key: i64) -> Result<Option<(i64, u64)>, StoreError> {
        let row = self
            .conn
            .prepare_cached(sql)?
            .query_row(params![self.metric, key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(row)
    }

    /// The nearer of a stored row and a pending key (`later`: the larger key is the farther),
    /// with the pending count added to the stored one at the same key.
    fn nearer(&self, stored: Option<(i64, u64)>, pending: Option<i64>, later: bool) -> Option<(i64, u64)> {
        let key = match (stored.map(|s| s.0), pending) {
            (Some(a), Some(b)) => {
                if later {
                    a.min(b)
                } else {
                    a.max(b)
                }
            }
            (a, b) => a.or(b)?,
        };
        let stored = stored.filter(|s| s.0 == key).map_or(0, |s| s.1);
        let pending = self.pending.get(&(self.metric, key)).copied().unwrap_or(0);
        Some((key, stored + pending))
    }
}

impl SortedValues for Samples<'_> {
    fn after(&mut self, key: i64) -> Result<Option<(i64, u64)>, StoreError> {
        let stored = self.row(
            "SELECT key, n FROM samples WHERE metric = ?1 AND key > ?2 ORDER BY key LIMIT 1",
            key,
        )?;
        let pending = key
            .checked_add(1)
            .and_then(|from| self.pending.range((self.metric, from)..=(self.metric, i64::MAX)).next());
        Ok(self.nearer(stored, pending.map(|(k, _)| k.1), true))
    }

    fn before(&mut self, key: i64) -> Result<Option<(i64, u64)>, StoreError> {
        let stored = self.row(
            "SELECT key, n FROM samples WHERE metric = ?1 AND key < ?2 ORDER BY key DESC LIMIT 1",
            key,
        )?;
        let pending = self
            .pending
            .range((self.metric, i64::MIN)..(self.metric, key))
            .next_back();
        Ok(self.nearer(stored, pending.map(|(k, _)| k.1), false))
    }
}
