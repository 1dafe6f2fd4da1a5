//! How many Jobs KEDA 2.20 creates in one polling cycle of a ScaledJob: pure arithmetic, no I/O.
//!
//! Both subcommands use this module: `local-scaler plan` prints one decision, `local-scaler run`
//! makes one per polling interval. The behaviour follows the KEDA source at tag `v2.20.2`
//! (kedacore/keda), re-expressed from reading it, not copied:
//!
//! - `pkg/scaling/scaledjob/metrics.go`: `CalculateQueueLengthAndMaxValue` turns the trigger's
//!   metric into `queueLength` (the metric value) and `maxValue = min(queueLength /
//!   targetAverageValue, MaxReplicaCount())`, where `targetAverageValue` is the trigger's target
//!   (`queueLength` in the aws-sqs-queue metadata); `IsScaledJobActive` marks the ScaledJob active
//!   when a trigger is active *or* `minReplicaCount > 0`, and rounds both numbers up
//!   (`scaleTo = ceil(queueLength)`, `maxScale = ceil(min(maxValue, MaxReplicaCount()))`).
//! - `pkg/scalers/aws_sqs_queue_scaler.go`: the trigger is active when the metric is above
//!   `activationQueueLength`.
//! - `pkg/scaling/executor/scale_jobs.go`: `getScalingDecision` first tops up to
//!   `minReplicaCount` (ignoring the queue) when fewer Jobs than that are unfinished, otherwise asks
//!   the scaling strategy (`default`, `custom`, `accurate`, `eager`) for the effective maximum,
//!   passing `running - minReplicaCount`; `RequestJobScale` clamps a negative effective maximum to
//!   0; `createJobs` creates `min(scaleTo, effectiveMaxScale)` Jobs, and only while active.
//! - `apis/keda/v1alpha1/scaledjob_types.go`: `MinReplicaCount()` and `MaxReplicaCount()`, the
//!   latter being the room *above* `minReplicaCount` (see [`ReplicaBounds`]).
//!
//! Where the keda-docs page (`content/docs/2.20/reference/scaledjob-spec.md`) and the code
//! disagree, this module follows the code; the tests name each such place.

use std::fmt::Write as _;

use serde::Serialize;

/// KEDA's `maxReplicaCount` when the ScaledJob sets none (`defaultScaledJobMaxReplicaCount`).
pub const DEFAULT_MAX_REPLICA_COUNT: i64 = 100;

/// The name of a scaling strategy, as written in `spec.scalingStrategy.strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StrategyName {
    /// `maxScale - running`: KEDA's default.
    #[default]
    Default,
    /// `min(maxScale - deduction - int(running * percentage), maxReplicaCount)`.
    Custom,
    /// For queues whose length excludes messages already taken by running Jobs.
    Accurate,
    /// Fills free slots up to `maxReplicaCount`, counting pending Jobs twice.
    Eager,
}

impl StrategyName {
    /// The spelling used in the manifest and on the command line.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Custom => "custom",
            Self::Accurate => "accurate",
            Self::Eager => "eager",
        }
    }
}

impl std::fmt::Display for StrategyName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scaling strategy with its parameters, as KEDA's `NewScalingStrategy` selects it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    /// See [`StrategyName::Default`].
    Default,
    /// See [`StrategyName::Custom`].
    Custom {
        /// `customScalingQueueLengthDeduction` (absent = 0 since KEDA 2.20.2; 2.20.0 crashed).
        deduction: i64,
        /// `customScalingRunningJobPercentage`, already parsed as a float.
        running_percentage: f64,
    },
    /// See [`StrategyName::Accurate`].
    Accurate,
    /// See [`StrategyName::Eager`].
    Eager,
}

impl Strategy {
    /// Picks the strategy for `name`. `custom` needs a running-Job percentage: KEDA parses
    /// `customScalingRunningJobPercentage` as a float and, when it is absent or does not parse,
    /// silently uses `default` instead; so does this function when `running_percentage` is `None`.
    #[must_use]
    pub fn select(name: StrategyName, deduction: Option<i64>, running_percentage: Option<f64>) -> Self {
        match name {
            StrategyName::Default => Self::Default,
            StrategyName::Custom => match running_percentage {
                Some(running_percentage) => Self::Custom {
                    deduction: deduction.unwrap_or(0),
                    running_percentage,
                },
                None => Self::Default,
            },
            StrategyName::Accurate => Self::Accurate,
            StrategyName::Eager => Self::Eager,
        }
    }

    /// The strategy's name (after any fallback).
    #[must_use]
    pub fn name(&self) -> StrategyName {
        match self {
            Self::Default => StrategyName::Default,
            Self::Custom { .. } => StrategyName::Custom,
            Self::Accurate => StrategyName::Accurate,
            Self::Eager => StrategyName::Eager,
        }
    }

    /// One strategy step: returns `(effective_max_scale, scale_to)`, both possibly negative or
    /// larger than sensible; the caller clamps. `running` is already reduced by
    /// `minReplicaCount`, as `getScalingDecision` passes it; `max_replica_count` is
    /// [`ReplicaBounds::max_replica_count`].
    #[must_use]
    pub fn effective_max_scale(
        &self,
        max_scale: i64,
        running: i64,
        pending: i64,
        max_replica_count: i64,
        scale_to: i64,
    ) -> (i64, i64) {
        match *self {
            Self::Default => (max_scale - running, scale_to),
            Self::Custom {
                deduction,
                running_percentage,
            } => {
                // Go's int64(float64) truncates toward zero, as `as` does.
                #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
                let share = (running as f64 * running_percentage) as i64;
                ((max_scale - deduction - share).min(max_replica_count), scale_to)
            }
            Self::Accurate => {
                if max_scale + running - pending > max_replica_count {
                    (max_replica_count - running, scale_to)
                } else {
                    (max_scale - pending, scale_to)
                }
            }
            // Eager replaces scaleTo by maxReplicaCount, so the effective maximum alone decides.
            Self::Eager => (
                (max_replica_count - running - pending).min(max_scale),
                max_replica_count,
            ),
        }
    }
}

/// `spec.minReplicaCount` and `spec.maxReplicaCount` as written (absent = `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplicaBounds {
    /// `spec.minReplicaCount`.
    pub min: Option<i64>,
    /// `spec.maxReplicaCount`.
    pub max: Option<i64>,
}

impl ReplicaBounds {
    /// KEDA's `ScaledJob.MinReplicaCount()`: the minimum, lowered to the maximum when above it.
    #[must_use]
    pub fn min_replica_count(&self) -> i64 {
        match (self.min, self.max) {
            (Some(min), Some(max)) if min > max => max,
            (Some(min), _) => min,
            (None, _) => 0,
        }
    }

    /// KEDA's `ScaledJob.MaxReplicaCount()`: with `maxReplicaCount` set, the room above
    /// `minReplicaCount` (`max - min`, or `max` itself when `min > max`); without it, 100, *not*
    /// reduced by `minReplicaCount`. Every strategy and the `maxScale` cap use this value.
    #[must_use]
    pub fn max_replica_count(&self) -> i64 {
        match (self.min, self.max) {
            (_, None) => DEFAULT_MAX_REPLICA_COUNT,
            (Some(min), Some(max)) if min > max => max,
            (_, Some(max)) => max - self.min_replica_count(),
        }
    }
}

/// What the trigger reported in this polling cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueMetric {
    /// The metric value: for aws-sqs-queue, the sum of the approximate counts it reads.
    pub queue_length: i64,
    /// The trigger's target per Job (`queueLength` in the aws-sqs-queue metadata).
    pub target: i64,
    /// `activationQueueLength`: the trigger is active only above this value.
    pub activation: i64,
}

/// Everything one scaling decision depends on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanInput {
    /// The trigger's metric; `None` when reading it failed. KEDA then has no metric and the
    /// trigger is inactive, so only `minReplicaCount` can still create Jobs.
    pub metric: Option<QueueMetric>,
    /// KEDA's `runningJobCount`: every Job not yet finished, *including* the pending ones.
    pub running: i64,
    /// KEDA's `pendingJobCount`: the unfinished Jobs none of whose pods runs or has succeeded.
    pub pending: i64,
    /// `minReplicaCount` and `maxReplicaCount`.
    pub bounds: ReplicaBounds,
    /// The scaling strategy.
    pub strategy: Strategy,
}

/// One scaling decision. The four count keys are fixed by the contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// `scaleTo` after the strategy: the metric rounded up, or `maxReplicaCount` for `eager`,
    /// or the missing minimum when below `minReplicaCount`.
    pub scale_to: i64,
    /// `maxScale = ceil(min(queueLength / target, maxReplicaCount))`.
    pub max_scale: i64,
    /// The strategy's effective maximum, clamped at 0.
    pub effective_max_scale: i64,
    /// `min(scale_to, effective_max_scale)` when active, else 0.
    pub jobs_to_create: i64,
    /// Whether KEDA creates Jobs in this cycle at all (a trigger is active or `minReplicaCount > 0`).
    pub active: bool,
    /// The strategy applied (after KEDA's fallback from `custom` to `default`).
    pub strategy: StrategyName,
    /// The computation in words.
    pub reason: String,
}

/// Decides how many Jobs to create, as KEDA 2.20's ScaledJob executor would.
#[must_use]
pub fn decide(input: &PlanInput) -> Plan {
    let min = input.bounds.min_replica_count();
    let max_rc = input.bounds.max_replica_count();
    let mut reason = String::new();

    let (queue_length, max_value, trigger_active) = match input.metric {
        Some(m) => {
            #[allow(clippy::cast_precision_loss)]
            let max_value = if m.target == 0 {
                // KEDA skips the division when the target is 0: maxValue stays 0.
                0.0
            } else {
                (m.queue_length as f64 / m.target as f64).min(max_rc as f64)
            };
            let _ = write!(
                reason,
                "maxScale = ceil(min(queueLength {} / target {}, maxReplicaCount {max_rc})); ",
                m.queue_length, m.target
            );
            (m.queue_length, max_value, m.queue_length > m.activation)
        }
        None => {
            reason.push_str("no metric (the trigger failed): queueLength 0, maxScale 0; ");
            (0, 0.0, false)
        }
    };
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    let max_scale = max_value.min(max_rc as f64).ceil() as i64;
    let active = trigger_active || min > 0;

    let (effective, scale_to, strategy) = if input.running < min {
        let missing = min - input.running;
        let _ = write!(
            reason,
            "running {} < minReplicaCount {min}: top up by {missing}, whatever the queue; ",
            input.running
        );
        (missing, missing, input.strategy.name())
    } else {
        let above_min = input.running - min;
        let (effective, scale_to) =
            input
                .strategy
                .effective_max_scale(max_scale, above_min, input.pending, max_rc, queue_length);
        let _ = write!(
            reason,
            "{} strategy with maxScale {max_scale}, running above minReplicaCount {above_min}, \
             pending {}: effective {effective}, scaleTo {scale_to}; ",
            input.strategy.name(),
            input.pending
        );
        (effective, scale_to, input.strategy.name())
    };
    let effective_max_scale = effective.max(0);

    let jobs_to_create = if !active {
        reason.push_str("inactive (queueLength not above activationQueueLength, minReplicaCount 0): no Jobs");
        0
    } else if effective_max_scale == 0 {
        reason.push_str("no room: no Jobs");
        0
    } else {
        let n = scale_to.min(effective_max_scale).max(0);
        let _ = write!(reason, "create min(scaleTo, effective) = {n}");
        n
    };

    Plan {
        scale_to,
        max_scale,
        effective_max_scale,
        jobs_to_create,
        active,
        strategy,
        reason,
    }
}

/// Parses `customScalingRunningJobPercentage` like Go's `strconv.ParseFloat` for the usual
/// spellings (`"0.5"`, `"1"`, `"5e-1"`); `None` when it does not parse, which makes KEDA fall
/// back to the `default` strategy.
#[must_use]
pub fn parse_running_percentage(text: &str) -> Option<f64> {
    text.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(queue_length: i64, target: i64) -> Option<QueueMetric> {
        Some(QueueMetric {
            queue_length,
            target,
            activation: 0,
        })
    }

    fn input(queue_length: i64, target: i64, running: i64, pending: i64) -> PlanInput {
        PlanInput {
            metric: metric(queue_length, target),
            running,
            pending,
            bounds: ReplicaBounds::default(),
            strategy: Strategy::Default,
        }
    }

    fn bounds(min: Option<i64>, max: Option<i64>) -> ReplicaBounds {
        ReplicaBounds { min, max }
    }

    #[test]
    fn the_max_replica_count_table_of_the_scaledjob_docs_holds() {
        // keda-docs content/docs/2.20/reference/scaledjob-spec.md, section maxReplicaCount:
        // (queue length, max replica count, target average value, running, number of the scale)
        let rows = [
            (10, 3, 1, 0, 3),
            (10, 3, 2, 0, 3),
            (10, 3, 1, 1, 2),
            (10, 100, 1, 0, 10),
            (4, 3, 5, 0, 1),
        ];
        for (queue, max, target, running, expected) in rows {
            let plan = decide(&PlanInput {
                bounds: bounds(None, Some(max)),
                ..input(queue, target, running, 0)
            });
            assert_eq!(plan.jobs_to_create, expected, "row {queue} {max} {target} {running}");
        }
    }

    #[test]
    fn max_scale_is_the_queue_divided_by_the_target_rounded_up_and_capped() {
        assert_eq!(decide(&input(7, 2, 0, 0)).max_scale, 4);
        assert_eq!(decide(&input(8, 2, 0, 0)).max_scale, 4);
        assert_eq!(decide(&input(1000, 1, 0, 0)).max_scale, 100);
        let plan = decide(&input(7, 2, 0, 0));
        // scaleTo is the raw queue length; the effective maximum (4) limits the creation.
        assert_eq!((plan.scale_to, plan.jobs_to_create), (7, 4));
    }

    #[test]
    fn default_strategy_subtracts_every_unfinished_job() {
        let plan = decide(&input(5, 1, 3, 0));
        assert_eq!((plan.effective_max_scale, plan.jobs_to_create), (2, 2));
        // Pending Jobs are among the running ones and are not subtracted again.
        assert_eq!(decide(&input(5, 1, 3, 2)).jobs_to_create, 2);
        // More running Jobs than maxScale: the negative effective maximum is clamped to 0.
        let plan = decide(&input(2, 1, 5, 0));
        assert_eq!((plan.effective_max_scale, plan.jobs_to_create), (0, 0));
    }

    #[test]
    fn an_empty_queue_below_activation_creates_nothing() {
        let plan = decide(&input(0, 1, 0, 0));
        assert!(!plan.active);
        assert_eq!(plan.jobs_to_create, 0);
        let plan = decide(&PlanInput {
            metric: Some(QueueMetric {
                queue_length: 3,
                target: 1,
                activation: 3,
            }),
            ..input(0, 1, 0, 0)
        });
        assert!(!plan.active, "the metric must be strictly above activationQueueLength");
        assert_eq!(plan.max_scale, 3, "maxScale is still computed");
        assert_eq!(plan.jobs_to_create, 0);
    }

    #[test]
    fn a_failed_trigger_only_leaves_min_replica_count() {
        let failed = PlanInput {
            metric: None,
            ..input(0, 1, 0, 0)
        };
        assert_eq!(decide(&failed).jobs_to_create, 0);
        let with_min = PlanInput {
            bounds: bounds(Some(2), Some(10)),
            ..failed
        };
        let plan = decide(&with_min);
        assert!(plan.active);
        assert_eq!(plan.jobs_to_create, 2);
    }

    #[test]
    fn a_zero_target_yields_no_max_scale() {
        let plan = decide(&input(10, 0, 0, 0));
        assert_eq!((plan.max_scale, plan.jobs_to_create), (0, 0));
    }

    #[test]
    fn below_min_replica_count_tops_up_whatever_the_queue() {
        let plan = decide(&PlanInput {
            bounds: bounds(Some(3), Some(10)),
            ..input(50, 1, 1, 0)
        });
        assert_eq!((plan.scale_to, plan.effective_max_scale), (2, 2));
        assert_eq!(plan.jobs_to_create, 2);
        // Even with an empty queue: minReplicaCount makes the ScaledJob active.
        let plan = decide(&PlanInput {
            bounds: bounds(Some(3), None),
            ..input(0, 1, 0, 0)
        });
        assert!(plan.active);
        assert_eq!(plan.jobs_to_create, 3);
    }

    #[test]
    fn the_min_replica_count_example_of_the_docs_holds() {
        // scaledjob-spec.md, minReplicaCount: min 2, target 1, the 2 permanent Jobs running,
        // 3 new messages: 3 more Jobs are created.
        let plan = decide(&PlanInput {
            bounds: bounds(Some(2), None),
            ..input(3, 1, 2, 0)
        });
        assert_eq!(plan.jobs_to_create, 3);
    }

    #[test]
    fn max_replica_count_is_the_room_above_min_replica_count() {
        assert_eq!(bounds(Some(2), Some(10)).max_replica_count(), 8);
        assert_eq!(bounds(Some(2), Some(10)).min_replica_count(), 2);
        // Without maxReplicaCount, KEDA uses 100 and does not subtract the minimum.
        assert_eq!(bounds(Some(10), None).max_replica_count(), 100);
        assert_eq!(bounds(None, None).max_replica_count(), 100);
        assert_eq!(bounds(None, Some(100)).max_replica_count(), 100);
        // A minimum above the maximum is lowered to it, and the maximum is kept whole.
        assert_eq!(bounds(Some(5), Some(3)).min_replica_count(), 3);
        assert_eq!(bounds(Some(5), Some(3)).max_replica_count(), 3);
        // So min 2 / max 10 with 2 running and 20 messages creates 8, reaching 10 in total.
        let plan = decide(&PlanInput {
            bounds: bounds(Some(2), Some(10)),
            ..input(20, 1, 2, 0)
        });
        assert_eq!((plan.max_scale, plan.jobs_to_create), (8, 8));
    }

    #[test]
    fn custom_strategy_deducts_and_caps() {
        let custom = Strategy::select(StrategyName::Custom, Some(1), Some(0.5));
        assert_eq!(
            custom,
            Strategy::Custom {
                deduction: 1,
                running_percentage: 0.5
            }
        );
        // 10 - 1 - int(3 * 0.5) = 8
        assert_eq!(custom.effective_max_scale(10, 3, 0, 100, 10), (8, 10));
        // Capped at maxReplicaCount.
        assert_eq!(custom.effective_max_scale(10, 0, 0, 4, 10), (4, 10));
        // No deduction given: 0 (KEDA 2.20.2).
        let no_deduction = Strategy::select(StrategyName::Custom, None, Some(0.5));
        assert_eq!(no_deduction.effective_max_scale(10, 2, 0, 100, 10), (9, 10));
        // Through decide: queue 10, running 3 of max 100, deduction 1, 50 %.
        let plan = decide(&PlanInput {
            strategy: custom,
            ..input(10, 1, 3, 0)
        });
        assert_eq!(plan.jobs_to_create, 8);
        assert_eq!(plan.strategy, StrategyName::Custom);
    }

    #[test]
    fn custom_strategy_without_a_valid_percentage_falls_back_to_default() {
        assert_eq!(Strategy::select(StrategyName::Custom, Some(1), None), Strategy::Default);
        assert_eq!(parse_running_percentage("0.5"), Some(0.5));
        assert_eq!(parse_running_percentage("half"), None);
        assert_eq!(parse_running_percentage(""), None);
        let plan = decide(&PlanInput {
            strategy: Strategy::select(StrategyName::Custom, Some(1), None),
            ..input(10, 1, 3, 0)
        });
        assert_eq!(plan.strategy, StrategyName::Default);
        assert_eq!(plan.jobs_to_create, 7);
    }

    #[test]
    fn accurate_strategy_subtracts_pending_jobs_only() {
        // For queues that no longer count the messages running Jobs took: 5 waiting, 3 running
        // of which 1 pending (its message is still among the 5): 5 - 1 = 4.
        let plan = decide(&PlanInput {
            strategy: Strategy::Accurate,
            bounds: bounds(None, Some(10)),
            ..input(5, 1, 3, 1)
        });
        assert_eq!(plan.jobs_to_create, 4);
        // Above maxReplicaCount: fill the free slots. 5 + 8 - 1 > 10, so 10 - 8 = 2.
        let plan = decide(&PlanInput {
            strategy: Strategy::Accurate,
            bounds: bounds(None, Some(10)),
            ..input(5, 1, 8, 1)
        });
        assert_eq!(plan.jobs_to_create, 2);
        // The docs write the condition as `maxScale + running > maxReplicaCount`; the code also
        // subtracts pending. They differ here: 5 + 6 = 11 > 10 but 5 + 6 - 2 = 9 is not, so the
        // code gives 5 - 2 = 3 (the docs' formula would give 10 - 6 = 4).
        let plan = decide(&PlanInput {
            strategy: Strategy::Accurate,
            bounds: bounds(None, Some(10)),
            ..input(5, 1, 6, 2)
        });
        assert_eq!(plan.jobs_to_create, 3);
        // All running Jobs pending and holding every message: nothing to add.
        assert_eq!(Strategy::Accurate.effective_max_scale(3, 3, 3, 5, 3).0, 0);
    }

    #[test]
    fn eager_strategy_fills_free_slots_counting_pending_twice() {
        let eager = Strategy::Eager;
        // scaleTo becomes maxReplicaCount, so the effective maximum alone decides.
        assert_eq!(eager.effective_max_scale(4, 3, 0, 10, 4), (4, 10));
        assert_eq!(eager.effective_max_scale(4, 7, 0, 10, 4), (3, 10));
        assert_eq!(eager.effective_max_scale(15, 0, 0, 10, 15), (10, 10));
        // Pending Jobs are part of running and are subtracted once more.
        let plan = decide(&PlanInput {
            strategy: eager,
            bounds: bounds(None, Some(10)),
            ..input(4, 1, 7, 2)
        });
        assert_eq!(plan.jobs_to_create, 1);
        assert_eq!(plan.scale_to, 10);
    }

    #[test]
    fn the_eager_example_of_the_docs_follows_the_code_not_the_table() {
        // scaledjob-spec.md, eager: maxReplicaCount 10, target 1; 3 messages, a poll, 3 more
        // messages (the first 3 still counted while their Jobs run), a poll. The docs' table
        // says `default` stays at 3 running Jobs and `eager` reaches 6. The code differs on both
        // (kedacore/keda issue #6416 reports the same): default reaches 6, and eager, which
        // ignores that running Jobs hold messages, creates maxScale again and reaches 9.
        let poll = |strategy, queue, running| {
            decide(&PlanInput {
                strategy,
                bounds: bounds(None, Some(10)),
                ..input(queue, 1, running, 0)
            })
            .jobs_to_create
        };
        assert_eq!(poll(Strategy::Default, 3, 0), 3);
        assert_eq!(poll(Strategy::Default, 6, 3), 3, "default: 3 + 3 = 6 running");
        assert_eq!(poll(Strategy::Eager, 3, 0), 3);
        assert_eq!(poll(Strategy::Eager, 6, 3), 6, "eager: 3 + 6 = 9 running");
        // Where eager helps: 3 messages held by 3 unfinished Jobs of which 2 are still pending,
        // maxReplicaCount 10: default creates 0, eager min(10 - 3 - 2, 3) = 3.
        let default = decide(&PlanInput {
            bounds: bounds(None, Some(10)),
            ..input(3, 1, 3, 2)
        });
        let eager = decide(&PlanInput {
            strategy: Strategy::Eager,
            bounds: bounds(None, Some(10)),
            ..input(3, 1, 3, 2)
        });
        assert_eq!((default.jobs_to_create, eager.jobs_to_create), (0, 3));
    }

    #[test]
    fn the_plan_serializes_with_the_contract_keys() {
        let json = serde_json::to_value(decide(&input(10, 1, 0, 0))).unwrap();
        for key in ["scale_to", "max_scale", "effective_max_scale", "jobs_to_create"] {
            assert!(json.get(key).is_some_and(serde_json::Value::is_i64), "{key}");
        }
        assert_eq!(json["strategy"], "default");
    }
}
