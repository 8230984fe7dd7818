//! A toy suite's `summary.json` from its `metrics.csv` rows: each (variant, seed)'s final state,
//! summarised per variant over seeds, the paper's claims checked on them, and in ladder runs
//! each penalty's correlation with the exact one along the trajectories.

use std::collections::BTreeMap;

use fpo_rundir::{MetricsRow, Summary, ToySummary, VariantSummary};

use crate::claims::{self, Final, FinalsByVariant};
use crate::stats::pearson;

/// Which of the paper's claims a toy suite checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToyClaims {
    /// The linear toy's.
    Linear,
    /// The NN toy's.
    Nn,
}

/// The summary of a toy suite's runs. `rows` are its metrics rows, each (variant, seed)'s rows
/// contiguous and in iteration order (as `metrics.csv` holds them); the last row of a run is its
/// final state.
pub fn summarize(suite: &str, claims: ToyClaims, level: f64, rows: &[MetricsRow]) -> ToySummary {
    let mut by_variant: BTreeMap<&str, Vec<&[MetricsRow]>> = BTreeMap::new();
    for run in rows.chunk_by(|a, b| a.variant == b.variant && a.seed == b.seed) {
        by_variant.entry(&run[0].variant).or_default().push(run);
    }
    let last = |run: &[MetricsRow]| run.last().cloned().expect("a run has rows");
    let variants = by_variant
        .iter()
        .map(|(name, runs)| {
            let of = |f: fn(&MetricsRow) -> f64| {
                Summary::of(&runs.iter().map(|r| f(&last(r))).collect::<Vec<_>>(), level)
            };
            let summary = VariantSummary {
                seeds: runs.iter().map(|r| r[0].seed).collect(),
                true_utility: of(|x| x.true_utility),
                noise: of(|x| x.noise),
                signal: of(|x| x.signal),
                proxy_reward: of(|x| x.proxy_reward),
                penalty: of(|x| x.penalty),
                exact_penalty_correlation: exact_correlation(runs, level),
            };
            ((*name).to_owned(), summary)
        })
        .collect();
    let finals: FinalsByVariant = by_variant
        .iter()
        .map(|(name, runs)| {
            let mut fs: Vec<Final> = runs
                .iter()
                .map(|r| {
                    let x = last(r);
                    Final {
                        seed: x.seed,
                        utility: x.true_utility,
                        noise: x.noise,
                    }
                })
                .collect();
            fs.sort_by_key(|f| f.seed);
            ((*name).to_owned(), fs)
        })
        .collect();
    let claims = match claims {
        ToyClaims::Linear => claims::linear(&finals, level),
        ToyClaims::Nn => claims::nn(&finals, level),
    };
    ToySummary {
        suite: suite.to_owned(),
        confidence: level,
        variants,
        claims,
    }
}

/// Per seed, the correlation of the run's penalty with the exact one along its logged points;
/// summarised over seeds (none when no run logged the exact penalty or every one is constant).
fn exact_correlation(runs: &[&[MetricsRow]], level: f64) -> Option<Summary> {
    let per_seed: Vec<f64> = runs
        .iter()
        .filter_map(|r| {
            let (own, exact): (Vec<f64>, Vec<f64>) = r
                .iter()
                .filter_map(|x| Some((x.penalty, x.exact_penalty?)))
                .unzip();
            pearson(&own, &exact)
        })
        .collect();
    (!per_seed.is_empty()).then(|| Summary::of(&per_seed, level))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(variant: &str, seed: u64, utilities: &[f64], exact: bool) -> Vec<MetricsRow> {
        utilities
            .iter()
            .enumerate()
            .map(|(i, &u)| MetricsRow {
                variant: variant.into(),
                seed,
                iteration: i,
                signal: u / 2.0,
                noise: 1.0 / (1.0 + u),
                true_utility: u,
                proxy_reward: u + 1.0,
                penalty: i as f64,
                exact_penalty: exact.then_some(2.0 * i as f64 + 1.0),
            })
            .collect()
    }

    #[test]
    fn finals_are_the_last_rows_of_each_run() {
        let mut rows = run("standard", 0, &[1.0, 2.0, 3.0], false);
        rows.extend(run("standard", 1, &[1.0, 5.0], false));
        rows.extend(run("relaxed", 0, &[4.0, 9.0], false));
        let s = summarize("toy-nn", ToyClaims::Nn, 0.95, &rows);
        assert_eq!(s.variants["standard"].seeds, vec![0, 1]);
        assert_eq!(s.variants["standard"].true_utility.mean, 4.0);
        assert_eq!(s.variants["relaxed"].true_utility.mean, 9.0);
        assert_eq!(s.variants["relaxed"].true_utility.n, 1);
        assert!(s.variants["standard"].exact_penalty_correlation.is_none());
        assert!(!s.claims.is_empty());
    }

    #[test]
    fn a_penalty_linear_in_the_exact_one_correlates_perfectly() {
        let rows = run("practical", 0, &[1.0, 2.0, 3.0, 4.0], true);
        let s = summarize("toy-linear", ToyClaims::Linear, 0.95, &rows);
        let c = s.variants["practical"].exact_penalty_correlation.unwrap();
        assert!((c.mean - 1.0).abs() < 1e-12, "{c:?}");
    }
}
