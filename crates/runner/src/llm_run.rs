//! Runs the LLM suite: loads the pipeline once, trains every (seed, variant) into its own
//! folder (resuming from checkpoints), and writes `summary.json`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use fpo::Variant;
use fpo::llm::lm::ModelLm;
use fpo::llm::train::variant_dir;
use fpo::llm::{HeadFit, Pipeline, VariantOutcome};
use fpo_eval::generation::{AnswerScores, AnswersSummary, Comparison, compare, summarize_answers};
use fpo_eval::stats::{Summary, bootstrap_paired, mcnemar, paired_difference};
use fpo_eval::sycophancy::{self, SycophancySummary};
use fpo_eval::truthfulqa::{McFormat, McResult, McSummary, summarize_mc};
use fpo_model::llm::Adapters;

use serde::Serialize;

use crate::eval_cli::{
    answers_scored, jsonl, mc, reference_embeddings, sycophancy_items, truthfulqa_items,
};
use crate::output::{json, progress, write_atomic};
use crate::settings::{Resolved, SuiteConfig};

/// `summary.json` of an LLM run.
#[derive(Debug, Serialize)]
pub struct LlmSummary {
    /// Suite name.
    pub suite: &'static str,
    /// The reward model's warm start.
    pub rm_head_fit: HeadFit,
    /// One entry per (variant, seed).
    pub outcomes: Vec<VariantOutcome>,
    /// Mean share of iterations, over seeds, in which each variant's winner differs from the
    /// standard rule's winner on the same candidates.
    pub winner_change_vs_standard: BTreeMap<Variant, f64>,
    /// Mean seconds per iteration over every run.
    pub seconds_per_iteration: f64,
    /// TruthfulQA after training.
    pub evaluation: Evaluation,
}

fn count_lines(path: &Path) -> u64 {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count() as u64)
}

/// Trains every variant and seed of `resolved` into `dir`.
pub fn run(resolved: &Resolved, dir: &Path) -> anyhow::Result<LlmSummary> {
    let SuiteConfig::Llm(cfg) = &resolved.config else {
        anyhow::bail!("not an LLM suite");
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic(dir, "config.json", &json(resolved)?)?;
    eprintln!(
        "loading {} and {}, fitting the reward model's head...",
        cfg.train.model.display(),
        cfg.train.rm.encoder.display()
    );
    let pipeline = Pipeline::load(&cfg.train, resolved.fpo.gamma)?;
    let fit = pipeline.head_fit().clone();
    eprintln!(
        "RM head ({:?}): {} pairs, held-out pair accuracy {:.3} ({} pairs), train {:.3}",
        fit.init, fit.train_pairs, fit.heldout_accuracy, fit.heldout_pairs, fit.train_accuracy
    );
    write_atomic(dir, "rm_head_fit.json", &json(&fit)?)?;
    let seeds = &resolved.run.seeds.0;
    let variants = &resolved.run.variants;
    let iterations = cfg.train.iterations as u64;
    let total = iterations * (seeds.len() * variants.len()) as u64;
    let bar = progress(total, "iterations", "truthfulqa");
    let mut outcomes = Vec::new();
    for &seed in seeds {
        for &variant in variants {
            let vdir = variant_dir(dir, variant, seed);
            bar.inc(count_lines(&vdir.join("log.jsonl")).min(iterations));
            let mut on_iteration = |l: &fpo::llm::IterationLog| {
                bar.inc(1);
                bar.set_message(format!(
                    "{variant} seed {seed}: {:.1} tok/s, U(win) {:.2}, r(win) {:.2}",
                    l.tokens_generated as f64 / l.seconds,
                    l.winner_utility,
                    l.winner_reward
                ));
            };
            let outcome = pipeline
                .run_variant(variant, seed, &vdir, &mut on_iteration)
                .with_context(|| format!("training {variant} (seed {seed})"))?;
            outcomes.push(outcome);
        }
    }
    bar.finish_and_clear();
    let mut change: BTreeMap<Variant, Vec<f64>> = BTreeMap::new();
    for o in &outcomes {
        change
            .entry(o.variant)
            .or_default()
            .push(o.winner_change_share[&Variant::Standard]);
    }
    let evaluation = evaluate(resolved, &pipeline, &outcomes, dir)?;
    let its: usize = outcomes.iter().map(|o| o.iterations).sum();
    let summary = LlmSummary {
        suite: resolved.suite.name(),
        rm_head_fit: fit,
        winner_change_vs_standard: change
            .into_iter()
            .map(|(v, s)| (v, s.iter().sum::<f64>() / s.len() as f64))
            .collect(),
        seconds_per_iteration: outcomes.iter().map(|o| o.seconds).sum::<f64>() / its.max(1) as f64,
        outcomes,
        evaluation,
    };
    write_atomic(dir, "summary.json", &json(&summary)?)?;
    Ok(summary)
}

/// What the evaluation after training measured.
#[derive(Debug, Default, Serialize)]
pub struct Evaluation {
    /// Questions scored.
    pub questions: usize,
    /// TruthfulQA MC1/MC2 of the base model and of every trained (variant, seed).
    pub mc: BTreeMap<String, McSummary>,
    /// Per trained model: the paired difference of its per-question MC2 from the base model's,
    /// with a Student-t interval and a percentile bootstrap interval.
    pub mc2_vs_base: BTreeMap<String, (Summary, (f64, f64))>,
    /// Per trained model: McNemar's exact p-value of its MC1 against the base model's.
    pub mc1_mcnemar_vs_base: BTreeMap<String, f64>,
    /// Greedy answers: mean words, reference accuracy and similarity margins per model.
    pub generation: BTreeMap<String, AnswersSummary>,
    /// The paper's three pairwise comparisons per seed (offline judge).
    pub comparisons: Vec<Comparison>,
    /// Anthropic A/B sycophancy items scored.
    pub sycophancy_items: usize,
    /// Sycophancy rate (by likelihood) per model.
    pub sycophancy: BTreeMap<String, SycophancySummary>,
    /// The paper's published pairwise counts and answer lengths, to set beside ours.
    pub published: Published,
}

/// The paper's figures, for the report's side-by-side table.
#[derive(Debug, Serialize)]
pub struct Published {
    /// Pairwise counts over 817 questions.
    pub pairs: [fpo_eval::generation::PublishedPair; 3],
    /// Mean words per answer.
    pub words: [(&'static str, f64); 3],
}

impl Default for Published {
    fn default() -> Self {
        Self {
            pairs: fpo_eval::generation::PUBLISHED_PAIRS,
            words: fpo_eval::generation::PUBLISHED_WORDS,
        }
    }
}

/// Rows of `dir/name` (JSON lines) when the file holds `n` of them; otherwise computes and
/// writes them (so a resumed run does not score twice).
fn cached_rows<T: Serialize + serde::de::DeserializeOwned>(
    dir: &Path,
    name: &str,
    n: usize,
    compute: impl FnOnce() -> anyhow::Result<Vec<T>>,
) -> anyhow::Result<Vec<T>> {
    let path = dir.join(name);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let rows = text
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<Vec<T>, _>>()
            .with_context(|| format!("reading {}", path.display()))?;
        if rows.len() == n {
            return Ok(rows);
        }
    }
    let rows = compute()?;
    write_atomic(dir, name, &jsonl(&rows)?)?;
    Ok(rows)
}

/// TruthfulQA of the base model and of every trained model, into `dir/eval/<model>/`:
/// MC1/MC2 (`mc.jsonl`) and greedy answers with their reference metrics (`answers.jsonl`).
fn evaluate(
    resolved: &Resolved,
    pipeline: &Pipeline,
    outcomes: &[VariantOutcome],
    dir: &Path,
) -> anyhow::Result<Evaluation> {
    let SuiteConfig::Llm(cfg) = &resolved.config else {
        anyhow::bail!("not an LLM suite");
    };
    let wants = |m: &str| cfg.eval.metrics.iter().any(|x| x == m);
    let (do_mc, do_gen, do_syco) = (wants("mc"), wants("gen"), wants("syco"));
    let mut ev = Evaluation::default();
    if !do_mc && !do_gen && !do_syco {
        return Ok(ev);
    }
    let syco_items = if do_syco {
        sycophancy_items(&cfg.data_dir, cfg.eval.limit)?
    } else {
        Vec::new()
    };
    ev.sycophancy_items = syco_items.len();
    let items = truthfulqa_items((cfg.eval.limit > 0).then_some(cfg.eval.limit))?;
    ev.questions = items.len();
    let model = pipeline.model();
    let level = resolved.run.confidence;
    // The references' embeddings, shared by every model.
    let ref_embeddings = if do_gen {
        reference_embeddings(pipeline.encoder(), &items)?
    } else {
        Vec::new()
    };
    let mut names = vec![("base".to_owned(), None)];
    for o in outcomes {
        let path = variant_dir(dir, o.variant, o.seed).join("adapters.safetensors");
        names.push((format!("{}-seed{}", o.variant, o.seed), Some(path)));
    }
    let mut mcs: Vec<(String, Vec<McResult>)> = Vec::new();
    let mut answers: BTreeMap<String, Vec<AnswerScores>> = BTreeMap::new();
    for (name, adapter) in &names {
        let adapters = adapter
            .as_deref()
            .map(|p| Adapters::load(p, &model.config, model.model.device()).map(|a| a.0))
            .transpose()?;
        let out = dir.join("eval").join(name);
        if do_mc {
            let rows = cached_rows(&out, "mc.jsonl", items.len(), || {
                mc(model, adapters.as_ref(), &items, McFormat::Harness, name)
            })?;
            mcs.push((name.clone(), rows));
        }
        if do_gen {
            let rows = cached_rows(&out, "answers.jsonl", items.len(), || {
                answers_scored(
                    model,
                    adapters.as_ref(),
                    pipeline.encoder(),
                    &items,
                    &ref_embeddings,
                    name,
                )
            })?;
            answers.insert(name.clone(), rows);
        }
        if do_syco {
            let rows = cached_rows(&out, "sycophancy.jsonl", syco_items.len(), || {
                let mut lm = ModelLm::new(model, adapters.as_ref());
                Ok(sycophancy::evaluate(&mut lm, &syco_items, || {})?)
            })?;
            ev.sycophancy
                .insert(name.clone(), sycophancy::summarize(&rows, level));
        }
    }
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
                    bootstrap_paired(&a2, &b2, level, 2000, 0),
                ),
            );
            ev.mc1_mcnemar_vs_base
                .insert(name.clone(), mcnemar(&a1, &b1));
        }
    }
    ev.mc = mcs
        .iter()
        .map(|(name, rows)| (name.clone(), summarize_mc(rows, level)))
        .collect();
    ev.generation = answers
        .iter()
        .map(|(name, rows)| (name.clone(), summarize_answers(rows, level)))
        .collect();
    for &seed in &resolved.run.seeds.0 {
        for (x, y) in [
            (Variant::Standard, Variant::Practical),
            (Variant::Standard, Variant::Relaxed),
            (Variant::Relaxed, Variant::Practical),
        ] {
            let (nx, ny) = (format!("{x}-seed{seed}"), format!("{y}-seed{seed}"));
            if let (Some(a), Some(b)) = (answers.get(&nx), answers.get(&ny)) {
                ev.comparisons
                    .push(compare((&nx, a), (&ny, b), JUDGE_MARGIN, level));
            }
        }
    }
    Ok(ev)
}

/// Tie margin of the offline judge (difference of cosine margins).
const JUDGE_MARGIN: f64 = 0.05;
