//! The paper's LLM claims, checked on a run: our value across trained seeds (the seed is the
//! unit), its interval, the authors' figure through the same statistics, and a verdict.
//!
//! - A difference claim is *reproduced* when its whole interval lies on the claimed side of 0,
//!   *not reproduced* when it lies wholly on the other side, and *inconclusive* otherwise.
//! - An equivalence claim ("ties", "no change") is reproduced only when its whole interval lies
//!   inside the margin the experiment file set before the run, not reproduced when it lies
//!   wholly outside, and inconclusive otherwise.
//! - Under 3 seeds there is no interval across seeds: a claim is at most inconclusive, and its
//!   note says so.
//!
//! Each claim names its evidence (which judge, or the probe) and carries the final probe KL of
//! the variants it involves: a variant that merely drifts less from the base model must not
//! pass for one that prevents collapse.
//!
//! A claim that rests on a judge which failed its exam (`judge_exam`: its accuracy interval is
//! not wholly above 0.5) is at most inconclusive, whatever its interval says.

use std::collections::BTreeMap;

use fpo_rundir::llm::ProbeRow;
use fpo_rundir::{Claim, CountsTest, Side, Variant, Verdict, variant_name};
use serde::{Deserialize, Serialize};

use crate::evaluation::Evaluation;
use crate::generation::{Comparison, OFFLINE_JUDGE, PUBLISHED_PAIRS, PUBLISHED_WORDS};
use crate::stats::{Summary, sign_test, wilson};

/// Fewest seeds that give an interval across seeds.
pub const MIN_SEEDS: usize = 3;

/// The equivalence margins of the LLM claims, fixed in the experiment file before the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimMargins {
    /// "Ties": the net win rate (second's wins minus first's, over the questions) within
    /// `±tie`.
    pub tie: f64,
    /// "No change in verbosity": the mean words per answer within `±words` of standard's.
    pub words: f64,
}

impl Default for ClaimMargins {
    fn default() -> Self {
        Self {
            tie: 0.05,
            words: 3.0,
        }
    }
}

/// The authors' counts as the claims table words them.
fn counts_words(c: &CountsTest, first: &str, second: &str, over: &str) -> String {
    format!(
        "{} / {} / {} ({first} / {second} / tie{over})",
        c.first_wins, c.second_wins, c.ties
    )
}

/// The authors' counts for `(first, second)` (overall, 817 questions).
fn authors_counts(first: &str, second: &str) -> Option<CountsTest> {
    PUBLISHED_PAIRS
        .iter()
        .find(|p| p.first == first && p.second == second)
        .map(|p| counts_test(p.first_wins, p.second_wins, p.ties))
}

/// Counts under a sign test and a 95% Wilson interval of the second's share of the decided.
pub fn counts_test(first_wins: usize, second_wins: usize, ties: usize) -> CountsTest {
    CountsTest {
        first_wins,
        second_wins,
        ties,
        sign_test_p: sign_test(second_wins, first_wins),
        second_share: wilson(second_wins, first_wins + second_wins, 0.95),
    }
}

/// The verdict of `s` against 0 on `side` (with `margin` for [`Side::Within`]), and a note,
/// given `seeds`.
fn verdict(s: &Summary, side: Side, margin: f64, seeds: usize) -> (Verdict, String) {
    if seeds < MIN_SEEDS {
        return (
            Verdict::Inconclusive,
            format!(
                "{seeds} seed{}: the trained seed is the unit, and an interval across seeds needs at least {MIN_SEEDS}",
                if seeds == 1 { "" } else { "s" }
            ),
        );
    }
    let (lo, hi) = (s.ci_low, s.ci_high);
    let v = match side {
        Side::Above if lo > 0.0 => Verdict::Reproduced,
        Side::Above if hi < 0.0 => Verdict::NotReproduced,
        Side::Below if hi < 0.0 => Verdict::Reproduced,
        Side::Below if lo > 0.0 => Verdict::NotReproduced,
        Side::Within if lo > -margin && hi < margin => Verdict::Reproduced,
        Side::Within if lo > margin || hi < -margin => Verdict::NotReproduced,
        _ => Verdict::Inconclusive,
    };
    let note = match (v, side) {
        (Verdict::Inconclusive, Side::Within) => {
            format!("the interval is not inside the margin ±{margin}")
        }
        (Verdict::Inconclusive, _) => "the interval contains 0".into(),
        _ => String::new(),
    };
    (v, note)
}

/// One seed's comparison of `first` against `second`: the LLM judge's where there is one, else
/// the offline judge's.
fn comparison<'a>(ev: &'a Evaluation, first: &str, second: &str) -> Option<&'a Comparison> {
    let of_pair = || {
        ev.comparisons
            .iter()
            .filter(move |c| c.first == first && c.second == second)
    };
    of_pair()
        .find(|c| c.judge != OFFLINE_JUDGE)
        .or_else(|| of_pair().next())
}

struct Probes<'a>(&'a BTreeMap<String, Vec<ProbeRow>>);

impl Probes<'_> {
    /// The first and last probe rows of a trained model.
    fn ends(&self, v: Variant, seed: u64) -> Option<(&ProbeRow, &ProbeRow)> {
        let rows = self.0.get(&variant_name(v, seed))?;
        Some((rows.first()?, rows.last()?))
    }

    /// The gap's widening (last minus first probe).
    fn widening(&self, v: Variant, seed: u64) -> Option<f64> {
        self.ends(v, seed).map(|(a, b)| b.gap - a.gap)
    }

    /// Final KL of `v`, mean over the seeds that have it.
    fn drift(&self, v: Variant, seeds: &[u64]) -> Option<f64> {
        let ks: Vec<f64> = seeds
            .iter()
            .filter_map(|&s| self.ends(v, s).map(|(_, b)| b.kl))
            .collect();
        (!ks.is_empty()).then(|| ks.iter().sum::<f64>() / ks.len() as f64)
    }
}

struct Spec {
    id: &'static str,
    statement: &'static str,
    authors: String,
    quantity: String,
    evidence: String,
    side: Side,
    margin: f64,
    variants: Vec<Variant>,
    authors_test: Option<CountsTest>,
    /// One value per seed that has it.
    values: Vec<f64>,
    /// Why the evidence cannot be read (a judge that failed its exam).
    untrusted: Option<String>,
}

fn claim(spec: Spec, probes: &Probes<'_>, seeds: &[u64], level: f64) -> Claim {
    let n = spec.values.len();
    let ours = (n > 0).then(|| Summary::of(&spec.values, level));
    let (verdict, note) = match &ours {
        None => (
            Verdict::NotRun,
            "a variant, metric or probe this claim needs was not run".into(),
        ),
        Some(s) => match (verdict(s, spec.side, spec.margin, n), spec.untrusted) {
            ((Verdict::Reproduced | Verdict::NotReproduced, _), Some(why)) => {
                (Verdict::Inconclusive, why)
            }
            ((v, note), Some(why)) if note.is_empty() => (v, why),
            ((v, note), Some(why)) => (v, format!("{note}; {why}")),
            (vn, None) => vn,
        },
    };
    Claim {
        id: spec.id.to_owned(),
        statement: spec.statement.to_owned(),
        authors: spec.authors,
        quantity: spec.quantity,
        ours,
        side: spec.side,
        threshold: 0.0,
        verdict,
        evidence: spec.evidence,
        note,
        margin: (spec.side == Side::Within).then_some(spec.margin),
        drift: spec
            .variants
            .iter()
            .filter_map(|&v| probes.drift(v, seeds).map(|k| (v.to_string(), k)))
            .collect(),
        authors_test: spec.authors_test,
    }
}

/// The LLM claims of a run whose trained models are every variant of `seeds`, from its
/// evaluation and the probe rows of each trained model (by model name).
pub fn llm_claims(
    ev: &Evaluation,
    probe_rows: &BTreeMap<String, Vec<ProbeRow>>,
    seeds: &[u64],
    margins: &ClaimMargins,
    level: f64,
) -> Vec<Claim> {
    use Side::*;
    use Variant::*;
    let probes = Probes(probe_rows);
    // Per seed: the second's net win rate over the first, overall or on one TruthfulQA Type.
    let judged = |a: Variant, b: Variant, kind: Option<&str>| {
        let mut judges = Vec::new();
        let values: Vec<f64> = seeds
            .iter()
            .filter_map(|&s| {
                let c = comparison(ev, &variant_name(a, s), &variant_name(b, s))?;
                let w = match kind {
                    None => &c.overall,
                    Some(k) => c.by_type.get(k)?,
                };
                if !judges.contains(&c.judge) {
                    judges.push(c.judge.clone());
                }
                (w.n > 0).then(|| (w.second.k as f64 - w.first.k as f64) / w.n as f64)
            })
            .collect();
        let evidence = if judges.is_empty() {
            "pairwise judge (not run)".to_owned()
        } else {
            format!("pairwise judge: {}", judges.join("; "))
        };
        let failed: Vec<String> = judges
            .iter()
            .filter_map(|j| ev.judge_cards.iter().find(|c| &c.judge == j))
            .filter(|c| !c.passed)
            .map(|c| {
                let a = &c.overall.accuracy;
                format!(
                    "its judge failed the exam (accuracy {:.2} [{:.2}, {:.2}] over {} verdicts, not wholly above 0.5): {}",
                    a.share.unwrap_or(f64::NAN),
                    a.ci_low,
                    a.ci_high,
                    a.n,
                    c.judge
                )
            })
            .collect();
        let untrusted = (!failed.is_empty()).then(|| failed.join("; "));
        (values, evidence, untrusted)
    };
    let words = |v: Variant| {
        seeds
            .iter()
            .filter_map(|&s| {
                let a = ev.generation.get(&variant_name(v, s))?;
                let b = ev.generation.get(&variant_name(Standard, s))?;
                Some(a.overall.words.mean - b.overall.words.mean)
            })
            .collect::<Vec<_>>()
    };
    let published_words = |v: &str| {
        PUBLISHED_WORDS
            .iter()
            .find(|(n, _)| n == v)
            .map_or(f64::NAN, |(_, w)| *w)
    };
    let authors_words = |a: &str, b: &str| {
        authors_counts(a, b).map_or_else(String::new, |c| counts_words(&c, a, b, ""))
    };
    // The paper's adversarial-deceptive subset (120 questions), standard vs practical.
    let adversarial = counts_test(27, 18, 75);
    let net = "net win rate of the second over the first (wins minus losses, over the questions), per seed";
    let mut specs = Vec::new();
    let (values, evidence, untrusted) = judged(Standard, Relaxed, None);
    specs.push(Spec {
        id: "llm.relaxed_beats_standard",
        statement: "Relaxed FPO's answers beat standard RLHF's",
        authors: authors_words("standard", "relaxed"),
        quantity: format!("standard vs relaxed: {net}"),
        evidence,
        side: Above,
        margin: 0.0,
        variants: vec![Standard, Relaxed],
        authors_test: authors_counts("standard", "relaxed"),
        values,
        untrusted,
    });
    let (values, evidence, untrusted) = judged(Standard, Practical, None);
    specs.push(Spec {
        id: "llm.practical_ties_standard",
        statement: "Practical FPO ties standard RLHF",
        authors: authors_words("standard", "practical"),
        quantity: format!("standard vs practical: {net}"),
        evidence,
        side: Within,
        margin: margins.tie,
        variants: vec![Standard, Practical],
        authors_test: authors_counts("standard", "practical"),
        values,
        untrusted,
    });
    let (values, evidence, untrusted) = judged(Standard, Practical, Some("Adversarial"));
    specs.push(Spec {
        id: "llm.practical_loses_adversarial",
        statement: "Practical FPO loses to standard RLHF on adversarial questions",
        authors: counts_words(
            &adversarial,
            "standard",
            "practical",
            ", their adversarial-deceptive subset of 120",
        ),
        quantity: format!("standard vs practical on TruthfulQA's Adversarial questions: {net}"),
        evidence,
        side: Below,
        margin: 0.0,
        variants: vec![Standard, Practical],
        authors_test: Some(adversarial),
        values,
        untrusted,
    });
    let (values, evidence, untrusted) = judged(Relaxed, Practical, None);
    specs.push(Spec {
        id: "llm.relaxed_beats_practical",
        statement: "Relaxed FPO's answers beat practical FPO's",
        authors: authors_words("relaxed", "practical"),
        quantity: format!("relaxed vs practical: {net}"),
        evidence,
        side: Below,
        margin: 0.0,
        variants: vec![Relaxed, Practical],
        authors_test: authors_counts("relaxed", "practical"),
        values,
        untrusted,
    });
    for (id, v, name) in [
        ("llm.relaxed_no_verbosity_change", Relaxed, "relaxed"),
        ("llm.practical_no_verbosity_change", Practical, "practical"),
    ] {
        specs.push(Spec {
            id,
            statement: if v == Relaxed {
                "Relaxed FPO does not change verbosity"
            } else {
                "Practical FPO does not change verbosity"
            },
            authors: format!(
                "{:.1} words ({name}) vs {:.1} (standard)",
                published_words(name),
                published_words("standard")
            ),
            quantity: format!("mean words per greedy answer, {name} minus standard, per seed"),
            evidence: "greedy answers (64 new tokens), words per answer".into(),
            side: Within,
            margin: margins.words,
            variants: vec![Standard, v],
            authors_test: None,
            values: words(v),
            untrusted: None,
        });
    }
    let gap = "the probe's proxy-minus-true gap, (RM gain) - (utility gain) over the base model's samples, last probe minus first";
    specs.push(Spec {
        id: "llm.standard_probe_gap_widens",
        statement: "Under standard RLHF the gap between the proxy and the true reward widens",
        authors: "the paper's account of alignment collapse (no LLM figure)".into(),
        quantity: format!("standard: {gap}, per seed"),
        evidence: "held-out probe".into(),
        side: Above,
        margin: 0.0,
        variants: vec![Standard],
        authors_test: None,
        values: seeds
            .iter()
            .filter_map(|&s| probes.widening(Standard, s))
            .collect(),
        untrusted: None,
    });
    for (id, v) in [
        ("llm.relaxed_probe_gap_widens_less", Relaxed),
        ("llm.practical_probe_gap_widens_less", Practical),
    ] {
        specs.push(Spec {
            id,
            statement: if v == Relaxed {
                "Relaxed FPO's proxy-true gap widens less than standard RLHF's"
            } else {
                "Practical FPO's proxy-true gap widens less than standard RLHF's"
            },
            authors: "the paper's account of alignment collapse (no LLM figure)".into(),
            quantity: format!("standard's widening minus {v}'s ({gap}), paired by seed"),
            evidence: "held-out probe".into(),
            side: Above,
            margin: 0.0,
            variants: vec![Standard, v],
            authors_test: None,
            values: seeds
                .iter()
                .filter_map(|&s| Some(probes.widening(Standard, s)? - probes.widening(v, s)?))
                .collect(),
            untrusted: None,
        });
    }
    specs
        .into_iter()
        .map(|s| claim(s, &probes, seeds, level))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(mean: f64, lo: f64, hi: f64) -> Summary {
        Summary {
            ci_low: lo,
            ci_high: hi,
            ..Summary::of(&[mean], 0.95)
        }
    }

    /// Catches a verdict that reads the mean alone (a straddling interval "reproduced" or "not
    /// reproduced"), an equivalence judged by its mean, and a single seed passed as evidence.
    #[test]
    fn straddling_intervals_and_single_seeds_are_inconclusive() {
        let (v, note) = verdict(&summary(0.1, -0.02, 0.22), Side::Above, 0.0, 5);
        assert_eq!(v, Verdict::Inconclusive);
        assert!(note.contains("contains 0"), "{note}");
        let (v, _) = verdict(&summary(-0.1, -0.22, 0.02), Side::Above, 0.0, 5);
        assert_eq!(
            v,
            Verdict::Inconclusive,
            "mean on the wrong side, interval straddles"
        );
        assert_eq!(
            verdict(&summary(0.1, 0.02, 0.2), Side::Above, 0.0, 5).0,
            Verdict::Reproduced
        );
        assert_eq!(
            verdict(&summary(-0.1, -0.2, -0.02), Side::Above, 0.0, 5).0,
            Verdict::NotReproduced
        );
        let (v, note) = verdict(&summary(0.3, 0.25, 0.35), Side::Above, 0.0, 1);
        assert_eq!(v, Verdict::Inconclusive, "one seed");
        assert!(note.contains("1 seed"), "{note}");
        // Equivalence: inside the margin, straddling it, wholly outside.
        let within = |lo, hi| verdict(&summary(0.0, lo, hi), Side::Within, 0.05, 4).0;
        assert_eq!(within(-0.03, 0.04), Verdict::Reproduced);
        assert_eq!(within(-0.03, 0.08), Verdict::Inconclusive);
        assert_eq!(within(0.06, 0.09), Verdict::NotReproduced);
    }

    /// Catches the authors' sign test taken over all questions instead of the decided ones, or
    /// on the wrong side: their one significant pair is standard vs relaxed.
    #[test]
    fn the_authors_counts_go_through_the_same_sign_test() {
        let sr = authors_counts("standard", "relaxed").unwrap();
        assert!((sr.sign_test_p - 0.018).abs() < 0.002, "{sr:?}");
        assert!(sr.second_share.0 > 0.5, "relaxed's share of the decided");
        let sp = authors_counts("standard", "practical").unwrap();
        assert!((sp.sign_test_p - 0.81).abs() < 0.01, "{sp:?}");
        let rp = authors_counts("relaxed", "practical").unwrap();
        assert!((rp.sign_test_p - 0.11).abs() < 0.01, "{rp:?}");
    }

    /// Catches a claim read from a judge that failed its exam: the same comparisons give
    /// "reproduced" under a judge that passed and at most "inconclusive" under one that did not.
    #[test]
    fn a_judge_that_failed_its_exam_makes_its_claims_inconclusive() {
        use crate::generation::{Comparison, Verdict as V, WinTieLoss};
        use crate::judge_exam::{Card, ExamAnswer};
        let judge = "llm: m at host (both orders)";
        let comparison = |seed: u64, second_wins: usize| {
            let verdicts: Vec<Option<V>> = (0..10)
                .map(|i| Some(if i < second_wins { V::Second } else { V::First }))
                .collect();
            Comparison {
                first: format!("standard-seed{seed}"),
                second: format!("relaxed-seed{seed}"),
                judge: judge.to_owned(),
                overall: WinTieLoss::of(&verdicts, 0.95),
                by_type: BTreeMap::new(),
                by_category: BTreeMap::new(),
                similar_length: WinTieLoss::of(&[], 0.95),
                swap_consistency: None,
                single_order: None,
                soft: None,
            }
        };
        let exam = |right: bool| -> Vec<ExamAnswer> {
            (0..50)
                .map(|id| ExamAnswer {
                    id,
                    kind: "Adversarial".into(),
                    correct_as_a: Some(V::First),
                    incorrect_as_a: Some(if right { V::Second } else { V::First }),
                    soft: None,
                })
                .collect()
        };
        let claim = |passes: bool| {
            let ev = Evaluation {
                comparisons: vec![comparison(0, 8), comparison(1, 7), comparison(2, 9)],
                judge_cards: vec![Card::of(judge, &exam(passes), 0.95)],
                ..Evaluation::default()
            };
            llm_claims(
                &ev,
                &BTreeMap::new(),
                &[0, 1, 2],
                &ClaimMargins::default(),
                0.95,
            )
            .into_iter()
            .find(|c| c.id == "llm.relaxed_beats_standard")
            .unwrap()
        };
        assert_eq!(claim(true).verdict, Verdict::Reproduced);
        let failed = claim(false);
        assert_eq!(failed.verdict, Verdict::Inconclusive);
        assert!(failed.note.contains("failed the exam"), "{}", failed.note);
    }

    /// Catches claims that read the wrong pair's comparison or ignore the probe: with no
    /// comparison and no probe every claim is "not run"; one seed's probe gives an
    /// inconclusive gap claim that carries its drift.
    #[test]
    fn claims_without_evidence_are_not_run_and_probe_claims_carry_drift() {
        let ev = Evaluation::default();
        let none = llm_claims(&ev, &BTreeMap::new(), &[0], &ClaimMargins::default(), 0.95);
        assert_eq!(none.len(), 9);
        assert!(none.iter().all(|c| c.verdict == Verdict::NotRun));
        let row = |t, gap, kl| ProbeRow {
            iteration: t,
            prompts: 2,
            reward: 0.0,
            base_reward: 0.0,
            reward_initial_head: 0.0,
            base_reward_initial_head: 0.0,
            utility: 0.0,
            base_utility: 0.0,
            response_utility: 0.0,
            base_response_utility: 0.0,
            gap,
            kl,
            length: 0.0,
            base_length: 0.0,
            truncated: 0.0,
            distinct_1: 0.0,
            distinct_2: 0.0,
        };
        let mut probes = BTreeMap::new();
        probes.insert(
            "standard-seed0".into(),
            vec![row(0, 0.1, 0.0), row(8, 0.5, 0.2)],
        );
        probes.insert(
            "relaxed-seed0".into(),
            vec![row(0, 0.1, 0.0), row(8, 0.2, 0.1)],
        );
        let c = llm_claims(&ev, &probes, &[0], &ClaimMargins::default(), 0.95);
        let widen = c
            .iter()
            .find(|c| c.id == "llm.standard_probe_gap_widens")
            .unwrap();
        assert!((widen.ours.as_ref().unwrap().mean - 0.4).abs() < 1e-12);
        assert_eq!(widen.verdict, Verdict::Inconclusive);
        assert_eq!(widen.drift, vec![("standard".to_owned(), 0.2)]);
        let less = c
            .iter()
            .find(|c| c.id == "llm.relaxed_probe_gap_widens_less")
            .unwrap();
        assert!((less.ours.as_ref().unwrap().mean - 0.3).abs() < 1e-12);
        assert_eq!(less.drift.len(), 2);
    }
}
