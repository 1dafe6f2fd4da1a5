//! The writer thread: it owns the write connection and commits in groups. Every request waiting
//! when it wakes goes into one transaction, with the aggregates each event changes, and each is
//! acknowledged only after that transaction is committed, so an acknowledged event, and what it
//! did to the aggregates, survive a crash or a `kill -9`; and a burst of reports costs one commit
//! (and, with `synchronous=full`, one disk flush) instead of one each.
//!
//! Progress reports do not queue here: they wait, merged per run, in [`Pending`], and each commit
//! applies them first. One that finds nothing pending wakes the writer, so it is committed within
//! one group commit of being received even when no outcome comes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use encoding_common::Event;
use rusqlite::{Connection, params};
use tokio::sync::{mpsc, oneshot};

use super::aggregate::{Apply, PendingProgress, WriterCache};
use super::schema::AGGREGATE_TABLES;
use super::totals::Totals;
use super::{StoreError, StoredEvent, rfc3339};

/// Most events in one group commit.
const MAX_GROUP: usize = 1024;

/// Progress reports received and not yet committed, merged per run.
pub(crate) type Pending = Arc<Mutex<HashMap<String, PendingProgress>>>;

/// A write waiting for its group commit.
pub(crate) struct WriteJob {
    pub event: Event,
    /// `event` as JSON, made by the caller (off the writer's thread); made again here only if
    /// the writer changes the event (a `processed` that is a duplicate).
    pub body: String,
    /// The recording time; `None` means the time of the commit.
    pub at: Option<DateTime<Utc>>,
    pub done: oneshot::Sender<Result<StoredEvent, StoreError>>,
}

/// What the writer is asked to do.
pub(crate) enum Command {
    Write(Box<WriteJob>),
    /// Progress is pending: commit it.
    Wake,
    /// Answer once everything sent before is committed.
    Sync(oneshot::Sender<Result<(), StoreError>>),
    /// Forget every event and every aggregate.
    Reset(oneshot::Sender<Result<(), StoreError>>),
    /// Delete at most `limit` events recorded before `cutoff`; answer how many went.
    Prune {
        cutoff: DateTime<Utc>,
        limit: u32,
        done: oneshot::Sender<Result<usize, StoreError>>,
    },
    Shutdown,
}

/// The writer's own state.
pub(crate) struct WriterState {
    pub conn: Connection,
    /// The totals as committed.
    pub totals: Totals,
    /// The rows of the runs at work and the recent concurrency tree, as committed.
    pub cache: WriterCache,
    pub pending: Pending,
}

/// Group commits until told to stop (or every sender is gone), then checkpoints the WAL into the
/// database file and closes it.
pub(crate) fn write_loop(mut state: WriterState, mut rx: mpsc::Receiver<Command>) {
    let mut batch: Vec<WriteJob> = Vec::new();
    let mut syncs = Vec::new();
    let mut stopping = false;
    while !stopping {
        let Some(first) = rx.blocking_recv() else { break };
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Write(job) => batch.push(*job),
                Command::Wake => {}
                Command::Sync(done) => syncs.push(done),
                Command::Reset(done) => {
                    let _ = commit(&mut state, &mut batch);
                    let _ = done.send(reset(&mut state));
                }
                Command::Prune { cutoff, limit, done } => {
                    let _ = commit(&mut state, &mut batch);
                    let _ = done.send(prune(&state.conn, cutoff, limit));
                }
                Command::Shutdown => stopping = true,
            }
            if stopping || batch.len() >= MAX_GROUP {
                break;
            }
            next = rx.try_recv().ok();
        }
        let ok = commit(&mut state, &mut batch);
        for done in syncs.drain(..) {
            let _ = done.send(ok.clone().map_err(StoreError::Commit));
        }
    }
    // Writes still queued are answered `WriterGone` when the receiver drops with them.
    drop(rx);
    let _ = commit(&mut state, &mut batch);
    let conn = state.conn;
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
        tracing::warn!(error = %e, "checkpointing the WAL failed; SQLite will replay it on the next open");
    }
    match conn.close() {
        Ok(()) => tracing::info!("database closed"),
        Err((_, e)) => tracing::error!(error = %e, "closing the database failed"),
    }
}

/// Commits the pending progress and `batch` as one transaction, then answers each request.
fn commit(state: &mut WriterState, batch: &mut Vec<WriteJob>) -> Result<(), String> {
    let progress = std::mem::take(&mut *state.pending.lock().unwrap_or_else(|p| p.into_inner()));
    if batch.is_empty() && progress.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let jobs = std::mem::take(batch);
    let mut dones = Vec::with_capacity(jobs.len());
    let mut events = Vec::with_capacity(jobs.len());
    for job in jobs {
        dones.push(job.done);
        events.push((job.event, job.body, job.at));
    }
    let before = state.totals.clone();
    match insert_all(&mut state.conn, &mut state.totals, &mut state.cache, &progress, events) {
        Ok(stored) => {
            tracing::trace!(
                events = stored.len(),
                progress = progress.len(),
                micros = started.elapsed().as_micros() as u64,
                "group committed"
            );
            for (done, s) in dones.into_iter().zip(stored) {
                let _ = done.send(Ok(s));
            }
            Ok(())
        }
        Err(e) => {
            state.totals = before;
            state.cache.clear();
            tracing::error!(error = %e, events = dones.len(), progress = progress.len(), "a group commit failed");
            let msg = e.to_string();
            for done in dones {
                let _ = done.send(Err(StoreError::Commit(msg.clone())));
            }
            Err(msg)
        }
    }
}

fn insert_all(
    conn: &mut Connection,
    totals: &mut Totals,
    cache: &mut WriterCache,
    progress: &HashMap<String, PendingProgress>,
    batch: Vec<(Event, String, Option<DateTime<Utc>>)>,
) -> Result<Vec<StoredEvent>, StoreError> {
    let tx = conn.transaction()?;
    let mut stored = Vec::with_capacity(batch.len());
    {
        let mut apply = Apply::new(&tx, totals, cache);
        for (run, p) in progress {
            apply.progress(run, p)?;
        }
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (recorded_at, kind, run_id, video_id, request_id, body, legacy_n)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let now = Utc::now();
        for (mut event, mut body, at) in batch {
            let recorded_at = rfc3339(at.unwrap_or(now));
            let kind = event.kind;
            let noted = apply.dedup(&mut event, &recorded_at)?;
            if event.kind != kind {
                body = serde_json::to_string(&event).expect("an event serializes");
            }
            let legacy_n = apply.legacy_number(event.kind);
            insert.execute(params![
                recorded_at,
                event.kind.as_str(),
                event.run_id,
                event.video_id,
                event.request_id,
                body,
                legacy_n
            ])?;
            let s = StoredEvent {
                id: tx.last_insert_rowid(),
                recorded_at,
                event,
            };
            apply.stored(&s, noted)?;
            stored.push(s);
        }
        apply.finish()?;
    }
    tx.commit()?;
    Ok(stored)
}

fn reset(state: &mut WriterState) -> Result<(), StoreError> {
    state.pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
    state.cache.clear();
    let tx = state.conn.transaction()?;
    tx.execute("DELETE FROM events", [])?;
    for table in AGGREGATE_TABLES {
        tx.execute(&format!("DELETE FROM {table}"), [])?;
    }
    tx.commit()?;
    state.totals = Totals::default();
    tracing::info!("every event forgotten");
    Ok(())
}

/// Deletes at most `limit` of the oldest events recorded before `cutoff`, in one short
/// transaction; the aggregates keep counting them.
fn prune(conn: &Connection, cutoff: DateTime<Utc>, limit: u32) -> Result<usize, StoreError> {
    let n = conn
        .prepare_cached(
            "DELETE FROM events WHERE id IN
                 (SELECT id FROM events WHERE recorded_at < ?1 ORDER BY recorded_at LIMIT ?2)",
        )?
        .execute(params![rfc3339(cutoff), limit])?;
    Ok(n)
}
