//! One worker run: receive, lease, download, transcode, verify, upload, report, delete.
//!
//! The message is the unit of safety. While this run holds it, its lease is renewed; whatever
//! stops the run, the message ends in exactly one of these states:
//!
//! - **deleted**, after every rendition was verified and stored and `processed` (or `duplicate`)
//!   was reported;
//! - **released** (visible again at once), on SIGTERM/SIGINT (`killed`, exit 143) or on a failure
//!   that may pass (`failed`, exit 1) — SQS's redrive policy moves it to the dead-letter queue
//!   after `maxReceiveCount` failures;
//! - **dead-lettered** with the reason, when the request can never succeed (`rejected`, exit 0);
//! - **left leased**, only on SIGKILL: it returns when the lease ends, and nothing partial was
//!   published (an S3 object appears whole or not at all; multipart uploads are aborted or
//!   expire through the bucket's lifecycle rule).
//!
//! `processed` is reported *before* the delete: a run killed between the two leaves the message
//! to be delivered again, and the next run, finding the renditions stored by the same request,
//! reports `processed` again, which the analyzer counts once per request. Reporting after the
//! delete would instead lose the report for good.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use encoding_common::{EncodeRequest, Event, EventKind, Quality, S3Uri};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use transcode::{CancelHandle, RenditionSpec, TranscodeError, TranscodeOptions, TranscodeReport};

use crate::config::WorkerConfig;
use crate::queue::{Lease, Queue, Received};
use crate::report::Reporter;
use crate::storage::{SourceError, Storage, TransferError};
use crate::verify;

/// Identifies the encoding settings in the renditions' metadata, for the duplicate check: bump it
/// when the ladder changes so that old renditions are made again.
pub const SETTINGS_VERSION: &str = "h264-high-aac-v1";

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
    /// Bad settings; nothing received.
    ConfigError,
}

impl Outcome {
    /// The process exit code of the contract.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Processed | Self::Duplicate | Self::Empty | Self::Rejected => 0,
            Self::Failed => 1,
            Self::ConfigError => 2,
            Self::Killed => 143,
        }
    }
}

/// Why the work on a message stopped short.
#[derive(Debug)]
enum Stop {
    /// The request can never succeed.
    Reject(String),
    /// Something failed that may pass.
    Fail(anyhow::Error),
    /// A signal, or the lease was lost.
    Cancelled,
}

impl From<anyhow::Error> for Stop {
    fn from(e: anyhow::Error) -> Self {
        Self::Fail(e)
    }
}

impl From<TransferError> for Stop {
    fn from(e: TransferError) -> Self {
        match e {
            TransferError::Cancelled => Self::Cancelled,
            TransferError::Failed(e) => Self::Fail(e),
        }
    }
}

/// What the work on a message achieved.
enum Done {
    /// New renditions stored.
    Encoded {
        report: Box<TranscodeReport>,
        outputs: Vec<String>,
        encode_seconds: f64,
    },
    /// The renditions were already stored for the same source and settings; `same_request` when
    /// by this very request (an earlier delivery that did not get to delete the message).
    AlreadyStored { same_request: bool, outputs: Vec<String> },
}

/// Runs the worker once.
pub async fn run(config: WorkerConfig) -> Outcome {
    let run_id = uuid::Uuid::new_v4().to_string();
    let span = tracing::info_span!("run", run_id = %run_id, message_id = tracing::field::Empty, video_id = tracing::field::Empty);
    Run::new(config, run_id).go().instrument(span).await
}

struct Run {
    config: WorkerConfig,
    run_id: String,
    started: Instant,
    reporter: Reporter,
    /// Cancelled by SIGTERM/SIGINT.
    shutdown: CancellationToken,
    /// Cancelled by a signal or a lost lease: stops the work.
    work: CancellationToken,
}

impl Run {
    fn new(config: WorkerConfig, run_id: String) -> Self {
        // Signals first: from here on a SIGTERM is handled, never the default action.
        let shutdown = CancellationToken::new();
        watch_signals(shutdown.clone());
        let reporter = Reporter::new(config.analyzer_url.as_deref(), config.analyzer_token.as_deref());
        let work = shutdown.child_token();
        Self {
            config,
            run_id,
            started: Instant::now(),
            reporter,
            shutdown,
            work,
        }
    }

    async fn go(self) -> Outcome {
        let sdk = encoding_common::aws::load_config().await;
        let queue = Queue::new(encoding_common::aws::sqs_client(&sdk), self.config.queue_url.clone());
        let storage = Storage::new(encoding_common::aws::s3_client(&sdk));

        // Stopping during the long poll drops the request: a message SQS may have handed to it
        // stays leased and returns when the lease ends; nothing is lost.
        let received = tokio::select! {
            r = queue.receive(self.config.receive_wait_seconds, self.config.visibility_timeout) => r,
            _ = self.shutdown.cancelled() => {
                tracing::info!("stopped by a signal while waiting for a message");
                self.report(self.event(EventKind::Killed, None, None)).await;
                return Outcome::Killed;
            }
        };
        let msg = match received {
            Ok(Some(m)) => m,
            Ok(None) => {
                tracing::info!(wait_seconds = self.config.receive_wait_seconds, "the queue is empty");
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

        let lease = Lease::hold(
            queue.clone(),
            msg.clone(),
            self.config.visibility_timeout,
            self.work.clone(),
        );
        let request = EncodeRequest::from_json(&msg.body);
        if let Ok(r) = &request {
            tracing::Span::current().record("video_id", r.video_id.as_str());
        }
        self.report(self.event(EventKind::Started, Some(&msg), request.as_ref().ok()))
            .await;

        let result = match &request {
            Ok(r) => self.work_on(r, &storage).await,
            Err(e) => Err(Stop::Reject(e.to_string())),
        };
        let request = request.ok();
        let request = request.as_ref();

        // A signal that arrived while the renditions were being stored still counts as a kill:
        // the message is released and the next run finds them stored.
        let result = match result {
            Ok(_) if self.shutdown.is_cancelled() => Err(Stop::Cancelled),
            r => r,
        };
        match result {
            Ok(Done::Encoded {
                report,
                outputs,
                encode_seconds,
            }) => {
                lease.end().await;
                let mut event = self.event(EventKind::Processed, Some(&msg), request);
                event.encode_seconds = Some(encode_seconds);
                event.frames = Some(report.frames_decoded);
                event.fps = Some(report.frames_decoded as f64 / encode_seconds.max(1e-6));
                event.source_seconds = report.source.duration_seconds;
                event.outputs = outputs;
                self.finish(&queue, &msg, event, Outcome::Processed).await
            }
            Ok(Done::AlreadyStored { same_request, outputs }) => {
                lease.end().await;
                let kind = if same_request {
                    EventKind::Processed
                } else {
                    EventKind::Duplicate
                };
                tracing::info!(%kind, "the renditions are already stored for this source and settings; skipping the work");
                let mut event = self.event(kind, Some(&msg), request);
                event.outputs = outputs;
                event.reason = Some(if same_request {
                    "stored by an earlier delivery of this request".into()
                } else {
                    "already stored for the same source and settings".into()
                });
                let outcome = if same_request {
                    Outcome::Processed
                } else {
                    Outcome::Duplicate
                };
                self.finish(&queue, &msg, event, outcome).await
            }
            Err(Stop::Reject(reason)) => {
                lease.end().await;
                self.reject(&queue, &msg, request, reason).await
            }
            Err(Stop::Cancelled) if !self.shutdown.is_cancelled() => {
                // Only a lost lease cancels work without a signal.
                let reason = lease.lost_reason().unwrap_or_else(|| "the work was cancelled".into());
                lease.end().await;
                self.fail(&queue, &msg, request, anyhow::anyhow!(reason)).await
            }
            Err(Stop::Cancelled) => {
                lease.end().await;
                self.killed(&queue, &msg, request).await
            }
            Err(Stop::Fail(e)) => {
                lease.end().await;
                self.fail(&queue, &msg, request, e).await
            }
        }
    }

    /// The work itself, from source lookup to stored renditions.
    async fn work_on(&self, request: &EncodeRequest, storage: &Storage) -> Result<Done, Stop> {
        let targets: Vec<(Quality, S3Uri)> = request
            .qualities
            .iter()
            .map(|q| {
                request
                    .rendition_uri(self.config.default_output.as_ref(), *q)
                    .map(|uri| (*q, uri))
                    .ok_or_else(|| {
                        Stop::Reject("the request has no \"output\" and the encoder has no OUTPUT_URI".into())
                    })
            })
            .collect::<Result<_, _>>()?;
        let source = match storage.head_source(&request.source).await {
            Ok(s) => s,
            Err(e @ SourceError::Missing(_)) => return Err(Stop::Reject(e.to_string())),
            Err(SourceError::Other(e)) => return Err(Stop::Fail(e)),
        };
        let metadata = |q: Quality| -> HashMap<String, String> {
            HashMap::from([
                ("source-bucket".to_owned(), request.source.bucket.clone()),
                ("source-key".to_owned(), request.source.key.clone()),
                ("source-etag".to_owned(), source.etag.clone()),
                ("settings".to_owned(), format!("{SETTINGS_VERSION}/{q}")),
                ("request-id".to_owned(), request_identity(request)),
                ("video-id".to_owned(), request.video_id.clone()),
            ])
        };

        // At-least-once delivery: skip the work when every rendition is already stored from the
        // same source content with the same settings.
        let mut same_request = true;
        let mut all_stored = true;
        for (q, uri) in &targets {
            let expected = metadata(*q);
            match storage.existing_metadata(uri).await? {
                Some(found) if same_rendition(&found, &expected) => {
                    same_request &= found.get("request-id") == expected.get("request-id");
                }
                _ => {
                    all_stored = false;
                    break;
                }
            }
        }
        if all_stored {
            return Ok(Done::AlreadyStored {
                same_request,
                outputs: targets.iter().map(|(_, u)| u.to_string()).collect(),
            });
        }

        let scratch = Scratch::create(&self.config.work_dir, &self.run_id)?;
        let input = scratch.path.join("source");
        let t = Instant::now();
        let bytes = storage.download(&request.source, &input, &self.work).await?;
        if bytes != source.size {
            return Err(Stop::Fail(anyhow::anyhow!(
                "downloaded {bytes} bytes of the {} announced for {}",
                source.size,
                request.source
            )));
        }
        tracing::info!(bytes, seconds = t.elapsed().as_secs_f64(), source = %request.source, "downloaded the source");
        if self.work.is_cancelled() {
            return Err(Stop::Cancelled);
        }

        let t = Instant::now();
        let specs: Vec<RenditionSpec> = targets
            .iter()
            .map(|(q, _)| RenditionSpec {
                name: q.as_str().to_owned(),
                short_side: q.short_side(),
            })
            .collect();
        let report = self.transcode(input, specs, scratch.path.join("out")).await?;
        let encode_seconds = t.elapsed().as_secs_f64();
        tracing::info!(
            frames = report.frames_decoded,
            encode_seconds,
            fps = report.frames_decoded as f64 / encode_seconds.max(1e-6),
            "transcoded"
        );

        for out in &report.outputs {
            verify::check_rendition(out, &report).map_err(Stop::Fail)?;
        }
        let mut stored = Vec::new();
        for ((q, uri), out) in targets.iter().zip(&report.outputs) {
            let object = storage.upload(&out.path, uri, &metadata(*q), &self.work).await?;
            tracing::info!(%uri, bytes = object.size, crc32 = %object.crc32, width = out.width, height = out.height, "stored the rendition");
            stored.push(uri.to_string());
        }
        Ok(Done::Encoded {
            report: Box::new(report),
            outputs: stored,
            encode_seconds,
        })
    }

    /// Runs the transcode on a blocking thread, cancelled with the run, logging progress.
    async fn transcode(
        &self,
        input: PathBuf,
        specs: Vec<RenditionSpec>,
        out_dir: PathBuf,
    ) -> Result<TranscodeReport, Stop> {
        let cancel = CancelHandle::new();
        let bridge = {
            let (cancel, work) = (cancel.clone(), self.work.clone());
            tokio::spawn(async move {
                work.cancelled().await;
                cancel.cancel();
            })
        };
        let span = tracing::Span::current();
        let job = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let mut last_log = Instant::now();
            let mut progress = |p: &transcode::Progress| {
                if last_log.elapsed() >= PROGRESS_EVERY {
                    last_log = Instant::now();
                    tracing::info!(
                        percent = p.percent().map(|x| (x * 10.0).round() / 10.0),
                        frames = p.frames,
                        fps = (p.fps * 10.0).round() / 10.0,
                        position_seconds = (p.position_seconds * 100.0).round() / 100.0,
                        "encoding"
                    );
                }
            };
            transcode::transcode(
                &input,
                &specs,
                &out_dir,
                &TranscodeOptions::default(),
                &mut progress,
                &cancel,
            )
        });
        let result = job.await;
        bridge.abort();
        match result {
            Ok(Ok(report)) => Ok(report),
            Ok(Err(TranscodeError::Cancelled)) => Err(Stop::Cancelled),
            Ok(Err(e)) if e.is_rejection() => Err(Stop::Reject(format!("the source is not a usable video: {e}"))),
            Ok(Err(e)) => Err(Stop::Fail(anyhow::Error::new(e).context("transcoding"))),
            Err(e) => Err(Stop::Fail(anyhow::anyhow!("the transcode thread failed: {e}"))),
        }
    }

    /// Reports the outcome, then deletes the message.
    async fn finish(&self, queue: &Queue, msg: &Received, event: Event, outcome: Outcome) -> Outcome {
        self.report(event).await;
        if let Err(e) = queue.delete(msg).await {
            // The renditions are stored and reported; a redelivery will find them and skip.
            tracing::warn!(error = %format!("{e:#}"), "deleting the message failed; a redelivery will be skipped as already stored");
        }
        tracing::info!(outcome = ?outcome, seconds = self.started.elapsed().as_secs_f64(), "done");
        outcome
    }

    async fn reject(&self, queue: &Queue, msg: &Received, request: Option<&EncodeRequest>, reason: String) -> Outcome {
        match queue.dead_letter(msg, &reason).await {
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
                return self
                    .fail(
                        queue,
                        msg,
                        request,
                        e.context(format!("dead-lettering a rejected request ({reason})")),
                    )
                    .await;
            }
        }
        let mut event = self.event(EventKind::Rejected, Some(msg), request);
        event.reason = Some(reason);
        self.report(event).await;
        Outcome::Rejected
    }

    async fn fail(
        &self,
        queue: &Queue,
        msg: &Received,
        request: Option<&EncodeRequest>,
        error: anyhow::Error,
    ) -> Outcome {
        tracing::error!(error = %format!("{error:#}"), "the work failed; releasing the message for a retry");
        if let Err(e) = queue.release(msg).await {
            tracing::warn!(error = %format!("{e:#}"), "releasing the message failed; it returns when its lease ends");
        }
        let mut event = self.event(EventKind::Failed, Some(msg), request);
        event.reason = Some(format!("{error:#}"));
        self.report(event).await;
        Outcome::Failed
    }

    async fn killed(&self, queue: &Queue, msg: &Received, request: Option<&EncodeRequest>) -> Outcome {
        tracing::warn!("stopped by a signal; releasing the message");
        if let Err(e) = queue.release(msg).await {
            tracing::warn!(error = %format!("{e:#}"), "releasing the message failed; it returns when its lease ends");
        }
        self.report(self.event(EventKind::Killed, Some(msg), request)).await;
        Outcome::Killed
    }

    fn event(&self, kind: EventKind, msg: Option<&Received>, request: Option<&EncodeRequest>) -> Event {
        let mut e = Event::new(kind);
        e.run_id = Some(self.run_id.clone());
        e.host = Some(self.config.host.clone());
        e.elapsed_seconds = Some(self.started.elapsed().as_secs_f64());
        if let Some(m) = msg {
            e.message_id = Some(m.message_id.clone());
            e.receive_count = Some(m.receive_count);
        }
        if let Some(r) = request {
            e.video_id = Some(r.video_id.clone());
            e.qualities = r.qualities.iter().map(|q| q.as_str().to_owned()).collect();
            e.request_id = Some(request_identity(r));
        }
        e
    }

    async fn report(&self, event: Event) {
        self.reporter.send(&event).await;
    }
}

/// How often progress is logged while encoding.
const PROGRESS_EVERY: Duration = Duration::from_secs(3);

/// The identity of a request for the duplicate check and the analyzer: its `request_id`, or,
/// without one, a digest of the request itself.
fn request_identity(r: &EncodeRequest) -> String {
    r.request_id.clone().unwrap_or_else(|| {
        // FNV-1a: stable across builds, unlike std's hasher.
        let digest = r.to_json().bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("body-{digest:016x}")
    })
}

/// Whether stored metadata describes the rendition we would make.
fn same_rendition(found: &HashMap<String, String>, expected: &HashMap<String, String>) -> bool {
    ["source-bucket", "source-key", "source-etag", "settings"]
        .iter()
        .all(|k| found.get(*k).is_some() && found.get(*k) == expected.get(*k))
}

/// Cancels `token` on SIGTERM or SIGINT. The handlers are installed before this returns, so a
/// signal that arrives from then on is never lost to the default action (which would end the
/// process without releasing the message).
fn watch_signals(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot listen for SIGTERM/SIGINT");
        return;
    };
    crate::signals::resume();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::warn!(signal = name, "stopping");
        token.cancel();
    });
}

/// A scratch directory for one run, removed when dropped.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn create(work_dir: &Path, run_id: &str) -> anyhow::Result<Self> {
        let path = work_dir.join(format!("encoder-{run_id}"));
        std::fs::create_dir_all(&path)
            .map_err(|e| anyhow::anyhow!("creating the scratch directory {}: {e}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_contract() {
        assert_eq!(Outcome::Processed.exit_code(), 0);
        assert_eq!(Outcome::Duplicate.exit_code(), 0);
        assert_eq!(Outcome::Empty.exit_code(), 0);
        assert_eq!(Outcome::Rejected.exit_code(), 0);
        assert_eq!(Outcome::Failed.exit_code(), 1);
        assert_eq!(Outcome::ConfigError.exit_code(), 2);
        assert_eq!(Outcome::Killed.exit_code(), 143);
    }

    #[test]
    fn a_rendition_matches_only_with_the_same_source_content_and_settings() {
        let expected = HashMap::from([
            ("source-bucket".to_owned(), "b".to_owned()),
            ("source-key".to_owned(), "k".to_owned()),
            ("source-etag".to_owned(), "\"e1\"".to_owned()),
            ("settings".to_owned(), "v1/480p".to_owned()),
            ("request-id".to_owned(), "r1".to_owned()),
        ]);
        let mut found = expected.clone();
        found.insert("request-id".into(), "other".into());
        assert!(same_rendition(&found, &expected));
        found.insert("source-etag".into(), "\"e2\"".into());
        assert!(!same_rendition(&found, &expected));
        assert!(!same_rendition(&HashMap::new(), &expected));
    }

    #[test]
    fn a_request_without_id_gets_a_stable_identity() {
        let r = EncodeRequest::from_json(r#"{"video_id":"v","source":"s3://in-b/a.mp4","quality":"480p"}"#).unwrap();
        assert_eq!(request_identity(&r), request_identity(&r.clone()));
        assert!(request_identity(&r).starts_with("body-"));
    }
}
