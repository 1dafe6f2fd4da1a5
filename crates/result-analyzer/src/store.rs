//! Durable event storage in SQLite (WAL).
//!
//! One writer thread owns the write connection and commits events in groups: every request waiting
//! when the writer wakes goes into one transaction, and each is acknowledged only after that
//! transaction is committed, so an acknowledged event survives a crash or a `kill -9`, and a burst
//! of reports costs one commit (and, with [`Synchronous::Full`], one disk flush) instead of one
//! each. Reads use their own connection, which WAL lets run beside the writer.
//!
//! An [`Observer`] sees every committed group in commit order (the Prometheus metrics follow the
//! stored events through it), and, when the store opens, every event already stored, so what it
//! derives is the same after a restart.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use encoding_common::{Event, EventKind};
use rusqlite::{Connection, params};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

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

/// Sees what the store commits, in commit order, on the writer thread: keep it quick.
pub trait Observer: Send + Sync + 'static {
    /// Events just committed (or, when the store opens, already stored), in id order.
    fn committed(&self, events: &[StoredEvent]);
    /// Every event was forgotten (`POST /reset`).
    fn reset(&self);
}

/// An observer that does nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl Observer for NoObserver {
    fn committed(&self, _: &[StoredEvent]) {}
    fn reset(&self) {}
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

/// A write waiting for its group commit.
struct WriteJob {
    event: Event,
    /// The recording time; `None` means the time of the commit.
    at: Option<DateTime<Utc>>,
    done: oneshot::Sender<Result<StoredEvent, StoreError>>,
}

enum Command {
    Write(Box<WriteJob>),
    Reset(oneshot::Sender<Result<(), StoreError>>),
    Shutdown,
}

/// The event store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Command>,
    reader: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded_at TEXT NOT NULL,
    kind TEXT NOT NULL,
    run_id TEXT,
    video_id TEXT,
    request_id TEXT,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_kind ON events(kind, id);
CREATE INDEX IF NOT EXISTS events_video ON events(video_id, id);
CREATE INDEX IF NOT EXISTS events_request ON events(request_id, kind);
";

/// Most writes waiting for the writer; more make the senders wait (back pressure).
const QUEUE_DEPTH: usize = 4096;
/// Most events in one group commit.
const MAX_GROUP: usize = 1024;
/// Rows read at a time when the store opens and replays its events to the observer.
const REPLAY_CHUNK: u32 = 10_000;

fn open_connection(path: &Path, synchronous: Synchronous) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous.as_str())?;
    Ok(conn)
}

impl Store {
    /// Opens (or creates) the database at `path`, replays the stored events to `observer`, and
    /// starts the writer thread. Stop it with [`Writer::shutdown`] to commit what is queued and
    /// close the file cleanly. Blocking.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened, the schema cannot be created, or a stored event cannot be
    /// read back.
    pub fn open(
        path: &Path,
        synchronous: Synchronous,
        observer: Arc<dyn Observer>,
    ) -> Result<(Self, Writer), StoreError> {
        let writer = open_connection(path, synchronous)?;
        writer.execute_batch(SCHEMA)?;
        let reader = open_connection(path, synchronous)?;
        let replayed = replay(&reader, observer.as_ref())?;
        tracing::info!(path = %path.display(), %synchronous, events = replayed, "database open");
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("db-writer".into())
            .spawn(move || write_loop(writer, rx, observer.as_ref()))
            .map_err(|e| StoreError::Task(e.to_string()))?;
        let store = Self {
            tx: tx.clone(),
            reader: Arc::new(Mutex::new(reader)),
            path: path.to_owned(),
        };
        Ok((store, Writer { thread, tx }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records an event; returns it as stored once committed.
    ///
    /// `processed` counts once per request: a second `processed` for a `request_id` that already
    /// has one (a redelivered message whose first run was killed before it deleted the message) is
    /// stored as `duplicate`, so `/get/count` counts each request once.
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
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Command::Write(Box::new(WriteJob { event, at, done })))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        wait.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Forgets every event.
    ///
    /// # Errors
    ///
    /// When the delete fails or the store is shutting down.
    pub async fn reset(&self) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Command::Reset(done))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        wait.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Events matching `query`, in the order recorded.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub async fn events(&self, query: EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(move |conn| {
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
        })
        .await
    }

    /// Every event, in the order recorded.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub async fn all(&self) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT id, recorded_at, body FROM events ORDER BY id")?;
            decode_rows(stmt.query_map([], raw_row)?)
        })
        .await
    }

    /// The recording time and kind of every `processed` and `killed` event, in the order recorded
    /// (what `GET /get/count` lists), without reading the bodies.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub async fn legacy_counts(&self) -> Result<Vec<(DateTime<Utc>, EventKind)>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT recorded_at, kind FROM events WHERE kind IN ('processed', 'killed') ORDER BY id",
            )?;
            let rows = stmt.query_map([], |row| {
                let at: String = row.get(0)?;
                let kind: String = row.get(1)?;
                Ok((at, kind))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (at, kind) = row?;
                let kind = if kind == "killed" {
                    EventKind::Killed
                } else {
                    EventKind::Processed
                };
                out.push((parse_time(&at), kind));
            }
            Ok(out)
        })
        .await
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

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
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

/// Hands every stored event to `observer`, a chunk at a time. Returns how many there were.
fn replay(conn: &Connection, observer: &dyn Observer) -> Result<usize, StoreError> {
    let started = Instant::now();
    let mut stmt = conn.prepare("SELECT id, recorded_at, body FROM events WHERE id > ?1 ORDER BY id LIMIT ?2")?;
    let (mut after, mut total) = (0i64, 0usize);
    loop {
        let chunk = decode_rows(stmt.query_map(params![after, REPLAY_CHUNK], raw_row)?)?;
        let Some(last) = chunk.last() else { break };
        after = last.id;
        total += chunk.len();
        observer.committed(&chunk);
    }
    if total > 0 {
        tracing::info!(
            events = total,
            millis = started.elapsed().as_millis() as u64,
            "replayed stored events"
        );
    }
    Ok(total)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The writer thread: group commits until told to stop (or every sender is gone), then
/// checkpoints the WAL into the database file and closes it.
fn write_loop(mut conn: Connection, mut rx: mpsc::Receiver<Command>, observer: &dyn Observer) {
    let mut batch: Vec<WriteJob> = Vec::new();
    let mut stopping = false;
    while !stopping {
        let Some(first) = rx.blocking_recv() else { break };
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Write(job) => batch.push(*job),
                Command::Reset(done) => {
                    commit(&mut conn, &mut batch, observer);
                    let r = conn.execute("DELETE FROM events", []).map(|_| ()).map_err(Into::into);
                    if r.is_ok() {
                        observer.reset();
                        tracing::info!("every event forgotten");
                    }
                    let _ = done.send(r);
                }
                Command::Shutdown => stopping = true,
            }
            if stopping || batch.len() >= MAX_GROUP {
                break;
            }
            next = rx.try_recv().ok();
        }
        commit(&mut conn, &mut batch, observer);
    }
    // Writes still queued are answered `WriterGone` when the receiver drops with them.
    drop(rx);
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
        tracing::warn!(error = %e, "checkpointing the WAL failed; SQLite will replay it on the next open");
    }
    match conn.close() {
        Ok(()) => tracing::info!("database closed"),
        Err((_, e)) => tracing::error!(error = %e, "closing the database failed"),
    }
}

/// Commits `batch` as one transaction, then tells the observer and answers each request.
fn commit(conn: &mut Connection, batch: &mut Vec<WriteJob>, observer: &dyn Observer) {
    if batch.is_empty() {
        return;
    }
    let started = Instant::now();
    let jobs = std::mem::take(batch);
    let mut dones = Vec::with_capacity(jobs.len());
    let mut events = Vec::with_capacity(jobs.len());
    for job in jobs {
        dones.push(job.done);
        events.push((job.event, job.at));
    }
    match insert_all(conn, events) {
        Ok(stored) => {
            observer.committed(&stored);
            tracing::trace!(
                events = stored.len(),
                micros = started.elapsed().as_micros() as u64,
                "group committed"
            );
            for (done, s) in dones.into_iter().zip(stored) {
                let _ = done.send(Ok(s));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, events = dones.len(), "a group commit failed");
            let msg = e.to_string();
            for done in dones {
                let _ = done.send(Err(StoreError::Commit(msg.clone())));
            }
        }
    }
}

fn insert_all(
    conn: &mut Connection,
    batch: Vec<(Event, Option<DateTime<Utc>>)>,
) -> Result<Vec<StoredEvent>, StoreError> {
    let tx = conn.transaction()?;
    let mut stored = Vec::with_capacity(batch.len());
    {
        let mut seen =
            tx.prepare_cached("SELECT 1 FROM events WHERE request_id = ?1 AND kind = 'processed' LIMIT 1")?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (recorded_at, kind, run_id, video_id, request_id, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let now = Utc::now();
        for (mut event, at) in batch {
            if event.kind == EventKind::Processed
                && let Some(rid) = &event.request_id
                && seen.exists(params![rid])?
            {
                event.kind = EventKind::Duplicate;
                event
                    .reason
                    .get_or_insert_with(|| "this request was already counted as processed".into());
            }
            let recorded_at = rfc3339(at.unwrap_or(now));
            let body = serde_json::to_string(&event).expect("an event serializes");
            insert.execute(params![
                recorded_at,
                event.kind.as_str(),
                event.run_id,
                event.video_id,
                event.request_id,
                body
            ])?;
            stored.push(StoredEvent {
                id: tx.last_insert_rowid(),
                recorded_at,
                event,
            });
        }
    }
    tx.commit()?;
    Ok(stored)
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
