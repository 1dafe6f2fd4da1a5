//! Sending requests to the queue with SendMessageBatch, so that nothing is lost on the way and every
//! request that could not be sent is named.
//!
//! Requests go out in batches of ten (SQS's largest). SQS answers a batch entry by entry, and the
//! answer to each entry decides what happens to it:
//!
//! - accepted: sent, reported with its message id;
//! - refused with `SenderFault`: the request itself is wrong for this queue, and sending it again
//!   cannot help: not sent, with SQS's reason;
//! - refused without `SenderFault` (a server-side problem): sent again, up to [`SEND_ATTEMPTS`]
//!   times in all, with a growing pause.
//!
//! When SQS refuses a whole batch, the error decides:
//!
//! - the queue or the credentials are wrong (no such queue, access denied, bad signature, no
//!   credentials found): nothing else can be sent; every remaining request is reported with that reason, without more calls;
//! - the request was refused for its content (`InvalidParameterValue`, `BatchRequestTooLong`, ...):
//!   one entry may spoil the batch, so each entry is sent again on its own: the good ones go through
//!   and the bad one is named (this is how moto, and SQS for some rules, refuse an entry);
//! - anything else (throttling, a 5xx answer, a timeout, a lost connection): the batch is sent again.
//!
//! On a FIFO queue (URL ending in `.fifo`) each message carries `MessageGroupId` = the video id and
//! a `MessageDeduplicationId` derived from the request id ([`deduplication_id`]): a request sent
//! again within SQS's five-minute deduplication window, by a retry here or by running the
//! producer again on the same file, is enqueued once. On a standard queue a batch whose answer was
//! lost may be enqueued twice; the encoder recognises the second copy by its request id.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::operation::send_message_batch::{SendMessageBatchError, SendMessageBatchOutput};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_smithy_types::retry::ErrorKind;
use encoding_common::EncodeRequest;
use tokio_util::sync::CancellationToken;

use crate::ui::Progress;

/// SQS's largest batch.
pub const BATCH_SIZE: usize = 10;
/// Attempts per request before it counts as not sent (for failures that may pass).
pub const SEND_ATTEMPTS: u32 = 4;
/// The pause before the second attempt; it doubles for each further one.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(200);
/// The namespace of deduplication ids derived from request ids SQS would not accept as they are.
const DEDUPLICATION_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6f1c_2a8e_55b4_4c0e_9d0a_7a3e_41f2_c9b7);

/// One sent message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The request's id.
    pub request_id: String,
    /// SQS's message id.
    pub message_id: String,
    /// The video id.
    pub video_id: String,
}

/// A request that was not sent, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsent {
    /// The request.
    pub request: EncodeRequest,
    /// SQS's (or the connection's) last answer about it.
    pub reason: String,
}

/// The result of sending.
#[derive(Debug, Default)]
pub struct SendReport {
    /// Requests SQS accepted, in the order of its answers.
    pub sent: Vec<Sent>,
    /// Requests that could not be sent.
    pub failed: Vec<Unsent>,
    /// Requests not tried because the run was stopped (SIGINT, SIGTERM).
    pub stopped: Vec<EncodeRequest>,
}

/// What a refusal of a whole batch means for its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Worth trying again as it is (throttling, server trouble, timeouts, connections).
    Transient,
    /// About the content of the request: one entry may be the cause, so each is tried alone.
    Content,
    /// About the queue or the credentials: no request can be sent.
    Fatal,
}

/// Error codes that mean no request can be sent to this queue with these credentials. SQS answers
/// in its JSON protocol (`QueueDoesNotExist`) with the older query code in a header
/// (`AWS.SimpleQueueService.NonExistentQueue`); either may be what the SDK reports.
const FATAL_CODES: &[&str] = &[
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "AccessDenied",
    "AccessDeniedException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "ExpiredToken",
    "InvalidSecurity",
    "InvalidAddress",
    "AWS.SimpleQueueService.UnsupportedOperation",
    "UnsupportedOperation",
    "KmsAccessDenied",
    "KmsDisabled",
    "KmsNotFound",
    "KmsInvalidState",
    "KmsInvalidKeyUsage",
    "KmsOptInRequired",
];

/// Error codes worth another try although their HTTP status is a 4xx.
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "AWS.SimpleQueueService.RequestThrottled",
    "KmsThrottled",
    "RequestTimeout",
    "RequestExpired",
];

/// Classifies a refusal of a whole batch by its error code and HTTP status.
pub fn classify(code: Option<&str>, status: Option<u16>) -> Refusal {
    if code.is_some_and(|c| FATAL_CODES.contains(&c)) || status == Some(403) {
        Refusal::Fatal
    } else if code.is_some_and(|c| TRANSIENT_CODES.contains(&c)) {
        Refusal::Transient
    } else {
        match status {
            Some(429) => Refusal::Transient,
            Some(s) if (400..500).contains(&s) => Refusal::Content,
            _ => Refusal::Transient,
        }
    }
}

fn classify_error(error: &SdkError<SendMessageBatchError, HttpResponse>) -> Refusal {
    match error {
        SdkError::ServiceError(e) => classify(e.err().code(), Some(e.raw().status().as_u16())),
        // The request could not even be built (an invalid queue URL): the same for every entry.
        SdkError::ConstructionFailure(_) => Refusal::Fatal,
        // Not sent, for a reason that is neither the network nor a timeout: in practice, no
        // credentials could be loaded. Every request would fail the same way.
        SdkError::DispatchFailure(d)
            if d.is_user()
                || (d.is_other()
                    && !matches!(
                        d.as_other(),
                        Some(ErrorKind::TransientError | ErrorKind::ThrottlingError | ErrorKind::ServerError)
                    )) =>
        {
            Refusal::Fatal
        }
        _ => Refusal::Transient,
    }
}

/// The `MessageDeduplicationId` of a request on a FIFO queue: the request id itself when SQS accepts
/// it as one (1 to 128 ASCII letters, digits and punctuation), otherwise a UUID (v5) derived from it,
/// so that the same request id always gives the same deduplication id.
pub fn deduplication_id(request_id: &str) -> String {
    let usable = (1..=128).contains(&request_id.len())
        && request_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b.is_ascii_punctuation());
    if usable {
        request_id.to_owned()
    } else {
        uuid::Uuid::new_v5(&DEDUPLICATION_NAMESPACE, request_id.as_bytes()).to_string()
    }
}

/// What one SendMessageBatch answer says about each entry, by request index.
#[derive(Debug, Default, PartialEq, Eq)]
struct BatchAnswer {
    /// Accepted: (index, message id).
    sent: Vec<(usize, String)>,
    /// Refused for good (`SenderFault`): (index, reason).
    refused: Vec<(usize, String)>,
    /// Refused for now, or not mentioned: (index, reason).
    retry: Vec<(usize, String)>,
}

/// Reads a batch answer. Entry ids are the request indices; an id that is not one of `pending` is
/// ignored, and an entry the answer does not mention is tried again.
fn read_answer(pending: &[usize], out: &SendMessageBatchOutput) -> BatchAnswer {
    let index = |id: &str| id.parse::<usize>().ok().filter(|i| pending.contains(i));
    let mut answer = BatchAnswer::default();
    for ok in out.successful() {
        match index(ok.id()) {
            Some(i) => answer.sent.push((i, ok.message_id().to_owned())),
            None => tracing::warn!(entry = ok.id(), "SQS accepted an entry that was not sent; ignored"),
        }
    }
    for bad in out.failed() {
        let Some(i) = index(bad.id()) else {
            tracing::warn!(entry = bad.id(), "SQS refused an entry that was not sent; ignored");
            continue;
        };
        let reason = match bad.message() {
            Some(m) if !m.is_empty() => format!("{}: {m}", bad.code()),
            _ => bad.code().to_owned(),
        };
        if bad.sender_fault() {
            answer.refused.push((i, reason));
        } else {
            answer.retry.push((i, reason));
        }
    }
    for &i in pending {
        let mentioned = answer
            .sent
            .iter()
            .chain(&answer.refused)
            .chain(&answer.retry)
            .any(|(j, _)| *j == i);
        if !mentioned {
            answer.retry.push((i, "SQS's answer did not mention this entry".into()));
        }
    }
    answer
}

/// Sends requests to one queue.
#[derive(Debug, Clone)]
pub struct Sender {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    fifo: bool,
    /// Log each sent message at `info` (plain output) rather than `debug` (under progress bars).
    log_each: bool,
}

impl Sender {
    /// A sender to `queue_url`; a URL ending in `.fifo` gets FIFO message attributes.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: &str, log_each: bool) -> Self {
        Self {
            client,
            queue_url: queue_url.to_owned(),
            fifo: crate::config::is_fifo_queue(queue_url),
            log_each,
        }
    }

    fn entry(&self, index: usize, request: &EncodeRequest) -> SendMessageBatchRequestEntry {
        let mut entry = SendMessageBatchRequestEntry::builder()
            .id(index.to_string())
            .message_body(request.to_json());
        if self.fifo {
            let request_id = request.request_id.as_deref().unwrap_or(&request.video_id);
            entry = entry
                .message_group_id(&request.video_id)
                .message_deduplication_id(deduplication_id(request_id));
        }
        entry.build().expect("the id and the body are set")
    }

    /// Sends every request (see the module docs), calling `on_sent` as SQS accepts each one and
    /// counting each accepted or failed request on `progress`. When `stop` fires, the batch under
    /// way is finished and the rest is reported as stopped.
    pub async fn send_all(
        &self,
        requests: Vec<EncodeRequest>,
        progress: &Progress,
        stop: &CancellationToken,
        on_sent: &mut dyn FnMut(&Sent),
    ) -> SendReport {
        let mut report = SendReport::default();
        let indices: Vec<usize> = (0..requests.len()).collect();
        let mut groups: VecDeque<Vec<usize>> = indices.chunks(BATCH_SIZE).map(<[usize]>::to_vec).collect();
        let failed = |report: &mut SendReport, i: usize, reason: String| {
            let r = &requests[i];
            tracing::error!(
                video_id = %r.video_id,
                request_id = %r.request_id.as_deref().unwrap_or_default(),
                error = %reason,
                "not sent"
            );
            report.failed.push(Unsent {
                request: r.clone(),
                reason,
            });
            progress.inc(1);
        };
        'groups: while let Some(mut pending) = groups.pop_front() {
            let mut last_error: HashMap<usize, String> = HashMap::new();
            for attempt in 1..=SEND_ATTEMPTS {
                if attempt > 1 {
                    let pause = FIRST_RETRY_PAUSE * 2u32.pow(attempt - 2);
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = stop.cancelled() => {}
                    }
                }
                if stop.is_cancelled() {
                    let rest = pending.iter().chain(groups.iter().flatten());
                    report.stopped.extend(rest.map(|&i| requests[i].clone()));
                    break 'groups;
                }
                let entries: Vec<_> = pending.iter().map(|&i| self.entry(i, &requests[i])).collect();
                let answer = self
                    .client
                    .send_message_batch()
                    .queue_url(&self.queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await;
                match answer {
                    Ok(out) => {
                        let answer = read_answer(&pending, &out);
                        for (i, message_id) in answer.sent {
                            let r = &requests[i];
                            let sent = Sent {
                                request_id: r.request_id.clone().unwrap_or_default(),
                                message_id,
                                video_id: r.video_id.clone(),
                            };
                            if self.log_each {
                                tracing::info!(video_id = %sent.video_id, request_id = %sent.request_id, message_id = %sent.message_id, "sent");
                            } else {
                                tracing::debug!(video_id = %sent.video_id, request_id = %sent.request_id, message_id = %sent.message_id, "sent");
                            }
                            on_sent(&sent);
                            report.sent.push(sent);
                            progress.inc(1);
                        }
                        for (i, reason) in answer.refused {
                            failed(&mut report, i, reason);
                        }
                        for (i, reason) in &answer.retry {
                            tracing::warn!(video_id = %requests[*i].video_id, attempt, error = %reason, "a batch entry failed; sending it again");
                        }
                        pending = answer.retry.iter().map(|(i, _)| *i).collect();
                        last_error = answer.retry.into_iter().collect();
                    }
                    Err(e) => {
                        let reason = crate::aws_reason(&e);
                        match classify_error(&e) {
                            Refusal::Fatal => {
                                tracing::error!(error = %reason, queue_url = %self.queue_url, "the queue refuses every request; stopping");
                                let rest: Vec<usize> = pending.iter().chain(groups.iter().flatten()).copied().collect();
                                for i in rest {
                                    failed(&mut report, i, reason.clone());
                                }
                                break 'groups;
                            }
                            Refusal::Content if pending.len() > 1 => {
                                tracing::warn!(entries = pending.len(), error = %reason, "the batch was refused; sending its entries one by one");
                                for &i in pending.iter().rev() {
                                    groups.push_front(vec![i]);
                                }
                                pending.clear();
                            }
                            Refusal::Content => {
                                failed(&mut report, pending[0], reason);
                                pending.clear();
                            }
                            Refusal::Transient => {
                                tracing::warn!(attempt, entries = pending.len(), error = %reason, "sending a batch failed");
                                last_error = pending.iter().map(|&i| (i, reason.clone())).collect();
                            }
                        }
                    }
                }
                if pending.is_empty() {
                    break;
                }
            }
            for i in pending {
                let reason = last_error.remove(&i).unwrap_or_else(|| "not sent".into());
                failed(&mut report, i, format!("{reason} (after {SEND_ATTEMPTS} attempts)"));
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_sqs::types::{BatchResultErrorEntry, SendMessageBatchResultEntry};

    use super::*;

    fn ok(id: &str, message_id: &str) -> SendMessageBatchResultEntry {
        SendMessageBatchResultEntry::builder()
            .id(id)
            .message_id(message_id)
            .md5_of_message_body("x")
            .build()
            .unwrap()
    }

    fn bad(id: &str, code: &str, sender_fault: bool) -> BatchResultErrorEntry {
        BatchResultErrorEntry::builder()
            .id(id)
            .code(code)
            .message("why")
            .sender_fault(sender_fault)
            .build()
            .unwrap()
    }

    #[test]
    fn an_answer_sorts_entries_into_sent_refused_and_retried() {
        let out = SendMessageBatchOutput::builder()
            .successful(ok("3", "m-3"))
            .successful(ok("99", "m-99"))
            .failed(bad("4", "InvalidParameterValue", true))
            .failed(bad("5", "InternalError", false))
            .build()
            .unwrap();
        let answer = read_answer(&[3, 4, 5, 6], &out);
        assert_eq!(answer.sent, [(3, "m-3".to_owned())]);
        assert_eq!(answer.refused, [(4, "InvalidParameterValue: why".to_owned())]);
        assert_eq!(
            answer.retry,
            [
                (5, "InternalError: why".to_owned()),
                (6, "SQS's answer did not mention this entry".to_owned())
            ]
        );
    }

    #[test]
    fn refusals_of_a_whole_batch_are_classified() {
        assert_eq!(
            classify(Some("AWS.SimpleQueueService.NonExistentQueue"), Some(400)),
            Refusal::Fatal
        );
        assert_eq!(classify(Some("QueueDoesNotExist"), Some(400)), Refusal::Fatal);
        assert_eq!(classify(Some("Whatever"), Some(403)), Refusal::Fatal);
        assert_eq!(classify(Some("InvalidParameterValue"), Some(400)), Refusal::Content);
        assert_eq!(classify(Some("BatchRequestTooLong"), Some(400)), Refusal::Content);
        assert_eq!(classify(Some("MissingParameter"), Some(400)), Refusal::Content);
        assert_eq!(classify(Some("RequestThrottled"), Some(400)), Refusal::Transient);
        assert_eq!(classify(None, Some(429)), Refusal::Transient);
        assert_eq!(classify(Some("InternalError"), Some(500)), Refusal::Transient);
        assert_eq!(classify(None, None), Refusal::Transient);
    }

    #[test]
    fn deduplication_ids_are_the_request_id_or_derived_from_it() {
        assert_eq!(deduplication_id("3f0c6a52-3c1e"), "3f0c6a52-3c1e");
        assert_eq!(deduplication_id("a.b_c:d/e"), "a.b_c:d/e");
        let spaced = deduplication_id("batch 7 é");
        assert_eq!(spaced, deduplication_id("batch 7 é"), "derived ids are stable");
        assert_ne!(spaced, deduplication_id("batch 8 é"));
        assert_eq!(spaced.len(), 36);
        assert!(spaced.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    }
}
