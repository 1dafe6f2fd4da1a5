//! Durable event storage in SQLite (WAL).
//!
//! One writer thread owns the write connection and commits events in groups: every request waiting
//! when the writer wakes goes into one transaction, and each is acknowledged only after that
//! transaction is committed (`synchronous=FULL`), so an acknowledged event survives a crash or a
//! `kill -9`, and a burst of reports costs one disk sync instead of one each. Reads use their own
//! connection, which WAL lets run beside the writer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use encoding_common::{Event, EventKind};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The writer thread has stopped (the service is shutting down).
    #[error("the database writer has stopped")]
    WriterGone,
    /// A blocking read task failed.
    #[error("a database task failed: {0}")]
    Task(String),
}

/// A stored event.
#[derive(Debug, Clone, Serialize)]
pub struct StoredEvent {
    /// Position in the order recorded.
    pub id: i64,
    /// When the analyzer recorded it (UTC, RFC 3339).
    pub recorded_at: String,
    /// The event as posted (for `processed`, possibly turned into `duplicate`, see [`Store::record`]).
    #[serde(flatten)]
    pub event: Event,
}

impl StoredEvent {
    /// The recording time.
    pub fn time(&self) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&self.recorded_at)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }
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
pub struct Writer(std::thread::JoinHandle<()>);

impl Writer {
    /// Waits until the writer has committed everything and closed the database (after every
    /// clone of the store is dropped).
    pub fn join(self) {
        let _ = self.0.join();
    }
}

type WriteJob = (Event, oneshot::Sender<Result<StoredEvent, StoreError>>);

enum Command {
    Write(Box<WriteJob>),
    Reset(oneshot::Sender<Result<(), StoreError>>),
}

/// The event store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    tx: mpsc::Sender<Command>,
    reader: Arc<Mutex<Connection>>,
    path: PathBuf,
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

fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

impl Store {
    /// Opens (or creates) the database at `path` and starts the writer thread, which runs until
    /// every clone of the store is dropped; join it with [`Writer::join`] to know the file is closed.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened or the schema cannot be created.
    pub fn open(path: &Path) -> Result<(Self, Writer), StoreError> {
        let writer = open(path)?;
        writer.execute_batch(SCHEMA)?;
        let reader = open(path)?;
        let (tx, rx) = mpsc::channel(4096);
        let thread = std::thread::Builder::new()
            .name("db-writer".into())
            .spawn(move || write_loop(writer, rx))
            .map_err(|e| StoreError::Task(e.to_string()))?;
        let store = Self {
            tx,
            reader: Arc::new(Mutex::new(reader)),
            path: path.to_owned(),
        };
        Ok((store, Writer(thread)))
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
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Command::Write(Box::new((event, done))))
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
            let mut args: Vec<Box<dyn rusqlite::ToSql>> = vec![Box::new(query.after_id)];
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
                rusqlite::params_from_iter(args.iter().map(|a| a.as_ref())),
                row_to_event,
            )?;
            rows.collect::<Result<Vec<_>, _>>().map_err(Into::into)
        })
        .await
    }

    /// Every event of the given kinds, in the order recorded.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub async fn all_of(&self, kinds: &'static [EventKind]) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(move |conn| {
            let placeholders = vec!["?"; kinds.len()].join(", ");
            let sql = format!("SELECT id, recorded_at, body FROM events WHERE kind IN ({placeholders}) ORDER BY id");
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(
                rusqlite::params_from_iter(kinds.iter().map(|k| k.as_str())),
                row_to_event,
            )?;
            rows.collect::<Result<Vec<_>, _>>().map_err(Into::into)
        })
        .await
    }

    /// Whether the database answers.
    ///
    /// # Errors
    ///
    /// When it does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))
                .optional()?;
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

fn row_to_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    let body: String = row.get(2)?;
    let event: Event = serde_json::from_str(&body)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e)))?;
    Ok(StoredEvent {
        id: row.get(0)?,
        recorded_at: row.get(1)?,
        event,
    })
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The writer thread: group commits until every sender is gone, then closes the database
/// (checkpointing the WAL).
fn write_loop(mut conn: Connection, mut rx: mpsc::Receiver<Command>) {
    let mut batch: Vec<WriteJob> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut pending = Some(first);
        loop {
            match pending.take() {
                Some(Command::Write(job)) => batch.push(*job),
                Some(Command::Reset(done)) => {
                    commit(&mut conn, &mut batch);
                    let r = conn.execute("DELETE FROM events", []).map(|_| ()).map_err(Into::into);
                    let _ = done.send(r);
                }
                None => {}
            }
            if batch.len() >= 1024 {
                break;
            }
            match rx.try_recv() {
                Ok(cmd) => pending = Some(cmd),
                Err(_) => break,
            }
        }
        commit(&mut conn, &mut batch);
    }
    if let Err((_, e)) = conn.close() {
        tracing::error!(error = %e, "closing the database failed");
    }
}

fn commit(conn: &mut Connection, batch: &mut Vec<WriteJob>) {
    if batch.is_empty() {
        return;
    }
    let result = insert_all(conn, batch);
    match result {
        Ok(stored) => {
            for ((_, done), s) in batch.drain(..).zip(stored) {
                let _ = done.send(Ok(s));
            }
        }
        Err(e) => {
            let msg = e.to_string();
            for (_, done) in batch.drain(..) {
                let _ = done.send(Err(StoreError::Task(format!("commit failed: {msg}"))));
            }
        }
    }
}

fn insert_all(conn: &mut Connection, batch: &[WriteJob]) -> Result<Vec<StoredEvent>, StoreError> {
    let tx = conn.transaction()?;
    let mut stored = Vec::with_capacity(batch.len());
    {
        let mut seen =
            tx.prepare_cached("SELECT 1 FROM events WHERE request_id = ?1 AND kind = 'processed' LIMIT 1")?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (recorded_at, kind, run_id, video_id, request_id, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for (event, _) in batch {
            let mut event = event.clone();
            if event.kind == EventKind::Processed
                && let Some(rid) = &event.request_id
                && seen.exists(params![rid])?
            {
                event.kind = EventKind::Duplicate;
                event
                    .reason
                    .get_or_insert_with(|| "this request was already counted as processed".into());
            }
            let recorded_at = rfc3339(Utc::now());
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
