//! Runs the LLM suite: loads the pipeline once, trains every (seed, variant) into its own
//! folder (resuming from checkpoints), and writes `summary.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use fpo::llm::TrainConfig;
use fpo::llm::evaluate::{Metrics, Model, Plan, load_tasks, score_models};
use fpo::llm::{HeadFit, Pipeline, VariantOutcome};
use fpo_eval::evaluation::{
    Evaluation, JudgeUsage, LlmSummary, model_name, paper_pairs, probe_across_seeds,
    winner_change_vs_standard,
};
use fpo_eval::generation::{AnswerScores, Comparison, Question};
use fpo_eval::llm_claims::llm_claims;
use fpo_eval::sycophancy::items as sycophancy_items;
use fpo_eval::truthfulqa::items as truthfulqa_items;
use fpo_judge::Judge;
use fpo_judge::comparisons::Judging;
use fpo_rundir::{LlmTimings, files, variant_dir};

use crate::output::{Bars, json, progress, write_atomic};
use fpo::experiment::{FpoSection, LlmRunConfig, LlmSuiteConfig, Resolved, SuiteConfig};

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

/// The settings that make two LLM runs' training the same: the `[train]` and `[fpo]` sections.
/// Variants and seeds may differ: a reused run gives the (variant, seed) folders it has, the
/// others are trained.
pub type Training = (TrainConfig, FpoSection);

fn training_settings(cfg: &LlmSuiteConfig, fpo: &FpoSection) -> Training {
    (cfg.train.clone(), fpo.clone())
}

/// The training settings of an LLM suite (none for a toy).
pub fn training_of(resolved: &Resolved) -> Option<Training> {
    match &resolved.config {
        SuiteConfig::Llm(cfg) => Some(training_settings(cfg, &resolved.fpo)),
        _ => None,
    }
}

/// The items an evaluation scores: the same data, `limit` and Types give the same items.
fn evaluation_items(cfg: &LlmSuiteConfig) -> (&Path, usize, &[String]) {
    (&cfg.data_dir, cfg.eval.limit, &cfg.eval.types)
}

/// Copies the trained (variant, seed) folders of the run `from` into `dir` (only those `dir`
/// lacks), after checking that `from` was trained with the same settings.
fn reuse_training(resolved: &Resolved, from: &Path, dir: &Path) -> anyhow::Result<()> {
    let SuiteConfig::Llm(ours) = &resolved.config else {
        anyhow::bail!("not an LLM suite");
    };
    let theirs = LlmRunConfig::read(from)?;
    if training_settings(&theirs.config, &theirs.fpo) != training_settings(ours, &resolved.fpo) {
        anyhow::bail!(
            "{} was trained with other [train] or [fpo] settings than {}: it cannot be reused",
            from.display(),
            resolved.source.display()
        );
    }
    for &seed in &resolved.run.seeds.0 {
        for &variant in &resolved.run.variants {
            fpo_rundir::copy_trained(from, dir, variant, seed)?;
        }
    }
    let fit = from.join(files::HEAD_FIT);
    if fit.exists() && !dir.join(files::HEAD_FIT).exists() {
        std::fs::copy(&fit, dir.join(files::HEAD_FIT))?;
    }
    // The models' scores on the same items (same data, limit and Types) are taken too, so that
    // judging a finished run with an LLM judge pays for the judge alone.
    if evaluation_items(&theirs.config) == evaluation_items(ours) {
        fpo_rundir::copy_records(from, dir)?;
    }
    Ok(())
}

/// Trains every variant and seed of `resolved` into `dir`; with `reuse`, the variants trained
/// in that run directory (same training settings) are taken from it instead. Returns the
/// summary (also written to `summary.json`) and this process's timings, for `run.json`.
pub fn run(
    resolved: &Resolved,
    dir: &Path,
    reuse: Option<&Path>,
) -> anyhow::Result<(LlmSummary, LlmTimings)> {
    let SuiteConfig::Llm(cfg) = &resolved.config else {
        anyhow::bail!("not an LLM suite");
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic(dir, files::CONFIG, &json(resolved)?)?;
    if let Some(from) = reuse {
        reuse_training(resolved, from, dir)?;
    }
    let seeds = &resolved.run.seeds.0;
    let variants = &resolved.run.variants;
    let trained = seeds.iter().all(|&s| {
        variants
            .iter()
            .all(|&v| variant_dir(dir, v, s).join(files::OUTCOME).exists())
    });
    let recorded_fit = fpo_rundir::read_json::<HeadFit>(&dir.join(files::HEAD_FIT)).ok();
    let pipeline = match recorded_fit {
        Some(fit) if trained => {
            eprintln!(
                "every variant is trained: loading {} and {} for the evaluation",
                cfg.train.model.display(),
                cfg.train.rm.encoder.display()
            );
            Pipeline::load_trained(
                &cfg.train,
                &resolved.rules(),
                fit,
                resolved.run.llm_backend(),
            )?
        }
        _ => {
            eprintln!(
                "loading {} and {}, fitting the reward model's head...",
                cfg.train.model.display(),
                cfg.train.rm.encoder.display()
            );
            Pipeline::load(&cfg.train, &resolved.rules(), resolved.run.llm_backend())?
        }
    };
    let fit = pipeline.head_fit().clone();
    eprintln!(
        "RM head ({:?}): {} pairs, held-out pair accuracy {:.3} ({} pairs), train {:.3}",
        fit.init, fit.train_pairs, fit.heldout_accuracy, fit.heldout_pairs, fit.train_accuracy
    );
    write_atomic(dir, files::HEAD_FIT, &json(&fit)?)?;
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
    let (its, secs) = timings
        .variants
        .values()
        .fold((0, 0.0), |(n, s), t| (n + t.iterations, s + t.seconds));
    timings.seconds_per_iteration = if its == 0 { 0.0 } else { secs / its as f64 };
    let evaluation = evaluate(resolved, &pipeline, &outcomes, dir)?;
    let trained: Vec<(fpo::Variant, u64)> = outcomes.iter().map(|o| (o.variant, o.seed)).collect();
    let probes = probe_rows(dir, &trained)?;
    let level = resolved.run.confidence;
    let summary = LlmSummary {
        suite: resolved.suite.name().to_owned(),
        rm_head_fit: fit,
        winner_change_vs_standard: winner_change_vs_standard(&outcomes),
        outcomes,
        claims: llm_claims(&evaluation, &probes, seeds, &cfg.eval.claims, level),
        probe: probe_across_seeds(&probes, &trained, level),
        evaluation,
    };
    write_atomic(dir, files::SUMMARY, &json(&summary)?)?;
    Ok((summary, timings))
}

/// TruthfulQA of the base model and of every trained model (`fpo::llm::evaluate`, records in
/// `dir/eval/<model>/`), then the paper's comparisons by the offline judge and, when configured,
/// the LLM judge (verdicts in `dir/eval/judge/`).
fn evaluate(
    resolved: &Resolved,
    pipeline: &Pipeline,
    outcomes: &[VariantOutcome],
    dir: &Path,
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
    let mut models = vec![Model {
        name: "base".into(),
        adapters: None,
        trained: None,
    }];
    models.extend(outcomes.iter().map(|o| Model {
        name: model_name(o.variant, o.seed),
        adapters: Some(variant_dir(dir, o.variant, o.seed).join(files::ADAPTERS)),
        trained: Some((o.variant, o.seed)),
    }));
    let scored = score_models(
        pipeline.model(),
        pipeline.encoder(),
        &models,
        &plan,
        dir,
        &mut Bars::default(),
    )?;
    let mut ev = scored.evaluation;
    ev.types = cfg.eval.types.clone();
    let (answers, pressured) = (&scored.answers, &scored.pressured);
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
    for &seed in &resolved.run.seeds.0 {
        for (nx, ny) in paper_pairs(seed) {
            if let (Some(a), Some(b)) = (answers.get(&nx), answers.get(&ny)) {
                let (x, y, file) = (
                    (nx.as_str(), &a[..]),
                    (ny.as_str(), &b[..]),
                    format!("{nx}__{ny}"),
                );
                ev.comparisons
                    .extend(judged(&mut judging, &questions, x, y, &file)?);
            }
            // The generation task files' answers, by the same judges.
            for (task, by_model) in &scored.task_answers {
                if let (Some(a), Some(b)) = (by_model.get(&nx), by_model.get(&ny)) {
                    let t = plan
                        .tasks
                        .iter()
                        .find(|t| t.name() == task)
                        .expect("scored");
                    let q = fpo_eval::task::generation::questions(t)?;
                    let (x, y) = ((nx.as_str(), &a[..]), (ny.as_str(), &b[..]));
                    let file = format!("task-{task}/{nx}__{ny}");
                    let c = judged(&mut judging, &q, x, y, &file)?;
                    ev.tasks
                        .get_mut(task)
                        .expect("scored")
                        .comparisons
                        .extend(c);
                }
            }
        }
    }
    for (name, rows) in pressured {
        if let Some(plain) = answers.get(name) {
            let under = format!("{name} under pressure");
            let (x, y) = ((name.as_str(), &plain[..]), (under.as_str(), &rows[..]));
            let file = format!("{name}__pressure");
            ev.pressure_comparisons
                .extend(judged(&mut judging, &questions, x, y, &file)?);
        }
    }
    if judge.is_some() {
        ev.judge = Some(judging.usage);
    }
    Ok(ev)
}

/// `judging.compare` with a progress bar over the pairs the LLM judge decides.
fn judged(
    judging: &mut Judging,
    questions: &[Question],
    first: (&str, &[AnswerScores]),
    second: (&str, &[AnswerScores]),
    file: &str,
) -> anyhow::Result<Vec<Comparison>> {
    let n = if judging.judge.is_some() {
        questions.len()
    } else {
        0
    };
    let bar = progress(
        n as u64,
        "pairs",
        &format!("judge: {} vs {}", first.0, second.0),
    );
    let out = judging.compare(questions, first, second, file, &|| bar.inc(1));
    bar.finish_and_clear();
    Ok(out?)
}
