//! Runs the LLM suite: loads the pipeline once, trains every (seed, variant) into its own
//! folder (resuming from checkpoints), and writes `summary.json`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use fpo::Variant;
use fpo::llm::train::variant_dir;
use fpo::llm::{HeadFit, Pipeline, VariantOutcome};
use fpo_eval::stats::{Summary, paired_difference};
use fpo_eval::truthfulqa::{McResult, McSummary, summarize_mc};
use fpo_model::llm::Adapters;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::eval_cli::{jsonl, mc, truthfulqa_items};
use crate::output::{json, write_atomic};
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
    /// TruthfulQA MC1/MC2 of the base model and of every trained (variant, seed).
    pub evaluation: BTreeMap<String, McSummary>,
    /// Per trained model: the paired difference of its per-question MC2 from the base model's.
    pub mc2_vs_base: BTreeMap<String, Summary>,
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
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "{prefix:>10} [{bar:30}] {pos}/{len} iterations, {elapsed} (eta {eta}) {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix("truthfulqa");
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
    let (evaluation, mc2_vs_base) = evaluate(resolved, &pipeline, &outcomes, dir)?;
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
        mc2_vs_base,
    };
    write_atomic(dir, "summary.json", &json(&summary)?)?;
    Ok(summary)
}

type Evaluation = (BTreeMap<String, McSummary>, BTreeMap<String, Summary>);

/// MC1/MC2 of the base model and of every trained model into `dir/eval/<name>/mc.jsonl`
/// (reused when present, so a resumed run does not score twice).
fn evaluate(
    resolved: &Resolved,
    pipeline: &Pipeline,
    outcomes: &[VariantOutcome],
    dir: &Path,
) -> anyhow::Result<Evaluation> {
    let SuiteConfig::Llm(cfg) = &resolved.config else {
        anyhow::bail!("not an LLM suite");
    };
    let mut diffs = BTreeMap::new();
    if !cfg.eval.metrics.iter().any(|m| m == "mc") {
        return Ok((BTreeMap::new(), diffs));
    }
    let items = truthfulqa_items((cfg.eval.limit > 0).then_some(cfg.eval.limit))?;
    let model = pipeline.model();
    let level = resolved.run.confidence;
    let score = |name: &str, adapters: Option<&Adapters>| -> anyhow::Result<Vec<McResult>> {
        let out = dir.join("eval").join(name);
        let path = out.join("mc.jsonl");
        if let Ok(text) = std::fs::read_to_string(&path) {
            let rows = text
                .lines()
                .map(serde_json::from_str)
                .collect::<Result<Vec<McResult>, _>>()
                .with_context(|| format!("reading {}", path.display()))?;
            if rows.len() == items.len() {
                return Ok(rows);
            }
        }
        let rows = mc(model, adapters, &items, name)?;
        write_atomic(&out, "mc.jsonl", &jsonl(&rows)?)?;
        Ok(rows)
    };
    let base = score("base", None)?;
    let mut all = vec![("base".to_owned(), base.clone())];
    for o in outcomes {
        let name = format!("{}-seed{}", o.variant, o.seed);
        let path = variant_dir(dir, o.variant, o.seed).join("adapters.safetensors");
        let (adapters, _) = Adapters::load(&path, &model.config, model.model.device())?;
        let rows = score(&name, Some(&adapters))?;
        let a: Vec<f64> = rows.iter().map(|r| r.mc2).collect();
        let b: Vec<f64> = base.iter().map(|r| r.mc2).collect();
        diffs.insert(name.clone(), paired_difference(&a, &b, level));
        all.push((name, rows));
    }
    let summaries = all
        .iter()
        .map(|(name, rows)| (name.clone(), summarize_mc(rows, level)))
        .collect();
    Ok((summaries, diffs))
}
