//! The writer thread: it owns the write connection and commits in groups. Every request waiting
//! when it wakes goes into one transaction, and each is acknowledged only after that transaction
//! is committed, so an acknowledged event survives a crash or a `kill -9`; and a burst of reports
//! costs one commit (and, with `synchronous=full`, one disk flush) instead of one each.
//!
//! The aggregates (runs, requests, samples, the peak tree, the totals) are counted in the same
//! transaction as the events when the load is light. Under load they are counted once for many
//! group commits ([`APPLY_EVERY`] events or [`APPLY_AFTER`], whichever comes first): the events
//! of the commits between are stored (and acknowledged) at once, and counted, in order, by the
//! next commit that applies. Every read settles first ([`Command::Sync`] applies what is
//! waiting), so an answer always includes every acknowledged event; and the totals say which
//! events they include, so after a `kill -9` the events stored but not yet counted are counted
//! when the database opens, by the same code. This keeps a commit under load to the pages of the
//! events and their indexes: the aggregates' pages are written once per [`APPLY_EVERY`] events,
//! not once per commit.
//!
//! Progress reports do not queue here: they wait, merged per run, in [`Pending`], and each commit
//! that applies takes them first. One that finds nothing pending wakes the writer, so it is
//! committed within one group commit of being received even when no outcome comes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use encoding_common::{Event, EventKind};
use rusqlite::{Connection, params};
use tokio::sync::{mpsc, oneshot};

use super::aggregate::{Apply, PendingProgress, RunCache};
use super::requests::{counted_processed, mark_duplicate};
use super::schema::AGGREGATE_TABLES;
use super::totals::Totals;
use super::{StoreError, StoredEvent, rfc3339};

/// Most events in one group commit.
const MAX_GROUP: usize = 1024;

/// A group commit of at most this many events counts the aggregates at once (with every event
/// still waiting): under a light load there is nothing to share.
const SMALL_GROUP: usize = 4;

/// Events stored and not yet counted, at most: the commit that reaches it counts them.
pub(crate) const APPLY_EVERY: usize = 2048;

/// How long an event waits to be counted, at most: a commit after that counts, and an idle
/// writer counts what waits once it has been idle that long.
pub(crate) const APPLY_AFTER: Duration = Duration::from_millis(50);

/// Progress reports received and not yet committed, merged per run.
pub(crate) type Pending = Arc<Mutex<HashMap<String, PendingProgress>>>;

/// A write waiting for its group commit.
pub(crate) struct WriteJob {
    pub event: Event,
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
    /// The totals as committed (the `/get/count` numbers of the events not yet counted
    /// included).
    pub totals: Totals,
    /// The rows of the runs at work, as committed.
    pub runs: RunCache,
    pub pending: Pending,
    /// The events committed but not yet counted into the aggregates.
    pub unapplied: Unapplied,
}

/// Events committed but not yet counted into the aggregates, in the order stored.
#[derive(Debug, Default)]
pub(crate) struct Unapplied {
    events: Vec<StoredEvent>,
    /// The requests of their `processed` events (a second one is a duplicate).
    processed: HashSet<String>,
    /// When the first of them was committed.
    since: Option<Instant>,
}

impl Unapplied {
    fn is_due(&self, incoming: usize) -> bool {
        self.events.len() + incoming >= APPLY_EVERY || self.since.is_some_and(|t| t.elapsed() >= APPLY_AFTER)
    }
}

/// Group commits until told to stop (or every sender is gone), then checkpoints the WAL into the
/// database file and closes it.
pub(crate) fn write_loop(mut state: WriterState, mut rx: mpsc::Receiver<Command>) {
    let mut batch: Vec<WriteJob> = Vec::new();
    let mut syncs = Vec::new();
    let mut stopping = false;
    // Only to wait for a command with a time limit (an idle writer counting what waits).
    let timer = tokio::runtime::Builder::new_current_thread().enable_time().build();
    while !stopping {
        let first = match (&timer, state.unapplied.since) {
            (Ok(rt), Some(_)) => match rt.block_on(async { tokio::time::timeout(APPLY_AFTER, rx.recv()).await }) {
                Ok(cmd) => cmd,
                Err(_) => {
                    // Idle for a while: count what waits.
                    let _ = commit(&mut state, &mut batch, true);
                    continue;
                }
            },
            _ => rx.blocking_recv(),
        };
        let Some(first) = first else { break };
        let mut next = Some(first);
        let mut settle = false;
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Write(job) => batch.push(*job),
                Command::Wake => {}
                Command::Sync(done) => {
                    syncs.push(done);
                    settle = true;
                }
                Command::Reset(done) => {
                    let _ = commit(&mut state, &mut batch, true);
                    let _ = done.send(reset(&mut state));
                }
                Command::Prune { cutoff, limit, done } => {
                    let _ = commit(&mut state, &mut batch, true);
                    let _ = done.send(prune(&state.conn, cutoff, limit));
                }
                Command::Shutdown => stopping = true,
            }
            if stopping || batch.len() >= MAX_GROUP {
                break;
            }
            next = rx.try_recv().ok();
        }
        let ok = commit(&mut state, &mut batch, settle || stopping);
        for done in syncs.drain(..) {
            let _ = done.send(ok.clone().map_err(StoreError::Commit));
        }
    }
    // Writes still queued are answered `WriterGone` when the receiver drops with them.
    drop(rx);
    let _ = commit(&mut state, &mut batch, true);
    let conn = state.conn;
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
        tracing::warn!(error = %e, "checkpointing the WAL failed; SQLite will replay it on the next open");
    }
    match conn.close() {
        Ok(()) => tracing::info!("database closed"),
        Err((_, e)) => tracing::error!(error = %e, "closing the database failed"),
    }
}

/// Commits `batch` as one transaction, then answers each request. It counts the aggregates too
/// (the pending progress, the events waiting and `batch`) when `settle` is set, the group is
/// small, or what waits is due ([`Unapplied::is_due`]).
fn commit(state: &mut WriterState, batch: &mut Vec<WriteJob>, settle: bool) -> Result<(), String> {
    let apply = settle || batch.len() <= SMALL_GROUP || state.unapplied.is_due(batch.len());
    let progress = if apply {
        std::mem::take(&mut *state.pending.lock().unwrap_or_else(|p| p.into_inner()))
    } else {
        HashMap::new()
    };
    if batch.is_empty() && progress.is_empty() && (!apply || state.unapplied.events.is_empty()) {
        return Ok(());
    }
    let started = Instant::now();
    let jobs = std::mem::take(batch);
    let mut dones = Vec::with_capacity(jobs.len());
    let mut events = Vec::with_capacity(jobs.len());
    for job in jobs {
        dones.push(job.done);
        events.push((job.event, job.at));
    }
    let before = state.totals.clone();
    match insert_all(state, &progress, events, apply) {
        Ok((stored, processed)) => {
            tracing::trace!(
                events = stored.len(),
                progress = progress.len(),
                applied = apply,
                micros = started.elapsed().as_micros() as u64,
                "group committed"
            );
            let waiting = &mut state.unapplied;
            if apply {
                *waiting = Unapplied::default();
            } else {
                waiting.since.get_or_insert(started);
                waiting.events.extend(stored.iter().cloned());
                waiting.processed.extend(processed);
            }
            for (done, s) in dones.into_iter().zip(stored) {
                let _ = done.send(Ok(s));
            }
            Ok(())
        }
        Err(e) => {
            // Nothing of this transaction was committed: the events waiting still wait.
            state.totals = before;
            state.runs.clear();
            tracing::error!(error = %e, events = dones.len(), progress = progress.len(), "a group commit failed");
            let msg = e.to_string();
            for done in dones {
                let _ = done.send(Err(StoreError::Commit(msg.clone())));
            }
            Err(msg)
        }
    }
}

/// Stores `batch` (and, with `apply`, counts the progress, the events waiting and `batch` into
/// the aggregates) in one transaction. Returns the events as stored, and the requests of their
/// first `processed` events.
fn insert_all(
    state: &mut WriterState,
    progress: &HashMap<String, PendingProgress>,
    batch: Vec<(Event, Option<DateTime<Utc>>)>,
    apply: bool,
) -> Result<(Vec<StoredEvent>, Vec<String>), StoreError> {
    let tx = state.conn.transaction()?;
    let mut stored = Vec::with_capacity(batch.len());
    let mut processed = Vec::new();
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (recorded_at, kind, run_id, video_id, request_id, body, legacy_n)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let now = Utc::now();
        for (mut event, at) in batch {
            let recorded_at = rfc3339(at.unwrap_or(now));
            if event.kind == EventKind::Processed
                && let Some(rid) = &event.request_id
            {
                if state.unapplied.processed.contains(rid) || processed.contains(rid) || counted_processed(&tx, rid)? {
                    mark_duplicate(&mut event);
                } else {
                    processed.push(rid.clone());
                }
            }
            let body = serde_json::to_string(&event).expect("an event serializes");
            let legacy_n = state.totals.legacy_number(event.kind);
            insert.execute(params![
                recorded_at,
                event.kind.as_str(),
                event.run_id,
                event.video_id,
                event.request_id,
                body,
                legacy_n
            ])?;
            stored.push(StoredEvent {
                id: tx.last_insert_rowid(),
                recorded_at,
                event,
            });
        }
    }
    if apply {
        let mut apply = Apply::new(&tx, &mut state.totals, &mut state.runs);
        for (run, p) in progress {
            apply.progress(run, p)?;
        }
        for s in state.unapplied.events.iter().chain(&stored) {
            apply.stored(s)?;
        }
        apply.finish()?;
    }
    tx.commit()?;
    Ok((stored, processed))
}

fn reset(state: &mut WriterState) -> Result<(), StoreError> {
    state.pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
    state.runs.clear();
    state.unapplied = Unapplied::default();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::aggregate::load_totals;
    use crate::store::schema;
    use test_support::TempDir;

    fn open(path: &std::path::Path) -> (WriterState, usize) {
        let mut conn = Connection::open(path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        let counted = schema::prepare(&mut conn).unwrap();
        let totals = load_totals(&conn).unwrap();
        let state = WriterState {
            conn,
            totals,
            runs: RunCache::default(),
            pending: Pending::default(),
            unapplied: Unapplied::default(),
        };
        (state, counted)
    }

    fn processed(run: usize, request: &str) -> Event {
        let mut e = Event::new(EventKind::Processed);
        e.run_id = Some(format!("run-{run}"));
        e.request_id = Some(request.to_owned());
        e.video_id = Some("video".into());
        e.qualities = vec!["720p".into()];
        e.elapsed_seconds = Some(3.0);
        e.encode_seconds = Some(1.0 + run as f64);
        e.fps = Some(30.0);
        e
    }

    /// Commits `events` as one group, recorded at a time of its own; returns the kinds they were
    /// stored as.
    fn group(state: &mut WriterState, events: Vec<Event>, settle: bool) -> Vec<EventKind> {
        let at: DateTime<Utc> = "2026-12-01T10:00:00Z".parse().unwrap();
        let at = at + chrono::Duration::seconds(state.totals.last_id.max(0) + events.len() as i64);
        let mut batch = Vec::new();
        let mut answers = Vec::new();
        for event in events {
            let (done, answer) = oneshot::channel();
            batch.push(WriteJob {
                event,
                at: Some(at),
                done,
            });
            answers.push(answer);
        }
        commit(state, &mut batch, settle).unwrap();
        answers
            .into_iter()
            .map(|mut a| a.try_recv().unwrap().unwrap().event.kind)
            .collect()
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// What the aggregates say, to compare two databases: the totals, the runs and the requests.
    type Aggregates = (
        Totals,
        Vec<(String, i64, Option<String>)>,
        Vec<(String, Option<String>)>,
    );

    fn aggregates(conn: &Connection) -> Aggregates {
        let mut runs = conn
            .prepare("SELECT run_id, start_us, outcome FROM runs ORDER BY run_id")
            .unwrap();
        let runs = runs
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut requests = conn
            .prepare("SELECT request_id, outcome FROM requests ORDER BY request_id")
            .unwrap();
        let requests = requests
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        (load_totals(conn).unwrap(), runs, requests)
    }

    #[test]
    fn a_busy_group_is_stored_at_once_and_counted_by_the_next_settle_with_its_duplicates() {
        let dir = TempDir::new("writer-deferred");
        let (mut state, _) = open(&dir.path().join("a.db"));
        let busy: Vec<Event> = (0..10).map(|i| processed(i, &format!("req-{}", i % 8))).collect();
        let kinds = group(&mut state, busy, false);
        // Stored (and answered) at once, the second processed of a request already a duplicate...
        assert_eq!(kinds.iter().filter(|k| **k == EventKind::Duplicate).count(), 2);
        assert_eq!(count(&state.conn, "SELECT count(*) FROM events"), 10);
        // ...but not counted yet: nothing of it is in the aggregates.
        assert_eq!(count(&state.conn, "SELECT count(*) FROM requests"), 0);
        assert_eq!(load_totals(&state.conn).unwrap().last_id, 0);
        // A later busy group sees the requests waiting to be counted.
        let kinds = group(&mut state, (10..16).map(|i| processed(i, "req-3")).collect(), false);
        assert!(kinds.iter().all(|k| *k == EventKind::Duplicate), "{kinds:?}");

        // A read settles: every event stored is counted, once.
        group(&mut state, Vec::new(), true);
        assert_eq!(count(&state.conn, "SELECT count(*) FROM requests"), 8);
        assert_eq!(count(&state.conn, "SELECT count(*) FROM runs"), 16);
        let totals = load_totals(&state.conn).unwrap();
        assert_eq!((totals.last_id, totals.legacy_processed), (16, 8));
        assert_eq!(totals.counts.get("duplicate"), Some(&8));
        assert!(state.unapplied.events.is_empty());
    }

    #[test]
    fn events_stored_but_not_counted_when_killed_are_counted_when_the_database_opens() {
        let dir = TempDir::new("writer-kill");
        let events = |from: usize| {
            (from..from + 12)
                .map(|i| processed(i, &format!("req-{}", i % 9)))
                .collect()
        };
        // One analyzer counts everything as it goes (settling after each group)...
        let (mut settled, _) = open(&dir.path().join("settled.db"));
        group(&mut settled, events(0), true);
        group(&mut settled, events(12), true);
        // ...the other is killed with its second busy group stored and not counted.
        let (mut killed, _) = open(&dir.path().join("killed.db"));
        group(&mut killed, events(0), true);
        group(&mut killed, events(12), false);
        assert_eq!(killed.unapplied.events.len(), 12);
        drop(killed);
        let (reopened, counted) = open(&dir.path().join("killed.db"));
        assert_eq!(counted, 12);
        assert_eq!(aggregates(&reopened.conn), aggregates(&settled.conn));
        // The /get/count numbers given before the kill go on from where they were.
        let mut reopened = reopened;
        let kinds = group(&mut reopened, vec![processed(99, "req-new")], false);
        assert_eq!(kinds, [EventKind::Processed]);
        let n: i64 = count(&reopened.conn, "SELECT legacy_n FROM events ORDER BY id DESC LIMIT 1");
        assert_eq!(n, count(&settled.conn, "SELECT max(legacy_n) FROM events") + 1);
    }
}
