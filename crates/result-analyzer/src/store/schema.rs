//! The tables, and opening a database: a new one gets them; one written by an older analyzer (the
//! events alone) gets them filled from its events, once, in one transaction.
//!
//! | table | holds |
//! |---|---|
//! | `events` | every stored event, with its `/get/count` number (`legacy_n`) |
//! | `state` | one row: the [`Totals`](super::totals::Totals), as JSON |
//! | `runs` | one row per run: start, end, outcome, video, qualities, host, last report, lease, expiry, progress, chunk and chunks |
//! | `requests` | one row per `request_id`: processed or not, its outcome with the reason and outputs, latest event, chunks of a split request |
//! | `request_chunks` | one row per chunk stored of a split request (`request_id`, plan size, chunk) |
//! | `samples` | the encode seconds and fps values, one row per distinct value with its count |
//! | `peak_points`, `peak_buckets` | the concurrency edges and the tree above them ([`super::peak`]) |
//!
//! `PRAGMA user_version` says which of these a database has: 0, the events alone; 6, all of them;
//! 5, all of them but the chunk columns and `request_chunks` (added in place: a version-5
//! analyzer refused chunk events, so its aggregates hold none, and are kept as they are, pruned
//! events included); 2 to 4, earlier forms of them, counted again.
//!
//! The runs are kept in the order they started (their key is the start and the run id), so that
//! a page of `/runs` is a few neighbouring pages of the file, whatever the history; `runs_id`
//! finds a run by its id.
//! The totals say which events they include (`last_id`): events written after them (by an older
//! analyzer run on the same file) are counted when the database opens.

use std::time::Instant;

use rusqlite::{Connection, params};

use super::aggregate::{Apply, Noted, WriterCache, load_totals};
use super::{StoreError, decode, raw_row};

/// The schema version this analyzer writes.
const VERSION: i64 = 6;

/// The version before chunk runs, brought up to [`VERSION`] by adding their columns.
const BEFORE_CHUNKS: i64 = 5;

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded_at TEXT NOT NULL,
    kind TEXT NOT NULL,
    run_id TEXT,
    video_id TEXT,
    request_id TEXT,
    body TEXT NOT NULL,
    legacy_n INTEGER
);
CREATE INDEX IF NOT EXISTS events_kind ON events(kind, id);
CREATE INDEX IF NOT EXISTS events_video ON events(video_id, id);
CREATE INDEX IF NOT EXISTS events_time ON events(recorded_at);
DROP INDEX IF EXISTS events_request;
CREATE TABLE IF NOT EXISTS state (id INTEGER PRIMARY KEY CHECK (id = 1), totals TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT NOT NULL,
    start_us INTEGER NOT NULL,
    end_us INTEGER,
    outcome TEXT,
    video_id TEXT,
    qualities TEXT,
    host TEXT,
    last_report_us INTEGER NOT NULL,
    lease_seconds INTEGER,
    expiry_us INTEGER NOT NULL,
    stage TEXT,
    percent REAL,
    progress_fps REAL,
    progress_us INTEGER,
    chunk INTEGER,
    chunks INTEGER,
    PRIMARY KEY (start_us, run_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS runs_id ON runs(run_id);
CREATE INDEX IF NOT EXISTS runs_open ON runs(expiry_us, start_us) WHERE end_us IS NULL;
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY,
    processed INTEGER NOT NULL,
    outcome TEXT,
    last_kind TEXT NOT NULL,
    last_run TEXT,
    last_at TEXT NOT NULL,
    reason TEXT,
    outputs TEXT,
    chunks INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS request_chunks (
    request_id TEXT NOT NULL,
    chunks INTEGER NOT NULL,
    chunk INTEGER NOT NULL,
    PRIMARY KEY (request_id, chunks, chunk)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS samples (
    metric INTEGER NOT NULL,
    key INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (metric, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS peak_points (t INTEGER PRIMARY KEY, ends INTEGER NOT NULL, starts INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS peak_buckets (
    level INTEGER NOT NULL,
    b INTEGER NOT NULL,
    net INTEGER NOT NULL,
    max INTEGER,
    PRIMARY KEY (level, b)
) WITHOUT ROWID;
";

/// Every table but `events`, emptied by a reset.
pub(crate) const AGGREGATE_TABLES: [&str; 7] = [
    "state",
    "runs",
    "requests",
    "request_chunks",
    "samples",
    "peak_points",
    "peak_buckets",
];

/// Rows read at a time when counting the events of an older database.
const CHUNK: i64 = 10_000;

/// Makes `conn`'s database current: creates the tables, and counts the events the totals do not
/// include yet. Returns how many events it counted.
///
/// # Errors
///
/// When SQLite fails or a stored event cannot be read back.
pub(crate) fn prepare(conn: &mut Connection) -> Result<usize, StoreError> {
    let started = Instant::now();
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < VERSION {
        upgrade(&tx, version)?;
    }
    tx.commit()?;
    // A transaction per chunk, each saving the totals with the last event they include: the WAL
    // stays small, and an open stopped half-way goes on from there the next time.
    let mut counted = 0usize;
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = count_chunk(&tx)?;
        if n == 0 {
            break;
        }
        tx.commit()?;
        counted += n;
        if counted.is_multiple_of(10 * CHUNK as usize) {
            tracing::info!(events = counted, "counting the stored events into the aggregates");
        }
    }
    if counted > 0 {
        tracing::info!(
            events = counted,
            millis = started.elapsed().as_millis() as u64,
            "counted the stored events into the aggregates"
        );
    }
    Ok(counted)
}

/// Brings a database of an older `version` to [`VERSION`]: the tables and the columns it lacks.
fn upgrade(tx: &Connection, version: i64) -> Result<(), StoreError> {
    let has_events: bool = tx.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'events'",
        [],
        |r| r.get(0),
    )?;
    if has_events {
        let numbered: bool = tx.query_row(
            "SELECT count(*) > 0 FROM pragma_table_info('events') WHERE name = 'legacy_n'",
            [],
            |r| r.get(0),
        )?;
        if !numbered {
            tx.execute_batch("ALTER TABLE events ADD COLUMN legacy_n INTEGER")?;
        }
    }
    if version == BEFORE_CHUNKS {
        // Only the chunk columns are new: adding a column changes no row (SQLite writes the
        // schema alone), so this costs the same at any size.
        tx.execute_batch(
            "ALTER TABLE runs ADD COLUMN chunk INTEGER;
             ALTER TABLE runs ADD COLUMN chunks INTEGER;
             ALTER TABLE requests ADD COLUMN chunks INTEGER;",
        )?;
    } else if version >= 2 {
        // Versions 2 to 4 (each kept for a few hours of development) kept the requests and runs
        // otherwise: their aggregates are counted again from their events.
        for table in AGGREGATE_TABLES {
            tx.execute_batch(&format!("DROP TABLE IF EXISTS {table}"))?;
        }
    }
    tx.execute_batch(TABLES)?;
    tx.pragma_update(None, "user_version", VERSION)?;
    Ok(())
}

/// Counts at most [`CHUNK`] events the saved totals do not include yet, numbering their
/// `/get/count` lines as they would have been numbered when written, and saves the totals.
/// Returns how many it counted.
fn count_chunk(tx: &Connection) -> Result<usize, StoreError> {
    let mut totals = load_totals(tx)?;
    let mut read =
        tx.prepare_cached("SELECT id, recorded_at, body, legacy_n FROM events WHERE id > ?1 ORDER BY id LIMIT ?2")?;
    let rows = read.query_map(params![totals.last_id, CHUNK], |r| {
        Ok((raw_row(r)?, r.get::<_, Option<i64>>(3)?))
    })?;
    let mut chunk = Vec::new();
    for row in rows {
        let (raw, n) = row?;
        chunk.push((decode(raw)?, n));
    }
    if chunk.is_empty() {
        return Ok(0);
    }
    let mut number = tx.prepare_cached("UPDATE events SET legacy_n = ?1 WHERE id = ?2")?;
    let mut cache = WriterCache::default();
    let mut apply = Apply::new(tx, &mut totals, &mut cache);
    for (stored, n) in &chunk {
        if let Some(next) = apply.legacy_number(stored.event.kind)
            && n.is_none()
        {
            number.execute(params![next, stored.id])?;
        }
        apply.stored(stored, Noted::No)?;
        apply.totals.last_id = stored.id;
    }
    apply.finish()?;
    Ok(chunk.len())
}
