//! Reports to the result analyzer (`POST {ANALYZER_URL}/events`).
//!
//! Reporting never decides a run's outcome: the analyzer being down or slow must not fail a job or
//! hold a message. A report is tried a few times within a couple of seconds, then logged and
//! dropped.
//!
//! [`Reports`] is the seam the lifecycle reports through; [`Reporter`] posts to the analyzer.

use std::future::Future;
use std::time::Duration;

use encoding_common::Event;

/// Where a run's events go.
pub trait Reports: Send + Sync {
    /// Reports one event; never fails the run.
    fn send(&self, event: &Event) -> impl Future<Output = ()> + Send;
}

/// Attempts per report.
const ATTEMPTS: u32 = 3;
/// Timeout of one attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends events to the analyzer, or only logs them when there is none.
#[derive(Debug, Clone)]
pub struct Reporter {
    target: Option<(reqwest::Client, String, Option<String>)>,
}

impl Reporter {
    /// A reporter for `base_url` (None: log only) with an optional bearer token.
    pub fn new(base_url: Option<&str>, token: Option<&str>) -> Self {
        let target = base_url.map(|url| {
            let client = reqwest::Client::builder()
                .timeout(ATTEMPT_TIMEOUT)
                .build()
                .expect("a plain HTTP client builds");
            (client, format!("{url}/events"), token.map(str::to_owned))
        });
        if target.is_none() {
            tracing::warn!("ANALYZER_URL is not set: outcomes are only logged, not reported");
        }
        Self { target }
    }

    /// Reports one event; failures are logged, never returned.
    pub async fn post(&self, event: &Event) {
        let Some((client, url, token)) = &self.target else {
            return;
        };
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=ATTEMPTS {
            let mut req = client.post(url).json(event);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            match req.send().await {
                Ok(resp) if resp.status().is_success() => return,
                Ok(resp) if resp.status().is_client_error() => {
                    // Retrying cannot fix a refused report (bad token, invalid event).
                    let status = resp.status();
                    let body = resp.text().await.unwrap_or_default();
                    tracing::warn!(kind = %event.kind, %status, body, "the analyzer refused the report");
                    return;
                }
                Ok(resp) => {
                    tracing::debug!(kind = %event.kind, attempt, status = %resp.status(), "report failed; retrying")
                }
                Err(e) => tracing::debug!(kind = %event.kind, attempt, error = %e, "report failed; retrying"),
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        tracing::warn!(kind = %event.kind, url, "the analyzer could not be reached; report dropped");
    }
}

impl Reports for Reporter {
    async fn send(&self, event: &Event) {
        self.post(event).await;
    }
}
