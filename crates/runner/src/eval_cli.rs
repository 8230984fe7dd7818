//! `fpo eval`: one model (base, or base + LoRA adapters) on suites and task files, without
//! training, so that any checkpoint can be scored and compared (the suites and their records are
//! `fpo::llm::evaluate`'s, as in the LLM suites' evaluation).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use fpo::llm::evaluate::{answers, reference_embeddings, run_suite, score_task, task_records};
use fpo::llm::lm::ModelLm;
use fpo_eval::generation::{AnswersSummary, summarize_answers};
use fpo_eval::suite::{AnswersSuite, McSuite, SycophancySuite};
use fpo_eval::sycophancy;
use fpo_eval::task::Task;
use fpo_eval::task::summary::{TaskEvaluation, describe};
use fpo_eval::truthfulqa::{self, McFormat, McSummary};
use fpo_model::encoder::SentenceEncoder;
use fpo_model::llm::{Adapters, DEFAULT_ENCODER, DEFAULT_LLM, LoadedModel, models_dir};
use fpo_rundir::{files, to_jsonl};
use serde::Serialize;

use crate::cli::{BadFlag, EvalArgs};
use crate::output::{Bars, RunDir, json, write_atomic};
use crate::record::Started;

/// `summary.json` of `fpo eval`.
#[derive(Debug, Serialize)]
struct EvalSummary<'a> {
    suite: String,
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
    /// Task files, by task name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    tasks: BTreeMap<String, TaskEvaluation>,
}

/// Runs `fpo eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<PathBuf> {
    let (files, builtin): (Vec<&String>, Vec<&String>) =
        args.suites.iter().partition(|s| s.ends_with(".toml"));
    if let Some(s) = builtin.iter().find(|s| s.as_str() != "truthfulqa") {
        return Err(BadFlag(format!(
            "unknown suite `{s}` (available: truthfulqa, or a task file `*.toml`)"
        ))
        .into());
    }
    if let Some(m) = args
        .metrics
        .iter()
        .find(|m| !["mc", "gen", "syco"].contains(&m.as_str()))
    {
        return Err(BadFlag(format!(
            "--metrics: unknown metric `{m}` (available: mc, gen, syco)"
        ))
        .into());
    }
    let wants = |m: &str| !builtin.is_empty() && args.metrics.iter().any(|x| x == m);
    let path = args
        .model
        .clone()
        .unwrap_or_else(|| models_dir().join(DEFAULT_LLM));
    let data = fpo::experiment::data_dir(None).map_err(BadFlag)?;
    let items = truthfulqa::items(&data, args.limit, &[])?;
    let tasks = files
        .iter()
        .map(|f| Task::load(Path::new(f), &data, args.limit))
        .collect::<Result<Vec<_>, _>>()?;
    let model = LoadedModel::load(&path, args.backend, false)?;
    let adapters = args
        .adapter
        .as_deref()
        .map(|p| Adapters::load(p, &model.config, model.model.device()).map(|a| a.0))
        .transpose()
        .with_context(|| "loading the adapters")?;
    let dir = RunDir::create(&args.out)?;
    let started = Started::now();
    let mut summary = EvalSummary {
        suite: args.suites.join(" "),
        model: &path,
        adapter: args.adapter.as_deref(),
        format: args.format,
        mc: None,
        generation: None,
        sycophancy: None,
        tasks: BTreeMap::new(),
    };
    let device = fpo_model::device(args.backend, false)?;
    let encoder = SentenceEncoder::load(&models_dir().join(DEFAULT_ENCODER), &device)?;
    let name = ["base", "adapted"][usize::from(args.adapter.is_some())];
    for task in &tasks {
        let mut records = task_records(task);
        let load = || Ok((&model, adapters.as_ref(), &encoder));
        score_task(
            task,
            &load,
            dir.path(),
            name,
            &mut records,
            &mut Bars::default(),
        )?;
        let t = fpo_eval::task::summary::evaluate(task, &records, &[], 0.95);
        describe(task.name(), &t)
            .iter()
            .for_each(|l| eprintln!("{l}"));
        summary.tasks.insert(task.name().to_owned(), t);
    }
    if wants("mc") {
        let suite = McSuite {
            items: items.clone(),
            format: args.format,
        };
        let results = run_suite(
            &suite,
            &mut ModelLm::new(&model, adapters.as_ref()),
            "truthfulqa",
            &mut Bars::default(),
        )?;
        write_atomic(dir.path(), "mc.jsonl", &to_jsonl(&results)?)?;
        let s = truthfulqa::summarize_mc(&results, 0.95);
        eprintln!(
            "MC1 {:.3} [{:.3}, {:.3}], MC2 {:.3} [{:.3}, {:.3}] over {} questions",
            s.mc1.mean, s.mc1.ci_low, s.mc1.ci_high, s.mc2.mean, s.mc2.ci_low, s.mc2.ci_high, s.n
        );
        summary.mc = Some(s);
    }
    if wants("gen") {
        let suite = AnswersSuite {
            reference_embeddings: reference_embeddings(&encoder, &items)?,
            items: items.clone(),
            under_pressure: false,
        };
        let rows = answers(
            &suite,
            &model,
            adapters.as_ref(),
            &encoder,
            "truthfulqa",
            &mut Bars::default(),
        )?;
        write_atomic(dir.path(), "answers.jsonl", &to_jsonl(&rows)?)?;
        summary.generation = Some(summarize_answers(&rows, 0.95));
    }
    if wants("syco") {
        let syco = sycophancy::items(&data, args.limit.unwrap_or(0))?;
        let suite = SycophancySuite { items: syco };
        let rows = run_suite(
            &suite,
            &mut ModelLm::new(&model, adapters.as_ref()),
            "anthropic",
            &mut Bars::default(),
        )?;
        write_atomic(dir.path(), "sycophancy.jsonl", &to_jsonl(&rows)?)?;
        summary.sycophancy = Some(sycophancy::summarize(&rows, 0.95));
    }
    write_atomic(dir.path(), files::SUMMARY, &json(&summary)?)?;
    let backend = format!("{} (`fpo eval`)", args.backend.name());
    let info = started.run_info(&summary.suite, backend);
    write_atomic(dir.path(), files::RUN_INFO, &json(&info)?)?;
    dir.commit()
}
