//! Runs the LLM suite: loads the pipeline once, trains every (seed, variant) into its own
//! folder (resuming from checkpoints), evaluates every model, judges the comparisons and writes
//! `summary.json`; or a sweep cell's [`Part`] of that.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use fpo::llm::evaluate::{Metrics, Model, Plan, Weights, load_tasks, score_models};
use fpo::llm::{HeadFit, Pipeline, VariantOutcome};
use fpo_eval::evaluation::{
    Evaluation, JudgeUsage, LlmSummary, model_name, probe_across_seeds, winner_change_vs_standard,
};
use fpo_eval::generation::Question;
use fpo_eval::llm_claims::llm_claims;
use fpo_eval::sycophancy::items as sycophancy_items;
use fpo_eval::truthfulqa::items as truthfulqa_items;
use fpo_judge::Judge;
use fpo_judge::comparisons::{Judging, RunAnswers};
use fpo_rundir::{LlmTimings, files, variant_dir};

use crate::output::{Bars, json, progress, write_atomic};
use fpo::experiment::{LlmSuiteConfig, Resolved, SuiteConfig};

/// Each trained model's probe rows (none where it was trained without a probe).
fn probe_rows(
    dir: &Path,
    trained: &[(fpo::Variant, u64)],
) -> anyhow::Result<BTreeMap<String, Vec<fpo::llm::ProbeRow>>> {
    let mut out = BTreeMap::new();
    for &(v, s) in trained {
        let path = variant_dir(dir, v, s).join(files::PROBE);
        if path.exists() {
            out.insert(model_name(v, s), fpo_rundir::read_jsonl(&path)?);
        }
    }
    Ok(out)
}

fn count_lines(path: &Path) -> u64 {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count() as u64)
}

/// Which part of an LLM run a process does: the whole run (`fpo run`), or one cell of a sweep
/// (`fpo run --shard`), whose cells `fpo merge` puts back together by running the whole run
/// over their files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Train every (variant, seed), evaluate the base model and every trained one, judge the
    /// comparisons, state the claims.
    Whole,
    /// Train, and evaluate the trained models only (the base model is a cell of its own); the
    /// comparisons and claims, which need models of other cells, are the merge's.
    Trained,
    /// Evaluate the base model only: no training, no reward model.
    Base,
}

/// The base model, as the evaluation names it.
fn base_model() -> Model {
    Model {
        name: "base".into(),
        adapters: None,
        trained: None,
    }
}

/// Runs `part` of the LLM suite `resolved` in `dir`: trains every variant and seed (with
/// `reuse`, the variants trained in that run directory with the same training settings are taken
/// from it instead) and evaluates. Returns the summary (also written to `summary.json`) and this
/// process's timings, for `run.json`.
pub fn run(
    resolved: &Resolved,
    dir: &Path,
    reuse: Option<&Path>,
    part: Part,
) -> anyhow::Result<(LlmSummary, LlmTimings)> {
    let SuiteConfig::Llm(cfg) = &resolved.config else {
        anyhow::bail!("not an LLM suite");
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic(dir, files::CONFIG, &json(resolved)?)?;
    if let Some(from) = reuse {
        fpo::llm::reuse::reuse_training(resolved, from, dir)?;
    }
    let backend = resolved.run.llm_backend();
    let level = resolved.run.confidence;
    if part == Part::Base {
        let weights = Weights::on_demand(&cfg.train, backend);
        let evaluation = evaluate(resolved, &weights, &[base_model()], dir, false)?;
        let summary = LlmSummary {
            suite: resolved.suite.name().to_owned(),
            rm_head_fit: None,
            outcomes: Vec::new(),
            winner_change_vs_standard: BTreeMap::new(),
            evaluation,
            claims: Vec::new(),
            probe: BTreeMap::new(),
        };
        write_atomic(dir, files::SUMMARY, &json(&summary)?)?;
        return Ok((summary, LlmTimings::default()));
    }
    let seeds = &resolved.run.seeds.0;
    let variants = &resolved.run.variants;
    let trained = seeds.iter().all(|&s| {
        variants
            .iter()
            .all(|&v| variant_dir(dir, v, s).join(files::OUTCOME).exists())
    });
    let recorded_fit = fpo_rundir::read_json::<HeadFit>(&dir.join(files::HEAD_FIT)).ok();
    let (fit, outcomes, timings, pipeline) = match recorded_fit {
        Some(fit) if trained => {
            eprintln!("every variant is trained: reading their outcomes");
            let mut outcomes = Vec::new();
            let mut timings = LlmTimings::default();
            for &seed in seeds {
                for &v in variants {
                    let path = variant_dir(dir, v, seed).join(files::OUTCOME);
                    outcomes.push(fpo_rundir::read_json::<VariantOutcome>(&path)?);
                    timings
                        .variants
                        .insert(model_name(v, seed), Default::default());
                }
            }
            (fit, outcomes, timings, None)
        }
        _ => {
            let (fit, outcomes, timings, pipeline) = train(resolved, cfg, dir)?;
            (fit, outcomes, timings, Some(pipeline))
        }
    };
    // The weights the training loaded, or, for a run trained already, the model files loaded
    // only if a record is missing.
    let weights = match &pipeline {
        Some(p) => Weights::loaded(p.model(), p.encoder()),
        None => Weights::on_demand(&cfg.train, backend),
    };
    let whole = part == Part::Whole;
    let mut models: Vec<Model> = whole.then(base_model).into_iter().collect();
    models.extend(outcomes.iter().map(|o| Model {
        name: model_name(o.variant, o.seed),
        adapters: Some(variant_dir(dir, o.variant, o.seed).join(files::ADAPTERS)),
        trained: Some((o.variant, o.seed)),
    }));
    let evaluation = evaluate(resolved, &weights, &models, dir, whole)?;
    let trained: Vec<(fpo::Variant, u64)> = outcomes.iter().map(|o| (o.variant, o.seed)).collect();
    let probes = probe_rows(dir, &trained)?;
    let claims = if whole {
        llm_claims(&evaluation, &probes, seeds, &cfg.eval.claims, level)
    } else {
        Vec::new()
    };
    let summary = LlmSummary {
        suite: resolved.suite.name().to_owned(),
        rm_head_fit: Some(fit),
        winner_change_vs_standard: winner_change_vs_standard(&outcomes),
        outcomes,
        claims,
        probe: probe_across_seeds(&probes, &trained, level),
        evaluation,
    };
    write_atomic(dir, files::SUMMARY, &json(&summary)?)?;
    Ok((summary, timings))
}

/// Loads the pipeline (fitting the reward model's head, or reading its recorded fit) and trains
/// every (variant, seed) into `dir`, resuming from checkpoints. Returns the fit, the outcomes
/// (seeds, then variants, in the run's order), this process's timings and the pipeline.
fn train(
    resolved: &Resolved,
    cfg: &LlmSuiteConfig,
    dir: &Path,
) -> anyhow::Result<(HeadFit, Vec<VariantOutcome>, LlmTimings, Pipeline)> {
    eprintln!(
        "loading {} and {}, fitting the reward model's head...",
        cfg.train.model.display(),
        cfg.train.rm.encoder.display()
    );
    let pipeline = Pipeline::load(&cfg.train, &resolved.rules(), resolved.run.llm_backend())?;
    let fit = pipeline.head_fit().clone();
    eprintln!(
        "RM head ({:?}): {} pairs, held-out pair accuracy {:.3} ({} pairs), train {:.3}",
        fit.init, fit.train_pairs, fit.heldout_accuracy, fit.heldout_pairs, fit.train_accuracy
    );
    write_atomic(dir, files::HEAD_FIT, &json(&fit)?)?;
    let (seeds, variants) = (&resolved.run.seeds.0, &resolved.run.variants);
    let iterations = cfg.train.iterations as u64;
    let total = iterations * (seeds.len() * variants.len()) as u64;
    let bar = progress(total, "iterations", resolved.suite.name());
    let mut outcomes = Vec::new();
    let mut timings = LlmTimings {
        rm_embed_seconds: pipeline.embed_seconds(),
        ..LlmTimings::default()
    };
    for &seed in seeds {
        let runs: Vec<(fpo::Variant, PathBuf)> = variants
            .iter()
            .map(|&v| (v, variant_dir(dir, v, seed)))
            .collect();
        for (_, vdir) in &runs {
            bar.inc(count_lines(&vdir.join(files::LOG)).min(iterations));
        }
        let mut on_iteration = |variant, l: &fpo::llm::IterationLog, seconds: f64| {
            bar.inc(1);
            bar.set_message(format!(
                "{variant} seed {seed}: {:.1} tok/s, U(win) {:.2}, r(win) {:.2}",
                l.tokens_generated as f64 / seconds,
                l.winner_utility,
                l.winner_reward
            ));
        };
        let trained = pipeline
            .run_variants(&runs, seed, &mut on_iteration)
            .with_context(|| format!("training seed {seed}"))?;
        for (outcome, timing) in trained {
            timings
                .variants
                .insert(model_name(outcome.variant, seed), timing);
            outcomes.push(outcome);
        }
    }
    bar.finish_and_clear();
    timings.set_seconds_per_iteration();
    Ok((fit, outcomes, timings, pipeline))
}

/// The suites of `models` (`fpo::llm::evaluate`, records in `dir/eval/<model>/`) under
/// `weights`, then, with `compare`, the paper's comparisons by the offline
/// judge and, when configured, the LLM judge (verdicts in `dir/eval/judge/`).
fn evaluate(
    resolved: &Resolved,
    weights: &Weights,
    models: &[Model],
    dir: &Path,
    compare: bool,
) -> anyhow::Result<Evaluation> {
    let SuiteConfig::Llm(cfg) = &resolved.config else {
        anyhow::bail!("not an LLM suite");
    };
    if cfg.eval.metrics.is_empty() && cfg.eval.tasks.is_empty() {
        return Ok(Evaluation {
            types: cfg.eval.types.clone(),
            ..Evaluation::default()
        });
    }
    let wants = |m: &str| cfg.eval.metrics.iter().any(|x| x == m);
    let metrics = Metrics {
        mc: wants("mc"),
        answers: wants("gen"),
        syco: wants("syco"),
        pressure: wants("pressure"),
    };
    let plan = Plan {
        items: truthfulqa_items(
            &cfg.data_dir,
            (cfg.eval.limit > 0).then_some(cfg.eval.limit),
            &cfg.eval.types,
        )?,
        sycophancy: if metrics.syco {
            sycophancy_items(&cfg.data_dir, cfg.eval.limit)?
        } else {
            Vec::new()
        },
        metrics,
        tasks: load_tasks(&cfg.eval, &cfg.data_dir)?,
        level: resolved.run.confidence,
    };
    let scored = score_models(weights, models, &plan, dir, &mut Bars::default())?;
    let mut ev = scored.evaluation;
    ev.types = cfg.eval.types.clone();
    if !compare {
        return Ok(ev);
    }
    let judge = cfg
        .eval
        .judge
        .as_ref()
        .map(|c| Judge::new(c.clone()).map(|j| (j, c.label())))
        .transpose()?;
    let mut judging = Judging {
        judge: judge.as_ref(),
        dir: &dir.join("eval").join("judge"),
        level: plan.level,
        usage: JudgeUsage {
            label: judge.as_ref().map(|j| j.1.clone()).unwrap_or_default(),
            ..JudgeUsage::default()
        },
    };
    let questions: Vec<Question> = plan.items.iter().map(Question::from).collect();
    let mut tasks = BTreeMap::new();
    for (task, by_model) in scored.task_answers {
        let t = plan
            .tasks
            .iter()
            .find(|t| t.name() == task)
            .expect("scored");
        tasks.insert(task, (fpo_eval::task::generation::questions(t)?, by_model));
    }
    let answers = RunAnswers {
        questions: &questions,
        plain: &scored.answers,
        pressured: &scored.pressured,
        tasks: &tasks,
    };
    if !scored.exam.is_empty() {
        let exam = &scored.exam;
        let pairs = if judge.is_some() { exam.len() } else { 0 };
        let bar = Cleared(progress(pairs as u64, "pairs", "judge: the exam"));
        ev.judge_cards = judging.examine(exam, &scored.offline_exam, &|| bar.0.inc(1))?;
    }
    let seeds = &resolved.run.seeds.0;
    judging.judge_run(&mut ev, answers, seeds, &mut |label, pairs| {
        let bar = Cleared(progress(pairs as u64, "pairs", label));
        Box::new(move || bar.0.inc(1))
    })?;
    if let Some((judge, _)) = &judge {
        judging.usage.fallbacks = judge.fallbacks();
        ev.judge = Some(judging.usage);
    }
    Ok(ev)
}

/// A progress bar, cleared when dropped.
struct Cleared(indicatif::ProgressBar);

impl Drop for Cleared {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
