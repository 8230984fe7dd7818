//! The paper's qualitative claims about the toy environments, checked on our runs.
//!
//! A claim compares a quantity (a final metric, or a paired difference between two variants of
//! the same seed) with a threshold. It is *reproduced* when the whole confidence interval lies on
//! the claimed side, *inconclusive* when only the mean does, and *not reproduced* otherwise. A
//! claim that does not hold is reported as such: nothing here is tuned to make it pass.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stats::{Summary, paired_difference};

/// The final state of one run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Final {
    /// Seed of the run.
    pub seed: u64,
    /// Final true utility.
    pub utility: f64,
    /// Final noise magnitude.
    pub noise: f64,
}

/// Final states per variant name, each sorted by seed.
pub type FinalsByVariant = BTreeMap<String, Vec<Final>>;

pub use fpo_rundir::{Claim, Side, Verdict};

fn verdict(s: &Summary, side: Side, threshold: f64) -> Verdict {
    let (all, mean) = match side {
        Side::Above => (s.ci_low > threshold, s.mean > threshold),
        Side::Below => (s.ci_high < threshold, s.mean < threshold),
        // The toys state no equivalence claim; the LLM claims (`crate::llm_claims`) do.
        Side::Within => (false, false),
    };
    if all {
        Verdict::Reproduced
    } else if mean {
        Verdict::Inconclusive
    } else {
        Verdict::NotReproduced
    }
}

#[derive(Debug, Clone, Copy)]
enum Metric {
    Utility,
    Noise,
}

impl Metric {
    fn of(self, f: &Final) -> f64 {
        match self {
            Metric::Utility => f.utility,
            Metric::Noise => f.noise,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Metric::Utility => "final true utility",
            Metric::Noise => "final noise magnitude",
        }
    }
}

struct Spec<'a> {
    id: &'a str,
    statement: &'a str,
    authors: &'a str,
    metric: Metric,
    /// One variant against a threshold, or `(a, b)` paired as `a - b` against 0.
    subject: Subject<'a>,
    side: Side,
}

enum Subject<'a> {
    Absolute(&'a str, f64),
    Paired(&'a str, &'a str),
}

fn check(finals: &FinalsByVariant, spec: Spec<'_>, level: f64) -> Claim {
    let values = |v: &str| {
        finals
            .get(v)
            .map(|fs| fs.iter().map(|f| spec.metric.of(f)).collect::<Vec<_>>())
    };
    let (quantity, ours, threshold) = match spec.subject {
        Subject::Absolute(v, t) => (
            format!("{} of {v}", spec.metric.name()),
            values(v).map(|xs| Summary::of(&xs, level)),
            t,
        ),
        Subject::Paired(a, b) => {
            let ours = match (finals.get(a), finals.get(b)) {
                (Some(fa), Some(fb)) => {
                    // Pair by seed (common random numbers): only seeds both variants ran.
                    let (xa, xb): (Vec<f64>, Vec<f64>) = fa
                        .iter()
                        .filter_map(|x| fb.iter().find(|y| y.seed == x.seed).map(|y| (x, y)))
                        .map(|(x, y)| (spec.metric.of(x), spec.metric.of(y)))
                        .unzip();
                    (!xa.is_empty()).then(|| paired_difference(&xa, &xb, level))
                }
                _ => None,
            };
            (
                format!("{} of {a} minus {b}, paired by seed", spec.metric.name()),
                ours,
                0.0,
            )
        }
    };
    Claim {
        id: spec.id.to_owned(),
        statement: spec.statement.to_owned(),
        authors: spec.authors.to_owned(),
        quantity,
        verdict: ours
            .as_ref()
            .map_or(Verdict::NotRun, |s| verdict(s, spec.side, threshold)),
        ours,
        side: spec.side,
        threshold,
        evidence: String::new(),
        note: String::new(),
        margin: None,
        drift: Vec::new(),
        authors_test: None,
    }
}

/// The linear toy's claims. The authors' figures are those of their seed-0 run
/// (`crates/runner/tests/fixtures/toy_linear_reference.json`).
pub fn linear(finals: &FinalsByVariant, level: f64) -> Vec<Claim> {
    use Metric::*;
    use Side::*;
    use Subject::*;
    let specs = [
        Spec {
            id: "linear.standard_collapses_noise",
            statement: "Standard RLHF drifts into the noise dimensions: final noise > 1",
            authors: "1.648 (seed 0)",
            metric: Noise,
            subject: Absolute("standard", 1.0),
            side: Above,
        },
        Spec {
            id: "linear.standard_collapses_utility",
            statement: "Standard RLHF ends far from the ideal: final utility < 5",
            authors: "3.932 (seed 0)",
            metric: Utility,
            subject: Absolute("standard", 5.0),
            side: Below,
        },
        Spec {
            id: "linear.relaxed_reaches_ideal_utility",
            statement: "Relaxed FPO reaches the human ideal: final utility > 9.5",
            authors: "9.806 (seed 0)",
            metric: Utility,
            subject: Absolute("relaxed", 9.5),
            side: Above,
        },
        Spec {
            id: "linear.relaxed_reaches_ideal_noise",
            statement: "Relaxed FPO stays out of the noise: final noise < 0.3",
            authors: "0.172 (seed 0)",
            metric: Noise,
            subject: Absolute("relaxed", 0.3),
            side: Below,
        },
        Spec {
            id: "linear.practical_above_standard_utility",
            statement: "Practical FPO ends between the two: utility above standard's",
            authors: "5.533 vs 3.932 (seed 0)",
            metric: Utility,
            subject: Paired("practical", "standard"),
            side: Above,
        },
        Spec {
            id: "linear.practical_below_relaxed_utility",
            statement: "Practical FPO ends between the two: utility below relaxed's",
            authors: "5.533 vs 9.806 (seed 0)",
            metric: Utility,
            subject: Paired("practical", "relaxed"),
            side: Below,
        },
        Spec {
            id: "linear.practical_below_standard_noise",
            statement: "Practical FPO ends between the two: noise below standard's",
            authors: "1.393 vs 1.648 (seed 0)",
            metric: Noise,
            subject: Paired("practical", "standard"),
            side: Below,
        },
        Spec {
            id: "linear.practical_above_relaxed_noise",
            statement: "Practical FPO ends between the two: noise above relaxed's",
            authors: "1.393 vs 0.172 (seed 0)",
            metric: Noise,
            subject: Paired("practical", "relaxed"),
            side: Above,
        },
    ];
    specs.into_iter().map(|s| check(finals, s, level)).collect()
}

/// The neural-network toy's claims. The authors' figures: their code re-seeded per run, seeds
/// 0-4, final utility mean ± sd.
pub fn nn(finals: &FinalsByVariant, level: f64) -> Vec<Claim> {
    use Metric::*;
    use Side::*;
    use Subject::*;
    let specs = [
        Spec {
            id: "nn.relaxed_beats_standard_utility",
            statement: "Relaxed FPO ends with higher mean utility than standard RLHF",
            authors: "6.40 ± 3.73 vs 4.38 ± 2.20 (5 seeds, mean ± sd)",
            metric: Utility,
            subject: Paired("relaxed", "standard"),
            side: Above,
        },
        Spec {
            id: "nn.practical_beats_standard_utility",
            statement: "Practical FPO ends with higher mean utility than standard RLHF",
            authors: "6.25 ± 3.39 vs 4.38 ± 2.20 (5 seeds, mean ± sd)",
            metric: Utility,
            subject: Paired("practical", "standard"),
            side: Above,
        },
        Spec {
            id: "nn.relaxed_below_standard_noise",
            statement: "Relaxed FPO ends with lower mean noise than standard RLHF",
            authors: "not published (figures only)",
            metric: Noise,
            subject: Paired("relaxed", "standard"),
            side: Below,
        },
        Spec {
            id: "nn.practical_below_standard_noise",
            statement: "Practical FPO ends with lower mean noise than standard RLHF",
            authors: "not published (figures only)",
            metric: Noise,
            subject: Paired("practical", "standard"),
            side: Below,
        },
    ];
    specs.into_iter().map(|s| check(finals, s, level)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finals(pairs: &[(&str, &[(f64, f64)])]) -> FinalsByVariant {
        pairs
            .iter()
            .map(|(v, xs)| {
                let fs = xs
                    .iter()
                    .enumerate()
                    .map(|(i, &(utility, noise))| Final {
                        seed: i as u64,
                        utility,
                        noise,
                    })
                    .collect();
                (v.to_string(), fs)
            })
            .collect()
    }

    #[test]
    fn verdicts_follow_the_interval() {
        let f = finals(&[
            ("standard", &[(4.0, 2.0), (4.1, 2.1), (3.9, 1.9)]),
            ("relaxed", &[(9.0, 0.1), (9.2, 0.2), (8.8, 0.3)]),
        ]);
        let claims = nn(&f, 0.95);
        assert_eq!(claims[0].verdict, Verdict::Reproduced);
        assert_eq!(claims[1].verdict, Verdict::NotRun, "practical was not run");
        assert_eq!(claims[2].verdict, Verdict::Reproduced);
    }

    #[test]
    fn a_claim_that_fails_is_reported_not_reproduced() {
        let f = finals(&[("standard", &[(9.9, 0.0)]), ("relaxed", &[(1.0, 3.0)])]);
        let c = &nn(&f, 0.95)[0];
        assert_eq!(c.verdict, Verdict::NotReproduced);
    }
}
