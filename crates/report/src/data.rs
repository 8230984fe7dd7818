//! Loading run directories into plain numbers.

use std::collections::BTreeMap;
use std::path::Path;

use fpo_eval::evaluation::LlmSummary;
use fpo_eval::generation::AnswerScores;
use fpo_eval::pca::Pca;
use fpo_eval::stats::Summary;
use fpo_rundir::llm::{IterationLog, ProbeRow};
use fpo_rundir::{
    ActionRow, ConfigView, Ladder, ReproduceIndex, RunInfo, ToySummary, files, metrics, read_json,
    read_jsonl,
};
use serde::Serialize;

use crate::{Error, Result};

/// One section of a report.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Section {
    /// A toy suite run.
    Toy(Box<ToySection>),
    /// The approximation ladder over toys.
    Ladder {
        /// The directory.
        dir: String,
        /// One toy section per toy, with the rungs as variants.
        toys: Vec<ToySection>,
        /// Microseconds per policy step, per toy and rung.
        us_per_step: BTreeMap<String, BTreeMap<String, f64>>,
        /// `run.json`, when present (machine, wall time of the whole ladder).
        run_info: Option<Box<RunInfo>>,
    },
    /// An LLM training run.
    Llm(Box<LlmSection>),
}

/// An LLM run: per-iteration curves from each variant's `log.jsonl`, the summary, and samples.
#[derive(Debug, Clone, Serialize)]
pub struct LlmSection {
    /// The directory.
    pub dir: String,
    /// Suite name.
    pub suite: String,
    /// The description from the config.
    pub description: String,
    /// The resolved config, pretty JSON.
    pub config: String,
    /// `summary.json` (RM warm start, outcomes, evaluation).
    pub summary: LlmSummary,
    /// `run.json`, when present.
    pub run_info: Option<RunInfo>,
    /// Trailing moving-average window of the curves, in iterations.
    pub window: usize,
    /// Per variant: the curves (mean over seeds, then the moving average).
    pub curves: BTreeMap<String, LlmCurves>,
    /// Per variant: the held-out probe over training (mean and interval over seeds).
    pub probe: BTreeMap<String, ProbeCurves>,
    /// Per trained model (`<variant>-seed<k>`): the KL from the base model at its last probe.
    pub kl: BTreeMap<String, f64>,
    /// The last iterations' winners side by side (first seed), newest first.
    pub samples: Vec<Sample>,
    /// The evaluation's greedy answers side by side, per question (the first questions).
    pub answers: Vec<AnswerRow>,
    /// The data files the run read, with their sources and licences.
    pub provenance: Vec<crate::provenance::DataSource>,
}

/// One evaluation question's answers under every model.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerRow {
    /// The question's id.
    pub id: u64,
    /// The question (absent in runs from before it was recorded).
    pub question: String,
    /// TruthfulQA Type and Category.
    pub kind: String,
    /// Category.
    pub category: String,
    /// Model -> (answer, cosine margin to the references).
    pub answers: BTreeMap<String, (String, f64)>,
}

/// Questions shown in the side-by-side answers.
const ANSWER_ROWS: usize = 40;

/// The greedy answers of every model under `dir/eval/<model>/answers.jsonl`, side by side.
fn answer_rows(dir: &Path) -> Result<Vec<AnswerRow>> {
    let mut rows: Vec<AnswerRow> = Vec::new();
    let Ok(models) = std::fs::read_dir(dir.join("eval")) else {
        return Ok(rows);
    };
    let mut models: Vec<_> = models.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    models.sort();
    for m in models {
        let path = m.join("answers.jsonl");
        if !path.is_file() {
            continue;
        }
        let name = name_of(&m);
        for v in read_jsonl::<AnswerScores>(&path)?
            .into_iter()
            .take(ANSWER_ROWS)
        {
            let id = v.id as u64;
            let row = match rows.iter_mut().position(|r| r.id == id) {
                Some(i) => &mut rows[i],
                None => {
                    rows.push(AnswerRow {
                        id,
                        question: v.question.clone(),
                        kind: v.kind.clone(),
                        category: v.category.clone(),
                        answers: BTreeMap::new(),
                    });
                    rows.last_mut().expect("just pushed")
                }
            };
            row.answers.insert(name.clone(), (v.answer, v.cos_diff));
        }
    }
    Ok(rows)
}

/// Per-iteration series of one variant.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LlmCurves {
    /// Iterations.
    pub iteration: Vec<f64>,
    /// RM score of the winner.
    pub winner_reward: Vec<f64>,
    /// Oracle utility of the winner.
    pub winner_utility: Vec<f64>,
    /// Penalty of the winner.
    pub penalty: Vec<f64>,
    /// Self-influence of the winner.
    pub self_influence: Vec<f64>,
}

/// The held-out probe of one variant over training, each point over seeds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProbeCurves {
    /// Iterations trained at each probe.
    pub iteration: Vec<f64>,
    /// RM score (current head) minus the base samples'.
    pub reward_gain: Vec<Summary>,
    /// The same under the initial head.
    pub reward_gain_initial_head: Vec<Summary>,
    /// Oracle utility (the paper's form) minus the base samples'.
    pub utility_gain: Vec<Summary>,
    /// Response-only utility minus the base samples'.
    pub response_utility_gain: Vec<Summary>,
    /// Proxy-minus-true gap.
    pub gap: Vec<Summary>,
    /// Per-token KL from the base model.
    pub kl: Vec<Summary>,
    /// Mean new tokens.
    pub length: Vec<Summary>,
}

/// The probe curves of one variant from each seed's rows (the probes all seeds have).
fn probe_curves(seeds: &[Vec<ProbeRow>], level: f64) -> ProbeCurves {
    let n = seeds.iter().map(Vec::len).min().unwrap_or(0);
    let over = |f: fn(&ProbeRow) -> f64| -> Vec<Summary> {
        (0..n)
            .map(|i| Summary::of(&seeds.iter().map(|r| f(&r[i])).collect::<Vec<_>>(), level))
            .collect()
    };
    ProbeCurves {
        iteration: (0..n).map(|i| seeds[0][i].iteration as f64).collect(),
        reward_gain: over(ProbeRow::reward_gain),
        reward_gain_initial_head: over(ProbeRow::reward_gain_initial_head),
        utility_gain: over(ProbeRow::utility_gain),
        response_utility_gain: over(ProbeRow::response_utility_gain),
        gap: over(|r| r.gap),
        kl: over(|r| r.kl),
        length: over(|r| r.length),
    }
}

/// One prompt's winners under each variant.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Iteration.
    pub iteration: u64,
    /// Line of the prompt in the prompts file.
    pub prompt_line: u64,
    /// Variant -> (winner text, oracle utility, RM score).
    pub winners: BTreeMap<String, (String, f64, f64)>,
}

/// Winners shown in the samples table.
const SAMPLES: usize = 8;

/// A toy suite run: the curves over seeds and the summary.
#[derive(Debug, Clone, Serialize)]
pub struct ToySection {
    /// The directory.
    pub dir: String,
    /// Suite name.
    pub suite: String,
    /// The description from the config.
    pub description: String,
    /// The resolved config, pretty JSON.
    pub config: String,
    /// `summary.json` (variants, claims).
    pub summary: ToySummary,
    /// `run.json`, when present (machine, wall time).
    pub run_info: Option<RunInfo>,
    /// Per variant, per logged iteration: mean and CI over seeds.
    pub curves: BTreeMap<String, Curves>,
    /// `(A, tau, ideal signal norm)` of the true utility, for the phase-space contours.
    pub utility: Option<(f64, f64, f64)>,
    /// The first seed's trajectories on their top two principal axes, from `actions.jsonl`.
    pub projection: Option<Projection>,
}

/// Every variant's trajectory of one seed projected on the top two principal axes of all their
/// logged actions (the paper's PCA figure of the NN toy).
#[derive(Debug, Clone, Serialize)]
pub struct Projection {
    /// The seed shown.
    pub seed: u64,
    /// Share of the actions' variance the two axes explain.
    pub explained: f64,
    /// Variant -> its path on the plane, in iteration order.
    pub paths: BTreeMap<String, Vec<(f64, f64)>>,
    /// The ideal action on the plane, and its squared distance from the plane.
    pub ideal: Option<((f64, f64), f64)>,
    /// `(A, tau)` of the true utility `A exp(-tau ||y - y*||²)`: on the plane it is
    /// `A exp(-tau (||c - c*||² + d²))`, with `c*` and `d²` the ideal's projection and distance.
    pub utility: Option<(f64, f64)>,
}

/// Mean and confidence band over seeds, per logged iteration.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Curves {
    /// Iterations.
    pub iteration: Vec<f64>,
    /// Signal magnitude.
    pub signal: Vec<Summary>,
    /// Noise magnitude.
    pub noise: Vec<Summary>,
    /// True utility.
    pub true_utility: Vec<Summary>,
    /// RM score.
    pub proxy_reward: Vec<Summary>,
}

/// The resolved settings as written, pretty, for the report's "resolved configuration".
fn config_text(dir: &Path) -> Result<String> {
    let value: serde_json::Value = read_json(&dir.join(files::CONFIG))?;
    Ok(serde_json::to_string_pretty(&value).unwrap_or_default())
}

/// A reproduce directory's index, with the directory.
#[derive(Debug, Clone, Serialize)]
pub struct ReproduceEntry {
    /// The directory.
    pub dir: String,
    /// `reproduce.json`.
    #[serde(flatten)]
    pub index: ReproduceIndex,
}

/// `reproduce.json` of a reproduce directory (profile, suites, versions, machine, wall time,
/// command), with the directory; none for other runs.
pub fn reproduce_index(dir: &Path) -> Result<Option<ReproduceEntry>> {
    let path = dir.join(files::REPRODUCE);
    if !path.is_file() {
        return Ok(None);
    }
    Ok(Some(ReproduceEntry {
        dir: dir.display().to_string(),
        index: read_json(&path)?,
    }))
}

/// The sections of a directory: a toy run, a ladder, or a reproduce directory of either.
pub fn sections(dir: &Path) -> Result<Vec<Section>> {
    if let Some(entry) = reproduce_index(dir)? {
        let mut out = Vec::new();
        for name in &entry.index.suites {
            out.extend(sections(&dir.join(name))?);
        }
        return Ok(out);
    }
    if dir.join(files::LADDER).is_file() {
        let ladder: Ladder = read_json(&dir.join(files::LADDER))?;
        let mut toys = Vec::new();
        let mut us_per_step = BTreeMap::new();
        for (name, value) in ladder {
            toys.push(toy(&dir.join(&name))?);
            us_per_step.insert(name, value.us_per_step);
        }
        return Ok(vec![Section::Ladder {
            dir: dir.display().to_string(),
            toys,
            us_per_step,
            run_info: run_info(dir)?.map(Box::new),
        }]);
    }
    if dir.join(files::HEAD_FIT).is_file() {
        return Ok(vec![Section::Llm(Box::new(llm(dir)?))]);
    }
    if dir.join(files::METRICS).is_file() {
        return Ok(vec![Section::Toy(Box::new(toy(dir)?))]);
    }
    Err(Error::NotARun(dir.to_owned()))
}

/// A run directory's `run.json` (what ran where, and for how long), when it has one.
fn run_info(dir: &Path) -> Result<Option<RunInfo>> {
    let path = dir.join(files::RUN_INFO);
    Ok(path.is_file().then(|| read_json(&path)).transpose()?)
}

fn toy(dir: &Path) -> Result<ToySection> {
    let config: ConfigView = read_json(&dir.join(files::CONFIG))?;
    let summary: ToySummary = read_json(&dir.join(files::SUMMARY))?;
    let run_info = run_info(dir)?;
    let level = summary.confidence;
    // variant -> iteration -> columns of values over seeds
    let mut acc: BTreeMap<String, BTreeMap<u64, [Vec<f64>; 4]>> = BTreeMap::new();
    for r in metrics::read(&dir.join(files::METRICS))? {
        let cols = acc
            .entry(r.variant)
            .or_default()
            .entry(r.iteration as u64)
            .or_default();
        for (c, v) in cols
            .iter_mut()
            .zip([r.signal, r.noise, r.true_utility, r.proxy_reward])
        {
            c.push(v);
        }
    }
    let curves = acc
        .into_iter()
        .map(|(variant, by_iter)| {
            let mut c = Curves::default();
            for (it, cols) in by_iter {
                c.iteration.push(it as f64);
                let [s, n, u, r] = cols.map(|xs| Summary::of(&xs, level));
                c.signal.push(s);
                c.noise.push(n);
                c.true_utility.push(u);
                c.proxy_reward.push(r);
            }
            (variant, c)
        })
        .collect();
    let utility = config.config.env.as_ref().and_then(|env| {
        let value = env.target_value.or(env.ideal_value)?;
        let dims = env.signal_dims? as f64;
        Some((env.utility_scale?, env.utility_width?, value * dims.sqrt()))
    });
    let projection = projection(dir, &config)?;
    Ok(ToySection {
        projection,
        dir: dir.display().to_string(),
        suite: config.suite.unwrap_or_else(|| "?".into()),
        description: config.description,
        config: config_text(dir)?,
        summary,
        run_info,
        curves,
        utility,
    })
}

/// The projection of a toy run's first seed, when it wrote `actions.jsonl`.
fn projection(dir: &Path, config: &ConfigView) -> Result<Option<Projection>> {
    let path = dir.join(files::ACTIONS);
    if !path.is_file() {
        return Ok(None);
    }
    let rows: Vec<ActionRow> = read_jsonl(&path)?;
    let Some(seed) = rows.iter().map(|r| r.seed).min() else {
        return Ok(None);
    };
    let mut actions: BTreeMap<String, Vec<(usize, Vec<f64>)>> = BTreeMap::new();
    for r in rows.into_iter().filter(|r| r.seed == seed) {
        actions
            .entry(r.variant)
            .or_default()
            .push((r.iteration, r.action));
    }
    actions.values_mut().for_each(|a| a.sort_by_key(|x| x.0));
    let points: Vec<Vec<f64>> = actions.values().flatten().map(|x| x.1.clone()).collect();
    let Some(pca) = Pca::fit(&points, 2).filter(|p| p.axes.len() == 2) else {
        return Ok(None);
    };
    let on_plane = |x: &[f64]| {
        let c = pca.project(x);
        (c[0], c[1])
    };
    let env = config.config.env.as_ref();
    let ideal = env.and_then(|env| {
        let value = env.target_value.or(env.ideal_value)?;
        let dims = env.signal_dims?;
        let dim = points[0].len();
        let y: Vec<f64> = (0..dim)
            .map(|i| if i < dims { value } else { 0.0 })
            .collect();
        let lifted = pca.point(&pca.project(&y));
        let off: f64 = y.iter().zip(&lifted).map(|(a, b)| (a - b) * (a - b)).sum();
        Some((on_plane(&y), off))
    });
    Ok(Some(Projection {
        seed,
        explained: pca.explained(),
        paths: actions
            .into_iter()
            .map(|(v, a)| (v, a.iter().map(|x| on_plane(&x.1)).collect()))
            .collect(),
        ideal,
        utility: env.and_then(|e| Some((e.utility_scale?, e.utility_width?))),
    }))
}

/// Trailing moving average over `w` points (fewer at the start).
fn moving_average(xs: &[f64], w: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(xs.len());
    let mut sum = 0.0;
    for (i, x) in xs.iter().enumerate() {
        sum += x;
        if i >= w {
            sum -= xs[i - w];
        }
        out.push(sum / (i + 1).min(w) as f64);
    }
    out
}

fn llm(dir: &Path) -> Result<LlmSection> {
    let config: ConfigView = read_json(&dir.join(files::CONFIG))?;
    let summary: LlmSummary = read_json(&dir.join(files::SUMMARY))?;
    let run_info = run_info(dir)?;
    // variant -> seed -> log lines
    let mut logs: BTreeMap<String, BTreeMap<u64, Vec<IterationLog>>> = BTreeMap::new();
    for o in &summary.outcomes {
        let path = fpo_rundir::variant_dir(dir, o.variant, o.seed).join(files::LOG);
        logs.entry(o.variant.to_string())
            .or_default()
            .insert(o.seed, read_jsonl(&path)?);
    }
    let len = logs
        .values()
        .flat_map(|s| s.values().map(Vec::len))
        .max()
        .unwrap_or(0);
    let window = (len / 10).max(1);
    let mut curves = BTreeMap::new();
    for (variant, seeds) in &logs {
        let n = seeds.values().map(Vec::len).min().unwrap_or(0);
        let mean_of = |f: fn(&IterationLog) -> f64| -> Vec<f64> {
            let series: Vec<f64> = (0..n)
                .map(|i| seeds.values().map(|l| f(&l[i])).sum::<f64>() / seeds.len() as f64)
                .collect();
            moving_average(&series, window)
        };
        curves.insert(
            variant.clone(),
            LlmCurves {
                iteration: (0..n).map(|i| i as f64).collect(),
                winner_reward: mean_of(|l| l.winner_reward),
                winner_utility: mean_of(|l| l.winner_utility),
                penalty: mean_of(|l| l.penalty),
                self_influence: mean_of(|l| l.self_influence),
            },
        );
    }
    let mut probe_rows: BTreeMap<String, Vec<Vec<ProbeRow>>> = BTreeMap::new();
    let mut kl = BTreeMap::new();
    for o in &summary.outcomes {
        let path = fpo_rundir::variant_dir(dir, o.variant, o.seed).join(files::PROBE);
        if path.is_file() {
            let rows: Vec<ProbeRow> = read_jsonl(&path)?;
            if let Some(last) = rows.last() {
                kl.insert(fpo_rundir::variant_name(o.variant, o.seed), last.kl);
            }
            probe_rows
                .entry(o.variant.to_string())
                .or_default()
                .push(rows);
        }
    }
    let level = config.run.as_ref().map_or(0.95, |r| r.confidence);
    let probe = probe_rows
        .iter()
        .map(|(v, seeds)| (v.clone(), probe_curves(seeds, level)))
        .collect();
    let mut samples: Vec<Sample> = Vec::new();
    for (variant, seeds) in &logs {
        let Some(lines) = seeds.values().next() else {
            continue;
        };
        for l in lines.iter().rev().take(SAMPLES) {
            let it = l.iteration as u64;
            let entry = match samples.iter_mut().find(|s| s.iteration == it) {
                Some(e) => e,
                None => {
                    samples.push(Sample {
                        iteration: it,
                        prompt_line: l.prompt_line as u64,
                        winners: BTreeMap::new(),
                    });
                    samples.last_mut().expect("just pushed")
                }
            };
            entry.winners.insert(
                variant.clone(),
                (l.winner_text.clone(), l.winner_utility, l.winner_reward),
            );
        }
    }
    samples.sort_by_key(|s| std::cmp::Reverse(s.iteration));
    Ok(LlmSection {
        dir: dir.display().to_string(),
        suite: config.suite.clone().unwrap_or_else(|| "?".into()),
        description: config.description.clone(),
        config: config_text(dir)?,
        summary,
        run_info,
        window,
        curves,
        probe,
        kl,
        samples,
        answers: answer_rows(dir)?,
        provenance: crate::provenance::of_config(&config),
    })
}

/// The directory name, for report titles.
pub fn name_of(dir: &Path) -> String {
    dir.file_name()
        .map_or_else(|| "run".to_owned(), |n| n.to_string_lossy().into_owned())
}
