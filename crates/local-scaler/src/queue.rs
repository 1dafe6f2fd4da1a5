//! Reading the queue as KEDA's aws-sqs-queue scaler does.
//!
//! The scaler (`pkg/scalers/aws_sqs_queue_scaler.go` in kedacore/keda `v2.20.2`) calls
//! `GetQueueAttributes` for `ApproximateNumberOfMessages`, plus
//! `ApproximateNumberOfMessagesNotVisible` when `scaleOnInFlight` (default true) and
//! `ApproximateNumberOfMessagesDelayed` when `scaleOnDelayed` (default false), and reports their
//! sum as the metric; a missing attribute is an error. Here all three are always read (the
//! `--until-empty` check needs them) and [`QueueCounts::metric`] sums the same ones KEDA would.
//!
//! The client comes from the standard AWS configuration (`aws_config::defaults`), so
//! `AWS_ENDPOINT_URL` points it at an emulator; the trigger's `awsRegion` is used only when that
//! configuration has no region.

use std::collections::HashMap;

use anyhow::Context as _;
use aws_config::BehaviorVersion;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::Region;
use aws_sdk_sqs::types::QueueAttributeName;

use crate::manifest::SqsTrigger;

/// The queue's approximate counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// `ApproximateNumberOfMessages`: waiting to be received.
    pub visible: i64,
    /// `ApproximateNumberOfMessagesNotVisible`: received, not yet deleted (in flight).
    pub in_flight: i64,
    /// `ApproximateNumberOfMessagesDelayed`: not yet visible.
    pub delayed: i64,
}

impl QueueCounts {
    /// The metric KEDA's scaler reports for this trigger.
    #[must_use]
    pub fn metric(&self, trigger: &SqsTrigger) -> i64 {
        let mut sum = self.visible;
        if trigger.scale_on_in_flight {
            sum += self.in_flight;
        }
        if trigger.scale_on_delayed {
            sum += self.delayed;
        }
        sum
    }

    /// Nothing waiting, in flight or delayed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.visible == 0 && self.in_flight == 0 && self.delayed == 0
    }

    /// Reads the three counts from a `GetQueueAttributes` answer.
    ///
    /// # Errors
    ///
    /// When an attribute is missing or not an integer (KEDA fails the same way).
    pub fn from_attributes(attributes: &HashMap<QueueAttributeName, String>) -> anyhow::Result<Self> {
        let read = |name: QueueAttributeName| -> anyhow::Result<i64> {
            let text = attributes
                .get(&name)
                .with_context(|| format!("the queue's attributes lack {}", name.as_str()))?;
            text.parse()
                .with_context(|| format!("{} is not an integer: {text:?}", name.as_str()))
        };
        Ok(Self {
            visible: read(QueueAttributeName::ApproximateNumberOfMessages)?,
            in_flight: read(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)?,
            delayed: read(QueueAttributeName::ApproximateNumberOfMessagesDelayed)?,
        })
    }
}

/// One SQS queue and a client for it.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    /// Builds the client from the standard AWS configuration and resolves `queue`: a URL is used
    /// as is; anything else is taken as a queue name (the trigger's `queueURL` may be a short
    /// name) and looked up with `GetQueueUrl`.
    ///
    /// # Errors
    ///
    /// When the name cannot be resolved.
    pub async fn connect(queue: &str, region_hint: Option<&str>) -> anyhow::Result<Self> {
        let mut config = aws_config::defaults(BehaviorVersion::latest()).load().await;
        if config.region().is_none()
            && let Some(region) = region_hint
        {
            config = aws_config::defaults(BehaviorVersion::latest())
                .region(Region::new(region.to_owned()))
                .load()
                .await;
        }
        let client = Client::new(&config);
        let url = if queue.starts_with("https://") || queue.starts_with("http://") {
            queue.to_owned()
        } else {
            client
                .get_queue_url()
                .queue_name(queue)
                .send()
                .await
                .with_context(|| format!("cannot find the URL of the queue named {queue:?}"))?
                .queue_url()
                .with_context(|| format!("no URL returned for the queue named {queue:?}"))?
                .to_owned()
        };
        Ok(Self { client, url })
    }

    /// The queue's URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Reads the approximate counts.
    ///
    /// # Errors
    ///
    /// When the call fails or the answer lacks a count.
    pub async fn counts(&self) -> anyhow::Result<QueueCounts> {
        let answer = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .context("GetQueueAttributes failed")?;
        let empty = HashMap::new();
        QueueCounts::from_attributes(answer.attributes().unwrap_or(&empty))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(in_flight: bool, delayed: bool) -> SqsTrigger {
        SqsTrigger {
            queue_url: Some("q".into()),
            queue_url_from_env: None,
            queue_length: 1,
            activation_queue_length: 0,
            scale_on_in_flight: in_flight,
            scale_on_delayed: delayed,
            aws_region: None,
            aws_endpoint: None,
        }
    }

    #[test]
    fn the_metric_sums_the_counts_the_trigger_asks_for() {
        let counts = QueueCounts {
            visible: 3,
            in_flight: 2,
            delayed: 1,
        };
        assert_eq!(counts.metric(&trigger(true, false)), 5, "KEDA's default");
        assert_eq!(counts.metric(&trigger(false, false)), 3);
        assert_eq!(counts.metric(&trigger(true, true)), 6);
        assert_eq!(counts.metric(&trigger(false, true)), 4);
        assert!(!counts.is_empty());
        assert!(QueueCounts::default().is_empty());
    }

    #[test]
    fn missing_or_malformed_attributes_are_errors() {
        let mut attributes = HashMap::from([
            (QueueAttributeName::ApproximateNumberOfMessages, "4".to_owned()),
            (
                QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                "1".to_owned(),
            ),
        ]);
        assert!(QueueCounts::from_attributes(&attributes).is_err());
        attributes.insert(QueueAttributeName::ApproximateNumberOfMessagesDelayed, "x".to_owned());
        assert!(QueueCounts::from_attributes(&attributes).is_err());
        attributes.insert(QueueAttributeName::ApproximateNumberOfMessagesDelayed, "0".to_owned());
        assert_eq!(
            QueueCounts::from_attributes(&attributes).unwrap(),
            QueueCounts {
                visible: 4,
                in_flight: 1,
                delayed: 0
            }
        );
    }
}
