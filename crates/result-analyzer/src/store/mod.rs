//! Durable event storage in SQLite (WAL), with the aggregates every read route answers from.
//!
//! One writer thread ([`writer`]) owns the write connection and commits in groups; each event is
//! acknowledged once its transaction, which also updates the aggregates it changes
//! ([`aggregate`]), is committed. So the aggregates are exactly as durable as the events: after a
//! crash or a `kill -9` they still equal a count of the stored events. Reads ([`reads`]) use a
//! small pool of their own connections, which WAL lets run beside the writer, and cost the same
//! at ten events or ten million.
//!
//! # Layout
//!
//! - [`schema`]: the tables, and bringing an older database up to date when it opens.
//! - [`writer`]: the group-commit thread; progress reports merged per run; reset; pruning.
//! - [`aggregate`]: what one event changes: totals, its run, its request, samples, edges.
//! - [`requests`]: what one event changes in its request's row, split requests included.
//! - [`totals`]: the counts and exact percentiles, one row saved per commit.
//! - [`peak`]: the most runs at once, as a tree over time.
//! - [`reads`]: every answer, from the aggregates; whether a run is lost.

mod aggregate;
mod peak;
mod reads;
mod requests;
mod schema;
mod totals;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use encoding_common::{Event, EventKind};
use rusqlite::Connection;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

pub use aggregate::DEFAULT_LEASE_SECONDS;
pub use reads::{Cursor, LegacyLine, RunsQuery};

use crate::summary::{Counters, RequestState, RunsPage, Summary};
use aggregate::PendingProgress;
use writer::{Command, Pending, WriteJob, WriterState};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored event could not be read back.
    #[error("stored event {id} is not a valid event: {source}")]
    Corrupt {
        /// The row.
        id: i64,
        /// What serde said.
        source: serde_json::Error,
    },
    /// The writer thread has stopped (the service is shutting down).
    #[error("the database writer has stopped")]
    WriterGone,
    /// The group commit that held this event failed; nothing of that group was stored.
    #[error("the commit failed: {0}")]
    Commit(String),
    /// A blocking read task or the writer thread could not run.
    #[error("a database task failed: {0}")]
    Task(String),
    /// The aggregates do not match what they were built from (a database changed by hand).
    #[error("the aggregates are inconsistent: {0}")]
    Inconsistent(String),
    /// What was asked to be stored breaks a rule of the store.
    #[error("{0}")]
    Invalid(String),
}

/// When a committed event is acknowledged: SQLite's `synchronous` setting, in WAL mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Once its commit is flushed to disk: an acknowledged event survives a `kill -9` and the
    /// machine losing power.
    #[default]
    Full,
    /// Once it is committed to the WAL file (handed to the operating system, not flushed): it
    /// survives a `kill -9` of the analyzer, but the last commits can be lost if the machine loses
    /// power. Faster where a disk flush is slow.
    Normal,
}

impl Synchronous {
    /// The pragma's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Normal => "normal",
        }
    }
}

impl fmt::Display for Synchronous {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Synchronous {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(Self::Full),
            "normal" => Ok(Self::Normal),
            _ => Err(format!("{s:?} is not a synchronous mode: expected full or normal")),
        }
    }
}

/// A stored event.
#[derive(Debug, Clone, Serialize)]
pub struct StoredEvent {
    /// Position in the order recorded (increasing, never reused).
    pub id: i64,
    /// When the analyzer recorded it (UTC, RFC 3339 with microseconds, so that text order is time
    /// order).
    pub recorded_at: String,
    /// The event as posted (for `processed`, possibly turned into `duplicate`, see [`Store::record`]).
    #[serde(flatten)]
    pub event: Event,
}

impl StoredEvent {
    /// The recording time.
    pub fn time(&self) -> DateTime<Utc> {
        parse_time(&self.recorded_at)
    }
}

fn parse_time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

/// A filter over stored events.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only this kind.
    pub kind: Option<EventKind>,
    /// Only this video.
    pub video_id: Option<String>,
    /// Recorded at or after.
    pub since: Option<DateTime<Utc>>,
    /// Recorded before.
    pub until: Option<DateTime<Utc>>,
    /// Only events with an id greater than this (for paging forward).
    pub after_id: i64,
    /// At most this many.
    pub limit: u32,
}

/// The writer thread of a [`Store`].
#[derive(Debug)]
pub struct Writer {
    thread: std::thread::JoinHandle<()>,
    tx: mpsc::Sender<Command>,
}

impl Writer {
    /// Commits what is queued, checkpoints the WAL into the database file and closes it, then
    /// waits for the thread. Writes queued after this get [`StoreError::WriterGone`]. Blocking:
    /// call it from `spawn_blocking` in async code.
    pub fn shutdown(self) {
        // If the thread has already stopped, the send fails, which is fine.
        let _ = self.tx.blocking_send(Command::Shutdown);
        if self.thread.join().is_err() {
            tracing::error!("the database writer thread panicked");
        }
    }
}

/// Read connections, opened as needed and kept for the next read.
struct ReadPool {
    path: PathBuf,
    synchronous: Synchronous,
    idle: Mutex<Vec<Connection>>,
}

/// Read connections kept idle at most.
const IDLE_READERS: usize = 4;

impl ReadPool {
    fn take(&self) -> Result<Connection, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(c) => Ok(c),
            None => open_connection(&self.path, self.synchronous),
        }
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
    }
}

/// The event store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Command>,
    pool: Arc<ReadPool>,
    pending: Pending,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.pool.path)
            .finish_non_exhaustive()
    }
}

/// Most writes waiting for the writer; more make the senders wait (back pressure).
const QUEUE_DEPTH: usize = 4096;
/// WAL pages between two automatic checkpoints (40 MiB of 4 KiB pages; SQLite's default is 1000).
const WAL_CHECKPOINT_PAGES: i64 = 10_000;

fn open_connection(path: &Path, synchronous: Synchronous) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous.as_str())?;
    Ok(conn)
}

impl Store {
    /// Opens (or creates) the database at `path`, brings its aggregates up to date (counting,
    /// once, the events of a database written by an older analyzer), and starts the writer
    /// thread. Stop it with [`Writer::shutdown`] to commit what is queued and close the file
    /// cleanly. Blocking.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened, the schema cannot be created, or a stored event cannot be
    /// read back.
    pub fn open(path: &Path, synchronous: Synchronous) -> Result<(Self, Writer), StoreError> {
        let started = std::time::Instant::now();
        let mut conn = open_connection(path, synchronous)?;
        // A commit writes a dozen pages (the event, its indexes, its run, request, samples, the
        // peak tree, the totals): checkpointing every 1000 pages, SQLite's default, would flush the
        // database file every hundred commits or so.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
        let counted = schema::prepare(&mut conn)?;
        let totals = aggregate::load_totals(&conn)?;
        tracing::info!(
            path = %path.display(),
            %synchronous,
            runs = totals.runs,
            counted,
            millis = started.elapsed().as_millis() as u64,
            "database open"
        );
        let pending = Pending::default();
        let state = WriterState {
            conn,
            totals,
            cache: aggregate::WriterCache::default(),
            pending: pending.clone(),
        };
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("db-writer".into())
            .spawn(move || writer::write_loop(state, rx))
            .map_err(|e| StoreError::Task(e.to_string()))?;
        let pool = Arc::new(ReadPool {
            path: path.to_owned(),
            synchronous,
            idle: Mutex::new(Vec::new()),
        });
        let store = Self {
            tx: tx.clone(),
            pool,
            pending,
        };
        Ok((store, Writer { thread, tx }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.pool.path
    }

    /// Records an event; returns it as stored once committed.
    ///
    /// `processed` counts once per request: a second `processed` for a `request_id` that already
    /// has one (a redelivered message whose first run was killed before it deleted the message) is
    /// stored as `duplicate`, so `/get/count` counts each request once.
    ///
    /// A `progress` report is not stored as an event: it updates its run (see
    /// [`Store::report_progress`]); this waits until that is committed and returns it with id 0.
    ///
    /// # Errors
    ///
    /// When the commit fails or the store is shutting down.
    pub async fn record(&self, event: Event) -> Result<StoredEvent, StoreError> {
        self.write(event, None).await
    }

    /// Records an event with the given recording time instead of the commit's (imports, and
    /// fixtures that need a timeline spread over minutes). Otherwise as [`Store::record`].
    ///
    /// # Errors
    ///
    /// When the commit fails or the store is shutting down.
    pub async fn record_at(&self, event: Event, at: DateTime<Utc>) -> Result<StoredEvent, StoreError> {
        self.write(event, Some(at)).await
    }

    async fn write(&self, event: Event, at: Option<DateTime<Utc>>) -> Result<StoredEvent, StoreError> {
        if event.kind == EventKind::Progress {
            let stored = self.report_progress(event, at)?;
            self.sync().await?;
            return Ok(stored);
        }
        let body = serde_json::to_string(&event).expect("an event serializes");
        self.ask(|done| Command::Write(Box::new(WriteJob { event, body, at, done })))
            .await
    }

    /// Takes a `progress` report of a run (which must have a `run_id`), received at `at` (`None`:
    /// now), without waiting: reports of one run are merged until the next group commit, which
    /// applies them to the run (latest progress, last report, lease) in one row update. Returns
    /// the report as received, with id 0: it is not stored as an event, so it is neither listed
    /// by `GET /events` nor counted in `/get/count`.
    ///
    /// A report is committed with the next group commit, at the latest once every write sent
    /// after it is acknowledged; a `kill -9` before then loses it, as it loses a write not yet
    /// acknowledged.
    ///
    /// # Errors
    ///
    /// When the report has no `run_id`, or the store is shutting down.
    pub fn report_progress(&self, event: Event, at: Option<DateTime<Utc>>) -> Result<StoredEvent, StoreError> {
        let Some(run) = event.run_id.clone() else {
            return Err(StoreError::Invalid("a progress report needs a run_id".into()));
        };
        if self.tx.is_closed() {
            return Err(StoreError::WriterGone);
        }
        let at = at.unwrap_or_else(Utc::now);
        let stored = StoredEvent {
            id: 0,
            recorded_at: rfc3339(at),
            event: event.clone(),
        };
        let at = at.timestamp_micros();
        let wake = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let wake = pending.is_empty();
            match pending.get_mut(&run) {
                Some(p) => p.merge(event, at),
                None => {
                    pending.insert(run, PendingProgress::new(event, at));
                }
            }
            wake
        };
        if wake {
            // When the queue is full, the writer is busy and commits the pending reports with
            // the writes ahead of them.
            let _ = self.tx.try_send(Command::Wake);
        }
        Ok(stored)
    }

    /// Waits until everything sent before, progress reports included, is committed.
    ///
    /// # Errors
    ///
    /// When that commit fails or the store is shutting down.
    pub async fn sync(&self) -> Result<(), StoreError> {
        self.ask(Command::Sync).await
    }

    /// Forgets every event, and every aggregate with them.
    ///
    /// # Errors
    ///
    /// When the delete fails or the store is shutting down.
    pub async fn reset(&self) -> Result<(), StoreError> {
        self.ask(Command::Reset).await
    }

    /// Deletes at most `limit` of the oldest events recorded before `cutoff`, in one short
    /// transaction between group commits, and returns how many went. The aggregates, and the
    /// numbers of the remaining `/get/count` lines, stay as they are.
    ///
    /// # Errors
    ///
    /// When the delete fails or the store is shutting down.
    pub async fn prune(&self, cutoff: DateTime<Utc>, limit: u32) -> Result<usize, StoreError> {
        self.ask(|done| Command::Prune { cutoff, limit, done }).await
    }

    /// Events matching `query`, in the order recorded.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub async fn events(&self, query: EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(move |conn| reads::events(conn, query)).await
    }

    /// The summary at `now`.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub async fn summary(&self, now: DateTime<Utc>) -> Result<Summary, StoreError> {
        self.read(move |conn| snapshot(conn, |c| reads::summary(c, now.timestamp_micros())))
            .await
    }

    /// A page of runs at `now`.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub async fn runs(&self, query: RunsQuery, now: DateTime<Utc>) -> Result<RunsPage, StoreError> {
        self.read(move |conn| snapshot(conn, |c| reads::runs(c, &query, now.timestamp_micros())))
            .await
    }

    /// The counters of `GET /metrics` at `now`.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub async fn counters(&self, now: DateTime<Utc>) -> Result<Counters, StoreError> {
        self.read(move |conn| snapshot(conn, |c| reads::counters(c, now.timestamp_micros())))
            .await
    }

    /// Where a request stands at `now`; `None` when no event names it.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub async fn request(&self, request_id: String, now: DateTime<Utc>) -> Result<Option<RequestState>, StoreError> {
        self.read(move |conn| reads::request(conn, &request_id, now.timestamp_micros()))
            .await
    }

    /// At most `limit` lines of `/get/count` after event `after_id`, in the order recorded.
    /// Blocking: it runs on the caller's thread, with a connection of its own.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub fn legacy_page_blocking(&self, after_id: i64, limit: u32) -> Result<Vec<LegacyLine>, StoreError> {
        let conn = self.pool.take()?;
        let page = reads::legacy_page(&conn, after_id, limit);
        self.pool.give_back(conn);
        page
    }

    /// Whether the database answers and the writer runs.
    ///
    /// # Errors
    ///
    /// When it does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        if self.tx.is_closed() {
            return Err(StoreError::WriterGone);
        }
        self.read(|conn| {
            conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
            Ok(())
        })
        .await
    }

    /// Sends the writer the command `make` builds around a reply channel, and waits for the reply.
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Result<T, StoreError> {
        let (done, wait) = oneshot::channel();
        self.tx.send(make(done)).await.map_err(|_| StoreError::WriterGone)?;
        wait.await.map_err(|_| StoreError::WriterGone)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.take()?;
            let out = f(&mut conn);
            pool.give_back(conn);
            out
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

/// Runs `f` in one read transaction: a consistent snapshot of every table it reads.
fn snapshot<T>(conn: &mut Connection, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
    let tx = conn.transaction()?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
}

/// A row as stored, before its body is parsed.
type RawRow = (i64, String, String);

fn raw_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
}

fn decode(row: RawRow) -> Result<StoredEvent, StoreError> {
    let (id, recorded_at, body) = row;
    let event = serde_json::from_str(&body).map_err(|source| StoreError::Corrupt { id, source })?;
    Ok(StoredEvent { id, recorded_at, event })
}

fn decode_rows(rows: impl Iterator<Item = rusqlite::Result<RawRow>>) -> Result<Vec<StoredEvent>, StoreError> {
    rows.map(|r| decode(r?)).collect()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A `recorded_at` in microseconds since the epoch.
fn micros(text: &str) -> i64 {
    parse_time(text).timestamp_micros()
}

/// A time in microseconds since the epoch.
fn time_of(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synchronous_modes_parse_from_their_names() {
        assert_eq!("full".parse::<Synchronous>().unwrap(), Synchronous::Full);
        assert_eq!("NORMAL".parse::<Synchronous>().unwrap(), Synchronous::Normal);
        assert!("off".parse::<Synchronous>().is_err());
    }

    #[test]
    fn recording_times_sort_as_text_in_time_order() {
        let a = rfc3339("2026-01-17T05:50:45Z".parse().unwrap());
        let b = rfc3339("2026-01-17T05:50:45.000001Z".parse().unwrap());
        assert_eq!(a, "2026-01-17T05:50:45.000000Z");
        assert!(a < b);
        assert_eq!(
            parse_time(&b),
            "2026-01-17T05:50:45.000001Z".parse::<DateTime<Utc>>().unwrap()
        );
    }
}
