//! The queue side of a run, behind a narrow seam: receive one message, change its visibility
//! (renew or release), delete it, or move it to the dead-letter queue; and send the chunk and
//! stitch messages of a split request to the same queue.
//!
//! [`Queue`] is what the lifecycle needs; [`SqsQueue`] is the real one over the AWS SDK. The
//! lifecycle's unit tests stand in for it with an in-memory queue that records each message's fate.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};
use tokio::time::Instant;

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
    /// When this run received it (the 12-hour in-flight cap counts from here); Tokio's clock, so
    /// that the lease's tests can run on paused time.
    pub received_at: Instant,
}

/// A message a run sends to its own queue: a chunk or the stitch of a split request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The body (an encode request with its `chunk` or `stitch`).
    pub body: String,
    /// Names this message among all (the plan and the part): on a FIFO queue its deduplication
    /// id and its message group, so that a message sent twice within five minutes is taken once
    /// and the chunks of one request are still worked on at once.
    pub key: String,
}

/// What a run does with the queue. Cheap to clone (the lease renews from a task of its own).
pub trait Queue: Clone + Send + Sync + 'static {
    /// One long-poll receive of at most one message, leased for `lease`.
    fn receive(
        &self,
        wait_seconds: i32,
        lease: Duration,
    ) -> impl Future<Output = anyhow::Result<Option<Received>>> + Send;

    /// Sets the message's remaining invisibility to `timeout` from now (zero releases it).
    fn set_visibility(&self, msg: &Received, timeout: Duration) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Deletes the message: the request is done.
    fn delete(&self, msg: &Received) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Moves the message to the dead-letter queue with `reason`, then deletes it here; returns the
    /// dead-letter queue's URL, or `None` when there is none (the message is deleted all the
    /// same: retrying a request that can never succeed would loop forever).
    fn dead_letter(&self, msg: &Received, reason: &str) -> impl Future<Output = anyhow::Result<Option<String>>> + Send;

    /// The queue's `maxReceiveCount` (from its RedrivePolicy): the delivery after which SQS moves
    /// a message to the dead-letter queue; `None` without one.
    fn max_receive_count(&self) -> impl Future<Output = anyhow::Result<Option<u32>>> + Send;

    /// Sends `msg` to this queue.
    fn send(&self, msg: &Outgoing) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Makes the message visible again at once, for another run to retry.
    fn release(&self, msg: &Received) -> impl Future<Output = anyhow::Result<()>> + Send {
        self.set_visibility(msg, Duration::ZERO)
    }
}

/// The queue at `url`, through SQS.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    /// The queue at `url`.
    pub fn new(client: aws_sdk_sqs::Client, url: String) -> Self {
        Self { client, url }
    }

    /// The queue's RedrivePolicy document, if it has one.
    async fn redrive_policy(&self) -> anyhow::Result<Option<String>> {
        let attrs = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .context("reading the queue's RedrivePolicy")?;
        Ok(attrs
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy).cloned()))
    }

    async fn dead_letter_queue_url(&self) -> anyhow::Result<Option<String>> {
        let Some(policy) = self.redrive_policy().await? else {
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

impl Queue for SqsQueue {
    async fn receive(&self, wait_seconds: i32, lease: Duration) -> anyhow::Result<Option<Received>> {
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

    async fn send(&self, msg: &Outgoing) -> anyhow::Result<()> {
        let mut send = self.client.send_message().queue_url(&self.url).message_body(&msg.body);
        if self.url.ends_with(".fifo") {
            // Keys are short and of [a-z0-9-], as SQS ids must be.
            send = send.message_deduplication_id(&msg.key).message_group_id(&msg.key);
        }
        send.send()
            .await
            .with_context(|| format!("sending {} to the queue", msg.key))?;
        Ok(())
    }

    async fn set_visibility(&self, msg: &Received, timeout: Duration) -> anyhow::Result<()> {
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

    async fn delete(&self, msg: &Received) -> anyhow::Result<()> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(&msg.receipt_handle)
            .send()
            .await
            .context("deleting the message")?;
        Ok(())
    }

    async fn max_receive_count(&self) -> anyhow::Result<Option<u32>> {
        match self.redrive_policy().await? {
            Some(policy) => redrive_max_receive_count(&policy).map(Some),
            None => Ok(None),
        }
    }

    /// Sends the body to the dead-letter queue named by the queue's RedrivePolicy, with the
    /// reason and the message's origin as message attributes, then deletes it here.
    async fn dead_letter(&self, msg: &Received, reason: &str) -> anyhow::Result<Option<String>> {
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
}

/// The `deadLetterTargetArn` of a RedrivePolicy document.
fn redrive_target(policy: &str) -> anyhow::Result<String> {
    let v: serde_json::Value = serde_json::from_str(policy).context("the RedrivePolicy is not JSON")?;
    v.get("deadLetterTargetArn")
        .and_then(|a| a.as_str())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("the RedrivePolicy has no deadLetterTargetArn"))
}

/// The `maxReceiveCount` of a RedrivePolicy document (SQS writes it as a string or a number).
fn redrive_max_receive_count(policy: &str) -> anyhow::Result<u32> {
    let v: serde_json::Value = serde_json::from_str(policy).context("the RedrivePolicy is not JSON")?;
    let count = &v["maxReceiveCount"];
    count
        .as_u64()
        .or_else(|| count.as_str().and_then(|s| s.parse().ok()))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| anyhow!("the RedrivePolicy has no maxReceiveCount"))
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

    #[test]
    fn the_max_receive_count_is_read_as_a_string_or_a_number() {
        assert_eq!(redrive_max_receive_count(r#"{"maxReceiveCount":"5"}"#).unwrap(), 5);
        assert_eq!(redrive_max_receive_count(r#"{"maxReceiveCount":3}"#).unwrap(), 3);
        assert!(redrive_max_receive_count("{}").is_err());
    }

    #[test]
    fn long_reasons_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("ééé", 3), "é…");
    }
}
