//! Chaos: kill a share of the Jobs at random moments, reproducibly.
//!
//! Every Job, when created, takes exactly three numbers from one seeded generator
//! (`StdRng::seed_from_u64`): whether it is a target (probability = the share), when it is hit
//! (uniform in `[0, window)` after its creation) and, with `--chaos-signal random`, which signal
//! it gets. Taking the same three numbers whether or not the Job is a target makes the fate of
//! the n-th Job depend only on the seed and n, so a failure seen once is replayed by running again
//! with the logged seed (the same local-scaler build: `StdRng`'s algorithm may change between
//! `rand` versions). A Job that has finished, or waits for a retry, at its moment is not hit: the
//! share is an upper bound on the Jobs actually killed.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::process::KillSignal;

/// Which signal chaos sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ChaosSignal {
    /// SIGTERM, then SIGKILL after the grace period, like deleting a pod.
    #[default]
    Term,
    /// SIGKILL to the process group at once, like a node failure.
    Kill,
    /// Either, at random (seeded) per Job.
    Random,
}

/// The chaos settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChaosConfig {
    /// The share of Jobs targeted, in `[0, 1]`.
    pub share: f64,
    /// The seed; logged at start-up.
    pub seed: u64,
    /// Hits fall uniformly in `[0, window)` after the Job's creation.
    pub window: Duration,
    /// The signal to send.
    pub signal: ChaosSignal,
}

/// A planned hit on one Job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChaosKill {
    /// How long after its creation the Job is hit.
    pub after: Duration,
    /// The signal.
    pub signal: KillSignal,
}

/// The seeded source of chaos decisions.
#[derive(Debug)]
pub struct Chaos {
    config: ChaosConfig,
    rng: StdRng,
}

impl Chaos {
    /// A new generator.
    ///
    /// # Panics
    ///
    /// When `config.share` is outside `[0, 1]` (the command line checks it first).
    #[must_use]
    pub fn new(config: ChaosConfig) -> Self {
        assert!((0.0..=1.0).contains(&config.share), "chaos share must be within [0, 1]");
        Self {
            rng: StdRng::seed_from_u64(config.seed),
            config,
        }
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &ChaosConfig {
        &self.config
    }

    /// Decides the fate of the next Job created.
    pub fn draw(&mut self) -> Option<ChaosKill> {
        let target: f64 = self.rng.random();
        let moment: f64 = self.rng.random();
        let coin: bool = self.rng.random();
        if target >= self.config.share {
            return None;
        }
        let signal = match self.config.signal {
            ChaosSignal::Term => KillSignal::Term,
            ChaosSignal::Kill => KillSignal::Kill,
            ChaosSignal::Random if coin => KillSignal::Term,
            ChaosSignal::Random => KillSignal::Kill,
        };
        Some(ChaosKill {
            after: self.config.window.mul_f64(moment),
            signal,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(share: f64, seed: u64, signal: ChaosSignal) -> ChaosConfig {
        ChaosConfig {
            share,
            seed,
            window: Duration::from_secs(10),
            signal,
        }
    }

    fn fates(config: ChaosConfig, n: usize) -> Vec<Option<ChaosKill>> {
        let mut chaos = Chaos::new(config);
        (0..n).map(|_| chaos.draw()).collect()
    }

    #[test]
    fn the_same_seed_replays_the_same_kills() {
        let a = fates(config(0.5, 42, ChaosSignal::Random), 200);
        let b = fates(config(0.5, 42, ChaosSignal::Random), 200);
        assert_eq!(a, b);
        assert_ne!(a, fates(config(0.5, 43, ChaosSignal::Random), 200));
    }

    #[test]
    fn the_share_decides_roughly_how_many_jobs_are_targets() {
        let hits = fates(config(0.3, 7, ChaosSignal::Term), 2000)
            .iter()
            .filter(|f| f.is_some())
            .count();
        assert!((500..700).contains(&hits), "{hits}");
        assert!(
            fates(config(0.0, 7, ChaosSignal::Term), 100)
                .iter()
                .all(Option::is_none)
        );
        assert!(
            fates(config(1.0, 7, ChaosSignal::Term), 100)
                .iter()
                .all(Option::is_some)
        );
    }

    #[test]
    fn a_targets_fate_does_not_depend_on_the_share_of_other_jobs() {
        // Three draws per Job whatever happens: Job n's moment is the same at any share.
        let all = fates(config(1.0, 9, ChaosSignal::Kill), 50);
        let some = fates(config(0.5, 9, ChaosSignal::Kill), 50);
        for (a, s) in all.iter().zip(&some) {
            if let Some(s) = s {
                assert_eq!(Some(s), a.as_ref());
            }
        }
    }

    #[test]
    fn moments_fall_within_the_window_and_random_mixes_signals() {
        let kills: Vec<_> = fates(config(1.0, 1, ChaosSignal::Random), 100)
            .into_iter()
            .flatten()
            .collect();
        assert!(kills.iter().all(|k| k.after < Duration::from_secs(10)));
        assert!(kills.iter().any(|k| k.signal == KillSignal::Term));
        assert!(kills.iter().any(|k| k.signal == KillSignal::Kill));
    }
}
