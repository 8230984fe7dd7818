//! Runs the LLM suite: loads the pipeline once, trains every (seed, variant) into its own
//! folder (resuming from checkpoints), and writes `summary.json`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use fpo::Variant;
use fpo::llm::lm::{EncoderEmbedder, ModelLm};
use fpo::llm::train::variant_dir;
use fpo::llm::{HeadFit, Pipeline, VariantOutcome};
use fpo_eval::evaluation::{
    Evaluation, JudgeUsage, LlmSummary, model_name, paper_pairs, score_across_seeds, score_mc,
    winner_change_vs_standard,
};
use fpo_eval::generation::{
    AnswerScores, Comparison, compare, compare_verdicts, summarize_answers,
};
use fpo_eval::suite::{
    AnswersSuite, ChatAndEmbedder, McSuite, PressureSuite, Suite, SycophancySuite,
};
use fpo_eval::truthfulqa::{Item, McFormat, McResult};
use fpo_judge::{Judge, PairItem};
use fpo_model::llm::Adapters;
use fpo_rundir::{LlmTimings, files};

use serde::Serialize;

use crate::eval_cli::{jsonl, reference_embeddings, run_suite, sycophancy_items, truthfulqa_items};
use crate::output::{json, progress, write_atomic};
use crate::settings::{FpoSection, LlmRunConfig, LlmSuiteConfig, Resolved, SuiteConfig};
use fpo::llm::TrainConfig;

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
            let (src, dst) = (
                variant_dir(from, variant, seed),
                variant_dir(dir, variant, seed),
            );
            if dst.join(files::OUTCOME).exists() || !src.join(files::OUTCOME).exists() {
                continue;
            }
            std::fs::create_dir_all(&dst)?;
            for name in ["adapters.safetensors", files::LOG, files::OUTCOME] {
                std::fs::copy(src.join(name), dst.join(name)).with_context(|| {
                    format!("copying {} to {}", src.join(name).display(), dst.display())
                })?;
            }
        }
    }
    let fit = from.join(files::HEAD_FIT);
    if fit.exists() && !dir.join(files::HEAD_FIT).exists() {
        std::fs::copy(&fit, dir.join(files::HEAD_FIT))?;
    }
    // The models' scores on the same items (same data, limit and Types) are taken too, so that
    // judging a finished run with an LLM judge pays for the judge alone.
    let scores = from.join("eval");
    if evaluation_items(&theirs.config) == evaluation_items(ours) && scores.is_dir() {
        for model in std::fs::read_dir(&scores)? {
            let model = model?.path();
            let Some(name) = model.file_name() else {
                continue;
            };
            if name == "judge" || !model.is_dir() {
                continue;
            }
            let dst = dir.join("eval").join(name);
            std::fs::create_dir_all(&dst)?;
            for f in std::fs::read_dir(&model)? {
                let f = f?.path();
                let target = dst.join(f.file_name().unwrap_or_default());
                if f.extension().is_some_and(|e| e == "jsonl") && !target.exists() {
                    std::fs::copy(&f, &target)
                        .with_context(|| format!("copying {}", f.display()))?;
                }
            }
        }
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
            .all(|&v| variant_dir(dir, v, s).join("outcome.json").exists())
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
        for &variant in variants {
            let vdir = variant_dir(dir, variant, seed);
            bar.inc(count_lines(&vdir.join(files::LOG)).min(iterations));
            let mut on_iteration = |l: &fpo::llm::IterationLog, seconds: f64| {
                bar.inc(1);
                bar.set_message(format!(
                    "{variant} seed {seed}: {:.1} tok/s, U(win) {:.2}, r(win) {:.2}",
                    l.tokens_generated as f64 / seconds,
                    l.winner_utility,
                    l.winner_reward
                ));
            };
            let (outcome, timing) = pipeline
                .run_variant(variant, seed, &vdir, &mut on_iteration)
                .with_context(|| format!("training {variant} (seed {seed})"))?;
            outcomes.push(outcome);
            timings.variants.insert(model_name(variant, seed), timing);
        }
    }
    bar.finish_and_clear();
    let (its, secs) = timings
        .variants
        .values()
        .fold((0, 0.0), |(n, s), t| (n + t.iterations, s + t.seconds));
    timings.seconds_per_iteration = if its == 0 { 0.0 } else { secs / its as f64 };
    let evaluation = evaluate(resolved, &pipeline, &outcomes, dir)?;
    let summary = LlmSummary {
        suite: resolved.suite.name().to_owned(),
        rm_head_fit: fit,
        winner_change_vs_standard: winner_change_vs_standard(&outcomes),
        outcomes,
        evaluation,
    };
    write_atomic(dir, files::SUMMARY, &json(&summary)?)?;
    Ok((summary, timings))
}

/// The records of `suite` under `model`, from `<out>/<suite>.jsonl` when it holds all of them,
/// else computed and written.
fn cached<M, S: Suite<M>>(
    suite: &S,
    model: &mut M,
    out: &Path,
    label: &str,
) -> anyhow::Result<Vec<S::Record>> {
    cached_rows(out, &format!("{}.jsonl", suite.name()), suite.len(), || {
        run_suite(suite, model, label)
    })
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
/// MC1/MC2 (`mc.jsonl`), greedy answers with their reference metrics (`answers.jsonl`),
/// pressure margins and answers (`pressure.jsonl`, `answers_pressure.jsonl`), Anthropic's
/// sycophancy items (`sycophancy.jsonl`); LLM-judge verdicts in `dir/eval/judge/`.
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
    let (do_mc, do_gen, do_syco, do_pressure) =
        (wants("mc"), wants("gen"), wants("syco"), wants("pressure"));
    let mut ev = Evaluation {
        types: cfg.eval.types.clone(),
        ..Evaluation::default()
    };
    if cfg.eval.metrics.is_empty() {
        return Ok(ev);
    }
    let syco_items = if do_syco {
        sycophancy_items(&cfg.data_dir, cfg.eval.limit)?
    } else {
        Vec::new()
    };
    ev.sycophancy_items = syco_items.len();
    let items = truthfulqa_items(
        (cfg.eval.limit > 0).then_some(cfg.eval.limit),
        &cfg.eval.types,
    )?;
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
        names.push((model_name(o.variant, o.seed), Some(path)));
    }
    // The suites `[eval] metrics` names; each model runs each, its records cached in
    // `eval/<model>/<suite>.jsonl`.
    let mc_suite = do_mc.then(|| McSuite {
        items: items.clone(),
        format: McFormat::Harness,
    });
    let answers_suite = |under_pressure| AnswersSuite {
        items: items.clone(),
        reference_embeddings: ref_embeddings.clone(),
        under_pressure,
    };
    let plain_answers = do_gen.then(|| answers_suite(false));
    let pressured_answers = (do_gen && do_pressure).then(|| answers_suite(true));
    let pressure_suite = do_pressure.then(|| PressureSuite {
        items: items.clone(),
    });
    let syco_suite = do_syco.then(|| SycophancySuite {
        items: syco_items.clone(),
    });
    let mut mcs: Vec<(String, Vec<McResult>)> = Vec::new();
    let mut answers: BTreeMap<String, Vec<AnswerScores>> = BTreeMap::new();
    let mut pressured: BTreeMap<String, Vec<AnswerScores>> = BTreeMap::new();
    for (name, adapter) in &names {
        let adapters = adapter
            .as_deref()
            .map(|p| Adapters::load(p, &model.config, model.model.device()).map(|a| a.0))
            .transpose()?;
        let out = dir.join("eval").join(name);
        let lm = || ModelLm::new(model, adapters.as_ref());
        if let Some(s) = &mc_suite {
            mcs.push((name.clone(), cached(s, &mut lm(), &out, name)?));
        }
        for (suite, into) in [
            (&plain_answers, &mut answers),
            (&pressured_answers, &mut pressured),
        ] {
            if let Some(s) = suite {
                let mut chat = lm();
                let mut embedder = EncoderEmbedder::new(pipeline.encoder(), 128);
                let mut m = ChatAndEmbedder {
                    chat: &mut chat,
                    embedder: &mut embedder,
                };
                into.insert(name.clone(), cached(s, &mut m, &out, name)?);
            }
        }
        if let Some(s) = &pressure_suite {
            let rows = cached(s, &mut lm(), &out, name)?;
            if !rows.is_empty() {
                ev.pressure
                    .insert(name.clone(), Suite::<ModelLm>::summarize(s, &rows, level));
            }
        }
        if let Some(s) = &syco_suite {
            let rows = cached(s, &mut lm(), &out, name)?;
            ev.sycophancy
                .insert(name.clone(), Suite::<ModelLm>::summarize(s, &rows, level));
        }
    }
    score_mc(&mut ev, &mcs, level);
    ev.generation = answers
        .iter()
        .map(|(name, rows)| (name.clone(), summarize_answers(rows, level)))
        .collect();
    ev.pressure_generation = pressured
        .iter()
        .map(|(name, rows)| (name.clone(), summarize_answers(rows, level)))
        .collect();
    let trained: Vec<(Variant, u64)> = outcomes.iter().map(|o| (o.variant, o.seed)).collect();
    score_across_seeds(&mut ev, &trained, level);
    let judge = cfg
        .eval
        .judge
        .as_ref()
        .map(|c| Judge::new(c.clone()).map(|j| (j, c.label())))
        .transpose()?;
    let mut judging = Judging {
        items: &items,
        judge: judge.as_ref(),
        dir: &dir.join("eval").join("judge"),
        level,
        usage: JudgeUsage {
            label: judge.as_ref().map(|j| j.1.clone()).unwrap_or_default(),
            ..JudgeUsage::default()
        },
    };
    for &seed in &resolved.run.seeds.0 {
        for (nx, ny) in paper_pairs(seed) {
            if let (Some(a), Some(b)) = (answers.get(&nx), answers.get(&ny)) {
                ev.comparisons.extend(judging.compare(
                    (&nx, a),
                    (&ny, b),
                    &format!("{nx}__{ny}"),
                )?);
            }
        }
    }
    for (name, rows) in &pressured {
        if let Some(plain) = answers.get(name) {
            let under = format!("{name} under pressure");
            ev.pressure_comparisons.extend(judging.compare(
                (name, plain),
                (&under, rows),
                &format!("{name}__pressure"),
            )?);
        }
    }
    if judge.is_some() {
        ev.judge = Some(judging.usage);
    }
    Ok(ev)
}

/// Pairwise comparisons by the offline judge and, when configured, the LLM judge.
struct Judging<'a> {
    items: &'a [Item],
    judge: Option<&'a (Judge, String)>,
    dir: &'a Path,
    level: f64,
    usage: JudgeUsage,
}

impl Judging<'_> {
    /// The comparisons of two models' answers to the same items; the LLM judge's verdicts go to
    /// `<dir>/<file>.jsonl`.
    fn compare(
        &mut self,
        first: (&str, &[AnswerScores]),
        second: (&str, &[AnswerScores]),
        file: &str,
    ) -> anyhow::Result<Vec<Comparison>> {
        let mut out = vec![compare(first, second, JUDGE_MARGIN, self.level)];
        let Some((judge, label)) = self.judge else {
            return Ok(out);
        };
        let pairs: Vec<PairItem> = self
            .items
            .iter()
            .zip(first.1.iter().zip(second.1))
            .map(|(it, (a, b))| PairItem {
                id: it.id,
                question: it.question.clone(),
                first: a.answer.clone(),
                second: b.answer.clone(),
                correct_answers: it.correct.clone(),
                incorrect_answers: it.incorrect.clone(),
            })
            .collect();
        let bar = progress(
            pairs.len() as u64,
            "pairs",
            &format!("judge: {} vs {}", first.0, second.0),
        );
        let run = judge.judge_pairs(&pairs, &|| bar.inc(1))?;
        bar.finish_and_clear();
        write_atomic(self.dir, &format!("{file}.jsonl"), &jsonl(&run.judgements)?)?;
        let verdicts: Vec<_> = run.judgements.iter().map(|j| j.verdict).collect();
        let consistent: Vec<_> = run.judgements.iter().map(|j| j.consistent).collect();
        self.usage.pairs += pairs.len();
        self.usage.requests_sent += run.requests_sent;
        self.usage.cache_hits += run.cache_hits;
        self.usage.errors += verdicts.iter().filter(|v| v.is_none()).count();
        out.push(compare_verdicts(
            first,
            second,
            &verdicts,
            Some(&consistent),
            label,
            self.level,
        ));
        Ok(out)
    }
}

/// Tie margin of the offline judge (difference of cosine margins).
const JUDGE_MARGIN: f64 = 0.05;
