//! The finished Jobs local-scaler remembers: `successfulJobsHistoryLimit` and
//! `failedJobsHistoryLimit`.
//!
//! KEDA keeps finished Job objects and, once per polling cycle after scaling, deletes the oldest
//! completed and failed ones beyond each limit, oldest completion first (`cleanUp` and
//! `deleteJobsWithHistoryLimit` in `pkg/scaling/executor/scale_jobs.go`; the docs note the limit
//! may be exceeded until the next cycle). Here the "Job object" is its [`FinishedJob`] record
//! and, with `--job-logs`, its log file; [`History::prune`] runs at the same point of the cycle.

use std::collections::VecDeque;

use crate::jobs::{FinishedJob, Outcome};

/// Finished Jobs, in order of completion, per outcome.
#[derive(Debug)]
pub struct History {
    successful_limit: usize,
    failed_limit: usize,
    succeeded: VecDeque<FinishedJob>,
    failed: VecDeque<FinishedJob>,
}

/// Which limit a pruned Job fell under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `successfulJobsHistoryLimit`.
    Successful(usize),
    /// `failedJobsHistoryLimit`.
    Failed(usize),
}

impl History {
    /// An empty history with the ScaledJob's limits.
    #[must_use]
    pub fn new(successful_limit: usize, failed_limit: usize) -> Self {
        Self {
            successful_limit,
            failed_limit,
            succeeded: VecDeque::new(),
            failed: VecDeque::new(),
        }
    }

    /// Remembers a Job that just finished.
    pub fn record(&mut self, job: FinishedJob) {
        match job.outcome {
            Outcome::Succeeded => self.succeeded.push_back(job),
            Outcome::Failed(_) => self.failed.push_back(job),
        }
    }

    /// Forgets the oldest Jobs beyond each limit and returns them, oldest first.
    pub fn prune(&mut self) -> Vec<(FinishedJob, Limit)> {
        let mut pruned = Vec::new();
        while self.succeeded.len() > self.successful_limit {
            let job = self.succeeded.pop_front().expect("longer than the limit");
            pruned.push((job, Limit::Successful(self.successful_limit)));
        }
        while self.failed.len() > self.failed_limit {
            let job = self.failed.pop_front().expect("longer than the limit");
            pruned.push((job, Limit::Failed(self.failed_limit)));
        }
        pruned
    }

    /// The remembered successful Jobs, oldest first.
    pub fn succeeded(&self) -> impl Iterator<Item = &FinishedJob> {
        self.succeeded.iter()
    }

    /// The remembered failed Jobs, oldest first.
    pub fn failed(&self) -> impl Iterator<Item = &FinishedJob> {
        self.failed.iter()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::jobs::FailReason;

    fn job(id: &str, outcome: Outcome) -> FinishedJob {
        FinishedJob {
            id: id.to_owned(),
            outcome,
            attempts: 1,
            last_exit: None,
            hit_by_chaos: false,
            duration: Duration::from_secs(1),
            log_file: None,
        }
    }

    fn ids<'a>(jobs: impl Iterator<Item = &'a FinishedJob>) -> Vec<&'a str> {
        jobs.map(|j| j.id.as_str()).collect()
    }

    #[test]
    fn only_the_newest_jobs_of_each_outcome_are_kept() {
        let mut history = History::new(2, 1);
        let failed = Outcome::Failed(FailReason::BackoffLimitExceeded);
        for (id, outcome) in [
            ("j-1", Outcome::Succeeded),
            ("j-2", failed),
            ("j-3", Outcome::Succeeded),
            ("j-4", failed),
            ("j-5", Outcome::Succeeded),
        ] {
            history.record(job(id, outcome));
        }
        let pruned: Vec<_> = history.prune().into_iter().map(|(j, limit)| (j.id, limit)).collect();
        assert_eq!(
            pruned,
            vec![
                ("j-1".to_owned(), Limit::Successful(2)),
                ("j-2".to_owned(), Limit::Failed(1)),
            ]
        );
        assert_eq!(ids(history.succeeded()), ["j-3", "j-5"]);
        assert_eq!(ids(history.failed()), ["j-4"]);
        assert!(history.prune().is_empty(), "nothing left to prune");
    }

    #[test]
    fn a_zero_limit_keeps_nothing() {
        let mut history = History::new(0, 0);
        history.record(job("j-1", Outcome::Succeeded));
        history.record(job("j-2", Outcome::Failed(FailReason::DeadlineExceeded)));
        assert_eq!(history.prune().len(), 2);
        assert_eq!(history.succeeded().count() + history.failed().count(), 0);
    }
}
