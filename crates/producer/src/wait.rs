//! `--wait`: after sending, wait for the outcome of every request sent.
//!
//! Outcomes come from the results queue (`RESULT_QUEUE_URL`), where the encoder puts one
//! completion notice per request ([`encoding_common::notice`]); or, when no results queue is set,
//! from the result analyzer (`ANALYZER_URL`), asked about each request still pending. The run
//! exits 0 only when every request was processed (or found already stored: a duplicate); a
//! rejection, a failure on the last delivery, or the wait's time limit makes it exit 1, naming each
//! request not ready.
//!
//! On the results queue the producer takes only its own requests' notices (deleting them); a
//! notice of another producer's request is left for it, visible again after a short lease.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use encoding_common::notice::{Notice, NoticeOutcome};
use tokio_util::sync::CancellationToken;

use crate::ui::Progress;

/// Where the outcomes come from.
#[derive(Debug, Clone)]
pub enum Outcomes {
    /// The results queue.
    Queue {
        /// An SQS client.
        client: aws_sdk_sqs::Client,
        /// The queue's URL.
        url: String,
    },
    /// The result analyzer, asked per request.
    Analyzer {
        /// An HTTP client.
        client: reqwest::Client,
        /// Its base URL, without a trailing `/`.
        url: String,
    },
}

impl Outcomes {
    /// What the outcomes are read from, for the log.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Queue { .. } => "the results queue",
            Self::Analyzer { .. } => "the analyzer",
        }
    }
}

/// A request being waited for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Its request id.
    pub request_id: String,
    /// Its video id, for messages.
    pub video_id: String,
}

/// How the wait ended, request by request.
#[derive(Debug, Default)]
pub struct WaitReport {
    /// Requests whose renditions are stored, with their outcome.
    pub ready: Vec<(Pending, Notice)>,
    /// Requests that ended otherwise (rejected, failed), with their notice.
    pub not_ready: Vec<(Pending, Notice)>,
    /// Requests with no outcome when the wait ended (time limit or stop).
    pub unknown: Vec<Pending>,
}

/// How long one long poll of the results queue waits.
const POLL_SECONDS: i32 = 10;
/// How long a notice of another producer's request stays hidden from the others.
const FOREIGN_LEASE_SECONDS: i32 = 5;
/// How often the analyzer is asked.
const ANALYZER_EVERY: Duration = Duration::from_secs(2);

/// Waits until every request in `pending` has an outcome, `limit` has passed, or `stop` fires.
///
/// # Errors
///
/// When the results queue or the analyzer keeps failing (for about a minute).
pub async fn wait_for(
    outcomes: &Outcomes,
    pending: Vec<Pending>,
    progress: &Progress,
    stop: &CancellationToken,
    limit: Option<Duration>,
) -> anyhow::Result<WaitReport> {
    let started = Instant::now();
    let mut waiting: BTreeMap<String, Pending> = pending.into_iter().map(|p| (p.request_id.clone(), p)).collect();
    let mut report = WaitReport::default();
    let mut failures_since = None::<Instant>;
    while !waiting.is_empty() && !stop.is_cancelled() && limit.is_none_or(|l| started.elapsed() < l) {
        let round = tokio::select! {
            r = next_outcomes(outcomes, &waiting) => r,
            () = stop.cancelled() => break,
        };
        let notices = match round {
            Ok(n) => {
                failures_since = None;
                n
            }
            Err(e) => {
                let since = *failures_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(60) {
                    return Err(e.context("waiting for the outcomes"));
                }
                tracing::warn!(error = %format!("{e:#}"), "reading the outcomes failed; trying again");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        for notice in notices {
            let Some(p) = waiting.remove(&notice.request_id) else {
                continue;
            };
            progress.inc(1);
            tracing::info!(
                request_id = %p.request_id,
                video_id = %p.video_id,
                outcome = %notice.outcome,
                reason = notice.reason.as_deref().unwrap_or(""),
                outputs = notice.outputs.len(),
                "outcome"
            );
            if notice.outcome.is_ready() {
                report.ready.push((p, notice));
            } else {
                report.not_ready.push((p, notice));
            }
        }
    }
    report.unknown = waiting.into_values().collect();
    Ok(report)
}

/// One round: the notices of waited-for requests that could be found now.
async fn next_outcomes(outcomes: &Outcomes, waiting: &BTreeMap<String, Pending>) -> anyhow::Result<Vec<Notice>> {
    match outcomes {
        Outcomes::Queue { client, url } => from_queue(client, url, waiting).await,
        Outcomes::Analyzer { client, url } => {
            tokio::time::sleep(ANALYZER_EVERY).await;
            from_analyzer(client, url, waiting).await
        }
    }
}

async fn from_queue(
    client: &aws_sdk_sqs::Client,
    url: &str,
    waiting: &BTreeMap<String, Pending>,
) -> anyhow::Result<Vec<Notice>> {
    let out = client
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(POLL_SECONDS)
        .visibility_timeout(30)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(crate::aws_reason(&e)))
        .with_context(|| format!("receiving from the results queue {url}"))?;
    let mut found = Vec::new();
    for m in out.messages.unwrap_or_default() {
        let handle = m.receipt_handle.clone().unwrap_or_default();
        let notice = m.body.as_deref().map(Notice::from_json);
        match notice {
            Some(Ok(n)) if waiting.contains_key(&n.request_id) => {
                client
                    .delete_message()
                    .queue_url(url)
                    .receipt_handle(&handle)
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!(crate::aws_reason(&e)))
                    .context("deleting a notice from the results queue")?;
                found.push(n);
            }
            other => {
                if let Some(Err(e)) = &other {
                    tracing::warn!(message_id = m.message_id.as_deref().unwrap_or(""), error = %e, "not a completion notice; left on the results queue");
                }
                // Another producer's (or an unreadable) message: back to the others shortly.
                let _ = client
                    .change_message_visibility()
                    .queue_url(url)
                    .receipt_handle(&handle)
                    .visibility_timeout(FOREIGN_LEASE_SECONDS)
                    .send()
                    .await;
            }
        }
    }
    Ok(found)
}

/// Asks the analyzer for each waited-for request's outcome: `GET /requests/{request_id}`, whose
/// answer has `outcome` (`processed`, `duplicate`, `rejected`, `failed`, or absent while the
/// request is not over), `reason` and `outputs`. A `failed` counts only when `final` is true (the
/// last allowed delivery).
async fn from_analyzer(
    client: &reqwest::Client,
    url: &str,
    waiting: &BTreeMap<String, Pending>,
) -> anyhow::Result<Vec<Notice>> {
    let mut found = Vec::new();
    for (id, p) in waiting {
        let answer = client
            .get(format!("{url}/requests/{}", encode_path(id)))
            .send()
            .await
            .with_context(|| format!("asking the analyzer at {url}"))?;
        if answer.status() == reqwest::StatusCode::NOT_FOUND {
            continue;
        }
        let answer = answer
            .error_for_status()
            .with_context(|| format!("asking the analyzer at {url}"))?;
        let v: serde_json::Value = answer.json().await.context("reading the analyzer's answer")?;
        if let Some(n) = notice_from_analyzer(id, &p.video_id, &v) {
            found.push(n);
        }
    }
    Ok(found)
}

/// The notice an analyzer answer amounts to, if the request is over.
fn notice_from_analyzer(request_id: &str, video_id: &str, v: &serde_json::Value) -> Option<Notice> {
    let outcome = match v["outcome"].as_str()? {
        "processed" => NoticeOutcome::Processed,
        "duplicate" => NoticeOutcome::Duplicate,
        "rejected" => NoticeOutcome::Rejected,
        "failed" if v["final"].as_bool() == Some(true) => NoticeOutcome::Failed,
        _ => return None,
    };
    let mut n = Notice::new(request_id, video_id, outcome);
    n.reason = v["reason"].as_str().map(str::to_owned);
    n.outputs = v["outputs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o.as_str())
                .map(encoding_common::notice::NoticeOutput::at)
                .collect()
        })
        .unwrap_or_default();
    Some(n)
}

/// Percent-encodes a path segment (request ids are free text).
fn encode_path(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_analyzer_answer_is_an_outcome_only_once_the_request_is_over() {
        let v = serde_json::json!({"outcome": "processed", "outputs": ["s3://o/v/480p.mp4"]});
        let n = notice_from_analyzer("r", "v", &v).unwrap();
        assert_eq!(n.outcome, NoticeOutcome::Processed);
        assert_eq!(n.outputs[0].uri, "s3://o/v/480p.mp4");
        assert!(notice_from_analyzer("r", "v", &serde_json::json!({"outcome": "failed"})).is_none());
        let last = serde_json::json!({"outcome": "failed", "final": true, "reason": "S3 is down"});
        assert_eq!(
            notice_from_analyzer("r", "v", &last).unwrap().reason.as_deref(),
            Some("S3 is down")
        );
        assert!(notice_from_analyzer("r", "v", &serde_json::json!({"status": "running"})).is_none());
    }

    #[test]
    fn request_ids_are_percent_encoded_in_the_path() {
        assert_eq!(encode_path("batch 7/intro"), "batch%207%2Fintro");
        assert_eq!(encode_path("3f0c-AB_9.x~"), "3f0c-AB_9.x~");
    }
}
