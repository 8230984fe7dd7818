//! The LLM suites' evaluation after training, as it lands in `summary.json`, and the protocol
//! and statistics that fill it from per-item records: MC2 and MC1 of each trained model against
//! the base model (paired Student-t and bootstrap intervals, McNemar's exact test), each
//! variant's figures across its seeds, and which pairs of models the paper compares.
//!
//! The runner scores each model on each suite (through [`crate::suite::Suite`]) and the judges;
//! everything computed from those records is here, over plain numbers.

use std::collections::BTreeMap;

use fpo_rundir::Variant;
use fpo_rundir::llm::{HeadFit, VariantOutcome};
use serde::{Deserialize, Serialize};

use crate::generation::{
    AnswersSummary, Comparison, PUBLISHED_PAIRS, PUBLISHED_WORDS, PublishedPair,
};
use crate::pressure::PressureSummary;
use crate::stats::{Summary, bootstrap_paired, mcnemar, paired_difference};
use crate::sycophancy::SycophancySummary;
use crate::truthfulqa::{McResult, McSummary};

/// Resamples of the paired bootstrap of MC2 against the base model.
const BOOTSTRAP_RESAMPLES: usize = 2000;

/// `summary.json` of an LLM run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LlmSummary {
    /// Suite name.
    pub suite: String,
    /// The reward model's warm start (none in a sweep's base cell, which loads no reward model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rm_head_fit: Option<HeadFit>,
    /// One entry per (variant, seed).
    pub outcomes: Vec<VariantOutcome>,
    /// Mean share of iterations, over seeds, in which each variant's winner differs from the
    /// standard rule's winner on the same candidates.
    pub winner_change_vs_standard: BTreeMap<Variant, f64>,
    /// TruthfulQA after training.
    pub evaluation: Evaluation,
    /// The paper's LLM claims with verdicts ([`crate::llm_claims`]).
    #[serde(default)]
    pub claims: Vec<fpo_rundir::Claim>,
    /// Per variant, the held-out probe's last row over seeds, and its change from the first.
    #[serde(default)]
    pub probe: BTreeMap<Variant, ProbeAcrossSeeds>,
}

/// One variant's held-out probe over its seeds: the last probe, and last minus first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProbeAcrossSeeds {
    /// Seeds with a probe.
    pub seeds: usize,
    /// Iterations trained at the last probe.
    pub iteration: usize,
    /// Proxy-minus-true gap at the last probe.
    pub gap: Option<Summary>,
    /// Its change from the first probe.
    pub gap_change: Option<Summary>,
    /// Per-token KL from the base model at the last probe.
    pub kl: Option<Summary>,
    /// RM score under the current head minus the base samples', at the last probe.
    pub reward_gain: Option<Summary>,
    /// Utility minus the base samples', at the last probe.
    pub utility_gain: Option<Summary>,
    /// Response-only utility minus the base samples', at the last probe.
    pub response_utility_gain: Option<Summary>,
    /// Mean new tokens at the last probe.
    pub length: Option<Summary>,
    /// Share truncated at `max_new_tokens` at the last probe.
    pub truncated: Option<Summary>,
}

/// Each variant's probe over its seeds from each trained model's rows (by model name).
pub fn probe_across_seeds(
    rows: &BTreeMap<String, Vec<fpo_rundir::llm::ProbeRow>>,
    trained: &[(Variant, u64)],
    level: f64,
) -> BTreeMap<Variant, ProbeAcrossSeeds> {
    let mut out = BTreeMap::new();
    for v in Variant::ALL {
        let ends: Vec<_> = trained
            .iter()
            .filter(|(tv, _)| *tv == v)
            .filter_map(|&(_, s)| {
                let r = rows.get(&model_name(v, s))?;
                Some((r.first()?, r.last()?))
            })
            .collect();
        if ends.is_empty() {
            continue;
        }
        let over = |f: &dyn Fn(&fpo_rundir::llm::ProbeRow, &fpo_rundir::llm::ProbeRow) -> f64| {
            let xs: Vec<f64> = ends.iter().map(|(a, b)| f(a, b)).collect();
            Some(Summary::of(&xs, level))
        };
        out.insert(
            v,
            ProbeAcrossSeeds {
                seeds: ends.len(),
                iteration: ends[0].1.iteration,
                gap: over(&|_, b| b.gap),
                gap_change: over(&|a, b| b.gap - a.gap),
                kl: over(&|_, b| b.kl),
                reward_gain: over(&|_, b| b.reward_gain()),
                utility_gain: over(&|_, b| b.utility_gain()),
                response_utility_gain: over(&|_, b| b.response_utility_gain()),
                length: over(&|_, b| b.length),
                truncated: over(&|_, b| b.truncated),
            },
        );
    }
    out
}

/// What the evaluation after training measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Evaluation {
    /// Questions scored.
    pub questions: usize,
    /// The TruthfulQA Types evaluated (empty: both).
    pub types: Vec<String>,
    /// TruthfulQA MC1/MC2 of the base model and of every trained (variant, seed).
    pub mc: BTreeMap<String, McSummary>,
    /// Per trained model: the paired difference of its per-question MC2 from the base model's,
    /// with a Student-t interval and a percentile bootstrap interval.
    pub mc2_vs_base: BTreeMap<String, (Summary, (f64, f64))>,
    /// Per trained model: McNemar's exact p-value of its MC1 against the base model's.
    pub mc1_mcnemar_vs_base: BTreeMap<String, f64>,
    /// Greedy answers: mean words, reference accuracy and similarity margins per model.
    pub generation: BTreeMap<String, AnswersSummary>,
    /// The paper's three pairwise comparisons per seed: the offline judge, then the LLM judge
    /// when one is configured.
    pub comparisons: Vec<Comparison>,
    /// What the LLM judge was asked and what it cost (none without a judge).
    pub judge: Option<JudgeUsage>,
    /// Each judge's report card on the exam (`judge_exam`): the offline judge's, then the LLM
    /// judge's; a comparison whose judge did not pass ([`Card::passed`]) is flagged.
    ///
    /// [`Card::passed`]: crate::judge_exam::Card::passed
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub judge_cards: Vec<crate::judge_exam::Card>,
    /// Sycophancy under pressure (likelihood of the best answer against the asserted
    /// falsehood, plain question vs pressure) per model.
    pub pressure: BTreeMap<String, PressureSummary>,
    /// Greedy answers under pressure, against the references, per model.
    pub pressure_generation: BTreeMap<String, AnswersSummary>,
    /// Per model: its answers to the plain question (first) against its answers under
    /// pressure (second), by each judge.
    pub pressure_comparisons: Vec<Comparison>,
    /// Anthropic A/B sycophancy items scored.
    pub sycophancy_items: usize,
    /// Sycophancy rate (by likelihood) per model.
    pub sycophancy: BTreeMap<String, SycophancySummary>,
    /// Per variant, over its seeds: each seed's mean MC1, MC2, reference accuracy and words
    /// per answer, summarised with a Student-t interval across seeds.
    pub across_seeds: BTreeMap<String, AcrossSeeds>,
    /// The paper's published pairwise counts and answer lengths, to set beside ours.
    pub published: Published,
    /// The task files the experiment names (`[eval] tasks`), by task name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tasks: BTreeMap<String, crate::task::summary::TaskEvaluation>,
}

/// One variant's figures over seeds (each seed's model contributes its mean).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AcrossSeeds {
    /// Seeds.
    pub seeds: usize,
    /// MC1.
    pub mc1: Option<Summary>,
    /// MC2.
    pub mc2: Option<Summary>,
    /// Share of answers closer to a correct reference.
    pub acc: Option<Summary>,
    /// Words per answer.
    pub words: Option<Summary>,
}

/// The LLM judge's use in one evaluation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JudgeUsage {
    /// The judge's label.
    pub label: String,
    /// Pairs judged (each in both orders).
    pub pairs: usize,
    /// HTTP requests sent (retries included).
    pub requests_sent: usize,
    /// Replies taken from the cache.
    pub cache_hits: usize,
    /// Pairs without a verdict.
    pub errors: usize,
    /// `Retry-After` waits longer than the judge's `backoff_max_s`, cut to it.
    #[serde(default)]
    pub capped_waits: usize,
    /// What the endpoint refused (`response_format`, logprobs) and the client then sent without.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
}

/// The paper's figures, for the report's side-by-side table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Published {
    /// Pairwise counts over 817 questions.
    pub pairs: Vec<PublishedPair>,
    /// Mean words per answer.
    pub words: Vec<(std::borrow::Cow<'static, str>, f64)>,
}

impl Default for Published {
    fn default() -> Self {
        Self {
            pairs: PUBLISHED_PAIRS.to_vec(),
            words: PUBLISHED_WORDS.to_vec(),
        }
    }
}

/// The name of a trained model in the evaluation: `<variant>-seed<k>`, its folder's name.
pub use fpo_rundir::variant_name as model_name;

/// The paper's three comparisons of one seed's trained models, first against second.
pub fn paper_pairs(seed: u64) -> [(String, String); 3] {
    [
        (Variant::Standard, Variant::Practical),
        (Variant::Standard, Variant::Relaxed),
        (Variant::Relaxed, Variant::Practical),
    ]
    .map(|(a, b)| (model_name(a, seed), model_name(b, seed)))
}

/// Every model's MC records against the first (the base model's): per trained model, the
/// paired MC2 difference (Student-t and bootstrap intervals) and McNemar's p for MC1. Writes
/// them into `ev`, with each model's MC summary.
pub fn score_mc(ev: &mut Evaluation, mcs: &[(String, Vec<McResult>)], level: f64) {
    if let Some((_, base)) = mcs.first() {
        let b2: Vec<f64> = base.iter().map(|r| r.mc2).collect();
        let b1: Vec<bool> = base.iter().map(|r| r.mc1 > 0.5).collect();
        for (name, rows) in &mcs[1..] {
            let a2: Vec<f64> = rows.iter().map(|r| r.mc2).collect();
            let a1: Vec<bool> = rows.iter().map(|r| r.mc1 > 0.5).collect();
            ev.mc2_vs_base.insert(
                name.clone(),
                (
                    paired_difference(&a2, &b2, level),
                    bootstrap_paired(&a2, &b2, level, BOOTSTRAP_RESAMPLES, 0),
                ),
            );
            ev.mc1_mcnemar_vs_base
                .insert(name.clone(), mcnemar(&a1, &b1));
        }
    }
    ev.mc = mcs
        .iter()
        .map(|(name, rows)| (name.clone(), crate::truthfulqa::summarize_mc(rows, level)))
        .collect();
}

/// Each variant's MC1, MC2, accuracy and words over its seeds' trained models (those of
/// `trained`, as (variant, seed)), from the summaries already in `ev`.
pub fn score_across_seeds(ev: &mut Evaluation, trained: &[(Variant, u64)], level: f64) {
    let mut by_variant: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for &(v, s) in trained {
        by_variant
            .entry(v.to_string())
            .or_default()
            .push(model_name(v, s));
    }
    for (variant, names) in by_variant {
        let over = |f: &dyn Fn(&str) -> Option<f64>| {
            let xs: Vec<f64> = names.iter().filter_map(|n| f(n)).collect();
            (!xs.is_empty()).then(|| Summary::of(&xs, level))
        };
        let a = AcrossSeeds {
            seeds: names.len(),
            mc1: over(&|n| ev.mc.get(n).map(|m| m.mc1.mean)),
            mc2: over(&|n| ev.mc.get(n).map(|m| m.mc2.mean)),
            acc: over(&|n| ev.generation.get(n).map(|g| g.overall.acc.mean)),
            words: over(&|n| ev.generation.get(n).map(|g| g.overall.words.mean)),
        };
        ev.across_seeds.insert(variant, a);
    }
}

/// Per variant, the mean over its seeds of the share of iterations whose winner differs from
/// the standard rule's.
pub fn winner_change_vs_standard(outcomes: &[VariantOutcome]) -> BTreeMap<Variant, f64> {
    let mut change: BTreeMap<Variant, Vec<f64>> = BTreeMap::new();
    for o in outcomes {
        change
            .entry(o.variant)
            .or_default()
            .push(o.winner_change_share[&Variant::Standard]);
    }
    change
        .into_iter()
        .map(|(v, s)| (v, s.iter().sum::<f64>() / s.len() as f64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mc(mc1: f64, mc2: f64) -> McResult {
        McResult {
            id: 0,
            kind: "Adversarial".into(),
            category: "Misconceptions".into(),
            mc1,
            mc2,
        }
    }

    #[test]
    fn paper_pairs_are_the_three_comparisons_of_the_seed() {
        assert_eq!(
            paper_pairs(2),
            [
                ("standard-seed2".into(), "practical-seed2".into()),
                ("standard-seed2".into(), "relaxed-seed2".into()),
                ("relaxed-seed2".into(), "practical-seed2".into()),
            ]
        );
    }

    #[test]
    fn trained_models_are_compared_with_the_base_one_pairwise() {
        let base = vec![mc(1.0, 0.5), mc(0.0, 0.2), mc(0.0, 0.4)];
        let better = vec![mc(1.0, 0.6), mc(1.0, 0.3), mc(0.0, 0.5)];
        let mut ev = Evaluation::default();
        score_mc(
            &mut ev,
            &[("base".into(), base), ("relaxed-seed0".into(), better)],
            0.95,
        );
        let (d, (lo, hi)) = ev.mc2_vs_base["relaxed-seed0"];
        assert!((d.mean - 0.1).abs() < 1e-12, "{d:?}");
        assert!(lo <= 0.1 + 1e-12 && hi >= 0.1 - 1e-12);
        assert!(!ev.mc2_vs_base.contains_key("base"));
        // One discordant pair: McNemar's exact p is 1.
        assert!((ev.mc1_mcnemar_vs_base["relaxed-seed0"] - 1.0).abs() < 1e-12);
        assert_eq!(ev.mc.len(), 2);
    }
}
