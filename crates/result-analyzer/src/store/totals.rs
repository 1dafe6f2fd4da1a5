//! The running totals behind `GET /summary` and `GET /metrics`: counts per kind and quality, the
//! encode-seconds histogram, first and last event, and exact percentiles of encode seconds and
//! frames per second.
//!
//! The writer thread keeps them in memory and saves them as one row (`state`) in the same
//! transaction as the events that changed them, so they are exactly as durable as the events.
//!
//! # Exact percentiles in O(log n) per value
//!
//! The values themselves are kept in `samples` (one row per distinct value, with its multiplicity,
//! keyed in value order). For each percentile a [`Mark`] remembers which value holds the
//! nearest rank `ceil(q × n)` and how many values lie below it. Adding one value moves a rank by at
//! most one position, so each mark steps at most one distinct value, one indexed lookup, per added
//! value: the answer is read from the marks, never by sorting or skipping through the values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::StoreError;

/// The percentiles kept: p50, p90, p99.
pub(crate) const QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

/// Upper bounds of the encode-seconds histogram's buckets (`encoder_encode_seconds`): from a short
/// clip to an hour-long film; a last bucket, +Inf, takes the rest.
pub(crate) const ENCODE_SECONDS_BUCKETS: [f64; 12] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Everything counted so far. Saved as JSON in `state`; floats as their bits, so they survive the
/// round trip exactly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Totals {
    /// Stored events per kind; `progress`: progress reports received (they are not stored).
    pub counts: BTreeMap<String, u64>,
    /// Renditions of `processed` events per quality.
    pub processed_per_quality: BTreeMap<String, u64>,
    /// Qualities named by stored events, per kind and quality (`encoder_renditions_total`).
    pub renditions: BTreeMap<String, BTreeMap<String, u64>>,
    /// Non-cumulative counts of the histogram's buckets, +Inf last.
    pub histogram: Vec<u64>,
    /// Sum of the observed encode seconds, as `f64::to_bits`, added in the order recorded.
    pub encode_sum_bits: u64,
    /// Encode seconds observed (the histogram's count).
    pub encode_count: u64,
    /// Encode seconds of `processed` events.
    pub encode_seconds: Sample,
    /// Frames per second of `processed` events.
    pub fps: Sample,
    /// `recorded_at` of the first event stored (since the last reset).
    pub first_event: Option<String>,
    /// `recorded_at` of the last event stored.
    pub last_event: Option<String>,
    /// Encoder runs seen.
    pub runs: u64,
    /// Runs without an outcome (running or lost).
    pub open_runs: u64,
    /// `processed` events numbered so far (`/get/count`'s "processed count N").
    pub legacy_processed: u64,
    /// `killed` events numbered so far ("kill count N").
    pub legacy_killed: u64,
    /// The highest event id these totals include.
    pub last_id: i64,
    /// Requests named by an event carrying `chunks` (split requests), each once.
    pub split_requests: u64,
    /// Runs whose events carry `chunk` (chunk runs).
    pub chunk_runs: u64,
    /// Distinct chunks stored (`request_chunks` rows).
    pub chunks_stored: u64,
}

impl Totals {
    /// Counts one observation of the encode-seconds histogram, as `prometheus-client` would: in the
    /// first bucket whose upper bound is at least `v` (NaN in the last).
    pub fn observe_encode_seconds(&mut self, v: f64) {
        if self.histogram.len() != ENCODE_SECONDS_BUCKETS.len() + 1 {
            self.histogram.resize(ENCODE_SECONDS_BUCKETS.len() + 1, 0);
        }
        let i = ENCODE_SECONDS_BUCKETS
            .iter()
            .position(|b| *b >= v)
            .unwrap_or(ENCODE_SECONDS_BUCKETS.len());
        self.histogram[i] += 1;
        self.encode_sum_bits = (self.encode_sum() + v).to_bits();
        self.encode_count += 1;
    }

    /// The sum of the observed encode seconds.
    pub fn encode_sum(&self) -> f64 {
        f64::from_bits(self.encode_sum_bits)
    }

    /// One more of `key` in `counts`.
    pub fn count(&mut self, kind: &str, n: u64) {
        *self.counts.entry(kind.to_owned()).or_default() += n;
    }
}

/// The values of one figure, as counted so far, and where its percentiles stand.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Sample {
    /// Values counted.
    pub count: u64,
    /// The largest, as a [`key`].
    pub max: Option<i64>,
    /// Where each of [`QUANTILES`] stands.
    pub marks: [Mark; 3],
}

/// A percentile's place among the sorted values: the value at its rank, how many values are
/// smaller, and how many equal it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Mark {
    /// The value at the rank, as a [`key`].
    pub key: i64,
    /// Values smaller than it.
    pub below: u64,
    /// Values equal to it.
    pub here: u64,
}

/// The stored values of one figure, in key order, with their multiplicities (already including
/// the value being added).
pub(crate) trait SortedValues {
    /// The smallest stored key greater than `key`, and its multiplicity.
    fn after(&mut self, key: i64) -> Result<Option<(i64, u64)>, StoreError>;
    /// The largest stored key smaller than `key`, and its multiplicity.
    fn before(&mut self, key: i64) -> Result<Option<(i64, u64)>, StoreError>;
}

/// The nearest rank of `q` among `n` values, as the summary has always computed it.
pub(crate) fn rank(q: f64, n: u64) -> u64 {
    ((q * n as f64).ceil() as u64).clamp(1, n)
}

/// An `f64` as an `i64` that sorts in [`f64::total_cmp`] order (and back, with [`value`]).
pub(crate) fn key(v: f64) -> i64 {
    let bits = v.to_bits() as i64;
    if bits < 0 { bits ^ i64::MAX } else { bits }
}

/// The `f64` of a [`key`].
pub(crate) fn value(key: i64) -> f64 {
    let bits = if key < 0 { key ^ i64::MAX } else { key };
    f64::from_bits(bits as u64)
}

impl Sample {
    /// Counts `v`, which `values` already holds, and moves each mark to its new rank.
    ///
    /// # Errors
    ///
    /// When `values` cannot be read, or does not hold what the marks expect (a corrupt database).
    pub fn add(&mut self, v: f64, values: &mut dyn SortedValues) -> Result<(), StoreError> {
        let x = key(v);
        self.count += 1;
        self.max = Some(self.max.map_or(x, |m| m.max(x)));
        let n = self.count;
        for (mark, q) in self.marks.iter_mut().zip(QUANTILES) {
            if n == 1 {
                *mark = Mark {
                    key: x,
                    below: 0,
                    here: 1,
                };
                continue;
            }
            if x < mark.key {
                mark.below += 1;
            } else if x == mark.key {
                mark.here += 1;
            }
            let k = rank(q, n);
            while k > mark.below + mark.here {
                let (next, here) = values.after(mark.key)?.ok_or_else(inconsistent)?;
                mark.below += mark.here;
                *mark = Mark {
                    key: next,
                    here,
                    ..*mark
                };
            }
            while k <= mark.below {
                let (prev, here) = values.before(mark.key)?.ok_or_else(inconsistent)?;
                *mark = Mark {
                    key: prev,
                    below: mark.below - here,
                    here,
                };
            }
        }
        Ok(())
    }

    /// The value at each of [`QUANTILES`], and the largest; `None` when there is none.
    pub fn percentiles(&self) -> ([Option<f64>; 3], Option<f64>) {
        if self.count == 0 {
            return ([None; 3], None);
        }
        (self.marks.map(|m| Some(value(m.key))), self.max.map(value))
    }
}

fn inconsistent() -> StoreError {
    StoreError::Inconsistent("the stored samples do not match the percentile marks".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values in memory, for the marks to walk.
    #[derive(Default)]
    struct Values(BTreeMap<i64, u64>);

    impl SortedValues for Values {
        fn after(&mut self, key: i64) -> Result<Option<(i64, u64)>, StoreError> {
            Ok(self.0.range(key + 1..).next().map(|(k, n)| (*k, *n)))
        }
        fn before(&mut self, key: i64) -> Result<Option<(i64, u64)>, StoreError> {
            Ok(self.0.range(..key).next_back().map(|(k, n)| (*k, *n)))
        }
    }

    fn nearest_rank(values: &[f64], q: f64) -> f64 {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        v[rank(q, v.len() as u64) as usize - 1]
    }

    #[test]
    fn keys_sort_as_total_cmp_and_come_back_exactly() {
        let mut vs = [3.5, 0.0, -0.0, 1e-300, 7.25, 1e300, -2.0, f64::MAX];
        let mut keys: Vec<i64> = vs.iter().map(|v| key(*v)).collect();
        vs.sort_by(f64::total_cmp);
        keys.sort_unstable();
        let back: Vec<u64> = keys.iter().map(|k| value(*k).to_bits()).collect();
        assert_eq!(back, vs.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    }

    #[test]
    fn the_marks_follow_the_nearest_rank_of_every_prefix_of_a_stream_with_repeats() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut sample, mut values, mut seen) = (Sample::default(), Values::default(), Vec::new());
        for _ in 0..3000 {
            // Few distinct values, so that repeats and ties are common.
            let v = (next() % 40) as f64 * 0.5;
            *values.0.entry(key(v)).or_default() += 1;
            seen.push(v);
            sample.add(v, &mut values).unwrap();
            let (ps, max) = sample.percentiles();
            for (p, q) in ps.iter().zip(QUANTILES) {
                assert_eq!(*p, Some(nearest_rank(&seen, q)), "q {q} after {} values", seen.len());
            }
            assert_eq!(max, seen.iter().copied().reduce(f64::max));
        }
    }

    #[test]
    fn marks_that_the_stored_values_do_not_hold_are_an_error_not_a_wrong_percentile() {
        let (mut sample, mut values) = (Sample::default(), Values::default());
        values.0.insert(key(1.0), 1);
        sample.add(1.0, &mut values).unwrap();
        // 2.0 was not stored: the p90 and p99 marks cannot step onto it.
        let err = sample.add(2.0, &mut values).unwrap_err();
        assert!(err.to_string().contains("do not match the percentile marks"), "{err}");
    }

    #[test]
    fn the_histogram_buckets_values_by_their_first_upper_bound_at_or_above() {
        let mut t = Totals::default();
        for v in [0.5, 0.6, 3600.0, 3600.5] {
            t.observe_encode_seconds(v);
        }
        assert_eq!(t.histogram[0], 1);
        assert_eq!(t.histogram[1], 1);
        assert_eq!(t.histogram[11], 1);
        assert_eq!(t.histogram[12], 1);
        assert_eq!((t.encode_count, t.encode_sum()), (4, 0.5 + 0.6 + 3600.0 + 3600.5));
    }
}
