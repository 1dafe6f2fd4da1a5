//! One run's message lifecycle: receive, lease, report, and end the message one way.
//!
//! The message is the unit of safety. While this run holds it, its lease is renewed; whatever
//! stops the run, the message ends in exactly one of these states:
//!
//! | how the work ended | the message | reported | exit |
//! |---|---|---|---|
//! | renditions stored ([`Done::Encoded`]) | **deleted** | `processed` | 0 |
//! | already stored by this request / by another ([`Done::AlreadyStored`]) | **deleted** | `processed` / `duplicate` | 0 |
//! | split ([`Done::Split`]): the chunk messages sent first; then the audio for the stitch ([`Work::after_split`]: a signal only stops that) | **deleted** | `split` | 0 |
//! | a chunk stored or found stored ([`Done::Chunk`]): the stitch message sent first, when due | **deleted** | `chunk` | 0 |
//! | a chunk or stitch message could not be sent | **released** | `failed` | 1 |
//! | the request can never succeed ([`Stop::Reject`], a body that is not a request) | **dead-lettered** (deleted when the queue has none) | `rejected` | 0 |
//! | dead-lettering failed | **released** | `failed` | 1 |
//! | a failure that may pass ([`Stop::Fail`]) | **released** (visible again at once) | `failed` | 1 |
//! | the lease was lost ([`Stop::Cancelled`] without a signal) | **released** | `failed` | 1 |
//! | SIGTERM/SIGINT, during the work or after it | **released** | `killed` | 143 |
//! | no message | — | `empty` | 0 |
//! | SIGTERM/SIGINT during the long poll | — (one SQS handed over stays leased) | `killed` | 143 |
//! | receiving failed | — | `failed` | 1 |
//! | SIGKILL | **left leased**: it returns when the lease ends | nothing | 137 |
//!
//! `started` carries the lease (`lease_seconds`); while the work goes on, `progress` (stage,
//! percent, frames per second) is reported every [`PROGRESS_EVERY`] when it changed, so a run
//! that stops reporting for longer than its lease is one the analyzer can call `lost`.
//!
//! With a results queue (`RESULT_QUEUE_URL`), a request that ends (`processed`, `duplicate`,
//! `rejected`, or `failed` on its last allowed delivery) also gets one completion notice
//! ([`encoding_common::notice`]), sent *before* its message is deleted or dead-lettered: a notice
//! that cannot be sent releases the message, so it is sent again by the next delivery (at least
//! once; a FIFO results queue deduplicates).
//!
//! `processed` is reported *before* the delete: a run killed between the two leaves the message
//! to be delivered again, and the next run, finding the renditions stored by the same request,
//! reports `processed` again, which the analyzer counts once per request. Reporting after the
//! delete would instead lose the report for good. A failed delete, release or report is logged
//! and changes nothing else: the lease brings the message back, a redelivery finds the work done.

use std::time::{Duration, Instant};

use encoding_common::identity::request_identity;
use encoding_common::notice::{Notice, NoticeOutcome};
use encoding_common::part::Part;
use encoding_common::{EncodeRequest, Event, EventKind};
use tokio_util::sync::CancellationToken;

use crate::lease::Lease;
use crate::notify::Notify;
use crate::progress::{Progress, Snapshot};
use crate::queue::{Outgoing, Queue, Received};
use crate::report::Reports;
use crate::work::{Done, Stop, Work};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Renditions stored, message deleted.
    Processed,
    /// Renditions already existed; message deleted.
    Duplicate,
    /// No message.
    Empty,
    /// Invalid request; message dead-lettered.
    Rejected,
    /// Failure; message released.
    Failed,
    /// Stopped by a signal; message released.
    Killed,
    /// The request was split: its chunk messages sent, its message deleted.
    Split,
    /// A chunk was stored (or found stored); its message deleted.
    Chunk,
    /// Bad settings; nothing received.
    ConfigError,
}

impl Outcome {
    /// The process exit code of the contract.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Processed | Self::Duplicate | Self::Empty | Self::Rejected | Self::Split | Self::Chunk => 0,
            Self::Failed => 1,
            Self::ConfigError => 2,
            Self::Killed => 143,
        }
    }
}

/// How often a working run reports its progress (when it changed).
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The settings the lifecycle needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Long-poll wait, seconds.
    pub receive_wait_seconds: i32,
    /// The lease taken at receive and renewed.
    pub visibility_timeout: Duration,
    /// This run's host (pod) name, for reports.
    pub host: String,
}

/// One run over a queue, a work, a report sink and a notice sink.
#[derive(Debug)]
pub struct Run<Q, W, R, N> {
    queue: Q,
    work: W,
    reports: R,
    notices: N,
    settings: Settings,
    run_id: String,
    started: Instant,
    /// Cancelled by SIGTERM/SIGINT.
    shutdown: CancellationToken,
}

/// The seams a run works through.
#[derive(Debug)]
pub struct Parts<Q, W, R, N> {
    /// The request queue.
    pub queue: Q,
    /// The work on a request.
    pub work: W,
    /// Reports to the analyzer.
    pub reports: R,
    /// Completion notices to the results queue.
    pub notices: N,
}

impl<Q: Queue, W: Work, R: Reports, N: Notify> Run<Q, W, R, N> {
    /// A run; `shutdown` is cancelled by SIGTERM/SIGINT (the caller installs the handlers).
    pub fn new(parts: Parts<Q, W, R, N>, settings: Settings, shutdown: CancellationToken, run_id: String) -> Self {
        let Parts {
            queue,
            work,
            reports,
            notices,
        } = parts;
        Self {
            queue,
            work,
            reports,
            notices,
            settings,
            run_id,
            started: Instant::now(),
            shutdown,
        }
    }

    /// Takes at most one message and ends it; returns how the run ended.
    pub async fn go(self) -> Outcome {
        // Stopping during the long poll drops the request: a message SQS may have handed to it
        // stays leased and returns when the lease ends; nothing is lost.
        let received = tokio::select! {
            r = self.queue.receive(self.settings.receive_wait_seconds, self.settings.visibility_timeout) => r,
            _ = self.shutdown.cancelled() => {
                tracing::info!("stopped by a signal while waiting for a message");
                self.report(self.event(EventKind::Killed, None, None)).await;
                return Outcome::Killed;
            }
        };
        let msg = match received {
            Ok(Some(m)) => m,
            Ok(None) => {
                tracing::info!(wait_seconds = self.settings.receive_wait_seconds, "the queue is empty");
                self.report(self.event(EventKind::Empty, None, None)).await;
                return Outcome::Empty;
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot receive from the queue");
                let mut event = self.event(EventKind::Failed, None, None);
                event.reason = Some(format!("{e:#}"));
                self.report(event).await;
                return Outcome::Failed;
            }
        };
        tracing::Span::current().record("message_id", msg.message_id.as_str());
        tracing::info!(receive_count = msg.receive_count, "received a message");

        // Cancelled by a signal or a lost lease: stops the work.
        let work = self.shutdown.child_token();
        let lease = Lease::hold(
            self.queue.clone(),
            msg.clone(),
            self.settings.visibility_timeout,
            work.clone(),
        );
        let request = EncodeRequest::from_json(&msg.body);
        if let Ok(r) = &request {
            tracing::Span::current().record("video_id", r.video_id.as_str());
        }
        self.report(self.event(EventKind::Started, Some(&msg), request.as_ref().ok()))
            .await;
        let result = match &request {
            Ok(r) => self.work_reporting_progress(&msg, r, &work).await,
            Err(e) => Err(Stop::Reject(e.to_string())),
        };
        // A signal that arrived while the renditions were being stored still counts as a kill:
        // the message is released and the next run finds them stored.
        let result = match result {
            Ok(_) if self.shutdown.is_cancelled() => Err(Stop::Cancelled),
            r => r,
        };
        let lost = lease.lost_reason();
        lease.end().await;
        self.end(&msg, request.ok().as_ref(), result, lost).await
    }

    /// Does the work, reporting `progress` every [`PROGRESS_EVERY`] while it changes.
    async fn work_reporting_progress(
        &self,
        msg: &Received,
        request: &EncodeRequest,
        cancel: &CancellationToken,
    ) -> Result<Done, Stop> {
        let (progress, mut latest) = Progress::channel();
        let work = self.work.work_on(request, &self.run_id, cancel, &progress);
        tokio::pin!(work);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
        let mut reported = Snapshot::default();
        loop {
            tokio::select! {
                result = &mut work => return result,
                _ = tick.tick() => {
                    let now = *latest.borrow_and_update();
                    if now == reported {
                        continue;
                    }
                    let Some(stage) = now.stage.name() else { continue };
                    reported = now;
                    let mut event = self.event(EventKind::Progress, Some(msg), Some(request));
                    event.stage = Some(stage.to_owned());
                    event.percent = now.percent;
                    event.fps = now.fps;
                    self.report(event).await;
                }
            }
        }
    }

    /// Ends the message as the work's result says.
    async fn end(
        &self,
        msg: &Received,
        request: Option<&EncodeRequest>,
        result: Result<Done, Stop>,
        lost: Option<String>,
    ) -> Outcome {
        match result {
            Ok(Done::Encoded { encoded, outputs }) => {
                let mut event = self.event(EventKind::Processed, Some(msg), request);
                event.encode_seconds = Some(encoded.encode_seconds);
                event.frames = Some(encoded.frames);
                event.fps = Some(encoded.frames as f64 / encoded.encode_seconds.max(1e-6));
                event.source_seconds = encoded.source_seconds;
                event.outputs = outputs.iter().map(|o| o.uri.clone()).collect();
                let mut notice = self.notice(NoticeOutcome::Processed, msg, request, &event);
                if let Some(n) = &mut notice {
                    n.outputs = outputs;
                }
                self.finish(msg, request, event, notice, Outcome::Processed).await
            }
            Ok(Done::AlreadyStored { same_request, outputs }) => {
                let (kind, outcome, reason) = if same_request {
                    (
                        EventKind::Processed,
                        Outcome::Processed,
                        "stored by an earlier delivery of this request",
                    )
                } else {
                    (
                        EventKind::Duplicate,
                        Outcome::Duplicate,
                        "already stored for the same source and settings",
                    )
                };
                tracing::info!(%kind, "the renditions are already stored for this source and settings; skipping the work");
                let mut event = self.event(kind, Some(msg), request);
                event.outputs = outputs.iter().map(|o| o.uri.clone()).collect();
                event.reason = Some(reason.into());
                let ended = if same_request {
                    NoticeOutcome::Processed
                } else {
                    NoticeOutcome::Duplicate
                };
                let mut notice = self.notice(ended, msg, request, &event);
                if let Some(n) = &mut notice {
                    n.outputs = outputs;
                }
                self.finish(msg, request, event, notice, outcome).await
            }
            Ok(Done::Split { count, messages, then }) => {
                if let Err(e) = self.send_all(&messages).await {
                    return self.fail(msg, request, e).await;
                }
                let mut event = self.event(EventKind::Split, Some(msg), request);
                event.chunks = Some(count);
                event.reason = Some(format!("{} of {count} chunk messages sent", messages.len()));
                let outcome = self.finish(msg, request, event, None, Outcome::Split).await;
                // The request is deleted and the chunk Jobs are starting: what is left (the
                // audio for the stitch) can only save the stitch work, never fail the request.
                if let Some(then) = then {
                    self.work.after_split(then, &self.shutdown).await;
                    tracing::info!(seconds = self.started.elapsed().as_secs_f64(), "the split run is over");
                }
                outcome
            }
            Ok(Done::Chunk { encoded, stitch, note }) => {
                if let Err(e) = self.send_all(stitch.as_slice()).await {
                    return self.fail(msg, request, e).await;
                }
                let mut event = self.event(EventKind::Chunk, Some(msg), request);
                if let Some(encoded) = &encoded {
                    event.encode_seconds = Some(encoded.encode_seconds);
                    event.frames = Some(encoded.frames);
                    event.fps = Some(encoded.frames as f64 / encoded.encode_seconds.max(1e-6));
                }
                event.reason = match (&encoded, &stitch, note) {
                    (_, _, Some(note)) => Some(note),
                    (None, None, None) => Some("stored by an earlier delivery".into()),
                    (_, Some(_), None) => Some("every chunk is stored: the stitch message is sent".into()),
                    (Some(_), None, None) => None,
                };
                self.finish(msg, request, event, None, Outcome::Chunk).await
            }
            Err(Stop::Reject(reason)) => self.reject(msg, request, reason).await,
            Err(Stop::Cancelled) if !self.shutdown.is_cancelled() => {
                // Only a lost lease cancels work without a signal.
                let reason = lost.unwrap_or_else(|| "the work was cancelled".into());
                self.fail(msg, request, anyhow::anyhow!(reason)).await
            }
            Err(Stop::Cancelled) => self.killed(msg, request).await,
            Err(Stop::Fail(e)) => self.fail(msg, request, e).await,
        }
    }

    /// Sends the completion notice, reports the outcome, then deletes the message. A notice that
    /// cannot be sent releases the message instead: the next delivery finds the renditions stored
    /// and sends it then.
    async fn finish(
        &self,
        msg: &Received,
        request: Option<&EncodeRequest>,
        event: Event,
        notice: Option<Notice>,
        outcome: Outcome,
    ) -> Outcome {
        if let Err(e) = self.send_notice(notice).await {
            return self.fail(msg, request, e).await;
        }
        self.report(event).await;
        if let Err(e) = self.queue.delete(msg).await {
            // The renditions are stored and reported; a redelivery will find them and skip.
            tracing::warn!(error = %format!("{e:#}"), "deleting the message failed; a redelivery will be skipped as already stored");
        }
        tracing::info!(outcome = ?outcome, seconds = self.started.elapsed().as_secs_f64(), "done");
        outcome
    }

    async fn reject(&self, msg: &Received, request: Option<&EncodeRequest>, reason: String) -> Outcome {
        let mut event = self.event(EventKind::Rejected, Some(msg), request);
        event.reason = Some(reason.clone());
        let notice = self.notice(NoticeOutcome::Rejected, msg, request, &event);
        if let Err(e) = self.send_notice(notice).await {
            return self.fail(msg, request, e).await;
        }
        match self.queue.dead_letter(msg, &reason).await {
            Ok(Some(dlq)) => {
                tracing::warn!(%reason, dead_letter_queue = %dlq, "rejected the request; moved it to the dead-letter queue")
            }
            Ok(None) => tracing::error!(
                %reason,
                body = %msg.body,
                "rejected the request; the queue has no dead-letter queue, so the message was deleted after this record"
            ),
            Err(e) => {
                tracing::error!(%reason, error = %format!("{e:#}"), "the request is invalid but could not be dead-lettered; releasing it");
                let e = e.context(format!("dead-lettering a rejected request ({reason})"));
                return self.fail(msg, request, e).await;
            }
        }
        self.report(event).await;
        Outcome::Rejected
    }

    async fn fail(&self, msg: &Received, request: Option<&EncodeRequest>, error: anyhow::Error) -> Outcome {
        tracing::error!(error = %format!("{error:#}"), "the work failed; releasing the message for a retry");
        let mut event = self.event(EventKind::Failed, Some(msg), request);
        event.reason = Some(format!("{error:#}"));
        if self.last_delivery(msg).await {
            // SQS dead-letters the message at its next receive: the request is over, say so.
            let notice = self.notice(NoticeOutcome::Failed, msg, request, &event);
            if let Err(e) = self.send_notice(notice).await {
                tracing::warn!(error = %format!("{e:#}"), "the last delivery failed and its notice could not be sent");
            }
        }
        if let Err(e) = self.queue.release(msg).await {
            tracing::warn!(error = %format!("{e:#}"), "releasing the message failed; it returns when its lease ends");
        }
        self.report(event).await;
        Outcome::Failed
    }

    /// Whether `msg` is on its last allowed delivery (only asked when notices are sent).
    async fn last_delivery(&self, msg: &Received) -> bool {
        if !self.notices.enabled() {
            return false;
        }
        match self.queue.max_receive_count().await {
            Ok(Some(max)) => msg.receive_count >= max,
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot tell whether this is the last delivery");
                false
            }
        }
    }

    /// The notice of a request that ended as `outcome`, from its terminal `event` (the caller
    /// adds the outputs, with what it measured of them); none for a body that is not a request
    /// (there is nobody to tell).
    fn notice(
        &self,
        outcome: NoticeOutcome,
        msg: &Received,
        request: Option<&EncodeRequest>,
        event: &Event,
    ) -> Option<Notice> {
        let request = request?;
        let mut n = Notice::new(request_identity(request), request.video_id.clone(), outcome);
        n.reason = event.reason.clone();
        n.encode_seconds = event.encode_seconds;
        n.frames = event.frames;
        n.fps = event.fps;
        n.source_seconds = event.source_seconds;
        n.run_id = Some(self.run_id.clone());
        n.message_id = Some(msg.message_id.clone());
        n.receive_count = Some(msg.receive_count);
        Some(n)
    }

    /// Sends the chunk or stitch messages of a split request, before its own message is deleted:
    /// one that fails releases that message, and its next delivery sends what is still missing.
    async fn send_all(&self, messages: &[Outgoing]) -> anyhow::Result<()> {
        for m in messages {
            self.queue.send(m).await?;
        }
        if !messages.is_empty() {
            tracing::info!(messages = messages.len(), "sent the messages of the split");
        }
        Ok(())
    }

    async fn send_notice(&self, notice: Option<Notice>) -> anyhow::Result<()> {
        match notice {
            Some(n) if self.notices.enabled() => self.notices.notify(&n).await,
            _ => Ok(()),
        }
    }

    async fn killed(&self, msg: &Received, request: Option<&EncodeRequest>) -> Outcome {
        tracing::warn!("stopped by a signal; releasing the message");
        if let Err(e) = self.queue.release(msg).await {
            tracing::warn!(error = %format!("{e:#}"), "releasing the message failed; it returns when its lease ends");
        }
        self.report(self.event(EventKind::Killed, Some(msg), request)).await;
        Outcome::Killed
    }

    fn event(&self, kind: EventKind, msg: Option<&Received>, request: Option<&EncodeRequest>) -> Event {
        let mut e = Event::new(kind);
        e.run_id = Some(self.run_id.clone());
        e.host = Some(self.settings.host.clone());
        e.elapsed_seconds = Some(self.started.elapsed().as_secs_f64());
        if let Some(m) = msg {
            e.message_id = Some(m.message_id.clone());
            e.receive_count = Some(m.receive_count);
            if matches!(kind, EventKind::Started | EventKind::Progress) {
                // The analyzer calls a run lost once it has been silent for longer than this.
                e.lease_seconds = Some(self.settings.visibility_timeout.as_secs().max(1));
            }
        }
        if let Some(r) = request {
            e.video_id = Some(r.video_id.clone());
            e.qualities = r.qualities.iter().map(|q| q.as_str().to_owned()).collect();
            e.request_id = Some(request_identity(r));
            e.chunk = r.part.as_ref().and_then(Part::index);
            e.chunks = r.part.as_ref().map(Part::count);
        }
        e
    }

    async fn report(&self, event: Event) {
        self.reports.send(&event).await;
    }
}

#[cfg(test)]
mod tests;
