//! Completion notices on the results queue (`RESULT_QUEUE_URL`), behind a narrow seam.
//!
//! [`Notify`] is what the lifecycle needs; [`Notifier`] sends to SQS, or does nothing when no
//! results queue is set. A notice that cannot be sent is an error the lifecycle acts on (the
//! request's message is released, so the notice is sent again by the next delivery): callers
//! waiting on the results queue must never miss a request.

use std::future::Future;

use anyhow::Context;
use encoding_common::notice::Notice;

/// Where completion notices go.
pub trait Notify: Send + Sync {
    /// Whether notices are sent at all.
    fn enabled(&self) -> bool;

    /// Sends one notice.
    fn notify(&self, notice: &Notice) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Notices to an SQS results queue, or none.
#[derive(Debug, Clone)]
pub struct Notifier {
    target: Option<(aws_sdk_sqs::Client, String)>,
}

impl Notifier {
    /// Notices to `url` through `client`; `None` sends none.
    pub fn new(client: aws_sdk_sqs::Client, url: Option<String>) -> Self {
        Self {
            target: url.map(|u| (client, u)),
        }
    }
}

impl Notify for Notifier {
    fn enabled(&self) -> bool {
        self.target.is_some()
    }

    async fn notify(&self, notice: &Notice) -> anyhow::Result<()> {
        let Some((client, url)) = &self.target else {
            return Ok(());
        };
        let mut send = client.send_message().queue_url(url).message_body(notice.to_json());
        if url.ends_with(".fifo") {
            send = send
                .message_group_id(&notice.video_id)
                .message_deduplication_id(notice.deduplication_id());
        }
        send.send()
            .await
            .with_context(|| format!("sending the completion notice to {url}"))?;
        tracing::info!(outcome = %notice.outcome, request_id = %notice.request_id, "completion notice sent");
        Ok(())
    }
}
