//! What an event changes in its request's row (`requests`), and, for a split request, in
//! `request_chunks`: inside the writer's transaction, as part of [`Apply`].
//!
//! A request's row says whether it was processed (it counts once), the outcome it stands at with
//! its reason and outputs, its latest event, and, once an event of a split request named it, its
//! plan's number of chunks. The events of a split request move it as follows:
//!
//! | event | the request's outcome |
//! |---|---|
//! | `split`; a chunk run's `chunk` or `duplicate` | none (its chunks are being encoded) |
//! | a chunk or stitch run's `killed`, `failed` | that, not final: the message is delivered again |
//! | a chunk or stitch run's `rejected` | `rejected`, final: the request can never finish |
//! | the stitch run's `processed` | `processed`, final, once |
//! | any `started` | unchanged (its run's state says it is at work) |

use encoding_common::{Event, EventKind};
use rusqlite::{OptionalExtension, params};

use super::StoreError;
use super::StoredEvent;
use super::aggregate::{Apply, Noted};

/// What an event does to its request's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Leaves it as it is (a `started` report: its run's state says the request is at work).
    Keeps,
    /// Sets it to this kind, with the event's reason and outputs.
    Sets(EventKind),
    /// Clears it: the request is at work in chunks (`split`, a chunk stored or found stored).
    Clears,
}

impl Standing {
    fn of(e: &Event) -> Self {
        match e.kind {
            EventKind::Split | EventKind::Chunk => Self::Clears,
            // A chunk found stored is no request found done.
            EventKind::Duplicate if e.chunk.is_some() => Self::Clears,
            k if k.is_terminal() => Self::Sets(k),
            _ => Self::Keeps,
        }
    }
}

impl Apply<'_> {
    /// Turns a `processed` event into `duplicate` when its request already has one: a request
    /// counts as processed once (a split request too: only its stitch run processes it). A
    /// `processed` event of a request never seen writes the request's row at once (one insert,
    /// where a look-up and a write would be two): it says so.
    ///
    /// # Errors
    ///
    /// When SQLite fails.
    pub fn dedup(&mut self, event: &mut Event, recorded_at: &str) -> Result<Noted, StoreError> {
        if event.kind != EventKind::Processed {
            return Ok(Noted::No);
        }
        let Some(rid) = &event.request_id else {
            return Ok(Noted::No);
        };
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO requests (request_id, processed, outcome, last_kind, last_run, last_at, reason, outputs,
                                       chunks)
                 VALUES (?1, 1, 'processed', 'processed', ?2, ?3, ?4, ?5, ?6) ON CONFLICT(request_id) DO NOTHING",
            )?
            .execute(params![
                rid,
                event.run_id,
                recorded_at,
                event.reason,
                outputs_json(event),
                event.chunks
            ])?;
        if inserted == 1 {
            if event.chunks.is_some() {
                self.totals.split_requests += 1;
            }
            return Ok(Noted::Yes);
        }
        let processed: Option<bool> = self
            .conn
            .prepare_cached("SELECT processed FROM requests WHERE request_id = ?1")?
            .query_row(params![rid], |r| r.get(0))
            .optional()?;
        if processed == Some(true) {
            event.kind = EventKind::Duplicate;
            event
                .reason
                .get_or_insert_with(|| "this request was already counted as processed".into());
        }
        Ok(Noted::No)
    }

    /// Notes `s` in its request's row: its latest event, the outcome it gives the request (see
    /// the module's table) with its reason and outputs, unless the request was already processed
    /// (which it stays), and the chunks of a split request.
    pub(super) fn note_request(&mut self, rid: &str, s: &StoredEvent) -> Result<(), StoreError> {
        let e = &s.event;
        if e.chunks.is_some() {
            self.note_split(rid, e)?;
        }
        let standing = Standing::of(e);
        let outcome = match standing {
            Standing::Sets(k) => Some(k.as_str()),
            Standing::Keeps | Standing::Clears => None,
        };
        let outputs = outcome.and(outputs_json(e));
        self.conn
            .prepare_cached(
                "INSERT INTO requests (request_id, processed, outcome, last_kind, last_run, last_at, reason, outputs,
                                       chunks)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT(request_id) DO UPDATE SET processed = max(processed, excluded.processed),
                     outcome = CASE WHEN processed OR ?10 THEN outcome ELSE excluded.outcome END,
                     reason = CASE WHEN processed OR ?10 THEN reason ELSE excluded.reason END,
                     outputs = CASE WHEN processed OR ?10 THEN outputs ELSE excluded.outputs END,
                     last_kind = excluded.last_kind, last_run = excluded.last_run, last_at = excluded.last_at,
                     chunks = coalesce(excluded.chunks, chunks)",
            )?
            .execute(params![
                rid,
                e.kind == EventKind::Processed,
                outcome,
                e.kind.as_str(),
                e.run_id,
                s.recorded_at,
                outcome.and(e.reason.as_deref()),
                outputs,
                e.chunks,
                standing == Standing::Keeps
            ])?;
        Ok(())
    }

    /// Counts what an event carrying `chunks` tells of its split request, before its row is
    /// written: the request, the first time an event of a split request names it; the chunk, the
    /// first time a `chunk` event stores it.
    fn note_split(&mut self, rid: &str, e: &Event) -> Result<(), StoreError> {
        let split_before: Option<Option<u32>> = self
            .conn
            .prepare_cached("SELECT chunks FROM requests WHERE request_id = ?1")?
            .query_row(params![rid], |r| r.get(0))
            .optional()?;
        if split_before.flatten().is_none() {
            self.totals.split_requests += 1;
        }
        if let (EventKind::Chunk, Some(chunk), Some(chunks)) = (e.kind, e.chunk, e.chunks) {
            let stored = self
                .conn
                .prepare_cached(
                    "INSERT INTO request_chunks (request_id, chunks, chunk) VALUES (?1, ?2, ?3)
                     ON CONFLICT DO NOTHING",
                )?
                .execute(params![rid, chunks, chunk])?;
            self.totals.chunks_stored += stored as u64;
        }
        Ok(())
    }
}

/// The outputs of an event, as `requests.outputs` keeps them (JSON), or `None` without any.
fn outputs_json(e: &Event) -> Option<String> {
    (!e.outputs.is_empty()).then(|| serde_json::to_string(&e.outputs).expect("strings serialize"))
}
