//! Summary statistics with confidence intervals, over plain numbers.

use serde::{Deserialize, Serialize};
use statrs::distribution::{Binomial, ContinuousCDF, DiscreteCDF, Normal};

pub use fpo_rundir::Summary;

/// Summary of the paired differences `a[i] - b[i]`.
///
/// # Panics
/// If the slices differ in length or are empty.
pub fn paired_difference(a: &[f64], b: &[f64], level: f64) -> Summary {
    assert_eq!(a.len(), b.len(), "paired samples of different sizes");
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    Summary::of(&d, level)
}

/// Pearson's correlation of `xs` and `ys`; `None` when either side is constant.
pub fn pearson(xs: &[f64], ys: &[f64]) -> Option<f64> {
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in xs.iter().zip(ys) {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// `f` of each group of `rows` sharing a `key` (a TruthfulQA Type or Category, say), keyed and
/// ordered by it; rows keep their order within a group.
pub fn by_group<T, S>(
    rows: &[T],
    key: impl Fn(&T) -> &str,
    f: impl Fn(&[&T]) -> S,
) -> std::collections::BTreeMap<String, S> {
    let mut groups: std::collections::BTreeMap<String, Vec<&T>> = Default::default();
    for r in rows {
        groups.entry(key(r).to_owned()).or_default().push(r);
    }
    groups.into_iter().map(|(k, v)| (k, f(&v))).collect()
}

/// The Wilson score interval of a proportion: `successes` of `n` at confidence `level`
/// (`(0, 1)` for `n = 0`).
pub fn wilson(successes: usize, n: usize, level: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = Normal::new(0.0, 1.0)
        .expect("standard normal")
        .inverse_cdf(0.5 + level / 2.0);
    let (n, p) = (n as f64, successes as f64 / n as f64);
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// A share with its Wilson interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Share {
    /// Count.
    pub k: usize,
    /// Out of.
    pub n: usize,
    /// `k / n`; none when `n` is 0 (no observation: a judge that failed on every pair).
    pub share: Option<f64>,
    /// Wilson interval, lower end.
    pub ci_low: f64,
    /// Wilson interval, upper end.
    pub ci_high: f64,
}

impl Share {
    /// `k` of `n` at confidence `level`.
    pub fn of(k: usize, n: usize, level: f64) -> Self {
        let (ci_low, ci_high) = wilson(k, n, level);
        Self {
            k,
            n,
            share: (n > 0).then(|| k as f64 / n as f64),
            ci_low,
            ci_high,
        }
    }
}

/// The exact two-sided sign test of "A beats B" over the non-tied pairs: the probability, under
/// a fair coin, of a split at least as uneven as `wins` to `losses`.
pub fn sign_test(wins: usize, losses: usize) -> f64 {
    let n = wins + losses;
    if n == 0 {
        return 1.0;
    }
    let k = wins.min(losses) as u64;
    let b = Binomial::new(0.5, n as u64).expect("valid binomial");
    (2.0 * b.cdf(k)).min(1.0)
}

/// McNemar's exact test for paired binary outcomes (MC1 of two models on the same questions):
/// the sign test over the discordant pairs, `b` (only the first right) vs `c` (only the second).
pub fn mcnemar(first: &[bool], second: &[bool]) -> f64 {
    assert_eq!(
        first.len(),
        second.len(),
        "paired samples of different sizes"
    );
    let b = first
        .iter()
        .zip(second)
        .filter(|(a, b)| **a && !**b)
        .count();
    let c = first
        .iter()
        .zip(second)
        .filter(|(a, b)| !**a && **b)
        .count();
    sign_test(b, c)
}

/// A percentile bootstrap interval of the mean paired difference `a[i] - b[i]`, with
/// `resamples` resamples drawn from `seed` (deterministic).
pub fn bootstrap_paired(
    a: &[f64],
    b: &[f64],
    level: f64,
    resamples: usize,
    seed: u64,
) -> (f64, f64) {
    use rand::{Rng, SeedableRng};
    assert_eq!(a.len(), b.len(), "paired samples of different sizes");
    assert!(!a.is_empty(), "bootstrap of no observations");
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n = d.len();
    let mut means: Vec<f64> = (0..resamples.max(1))
        .map(|_| (0..n).map(|_| d[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (means.len() - 1) as f64).round() as usize).min(means.len() - 1)];
    let alpha = (1.0 - level) / 2.0;
    (at(alpha), at(1.0 - alpha))
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

    #[test]
    fn wilson_and_sign_test_known_values() {
        // statsmodels proportion_confint(7, 20, method="wilson"): (0.1812, 0.5671).
        let (lo, hi) = wilson(7, 20, 0.95);
        assert!(
            (lo - 0.181_2).abs() < 1e-3 && (hi - 0.567_1).abs() < 1e-3,
            "{lo} {hi}"
        );
        assert_eq!(wilson(0, 0, 0.95), (0.0, 1.0));
        // scipy.stats.binomtest(2, 10).pvalue = 0.109375.
        assert!((sign_test(2, 8) - 0.109_375).abs() < 1e-9);
        assert!((sign_test(8, 2) - 0.109_375).abs() < 1e-9);
        assert_eq!(sign_test(5, 5), 1.0);
        assert_eq!(sign_test(0, 0), 1.0);
        let a = [true, true, true, false, true];
        let b = [false, false, true, false, true];
        assert!(
            (mcnemar(&a, &b) - 0.5).abs() < 1e-12,
            "2 vs 0 discordant: p = 0.5"
        );
    }

    #[test]
    fn wilson_coverage_on_simulated_binomials_is_near_nominal() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let (p, n, trials) = (0.3, 60, 4000);
        let covered = (0..trials)
            .filter(|_| {
                let k = (0..n)
                    .filter(|_| rand::Rng::random::<f64>(&mut rng) < p)
                    .count();
                let (lo, hi) = wilson(k, n, 0.95);
                lo <= p && p <= hi
            })
            .count();
        let rate = covered as f64 / trials as f64;
        assert!((rate - 0.95).abs() < 0.02, "coverage {rate}");
    }

    proptest! {
        #[test]
        fn bootstrap_brackets_the_mean_difference_and_is_deterministic(
            a in prop::collection::vec(-10.0..10.0f64, 3..30),
            shift in -3.0..3.0f64,
        ) {
            let b: Vec<f64> = a.iter().map(|x| x - shift).collect();
            let (lo, hi) = bootstrap_paired(&a, &b, 0.95, 200, 1);
            prop_assert!(lo <= shift + 1e-9 && shift - 1e-9 <= hi);
            prop_assert_eq!((lo, hi), bootstrap_paired(&a, &b, 0.95, 200, 1));
        }

        #[test]
        fn the_sign_test_is_symmetric_and_a_probability(w in 0usize..60, l in 0usize..60) {
            let p = sign_test(w, l);
            prop_assert!((0.0..=1.0).contains(&p));
            prop_assert_eq!(p, sign_test(l, w));
        }
    }
}
