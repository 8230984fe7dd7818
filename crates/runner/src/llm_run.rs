//! Runs the LLM suite: loads the pipeline once, trains every (seed, variant) into its own
//! folder (resuming from checkpoints), and writes `summary.json`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use fpo::Variant;
use fpo::llm::lm::{EncoderEmbedder, ModelLm};
use fpo::llm::train::variant_dir;
use fpo::llm::{HeadFit, Pipeline, VariantOutcome};
use fpo_eval::generation::{
    AnswerScores, AnswersSummary, Comparison, compare, compare_verdicts, summarize_answers,
};
use fpo_eval::judge::{Judge, PairItem};
use fpo_eval::pressure::PressureSummary;
use fpo_eval::stats::{Summary, bootstrap_paired, mcnemar, paired_difference};
use fpo_eval::suite::{
    AnswersSuite, ChatAndEmbedder, McSuite, PressureSuite, Suite, SycophancySuite,
};
use fpo_eval::sycophancy::SycophancySummary;
use fpo_eval::truthfulqa::{Item, McFormat, McResult, McSummary, summarize_mc};
use fpo_model::llm::Adapters;

use serde::Serialize;

use crate::eval_cli::{jsonl, reference_embeddings, run_suite, sycophancy_items, truthfulqa_items};
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

/// The settings that make two LLM runs' training the same: the `[train]` and `[fpo]` sections
/// of a resolved config (as `config.json` holds it). Variants and seeds may differ: a reused run
/// gives the (variant, seed) folders it has, the others are trained.
pub fn training_settings(config: &serde_json::Value) -> (serde_json::Value, serde_json::Value) {
    (config["config"]["train"].clone(), config["fpo"].clone())
}

/// Copies the trained (variant, seed) folders of the run `from` into `dir` (only those `dir`
/// lacks), after checking that `from` was trained with the same settings.
fn reuse_training(resolved: &Resolved, from: &Path, dir: &Path) -> anyhow::Result<()> {
    let path = from.join("config.json");
    let theirs: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("reading {}", path.display()))?;
    let ours = serde_json::to_value(resolved)?;
    if training_settings(&theirs) != training_settings(&ours) {
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
            if dst.join("outcome.json").exists() || !src.join("outcome.json").exists() {
                continue;
            }
            std::fs::create_dir_all(&dst)?;
            for name in ["adapters.safetensors", "log.jsonl", "outcome.json"] {
                std::fs::copy(src.join(name), dst.join(name)).with_context(|| {
                    format!("copying {} to {}", src.join(name).display(), dst.display())
                })?;
            }
        }
    }
    let fit = from.join("rm_head_fit.json");
    if fit.exists() && !dir.join("rm_head_fit.json").exists() {
        std::fs::copy(&fit, dir.join("rm_head_fit.json"))?;
    }
    // The models' scores on the same items (same data, limit and Types) are taken too, so that
    // judging a finished run with an LLM judge pays for the judge alone.
    let items = |c: &serde_json::Value| {
        let e = &c["config"]["eval"];
        let types = if e["types"].is_null() {
            serde_json::json!([])
        } else {
            e["types"].clone()
        };
        (c["config"]["data_dir"].clone(), e["limit"].clone(), types)
    };
    let scores = from.join("eval");
    if items(&theirs) == items(&ours) && scores.is_dir() {
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
/// in that run directory (same training settings) are taken from it instead.
pub fn run(resolved: &Resolved, dir: &Path, reuse: Option<&Path>) -> anyhow::Result<LlmSummary> {
    let SuiteConfig::Llm(cfg) = &resolved.config else {
        anyhow::bail!("not an LLM suite");
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic(dir, "config.json", &json(resolved)?)?;
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
    let recorded_fit = std::fs::read_to_string(dir.join("rm_head_fit.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<HeadFit>(&t).ok());
    let pipeline = match recorded_fit {
        Some(fit) if trained => {
            eprintln!(
                "every variant is trained: loading {} and {} for the evaluation",
                cfg.train.model.display(),
                cfg.train.rm.encoder.display()
            );
            Pipeline::load_trained(
                &cfg.train,
                resolved.fpo.gamma,
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
            Pipeline::load(&cfg.train, resolved.fpo.gamma, resolved.run.llm_backend())?
        }
    };
    let fit = pipeline.head_fit().clone();
    eprintln!(
        "RM head ({:?}): {} pairs, held-out pair accuracy {:.3} ({} pairs), train {:.3}",
        fit.init, fit.train_pairs, fit.heldout_accuracy, fit.heldout_pairs, fit.train_accuracy
    );
    write_atomic(dir, "rm_head_fit.json", &json(&fit)?)?;
    let iterations = cfg.train.iterations as u64;
    let total = iterations * (seeds.len() * variants.len()) as u64;
    let bar = progress(total, "iterations", resolved.suite.name());
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
}

/// One variant's figures over seeds (each seed's model contributes its mean).
#[derive(Debug, Default, Serialize)]
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
#[derive(Debug, Default, Serialize)]
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
        names.push((format!("{}-seed{}", o.variant, o.seed), Some(path)));
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
    ev.pressure_generation = pressured
        .iter()
        .map(|(name, rows)| (name.clone(), summarize_answers(rows, level)))
        .collect();
    for o in outcomes {
        ev.across_seeds
            .entry(o.variant.to_string())
            .or_default()
            .seeds += 1;
    }
    for (variant, a) in &mut ev.across_seeds {
        let names: Vec<String> = outcomes
            .iter()
            .filter(|o| o.variant.to_string() == *variant)
            .map(|o| format!("{}-seed{}", o.variant, o.seed))
            .collect();
        let over = |f: &dyn Fn(&str) -> Option<f64>| {
            let xs: Vec<f64> = names.iter().filter_map(|n| f(n)).collect();
            (!xs.is_empty()).then(|| Summary::of(&xs, level))
        };
        a.mc1 = over(&|n| ev.mc.get(n).map(|m| m.mc1.mean));
        a.mc2 = over(&|n| ev.mc.get(n).map(|m| m.mc2.mean));
        a.acc = over(&|n| ev.generation.get(n).map(|g| g.overall.acc.mean));
        a.words = over(&|n| ev.generation.get(n).map(|g| g.overall.words.mean));
    }
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
        for (x, y) in [
            (Variant::Standard, Variant::Practical),
            (Variant::Standard, Variant::Relaxed),
            (Variant::Relaxed, Variant::Practical),
        ] {
            let (nx, ny) = (format!("{x}-seed{seed}"), format!("{y}-seed{seed}"));
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
