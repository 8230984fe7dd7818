//! `fpo eval`: one model (base, or base + LoRA adapters) on one suite, without training, so that
//! any checkpoint can be scored and compared. Also the evaluation step of the LLM suite.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use fpo::llm::lm::ModelLm;
use fpo_eval::truthfulqa::{self, Item, McResult, McSummary};
use fpo_model::BackendKind;
use fpo_model::llm::{Adapters, DEFAULT_LLM, LoadedModel, models_dir};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::output::{RunDir, json, write_atomic};

/// Options of `fpo eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The suite: `truthfulqa`.
    suite: String,
    /// A .gguf file or a Hugging Face folder (default: $FPO_MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf).
    #[arg(long)]
    model: Option<PathBuf>,
    /// LoRA adapters (`adapters.safetensors` of a training run).
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Metrics, comma-separated: `mc` (MC1/MC2 with lm-evaluation-harness's prompt).
    #[arg(long, value_delimiter = ',', default_value = "mc")]
    metrics: Vec<String>,
    /// Only N questions, spread evenly over the data set (both Types, most Categories).
    #[arg(long)]
    limit: Option<usize>,
    /// Output directory (must not exist).
    #[arg(long)]
    out: PathBuf,
}

/// `summary.json` of `fpo eval`.
#[derive(Debug, Serialize)]
struct EvalSummary<'a> {
    suite: &'a str,
    model: &'a Path,
    adapter: Option<&'a Path>,
    /// MC1 and MC2 (harness prompt).
    mc: McSummary,
    seconds: f64,
}

/// The TruthfulQA items of the data folder; `limit` of them spread evenly, when given.
pub fn truthfulqa_items(limit: Option<usize>) -> anyhow::Result<Vec<Item>> {
    let data = crate::settings::data_dir().map_err(anyhow::Error::msg)?;
    let items = truthfulqa::load(&data.join("truthfulqa"))?;
    Ok(truthfulqa::spread(items, limit.unwrap_or(0)))
}

/// MC1/MC2 of every item under `model` (+ `adapters`), with a progress bar labelled `label`.
pub fn mc(
    model: &LoadedModel,
    adapters: Option<&Adapters>,
    items: &[Item],
    label: &str,
) -> anyhow::Result<Vec<McResult>> {
    let bar = ProgressBar::new(items.len() as u64).with_style(
        ProgressStyle::with_template(
            "{prefix:>10} [{bar:30}] {pos}/{len} questions, {elapsed} (eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    let mut lm = ModelLm::new(model, adapters);
    let out = truthfulqa::evaluate_mc(&mut lm, items, || bar.inc(1))?;
    bar.finish_and_clear();
    Ok(out)
}

/// Writes per-item results as JSON lines.
pub fn jsonl<T: Serialize>(rows: &[T]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    for r in rows {
        serde_json::to_writer(&mut out, r)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// Runs `fpo eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<PathBuf> {
    if args.suite != "truthfulqa" {
        anyhow::bail!("unknown suite `{}` (available: truthfulqa)", args.suite);
    }
    if let Some(m) = args.metrics.iter().find(|m| m.as_str() != "mc") {
        anyhow::bail!("unknown metric `{m}` (available: mc)");
    }
    let path = args
        .model
        .clone()
        .unwrap_or_else(|| models_dir().join(DEFAULT_LLM));
    let items = truthfulqa_items(args.limit)?;
    let model = LoadedModel::load(&path, BackendKind::Flex, false)?;
    let adapters = args
        .adapter
        .as_deref()
        .map(|p| Adapters::load(p, &model.config, model.model.device()).map(|a| a.0))
        .transpose()
        .with_context(|| "loading the adapters")?;
    let dir = RunDir::create(&args.out)?;
    let started = Instant::now();
    let results = mc(&model, adapters.as_ref(), &items, "truthfulqa")?;
    write_atomic(dir.path(), "mc.jsonl", &jsonl(&results)?)?;
    let summary = EvalSummary {
        suite: "truthfulqa",
        model: &path,
        adapter: args.adapter.as_deref(),
        mc: truthfulqa::summarize_mc(&results, 0.95),
        seconds: started.elapsed().as_secs_f64(),
    };
    write_atomic(dir.path(), "summary.json", &json(&summary)?)?;
    eprintln!(
        "MC1 {:.3} [{:.3}, {:.3}], MC2 {:.3} [{:.3}, {:.3}] over {} questions in {:.0} s",
        summary.mc.mc1.mean,
        summary.mc.mc1.ci_low,
        summary.mc.mc1.ci_high,
        summary.mc.mc2.mean,
        summary.mc.mc2.ci_low,
        summary.mc.mc2.ci_high,
        summary.mc.n,
        summary.seconds
    );
    dir.commit()
}
