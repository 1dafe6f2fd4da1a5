//! The producer: puts encode requests on the queue.
//!
//! ```text
//! # a video already in S3: one message per quality (KEDA runs them in parallel Jobs)
//! producer --queue-url "$QUEUE_URL" --source s3://media-in/uploads/clip.mov \
//!          --quality 480p --quality 720p [--one-message] [--count 3] [--output s3://media-out/renditions]
//!
//! # requests written out in full, one JSON object per line (the queue's message format)
//! producer --queue-url "$QUEUE_URL" --from-file requests.jsonl [--skip-invalid]
//!
//! # local videos: uploaded under --input-uri, then one request per video and quality
//! producer --queue-url "$QUEUE_URL" --upload talk.mov demo.mp4 \
//!          --input-uri s3://media-in/uploads --quality 720p
//! ```
//!
//! Everything is checked before anything is uploaded or sent: a file with an invalid line sends
//! nothing (unless `--skip-invalid`). `--dry-run` prints the message bodies, one per line, and
//! touches nothing (its output is a valid `--from-file` input). `--json` prints one line per sent
//! message. Progress is drawn as bars when stderr is a terminal and logged otherwise.
//!
//! # Exit status
//!
//! `0` every request was sent (invalid lines skipped with `--skip-invalid` do not count) and, with
//! `--wait`, processed; `1` a request was not sent, an upload failed, the input is invalid, or
//! (with `--wait`) a request was rejected, failed for good or had no outcome within
//! `--wait-timeout-seconds` (each is named in the log and in the final error); `2` a usage error;
//! `130` / `143` stopped by SIGINT / SIGTERM.
//!
//! # Layout
//!
//! - [`config`]: the command line and its environment fallbacks;
//! - [`requests`]: building requests for an S3 object, reading a JSON Lines file;
//! - [`upload`]: uploading local files (multipart for large ones);
//! - [`send`]: SendMessageBatch with retries, FIFO attributes, and a report of what was not sent;
//! - [`wait`]: `--wait`, the outcome of every request sent, from the results queue or the analyzer;
//! - [`ui`]: progress bars or log lines; [`stop`]: SIGINT and SIGTERM.

pub mod config;
pub mod requests;
pub mod send;
pub mod stop;
pub mod ui;
pub mod upload;
pub mod wait;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use encoding_common::{EncodeRequest, S3Uri};

pub use config::{Config, Mode};
pub use send::{SendReport, Sent, Unsent};
pub use stop::{Interrupted, Signal, Stop};
pub use ui::Ui;

/// Runs the producer until everything is sent, or the run is stopped by SIGINT or SIGTERM.
///
/// # Errors
///
/// When the input is invalid, an upload failed, or any request could not be sent; the error names
/// each. When stopped by a signal, the error's source is [`Interrupted`] (see [`exit_code`]).
pub async fn run(config: Config, ui: &Ui) -> anyhow::Result<()> {
    let stop = Stop::on_signals().context("installing the signal handlers")?;
    run_until(config, ui, &stop).await
}

/// As [`run`], stopping when `stop` fires instead of on signals.
///
/// # Errors
///
/// As [`run`].
pub async fn run_until(config: Config, ui: &Ui, stop: &Stop) -> anyhow::Result<()> {
    let mut summary = Summary::default();
    let requests = match config.mode() {
        Mode::Source(source) => requests::for_source(&config, source).context("invalid request")?,
        Mode::File(path) => {
            let requests = read_requests(path, config.skip_invalid, &mut summary)?;
            requests.into_iter().map(|r| r.request).collect()
        }
        Mode::Upload(files) => {
            let Some(requests) = upload_files(&config, files, ui, stop, &mut summary).await? else {
                return summary.finish(stop);
            };
            requests
        }
    };
    if config.dry_run {
        let mut out = std::io::stdout().lock();
        for r in &requests {
            // A closed stdout (`| head`) must not stop the run.
            let _ = writeln!(out, "{}", r.to_json());
        }
        tracing::info!(messages = requests.len(), "dry run: nothing sent");
        return Ok(());
    }
    let queue_url = config.queue_url.as_deref().context("--queue-url is required")?;
    let sdk = encoding_common::aws::load_config().await;
    let sender = send::Sender::new(encoding_common::aws::sqs_client(&sdk), queue_url, !ui.has_bars());
    let progress = ui.progress("send", requests.len() as u64, false);
    let json = config.json;
    let mut print = |s: &Sent| {
        if json {
            let line =
                serde_json::json!({"request_id": s.request_id, "message_id": s.message_id, "video_id": s.video_id});
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
    };
    summary.total += requests.len();
    tracing::info!(queue_url, fifo = config.fifo(), requests = requests.len(), "sending");
    let report = sender.send_all(requests, &progress, stop.token(), &mut print).await;
    progress.finish();
    summary.sent += report.sent.len();
    summary.failed.extend(report.failed);
    summary.stopped.extend(report.stopped);
    if config.wait && !report.sent.is_empty() && !stop.token().is_cancelled() {
        let pending = report
            .sent
            .iter()
            .map(|s| wait::Pending {
                request_id: s.request_id.clone(),
                video_id: s.video_id.clone(),
            })
            .collect();
        summary.waited = Some(wait_for(&config, &sdk, pending, ui, stop).await?);
    }
    summary.finish(stop)
}

/// `--wait`: the outcomes of the requests sent.
async fn wait_for(
    config: &Config,
    sdk: &aws_config::SdkConfig,
    pending: Vec<wait::Pending>,
    ui: &Ui,
    stop: &Stop,
) -> anyhow::Result<wait::WaitReport> {
    let outcomes = match (config.result_queue_url(), config.analyzer_url()) {
        (Some(url), _) => wait::Outcomes::Queue {
            client: encoding_common::aws::sqs_client(sdk),
            url: url.to_owned(),
        },
        (None, Some(url)) => wait::Outcomes::Analyzer {
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .context("an HTTP client")?,
            url: url.to_owned(),
        },
        (None, None) => bail!("--wait needs --result-queue-url or --analyzer-url"),
    };
    let limit = (config.wait_timeout_seconds > 0).then(|| std::time::Duration::from_secs(config.wait_timeout_seconds));
    let progress = ui.progress("wait", pending.len() as u64, false);
    tracing::info!(
        requests = pending.len(),
        from = outcomes.name(),
        "waiting for the outcomes"
    );
    let report = wait::wait_for(&outcomes, pending, &progress, stop.token(), limit).await;
    progress.finish();
    report
}

/// The exit status for an error of [`run`]: 130 or 143 when stopped by a signal, otherwise 1.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    error
        .downcast_ref::<Interrupted>()
        .map_or(1, |Interrupted(signal)| signal.exit_code())
}

pub(crate) use encoding_common::aws::error_reason as aws_reason;

/// Reads a JSON Lines file, reporting each invalid line; with invalid lines and without
/// `skip_invalid`, nothing is sent.
fn read_requests(path: &Path, skip_invalid: bool, summary: &mut Summary) -> anyhow::Result<Vec<requests::LineRequest>> {
    let parsed = requests::read_file(path)?;
    let file = path.display().to_string();
    for bad in &parsed.invalid {
        tracing::error!(file = %file, line = bad.line, error = %bad.reason, "invalid request");
    }
    if !parsed.invalid.is_empty() {
        let lines: Vec<String> = parsed.invalid.iter().map(ToString::to_string).collect();
        if !skip_invalid {
            bail!(
                "{file}: {} invalid line(s), nothing sent (--skip-invalid sends the valid ones): {}",
                lines.len(),
                lines.join("; ")
            );
        }
        tracing::warn!(file = %file, skipped = lines.len(), valid = parsed.requests.len(), "skipping the invalid lines");
        summary.skipped_lines = lines.len();
    }
    if parsed.requests.is_empty() {
        bail!("{file} holds no valid request: nothing to send");
    }
    tracing::info!(file = %file, requests = parsed.requests.len(), "requests read");
    Ok(parsed.requests)
}

/// Uploads the files and returns the requests for those uploaded, or `None` when there is nothing
/// to send (every upload failed, or the run was stopped).
async fn upload_files(
    config: &Config,
    files: &[PathBuf],
    ui: &Ui,
    stop: &Stop,
    summary: &mut Summary,
) -> anyhow::Result<Option<Vec<EncodeRequest>>> {
    let input_uri = config.input_uri.as_deref().unwrap_or_default();
    let input = S3Uri::parse("input", input_uri, false).context("invalid --input-uri")?;
    let template = requests::Template::from_config(config).context("invalid request")?;
    let video_id = config.video_id.as_deref().filter(|v| !v.is_empty());
    if files.len() > 1
        && let Some(v) = video_id
    {
        tracing::warn!(
            video_id = v,
            files = files.len(),
            "VIDEO_ID ignored: each of several files is named after itself"
        );
    }
    let planned = upload::plan(files, &input, video_id)?;
    let mut per_file = Vec::with_capacity(planned.len());
    for p in &planned {
        let reqs = template
            .requests(&p.target, &p.video_id)
            .with_context(|| format!("invalid request for {}", p.path.display()))?;
        per_file.push(reqs);
    }
    if config.dry_run {
        for p in &planned {
            tracing::info!(file = %p.path.display(), uri = %p.target, bytes = p.size, content_type = p.content_type, "dry run: would upload");
        }
        return Ok(Some(per_file.into_iter().flatten().collect()));
    }
    let sdk = encoding_common::aws::load_config().await;
    let uploader = upload::Uploader::new(encoding_common::aws::s3_client(&sdk));
    let progress = ui.progress("upload", planned.iter().map(|p| p.size).sum(), true);
    let mut requests = Vec::new();
    for (p, reqs) in planned.iter().zip(per_file) {
        if stop.token().is_cancelled() {
            summary.not_uploaded.push(p.path.clone());
            continue;
        }
        progress.set_message(p.path.display().to_string());
        match uploader.upload(p, &progress, stop.token()).await {
            Ok(()) => {
                summary.uploaded.push(p.target.clone());
                requests.extend(reqs);
            }
            Err(upload::UploadError::Stopped) => summary.not_uploaded.push(p.path.clone()),
            Err(e) => {
                let reason = format!("{:#}", anyhow::Error::from(e));
                tracing::error!(file = %p.path.display(), uri = %p.target, error = %reason, "upload failed; its requests are not sent");
                summary.upload_failed.push((p.path.clone(), reason));
            }
        }
    }
    progress.finish();
    if stop.token().is_cancelled() {
        summary.uploaded_not_requested = requests.iter().map(|r| r.source.clone()).collect();
        summary.uploaded_not_requested.dedup();
        return Ok(None);
    }
    Ok((!requests.is_empty()).then_some(requests))
}

/// What a run did, for the final log line and error.
#[derive(Debug, Default)]
struct Summary {
    /// Requests handed to the sender.
    total: usize,
    /// Requests SQS accepted.
    sent: usize,
    /// Requests not sent, with the reason.
    failed: Vec<Unsent>,
    /// Requests not tried because the run was stopped.
    stopped: Vec<EncodeRequest>,
    /// Invalid lines skipped with `--skip-invalid`.
    skipped_lines: usize,
    /// Objects uploaded.
    uploaded: Vec<S3Uri>,
    /// Files whose upload failed, with the reason.
    upload_failed: Vec<(PathBuf, String)>,
    /// Files not uploaded because the run was stopped.
    not_uploaded: Vec<PathBuf>,
    /// Objects uploaded whose requests were not sent because the run was stopped.
    uploaded_not_requested: Vec<S3Uri>,
    /// With `--wait`: the outcomes.
    waited: Option<wait::WaitReport>,
}

impl Summary {
    /// Logs the outcome; an error naming everything not done, if anything was not.
    fn finish(self, stop: &Stop) -> anyhow::Result<()> {
        tracing::info!(
            sent = self.sent,
            failed = self.failed.len(),
            stopped = self.stopped.len(),
            skipped_invalid_lines = self.skipped_lines,
            uploaded = self.uploaded.len(),
            upload_failed = self.upload_failed.len(),
            "done"
        );
        let mut problems = Vec::new();
        if !self.upload_failed.is_empty() {
            let files: Vec<String> = self
                .upload_failed
                .iter()
                .map(|(path, why)| format!("{} ({why})", path.display()))
                .collect();
            problems.push(format!("{} upload(s) failed: {}", files.len(), files.join("; ")));
        }
        if !self.failed.is_empty() {
            // Grouped by reason: a missing queue names every request once, not its reason each time.
            let mut by_reason: Vec<(&str, Vec<String>)> = Vec::new();
            for u in &self.failed {
                match by_reason.iter_mut().find(|(reason, _)| *reason == u.reason) {
                    Some((_, requests)) => requests.push(describe(&u.request)),
                    None => by_reason.push((&u.reason, vec![describe(&u.request)])),
                }
            }
            let groups: Vec<String> = by_reason
                .iter()
                .map(|(reason, requests)| format!("{} ({reason})", requests.join(", ")))
                .collect();
            problems.push(format!(
                "{} of {} request(s) not sent: {}",
                self.failed.len(),
                self.total,
                groups.join("; ")
            ));
        }
        if !self.stopped.is_empty() {
            let requests: Vec<String> = self.stopped.iter().map(describe).collect();
            problems.push(format!(
                "{} request(s) not sent: {}",
                requests.len(),
                requests.join(", ")
            ));
        }
        if !self.uploaded_not_requested.is_empty() {
            let objects: Vec<String> = self.uploaded_not_requested.iter().map(ToString::to_string).collect();
            problems.push(format!("uploaded but not requested: {}", objects.join(", ")));
        }
        if !self.not_uploaded.is_empty() {
            let files: Vec<String> = self.not_uploaded.iter().map(|p| p.display().to_string()).collect();
            problems.push(format!("not uploaded: {}", files.join(", ")));
        }
        if let Some(w) = &self.waited {
            tracing::info!(
                ready = w.ready.len(),
                not_ready = w.not_ready.len(),
                no_outcome = w.unknown.len(),
                "waited"
            );
            if !w.not_ready.is_empty() {
                let ended: Vec<String> = w
                    .not_ready
                    .iter()
                    .map(|(p, n)| {
                        format!(
                            "{} (request_id {}): {}{}",
                            p.video_id,
                            p.request_id,
                            n.outcome,
                            n.reason.as_deref().map(|r| format!(", {r}")).unwrap_or_default()
                        )
                    })
                    .collect();
                problems.push(format!(
                    "{} request(s) not processed: {}",
                    ended.len(),
                    ended.join("; ")
                ));
            }
            if !w.unknown.is_empty() {
                let pending: Vec<String> = w
                    .unknown
                    .iter()
                    .map(|p| format!("{} (request_id {})", p.video_id, p.request_id))
                    .collect();
                problems.push(format!(
                    "{} request(s) with no outcome yet: {}",
                    pending.len(),
                    pending.join(", ")
                ));
            }
        }
        if let Some(signal) = stop.signal() {
            let error = anyhow::Error::new(Interrupted(signal));
            return Err(if problems.is_empty() {
                error
            } else {
                error.context(problems.join("; "))
            });
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("; "));
        }
        Ok(())
    }
}

/// `video_id [qualities] (request_id)`, the way a request is named in summaries.
fn describe(r: &EncodeRequest) -> String {
    let qualities: Vec<&str> = r.qualities.iter().map(|q| q.as_str()).collect();
    format!(
        "{} [{}] (request_id {})",
        r.video_id,
        qualities.join(","),
        r.request_id.as_deref().unwrap_or("none")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(video_id: &str, request_id: &str) -> EncodeRequest {
        let body = format!(
            r#"{{"video_id":"{video_id}","source":"s3://in-b/a.mp4","qualities":["480p","720p"],"request_id":"{request_id}"}}"#
        );
        EncodeRequest::from_json(&body).unwrap()
    }

    #[test]
    fn a_summary_without_problems_is_success() {
        let summary = Summary {
            total: 2,
            sent: 2,
            ..Summary::default()
        };
        summary.finish(&Stop::manual()).unwrap();
    }

    #[test]
    fn a_summary_names_each_request_not_sent_grouped_by_reason() {
        let unsent = |video_id: &str, request_id: &str, reason: &str| Unsent {
            request: request(video_id, request_id),
            reason: reason.into(),
        };
        let summary = Summary {
            total: 5,
            sent: 2,
            failed: vec![
                unsent("big", "r-2", "InvalidParameterValue: too long"),
                unsent("v", "r-4", "InternalError (after 4 attempts)"),
                unsent("huge", "r-5", "InvalidParameterValue: too long"),
            ],
            ..Summary::default()
        };
        let err = summary.finish(&Stop::manual()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "3 of 5 request(s) not sent: big [480p,720p] (request_id r-2), huge [480p,720p] (request_id r-5) \
             (InvalidParameterValue: too long); v [480p,720p] (request_id r-4) (InternalError (after 4 attempts))"
        );
        assert_eq!(exit_code(&err), 1);
    }

    #[test]
    fn a_stopped_run_exits_with_the_signals_status_and_says_what_was_not_done() {
        let stop = Stop::manual();
        stop.request(Signal::Terminate);
        let summary = Summary {
            total: 1,
            stopped: vec![request("v", "r-1")],
            not_uploaded: vec![PathBuf::from("b.mp4")],
            ..Summary::default()
        };
        let err = summary.finish(&stop).unwrap_err();
        assert_eq!(exit_code(&err), 143);
        let text = format!("{err:#}");
        assert!(text.contains("v [480p,720p] (request_id r-1)"), "{text}");
        assert!(text.contains("not uploaded: b.mp4"), "{text}");
        assert!(text.ends_with("stopped by SIGTERM"), "{text}");
    }
}
