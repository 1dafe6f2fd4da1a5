//! The queue side of a run: receive one message, hold its lease, and end it one of three ways —
//! delete (done), release (retry at once) or dead-letter (never retry).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};
use tokio_util::sync::CancellationToken;

use crate::config::SQS_MAX_VISIBILITY_SECONDS;

/// One received message.
#[derive(Debug, Clone)]
pub struct Received {
    /// SQS's message id.
    pub message_id: String,
    /// The handle for this delivery (renew, release, delete).
    pub receipt_handle: String,
    /// The body, as sent.
    pub body: String,
    /// How many times SQS has delivered the message, this time included.
    pub receive_count: u32,
    /// When this run received it (the 12-hour in-flight cap counts from here).
    pub received_at: Instant,
}

/// The queue a run works on.
#[derive(Debug, Clone)]
pub struct Queue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl Queue {
    /// The queue at `url`.
    pub fn new(client: aws_sdk_sqs::Client, url: String) -> Self {
        Self { client, url }
    }

    /// One long-poll receive of at most one message, leased for `lease`.
    pub async fn receive(&self, wait_seconds: i32, lease: Duration) -> anyhow::Result<Option<Received>> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(1)
            .wait_time_seconds(wait_seconds)
            .visibility_timeout(lease.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .context("receiving from the queue")?;
        let Some(msg) = out.messages.unwrap_or_default().into_iter().next() else {
            return Ok(None);
        };
        let receive_count = msg
            .attributes
            .as_ref()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        Ok(Some(Received {
            message_id: msg.message_id.unwrap_or_default(),
            receipt_handle: msg.receipt_handle.context("a received message has a receipt handle")?,
            body: msg.body.unwrap_or_default(),
            receive_count,
            received_at: Instant::now(),
        }))
    }

    /// Sets the message's remaining invisibility to `timeout` from now.
    pub async fn set_visibility(&self, msg: &Received, timeout: Duration) -> anyhow::Result<()> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(&msg.receipt_handle)
            .visibility_timeout(timeout.as_secs() as i32)
            .send()
            .await
            .context("changing the message's visibility")?;
        Ok(())
    }

    /// Makes the message visible again at once, for another run to retry.
    pub async fn release(&self, msg: &Received) -> anyhow::Result<()> {
        self.set_visibility(msg, Duration::ZERO).await
    }

    /// Deletes the message: the request is done.
    pub async fn delete(&self, msg: &Received) -> anyhow::Result<()> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(&msg.receipt_handle)
            .send()
            .await
            .context("deleting the message")?;
        Ok(())
    }

    /// Moves the message to the queue's dead-letter queue (from its RedrivePolicy), with the reason
    /// attached as message attributes, then deletes it here.
    ///
    /// Returns the dead-letter queue's URL, or `None` when the queue has none: the message is then
    /// deleted all the same (retrying a request that can never succeed would loop forever); the
    /// caller logs the whole body and reports the rejection, so it is not dropped without a record.
    pub async fn dead_letter(&self, msg: &Received, reason: &str) -> anyhow::Result<Option<String>> {
        let dlq = self.dead_letter_queue_url().await?;
        if let Some(dlq_url) = &dlq {
            let attr = |v: &str| {
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(v)
                    .build()
                    .expect("data type is set")
            };
            let mut send = self
                .client
                .send_message()
                .queue_url(dlq_url)
                .message_body(&msg.body)
                .message_attributes("rejection-reason", attr(&truncate(reason, 4000)))
                .message_attributes("source-queue-url", attr(&self.url))
                .message_attributes("source-message-id", attr(&msg.message_id))
                .message_attributes("receive-count", attr(&msg.receive_count.to_string()));
            if dlq_url.ends_with(".fifo") {
                send = send
                    .message_group_id("rejected")
                    .message_deduplication_id(&msg.message_id);
            }
            send.send()
                .await
                .context("sending the message to the dead-letter queue")?;
        }
        self.delete(msg).await?;
        Ok(dlq)
    }

    async fn dead_letter_queue_url(&self) -> anyhow::Result<Option<String>> {
        let attrs = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .context("reading the queue's RedrivePolicy")?;
        let Some(policy) = attrs
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy).cloned())
        else {
            return Ok(None);
        };
        let arn = redrive_target(&policy)?;
        let (account, name) = arn_account_and_name(&arn)?;
        let url = self
            .client
            .get_queue_url()
            .queue_name(name)
            .queue_owner_aws_account_id(account)
            .send()
            .await
            .with_context(|| format!("finding the dead-letter queue {arn}"))?
            .queue_url
            .ok_or_else(|| anyhow!("no URL for the dead-letter queue {arn}"))?;
        Ok(Some(url))
    }
}

/// The `deadLetterTargetArn` of a RedrivePolicy document.
fn redrive_target(policy: &str) -> anyhow::Result<String> {
    let v: serde_json::Value = serde_json::from_str(policy).context("the RedrivePolicy is not JSON")?;
    v.get("deadLetterTargetArn")
        .and_then(|a| a.as_str())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("the RedrivePolicy has no deadLetterTargetArn"))
}

/// The account id and queue name of an SQS queue ARN (`arn:aws:sqs:region:account:name`).
fn arn_account_and_name(arn: &str) -> anyhow::Result<(&str, &str)> {
    let parts: Vec<&str> = arn.split(':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[2] != "sqs" {
        bail!("{arn:?} is not an SQS queue ARN");
    }
    Ok((parts[4], parts[5]))
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Keeps a received message invisible to other runs while this one works on it.
///
/// Renews the visibility timeout about every third of it. If the lease cannot be kept (the
/// renewal keeps failing until the lease runs out, or SQS's 12-hour in-flight cap comes near), it
/// cancels `lost` and records why, so the work stops cleanly rather than race a second run.
#[derive(Debug)]
pub struct Lease {
    stop: CancellationToken,
    lost_reason: Arc<OnceLock<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Starts renewing `msg`'s lease of `timeout`; `lost` is cancelled if the lease is lost.
    pub fn hold(queue: Queue, msg: Received, timeout: Duration, lost: CancellationToken) -> Self {
        Self::hold_within(queue, msg, timeout, lost, InFlightCap::SQS)
    }

    /// As [`Lease::hold`], with another in-flight cap (tests use a short one).
    fn hold_within(queue: Queue, msg: Received, timeout: Duration, lost: CancellationToken, cap: InFlightCap) -> Self {
        let stop = CancellationToken::new();
        let lost_reason = Arc::new(OnceLock::new());
        let task = tokio::spawn(renew(queue, msg, timeout, cap, lost, stop.clone(), lost_reason.clone()));
        Self {
            stop,
            lost_reason,
            task,
        }
    }

    /// Why the lease was lost, if it was.
    pub fn lost_reason(&self) -> Option<String> {
        self.lost_reason.get().cloned()
    }

    /// Stops renewing (the message is about to be deleted, released or dead-lettered).
    pub async fn end(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// The longest a message may stay in flight, and the time kept in hand before it.
#[derive(Debug, Clone, Copy)]
struct InFlightCap {
    cap: Duration,
    margin: Duration,
}

impl InFlightCap {
    /// SQS's 12 hours from the receive, with a minute in hand.
    const SQS: Self = Self {
        cap: Duration::from_secs(SQS_MAX_VISIBILITY_SECONDS as u64),
        margin: Duration::from_secs(60),
    };
}

async fn renew(
    queue: Queue,
    msg: Received,
    timeout: Duration,
    limit: InFlightCap,
    lost: CancellationToken,
    stop: CancellationToken,
    reason: Arc<OnceLock<String>>,
) {
    let InFlightCap { cap, margin } = limit;
    let period = (timeout / 3).max(Duration::from_secs(1));
    let mut expires = msg.received_at + timeout;
    let mut wait = period;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let in_flight = msg.received_at.elapsed();
        let left = cap.saturating_sub(in_flight + margin);
        if left < period {
            let _ = reason.set(format!(
                "the message has been in flight for {}s, close to SQS's {}-hour visibility cap",
                in_flight.as_secs(),
                cap.as_secs_f64() / 3600.0
            ));
            lost.cancel();
            return;
        }
        let next = timeout.min(left);
        match queue.set_visibility(&msg, next).await {
            Ok(()) => {
                expires = Instant::now() + next;
                wait = period;
                tracing::debug!(lease_seconds = next.as_secs(), "lease renewed");
            }
            Err(e) if Instant::now() + Duration::from_secs(1) < expires => {
                tracing::warn!(error = %format!("{e:#}"), "renewing the lease failed; trying again");
                wait = Duration::from_secs(1);
            }
            Err(e) => {
                let _ = reason.set(format!("the lease on the message was lost: {e:#}"));
                lost.cancel();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dead_letter_target_is_read_from_the_redrive_policy() {
        let arn = redrive_target(
            r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:123456789012:q-dlq","maxReceiveCount":"5"}"#,
        )
        .unwrap();
        assert_eq!(arn_account_and_name(&arn).unwrap(), ("123456789012", "q-dlq"));
        assert!(redrive_target("{}").is_err());
        assert!(redrive_target("nope").is_err());
        assert!(arn_account_and_name("arn:aws:s3:::bucket").is_err());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_lease_stops_cleanly_before_the_twelve_hour_cap() {
        let moto = test_support::Emulator::shared(test_support::Kind::Moto);
        let sqs = moto.sqs().await;
        let url = sqs
            .create_queue()
            .queue_name(moto.unique("cap"))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        sqs.send_message()
            .queue_url(&url)
            .message_body("{}")
            .send()
            .await
            .unwrap();
        let queue = Queue::new(sqs, url);
        let msg = queue
            .receive(1, Duration::from_secs(3))
            .await
            .unwrap()
            .expect("a message");
        // A cap of 8 s stands for SQS's 12 hours: the lease is renewed until the cap comes near.
        let cap = InFlightCap {
            cap: Duration::from_secs(8),
            margin: Duration::from_secs(1),
        };
        let lost = CancellationToken::new();
        let lease = Lease::hold_within(queue, msg, Duration::from_secs(3), lost.clone(), cap);
        let t = Instant::now();
        tokio::time::timeout(Duration::from_secs(10), lost.cancelled())
            .await
            .expect("the lease gives up before the cap");
        assert!(
            t.elapsed() >= Duration::from_secs(5),
            "gave up after {:?}, too early",
            t.elapsed()
        );
        let reason = lease.lost_reason().unwrap();
        assert!(reason.contains("visibility cap"), "{reason}");
        lease.end().await;
    }

    #[test]
    fn long_reasons_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("ééé", 3), "é…");
    }
}
