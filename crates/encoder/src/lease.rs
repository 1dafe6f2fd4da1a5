//! Keeping a received message invisible to other runs while this one works on it.
//!
//! The lease is renewed about every third of the visibility timeout. If it cannot be kept (the
//! renewals keep failing until the lease runs out, or SQS's 12-hour in-flight cap comes near), the
//! `lost` token is cancelled and the reason recorded, so the work stops cleanly rather than race a
//! second run that may already hold the message.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::SQS_MAX_VISIBILITY_SECONDS;
use crate::queue::{Queue, Received};

/// A lease being renewed; [`Lease::end`] stops it.
#[derive(Debug)]
pub struct Lease {
    stop: CancellationToken,
    lost_reason: Arc<OnceLock<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Starts renewing `msg`'s lease of `timeout`; `lost` is cancelled if the lease is lost.
    pub fn hold<Q: Queue>(queue: Q, msg: Received, timeout: Duration, lost: CancellationToken) -> Self {
        Self::hold_within(queue, msg, timeout, lost, InFlightCap::SQS)
    }

    /// As [`Lease::hold`], with another in-flight cap (tests use a short one).
    fn hold_within<Q: Queue>(
        queue: Q,
        msg: Received,
        timeout: Duration,
        lost: CancellationToken,
        cap: InFlightCap,
    ) -> Self {
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

/// How soon a failed renewal is tried again.
const RETRY_EVERY: Duration = Duration::from_secs(1);

async fn renew<Q: Queue>(
    queue: Q,
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
            Err(e) if Instant::now() + RETRY_EVERY < expires => {
                tracing::warn!(error = %format!("{e:#}"), "renewing the lease failed; trying again");
                wait = RETRY_EVERY;
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
    use crate::fakes::{Fate, MemoryQueue};

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[tokio::test(start_paused = true)]
    async fn the_lease_is_renewed_every_third_of_the_timeout_until_it_ends() {
        let queue = MemoryQueue::with_messages(&["{}"]);
        let msg = queue.receive_now().await;
        let lost = CancellationToken::new();
        let lease = Lease::hold(queue.clone(), msg, secs(30), lost.clone());
        tokio::time::sleep(secs(95)).await;
        lease.end().await;
        tokio::time::sleep(secs(60)).await;
        // At 10, 20, ..., 90 s, each for the whole timeout again; nothing after the end.
        assert_eq!(queue.fates(), vec![Fate::Visibility(secs(30)); 9]);
        assert!(!lost.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn the_lease_gives_up_cleanly_before_the_in_flight_cap() {
        let queue = MemoryQueue::with_messages(&["{}"]);
        let msg = queue.receive_now().await;
        // A cap of 8 s stands for SQS's 12 hours.
        let cap = InFlightCap {
            cap: secs(8),
            margin: secs(1),
        };
        let lost = CancellationToken::new();
        let lease = Lease::hold_within(queue.clone(), msg, secs(3), lost.clone(), cap);
        let t = Instant::now();
        lost.cancelled().await;
        assert!(t.elapsed() >= secs(5), "gave up after {:?}, too early", t.elapsed());
        assert!(
            t.elapsed() <= secs(7),
            "gave up after {:?}, past the margin",
            t.elapsed()
        );
        let reason = lease.lost_reason().unwrap();
        assert!(reason.contains("visibility cap"), "{reason}");
        lease.end().await;
    }

    #[tokio::test(start_paused = true)]
    async fn failed_renewals_are_retried_every_second_and_a_recovery_keeps_the_lease() {
        let queue = MemoryQueue::with_messages(&["{}"]);
        let msg = queue.receive_now().await;
        let lost = CancellationToken::new();
        let lease = Lease::hold(queue.clone(), msg, secs(15), lost.clone());
        // The renewal at 5 s fails, and so do the retries until SQS comes back at 12 s.
        tokio::time::sleep(secs(4)).await;
        queue.fail_visibility(true);
        tokio::time::sleep(secs(8)).await;
        queue.fail_visibility(false);
        tokio::time::sleep(secs(10)).await;
        assert!(!lost.is_cancelled(), "{:?}", lease.lost_reason());
        let tries = queue.visibility_attempts();
        assert!(tries >= 8, "only {tries} renewals were tried");
        lease.end().await;
    }

    #[tokio::test(start_paused = true)]
    async fn renewals_that_fail_until_the_lease_runs_out_lose_it_with_the_reason() {
        let queue = MemoryQueue::with_messages(&["{}"]);
        let msg = queue.receive_now().await;
        queue.fail_visibility(true);
        let lost = CancellationToken::new();
        let lease = Lease::hold(queue.clone(), msg, secs(6), lost.clone());
        let t = Instant::now();
        lost.cancelled().await;
        assert!(
            t.elapsed() <= secs(6),
            "the lease was given up only after it ran out: {:?}",
            t.elapsed()
        );
        let reason = lease.lost_reason().unwrap();
        assert!(reason.contains("lease on the message was lost"), "{reason}");
        lease.end().await;
    }
}
