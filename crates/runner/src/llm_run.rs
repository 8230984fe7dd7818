//! Runs the LLM suite: loads the pipeline once, trains every (seed, variant) into its own
//! folder (resuming from checkpoints), and writes `summary.json`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use fpo::Variant;
use fpo::llm::train::variant_dir;
use fpo::llm::{HeadFit, Pipeline, VariantOutcome};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

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
    };
    write_atomic(dir, "summary.json", &json(&summary)?)?;
    Ok(summary)
}
