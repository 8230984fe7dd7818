//! Summary statistics with confidence intervals, over plain numbers.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// Mean, standard deviation and a Student-t confidence interval of the mean.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of observations.
    pub n: usize,
    /// Sample mean.
    pub mean: f64,
    /// Sample standard deviation (n - 1 in the denominator; 0 for one observation).
    pub sd: f64,
    /// Lower end of the confidence interval of the mean (the mean itself for n < 2).
    pub ci_low: f64,
    /// Upper end of the confidence interval of the mean (the mean itself for n < 2).
    pub ci_high: f64,
    /// Confidence level of the interval, e.g. 0.95.
    pub level: f64,
}

impl Summary {
    /// Summarises `xs` with a two-sided Student-t interval at `level` (e.g. 0.95).
    ///
    /// # Panics
    /// If `xs` is empty or `level` is not in (0, 1).
    pub fn of(xs: &[f64], level: f64) -> Self {
        assert!(!xs.is_empty(), "summary of no observations");
        assert!(
            level > 0.0 && level < 1.0,
            "confidence level {level} not in (0, 1)"
        );
        let n = xs.len();
        // Sum in sorted order: the summary must not depend on the order of the observations.
        let mut sorted = xs.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mean = sorted.iter().sum::<f64>() / n as f64;
        if n < 2 {
            return Self {
                n,
                mean,
                sd: 0.0,
                ci_low: mean,
                ci_high: mean,
                level,
            };
        }
        let var = sorted.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64;
        let sd = var.sqrt();
        let t = StudentsT::new(0.0, 1.0, (n - 1) as f64)
            .expect("n >= 2 gives positive degrees of freedom")
            .inverse_cdf(0.5 + level / 2.0);
        let half = t * sd / (n as f64).sqrt();
        Self {
            n,
            mean,
            sd,
            ci_low: mean - half,
            ci_high: mean + half,
            level,
        }
    }

    /// Whether the whole interval lies above `x`.
    pub fn above(&self, x: f64) -> bool {
        self.ci_low > x
    }

    /// Whether the whole interval lies below `x`.
    pub fn below(&self, x: f64) -> bool {
        self.ci_high < x
    }
}

/// Summary of the paired differences `a[i] - b[i]`.
///
/// # Panics
/// If the slices differ in length or are empty.
pub fn paired_difference(a: &[f64], b: &[f64], level: f64) -> Summary {
    assert_eq!(a.len(), b.len(), "paired samples of different sizes");
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    Summary::of(&d, level)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    #[test]
    fn known_values() {
        // scipy.stats.t.ppf(0.975, 4) = 2.7764451051977987; data mean 3, sd sqrt(2.5).
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.95);
        assert_eq!(s.mean, 3.0);
        assert!((s.sd - 2.5f64.sqrt()).abs() < 1e-12);
        let half = 2.776_445_105_197_798_7 * 2.5f64.sqrt() / 5f64.sqrt();
        assert!((s.ci_high - 3.0 - half).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn single_observation_has_a_degenerate_interval() {
        let s = Summary::of(&[4.2], 0.95);
        assert_eq!((s.ci_low, s.ci_high, s.sd), (4.2, 4.2, 0.0));
    }

    proptest! {
        #[test]
        fn order_invariant(mut xs in prop::collection::vec(-1e3..1e3f64, 2..40), seed in 0u64..1000) {
            let a = Summary::of(&xs, 0.95);
            // A seeded Fisher-Yates shuffle.
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            for i in (1..xs.len()).rev() {
                let j = rand::Rng::random_range(&mut rng, 0..=i);
                xs.swap(i, j);
            }
            prop_assert_eq!(a, Summary::of(&xs, 0.95));
        }

        #[test]
        fn interval_contains_mean(xs in prop::collection::vec(-1e3..1e3f64, 2..40)) {
            let s = Summary::of(&xs, 0.9);
            prop_assert!(s.ci_low <= s.mean && s.mean <= s.ci_high);
        }
    }

    #[test]
    fn coverage_on_simulated_normal_data_is_near_nominal() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let normal = Normal::new(1.5, 2.0).unwrap();
        let trials = 4000;
        let covered = (0..trials)
            .filter(|_| {
                let xs: Vec<f64> = (0..8).map(|_| normal.sample(&mut rng)).collect();
                let s = Summary::of(&xs, 0.95);
                s.ci_low <= 1.5 && 1.5 <= s.ci_high
            })
            .count();
        let rate = covered as f64 / trials as f64;
        // Binomial sd at 4000 trials is ~0.0035: allow four of them.
        assert!((rate - 0.95).abs() < 0.014, "coverage {rate}");
    }
}
